#!/usr/bin/env python3
"""Benchmark: boot-to-SSH-ready time of the test kernel under virtme-ng (target ≤ 15 s).

Boot-to-SSH is measured by :class:`harness.qemu.guest.Guest` from launching vng to the first command
that completes over SSH. Each run boots, runs ``uname -r``, powers off. Prints a JSON summary.

    .venv/bin/python scripts/bench_boot.py [--kernel BZIMAGE | --variant series] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.qemu.guest import Guest, GuestConfig

TARGET_SECONDS = 15.0


def _kernel(args: argparse.Namespace) -> Path:
    if args.kernel:
        return Path(args.kernel)
    from harness.build import ensure_kernel

    return ensure_kernel(args.variant).bzimage


def one_boot(kernel: Path, accel: str, workdir: Path, boot_timeout: float) -> dict[str, object]:
    """Boot once; boot-to-SSH, uname, shutdown time, console milestones."""
    with Guest(GuestConfig(kernel=kernel, results_dir=workdir, accel=accel, boot_timeout=boot_timeout)) as g:
        uname = g.run("uname -r", timeout=30).stdout.strip()
        stop = time.monotonic()
    return {"boot_to_ssh_s": round(g.boot_seconds or -1, 2), "shutdown_s": round(time.monotonic() - stop, 2),
            "accel": g.accel, "release": uname, "outcome": g.outcome, "milestones": g.milestones,
            "host_load": round(os.getloadavg()[0], 1)}


def main() -> int:
    """Run the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernel")
    p.add_argument("--variant", default="series")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    p.add_argument("--boot-timeout", type=float, default=600.0)
    args = p.parse_args()
    kernel = _kernel(args)
    runs = []
    with tempfile.TemporaryDirectory(prefix="kwb-bench-boot-") as tmp:
        for i in range(args.runs):
            r = one_boot(kernel, args.accel, Path(tmp) / f"run{i}", args.boot_timeout)
            print(f"run {i + 1}: {r}", file=sys.stderr, flush=True)
            runs.append(r)
    times = [float(str(r["boot_to_ssh_s"])) for r in runs]
    summary = {"benchmark": "boot_to_ssh", "kernel": str(kernel), "runs": runs,
               "min_s": min(times), "median_s": statistics.median(times), "max_s": max(times),
               "target_s": TARGET_SECONDS, "meets_target": statistics.median(times) <= TARGET_SECONDS}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
