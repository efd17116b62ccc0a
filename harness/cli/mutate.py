"""`kwb mutate`: generated mutants over the series' lines, each built, booted and checked; a score."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from harness.core.atomic import write_text
from harness.core.errors import ExitCode, UserError
from harness.core.paths import cache_dir, project_root, results_root
from harness.core.progress import Progress
from harness.orchestrate.ci import parse_shard
from harness.orchestrate.coverage import git_source
from harness.orchestrate.mutate import generate, report
from harness.orchestrate.mutate.campaign import Settings, State, run_campaign, run_control, save_state
from harness.orchestrate.mutate.generate import Mutant, operators_file
from harness.orchestrate.mutate.kernel import MutantBuilder, object_of
from harness.orchestrate.mutate.real import (
    merge_states,
    plan_mutants,
    real_lab,
    reproduce_command,
    validate_checks,
)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Register `kwb mutate`."""
    p = sub.add_parser("mutate", help="mutation campaign over the series' lines: mutants, kills, a score",
                       description="Generate mutants over the series' lines (operators: "
                                   "mutate/operators.toml), build each incrementally (stillborn if "
                                   "it does not compile, equivalent if its object is unchanged), boot it and "
                                   "run the checks until the first kill. Resumable: run again with the same "
                                   "--out. Exit 0 when every mutant has an outcome, 2 when some are left "
                                   "(budget, errors), 1 when the score is below --min-score.")
    p.add_argument("--profile", help="series profile whose mutate.toml holds operators and campaign "
                                     "settings (a name under harness/profiles/, or a TOML file)")
    p.add_argument("--files", help="comma-separated source files (default: the campaign's)")
    p.add_argument("--max", type=int, help="at most N mutants, sampled with --seed")
    p.add_argument("--seed", type=int, help="sampling seed")
    p.add_argument("--budget", type=float, metavar="MIN", help="start no new mutant after MIN minutes")
    p.add_argument("--checks", help="comma-separated checks (catalogue workloads), in the starting order")
    p.add_argument("--fs", help="comma-separated filesystems the checks run on")
    p.add_argument("--out", type=Path, help="campaign directory (an existing one is resumed)")
    p.add_argument("--shard", help="run only shard I/N of the mutants (merge the shards with --merge)")
    p.add_argument("--only", help="comma-separated mutant ids to run (of the generated list)")
    p.add_argument("--control", action="store_true",
                   help="first run the checks on the unmodified kernel (once per campaign); stop if one "
                        "fails")
    p.add_argument("--rerun", action="store_true", help="with --only: run those mutants again (a reproducer)")
    p.add_argument("--list", action="store_true", help="print the mutants and stop (no build)")
    p.add_argument("--merge", nargs="+", type=Path, metavar="DIR",
                   help="merge campaign/shard dirs into --out")
    p.add_argument("--min-score", type=float, metavar="PCT", help="exit 1 when the score is below PCT")
    p.add_argument("--tree", type=Path, help="a user's tree (default: the default tree)")
    p.add_argument("--base", help="with --tree: the commit before the series")
    p.add_argument("--head", help="with --tree: the applied revision (e.g. a kwb/apply/... branch)")
    p.set_defaults(func=cmd_mutate)


