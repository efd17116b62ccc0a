"""`kwb boot` / `kwb shell` (harness/cli/vm.py): exit codes, result file always written."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.core.run import run
from harness.vm import guest, vng


@pytest.fixture
def fake_kernel(tmp_path: Path) -> Path:
    k = tmp_path / "bzImage"
    k.write_bytes(b"fake")
    return k


def test_bad_disk_spec_is_usage_error(fake_kernel: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boot", "--kernel", str(fake_kernel), "--disk", "12:zfs", "--exec", "true"]) == 3
    assert "bad --disk '12:zfs': unknown filesystem 'zfs'" in capsys.readouterr().err


def test_missing_kernel_is_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["boot", "--kernel", str(tmp_path / "none"), "--exec", "true"]) == 3
    assert "kernel image not found" in capsys.readouterr().err


def test_exec_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["boot"])
    assert exc.value.code == 3


def test_shell_needs_a_terminal(fake_kernel: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shell", "--kernel", str(fake_kernel)]) == 3
    assert "needs a terminal" in capsys.readouterr().err


def test_boot_timeout_still_writes_the_result(fake_kernel: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    def build(spec: vng.VngSpec, vng: Path | None = None) -> list[str]:
        body = (f"import os,time; open('{spec.pidfile}','w').write(str(os.getpid())); "
                "print('Linux version 6.12.117', flush=True); time.sleep(600)")
        return [sys.executable, "-c", body, spec.name]

    monkeypatch.setattr(vng, "build_argv", build)
    out = tmp_path / "out"
    code = main(["boot", "--kernel", str(fake_kernel), "--accel", "tcg", "--boot-timeout", "2",
                 "--disk", "64:ext4", "--exec", "uname -r", "--out", str(out)])
    assert code == 2
    result = json.loads((out / "result.json").read_text())
    assert result["outcome"] == "timeout" and result["exit_code"] is None
    assert "not reachable over SSH within 2s" in result["error"]
    assert result["command"] == "uname -r" and result["accel"] == "tcg"
    assert "Linux version" in result["console_excerpt"]
    assert (out / "console.log").is_file() and (out / "exitcode").read_text() == "None\n"
    assert "outcome timeout" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# Real tier.

def _kwb(*args: str, timeout: float = 900) -> Any:
    # Generous boot timeout: TCG guests of parallel jobs share 2 cores.
    return run([Path(sys.executable).parent / "kwb", *args, "--boot-timeout", "400"], timeout=timeout)


def _no_qemu_of(result: dict[str, Any]) -> bool:
    """No qemu-system process of this boot (by its unique guest name) is left, nor any helper."""
    listing = run(["pgrep", "-af", "qemu-system"], timeout=10).stdout
    return result["guest"].startswith("kwb-") and result["guest"] not in listing \
        and not guest.pids_with(result["guest"])


@pytest.mark.boot
@pytest.mark.real
def test_real_boot_exec_ok_and_failing_command(built_kernel: Any, tmp_path: Path) -> None:
    out = tmp_path / "ok"
    command = "uname -r; findmnt -no FSTYPE,SOURCE /tmp/kwb-mnt/vda; blockdev --getsize64 /dev/vdb; exit 3"
    res = _kwb("boot", "--kernel", str(built_kernel.bzimage), "--disk", "64:ext4", "--disk", "16",
               "--exec", command, "--out", str(out), "--json")
    assert res.returncode == 1, res.stderr  # the command failed, the guest was fine
    result = json.loads(res.stdout)
    assert result == json.loads((out / "result.json").read_text())
    assert result["outcome"] == "ok" and result["exit_code"] == 3
    assert result["stdout"].split() == ["6.12.117", "ext4", "/dev/vda", str(16 * 2**20)]
    assert [d["fs"] for d in result["disks"]] == ["ext4", "raw"]
    assert result["accel"] in ("tcg", "kvm") and result["boot_to_ssh_seconds"] > 0


@pytest.mark.boot
@pytest.mark.real
def test_real_boot_panic_is_crash_exit_2(built_kernel: Any, tmp_path: Path) -> None:
    out = tmp_path / "panic"
    start = time.monotonic()
    res = _kwb("boot", "--kernel", str(built_kernel.bzimage), "--exec", "echo c > /proc/sysrq-trigger",
               "--timeout", "120", "--out", str(out))
    assert res.returncode == 2, res.stderr
    assert time.monotonic() - start < 120 + 400
    result = json.loads((out / "result.json").read_text())
    assert result["outcome"] == "crash"
    assert "Kernel panic - not syncing: sysrq triggered crash" in result["console_excerpt"]
    assert "sysrq triggered crash" in res.stderr  # the excerpt is shown to the user too
    assert _no_qemu_of(result)


@pytest.mark.boot
@pytest.mark.real
def test_real_boot_hung_command_is_timeout_exit_2(built_kernel: Any, tmp_path: Path) -> None:
    out = tmp_path / "hang"
    start = time.monotonic()
    res = _kwb("boot", "--kernel", str(built_kernel.bzimage), "--exec", "sleep 100000",
               "--timeout", "10", "--out", str(out))
    assert res.returncode == 2, res.stderr
    assert time.monotonic() - start < 120 + 400
    result = json.loads((out / "result.json").read_text())
    assert result["outcome"] == "timeout" and result["timed_out"] is True
    assert "timed out after 10s" in result["stderr"]
    assert _no_qemu_of(result)
