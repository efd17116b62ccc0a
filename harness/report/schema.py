"""The results.json schema (docs/results-schema.json) and its validator."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from harness.core.errors import UserError
from harness.core.paths import project_root

SCHEMA_VERSION = 1
SCHEMA_PATH = project_root() / "docs" / "results-schema.json"


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The JSON Schema document for results.json."""
    data: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return data


def errors(data: Any) -> list[str]:
    """Every schema violation in ``data`` as ``path: message`` lines (empty when valid)."""
    validator = jsonschema.Draft202012Validator(load_schema())
    found = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]


def validate(data: Any, what: str = "results.json") -> None:
    """Raise UserError naming the first violation when ``data`` doesn't match the schema."""
    problems = errors(data)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"{what} does not match the results schema: {problems[0]}{more}")


def load_results(path: Path) -> dict[str, Any]:
    """Read and validate a results.json (or the one in a run directory)."""
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"no results.json at {path}")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{file} is not valid JSON: {exc}") from exc
    validate(data, str(file))
    return data  # type: ignore[no-any-return]