def _csv(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def operators_path(profile: str | None) -> Path:
    """The operators/campaign file: a profile's mutate.toml, a TOML file, or the built-in one."""
    if not profile:
        return operators_file()
    as_file = Path(profile)
    if as_file.suffix == ".toml":
        if not as_file.is_file():
            raise UserError(f"--profile: no such file {as_file}")
        return as_file
    candidate = project_root() / "harness" / "profiles" / profile / "mutate.toml"
    if not candidate.is_file():
        raise UserError(f"--profile {profile}: no {candidate.relative_to(project_root())} "
                        f"(the built-in operators are {operators_file().relative_to(project_root())})")
    return candidate


def cmd_mutate(args: argparse.Namespace) -> int:
    """kwb mutate."""
    progress = Progress(quiet=getattr(args, "quiet", False))
    # survivors argued equivalent (docs/mutants.md): reported apart, out of the score's denominator
    argued = generate.load_equivalents(operators_path(args.profile))
    if args.merge:
        if args.out is None:
            raise UserError("--merge needs --out DIR (where the merged report goes)")
        merged = merge_states(args.merge)
        args.out.mkdir(parents=True, exist_ok=True)
        write_text(args.out / "state.json", json.dumps(merged.to_dict(), indent=1))
        report.write(merged, args.out, argued)
        return _exit(merged, args, progress, args.out, argued)
    if args.max is not None and args.max < 1:
        raise UserError(f"--max must be at least 1, not {args.max}")
    if args.budget is not None and args.budget <= 0:
        raise UserError(f"--budget must be a positive number of minutes, not {args.budget}")
    if args.rerun and not args.only:
        raise UserError("--rerun needs --only ID,... (which mutants to run again)")
    if args.tree is None and (args.base or args.head):
        raise UserError("--base/--head need --tree")
    path = operators_path(args.profile)
    operators, defaults = generate.load_operators(path), generate.load_defaults(path)
    settings = Settings(files=_csv(args.files) or defaults.files,
                        max=args.max if args.max is not None else defaults.max,
                        seed=args.seed if args.seed is not None else defaults.seed,
                        checks=_csv(args.checks) or defaults.checks,
                        filesystems=_csv(args.fs) or defaults.filesystems,
                        tree=str(args.tree) if args.tree else "default", shard=args.shard or "")
    if not settings.files:
        raise UserError("no files to mutate (--files, or `files` in the campaign settings)")
    validate_checks(settings.checks, settings.filesystems)
    if settings.shard:
        parse_shard(settings.shard)  # a bad I/N is a usage error before the tree is touched
    for f in settings.files:
        object_of(f)  # only C files have one object to build and compare
    out = args.out or results_root() / time.strftime("mutate-%Y%m%d-%H%M%S")
    builder = MutantBuilder(cache_dir() / "mutate", tree=args.tree, base=args.base, head=args.head,
                            progress=progress)
    with progress.step("prepare"):
        settings.series_commit = builder.prepare()
        assert builder.prepared is not None
        source = git_source(builder.prepared.path, settings.series_commit)
        mutants = plan_mutants(source, operators, settings, tree=args.tree, base=args.base, head=args.head)
    if args.list:
        for m in mutants:
            print(f"{m.id}\t{m.file}:{m.line}\t{m.original.strip()}  →  {m.mutated.strip()}")
        return int(ExitCode.PASS)
    if args.only:
        wanted = set(_csv(args.only) or [])
        unknown = wanted - {m.id for m in mutants}
        if unknown:
            raise UserError(f"--only: not among the generated mutants: {', '.join(sorted(unknown))}")
        mutants = [m for m in mutants if m.id in wanted]
    if not mutants:
        raise UserError("no mutants generated (no operator matches the series' lines of these files)")
    state = _state(out, settings, mutants)
    if args.rerun:
        for m in mutants:
            state.outcomes.pop(m.id, None)
    out.mkdir(parents=True, exist_ok=True)
    for m in mutants:
        write_text(out / "mutants" / f"{m.id}.diff", m.diff())
    progress.note(f"campaign: {out} ({len(mutants)} mutants)")
    try:
        start = time.monotonic()
        with progress.step("reference objects"):
            builder.reference(sorted({m.file for m in mutants}))
        state.wall_seconds += time.monotonic() - start
        lab = real_lab(builder, source, defaults.boot_timeout,
                       reproducer=reproduce_command(settings, out, profile=args.profile, base=args.base,
                                                    head=args.head))
        if args.control and (state.control or {}).get("status") != "survived":
            with progress.step("control"):
                run_control(state, lab, builder.series_kernel(), out, progress)
        run_campaign(state, lab, out, progress, budget_minutes=args.budget,
                     save=save_state(out / "state.json"), only={m.id for m in mutants})
    finally:
        save_state(out / "state.json")(state)
        report.write(state, out, argued)
        builder.restore()
    return _exit(state, args, progress, out, argued)


def _state(out: Path, settings: Settings, mutants: list[Mutant]) -> State:
    """A fresh state, or the one in ``out`` when it is the same campaign (resume)."""
    path = out / "state.json"
    if not path.is_file():
        return State(settings, mutants)
    state = State.from_dict(json.loads(path.read_text(encoding="utf-8")))
    if state.settings.key() != settings.key():
        raise UserError(f"{out} holds another campaign ({state.settings.key()}); use another --out")
    known = {m.id for m in state.mutants}
    state.mutants += [m for m in mutants if m.id not in known]
    state.settings.checks, state.settings.filesystems = settings.checks, settings.filesystems
    return state


def _exit(state: State, args: argparse.Namespace, progress: Progress, out: Path,
          argued: dict[str, generate.Argued]) -> int:
    s = report.summary(state, argued)
    score = s["score"]
    c = s["counts"]
    progress.note(f"mutation score: {'n/a' if score is None else f'{100 * score:.1f}%'} ({s['detected']}/"
                  f"{s['scored']}); survived {c['survived']}, stillborn {c['stillborn']}, equivalent "
                  f"{c['equivalent']} by object and {c['argued_equivalent']} argued, error {c['error']}, "
                  f"pending {c['pending']} — {out / 'report.md'}")
    if c["pending"] or c["error"]:
        return int(ExitCode.INFRASTRUCTURE)
    if args.min_score is not None and (score is None or 100 * score < args.min_score):
        return int(ExitCode.TEST_FAILURE)
    return int(ExitCode.PASS)
