"""The workload catalogue: one TOML file per workload under harness/workloads/catalogue/.

Loading validates every field and names the file and field on error (UserError, exit 3), so a typo in a
catalogue file is reported before any kernel is built or booted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.core.errors import UserError
from harness.core.tomlfile import load_toml
from harness.workloads import kinds
from harness.workloads.model import Target, WorkloadSpec

__all__ = ["CATALOGUE_DIR", "FILESYSTEMS", "Target", "load_catalogue", "parse_fs_list", "select"]

CATALOGUE_DIR = Path(__file__).resolve().parent / "catalogue"
FILESYSTEMS = ("ext4", "xfs", "btrfs", "bdev")
_KNOWN_FS = ", ".join(FILESYSTEMS)

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "name": str, "kind": str, "description": str, "filesystems": list, "timeout": (int, float),
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "must_show": list, "concerns": list, "params": dict, "default": bool, "must_show_by_kind": dict,
    "read_ahead_kb": int,
}


def _check_type(where: str, key: str, value: Any, typ: type | tuple[type, ...]) -> None:
    allowed = typ if isinstance(typ, tuple) else (typ,)
    if isinstance(value, bool) and bool not in allowed:  # TOML booleans are ints to isinstance()
        raise UserError(f"{where}: field {key!r} must be {_tname(typ)}, got a boolean")
    if not isinstance(value, typ):
        raise UserError(f"{where}: field {key!r} must be {_tname(typ)}, got {type(value).__name__}")


def _tname(typ: type | tuple[type, ...]) -> str:
    names = {"str": "a string", "list": "a list", "dict": "a table", "bool": "a boolean",
             "int": "a number", "float": "a number"}
    first = typ[0] if isinstance(typ, tuple) else typ
    return names.get(first.__name__, first.__name__)


def _str_list(where: str, key: str, value: list[Any]) -> list[str]:
    for item in value:
        if not isinstance(item, str) or not item:
            raise UserError(f"{where}: field {key!r} must be a list of non-empty strings")
    return list(value)


def _spec_from_table(data: dict[str, Any], path: Path) -> WorkloadSpec:
    where = str(path)
    for key in data:
        if key not in _REQUIRED and key not in _OPTIONAL:
            raise UserError(f"{where}: unknown field {key!r}")
    for key, typ in _REQUIRED.items():
        if key not in data:
            raise UserError(f"{where}: missing field {key!r}")
        _check_type(where, key, data[key], typ)
    for key, typ in _OPTIONAL.items():
        if key in data:
            _check_type(where, key, data[key], typ)
    if data["name"] != path.stem:
        raise UserError(f"{where}: field 'name' is {data['name']!r} but the file is {path.name}")
    if data["kind"] not in kinds.KINDS:
        known = ", ".join(sorted(kinds.KINDS))
        raise UserError(f"{where}: field 'kind' is {data['kind']!r} (known: {known})")
    filesystems = _str_list(where, "filesystems", data["filesystems"])
    bad = [fs for fs in filesystems if fs not in FILESYSTEMS]
    if bad or not filesystems:
        raise UserError(f"{where}: field 'filesystems' has {bad or 'nothing'} (known: {_KNOWN_FS})")
    if data["timeout"] <= 0:
        raise UserError(f"{where}: field 'timeout' must be > 0 seconds")
    by_kind: dict[str, list[str]] = {}
    for vkind, checks in data.get("must_show_by_kind", {}).items():
        if not isinstance(checks, list):
            raise UserError(f"{where}: field 'must_show_by_kind.{vkind}' must be a list")
        by_kind[vkind] = _str_list(where, f"must_show_by_kind.{vkind}", checks)
    read_ahead_kb = data.get("read_ahead_kb")
    if read_ahead_kb is not None and read_ahead_kb < 0:
        raise UserError(f"{where}: field 'read_ahead_kb' must be >= 0 KiB, got {read_ahead_kb}")
    params = dict(data.get("params", {}))
    kinds.validate_params(data["kind"], params, where)
    return WorkloadSpec(
        name=data["name"], kind=data["kind"], description=data["description"].strip(),
        filesystems=filesystems, timeout=float(data["timeout"]),
        must_show=_str_list(where, "must_show", data.get("must_show", [])),
        concerns=_str_list(where, "concerns", data.get("concerns", [])),
        params=params, source=path, default=bool(data.get("default", True)), must_show_by_kind=by_kind,
        read_ahead_kb=read_ahead_kb,
    )


def load_file(path: Path) -> WorkloadSpec:
    """Load and validate one catalogue file."""
    return _spec_from_table(load_toml(path, "workload file"), path)


def load_catalogue(directory: Path | None = None) -> dict[str, WorkloadSpec]:
    """Every workload in ``directory`` (default: the packaged catalogue), keyed by name, in name order."""
    root = directory or CATALOGUE_DIR
    if not root.is_dir():
        raise UserError(f"workload catalogue directory not found: {root}")
    specs = [load_file(p) for p in sorted(root.glob("*.toml"))]
    if not specs:
        raise UserError(f"workload catalogue is empty: {root}")
    return {s.name: s for s in specs}


def select(names: list[str] | None, catalogue: dict[str, WorkloadSpec] | None = None) -> list[WorkloadSpec]:
    """The named workloads in the order given (default: every ``default = true`` workload)."""
    cat = catalogue if catalogue is not None else load_catalogue()
    if not names:
        return [s for s in cat.values() if s.default]
    unknown = [n for n in names if n not in cat]
    if unknown:
        raise UserError(f"unknown workload {', '.join(unknown)} (known: {', '.join(cat)})")
    return [cat[n] for n in dict.fromkeys(names)]


def parse_fs_list(text: str | None) -> list[str]:
    """``"ext4,xfs"`` → ``["ext4", "xfs"]``; None/empty → all; unknown names → UserError."""
    if not text:
        return list(FILESYSTEMS)
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in FILESYSTEMS]
    if unknown or not names:
        raise UserError(f"unknown filesystem {', '.join(unknown) or repr(text)} (known: {_KNOWN_FS})")
    return list(dict.fromkeys(names))
