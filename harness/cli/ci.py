"""`kwb ci plan|run-shard|watch`: the CI matrix as JSON, one shard of it, and the list-archive watcher."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from harness.core.errors import InfraError, UserError
from harness.core.paths import cache_dir, results_root
from harness.core.progress import Progress
from harness.core.run import run
from harness.kernel import kconfig
from harness.kernel.variants import get_variant
from harness.orchestrate import ci
from harness.orchestrate.pipeline import DEFAULT_FILESYSTEMS, Options, run_pipeline
from harness.orchestrate.stages import real_stages
from harness.report.schema import load_results

WATCH_RUN_TIMEOUT = 6 * 3600.0  # one full test-series on TCG, with room to spare


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _ints(text: str) -> list[int]:
    try:
        return [int(p) for p in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated revision numbers, not {text!r}") from None


def _matrix_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fs", type=_csv, default=list(DEFAULT_FILESYSTEMS), help="comma-separated filesystems")
    p.add_argument("--variants", type=_csv, help="comma-separated variants (default tree; default: all)")
    p.add_argument("--revisions", type=_ints, help="comma-separated revisions: revision × fs (needs --tree)")
    p.add_argument("--coverage", action="store_true", help="include the coverage variant")
    p.add_argument("--shards", type=int, help="number of shards (default: one per matrix item)")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Register `kwb ci`."""
    p = sub.add_parser("ci", help="CI: matrix plan, run one shard, watch a list archive")
    verbs = p.add_subparsers(dest="ci_command", metavar="VERB", required=True)
    plan = verbs.add_parser("plan", help="print the test matrix as JSON (drives the CI files)")
    _matrix_args(plan)
    plan.add_argument("--include-only", action="store_true",
                      help='print only {"include": [{"shard": "I/N"}, ...]} (a GitHub Actions matrix)')
    plan.set_defaults(func=_plan)
    shard = verbs.add_parser("run-shard", help="run shard I/N of the matrix (what each CI matrix job runs)")
    _matrix_args(shard)
    shard.add_argument("--shard", required=True, help="I/N, e.g. 2/5")
    shard.add_argument("--plan", type=Path, help="plan JSON from `kwb ci plan` (default: recompute it)")
    shard.add_argument("--source", help="as for test-series (default: shared archive, else lore, else skip)")
    shard.add_argument("--tree", type=Path)
    shard.add_argument("--base")
    shard.add_argument("--workloads", type=_csv)
    shard.add_argument("--out", type=Path)
    shard.set_defaults(func=_run_shard)
    cfg = verbs.add_parser("config-hash", help="the kernel configuration hash (a CI cache key part)")
    cfg.add_argument("--variant", default="series", help="variant whose configuration (default: series)")
    cfg.add_argument("--check", type=Path, metavar="FILE",
                     help="fail unless FILE (e.g. ci/kernel-config.hash) holds the current hash")
    cfg.set_defaults(func=_config_hash)
    merged = verbs.add_parser("check-merged", help="does a merged run hold every job of the plan, and "
                                                   "does its junit.xml match its jobs")
    merged.add_argument("--plan", type=Path, required=True, help="plan JSON from `kwb ci plan`")
    merged.add_argument("run", type=Path, help="the merged run directory (e.g. merged/latest)")
    merged.set_defaults(func=_check_merged)
    watch = verbs.add_parser("watch", help="start a run for each new revision of the tracked series")
    watch.add_argument("--source", required=True, help="public-inbox repository or mbox")
    watch.add_argument("--state", type=Path, help="state file (default: in the cache dir, per source)")
    watch.add_argument("--dry-run", action="store_true", help="say what would run; start and save nothing")
    watch.add_argument("--seed", action="store_true", help="record what is there now without running it")
    watch.add_argument("--tree", type=Path, help="tree the new revisions are applied to")
    watch.add_argument("--base")
    watch.add_argument("--polls", type=int, default=1, help="number of polls (0: forever)")
    watch.add_argument("--interval", type=float, default=600.0, help="seconds between polls")
    watch.set_defaults(func=_watch)


def _plan_data(args: argparse.Namespace) -> dict[str, Any]:
    if args.revisions:
        return ci.plan(args.fs, revisions=args.revisions, shards=args.shards)
    variants = args.variants
    if not variants:
        catalogue = real_stages().variant_catalogue()
        # Equivalent mutants are documented, not run (see orchestrate.pipeline): no matrix cell for them.
        variants = [v.name for v in catalogue
                    if (v.kind != "coverage" or args.coverage) and not v.equivalent]
    return ci.plan(args.fs, variants=variants, shards=args.shards)


def _plan(args: argparse.Namespace) -> int:
    data = _plan_data(args)
    print(json.dumps({"include": data["include"]} if args.include_only else data))
    return 0


