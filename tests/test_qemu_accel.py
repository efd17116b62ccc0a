"""KVM probe: absent / broken (hangs at decompression, bounded) / working / unverified, and the choice."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from harness.vm import accel


def _fake_qemu(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-qemu"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return str(script)


@pytest.fixture(autouse=True)
def private_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Probe records go to a temp file: the real cache keeps the machine's real probe result."""
    path = tmp_path / "kvm-probe.json"
    monkeypatch.setattr(accel, "record_path", lambda: path)
    return path


@pytest.fixture
def kernel(tmp_path: Path) -> Path:
    k = tmp_path / "bzImage"
    k.write_bytes(b"MZ fake")
    return k


@pytest.fixture
def device(tmp_path: Path) -> Path:
    d = tmp_path / "kvm"
    d.write_text("")
    return d


def test_absent_without_device(tmp_path: Path, kernel: Path) -> None:
    state, reason = accel.probe_kvm(kernel, device=tmp_path / "nope")
    assert state == "absent" and "does not exist" in reason


def test_unverified_without_a_kernel(device: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accel, "find_probe_kernel", lambda: None)  # as before the first build
    state, reason = accel.probe_kvm(None, device=device)
    assert state == "unverified" and "no kernel" in reason


def test_hang_at_decompression_is_broken_within_the_timeout(tmp_path: Path, kernel: Path,
                                                            device: Path) -> None:
    qemu = _fake_qemu(tmp_path, 'echo "Decompressing Linux... "; exec sleep 600')
    start = time.monotonic()
    state, reason = accel.probe_kvm(kernel, device=device, qemu=qemu, timeout=2)
    assert state == "broken" and "within 2s" in reason and "Decompressing" in reason
    assert time.monotonic() - start < 15


def test_kernel_printing_its_banner_is_working(tmp_path: Path, kernel: Path, device: Path) -> None:
    qemu = _fake_qemu(tmp_path, 'echo "Decompressing Linux... Booting the kernel."\n'
                                'echo "[    0.000000] Linux version 6.12.117"\n'
                                'echo "Kernel panic - not syncing: VFS: Unable to mount root fs"')
    state, reason = accel.probe_kvm(kernel, device=device, qemu=qemu)
    assert state == "working", reason


def test_qemu_refusing_kvm_is_broken(tmp_path: Path, kernel: Path, device: Path) -> None:
    qemu = _fake_qemu(tmp_path, 'echo "Could not access KVM kernel module" >&2; exit 1')
    state, reason = accel.probe_kvm(kernel, device=device, qemu=qemu)
    assert state == "broken" and "exit 1" in reason and "KVM kernel module" in reason


def test_probe_argv_is_bounded_and_headless(kernel: Path) -> None:
    argv = accel.probe_argv(kernel)
    assert argv[:3] == ["qemu-system-x86_64", "-accel", "kvm"]
    assert "-no-reboot" in argv and "panic=-1" in argv[-1] and "console=ttyS0" in argv[-1]
    assert argv[argv.index("-display") + 1] == "none"


def test_choice_follows_the_probe_and_is_recorded(monkeypatch: pytest.MonkeyPatch, kernel: Path) -> None:
    calls: list[Path | None] = []

    def fake_probe(k: Path | None = None, **kw: object) -> tuple[str, str]:
        calls.append(k)
        return "broken", "hangs"

    monkeypatch.setattr(accel, "probe_kvm", fake_probe)
    choice = accel.choose("auto", kernel)
    assert (choice.accel, choice.kvm) == ("tcg", "broken")
    data = json.loads(accel.record_path().read_text())
    assert data["state"] == "broken" and data["kernel"] == str(kernel)
    # Recorded for this host boot: the next guest does not pay for another probe ...
    assert accel.choose("auto", kernel).kvm == "broken" and len(calls) == 1
    # ... but doctor (fresh) does.
    accel.choose("auto", kernel, fresh=True)
    assert len(calls) == 2


def test_working_kvm_is_chosen(monkeypatch: pytest.MonkeyPatch, kernel: Path) -> None:
    monkeypatch.setattr(accel, "probe_kvm", lambda k=None, **kw: ("working", "ok"))
    choice = accel.choose("auto", kernel, fresh=True)
    assert (choice.accel, choice.kvm) == ("kvm", "working")


def test_explicit_requests(monkeypatch: pytest.MonkeyPatch, kernel: Path) -> None:
    monkeypatch.setattr(accel, "probe_kvm", lambda k=None, **kw: ("broken", "hangs"))
    assert accel.choose("tcg").accel == "tcg"
    forced = accel.choose("kvm", kernel, fresh=True)
    assert forced.accel == "kvm" and "broken" in forced.reason
    with pytest.raises(ValueError):
        accel.choose("hvf")


def test_record_from_another_host_boot_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    accel.record("working", "ok", None)
    assert accel.recorded() == ("working", "ok")
    monkeypatch.setattr(accel, "_boot_id", lambda: "another-boot")
    assert accel.recorded() is None


@pytest.mark.boot
@pytest.mark.real
def test_real_probe_here(built_kernel: object) -> None:
    """The real probe on the real kernel: the three states map to what /dev/kvm really does."""
    bz = built_kernel.bzimage  # type: ignore[attr-defined]
    start = time.monotonic()
    state, reason = accel.probe_kvm(bz)
    assert time.monotonic() - start < accel.PROBE_TIMEOUT + 10
    if not Path("/dev/kvm").exists():
        assert state == "absent"
    else:
        assert state in ("working", "broken"), reason
        if os.environ.get("KWB_EXPECT_KVM"):
            assert state == os.environ["KWB_EXPECT_KVM"], reason
