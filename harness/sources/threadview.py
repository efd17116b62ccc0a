"""Archive renderings saved as text: lore/public-inbox's flat thread view (``/T/``) and a single-message
hypermail page (``Subject`` line, ``From:``, ``Date:``, body).

The thread view carries no Message-IDs for the messages it shows, so ids are synthesised per position;
the parent of each message comes from the thread tree drawn above it (the ``@`` line and the nearest
line above it with a shallower reply marker), and ``[not found]`` lines give real ids of absent parents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

from harness.core.errors import UserError
from harness.sources.base import SourceResult, head_bytes, parse_all

SEPARATOR = re.compile(r"^\^ permalink raw reply")
_FROM = re.compile(r"^From: (?P<name>.*?) @ (?P<date>\d{4}-\d\d-\d\d +\d+:\d\d) UTC \(permalink / raw\)")
_TREE = re.compile(r"^(?P<mark>[@ ]) +(?P<date>\d{4}-\d\d-\d\d +\d+:\d\d)(?P<rest>.*)$")
_NOTFOUND = re.compile(r"^ +\[not found\](?P<pad> +)` <(?P<id>[^>]+)>")
_PATCH_SUBJECT = re.compile(r"^\[[^\]]*PATCH[^\]]*\b\d+/\d+\]", re.IGNORECASE)
_HYPER_DATE = re.compile(r"^Date: (?P<d>\w{3} \w{3} \d\d \d{4} - \d\d:\d\d:\d\d) (?P<tz>[A-Z]{3})$")
_TZ = {"UTC": 0, "GMT": 0, "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8,
       "PDT": -7, "CET": 1, "CEST": 2}


@dataclass
class _Node:
    depth: int  # column of the reply marker; -1 for a thread root
    date: str
    text: str  # "[subject] author" or "author"
    known_id: str | None = None  # from a [not found] line


@dataclass
class _Block:
    subject: str
    author: str
    date: str
    headers: list[str]
    body: list[str]
    own: _Node | None = None
    parent: _Node | None = None
    msgid: str = ""
    parent_id: str | None = None
    refs: list[str] = field(default_factory=list)
    real_id: str | None = None
    stray: bool = False  # a patch of a posting this view does not show


def _node(line: str) -> _Node | None:
    if m := _NOTFOUND.match(line):
        return _Node(depth=m.start("pad") + len(m.group("pad")), date="", text="", known_id=m.group("id"))
    m = _TREE.match(line)
    if not m:
        return None
    rest = m.group("rest")
    tick = line.find("` ")
    depth = tick if tick >= 0 else -1
    text = line[tick + 2:] if tick >= 0 else rest
    return _Node(depth=depth, date=" ".join(m.group("date").split()), text=text.strip())


def _parse_block(lines: list[str]) -> _Block | None:
    if not lines or not lines[0].startswith("* "):
        return None
    subject = lines[0][2:].strip()
    nodes: list[tuple[bool, _Node]] = []
    i = 1
    while i < len(lines) and not _FROM.match(lines[i]):
        if (node := _node(lines[i])) is not None:
            nodes.append((lines[i].startswith("@"), node))
        i += 1
    if i == len(lines):
        return None
    m = _FROM.match(lines[i])
    assert m is not None
    i += 1
    headers: list[str] = []
    while i < len(lines) and (lines[i].startswith(("  To: ", "  Cc: ", "\t")) or
                              (headers and lines[i].startswith("    "))):
        headers.append(lines[i].strip())
        i += 1
    body = lines[i:]
    while body and not body[0].strip():
        body = body[1:]
    block = _Block(subject, m.group("name").strip(), " ".join(m.group("date").split()), headers, body)
    own_index = next((k for k, (at, _) in enumerate(nodes) if at), None)
    if own_index is not None:
        block.own = nodes[own_index][1]
        after = nodes[own_index + 1][1] if own_index + 1 < len(nodes) else None
        if after is not None and after.known_id and after.depth > block.own.depth:
            # Mirrors that rewrote Message-IDs (gmane-style) show each message's real id as a
            # "[not found]" child right below it: that is the id its replies and patches refer to.
            block.real_id = after.known_id
        for _, cand in reversed(nodes[:own_index]):
            if cand.depth < block.own.depth:
                block.parent = cand
                break
    return block


def _split_blocks(text: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if SEPARATOR.match(line):
            blocks.append(current)
            current = []
        elif line.startswith("* ") and not current:
            current = [line]
        elif current:
            current.append(line)
    if current:
        blocks.append(current)
    return blocks


def _strip_sig_dashes(body: list[str]) -> list[str]:
    # The view ends each message with "-- " + signature like the mail did; keep it (it is the body).
    return body


def _resolve_parents(blocks: list[_Block], stem: str, notes: list[str]) -> None:
    for index, b in enumerate(blocks):
        node = b.parent
        if node is None:
            continue
        if node.known_id:
            b.parent_id = node.known_id
            continue
        candidates = [o for o in blocks
                      if o is not b and o.date == node.date and node.text.endswith(o.author)]
        exact = [o for o in candidates if node.text == f"{o.subject} {o.author}"]
        picks = exact or candidates
        b.parent_id = picks[0].msgid if picks else None
        if not picks and _PATCH_SUBJECT.match(b.subject) and "[PATCH" in node.text.upper():
            b.stray = True
            notes.append(f"{stem}#{index + 1} ({b.subject[:50]!r}) belongs to {node.text[:60]!r} "
                         f"({node.date}), a posting this view does not show; not taken as a posting")
        elif not picks:
            notes.append(f"{stem}#{index + 1} ({b.subject[:50]!r}): its parent ({node.date} "
                         f"{node.text[:60]!r}) is not in this view; treated as a thread root")
    by_id = {b.msgid: b for b in blocks}
    for b in blocks:
        chain: list[str] = []
        cur = b.parent_id
        while cur and cur not in chain and len(chain) < 100:
            chain.insert(0, cur)
            parent = by_id.get(cur)
            cur = parent.parent_id if parent else None
        b.refs = chain


def _render(b: _Block, date: datetime | None) -> bytes:
    head = [f"From: {b.author}", f"Subject: {b.subject}", f"Message-ID: <{b.msgid}>"]
    if date is not None:
        head.append(f"Date: {format_datetime(date)}")
    if b.parent_id:
        head.append(f"In-Reply-To: <{b.parent_id}>")
        head.append("References: " + " ".join(f"<{r}>" for r in b.refs))
    head += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
             "Content-Transfer-Encoding: 8bit"]
    return ("\n".join(head) + "\n\n" + "\n".join(_strip_sig_dashes(b.body)) + "\n").encode("utf-8")


def parse_thread_view(text: str, stem: str, notes: list[str] | None = None) -> list[tuple[str, bytes]]:
    """(origin, synthesised raw message) for each message of a lore flat thread view; ``notes`` gets a
    line for each message whose parent the view does not show."""
    blocks = [b for lines in _split_blocks(text) if (b := _parse_block(lines)) is not None]
    for index, b in enumerate(blocks):
        b.msgid = b.real_id or f"threadview-{index + 1}.{stem}@kwb.invalid"
    _resolve_parents(blocks, stem, notes if notes is not None else [])
    out = []
    for index, b in enumerate(blocks):
        if b.stray:
            continue
        date = datetime.strptime(b.date, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        out.append((f"{stem}#{index + 1}", _render(b, date)))
    return out


def parse_hypermail(text: str, stem: str) -> list[tuple[str, bytes]]:
    """A single-message archive page: subject line, ``From:``, ``Date:``, then the body."""
    lines = text.splitlines()
    sender = lines[1][len("From: "):].strip()
    date = None
    if m := _HYPER_DATE.match(lines[2]):
        offset = timezone(timedelta(hours=_TZ.get(m.group("tz"), 0)))
        date = datetime.strptime(m.group("d"), "%a %b %d %Y - %H:%M:%S").replace(tzinfo=offset)
    block = _Block(lines[0].strip(), sender, "", [], lines[3:], msgid=f"page.{stem}@kwb.invalid")
    return [(f"{stem}#1", _render(block, date))]


def sniff(head: str) -> str | None:
    """'threadview', 'hypermail' or None for the first few KiB of a text file."""
    lines = head.splitlines()[:8]
    if any(line.startswith("* ") for line in lines) and any(_FROM.match(line) for line in head.splitlines()):
        return "threadview"
    if len(lines) >= 3 and lines[1].startswith("From: ") and lines[2].startswith("Date: "):
        return "hypermail"
    return None


class ThreadViewSource:
    """A saved lore thread view or hypermail page (text, not mbox)."""

    name = "thread-view"

    def accepts(self, spec: str) -> tuple[bool, str]:
        """A text file in one of the two renderings."""
        path = Path(spec)
        if not path.is_file():
            return False, "not a file"
        if sniff(head_bytes(path, 16384).decode("utf-8", errors="replace")) is None:
            return False, "not a lore thread view or archive page"
        return True, ""

    def load(self, spec: str) -> SourceResult:
        """Parse the rendering into messages with synthesised ids and threading."""
        path = Path(spec)
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError as exc:
            raise UserError(f"{spec}: cannot read ({exc.strerror})") from exc
        kind = sniff(text[:16384])
        notes: list[str] = []
        if kind == "threadview":
            raws = parse_thread_view(text, path.stem, notes)
        else:
            raws = parse_hypermail(text, path.stem)
        result = parse_all(self.name, spec, raws)
        result.warnings.extend(notes)
        return result
