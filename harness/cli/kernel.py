"""kwb commands: tree prepare, apply, build (issue: kernel pipeline)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.core.errors import ExitCode, UserError
from harness.core.paths import cache_dir
from harness.core.progress import Progress
from harness.kernel import apply, build, kconfig
from harness.kernel.tree import Tree, locked, prepare_tree, rev_parse
from harness.series import find_family, load_families
from harness.series.export import export_revision


def _progress(args: argparse.Namespace) -> Callable[[str], None] | None:
    """Progress on stderr: lines, plus the build's one live line (redrawn on a terminal); with -q only
    a build line every 30 s, so a CI log never goes silent for a whole build."""
    return Progress(quiet=bool(getattr(args, "quiet", False)))


def _done(args: argparse.Namespace, data: dict[str, Any], text: str) -> int:
    if not getattr(args, "quiet", False) and sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)
    return int(ExitCode.PASS)


def _tree_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tree", help="a local git tree or a git URL (default: harness/profiles/trees.toml)")
    parser.add_argument("--base", help="the base commit/ref in --tree")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def cmd_tree_prepare(args: argparse.Namespace) -> int:
    """kwb tree prepare."""
    tree = prepare_tree(args.tree, args.base, _progress(args))
    data = {"path": tree.path, "name": tree.name, "base": tree.base, "kind": tree.kind, "origin": tree.origin}
    return _done(args, data, f"{tree.kind} tree {tree.name} at {tree.path}, base {tree.base}")


def _revision_mbox(args: argparse.Namespace, workdir: Path) -> tuple[list[Path], str]:
    if args.mbox:
        return [Path(args.mbox)], Path(args.mbox).stem
    if args.patch:
        return [Path(p) for p in args.patch], Path(args.patch[0]).stem
    if not args.source or args.revision is None:
        raise UserError("kwb apply needs --source SRC --revision N, or --mbox FILE, or --patch FILE...")
    family = find_family(load_families(args.source), args.family)
    revision = family.revision(args.revision)
    if revision.missing:
        raise UserError(f"{family.name} v{revision.version}: patches missing from the archive: "
                        f"{', '.join(str(n) for n in revision.missing)}")
    mbox = export_revision(revision, workdir / f"v{revision.version}.mbox")
    return [mbox], f"{family.name}-v{revision.version}"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text.lower()).strip("-")[:60] or "series"


def cmd_apply(args: argparse.Namespace) -> int:
    """kwb apply."""
    say = _progress(args)
    frags = build.parse_fragment_args(args.fragment)
    with tempfile.TemporaryDirectory(prefix="kwb-apply-") as tmp:
        patches, label = _revision_mbox(args, Path(tmp))
        missing = [str(p) for p in patches if not p.is_file()]
        if missing:
            raise UserError(f"patch file not found: {', '.join(missing)}")
        with locked("kernel", progress=say):
            result, tree = _apply_locked(args, patches, label, frags, say)
    data = {**result.to_dict(), "tree": str(tree.path)}
    return _done(args, data, result.message)


def _apply_locked(args: argparse.Namespace, patches: list[Path], label: str, frags: list[str],
                  say: Callable[[str], None] | None) -> tuple[apply.ApplyResult, Tree]:
    """Prepare the tree and apply (the caller holds the kernel lock: trees are shared)."""
    tree = prepare_tree(args.tree, args.base, say)
    per_patch = None
    if args.per_patch_build:
        per_patch = _per_patch_builder(tree, kconfig.load_fragments(frags), say)
    branch = f"kwb/apply/{_slug(label)}"
    user_head = None if tree.kind == "debian" else _user_head(tree)
    result = apply.apply_patch_files(tree, patches, branch, progress=say, build=per_patch,
                                     check_applied_in=user_head)
    return result, tree


def _user_head(tree: Tree) -> str | None:
    """The user's own HEAD commit (their checkout's branch), to spot a series they already applied."""
    return rev_parse(Path(tree.origin), "HEAD") if tree.kind in ("local", "url") else None


def _per_patch_builder(tree: Tree, fragments: list[kconfig.Fragment],
                       say: Callable[[str], None] | None) -> apply.PatchBuild:
    cfg_hash = kconfig.config_hash(fragments)

    def run_build(number: int) -> None:
        log = cache_dir() / "logs" / f"per-patch-{tree.name}-{number:03d}-{int(time.time())}.log"
        config = build.configure_build_dir(tree, fragments, cfg_hash, log, say)
        build.make_kernel(tree, config.parent, log, say)

    return run_build


def cmd_build(args: argparse.Namespace) -> int:
    """kwb build."""
    frags = build.parse_fragment_args(args.fragment)
    say = _progress(args)
    if args.ref:
        kb = build.build_ref(args.ref, args.label or _slug(args.ref), tree=args.tree, base=args.base,
                             fragments=frags, progress=say)
    else:
        kb = build.ensure_kernel(args.variant, tree=args.tree, base=args.base, fragments=frags,
                                 progress=say)
    return _done(args, kb.to_dict(), f"{kb.variant}: {kb.bzimage} ({kb.release}, commit {kb.commit[:12]}, "
                 f"{kb.duration:.0f}s, log {kb.log})")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Register `tree prepare`, `apply`, `build`."""
    tree = sub.add_parser("tree", help="kernel trees")
    tree_sub = tree.add_subparsers(dest="tree_command", metavar="VERB", parser_class=type(tree))
    prep = tree_sub.add_parser("prepare", help="prepare the default tree (or --tree/--base) in the cache")
    _tree_args(prep)
    prep.set_defaults(func=cmd_tree_prepare)
    tree.set_defaults(func=lambda a: (tree.print_help(sys.stderr), int(ExitCode.USAGE))[1])

    ap = sub.add_parser("apply", help="apply a revision of a series on a dedicated kwb/apply/... branch")
    ap.add_argument("--source", help="mbox, Maildir, public-inbox dir or message-id")
    ap.add_argument("--family", help="series family name or index (default: the one the profile names)")
    ap.add_argument("--revision", type=int, help="revision number (e.g. 5)")
    ap.add_argument("--mbox", help="an mbox holding the patches, in order (e.g. from `kwb series export`)")
    ap.add_argument("--patch", nargs="+", help="patch files, applied in order")
    ap.add_argument("--per-patch-build", action="store_true", help="build after every patch (bisectability)")
    ap.add_argument("--fragment", action="append", help="extra kconfig fragment(s) for --per-patch-build")
    _tree_args(ap)
    ap.set_defaults(func=cmd_apply)

    bp = sub.add_parser("build", help="build a variant (default: series) of the tree, reusing the cache")
    bp.add_argument("--variant", default="series", help="a name from the profile's variants.toml")
    bp.add_argument("--ref", help="build this branch/commit of the tree instead of a variant")
    bp.add_argument("--label", help="name of the --ref build in the kernel cache")
    bp.add_argument("--fragment", action="append",
                    help=f"extra kconfig fragment(s): {', '.join(kconfig.available_fragments())}")
    _tree_args(bp)
    bp.set_defaults(func=cmd_build)
