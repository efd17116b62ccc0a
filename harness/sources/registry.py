"""The source kinds in the order they are asked, and the two entry points that pick one: ``open_source``
and ``load_messages``. Kept apart from :mod:`harness.sources.base` (what every kind builds on) so that the
kinds import the base and this registry imports the kinds, never the other way round."""

from __future__ import annotations

from pathlib import Path

from harness.core.errors import UserError
from harness.sources.base import Source, SourceResult
from harness.sources.index import Annotator, load_indexed
from harness.sources.lore import LoreSource
from harness.sources.maildir import MaildirSource
from harness.sources.mbox import MboxSource
from harness.sources.publicinbox import PublicInboxSource
from harness.sources.threadview import ThreadViewSource


def _kinds() -> list[Source]:
    return [MboxSource(), MaildirSource(), PublicInboxSource(), ThreadViewSource(), LoreSource()]


def open_source(spec: str | Path) -> Source:
    """The source kind that accepts ``spec``; UserError listing every kind's reason otherwise."""
    text = str(spec)
    if not text.strip():
        raise UserError("--source is empty: give an mbox/Maildir/public-inbox path or a message-id")
    reasons = []
    for kind in _kinds():
        ok, reason = kind.accepts(text)
        if ok:
            return kind
        reasons.append(f"{kind.name}: {reason}")
    path = Path(text)
    if path.is_file() and path.stat().st_size == 0:
        raise UserError(f"{text}: empty file, no messages")
    raise UserError(f"{text}: not a usable series source ({'; '.join(reasons)})")


def load_messages(spec: str | Path, annotator: Annotator | None = None) -> SourceResult:
    """Read every message of ``spec`` through the source kind that accepts it; with an ``annotator``,
    through the archive index of sources that keep one (headers only, bodies read on demand)."""
    source = open_source(spec)
    if annotator is not None and getattr(source, "indexed", False):
        result = load_indexed(source, str(spec), annotator)  # type: ignore[arg-type]
    else:
        result = source.load(str(spec))
    if not result.messages:
        detail = f" ({result.warnings[0]})" if result.warnings else ""
        raise UserError(f"{spec}: no readable messages in this {source.name}{detail}")
    return result
