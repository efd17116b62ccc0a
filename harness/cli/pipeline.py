"""`kwb test-series`: the whole job (series → tree → build → boot → workloads → verdict → report)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from harness.core.paths import results_root
from harness.core.progress import Progress
from harness.orchestrate.pipeline import DEFAULT_FILESYSTEMS, Options, run_pipeline
from harness.orchestrate.stages import real_stages


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _versions(text: str) -> list[int]:
    try:
        return [int(part) for part in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated revision numbers, not {text!r}") from None


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Register `kwb test-series`."""
    p = sub.add_parser("test-series", help="the whole job: series → tree → build → boot → workloads → report",
                       description="Static concern status of the series' revisions, then every variant "
                                   "built, booted and tested on each filesystem, then the verdict and "
                                   "the report in out/<run-id>/ (and out/latest). Exit 0 only when the "
                                   "series variant passes, the baseline shows the punt path and every "
                                   "mutant is flagged.")
    p.add_argument("--source", help="mbox, Maildir, public-inbox repo or message-id; 'lore': the series' "
                                    "threads through b4; default: the shared archive beside the checkout, "
                                    "else lore when online, else the static concern step is skipped")
    p.add_argument("--tree", type=Path, help="your kernel tree (git); default: the default tree "
                                                   "(harness/profiles/trees.toml)")
    p.add_argument("--base", help="base ref in --tree")
    p.add_argument("--revision", type=int, help="revision of the series to apply to --tree")
    p.add_argument("--revisions", type=_versions,
                   help="several revisions side by side on --tree (e.g. 3,4,5): the base built once as the "
                        "baseline, each revision its own variant, revisions.md names what changed")
    p.add_argument("--coverage", action="store_true", help="add the gcov coverage variant")
    p.add_argument("--variants", type=_csv, help="comma-separated variant names (default: all)")
    p.add_argument("--fs", type=_csv, default=list(DEFAULT_FILESYSTEMS),
                   help="comma-separated filesystems (default: ext4,xfs,btrfs,bdev)")
    p.add_argument("--workloads", type=_csv, help="comma-separated workload names (default: the default set)")
    p.add_argument("--out", type=Path, help="results root (default: $KWB_OUT or out/)")
    p.add_argument("--fresh-baseline", action="store_true",
                   help="measure the baseline even if an earlier run kept results of the same kernel")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    opts = Options(source=args.source, out_root=args.out or results_root(),
                   command="kwb " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "kwb test-series",
                   tree=args.tree, base=args.base, revision=args.revision,
                   revisions=args.revisions, coverage=args.coverage,
                   fresh_baseline=args.fresh_baseline,
                   variants=args.variants, filesystems=args.fs, workloads=args.workloads)
    return run_pipeline(opts, real_stages(), Progress(quiet=getattr(args, "quiet", False)))
