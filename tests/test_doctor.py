"""`kwb doctor`: tool table, missing tools → exit 2 with the list, JSON shape, and the real thing."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.core.run import run
from harness.vm import accel, doctor

BRIEF_TOOLS = {"git", "gcc", "make", "ccache", "qemu-system-x86_64", "vng", "fio", "b4", "mkfs.ext4",
               "mkfs.xfs", "mkfs.btrfs", "sshd", "udev"}


@pytest.fixture
def no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Doctor without the (20 s) KVM test boot."""
    monkeypatch.setattr(accel, "choose", lambda *a, **kw: accel.AccelChoice("tcg", "broken", "fake probe"))


def test_tool_table_covers_the_pipeline() -> None:
    tools = {t.name: t for t in doctor.load_tools()}
    assert set(tools) >= BRIEF_TOOLS
    assert tools["udev"].binary == "udevadm"
    assert not tools["b4"].required and tools["b4"].reason
    assert tools["qemu-system-x86_64"].required


def test_missing_tool_is_reported_not_raised() -> None:
    t = doctor.check_tool(doctor.Tool("nope", "kwb-no-such-tool", ["kwb-no-such-tool", "--version"]))
    assert not t.ok and t.path == "" and t.version == ""


def test_version_is_first_output_line() -> None:
    t = doctor.check_tool(doctor.Tool("sh", "sh", ["sh", "-c", "echo 'v 1.2'; echo second"]))
    assert t.ok and t.version == "v 1.2"


def test_json_report(no_probe: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["usable"] is True and data["missing"] == []
    assert (data["kvm"], data["accel"]) == ("broken", "tcg")
    assert data["disk"]["free_gb"] > 0 and data["cache_dir"]
    assert data["tools"]["git"]["version"].startswith("git version")


def test_missing_required_tool_exits_2_with_the_list(no_probe: None, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "tools.toml"
    table.write_text('[[tool]]\nname = "git"\nversion = ["git", "--version"]\n'
                     '[[tool]]\nname = "frobnicate"\nversion = ["frobnicate", "-V"]\n'
                     '[[tool]]\nname = "optional-thing"\nrequired = false\nreason = "only for X"\n')
    monkeypatch.setattr(doctor, "TOOLS_FILE", table)
    assert main(["doctor"]) == 2
    captured = capsys.readouterr()
    assert "frobnicate           MISSING" in captured.out
    assert "warning: optional-thing not found: only for X" in captured.out
    assert captured.err.strip() == "kwb: error: required tools missing: frobnicate"


def test_broken_tool_list_exits_2_naming_it(no_probe: None, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "tools.toml"
    table.write_text("[[tool]\n")
    monkeypatch.setattr(doctor, "TOOLS_FILE", table)
    assert main(["doctor"]) == 2
    assert capsys.readouterr().err.startswith(f"kwb: error: tool list {table}: invalid TOML: ")


def test_bad_kernel_argument_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--kernel", "/nonexistent/bzImage"]) == 3
    assert "kernel image not found: /nonexistent/bzImage" in capsys.readouterr().err


@pytest.mark.boot
@pytest.mark.real
def test_real_doctor_json_under_a_minute(built_kernel: object) -> None:
    """The real command, real KVM probe on the built kernel: < 60 s, state consistent with /dev/kvm."""
    kwb = Path(sys.executable).parent / "kwb"
    start = time.monotonic()
    res = run([kwb, "doctor", "--json"], timeout=120)
    elapsed = time.monotonic() - start
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert elapsed < 60, f"doctor took {elapsed:.0f}s"
    if not Path("/dev/kvm").exists():
        assert data["kvm"] == "absent"
    else:
        assert data["kvm"] in ("working", "broken"), data["kvm_reason"]
    assert data["accel"] == ("kvm" if data["kvm"] == "working" else "tcg")
    if os.environ.get("KWB_EXPECT_KVM"):  # set where the answer is known (broken on the dev machine)
        assert data["kvm"] == os.environ["KWB_EXPECT_KVM"]
