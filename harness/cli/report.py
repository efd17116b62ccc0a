"""`kwb report`: re-render a run, compare two runs, merge CI shard runs into one."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from harness.core.errors import UserError
from harness.core.paths import results_root
from harness.report.compare import compare, render, series_revdiff
from harness.report.merge import merge_runs
from harness.report.results import rejudge
from harness.report.schema import load_results
from harness.report.write import finalize, write_run


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Register `kwb report`."""
    p = sub.add_parser("report", help="re-render a run, compare two runs, or merge shard runs",
                       description="Without options: re-judge RUN (default out/latest) with the current "
                                   "verdict rules and re-write its results.json, junit.xml, report.md and "
                                   "report.html.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--compare", nargs=2, type=Path, metavar=("RUN_A", "RUN_B"),
                      help="which checks and metrics changed from RUN_A to RUN_B, and which patches "
                           "may explain it")
    mode.add_argument("--merge", nargs="+", type=Path, metavar="DIR", help="merge shard run directories")
    p.add_argument("run", nargs="?", type=Path, help="run directory to re-render (default: out/latest)")
    p.add_argument("--source", help="series source for the revision diff (default: the runs' own)")
    p.add_argument("--out", type=Path, help="results root for --merge (default: $KWB_OUT or out/)")
    p.add_argument("--json", action="store_true", help="--compare: print JSON")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    if args.compare:
        return _compare(args)
    if args.merge:
        return _merge(args)
    return _rerender(args.run or results_root() / "latest")


def _compare(args: argparse.Namespace) -> int:
    a, b = (load_results(p) for p in args.compare)
    cmp = compare(a, b, series_revdiff, args.source)
    if args.json:
        print(json.dumps(cmp.to_dict(), indent=2))
    else:
        print(render(cmp), end="")
    return 0


def _merge(args: argparse.Namespace) -> int:
    out_root = args.out or results_root()
    command = "kwb " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "kwb report --merge"
    record, run_dir = merge_runs(list(args.merge), out_root, command)
    data = finalize(record, run_dir, out_root)
    verdict = data["verdict"]
    print(f"merged {len(record.shards)} shard runs into {run_dir}: "
          + ("PASS" if verdict["ok"] else "FAIL: " + "; ".join(verdict["reasons"])), file=sys.stderr)
    return int(verdict["exit_code"])


def _rerender(run: Path) -> int:
    if not run.exists():
        raise UserError(f"no run at {run}")
    data = rejudge(load_results(run))
    problems = write_run(data, run.resolve() if run.is_dir() else run.resolve().parent)
    verdict = data["verdict"]
    print(f"re-rendered {run}: " + ("PASS" if verdict["ok"] else "FAIL: " + "; ".join(verdict["reasons"])),
          file=sys.stderr)
    return 2 if problems else int(verdict["exit_code"])
