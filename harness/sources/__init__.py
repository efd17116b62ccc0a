"""Series sources behind one interface: mbox/mboxrd, Maildir, public-inbox v2, lore (b4), saved
archive renderings. ``load_messages(spec)`` picks the kind that accepts ``spec``."""

from harness.sources.base import SourceResult
from harness.sources.message import Message, parse_message
from harness.sources.registry import load_messages, open_source

__all__ = ["Message", "SourceResult", "load_messages", "open_source", "parse_message"]
