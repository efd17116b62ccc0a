"""Kconfig fragments: resolve, merge onto tinyconfig, olddefconfig, then verify every requested symbol.

A fragment is a ``kconfig/<name>.config`` file (or any path). Symbols are ``CONFIG_FOO=value`` or
``# CONFIG_FOO is not set``; the last fragment wins. After ``olddefconfig`` a symbol the tree's Kconfig
dropped (unmet dependency, typo, renamed) is an error listing all of them, never a silent surprise.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import InfraError, UserError
from harness.core.paths import project_root
from harness.core.run import Result, run

DEFAULT_FRAGMENTS = ("base", "block", "io_uring", "fs", "tracing", "debug")
CONFIG_TIMEOUT = 300.0

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


@dataclass(frozen=True)
class Fragment:
    """One kconfig fragment file and the symbols it requests."""

    name: str
    path: Path
    symbols: dict[str, str]


def fragment_dir() -> Path:
    """The project's ``kconfig/`` directory."""
    return project_root() / "kconfig"


def available_fragments() -> list[str]:
    """Names of the fragments shipped in ``kconfig/``."""
    return sorted(p.stem for p in fragment_dir().glob("*.config"))


def parse_symbols(text: str, origin: str = "<text>") -> dict[str, str]:
    """``{CONFIG_X: value}`` from .config syntax; "not set" becomes ``"n"``; quotes are kept."""
    symbols: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        unset = _UNSET.match(line)
        if unset:
            symbols[unset.group(1)] = "n"
            continue
        if line.startswith("#"):
            continue
        setm = _SET.match(line)
        if not setm:
            raise UserError(f"{origin}:{number}: not a kconfig line: {line!r}")
        symbols[setm.group(1)] = setm.group(2)
    return symbols


def load_fragment(name_or_path: str) -> Fragment:
    """A fragment by name (``kconfig/<name>.config``) or by path; UserError names a missing one."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".config" and candidate.is_file():
        path = candidate
    else:
        path = fragment_dir() / f"{name_or_path}.config"
        if not path.is_file():
            raise UserError(f"unknown kconfig fragment {name_or_path!r} "
                            f"(available: {', '.join(available_fragments())})")
    text = path.read_text(encoding="utf-8")
    return Fragment(name=path.stem, path=path.resolve(), symbols=parse_symbols(text, str(path)))


def load_fragments(names: Sequence[str] | None = None) -> list[Fragment]:
    """The default fragment set plus any extra ones named (duplicates dropped, order kept)."""
    wanted: list[str] = list(DEFAULT_FRAGMENTS)
    for name in names or ():
        if name not in wanted:
            wanted.append(name)
    return [load_fragment(n) for n in wanted]


def requested(fragments: Sequence[Fragment]) -> dict[str, str]:
    """All requested symbols, later fragments overriding earlier ones."""
    merged: dict[str, str] = {}
    for frag in fragments:
        merged.update(frag.symbols)
    return merged


# make variables that change what kconfig writes. RUSTC: kconfig records the host rustc's version
# (CONFIG_RUSTC_VERSION) and every object depends on it, so a rustup shim that resolves under one HOME
# and not another gave different .config files behind one config hash, and full rebuilds. kwb builds
# no Rust: "no rustc" everywhere. LOCALVERSION set (even empty): no "+" appended for a dirty git tree.
CONFIG_MAKE_VARS = ("LOCALVERSION=", "RUSTC=/bin/false")


def config_hash(fragments: Sequence[Fragment], base_target: str = "tinyconfig") -> str:
    """A digest of what defines the configuration (base target, the make variables that reach kconfig,
    fragment contents in order)."""
    digest = hashlib.sha256(base_target.encode())
    digest.update("\0".join(CONFIG_MAKE_VARS).encode())
    for frag in fragments:
        digest.update(b"\0" + frag.name.encode() + b"\0" + frag.path.read_bytes())
    return digest.hexdigest()


def missing_symbols(config_text: str, wanted: dict[str, str]) -> list[str]:
    """Human-readable ``CONFIG_X (wanted y, got n)`` for every requested symbol not in ``config_text``."""
    actual = parse_symbols(config_text, ".config")
    missing = []
    for symbol, value in wanted.items():
        got = actual.get(symbol, "n")
        if got != value:
            missing.append(f"{symbol} (wanted {value}, got {got if symbol in actual else 'absent'})")
    return missing


def verify(config: Path, wanted: dict[str, str]) -> None:
    """InfraError listing every requested symbol the final ``.config`` does not have."""
    missing = missing_symbols(config.read_text(encoding="utf-8"), wanted)
    if missing:
        raise InfraError(f"kconfig dropped {len(missing)} requested symbol(s) in {config}: "
                         + "; ".join(missing))


def configure(tree: Path, build_dir: Path, fragments: Sequence[Fragment], make_args: Sequence[str],
              log: Path, on_line: Callable[[str], None] | None = None) -> Path:
    """tinyconfig, merge the fragments, olddefconfig, verify; returns ``build_dir/.config``."""
    build_dir.mkdir(parents=True, exist_ok=True)
    config = build_dir / ".config"
    _step(["make", "-C", str(tree), f"O={build_dir}", *make_args, "tinyconfig"], tree, log, on_line)
    merge = tree / "scripts" / "kconfig" / "merge_config.sh"
    if not merge.is_file():
        raise InfraError(f"not a kernel tree (no scripts/kconfig/merge_config.sh): {tree}")
    _step(["bash", str(merge), "-m", "-O", str(build_dir), str(config), *(str(f.path) for f in fragments)],
          tree, log, on_line)
    _step(["make", "-C", str(tree), f"O={build_dir}", *make_args, "olddefconfig"], tree, log, on_line)
    verify(config, requested(fragments))
    return config


def _step(argv: list[str], cwd: Path, log: Path, on_line: Callable[[str], None] | None) -> Result:
    res = run(argv, cwd=cwd, timeout=CONFIG_TIMEOUT, log=log, on_line=on_line)
    if not res.ok:
        what = "timed out" if res.timed_out else f"exit {res.returncode}"
        raise InfraError(f"kernel configuration step {argv[-1]!r} failed ({what}): {res.tail(1).strip()} "
                         f"(log: {log})")
    return res
