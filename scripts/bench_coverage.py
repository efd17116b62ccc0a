#!/usr/bin/env python3
"""Benchmark what patch coverage costs: the instrumented build and the instrumented run.

    .venv/bin/python scripts/bench_coverage.py --out out/bench-coverage \\
        --fs ext4,xfs,btrfs,bdev --workload probe-lock-page-async,fio-iouring

Runs the same workloads on ``series`` (uninstrumented) and through ``run_coverage`` on the ``coverage``
variant (gcov on the six series files), one after the other, and prints JSON: both kernels' build times
(as recorded when each was built: cold builds in their own build directories), both runs' wall times,
the extra time, the coverage figures and the IOPS of each fio job (gcov slows the instrumented files).
Never asserts; targets are read by a person.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.kernel.build import ensure_kernel
from harness.orchestrate.coverage_run import run_coverage
from harness.workloads.catalogue import parse_fs_list
from harness.workloads.runner import run_variant


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _iops(jobs: list[object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for j in jobs:
        metrics = getattr(j, "metrics", {}) or {}
        iops = metrics.get("iops") if isinstance(metrics, dict) else None
        if isinstance(iops, dict) and "median" in iops:
            out[f"{getattr(j, 'fs', '')}/{getattr(j, 'workload', '')}"] = iops["median"]
    return out


def main() -> int:
    """Run both variants and print the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out/bench-coverage"))
    parser.add_argument("--fs", default="ext4,xfs")
    parser.add_argument("--workload", default="probe-lock-page-async")
    parser.add_argument("--skip-series", action="store_true", help="only the coverage run")
    args = parser.parse_args()
    fss = parse_fs_list(args.fs)
    workloads = [w for w in args.workload.split(",") if w]
    result: dict[str, object] = {"filesystems": fss, "workloads": workloads}
    if not args.skip_series:
        series = ensure_kernel("series", progress=_say)
        start = time.monotonic()
        jobs = run_variant("series", fss, workloads, args.out / "plain", _say, kernel=series).jobs
        result["series"] = {"build_seconds": round(series.duration, 1),
                            "run_seconds": round(time.monotonic() - start, 1),
                            "statuses": {f"{j.fs}/{j.workload}": j.status.value for j in jobs},
                            "iops": _iops(list(jobs))}
    start = time.monotonic()
    cov = run_coverage(args.out / "cov", filesystems=fss, workloads=workloads, progress=_say)
    total = cov.total()
    cov_jobs = cov.run.jobs if cov.run is not None else []
    result["coverage"] = {"build_seconds": cov.timings.get("build"), "run_seconds": cov.timings.get("run"),
                          "process_seconds": cov.timings.get("process"),
                          "wall_seconds": round(time.monotonic() - start, 1),
                          "statuses": {f"{j.fs}/{j.workload}": j.status.value for j in cov_jobs},
                          "iops": _iops(list(cov_jobs)), "executed": total.executed, "lines": total.total,
                          "percent": total.percent, "never_executed": len(cov.never_executed()),
                          "per_patch": {r.name: f"{r.executed}/{r.total}" for r in cov.per_patch()},
                          "missing_files": cov.missing_files, "notes": cov.notes}
    plain = result.get("series")
    if isinstance(plain, dict):
        extra = float(cov.timings.get("run", 0.0)) - float(plain["run_seconds"])
        result["extra_run_seconds"] = round(extra, 1)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
