"""One mail message as every source hands it over, and the tolerant parser that builds it.

Real archives hold broken mail (no Message-ID, unknown charsets, truncated headers). The parser never
raises for those: it returns the message with a warning naming it, or ``None`` plus a warning when nothing
usable is left.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.message
import email.utils
import functools
import hashlib
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

_MSGID = re.compile(r"<([^<>\s]+)>")
_NAME_ADDR = re.compile(r'^([^<>",@()\\]*|"[^"\\]*")\s*<([^<>\s@]+@[^<>\s@]+)>$')


class Message:
    """A decoded mail message; ``raw`` keeps the bytes as posted (for export and patch-ids).

    A message read from an archive index carries only its headers: ``raw`` and ``body`` are read back
    from the archive (``loader(locator)``: one loader shared by the archive's messages, a locator each)
    the first time they are asked for, so a whole-archive listing holds no message bodies. ``has_diff``
    and ``claims_version`` are what the index recorded about the body (None: not recorded, look at it).
    """

    __slots__ = ("_addr", "_body", "_loader", "_locator", "_raw", "claims_version", "date", "has_diff",
                 "in_reply_to", "integrity", "message_id", "origin", "references", "sender", "subject",
                 "warnings")

    def __init__(self, message_id: str, subject: str, sender: str, date: datetime | None,
                 in_reply_to: str | None, references: list[str], body: str | None = None,
                 raw: bytes | None = None, origin: str = "", warnings: list[str] | None = None, *,
                 loader: Callable[[Any], bytes] | None = None, locator: Any = None,
                 has_diff: bool | None = None,
                 claims_version: bool | None = None, integrity: str | None = None) -> None:
        self.message_id = message_id
        self.subject = subject
        self.sender = sender
        self.date = date
        self.in_reply_to = in_reply_to
        self.references = references
        self.origin = origin  # where it came from (file and position), for warnings
        self.warnings = warnings if warnings is not None else []
        self._body = body
        self._raw = raw
        self._loader = loader
        self._locator = locator
        self._addr: tuple[str, str] | None = None
        self.has_diff = has_diff
        self.claims_version = claims_version
        self.integrity = integrity  # a cut-short patch body, as the index recorded it ("" when sound)

    def __repr__(self) -> str:
        return f"Message(<{self.message_id}>, {self.subject[:40]!r}, {self.origin})"

    @property
    def raw(self) -> bytes:
        """The message as posted (read back from the archive when only headers were kept)."""
        if self._raw is None:
            if self._loader is None:
                return b""
            return self._loader(self._locator)  # not kept: a listing touches thousands, an export a dozen
        return self._raw

    @property
    def body(self) -> str:
        """The decoded text body (kept once decoded)."""
        if self._body is None:
            self._body = decode_body(self.raw, self.origin, self.warnings)
        return self._body

    def _address(self) -> tuple[str, str]:
        if self._addr is None:
            # The common "Name <addr>" form by regex: parseaddr is most of a whole-archive listing's time.
            m = _NAME_ADDR.match(self.sender)
            name, addr = (m.group(1).strip().strip('"'), m.group(2)) if m else email.utils.parseaddr(
                self.sender)
            self._addr = (name, addr)
        return self._addr

    @property
    def sender_email(self) -> str:
        """The lower-cased address part of ``sender`` (the whole sender when it has no address, as in
        archive renderings that show names only)."""
        addr = self._address()[1]
        return (addr if "@" in addr else " ".join(self.sender.split())).lower()

    @property
    def sender_name(self) -> str:
        """The display name of ``sender`` (the address when there is none)."""
        name, addr = self._address()
        return name or (addr if "@" in addr else " ".join(self.sender.split()))


_WANTED = re.compile(rb"(?im)^(subject|message-id|from|date|in-reply-to|references|content-type|"
                     rb"content-transfer-encoding)[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)")
_ANY_HEADER = re.compile(rb"(?m)^[!-9;-~]+[ \t]*:")


def read_headers(head: bytes) -> dict[str, str]:
    """The headers kwb uses (first occurrence of each, unfolded, lower-cased names) from a header block;
    empty when the block has no header line at all.

    Six headers found by one regex over the bytes instead of email's feed parser over all of them: that
    is what lets an archive of tens of thousands of messages be indexed at the speed of reading it.
    """
    return dict(_read_headers(head))  # a copy: the cached one is shared


# Indexing a message reads its header block twice (parsing it, then the index's body facts or the body's
# decoding): at ~80 µs a block that was a third of a whole-archive index build's own CPU time.
@functools.lru_cache(maxsize=2)
def _read_headers(head: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in _WANTED.finditer(head):
        name = m.group(1).lower().decode()
        if name not in out:
            out[name] = " ".join(m.group(2).decode("utf-8", errors="replace").split())
    if not out and _ANY_HEADER.search(head):
        out[" other"] = ""
    return out


def _header(msg: email.message.Message | dict[str, str], name: str) -> str:
    value = msg.get(name.lower()) if isinstance(msg, dict) else msg.get(name)
    if value is None:
        return ""
    if isinstance(msg, dict) and "=?" not in value:
        return " ".join(value.split())
    try:
        parts = email.header.decode_header(str(value))
    except (email.errors.HeaderParseError, ValueError):
        return " ".join(str(value).split())
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            out.append(_decode(chunk, charset or "ascii"))
        else:
            out.append(chunk)
    return " ".join("".join(out).split())


def _decode(data: bytes, charset: str) -> str:
    try:
        return data.decode(charset, errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def _ids(value: str) -> list[str]:
    return _MSGID.findall(value)


def _text_body(msg: email.message.Message, warnings: list[str], label: str) -> str:
    parts = [p for p in msg.walk() if not p.is_multipart()] if msg.is_multipart() else [msg]
    texts = []
    for part in parts:
        is_text = part.get_content_maintype() == "text" and part.get_content_subtype() in (
            "plain", "x-patch", "x-diff")
        if not is_text and msg.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        charset = part.get_content_charset() or "utf-8"
        try:
            texts.append(payload.decode(charset))
        except LookupError:
            warnings.append(f"{label}: unknown charset {charset!r}, decoded as utf-8 with replacements")
            texts.append(payload.decode("utf-8", errors="replace"))
        except UnicodeDecodeError:
            warnings.append(f"{label}: body is not valid {charset}, undecodable bytes replaced")
            texts.append(payload.decode(charset, errors="replace"))
    return "\n".join(texts).replace("\r\n", "\n")


def split_head(raw: bytes) -> tuple[bytes, bytes]:
    """(header block, body bytes) of a raw message: split at the first empty line."""
    for sep in (b"\n\n", b"\r\n\r\n"):
        at = raw.find(sep)
        if at >= 0:
            return raw[:at + len(sep)], raw[at + len(sep):]
    return raw, b""


_CHARSET = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.IGNORECASE)


def _plain_body(raw: bytes, sink: list[str], origin: str) -> str | None:
    """The body of a single-part text/plain message without a transfer encoding, decoded directly (what
    email would give, without parsing the message again); None for anything else."""
    head, body = split_head(raw)
    headers = read_headers(head)
    ctype = headers.get("content-type", "text/plain").lower()
    cte = headers.get("content-transfer-encoding", "7bit").lower().strip()
    if not ctype.startswith("text/plain") or cte not in ("7bit", "8bit", "binary", ""):
        return None
    m = _CHARSET.search(ctype)
    charset = m.group(1) if m else "utf-8"
    try:
        text = body.decode(charset)
    except LookupError:
        sink.append(f"{origin}: unknown charset {charset!r}, decoded as utf-8 with replacements")
        text = body.decode("utf-8", errors="replace")
    except UnicodeDecodeError:
        sink.append(f"{origin}: body is not valid {charset}, undecodable bytes replaced")
        text = body.decode(charset, errors="replace")
    return text.replace("\r\n", "\n")


def decode_body(raw: bytes, origin: str, warnings: list[str] | None = None) -> str:
    """The text body of ``raw`` (text/plain and patch parts; transfer encodings and charsets undone)."""
    sink = warnings if warnings is not None else []
    plain = _plain_body(raw, sink, origin)
    if plain is not None:
        return plain
    try:
        return _text_body(email.message_from_bytes(raw), sink, origin)
    except Exception as exc:
        sink.append(f"{origin}: body could not be decoded ({exc.__class__.__name__}: {exc}), read as text")
        return split_head(raw)[1].decode("utf-8", errors="replace").replace("\r\n", "\n")


def parse_message(raw: bytes, origin: str) -> tuple[Message | None, list[str]]:
    """Parse one raw message's headers; returns (message or None, warnings naming it).

    The body is decoded when first asked for. Never raises for a broken message: it is skipped with a
    warning naming it.
    """
    try:
        return _parse(raw, origin)
    except Exception as exc:
        return None, [f"{origin}: unreadable message skipped ({exc.__class__.__name__}: {exc})"]


def _parse(raw: bytes, origin: str) -> tuple[Message | None, list[str]]:
    warnings: list[str] = []
    if not raw.strip():
        return None, [f"{origin}: empty message skipped"]
    head, _ = split_head(raw)
    msg = read_headers(head)
    subject = _header(msg, "Subject")
    ids = _ids(_header(msg, "Message-ID"))
    label = f"{origin} ({subject[:60]!r})" if subject else origin
    if not msg or not (subject or msg.get("from")):
        return None, [f"{origin}: no mail headers found, skipped (not a mail message?)"]
    if ids:
        message_id = ids[0]
    else:
        # A stable synthetic id keeps threading deterministic; the warning says the id was invented.
        message_id = "kwb-noid-" + hashlib.sha1(raw).hexdigest()[:16] + "@kwb.invalid"
        warnings.append(f"{label}: no Message-ID, using <{message_id}>")
    date = None
    date_text = _header(msg, "Date")
    if date_text:
        try:
            date = email.utils.parsedate_to_datetime(date_text)
        except (TypeError, ValueError, IndexError):
            warnings.append(f"{label}: unparsable Date {date_text!r}")
    reply = _ids(_header(msg, "In-Reply-To"))
    refs = _ids(_header(msg, "References"))
    in_reply_to = reply[0] if reply else (refs[-1] if refs else None)
    if in_reply_to:
        # In-Reply-To is the parent: ids after it in References were appended by a mail gateway
        # (<CGME…@samsung.com>) and must not be taken for the nearest ancestor.
        if in_reply_to in refs:
            refs.remove(in_reply_to)
        refs.append(in_reply_to)
    message = Message(message_id=message_id, subject=subject, sender=_header(msg, "From"), date=date,
                      in_reply_to=in_reply_to, references=refs, raw=raw,
                      origin=origin, warnings=warnings)
    return message, warnings
