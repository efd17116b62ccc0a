"""Kernel tree eras: typed view of ``kernel-eras.toml`` (kconfig needs, mkfs options, kprobe role names
per range of kernel releases) and the era of a given release.

The data file sits beside this module; ``KWB_ERAS`` names another file (tests, or a user's own eras).
Resolution against a tree or a built kernel is in :mod:`harness.kernel.eras.resolve`.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import InfraError, UserError
from harness.core.tomlfile import load_toml

ERAS_FILE = Path(__file__).resolve().parent / "kernel-eras.toml"
ENV = "KWB_ERAS"
_RELEASE = re.compile(r"^(\d+)\.(\d+)")


@dataclass(frozen=True)
class KconfigNeed:
    """A symbol an era needs merged so the fragments' symbols survive ``olddefconfig``."""

    symbol: str
    value: str
    why: str
    when: tuple[str, ...] = ()  # only when a fragment requests one of these (empty: always)


@dataclass(frozen=True)
class MkfsOptions:
    """Extra mkfs options for one filesystem on this era's kernels."""

    fs: str
    options: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class Era:
    """One range of kernel releases and what kwb must do differently on it."""

    name: str
    min: tuple[int, int]
    max: tuple[int, int] | None
    description: str
    kconfig: tuple[KconfigNeed, ...] = ()
    mkfs: dict[str, MkfsOptions] = field(default_factory=dict)
    roles: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def contains(self, release: tuple[int, int]) -> bool:
        """True when ``release`` (major, minor) is in ``[min, max)``."""
        return self.min <= release and (self.max is None or release < self.max)

    def mkfs_options(self, fs: str) -> list[str]:
        """The extra mkfs options for ``fs`` on this era (empty when none are needed)."""
        entry = self.mkfs.get(fs)
        return list(entry.options) if entry else []


def parse_release(text: str) -> tuple[int, int]:
    """``(major, minor)`` of a release string such as ``5.8.1`` or ``6.9.0-rc1``; UserError otherwise."""
    m = _RELEASE.match(text.strip())
    if not m:
        raise UserError(f"not a kernel release: {text!r} (expected MAJOR.MINOR[...])")
    return int(m.group(1)), int(m.group(2))


def eras_file() -> Path:
    """The era data file in use (``$KWB_ERAS`` or the packaged one)."""
    env = os.environ.get(ENV)
    return Path(env) if env else ERAS_FILE


def load_eras(path: Path | None = None) -> list[Era]:
    """Every era of the data file, checked: each has a name and a valid range, none overlap."""
    path = path or eras_file()
    data = load_toml(path, "kernel eras file", error=UserError if os.environ.get(ENV) else InfraError)
    raw = data.get("era")
    if not isinstance(raw, list) or not raw:
        raise UserError(f"kernel eras file {path}: no [[era]] tables")
    eras = [_era(entry, path, i) for i, entry in enumerate(raw, 1)]
    ordered = sorted(eras, key=lambda e: e.min)
    for lower, upper in itertools.pairwise(ordered):
        if lower.max is None or lower.max > upper.min:
            raise UserError(f"kernel eras file {path}: eras {lower.name!r} and {upper.name!r} overlap")
    return eras


def era_for(release: str, eras: list[Era] | None = None) -> Era:
    """The era a release belongs to; UserError naming the release and the known ranges otherwise."""
    known = eras if eras is not None else load_eras()
    wanted = parse_release(release)
    for era in known:
        if era.contains(wanted):
            return era
    ranges = ", ".join(f"{e.name} [{_text(e.min)}, {_text(e.max) if e.max else '…'})" for e in known)
    raise UserError(f"no kernel era covers release {release} (known: {ranges}); add one to {eras_file()}")


def _text(version: tuple[int, int] | None) -> str:
    return "" if version is None else f"{version[0]}.{version[1]}"


def _era(entry: Any, path: Path, index: int) -> Era:
    where = f"kernel eras file {path}: era #{index}"
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise UserError(f"{where}: needs a name")
    where = f"kernel eras file {path}: era {entry['name']!r}"
    try:
        low = parse_release(str(entry["min"]))
        high = parse_release(str(entry["max"])) if "max" in entry else None
    except (KeyError, UserError) as exc:
        raise UserError(f"{where}: min/max must be releases like \"5.8\" ({exc})") from None
    if high is not None and high <= low:
        raise UserError(f"{where}: max {entry['max']} is not above min {entry['min']}")
    kconfig = []
    for symbol, need in dict(entry.get("kconfig", {}).get("symbols", {})).items():
        if not re.fullmatch(r"CONFIG_[A-Za-z0-9_]+", symbol) or not isinstance(need, dict):
            raise UserError(f"{where}: kconfig symbol {symbol!r} must be CONFIG_X = {{ value, why }}")
        if not isinstance(need.get("value"), str) or not isinstance(need.get("why"), str):
            raise UserError(f"{where}: {symbol} needs a string value and a why")
        kconfig.append(KconfigNeed(symbol, need["value"], need["why"], tuple(need.get("when", ()))))
    mkfs = {}
    for fs, spec in dict(entry.get("mkfs", {})).items():
        options = spec.get("options") if isinstance(spec, dict) else None
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise UserError(f"{where}: mkfs.{fs}.options must be a list of strings")
        mkfs[fs] = MkfsOptions(fs, tuple(options), str(spec.get("why", "")))
    roles = {}
    for role, spec in dict(entry.get("roles", {})).items():
        cands = spec.get("candidates") if isinstance(spec, dict) else None
        if not isinstance(cands, list) or not cands or not all(isinstance(c, str) for c in cands):
            raise UserError(f"{where}: roles.{role}.candidates must be a non-empty list of names")
        roles[role] = tuple(cands)
    return Era(entry["name"], low, high, str(entry.get("description", "")), tuple(kconfig), mkfs, roles)
