"""Series profiles: everything kwb knows about one patch series, as data inside the package.

A profile is a directory ``harness/profiles/<name>/`` with ``profile.toml`` (checked against
``profile.schema.json``), the family metadata (``series.toml``: each revision's message-ids), the review
concerns (``concerns.toml``) and, per tree era, the variants written for that tree
(``variants/<tree>/variants.toml`` and its patches). :func:`load` is the one typed loader; every error
is one line naming the file, the key and what was expected, raised before anything runs.

The profile a process works on is chosen once (``--profile NAME``, :func:`use`) and read by the stages
through :func:`active`; ``KWB_PROFILE`` carries the choice into child kwb processes. Without either,
``profiles/default.toml`` names it. The default tree's definition is data too (``profiles/trees.toml``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from harness.core.errors import UserError
from harness.core.tomlfile import load_toml

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
SCHEMA_FILE = PROFILES_DIR / "profile.schema.json"
DEFAULT_FILE = PROFILES_DIR / "default.toml"
TREES_FILE = PROFILES_DIR / "trees.toml"
ENV = "KWB_PROFILE"
# series.toml keys holding regexes (matched against subjects): a bad one must fail at load, not later.
_SERIES_REGEX_KEYS = ("cover_subject", "patch_subjects")
_TREE_KEYS = ("name", "kind", "package", "tarball", "origin", "commit_message", "version", "release", "base")


@dataclass(frozen=True)
class Role:
    """One thing worth counting, and the function names that mark it in each kernel era."""

    name: str                    # also the kprobe event name (kwb/<name>)
    candidates: tuple[str, ...]  # first present name wins
    marks: str
    # Only ever called through a pointer (a wait-queue callback): it can't be inlined away, so when the
    # kernel has no symbol at all the code was dropped as dead and cannot have run (count 0).
    address_taken: bool = False


@dataclass(frozen=True)
class ReproCase:
    """One branch a concern asks about: the job that provokes it and the counters that must be > 0."""

    name: str
    job: str                     # "<workload>" (phase jobs: "<workload>@<phase>")
    counters: tuple[str, ...]    # evidence roles, probe counters or ret_<fn>_<value>; "a|b" alternatives
    means: str


@dataclass(frozen=True)
class TreeEra:
    """What a profile has for one kernel tree: its variants directory and patch-coverage file."""

    name: str
    variants_dir: Path
    coverage_file: Path | None


@dataclass(frozen=True)
class DefaultTree:
    """The tree kwb prepares by itself when no --tree is given."""

    name: str
    kind: str
    package: str
    tarball: Path
    origin: str
    commit_message: str  # "{release}" is replaced by the tree's kernel release
    version: str         # the pinned package version
    release: str         # the kernel release it unpacks to
    base: str            # the base commit kwb makes of it (same on every machine)


@dataclass(frozen=True)
class Profile:
    """A loaded, validated series profile."""

    name: str
    root: Path
    title: str
    series_file: Path
    concerns_file: Path
    concern_revisions: tuple[int, ...]
    trees: dict[str, TreeEra]
    roles: tuple[Role, ...]
    eras: tuple[tuple[str, tuple[str, ...]], ...]
    series_role: str
    punt_role: str
    proves: dict[str, str]                 # variant kind -> the check whose passing job proves it
    series_workloads: tuple[str, ...] | None  # None: the catalogue's default set
    series_extra: tuple[str, ...]
    baseline_workloads: tuple[str, ...]
    kprobes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    repro_extra_kprobes: tuple[str, ...] = ()
    repro_phases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    repro_retprobes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    repro_cases: dict[str, tuple[ReproCase, ...]] = field(default_factory=dict)

    def tree(self, name: str | None = None) -> TreeEra:
        """The profile's entry for tree ``name`` (default: the default tree); UserError if it has none."""
        wanted = name or default_tree().name
        era = self.trees.get(wanted)
        if era is None:
            raise UserError(f"profile {self.name}: no variants for tree {wanted!r} "
                            f"({self.root / 'profile.toml'}: trees; known: {', '.join(self.trees)})")
        return era

    def variants_file(self, tree: str | None = None) -> Path:
        """``variants.toml`` of ``tree``'s era."""
        return self.tree(tree).variants_dir / "variants.toml"

    def role_functions(self, role: str) -> str:
        """The function names a role stands for, for messages (``a / b``)."""
        found = next((r for r in self.roles if r.name == role), None)
        return " / ".join(found.candidates) if found else role


