#!/usr/bin/env python3
"""Re-record the console logs in tests/data/console/ from real boots of the built kernel.

Each scenario boots the kernel under kwb's Guest, provokes one kind of console event and saves the
console log (minus kwb's own first line, the vng command with host paths). Then regenerate the
expectations: ``KWB_REGEN=1 .venv/bin/pytest tests/test_qemu_console.py``.

    .venv/bin/python scripts/capture_console_logs.py [--kernel BZIMAGE] [scenario ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from harness.vm import disks
from harness.vm.guest import BootError, Guest, GuestConfig

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "console"

WARN_ON_EXT4_ERROR = (
    "mkfs.ext4 -q -F /dev/vda && mkdir -p /tmp/kwb-mnt/vda && "
    "mount -t ext4 -o warn_on_error,errors=continue /dev/vda /tmp/kwb-mnt/vda && "
    "echo kwb-provoked-error > /sys/fs/ext4/vda/trigger_fs_error && sleep 1")

# Scenario → (disks, guest commands with their timeouts). Commands may hang or kill the guest.
SCENARIOS: dict[str, tuple[list[tuple[str, int]], list[tuple[str, float]]]] = {
    "clean-boot": ([], [("uname -r", 60)]),
    "panic-sysrq": ([], [("echo c > /proc/sysrq-trigger", 120)]),
    # ext4's warn_on_error turns any ext4 error into a WARN_ON; trigger_fs_error raises one on demand.
    "warning": ([("ext4", 64)], [(WARN_ON_EXT4_ERROR, 120)]),
    # A write to a frozen filesystem sleeps uninterruptibly: khungtaskd reports it after 5 s.
    "hung-task": ([("ext4", 64)], [
        (disks.prepare_command(0, "ext4"), 180),
        ("echo 5 > /proc/sys/kernel/hung_task_timeout_secs && fsfreeze -f /tmp/kwb-mnt/vda", 60),
        ("(echo x > /tmp/kwb-mnt/vda/f &) ; sleep 25; fsfreeze -u /tmp/kwb-mnt/vda; sleep 2", 120),
    ]),
}


def capture(name: str, kernel: Path, workdir: Path) -> Path:
    """Boot, run the scenario, save the console log; returns the saved file."""
    disk_specs, commands = SCENARIOS[name]
    images = [disks.make_disk(workdir / f"{name}-{i}.img", mb) for i, (_, mb) in enumerate(disk_specs)]
    g = Guest(GuestConfig(kernel=kernel, results_dir=workdir / name, disks=images, boot_timeout=600))
    try:
        g.start()
        for command, timeout in commands:
            res = g.run(command, timeout=timeout)
            print(f"{name}: {command[:60]!r} -> rc {res.returncode} timed_out={res.timed_out}",
                  file=sys.stderr)
    except BootError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
    finally:
        g.close()
    text = g.console_log.read_text(errors="replace")
    lines = text.splitlines(keepends=True)
    if lines and lines[0].startswith("$ "):
        lines = lines[1:]
    DATA.mkdir(parents=True, exist_ok=True)
    out = DATA / f"{name}.log"
    out.write_text("".join(lines))
    print(f"{name}: outcome {g.outcome}, {len(lines)} lines -> {out}", file=sys.stderr)
    return out


def main() -> int:
    """Capture the requested (default: all) scenarios."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernel", type=Path)
    p.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    args = p.parse_args()
    if args.kernel is None:
        from harness.kernel.build import ensure_kernel

        args.kernel = ensure_kernel("series").bzimage
    with tempfile.TemporaryDirectory(prefix="kwb-capture-") as tmp:
        for name in args.scenarios:
            capture(name, args.kernel, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
