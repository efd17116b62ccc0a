#!/usr/bin/env python3
"""Benchmark: cold `make test-series`, a warm new-revision cycle, boot-to-SSH time (targets ≤ 25 min,
≤ 5 min, ≤ 15 s on the 2-core TCG machine).

* cold: ``make test-series`` after ``make setup``; ``--fresh-cache`` points KWB_CACHE at an empty
  directory (inside the cache) so no tree, kernel or ccache entry is reused.
* warm: a new revision of a (synthetic, one-patch) series applied to the default tree as a user tree:
  v1 first (untimed, as CI ran it when v1 was posted), then ``kwb test-series --tree <default tree>
  --base <its base> --revision 2`` timed — apply, incremental build, boot, the workload matrix, with the
  unchanged baseline's kept results reused; run after the cold run so caches are warm.
* boot: scripts/bench_boot.py (boot-to-SSH-ready of the series kernel, 3 boots).

Runs take long, so nothing happens unless invoked:

    .venv/bin/python scripts/bench_pipeline.py [--only cold,warm,boot] [--fresh-cache] [--fs ext4]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from harness.core.paths import cache_dir, project_root
from harness.core.run import run

TARGETS = {"cold_s": 25 * 60.0, "warm_s": 5 * 60.0, "boot_to_ssh_s": 15.0}
ROOT = project_root()
KWB = str(ROOT / ".venv" / "bin" / "kwb")


def _timed(argv: list[str], timeout: float, log: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    print(f"bench: {' '.join(argv)} (log {log})", file=sys.stderr, flush=True)
    res = run(argv, timeout=timeout, cwd=ROOT, env=env, log=log)
    return {"seconds": round(res.duration, 1), "exit_code": res.returncode, "timed_out": res.timed_out,
            "log": str(log)}


def cold(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """`make test-series` (setup already done), optionally with an empty cache."""
    env: dict[str, str] = {}
    if args.fresh_cache:
        fresh = cache_dir() / f"bench-cold-{int(time.time())}"
        fresh.mkdir(parents=True)
        env["KWB_CACHE"] = str(fresh)
    out = _timed(["make", "test-series", f"SOURCE={args.source}"], 3 * 3600, logs / "cold.log", env)
    out["fresh_cache"] = bool(args.fresh_cache)
    return out


def _revision_mbox(tree: Path, base: str, dest: Path) -> Path:
    """A two-revision one-patch series against the default tree; v2 touches io_uring/rw.c."""
    head = run(["git", "-C", str(tree), "show", f"{base}:io_uring/rw.c"], timeout=60, check=True).stdout
    first = head.splitlines()[:3]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    mails = []
    for version in (1, 2):
        marker = f"/* kwb bench revision v{version} {stamp} */"
        diff = ("diff --git a/io_uring/rw.c b/io_uring/rw.c\n--- a/io_uring/rw.c\n+++ b/io_uring/rw.c\n"
                f"@@ -1,3 +1,4 @@\n {first[0]}\n+{marker}\n {first[1]}\n {first[2]}\n")
        date = f"Mon, 1 Jun 2020 1{version}:00:00 +0000"
        mails.append(f"From: Bench <bench@example.invalid>\nDate: {date}\n"
                     f"Message-ID: <bench-{stamp}-v{version}@example.invalid>\n"
                     f"Subject: [PATCH v{version}] io_uring: kwb bench marker\n\nMarker.\n\n"
                     f"Signed-off-by: Bench <bench@example.invalid>\n---\n{diff}-- \n2.39.0\n")
    dest.write_text("".join(f"From mboxrd@z Thu Jan  1 00:00:00 1970\n{m}\n" for m in mails))
    return dest


def warm(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """A new revision arriving after the previous one was tested: v1 runs first (untimed: it is what CI
    did when v1 was posted; it leaves the build directory and the baseline's kept results behind), then v2
    is timed: apply, incremental build, boot, the series matrix (the unchanged baseline is reused)."""
    from harness.kernel.tree import prepare_tree

    tree = prepare_tree(None)
    mbox = _revision_mbox(tree.path, tree.base, logs / "bench-revision.mbox")

    def argv(version: int) -> list[str]:
        return [KWB, "-q", "test-series", "--source", str(mbox), "--tree", str(tree.path),
                "--base", tree.base, "--revision", str(version), "--fs", args.fs,
                "--out", str(logs / "warm-out")]

    previous = _timed(argv(1), 3600, logs / "warm-v1.log")
    out = _timed(argv(2), 3600, logs / "warm.log")
    out["previous_revision"] = previous
    return out


def boot(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """Boot-to-SSH of the series kernel (scripts/bench_boot.py, 3 boots, median)."""
    script = ROOT / "scripts" / "bench_boot.py"
    res = run([str(ROOT / ".venv" / "bin" / "python"), str(script), "--runs", "3"],
              timeout=1800, cwd=ROOT, log=logs / "boot.log")
    try:
        summary = json.loads(res.stdout)
    except ValueError:
        return {"seconds": None, "exit_code": res.returncode, "error": res.tail(3)}
    return {"seconds": summary["median_s"], "min_s": summary["min_s"], "max_s": summary["max_s"],
            "exit_code": res.returncode}


def main() -> int:
    """Run the selected measurements and print a JSON summary."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--only", default="cold,warm,boot", help="comma-separated: cold,warm,boot")
    p.add_argument("--source", default=str(ROOT.parent / "shared" / "lore" /
                                           "io-uring-2020-05-18--2020-07-15.mbox"))
    p.add_argument("--fresh-cache", action="store_true", help="cold run with an empty KWB_CACHE")
    p.add_argument("--fs", default="ext4,xfs,btrfs,bdev", help="filesystems for the warm cycle")
    args = p.parse_args()
    logs = cache_dir() / "bench" / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    logs.mkdir(parents=True, exist_ok=True)
    steps = {"cold": cold, "warm": warm, "boot": boot}
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in steps]
    if unknown:
        print(f"bench_pipeline: unknown step(s) {', '.join(unknown)} (cold, warm, boot)", file=sys.stderr)
        return 3
    results: dict[str, Any] = {"host_cpus": os.cpu_count(), "logs": str(logs)}
    for name in wanted:
        results[name] = steps[name](args, logs)
        key = {"cold": "cold_s", "warm": "warm_s", "boot": "boot_to_ssh_s"}[name]
        seconds = results[name].get("seconds")
        results[name]["target_s"] = TARGETS[key]
        results[name]["meets_target"] = seconds is not None and seconds <= TARGETS[key]
        print(f"bench: {name}: {seconds}s (target {TARGETS[key]:.0f}s)", file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
