#!/usr/bin/env python3
"""Benchmark the cover-letter fio jobs on a real booted kernel and report ratios with spread.

    .venv/bin/python scripts/bench_workloads.py --variant series --fs ext4
    .venv/bin/python scripts/bench_workloads.py --variant series --variant baseline --fs ext4,xfs
    .venv/bin/python scripts/bench_workloads.py --from out/bench-...     # re-report an earlier run

Targets (reported, never asserted): one fio repeat ≤ 15 s wall under TCG; ≥ 3 repeats per mode.
Ratios: IOPS and guest CPU per IO of plain io_uring (async path) against force_async (io-wq path),
psync, and — when the baseline variant is benchmarked too — the baseline's plain io_uring.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from harness.core.atomic import write_json
from harness.core.paths import results_root
from harness.workloads.catalogue import parse_fs_list

MODES = ("fio-iouring", "fio-iouring-forced-async", "fio-psync")
REPEAT_TARGET_S = 15.0


def _m(job: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = job.get("metrics", {}).get(key)
    return value if isinstance(value, dict) and "median" in value else None


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    if not a or not b or not b["median"] or not b["min"]:
        return "-"
    lo, hi = a["min"] / b["max"], a["max"] / b["min"]
    return f"{a['median'] / b['median']:.2f}x [{lo:.2f}–{hi:.2f}]"


def _row(variant: str, job: dict[str, Any]) -> str:
    iops, cpu, wall, ctx = (_m(job, k) for k in ("iops", "guest_cpu_per_io_us", "wall_s", "ctx"))
    counts = job.get("evidence", {}).get("counts", {})
    spread = f"{iops['median']:.0f} [{iops['min']:.0f}–{iops['max']:.0f}] sd {iops['stdev']:.0f}" \
        if iops else "-"
    over = "" if not wall or wall["max"] <= REPEAT_TARGET_S else f" (> {REPEAT_TARGET_S:.0f}s target)"
    return (f"{variant:10} {job['fs']:6} {job['workload']:26} {job['status']:7} {spread:34} "
            f"{(cpu or {}).get('median', '-')!s:>8} {(ctx or {}).get('median', '-')!s:>8} "
            f"{counts.get('callback')!s:>9} {counts.get('iowq_enqueue')!s:>9} "
            f"{job.get('evidence', {}).get('iowq_workers_max')!s:>4} "
            f"{(wall or {}).get('max', '-')!s:>6}{over}")


def report(jobs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Print the table and ratios; return them as data."""
    print(f"{'variant':10} {'fs':6} {'workload':26} {'status':7} {'IOPS median [min–max] sd':34} "
          f"{'cpu/IO us':>8} {'ctx':>8} {'callback':>9} {'io-wq enq':>9} {'wrk':>4} {'wall_s':>6}")
    for variant, vjobs in jobs.items():
        for job in vjobs:
            print(_row(variant, job))
    ratios: dict[str, Any] = {}
    series = {(j["fs"], j["workload"]): j for j in jobs.get("series", [])}
    baseline = {(j["fs"], j["workload"]): j for j in jobs.get("baseline", [])}
    for fs in sorted({fs for fs, _ in series}):
        a = series.get((fs, "fio-iouring"))
        if a is None:
            continue
        pairs = {"vs forced-async": series.get((fs, "fio-iouring-forced-async")),
                 "vs psync": series.get((fs, "fio-psync")), "vs baseline": baseline.get((fs, "fio-iouring"))}
        for label, b in pairs.items():
            if b is None:
                continue
            r = {"iops": _ratio(_m(a, "iops"), _m(b, "iops")),
                 "cpu_per_io": _ratio(_m(a, "guest_cpu_per_io_us"), _m(b, "guest_cpu_per_io_us"))}
            ratios[f"{fs} async {label}"] = r
            print(f"{fs:6} async {label:16} IOPS {r['iops']:24} CPU/IO {r['cpu_per_io']}")
    return ratios


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # As in the CLI: SIGTERM unwinds through `finally`, so the guest is powered off, never orphaned.
    raise KeyboardInterrupt


def main() -> int:
    """Run (or re-read) the benchmark and print it."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", help="variant(s) to run (default: series)")
    ap.add_argument("--fs", default="ext4")
    ap.add_argument("--workload", default=",".join(MODES))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--from", dest="source", type=Path, default=None, help="report an existing run dir")
    args = ap.parse_args()
    out = args.source or args.out or results_root() / time.strftime("bench-%Y%m%d-%H%M%S")
    timings: dict[str, float] = {}
    if args.source is None:
        from harness.kernel.build import ensure_kernel
        from harness.workloads.runner import run_variant

        for variant in args.variant or ["series"]:
            start = time.monotonic()
            say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
            run_variant(variant, parse_fs_list(args.fs), args.workload.split(","), out, progress=say,
                        kernel=ensure_kernel(variant, progress=say))
            timings[variant] = round(time.monotonic() - start, 1)
    jobs = {p.parent.name: json.loads(p.read_text())["jobs"] for p in sorted(out.glob("*/summary.json"))}
    ratios = report(jobs)
    for variant, seconds in timings.items():
        print(f"wall time {variant}: {seconds:.0f}s (build + boot + jobs)")
    write_json(out / "bench.json", {"jobs": jobs, "ratios": ratios, "timings": timings})
    print(f"bench: {out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
