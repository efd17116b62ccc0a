"""`kwb concern list` and `kwb concern repro ID | --bundle DIR` (reproduce a review concern on demand)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from harness.core.errors import ExitCode, UserError
from harness.core.paths import results_root
from harness.core.progress import Progress
from harness.orchestrate import concern_repro
from harness.series.concerns import load_catalogue
from harness.workloads.catalogue import parse_fs_list


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Register `kwb concern list|repro`."""
    p = sub.add_parser("concern", help="list review concerns, reproduce one in a booted kernel",
                       description="Review concerns of the series (the profile's concerns.toml): "
                                   "list them, or reproduce one with its workloads and "
                                   "probes into a self-contained, re-runnable bundle.")
    csub = p.add_subparsers(dest="concern_cmd", metavar="{list,repro}")
    ls = csub.add_parser("list", help="the catalogued concerns (id, title, raised by, workloads, mutants)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=cmd_list)
    rp = csub.add_parser("repro", help="reproduce a concern (or re-run a saved bundle)",
                         description="Build and boot the variant, run the concern's workloads/probes, "
                                     "collect path evidence, write a bundle with repro.sh. With --bundle: "
                                     "re-run a saved bundle and say whether the outcome is the same "
                                     "(exit 0 same, 1 different).")
    rp.add_argument("concern", nargs="?", help="concern id (kwb concern list)")
    rp.add_argument("--variant", default="series", help="variant from the profile's variants.toml")
    rp.add_argument("--fs", default="ext4,xfs", help="comma-separated filesystems (default: ext4,xfs)")
    rp.add_argument("--workload", default=None, help="comma-separated workloads (default: the concern's)")
    rp.add_argument("--out", type=Path, default=None,
                    help="bundle directory (default: out/concern-<id>-<time>)")
    rp.add_argument("--bundle", type=Path, default=None, help="re-run this saved bundle and compare")
    rp.add_argument("--json", action="store_true", help="print the outcome as JSON")
    rp.set_defaults(func=cmd_repro)
    p.set_defaults(func=lambda _a: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_usage(sys.stderr)
    sys.stderr.write("kwb concern: choose list or repro\n")
    return int(ExitCode.USAGE)


def cmd_list(args: argparse.Namespace) -> int:
    """Handler of `kwb concern list`."""
    rows = [{"id": c.id, "title": c.title, "raised_by": c.raised_by, "workloads": list(c.workloads),
             "mutants": list(c.mutants)} for c in load_catalogue()]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for r in rows:
        who = str(r["raised_by"]).split("<")[0].strip()
        print(f"{r['id']:30} {who:20} {r['title']}")
        print(f"{'':30} workloads: {', '.join(r['workloads']) or '-'}; "
              f"mutants: {', '.join(r['mutants']) or '-'}")
    return 0


def cmd_repro(args: argparse.Namespace) -> int:
    """Handler of `kwb concern repro`."""
    progress = Progress(quiet=getattr(args, "quiet", False))
    if args.bundle is not None:
        if args.concern:
            raise UserError("give a concern id or --bundle DIR, not both")
        new, diffs = concern_repro.rerun(args.bundle, progress=progress)
        _print(new, args.json, diffs)
        print(f"re-run bundle: {new.bundle}")
        print("same outcome as the saved bundle" if not diffs else
              "DIFFERENT outcome:\n  " + "\n  ".join(diffs))
        return 0 if not diffs else int(ExitCode.TEST_FAILURE)
    if not args.concern:
        raise UserError("kwb concern repro needs a concern id (kwb concern list) or --bundle DIR")
    workloads = [w.strip() for w in (args.workload or "").split(",") if w.strip()] or None
    out = args.out or results_root() / time.strftime(f"concern-{args.concern}-%Y%m%d-%H%M%S")
    req = concern_repro.ReproRequest(args.concern, args.variant, parse_fs_list(args.fs), workloads, out)
    result = concern_repro.reproduce(req, progress=progress)
    _print(result, args.json, None)
    print(f"bundle: {result.bundle} (re-run: sh {result.bundle / 'repro.sh'})")
    return 0 if result.ok else int(ExitCode.TEST_FAILURE)


def _print(result: Any, as_json: bool, diffs: list[str] | None) -> None:
    if as_json:
        json.dump({"bundle": str(result.bundle), "ok": result.ok, "cases": result.cases,
                   "outcome": result.outcome, "differences": diffs}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    for row in result.cases:
        counts = " ".join(f"{k}={v}" for k, v in row["counts"].items())
        print(f"{row['case']:26} {row['fs']:6} {'shown' if row['shown'] else 'NOT shown':9} {counts}")
    for key, job in result.outcome.items():
        nz = " ".join(f"{k}={job['counts'][k]}" for k, s in job["shape"].items() if s == ">0")
        print(f"{key:44} {job['status']:8} {job['reason'] or nz}")


__all__ = ["cmd_list", "cmd_repro", "register"]
