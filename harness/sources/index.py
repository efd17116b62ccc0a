"""The archive index: each message's headers and place in the archive, kept in the cache per source.

A whole list archive is read once; later commands read the index (a few MiB of JSON lines) and fetch
only the bodies they need. The index is keyed by the source's location and checked against its identity (an
mbox's size and mtime, a public-inbox's epoch heads); a public-inbox that only gained commits is
extended with those, anything else is rebuilt. What the caller needs to know about a body to group
series without it (does it carry a diff, …) is recorded by an *annotator* the caller passes in; its
name is part of the key, so a changed annotator rebuilds the index.

The index is JSON lines, written and read one message at a time: a header (schema, source, identity),
a record per message, a trailer (warnings, count). Holding it whole — the 15 MiB text of a 33k-message
archive, its parsed records beside the messages made from them, json's chunks while writing — was most of
a whole-archive listing's peak memory. Message-ids read back are shared with the message they name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import IO, Any, Protocol

from harness.core.atomic import replacing
from harness.core.paths import cache_dir
from harness.sources.base import RawEntry, SourceResult
from harness.sources.message import Message, parse_message

SCHEMA = 3  # 2: In-Reply-To is always the last reference; 3: JSON lines


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


class _Builder:
    """Header-only messages from index records, sharing what repeats between them: each message-id
    string with the references that name it, one tzinfo per UTC offset, the locators' epoch names."""

    def __init__(self, load: Callable[[Any], bytes]) -> None:
        self.load = load
        self.messages: list[Message] = []
        self.ids: dict[str, str] = {}
        self._zones: dict[tzinfo, tzinfo] = {}
        self._words: dict[str, str] = {}

    def add(self, rec: list[Any]) -> None:
        mid, subject, sender, date, irt, refs, origin, locator, has_diff, claims, integrity, warnings = rec
        ids = self.ids
        mid = ids.setdefault(mid, mid)
        if refs:
            refs = [ids.get(r, r) for r in refs]
        if irt is not None:
            irt = refs[-1] if refs and refs[-1] == irt else ids.get(irt, irt)
        when = datetime.fromisoformat(date) if date else None
        if when is not None and when.tzinfo is not None:
            zone = self._zones.setdefault(when.tzinfo, when.tzinfo)
            when = when if zone is when.tzinfo else when.replace(tzinfo=zone)
        if locator and isinstance(locator[0], str):  # public-inbox's epoch name, the same for thousands
            locator[0] = self._words.setdefault(locator[0], locator[0])
        self.messages.append(Message(mid, subject, sender, when, irt, refs, origin=origin,
                                     warnings=warnings, loader=self.load, locator=locator,
                                     has_diff=has_diff, claims_version=claims, integrity=integrity))


def _line(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":")) + "\n"


def _header(path: Path) -> dict[str, Any] | None:
    try:
        with path.open(encoding="utf-8") as f:
            data = json.loads(f.readline())
    except (OSError, ValueError):
        return None  # absent or damaged (an interrupted write cannot happen: writes are atomic)
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None


def _stored_lines(path: Path) -> Iterator[str]:
    """The record lines of the index at ``path`` then its trailer line (header skipped)."""
    with path.open(encoding="utf-8") as f:
        f.readline()
        yield from f


def _read_records(path: Path, builder: _Builder, out: IO[str] | None = None) -> dict[str, Any] | None:
    """Messages of every record of the index (copied to ``out`` when given); its trailer, or None when
    the index is damaged (the caller rebuilds it)."""
    try:
        for line in _stored_lines(path):
            rec = json.loads(line)
            if isinstance(rec, dict):
                ok = rec.get("count") == len(builder.messages)
                return rec if ok else None
            builder.add(rec)
            if out is not None:
                out.write(line)
    except (OSError, ValueError, TypeError):
        return None
    return None  # no trailer: cut short


def _scan(entries: Iterable[RawEntry], annotator: Annotator, builder: _Builder, out: IO[str],
          warnings: list[str]) -> int:
    """Parse ``entries`` into records (raw bytes dropped after annotation), each written to ``out`` and
    made a message as it is read; returns messages skipped."""
    skipped = 0
    seen = builder.ids
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
        facts = annotator.facts(msg)
        warnings.extend(w for w in msg.warnings if w not in notes)  # found while reading the body
        rec = _record(msg, entry.locator, facts)
        out.write(_line(rec))
        builder.add(rec)
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


class _Damaged(Exception):
    """The index being extended turned out unreadable half-way: build it afresh instead."""


Entries = Callable[[dict[str, object] | None], Iterable[RawEntry]]


def _write(path: Path, header: dict[str, Any], entries: Entries, annotator: Annotator, builder: _Builder,
           since: dict[str, object] | None) -> tuple[list[str], int, str]:
    """Write the index while making its messages: the old index's records first when extending it
    (``since``: the identity it was built at), then the source's entries; returns (warnings, skipped,
    note)."""
    with replacing(path) as out:
        out.write(_line(header))
        warnings: list[str] = []
        skipped = 0
        if since is not None:
            old = _read_records(path, builder, out)
            if old is None:
                raise _Damaged
            warnings, skipped = list(old["warnings"]), int(old["skipped"])
        before = len(builder.messages)
        skipped += _scan(entries(since), annotator, builder, out, warnings)
        out.write(_line({"count": len(builder.messages), "skipped": skipped, "warnings": warnings}))
    count = len(builder.messages)
    return warnings, skipped, (f"archive index extended by {count - before} messages" if since is not None
                               else f"archive index built ({count} messages)")


def load_indexed(source: IndexedSource, spec: str, annotator: Annotator) -> SourceResult:
    """The messages of ``spec`` from its index (built or extended first when the source changed)."""
    path = index_path(source.name, spec)
    identity = source.identity(spec)

    def load(locator: Any) -> bytes:  # one loader for every message of the source, a locator each
        return source.read(spec, locator)

    def entries(since: dict[str, object] | None) -> Iterable[RawEntry]:
        return source.entries(spec, since)

    stored = _header(path) or {}
    usable = stored.get("annotator") == annotator.name
    builder = _Builder(load)
    trailer = _read_records(path, builder) if usable and stored.get("identity") == identity else None
    if trailer is not None:
        note = f"archive index reused ({path.name})"
        warnings, skipped = list(trailer["warnings"]), int(trailer["skipped"])
    else:
        extend = (usable and stored.get("identity") != identity and hasattr(source, "can_extend")
                  and source.can_extend(spec, stored["identity"]))
        _prune(path.parent)
        header = {"schema": SCHEMA, "kind": source.name, "location": os.path.realpath(spec),
                  "annotator": annotator.name, "identity": identity}
        builder = _Builder(load)
        try:
            warnings, skipped, note = _write(path, header, entries, annotator, builder,
                                             stored["identity"] if extend else None)
        except _Damaged:
            builder = _Builder(load)
            warnings, skipped, note = _write(path, header, entries, annotator, builder, None)
    key = hashlib.sha256(json.dumps([SCHEMA, annotator.name, identity], sort_keys=True).encode()).hexdigest()
    return SourceResult(source.name, spec, builder.messages, warnings, skipped, note, str(path), key[:32])
