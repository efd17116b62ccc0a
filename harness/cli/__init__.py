"""`kwb` entry point: builds the parser from the command modules and maps errors to exit codes.

This is the only place where exceptions become exit codes.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, ModuleType

from harness import __version__
from harness.core import profile
from harness.core.errors import ExitCode, KwbError, UserError
from harness.kernel.variants import load_variants
from harness.series.concerns import load_catalogue
from harness.workloads.catalogue import load_catalogue as load_workloads

# Each module of harness.cli exposes ``register(subparsers)``; its handlers take the parsed args and return
# an exit code. In the order `kwb --help` lists them.
COMMAND_MODULES = ("series", "kernel", "vm", "run", "concern", "report", "ci", "pipeline", "mutate",
                   "guest_root")
# Which module registers each command word, so that a command imports only its own module: all of them
# together (paramiko, the pipeline, the CI engine) cost `kwb series list` ~0.5 s and ~20 MiB of its peak
# memory. A test checks this table against what the modules register.
COMMANDS = {"series": "series", "tree": "kernel", "apply": "kernel", "build": "kernel", "doctor": "vm",
            "boot": "vm", "shell": "vm", "run": "run", "concern": "concern", "report": "report", "ci": "ci",
            "test-series": "pipeline", "mutate": "mutate", "guest-image": "guest_root"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse exits 2, which is our "infrastructure" code; usage errors are 3.
        self.print_usage(sys.stderr)
        print(f"kwb: error: {message}", file=sys.stderr)
        raise SystemExit(ExitCode.USAGE)


def command_word(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (its first word that is not a top-level option), None when there is
    none."""
    words = iter(argv)
    for word in words:
        if word == "--profile":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _load(name: str) -> ModuleType:
    # The one place harness imports inside a function (tests/test_import_graph.py allows only this): a
    # command imports its own module, plainly, so `kwb series list` does not pay for paramiko and the CI
    # engine. Every name of COMMAND_MODULES has its line; a missing one is a bug in kwb, not a user error.
    match name:
        case "series":
            from harness.cli import series

            return series
        case "kernel":
            from harness.cli import kernel

            return kernel
        case "vm":
            from harness.cli import vm

            return vm
        case "run":
            from harness.cli import run

            return run
        case "concern":
            from harness.cli import concern

            return concern
        case "report":
            from harness.cli import report

            return report
        case "ci":
            from harness.cli import ci

            return ci
        case "pipeline":
            from harness.cli import pipeline

            return pipeline
        case "mutate":
            from harness.cli import mutate

            return mutate
        case "guest_root":
            from harness.cli import guest_root

            return guest_root
        case _:
            raise AssertionError(f"no command module {name!r}")


def _modules(command: str | None) -> list[ModuleType]:
    names = [COMMANDS[command]] if command in COMMANDS else COMMAND_MODULES
    return [_load(name) for name in names]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `kwb` argument parser: every command, or only ``command``'s module when it is a known one
    (usage errors and `kwb --help` get every command)."""
    parser = _Parser(prog="kwb", description="Kernel patch-series workbench.")
    parser.add_argument("--version", action="version", version=f"kwb {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no live progress (CI logs)")
    parser.add_argument("--profile", metavar="NAME", default=None,
                        help=f"series profile (harness/profiles/NAME; known: {', '.join(profile.names())}; "
                             f"default: {profile.default_name()})")
    parser.add_argument("--host-root", action="store_true",
                        help="boot guests on the host's root (read-only 9p, full user network) instead of "
                             "kwb's isolated image: the host's tools in the guest, for your own machine only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in _modules(command):
        module.register(sub)
    _add_profile_everywhere(parser)
    return parser


def _add_profile_everywhere(parser: argparse.ArgumentParser) -> None:
    # `kwb series concerns --profile X` as well as `kwb --profile X series concerns`: every command
    # works on a series, so every command takes the option (SUPPRESS keeps the top-level value when the
    # subcommand's is not given).
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                if not any("--profile" in a.option_strings for a in child._actions):
                    child.add_argument("--profile", metavar="NAME", default=argparse.SUPPRESS,
                                       help="series profile (default: the top-level --profile)")
                _add_profile_everywhere(child)


def check_profile(chosen: profile.Profile) -> None:
    """Everything the profile points at loads (concerns with their regexes, each tree's variants, the
    workloads it names), so a broken profile fails here in one line, before anything runs."""
    load_catalogue(chosen.concerns_file)
    for era in chosen.trees.values():
        load_variants(era.variants_dir / "variants.toml")
    known = load_workloads()
    where = chosen.root / "profile.toml"
    named = {"workloads.series": chosen.series_workloads or (), "workloads.series_extra": chosen.series_extra,
             "workloads.baseline": chosen.baseline_workloads}
    for key, names in named.items():
        for w in names:
            if w not in known:
                raise UserError(f"{where}: key '{key}': unknown workload {w!r} (known: {', '.join(known)})")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into KeyboardInterrupt so `finally` blocks (result files, guest teardown) run.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run kwb; returns the process exit code."""
    try:
        # The parser reads the profile list and the default profile's name: bad data is one line too.
        parser = build_parser(command_word(sys.argv[1:] if argv is None else argv))
    except KwbError as exc:
        print(f"kwb: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return ExitCode.USAGE
    signal.signal(signal.SIGTERM, _on_sigterm)
    if getattr(args, "host_root", False):
        # An environment variable so every guest this run starts (and its child kwb processes) agree.
        os.environ["KWB_GUEST_ROOT"] = "host"
    try:
        check_profile(profile.use(getattr(args, "profile", None)))
        return int(args.func(args))
    except KwbError as exc:
        print(f"kwb: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("kwb: interrupted", file=sys.stderr)
        return int(ExitCode.INFRASTRUCTURE)
    except BrokenPipeError:
        return int(ExitCode.PASS)
    except Exception as exc:
        # Anything no stage expected is a bug in kwb, not the machine's fault: exit 4, one line.
        if os.environ.get("KWB_TRACEBACK") == "1":
            traceback.print_exc()
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
        message = " ".join(str(exc).split())
        print(f"kwb: bug in kwb: {type(exc).__name__}{at}: {message} (KWB_TRACEBACK=1 shows the traceback)",
              file=sys.stderr)
        return int(ExitCode.BUG)


if __name__ == "__main__":
    raise SystemExit(main())
