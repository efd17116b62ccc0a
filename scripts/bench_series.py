#!/usr/bin/env python3
"""Benchmark: parse and group a list archive into series families (target: the 1,672-message io-uring
mbox in < 5 s on a 2-core machine). Prints one line per phase and a JSON summary; exit 0 always — a
benchmark reports, it does not assert.

    .venv/bin/python scripts/bench_series.py [--source PATH] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.series.loader import group_messages
from harness.sources.registry import load_messages

DEFAULT = Path(__file__).resolve().parent.parent.parent / "shared" / "lore" / \
    "io-uring-2020-05-18--2020-07-15.mbox"
TARGET_S = 5.0


def once(source: Path) -> dict[str, float | int]:
    """One full parse + group, timed per phase."""
    t0 = time.perf_counter()
    loaded = load_messages(source)
    t1 = time.perf_counter()
    families = group_messages(loaded.messages)
    t2 = time.perf_counter()
    revisions = sum(len(f.revisions) for f in families)
    return {"messages": len(loaded.messages), "revisions": revisions, "families": len(families),
            "parse_s": t1 - t0, "group_s": t2 - t1, "total_s": t2 - t0}


def main() -> int:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=DEFAULT)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not args.source.is_file():
        print(f"bench_series: source missing: {args.source}", file=sys.stderr)
        return 3
    runs = [once(args.source) for _ in range(args.repeat)]
    for i, r in enumerate(runs, 1):
        print(f"run {i}: {r['messages']} messages → {r['revisions']} revisions in {r['families']} "
              f"families; parse {r['parse_s']:.2f}s + group {r['group_s']:.2f}s = {r['total_s']:.2f}s")
    totals = [float(r["total_s"]) for r in runs]
    summary = {"source": str(args.source), "runs": len(runs), "median_s": statistics.median(totals),
               "min_s": min(totals), "max_s": max(totals), "target_s": TARGET_S,
               "within_target": statistics.median(totals) < TARGET_S}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
