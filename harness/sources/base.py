"""The one interface every series source implements, and the dispatcher that picks one.

A source turns a user's ``--source`` (a path or a message-id) into parsed :class:`Message` objects plus
warnings naming anything it had to skip or repair. Choosing a source asks each kind whether it accepts
the spec and, when none does, reports every reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.core.errors import UserError
from harness.sources.message import Message, parse_message


@dataclass
class SourceResult:
    """Messages in archive order plus warnings (each naming the message or position concerned)."""

    kind: str
    location: str
    messages: list[Message] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: int = 0  # messages that could not be read at all (each named in a warning)
    index_note: str = ""  # how the archive index was used ("built", "reused", "extended by N")
    index_file: str = ""  # the archive index behind these messages ("" when none)
    index_key: str = ""  # changes whenever the indexed messages do (for caches derived from them)


@dataclass
class RawEntry:
    """One message as a source reads it: ``raw`` None when it could not be read (``warning`` says why);
    ``locator`` tells the source how to read it again (for the archive index)."""

    origin: str
    raw: bytes | None
    locator: list[Any] = field(default_factory=list)
    warning: str = ""


class Source(Protocol):
    """A source kind: ``accepts`` says whether (and why not) it can read ``spec``; ``load`` reads it."""

    name: str

    def accepts(self, spec: str) -> tuple[bool, str]: ...

    def load(self, spec: str) -> SourceResult: ...


def parse_all(kind: str, location: str, raws: Iterable[tuple[str, bytes] | RawEntry]) -> SourceResult:
    """Parse ``(origin, raw bytes)`` pairs or entries into a :class:`SourceResult`, collecting warnings:
    an unreadable message is counted and named, never an abort."""
    result = SourceResult(kind, location)
    seen: set[str] = set()
    for item in raws:
        entry = item if isinstance(item, RawEntry) else RawEntry(item[0], item[1])
        if entry.raw is None:
            result.warnings.append(entry.warning)
            result.skipped += bool(entry.locator)
            continue
        msg, warnings = parse_message(entry.raw, entry.origin)
        result.warnings.extend(warnings)
        if msg is None:
            result.skipped += 1
            continue
        if msg.message_id in seen:
            result.warnings.append(f"{entry.origin}: duplicate Message-ID <{msg.message_id}>, later copy "
                                   "ignored")
            continue
        seen.add(msg.message_id)
        result.messages.append(msg)
    return result


def head_bytes(path: Path, size: int = 4096) -> bytes:
    """The first ``size`` bytes of a file (b'' when unreadable), for format sniffing."""
    try:
        with path.open("rb") as f:
            return f.read(size)
    except OSError:
        return b""


def iter_files(paths: Iterable[Path]) -> Iterator[tuple[str, bytes]]:
    """(origin, bytes) for each readable file."""
    for p in paths:
        try:
            yield str(p), p.read_bytes()
        except OSError as exc:
            raise UserError(f"{p}: cannot read ({exc.strerror})") from exc
