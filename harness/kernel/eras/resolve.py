"""Eras applied to a real tree or a built kernel: kconfig fragments resolved for the tree at hand, kprobe
roles resolved against the built kernel's System.map, mkfs options for the kernel's release.

* Before anything is merged, every symbol the fragments set is looked up in the tree's own Kconfig
  files: one the tree does not define is an error naming it and its fragment (a ``not set`` one is only
  noted: asking for "off" is already true); the era's needs (e.g. MODULES for KPROBES on trees before
  6.10) come from the era data and are merged as one more fragment, which is part of the config hash.
* A role that cannot be probed says why (no symbol: inlined or not built; in a section kprobes refuse).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.core import atomic
from harness.core.errors import UserError
from harness.core.paths import cache_dir
from harness.kernel.eras import Era, KconfigNeed, era_for
from harness.kernel.kconfig import Fragment, parse_symbols, requested
from harness.kernel.tree import git, kernel_release_of

_CONFIG = re.compile(r"^\s*(?:menu)?config\s+([A-Za-z0-9_]+)\s*$", re.M)
# Address ranges the kernel's kprobe blacklist covers (x86: entry text, kprobes' own text, noinstr).
BLACKLIST_SECTIONS = (("__kprobes_text_start", "__kprobes_text_end", "the kprobes text section"),
                      ("__entry_text_start", "__entry_text_end", "the entry text section"),
                      ("__noinstr_text_start", "__noinstr_text_end", "the noinstr text section"),
                      ("__irqentry_text_start", "__irqentry_text_end", "the irqentry text section"))


@dataclass
class Resolution:
    """What resolving fragments for a tree did."""

    era: str
    release: str
    fragments: list[Fragment]
    added: dict[str, str] = field(default_factory=dict)       # symbol -> why (the era's needs)
    absent_unset: list[str] = field(default_factory=list)     # "not set" symbols the tree lacks

    def notes(self) -> list[str]:
        """One line per thing worth telling the user (nothing for an era that needs nothing)."""
        out = [f"era {self.era} (Linux {self.release}): adds {sym} ({why})"
               for sym, why in self.added.items()]
        if self.absent_unset:
            out.append(f"era {self.era}: not in this tree's Kconfig, asked to be off (already true): "
                       + ", ".join(self.absent_unset))
        return out


def kconfig_symbols(tree: Path) -> set[str]:
    """``CONFIG_X`` for every ``config X`` / ``menuconfig X`` in the tree's Kconfig files."""
    found: set[str] = set()
    for root, dirs, files in os.walk(tree):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("Kconfig"):
                text = Path(root, name).read_text(encoding="utf-8", errors="replace")
                found.update(f"CONFIG_{m}" for m in _CONFIG.findall(text))
    return found


def tree_symbols(tree: Path) -> set[str]:
    """:func:`kconfig_symbols`, kept in the cache per git tree id (a walk of a current tree takes ~3 s and
    every build asks); a tree with uncommitted Kconfig changes, or no git, is walked each time."""
    head = git(tree, "rev-parse", "HEAD^{tree}", check=False, timeout=60)
    dirty = git(tree, "status", "--porcelain", "--", "*Kconfig*", check=False, timeout=120)
    if not head.ok or not dirty.ok or dirty.stdout.strip():
        return kconfig_symbols(tree)
    path = cache_dir() / "eras" / f"symbols-{head.stdout.strip()}.txt"
    if path.is_file():
        return set(path.read_text(encoding="utf-8").split())
    found = kconfig_symbols(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, "\n".join(sorted(found)) + "\n")
    return found


def resolve_fragments(tree: Path, fragments: Sequence[Fragment], era: Era | None = None,
                      symbols: set[str] | None = None) -> Resolution:
    """The fragments for ``tree``: checked against its Kconfig, plus the era's needs as one fragment.

    UserError (before any merge) when a fragment sets a symbol the tree does not define, or when the
    era needs a symbol the tree lacks.
    """
    release = kernel_release_of(tree)
    era = era or era_for(release)
    known = symbols if symbols is not None else tree_symbols(tree)
    wanted = requested(fragments)
    owners = {sym: frag.name for frag in fragments for sym in frag.symbols}
    # A tree without a single Kconfig file is no kernel tree kconfig could configure (a test's fake
    # tree): nothing to check against, olddefconfig and verify() still judge what it keeps.
    absent_set = [f"{sym}={val} ({owners[sym]})" for sym, val in wanted.items()
                  if known and sym not in known and val != "n"]
    if absent_set:
        raise UserError(f"kconfig: {len(absent_set)} symbol(s) the fragments set are not defined in "
                        f"{tree} (Linux {release}, era {era.name}): " + ", ".join(absent_set))
    result = Resolution(era.name, release, list(fragments),
                        absent_unset=sorted(s for s, v in wanted.items() if known and s not in known
                                            and v == "n"))
    needs = [n for n in era.kconfig
             if not n.when or any(wanted.get(w, "n") != "n" for w in n.when)]
    needs = [n for n in needs if wanted.get(n.symbol) != n.value]
    missing = [n.symbol for n in needs if known and n.symbol not in known]
    if missing:
        raise UserError(f"era {era.name} needs {', '.join(missing)}, which {tree} does not define")
    if needs:
        result.fragments.append(_era_fragment(era, needs))
        result.added = {n.symbol: n.why for n in needs}
    return result


