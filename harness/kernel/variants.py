"""A tree's variants (the series profile's ``variants/<tree>/variants.toml``) and their branches.

A variant is the base plus an ordered list of project-written patches: ``series`` (the unmodified tree,
the series in its evolved form), ``baseline``, ``mutant-*`` (each re-introduces one reviewer concern),
``coverage``.
``checkout_variant`` makes branch ``kwb/variant/<name>`` = base + those patches (reused when up to date).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.core import profile
from harness.core.errors import UserError
from harness.core.tomlfile import load_toml
from harness.kernel import apply
from harness.kernel.tree import Tree

# "selftest": a test-only kernel for kwb's own real tests (e.g. a wedged reader); never in a default run.
KINDS = ("series", "baseline", "mutant", "coverage", "selftest")
_FALLBACK: list[dict[str, object]] = [{"name": "series", "kind": "series", "patches": [],
              "description": "the unmodified tree: the series' evolved form"}]


@dataclass(frozen=True)
class Variant:
    """One entry of variants.toml."""

    name: str
    kind: str
    patches: list[Path] = field(default_factory=list)
    description: str = ""
    concern: str = ""
    flagged_by: list[str] = field(default_factory=list)
    equivalent: str = ""
    fragments: list[str] = field(default_factory=list)  # extra kconfig fragments this variant needs


def variants_file(tree: str | None = None) -> Path:
    """The active profile's ``variants.toml`` for ``tree`` (default: the default tree)."""
    return profile.active().variants_file(tree)


def load_variants(path: Path | None = None) -> list[Variant]:
    """All variants, validated; without a variants.toml only ``series`` exists."""
    path = path or variants_file()
    entries = load_toml(path, "variants file").get("variant", []) if path.is_file() else _FALLBACK
    result = [_variant(entry, path.parent, i) for i, entry in enumerate(entries)]
    names = [v.name for v in result]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"{path}: duplicate variant name(s): {', '.join(dupes)}")
    if "series" not in names:
        result.insert(0, _variant(_FALLBACK[0], path.parent, -1))
    return result


def _variant(entry: Mapping[str, object], patch_dir: Path, index: int) -> Variant:
    name = entry.get("name")
    if not isinstance(name, str) or not name or "/" in name or " " in name:
        raise UserError(f"variants.toml entry {index + 1}: missing or invalid name {name!r}")
    kind = str(entry.get("kind", "mutant"))
    if kind not in KINDS:
        raise UserError(f"variant {name}: unknown kind {kind!r} (one of {', '.join(KINDS)})")
    patches = entry.get("patches", [])
    flagged = entry.get("flagged_by", [])
    fragments = entry.get("fragments", ["gcov"] if kind == "coverage" else [])
    if not all(isinstance(v, list) for v in (patches, flagged, fragments)):
        raise UserError(f"variant {name}: patches, flagged_by and fragments must be lists")
    assert isinstance(patches, list) and isinstance(flagged, list) and isinstance(fragments, list)
    paths = [patch_dir / str(p) for p in patches]
    for p in paths:
        if not p.is_file():
            raise UserError(f"variant {name}: patch file missing: {p}")
    return Variant(name=name, kind=kind, patches=paths, description=str(entry.get("description", "")),
                   concern=str(entry.get("concern", "")), flagged_by=[str(f) for f in flagged],
                   equivalent=str(entry.get("equivalent", "")), fragments=[str(f) for f in fragments])


def get_variant(name: str, path: Path | None = None) -> Variant:
    """The variant called ``name``; UserError lists the known ones."""
    known = load_variants(path)
    for v in known:
        if v.name == name:
            return v
    raise UserError(f"unknown variant {name!r} (known: {', '.join(v.name for v in known)})")


def checkout_variant(tree: Tree, name: str, *, progress: Callable[[str], None] | None = None,
                     path: Path | None = None) -> str:
    """Create (or reuse) branch ``kwb/variant/<name>`` = base + the variant's patches; returns the ref."""
    variant = get_variant(name, path)
    branch = f"kwb/variant/{name}"
    apply.apply_patch_files(tree, variant.patches, branch, progress=progress)
    return branch