def names() -> list[str]:
    """Every profile shipped in the package."""
    return sorted(p.parent.name for p in PROFILES_DIR.glob("*/profile.toml"))


def default_name() -> str:
    """The profile used when none is chosen (``profiles/default.toml``)."""
    data = load_toml(DEFAULT_FILE, "default profile file")
    value = data.get("profile")
    if not isinstance(value, str) or not value:
        raise UserError(f"{DEFAULT_FILE}: key 'profile': expected the name of a profile directory")
    return value


@cache
def default_tree() -> DefaultTree:
    """The default tree's definition (``profiles/trees.toml`` ``[default]``)."""
    data = load_toml(TREES_FILE, "tree definitions").get("default")
    if not isinstance(data, dict):
        raise UserError(f"{TREES_FILE}: key 'default': expected a table")
    for key in _TREE_KEYS:
        if not isinstance(data.get(key), str) or not data[key]:
            raise UserError(f"{TREES_FILE}: key 'default.{key}': expected a non-empty string")
    extra = sorted(set(data) - set(_TREE_KEYS))
    if extra:
        raise UserError(f"{TREES_FILE}: key 'default.{extra[0]}': unknown (known: {', '.join(_TREE_KEYS)})")
    return DefaultTree(data["name"], data["kind"], data["package"], Path(data["tarball"]), data["origin"],
                       data["commit_message"], data["version"], data["release"], data["base"])


@cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return schema


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _validate(data: dict[str, Any], where: Path) -> None:
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), _key(e.absolute_path)))
    if not errors:
        return
    err = errors[0]
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = err.schema.get("properties", {})
        unknown = sorted(k for k in err.instance if k not in allowed)
        base = _key(err.absolute_path)
        key = f"{base}.{unknown[0]}" if base != "(top level)" else unknown[0]
        raise UserError(f"{where}: key '{key}': unknown (expected one of {', '.join(sorted(allowed))})")
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        base = _key(err.absolute_path)
        key = f"{base}.{missing}" if base != "(top level)" else missing
        raise UserError(f"{where}: key '{key}': missing (required)")
    raise UserError(f"{where}: key '{_key(err.absolute_path)}': expected {_expected(err)}, got "
                    f"{json.dumps(err.instance)[:60]}")


def _expected(err: jsonschema.ValidationError) -> str:
    schema = err.schema
    if err.validator == "pattern":
        return f"a string matching {schema.get('pattern')}"
    if err.validator == "type":
        return f"{'an' if str(schema.get('type'))[0] in 'aeiou' else 'a'} {schema.get('type')}"
    if err.validator in ("minItems", "minLength", "minProperties"):
        return "a non-empty value"
    if err.validator == "uniqueItems":
        return "no duplicates"
    return str(err.message)


def _file(root: Path, rel: str, key: str, where: Path, *, directory: bool = False) -> Path:
    path = root / rel
    if not (path.is_dir() if directory else path.is_file()):
        raise UserError(f"{where}: key '{key}': {'directory' if directory else 'file'} missing: {path}")
    return path


def _check_series_regexes(series_file: Path) -> None:
    data = load_toml(series_file, "series metadata")
    for key in _SERIES_REGEX_KEYS:
        values = data.get(key, [])
        for i, value in enumerate(values if isinstance(values, list) else [values]):
            label = f"{key}[{i}]" if isinstance(values, list) else key
            if not isinstance(value, str):
                raise UserError(f"{series_file}: key '{label}': expected a regex string")
            try:
                re.compile(value)
            except re.error as exc:
                raise UserError(f"{series_file}: key '{label}': bad regex {value!r}: {exc}") from exc


