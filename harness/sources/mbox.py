"""mbox / mboxrd files (what lore's t.mbox.gz and ``b4 mbox`` give), read as a stream.

The file is never loaded whole: it is scanned in blocks for separator lines, one message at a time is
held, and a message larger than :data:`MAX_MESSAGE` is skipped with a warning instead of being held.
Memory is bounded by the largest message, not the archive.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from harness.core.errors import UserError
from harness.sources.base import RawEntry, SourceResult, head_bytes, parse_all

_ESCAPED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)
# A separator is a "From " line at the start of the file or after an empty line (so an unescaped
# "From " inside a body, mboxo style, does not split a message). CRLF files have "\n\r\n" before it.
_SEPARATOR = re.compile(rb"\n\r?\nFrom ")
_KEEP = len(b"\n\r\nFrom ") - 1  # bytes kept between blocks so a separator split across two is found
BLOCK = 1 << 20
# Larger than any mail a list delivers (vger's limit is ~100 KiB; lore's biggest are a few MiB), small
# enough that a corrupt file (a multi-GiB hole with no separator) cannot exhaust memory.
MAX_MESSAGE = 64 << 20


@dataclass
class MboxSpan:
    """One message's place in the file: ``offset``/``length`` of its bytes after the ``From `` line."""

    index: int
    offset: int
    length: int
    raw: bytes | None  # None when the message exceeded MAX_MESSAGE (not held)


def unescape(chunk: bytes) -> bytes:
    """Raw message bytes from the bytes stored in the file: CRLF → LF, mboxrd ``>From`` unescaped."""
    # mboxrd: one '>' was added in front of every (>*)From line; take it off again.
    return _ESCAPED_FROM.sub(rb"\1", chunk.replace(b"\r\n", b"\n"))


def _spans(f: BinaryIO, limit: int) -> Iterator[tuple[int, int, list[bytes] | None]]:
    """(start, end, parts) of each message in the stream, ``start`` at its ``From `` line; ``parts`` is
    None when the message grew past ``limit`` and was dropped."""
    base = 0  # absolute file offset of data[0]
    data = b""  # the last few bytes not yet given to a message (a separator may start there) + a block
    start: int | None = None
    parts: list[bytes] | None = []
    held = 0
    while True:
        block = f.read(BLOCK)
        eof = not block
        data += block
        cuts = [m.end() - 5 for m in _SEPARATOR.finditer(data)]
        if base == 0 and start is None and data.startswith(b"From "):
            cuts.insert(0, 0)
        done = 0
        for cut in cuts:
            if start is not None:
                if parts is not None:
                    parts.append(data[done:cut])
                    held += cut - done
                yield start, base + cut, parts if held <= limit else None
            start, parts, held, done = base + cut, [], 0, cut
        keep = len(data) if eof else max(done, len(data) - _KEEP)
        if start is not None and parts is not None:
            piece = data[done:keep]
            held += len(piece)
            parts.append(piece)
            if held > limit:
                parts = None  # too big to hold: keep scanning for the next separator
        base += keep
        data = data[keep:]
        if eof:
            break
    if start is not None:
        yield start, base, parts if held <= limit else None


def iter_mbox(f: BinaryIO, limit: int | None = None) -> Iterator[MboxSpan]:
    """Every message of an mbox stream, one held at a time (at most ``limit`` bytes, MAX_MESSAGE)."""
    for index, (start, end, parts) in enumerate(_spans(f, MAX_MESSAGE if limit is None else limit)):
        if parts is None:
            yield MboxSpan(index + 1, start, end - start, None)
            continue
        chunk = b"".join(parts)
        newline = chunk.find(b"\n")
        body = chunk[newline + 1:] if newline >= 0 else b""
        yield MboxSpan(index + 1, start + len(chunk) - len(body), len(body), unescape(body))


def split_mbox(data: bytes, origin: str) -> Iterator[tuple[str, bytes]]:
    """Split in-memory mbox bytes; yields (origin#N, raw message) with mboxrd unescaping."""
    for span in iter_mbox(io.BytesIO(data)):
        if span.raw is not None:
            yield f"{origin}#{span.index}", span.raw


def read_span(path: Path, offset: int, length: int) -> bytes:
    """The raw message stored at ``offset`` (an index locator), unescaped."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return unescape(f.read(length))
    except OSError as exc:
        raise UserError(f"{path}: cannot read back a message at byte {offset} ({exc.strerror})") from exc


def mbox_entries(path: Path, limit: int | None = None) -> Iterator[RawEntry]:
    """(origin, raw, locator) for each message of the file at ``path``; oversized ones with raw None."""
    limit = MAX_MESSAGE if limit is None else limit
    try:
        f = path.open("rb")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from exc
    with f:
        last = b""
        for span in iter_mbox(f, limit):
            origin = f"{path.name}#{span.index}"
            if span.raw is None:
                yield RawEntry(origin, None, [span.offset, span.length],
                               f"{origin}: message at byte {span.offset} is {span.length} bytes, more than "
                               f"the {limit} bytes a mail can be; skipped (a corrupt file?)")
                continue
            last = span.raw
            yield RawEntry(origin, span.raw, [span.offset, span.length])
        if last and not last.endswith(b"\n"):
            yield RawEntry(origin, None, [], f"{origin}: file ends without a newline, last message may be "
                                             "truncated")


class MboxSource:
    """An mbox or mboxrd file."""

    name = "mbox"
    indexed = True

    def accepts(self, spec: str) -> tuple[bool, str]:
        """A file whose first line is an mbox ``From `` separator."""
        path = Path(spec)
        if not path.is_file():
            return False, "not a file"
        if head_bytes(path, 5) != b"From ":
            return False, "does not start with a 'From ' line"
        return True, ""

    def identity(self, spec: str) -> dict[str, object]:
        """What says the file is unchanged: its size and modification time."""
        st = Path(spec).stat()
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}

    def entries(self, spec: str, since: dict[str, object] | None) -> Iterator[RawEntry]:
        """Every message (an mbox is re-read whole when it changed)."""
        del since
        return mbox_entries(Path(spec))

    def read(self, spec: str, locator: list[object]) -> bytes:
        """Read one message back by its locator."""
        offset, length = locator
        assert isinstance(offset, int) and isinstance(length, int)
        return read_span(Path(spec), offset, length)

    def load(self, spec: str) -> SourceResult:
        """Parse every message in the file (raw bytes kept: for small files and tests)."""
        return parse_all(self.name, spec, mbox_entries(Path(spec)))
