"""`kwb` entry point: builds the parser from the command modules and maps errors to exit codes.

This is the only place where exceptions become exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from harness import __version__
from harness.errors import ExitCode, KwbError

# Each module exposes ``register(subparsers)``; its handlers take the parsed args and return an exit code.
COMMAND_MODULES = (
    "harness.commands.series",
    "harness.commands.kernel",
    "harness.commands.vm",
    "harness.commands.run",
    "harness.commands.concern",
    "harness.commands.report",
    "harness.commands.ci",
    "harness.commands.pipeline",
    "harness.commands.guest_root",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse exits 2, which is our "infrastructure" code; usage errors are 3.
        self.print_usage(sys.stderr)
        print(f"kwb: error: {message}", file=sys.stderr)
        raise SystemExit(ExitCode.USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The full `kwb` argument parser."""
    parser = _Parser(prog="kwb", description="Kernel patch-series workbench.")
    parser.add_argument("--version", action="version", version=f"kwb {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no live progress (CI logs)")
    parser.add_argument("--host-root", action="store_true",
                        help="boot guests on the host's root (read-only 9p, full user network) instead of "
                             "kwb's isolated image: the host's tools in the guest, for your own machine only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into KeyboardInterrupt so `finally` blocks (result files, guest teardown) run.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run kwb; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    signal.signal(signal.SIGTERM, _on_sigterm)
    if getattr(args, "host_root", False):
        # An environment variable so every guest this run starts (and its child kwb processes) agree.
        os.environ["KWB_GUEST_ROOT"] = "host"
    try:
        return int(args.func(args))
    except KwbError as exc:
        print(f"kwb: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("kwb: interrupted", file=sys.stderr)
        return int(ExitCode.INFRASTRUCTURE)
    except BrokenPipeError:
        return int(ExitCode.PASS)


if __name__ == "__main__":
    raise SystemExit(main())
