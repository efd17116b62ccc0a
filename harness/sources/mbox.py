"""mbox / mboxrd files (what lore's t.mbox.gz and ``b4 mbox`` give)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from harness.errors import UserError
from harness.sources.base import SourceResult, head_bytes, parse_all

_FROM_LINE = re.compile(rb"^From \S+ ", re.MULTILINE)
_ESCAPED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)


def split_mbox(data: bytes, origin: str) -> Iterator[tuple[str, bytes]]:
    """Split mbox bytes at ``From `` separator lines; yields (origin#N, raw message) with mboxrd unescaping.

    A separator only counts at the start of the file or after an empty line, so unescaped ``From `` in
    a body (mboxo) does not split a message.
    """
    data = data.replace(b"\r\n", b"\n")
    starts = [m.start() for m in _FROM_LINE.finditer(data)
              if m.start() == 0 or data[max(0, m.start() - 2):m.start()] == b"\n\n"]
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(data)
        chunk = data[start:end]
        newline = chunk.find(b"\n")
        body = chunk[newline + 1:] if newline >= 0 else b""
        # mboxrd: one '>' was added in front of every (>*)From line; take it off again.
        yield f"{origin}#{index + 1}", _ESCAPED_FROM.sub(rb"\1", body)


class MboxSource:
    """An mbox or mboxrd file."""

    name = "mbox"

    def accepts(self, spec: str) -> tuple[bool, str]:
        """A file whose first line is an mbox ``From `` separator."""
        path = Path(spec)
        if not path.is_file():
            return False, "not a file"
        if head_bytes(path, 5) != b"From ":
            return False, "does not start with a 'From ' line"
        return True, ""

    def load(self, spec: str) -> SourceResult:
        """Parse every message in the file."""
        path = Path(spec)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UserError(f"{spec}: cannot read ({exc.strerror})") from exc
        result = parse_all(self.name, spec, split_mbox(data, path.name))
        if not data.endswith(b"\n") and result.messages:
            last = result.messages[-1]
            result.warnings.append(f"{last.origin}: file ends without a newline, last message may be "
                                   f"truncated ({last.subject[:60]!r})")
        return result
