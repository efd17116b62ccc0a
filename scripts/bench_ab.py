#!/usr/bin/env python3
"""Benchmark: series vs baseline measured in A/B alternation, with 95 % intervals of their ratios.

Each round boots the baseline kernel and the series kernel one after the other (the order flips every
round, ABBA, so a linear drift of the host's speed cancels) and runs one fio workload on each filesystem
on both. A round gives one pair per filesystem (the median of the job's repeats on each side); the
series/baseline ratio of IOPS, CPU per IO and context switches gets a t-interval on the per-pair log
ratios (harness.judge.metrics.ratio_ci, paired) and "higher", "lower" or "not significant".

    .venv/bin/python scripts/bench_ab.py [--rounds 5] [--fs ext4,xfs,btrfs,bdev] [--workload fio-iouring]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.judge.metrics import SAMPLE_KEYS, job_ratios, samples
from harness.kernel.build import ensure_kernel
from harness.workloads.runner import run_variant


def _median_row(metrics: dict[str, Any]) -> dict[str, float]:
    """One boot's sample: the median of its repeats for each metric ratio_ci is asked about."""
    row: dict[str, float] = {}
    for name, keys in SAMPLE_KEYS.items():
        vals = samples(metrics, name)
        if vals:
            row[keys[0]] = statistics.median(vals)  # stored as a per_repeat row of the pair's job
    return row


def main() -> int:
    """Run the benchmark."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--fs", default="ext4,xfs,btrfs,bdev")
    p.add_argument("--workload", default="fio-iouring")
    p.add_argument("--series", default="series")
    p.add_argument("--baseline", default="baseline")
    p.add_argument("--json-out")
    args = p.parse_args()
    if args.rounds < 2:
        print("bench_ab: --rounds must be at least 2 (an interval needs two pairs)", file=sys.stderr)
        return 3
    fss = [f for f in args.fs.split(",") if f]
    rows: dict[str, dict[str, list[dict[str, float]]]] = {fs: {"series": [], "baseline": []} for fs in fss}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kwb-bench-ab-") as tmp:
        for i in range(args.rounds):
            order = [("baseline", args.baseline), ("series", args.series)]
            for side, variant in order if i % 2 == 0 else order[::-1]:
                say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
                jobs = run_variant(variant, fss, [args.workload], Path(tmp) / f"r{i}-{side}", progress=say,
                                   kernel=ensure_kernel(variant, progress=say)).jobs
                for job in jobs:
                    if job.workload == args.workload and job.fs in rows and not job.failed:
                        rows[job.fs][side].append(_median_row(job.metrics))
    out: dict[str, Any] = {"benchmark": "ab_ratios", "workload": args.workload, "rounds": args.rounds,
                           "wall_s": round(time.monotonic() - began, 1), "filesystems": {}}
    for fs in fss:
        n = min(len(rows[fs]["series"]), len(rows[fs]["baseline"]))
        per_repeat = {side: {"per_repeat": rows[fs][side][:n]} for side in ("series", "baseline")}
        cis = job_ratios(per_repeat["series"], per_repeat["baseline"], paired=True)
        out["filesystems"][fs] = {"pairs": n, **{k: ci.to_dict() for k, ci in cis.items()}}
        print(f"{fs}: " + "; ".join(f"{k} {ci.text()}" for k, ci in cis.items()) + f" ({n} A/B pairs)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
