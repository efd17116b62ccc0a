"""Process remarks: what reviewers said about how a series was sent (a broken Reply-To, an empty cover
Subject, a list not copied), as opposed to its code. Catalogued as ``[[process]]`` entries beside the
concerns; they carry no rule and no per-revision status."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import UserError
from harness.core.tomlfile import load_toml
from harness.series.concerns import catalogue_path

_KEYS = {"id", "title", "raised_by", "message_id", "raised_on", "quote", "related", "notes"}
_REQUIRED = ("id", "title", "raised_by", "message_id", "raised_on", "quote")


@dataclass(frozen=True)
class ProcessRemark:
    """One remark about how the series was posted."""

    id: str
    title: str
    raised_by: str
    message_id: str
    raised_on: int
    quote: str
    related: tuple[str, ...] = ()
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (``kind`` says it is a process remark)."""
        return {"kind": "process", "id": self.id, "title": self.title, "raised_by": self.raised_by,
                "message_id": self.message_id, "raised_on": self.raised_on, "quote": self.quote,
                "related": list(self.related), "notes": self.notes}


def load_remarks(path: Path | None = None) -> list[ProcessRemark]:
    """The ``[[process]]`` entries of the catalogue (none is fine); UserError naming a bad entry."""
    path = path or catalogue_path()
    entries = load_toml(path, "concern catalogue").get("process", [])
    if not isinstance(entries, list):
        raise UserError(f"{path}: 'process' must be a list of tables")
    out = []
    for index, entry in enumerate(entries):
        where = f"{path}: process remark #{index + 1}"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: not a table")
        unknown = set(entry) - _KEYS
        missing = [k for k in _REQUIRED if k not in entry]
        if unknown or missing:
            raise UserError(f"{where}: unknown key(s) {sorted(unknown)}, missing {missing}")
        related = entry.get("related", [])
        if not isinstance(entry["raised_on"], int) or not isinstance(related, list):
            raise UserError(f"{where}: 'raised_on' must be a revision number and 'related' a list")
        out.append(ProcessRemark(str(entry["id"]), str(entry["title"]), str(entry["raised_by"]),
                                 str(entry["message_id"]), entry["raised_on"], str(entry["quote"]),
                                 tuple(str(r) for r in related), str(entry.get("notes", ""))))
    return out