def load_dir(root: Path) -> Profile:
    """Load and validate the profile in directory ``root`` (tests point this at broken copies)."""
    where = root / "profile.toml"
    if not where.is_file():
        raise UserError(f"{where}: file missing (a profile directory needs profile.toml)")
    data = load_toml(where, "series profile")
    _validate(data, where)
    if data["name"] != root.name:
        raise UserError(f"{where}: key 'name': expected {root.name!r} (the directory's name), "
                        f"got {data['name']!r}")
    series_file = _file(root, data["series"], "series", where)
    _check_series_regexes(series_file)
    concerns_file = _file(root, data["concerns"], "concerns", where)
    trees: dict[str, TreeEra] = {}
    for tree, entry in data["trees"].items():
        vdir = _file(root, entry["variants"], f"trees.{tree}.variants", where, directory=True)
        _file(vdir, "variants.toml", f"trees.{tree}.variants", where)
        cov = entry.get("coverage")
        trees[tree] = TreeEra(tree, vdir, _file(root, cov, f"trees.{tree}.coverage", where) if cov else None)
    ev = data["evidence"]
    roles = tuple(Role(r["name"], tuple(r["candidates"]), r["marks"], bool(r.get("address_taken", False)))
                  for r in ev["role"])
    role_names = [r.name for r in roles]
    for key in ("series_role", "punt_role"):
        if key in ev and ev[key] not in role_names:
            raise UserError(f"{where}: key 'evidence.{key}': expected one of the evidence roles "
                            f"({', '.join(role_names)}), got {ev[key]!r}")
    repro = data.get("repro", {})
    cases: dict[str, list[ReproCase]] = {}
    for c in repro.get("case", []):
        cases.setdefault(c["concern"], []).append(ReproCase(c["name"], c["job"], tuple(c["counters"]),
                                                            c["means"]))
    wl = data["workloads"]
    return Profile(
        name=data["name"], root=root, title=data["title"], series_file=series_file,
        concerns_file=concerns_file, concern_revisions=tuple(data["concern_revisions"]), trees=trees,
        roles=roles, eras=tuple((e["name"], tuple(e["markers"])) for e in ev.get("era", [])),
        series_role=ev["series_role"], punt_role=ev.get("punt_role", ""), proves=dict(data["verdict"]),
        series_workloads=tuple(wl["series"]) if "series" in wl else None,
        series_extra=tuple(wl.get("series_extra", [])), baseline_workloads=tuple(wl.get("baseline", [])),
        kprobes={k: tuple(v) for k, v in data.get("kprobes", {}).items()},
        repro_extra_kprobes=tuple(repro.get("extra_kprobes", [])),
        repro_phases={k: tuple(v) for k, v in repro.get("phases", {}).items()},
        repro_retprobes={k: tuple(v) for k, v in repro.get("retprobes", {}).items()},
        repro_cases={k: tuple(v) for k, v in cases.items()})


@cache
def load(name: str) -> Profile:
    """The shipped profile ``name``; UserError naming the known ones when there is none."""
    shipped = re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name) and (PROFILES_DIR / name / "profile.toml").is_file()
    if not shipped:
        raise UserError(f"unknown profile {name!r} (known: {', '.join(names())}; {PROFILES_DIR})")
    return load_dir(PROFILES_DIR / name)


def use(name: str | None) -> Profile:
    """Make ``name`` (default: the default profile) this process's profile, and its children's."""
    chosen = load(name or os.environ.get(ENV) or default_name())
    os.environ[ENV] = chosen.name
    return chosen


def active() -> Profile:
    """The profile this process works on (``--profile``, else ``KWB_PROFILE``, else the default)."""
    return load(os.environ.get(ENV) or default_name())
