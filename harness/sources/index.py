"""The archive index: each message's headers and place in the archive, kept in the cache per source.

A whole list archive is read once; later commands read the index (a few MiB of JSON) and fetch only the
bodies they need. The index is keyed by the source's location and checked against its identity (an
mbox's size and mtime, a public-inbox's epoch heads); a public-inbox that only gained commits is
extended with those, anything else is rebuilt. What the caller needs to know about a body to group
series without it (does it carry a diff, …) is recorded by an *annotator* the caller passes in; its
name is part of the key, so a changed annotator rebuilds the index.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from harness.core.atomic import write_text
from harness.core.paths import cache_dir
from harness.sources.base import RawEntry, SourceResult
from harness.sources.message import Message, parse_message

SCHEMA = 2  # 2: In-Reply-To is always the last reference


@dataclass(frozen=True)
class Annotator:
    """Facts about a body the index keeps: ``facts(msg)`` → (has_diff, claims_version, integrity)."""

    name: str
    facts: Callable[[Message], tuple[bool | None, bool | None, str | None]]


class IndexedSource(Protocol):
    """A source kind the index can keep (mbox, public-inbox)."""

    name: str

    def identity(self, spec: str) -> dict[str, object]: ...

    def entries(self, spec: str, since: dict[str, object] | None) -> Iterable[RawEntry]: ...

    def read(self, spec: str, locator: list[object]) -> bytes: ...


def index_path(kind: str, spec: str) -> Path:
    """Where the index of ``spec`` lives in the cache."""
    where = os.path.realpath(spec)
    key = hashlib.sha256(f"{kind}\0{where}".encode()).hexdigest()[:20]
    return cache_dir() / "archive-index" / f"{kind}-{key}.json"


Facts = tuple[bool | None, bool | None, str | None]


def _record(msg: Message, locator: list[Any], facts: Facts) -> list[Any]:
    return [msg.message_id, msg.subject, msg.sender, msg.date.isoformat() if msg.date else None,
            msg.in_reply_to, msg.references, msg.origin, locator, *facts, msg.warnings]


def _message(rec: list[Any], load: Callable[[list[object]], bytes]) -> Message:
    mid, subject, sender, date, irt, refs, origin, locator, has_diff, claims, integrity, warnings = rec
    return Message(mid, subject, sender, datetime.fromisoformat(date) if date else None, irt, refs,
                   origin=origin, warnings=warnings, loader=functools.partial(load, locator),
                   has_diff=has_diff, claims_version=claims, integrity=integrity)


def _read_index(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent or damaged (an interrupted write cannot happen: writes are atomic)
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None


def _scan(entries: Iterable[RawEntry], annotator: Annotator, seen: set[str], records: list[list[Any]],
          warnings: list[str]) -> int:
    """Parse ``entries`` into records (raw bytes dropped after annotation); returns messages skipped."""
    skipped = 0
    for entry in entries:
        if entry.raw is None:
            warnings.append(entry.warning)
            skipped += bool(entry.locator)
            continue
        msg, notes = parse_message(entry.raw, entry.origin)
        warnings.extend(notes)
        if msg is None:
            skipped += 1
            continue
        if msg.message_id in seen:
            warnings.append(f"{entry.origin}: duplicate Message-ID <{msg.message_id}>, later copy ignored")
            continue
        seen.add(msg.message_id)
        facts = annotator.facts(msg)
        warnings.extend(w for w in msg.warnings if w not in notes)  # found while reading the body
        records.append(_record(msg, entry.locator, facts))
    return skipped


_LOCATION = re.compile(r'"location":("(?:[^"\\]|\\.)*")')


def _prune(folder: Path) -> None:
    """Drop indexes (and what was kept beside them) of sources that no longer exist: temporary
    mboxes would otherwise pile up in the cache."""
    for old in folder.glob("*-*.json"):
        if old.name.endswith(".families.json"):
            continue
        try:
            with old.open(encoding="utf-8") as f:
                m = _LOCATION.search(f.read(4096))
            if m is not None and not os.path.exists(json.loads(m.group(1))):
                old.unlink()
                old.with_suffix(".families.json").unlink(missing_ok=True)
        except (OSError, ValueError):
            continue


def load_indexed(source: IndexedSource, spec: str, annotator: Annotator) -> SourceResult:
    """The messages of ``spec`` from its index (built or extended first when the source changed)."""
    path = index_path(source.name, spec)
    identity = source.identity(spec)
    stored = _read_index(path)
    usable = stored is not None and stored.get("annotator") == annotator.name
    if usable and stored is not None and stored.get("identity") == identity:
        note = f"archive index reused ({path.name})"
        records, warnings, skipped = stored["records"], stored["warnings"], int(stored["skipped"])
    else:
        extend = (usable and stored is not None and hasattr(source, "can_extend")
                  and source.can_extend(spec, stored["identity"]))
        if extend and stored is not None:
            records, warnings, skipped = stored["records"], stored["warnings"], int(stored["skipped"])
            since: dict[str, object] | None = stored["identity"]
        else:
            records, warnings, skipped, since = [], [], 0, None
        before = len(records)
        seen = {rec[0] for rec in records}
        skipped += _scan(source.entries(spec, since), annotator, seen, records, warnings)
        _prune(path.parent)
        write_text(path, json.dumps({"schema": SCHEMA, "kind": source.name,
                                     "location": os.path.realpath(spec), "annotator": annotator.name,
                                     "identity": identity, "skipped": skipped, "warnings": warnings,
                                     "records": records}, separators=(",", ":")))
        note = (f"archive index extended by {len(records) - before} messages" if since is not None
                else f"archive index built ({len(records)} messages)")
    load = functools.partial(source.read, spec)
    key = hashlib.sha256(json.dumps([SCHEMA, annotator.name, identity], sort_keys=True).encode()).hexdigest()
    return SourceResult(source.name, spec, [_message(rec, load) for rec in records], list(warnings),
                        skipped, note, str(path), key[:32])
