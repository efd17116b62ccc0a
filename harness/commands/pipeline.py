"""`kwb test-series`: the whole job. Not implemented until the pipeline, workloads and report land."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.errors import ExitCode


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Register `kwb test-series`."""
    p = sub.add_parser("test-series", help="the whole job: series → tree → build → boot → workloads → report")
    p.add_argument("--source", required=True)
    p.add_argument("--tree")
    p.add_argument("--base")
    p.add_argument("--revision", type=int)
    p.add_argument("--coverage", action="store_true")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    print("kwb test-series: not implemented yet", file=sys.stderr)
    return int(ExitCode.INFRASTRUCTURE)