def _load_plan(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data.get("items"), list) or data.get("kind") not in ("variant", "revision"):
            raise KeyError("items/kind")
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"--plan {path}: not a kwb ci plan ({exc})") from exc
    return data


def _run_shard(args: argparse.Namespace) -> int:
    plan = _load_plan(args.plan) if args.plan else _plan_data(args)
    i, n = ci.parse_shard(args.shard)
    if not args.plan:  # recomputed here: the job count is the shard count
        plan = {**plan, "shards": n}
    items = ci.shard_of_plan(plan, i, n)
    progress = Progress(quiet=args.quiet)
    if not items:
        progress.note(f"shard {i}/{n}: nothing to run (the plan has {plan['shards']} shards)")
        return 0
    command = "kwb " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "kwb ci run-shard"
    out_root = args.out or results_root()
    base = Options(source=args.source, out_root=out_root, command=command, tree=args.tree, base=args.base,
                   coverage=args.coverage, workloads=args.workloads)
    if plan["kind"] == "variant":
        base.matrix = ci.group_items(items, "variant")
        return run_pipeline(base, real_stages(), progress)
    worst = 0
    for revision, fss in ci.group_items(items, "revision").items():
        opts = Options(**{**base.__dict__, "revision": int(revision), "filesystems": fss})
        worst = max(worst, run_pipeline(opts, real_stages(), progress))
    return worst


def config_hash(variant: str = "series") -> str:
    """The configuration hash of ``variant``'s kernel (what names its build directory)."""
    return kconfig.config_hash(kconfig.load_fragments(list(get_variant(variant).fragments)))


def _config_hash(args: argparse.Namespace) -> int:
    value = config_hash(args.variant)
    if args.check is not None:
        try:
            recorded = args.check.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UserError(f"--check {args.check}: cannot read ({exc.strerror})") from exc
        if recorded != value:
            raise UserError(f"{args.check} holds {recorded[:12] or 'nothing'}, the kernel configuration "
                            f"is {value[:12]}: write `kwb ci config-hash > {args.check}` and commit it "
                            "(it keys the CI cache)")
    print(value)
    return 0


def _check_merged(args: argparse.Namespace) -> int:
    plan = _load_plan(args.plan)
    results = load_results(args.run)
    junit = args.run / "junit.xml"
    if not junit.is_file():
        raise UserError(f"{args.run}: no junit.xml")
    problems = ci.check_merged(plan, results, junit.read_text(encoding="utf-8"))
    for problem in problems:
        print(f"kwb ci check-merged: {problem}", file=sys.stderr)
    if problems:
        raise UserError(f"{args.run}: the merged run does not match the plan ({len(problems)} problems)")
    print(f"{args.run}: {len(results['jobs'])} jobs cover the plan's {len(plan['items'])} items; "
          f"junit.xml agrees")
    return 0


def _kwb() -> str:
    # The kwb beside this interpreter (the project's venv), else whatever PATH finds.
    beside = Path(sys.executable).parent / "kwb"
    return str(beside) if beside.is_file() else "kwb"


def _start_run(args: argparse.Namespace) -> ci.StartRun:
    def start(family: Any, revision: Any) -> dict[str, Any]:
        argv = [_kwb(), "-q", "test-series", "--source", args.source, "--revision", str(revision.version)]
        if args.tree:
            argv += ["--tree", str(args.tree)] + (["--base", args.base] if args.base else [])
        log = cache_dir() / "watch" / "logs" / f"v{revision.version}-{int(time.time())}.log"
        print(f"kwb ci watch: starting v{revision.version} ({revision.label}): {shlex.join(argv)}",
              file=sys.stderr)
        res = run(argv, timeout=WATCH_RUN_TIMEOUT, log=log)
        if res.timed_out:
            raise InfraError(f"run for v{revision.version} timed out after {WATCH_RUN_TIMEOUT:.0f}s "
                             f"(log {log})")
        return {"argv": argv, "exit_code": res.returncode, "log": str(log), "seconds": round(res.duration, 1)}

    return start


def _watch(args: argparse.Namespace) -> int:
    state = ci.load_state(args.state or ci.default_state_path(args.source))
    load_family = real_stages().load_family
    polls = 0
    while True:
        triggers = ci.watch_once(args.source, state, _start_run(args), load_family=load_family,
                                 seed=args.seed, dry_run=args.dry_run)
        verb = "would start" if args.dry_run else "started"
        for t in triggers:
            print(f"{verb}: v{t.version} ({t.label}) {t.key}")
        if args.seed:
            print(f"seeded {len(state.seen)} revisions into {state.path}")
        polls += 1
        if args.polls and polls >= args.polls:
            return 0
        time.sleep(args.interval)
