"""`kwb run --variant NAME`: build (incrementally), boot, run the workloads, write a result per job."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from harness.core.atomic import write_json
from harness.core.errors import ExitCode
from harness.core.paths import results_root
from harness.core.progress import Progress
from harness.kernel import build
from harness.workloads import runner
from harness.workloads.catalogue import FILESYSTEMS, parse_fs_list
from harness.workloads.model import JobResult, JobStatus


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Register `kwb run`."""
    p = sub.add_parser("run", help="build and boot a variant, run workloads on each filesystem",
                       description="Build (incrementally) and boot a kernel variant, run the workloads "
                                   "on each filesystem, write a structured result per job. Exit 0 when "
                                   "every job passed, 1 when a job failed, 2 on infrastructure errors.")
    p.add_argument("--variant", required=True, help="variant name from the profile's variants.toml")
    p.add_argument("--fs", default=None,
                   help=f"comma-separated filesystems (default: {','.join(FILESYSTEMS)})")
    p.add_argument("--workload", default=None,
                   help="comma-separated workload names (default: the catalogue's default set)")
    p.add_argument("--out", type=Path, default=None, help="results directory (default: out/run-<time>)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(func=cmd_run)


def exit_code(results: list[JobResult]) -> int:
    """0 all passed; 1 a job failed (fail/crash/timeout); 2 only infrastructure errors."""
    if any(r.status in (JobStatus.FAIL, JobStatus.CRASH, JobStatus.TIMEOUT) for r in results):
        return int(ExitCode.TEST_FAILURE)
    if any(r.status is JobStatus.ERROR for r in results):
        return int(ExitCode.INFRASTRUCTURE)
    return int(ExitCode.PASS)


def _median(metric: Any) -> str:
    if isinstance(metric, dict) and "median" in metric:
        return f"{metric['median']:.0f} [{metric['min']:.0f}–{metric['max']:.0f}]"
    return "-"


def _table(results: list[JobResult]) -> str:
    lines = [f"{'fs':6} {'workload':28} {'status':8} {'IOPS median [min–max]':24} evidence / reason"]
    for r in results:
        counts = r.evidence.get("counts", {})
        ev = " ".join(f"{k}={v}" for k, v in counts.items() if k in ("callback", "iowq_enqueue"))
        lines.append(f"{r.fs:6} {r.workload:28} {r.status.value:8} {_median(r.metrics.get('iops')):24} "
                     f"{r.reason or ev}")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    """Handler of `kwb run`."""
    filesystems = parse_fs_list(args.fs)
    workloads = [w.strip() for w in (args.workload or "").split(",") if w.strip()]
    out = args.out or results_root() / time.strftime(f"run-%Y%m%d-%H%M%S-{args.variant}")
    progress = Progress(quiet=getattr(args, "quiet", False))
    started = time.time()
    results: list[JobResult] = []
    try:
        with progress.step(f"run {args.variant}"):
            runner.plan_specs(args.variant, filesystems, workloads)  # a usage error before the build
            kernel = build.ensure_kernel(args.variant, progress=progress)
            results = runner.run_variant(args.variant, filesystems, workloads, out, progress=progress,
                                         kernel=kernel).jobs
    finally:
        write_json(out / "run.json", {"variant": args.variant, "filesystems": filesystems,
                                      "workloads": workloads, "started": started, "ended": time.time(),
                                      "jobs": [r.to_dict() for r in results]})
    code = exit_code(results)
    if args.json:
        json.dump({"variant": args.variant, "out": str(out), "exit": code,
                   "jobs": [r.to_dict() for r in results]}, sys.stdout, indent=2)
        print()
    else:
        print(_table(results))
        print(f"results: {out}")
    return code
