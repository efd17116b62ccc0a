"""Choosing between KVM and TCG without ever trusting /dev/kvm's mere presence.

A KVM guest can hang forever at "Decompressing Linux" (broken nested virtualisation), so KVM counts as
working only when a bounded test boot of a real kernel prints "Linux version" — i.e. the kernel proper
ran. The probe boots with no root device: the kernel panics at mount time and ``panic=-1`` plus
``-no-reboot`` end QEMU, so a working KVM answers in about a second and a broken one costs the timeout.

The result is recorded in the cache per host boot (``vm/kvm-probe.json``), so guests do not pay the
probe on every launch; ``kwb doctor`` always probes afresh.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.core import atomic
from harness.core.paths import cache_dir
from harness.core.run import run

PROBE_TIMEOUT = 20.0
KVM_DEVICE = Path("/dev/kvm")
QEMU = "qemu-system-x86_64"
# "working", "broken" (present, does not boot), "absent" (no /dev/kvm), "unverified" (present but no
# kernel to test-boot yet: never used for KVM).
STATES = ("working", "broken", "absent", "unverified")
_MARK = "Linux version"


@dataclass
class AccelChoice:
    """The accelerator a guest uses and why."""

    accel: str
    kvm: str
    reason: str
    probe_kernel: str = ""
    probed_at: float = 0.0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return asdict(self)


def probe_argv(kernel: Path, qemu: str = QEMU) -> list[str]:
    """QEMU argv of the KVM test boot: serial console on stdout, no disks, no root, no reboot."""
    return [qemu, "-accel", "kvm", "-machine", "q35", "-cpu", "host", "-m", "256", "-smp", "1",
            "-nodefaults", "-no-reboot", "-display", "none", "-serial", "stdio", "-monitor", "none",
            "-kernel", str(kernel),
            "-append", "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1 root=/dev/kwb-no-root"]


def find_probe_kernel() -> Path | None:
    """The newest kernel kwb has built (any variant), or None before the first build."""
    root = cache_dir() / "kernels"
    images = [p for p in root.glob("*/*/bzImage") if p.is_file()]
    return max(images, key=lambda p: p.stat().st_mtime) if images else None


def probe_kvm(kernel: Path | None = None, *, timeout: float = PROBE_TIMEOUT,
              device: Path = KVM_DEVICE, qemu: str = QEMU) -> tuple[str, str]:
    """KVM state and a one-line reason: ("working"|"broken"|"absent"|"unverified", reason)."""
    if not device.exists():
        return "absent", f"{device} does not exist"
    if not os.access(device, os.R_OK | os.W_OK):
        return "broken", f"{device} exists but is not accessible (permissions)"
    kernel = kernel or find_probe_kernel()
    if kernel is None or not kernel.is_file():
        return "unverified", f"{device} exists but no kernel has been built to test-boot it yet"
    res = run(probe_argv(kernel, qemu), timeout=timeout)
    output = res.stdout + res.stderr
    if _MARK in output:
        return "working", f"KVM test boot printed {_MARK!r} in {res.duration:.1f}s"
    # QEMU's own "terminating on signal" line says nothing about how far the guest got.
    guest_lines = [ln.strip() for ln in output.splitlines()
                   if ln.strip() and "terminating on signal" not in ln]
    last = guest_lines[-1] if guest_lines else "no output"
    if res.timed_out:
        return "broken", f"KVM test boot printed no {_MARK!r} within {timeout:.0f}s (last: {last[:80]})"
    return "broken", f"KVM test boot failed (exit {res.returncode}): {last[:80]}"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def record_path() -> Path:
    """Where the last probe result is recorded."""
    return cache_dir() / "vm" / "kvm-probe.json"


def record(state: str, reason: str, kernel: Path | None) -> None:
    """Remember a probe result for this host boot."""
    atomic.write_json(record_path(), {"boot_id": _boot_id(), "state": state, "reason": reason,
                                      "kernel": str(kernel or ""), "time": time.time()})


def recorded() -> tuple[str, str] | None:
    """The probe result recorded during this host boot, if any (never an "unverified" one)."""
    try:
        data = json.loads(record_path().read_text())
    except (OSError, ValueError):
        return None
    if data.get("boot_id") != _boot_id() or data.get("state") not in ("working", "broken", "absent"):
        return None
    return str(data["state"]), str(data.get("reason", ""))


def choose(requested: str = "auto", kernel: Path | None = None, *, fresh: bool = False) -> AccelChoice:
    """Pick the accelerator: ``requested`` "kvm"/"tcg" is honoured, "auto" uses KVM only if it works."""
    if requested not in ("auto", "kvm", "tcg"):
        raise ValueError(f"accel must be auto, kvm or tcg, not {requested!r}")
    if requested == "tcg":
        return AccelChoice("tcg", "not-probed", "TCG requested")
    cached = None if fresh else recorded()
    if cached is not None:
        state, reason = cached
    else:
        probe_kernel = kernel or find_probe_kernel()
        state, reason = probe_kvm(probe_kernel)
        if state != "unverified":
            record(state, reason, probe_kernel)
    if requested == "kvm":
        return AccelChoice("kvm", state, f"KVM requested (probe: {state}: {reason})",
                           str(kernel or ""), time.time())
    accel = "kvm" if state == "working" else "tcg"
    return AccelChoice(accel, state, reason, str(kernel or ""), time.time())