def _era_fragment(era: Era, needs: Iterable[KconfigNeed]) -> Fragment:
    """The era's needs written as a fragment file in the cache (named by its content)."""
    lines = [f"# kwb era {era.name}: symbols this era needs for the fragments to hold"]
    for need in needs:
        lines += [f"# {need.why}", f"{need.symbol}={need.value}"]
    text = "\n".join(lines) + "\n"
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", era.name).strip("-")
    path = cache_dir() / "eras" / f"era-{slug}-{hashlib.sha256(text.encode()).hexdigest()[:10]}.config"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, text)
    return Fragment(name=f"era-{slug}", path=path, symbols=parse_symbols(text, str(path)))


@dataclass(frozen=True)
class RolePoint:
    """A kprobe role on one built kernel: the symbol to probe, or why it cannot be probed."""

    role: str
    function: str | None
    reason: str = ""

    @property
    def probeable(self) -> bool:
        """True when a kprobe can be placed on ``function``."""
        return self.function is not None and not self.reason


def parse_system_map(text: str) -> dict[str, tuple[int, str]]:
    """``{name: (address, type)}`` of a System.map (the first entry of a repeated name wins)."""
    out: dict[str, tuple[int, str]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and re.fullmatch(r"[0-9a-fA-F]+", parts[0]):
            out.setdefault(parts[2], (int(parts[0], 16), parts[1]))
    return out


def resolve_roles(system_map: str, roles: dict[str, tuple[str, ...]]) -> list[RolePoint]:
    """Each role's first candidate present as a text symbol (or a compiler clone of it), else why not."""
    symbols = parse_system_map(system_map)
    ranges = [(symbols[a][0], symbols[b][0], what) for a, b, what in BLACKLIST_SECTIONS
              if a in symbols and b in symbols]
    points = []
    for role, candidates in roles.items():
        point = None
        for cand in candidates:
            name = _text_symbol(symbols, cand)
            if name is None:
                continue
            addr = symbols[name][0]
            section = next((what for lo, hi, what in ranges if lo <= addr < hi), None)
            point = RolePoint(role, name, f"{name} is in {section}, which kprobes refuse" if section else "")
            break
        if point is None:
            names = " or ".join(candidates)
            point = RolePoint(role, None, f"not probeable on this kernel: no text symbol {names} in "
                              "System.map (inlined into its callers, or not built)")
        points.append(point)
    return points


def _text_symbol(symbols: dict[str, tuple[int, str]], name: str) -> str | None:
    if name in symbols and symbols[name][1] in "tT":
        return name
    pattern = re.compile(rf"^{re.escape(name)}(\.[a-z_]+\.[0-9]+)+$")
    clones = sorted(n for n, (_a, kind) in symbols.items() if kind in "tT" and pattern.match(n))
    return clones[0] if clones else None


def roles_for_kernel(system_map: Path, release: str) -> list[RolePoint]:
    """The era's roles resolved on a built kernel (``System.map`` beside its bzImage)."""
    if not system_map.is_file():
        raise UserError(f"no System.map at {system_map}: cannot resolve kprobe roles for this kernel")
    era = era_for(release)
    return resolve_roles(system_map.read_text(encoding="utf-8", errors="replace"), era.roles)


def mkfs_options(release: str, fs: str) -> list[str]:
    """Extra mkfs options so ``fs`` gets only features a ``release`` kernel can mount."""
    return era_for(release).mkfs_options(fs)


def probe_roles(bzimage: str | Path | None, release: str | None) -> dict[str, dict[str, str | None]]:
    """``{role: {function, reason}}`` of a built kernel (System.map beside its bzImage), for results.json;
    one ``{"*": {reason}}`` entry when they cannot be resolved at all (never raises: it is a report)."""
    if not bzimage or not release:
        return {"*": {"function": None, "reason": "no bzImage or release recorded for this kernel"}}
    try:
        points = roles_for_kernel(Path(bzimage).parent / "System.map", release)
    except UserError as exc:
        return {"*": {"function": None, "reason": str(exc)}}
    return {p.role: {"function": p.function, "reason": p.reason} for p in points}


def for_tree(tree: Path, fragments: Sequence[Fragment],
             progress: Callable[[str], None] | None = None) -> list[Fragment]:
    """The fragments resolved for ``tree``'s era (:func:`resolve_fragments`): symbols the tree does not
    define are reported before merging, the era's needs are one more fragment (so in the config hash)."""
    resolution = resolve_fragments(tree, fragments)
    for note in resolution.notes():
        if progress is not None:
            progress(note)
    return resolution.fragments
