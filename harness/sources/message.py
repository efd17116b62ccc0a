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
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime

_MSGID = re.compile(r"<([^<>\s]+)>")


@dataclass
class Message:
    """A decoded mail message; ``raw`` keeps the bytes as posted (for export and patch-ids)."""

    message_id: str
    subject: str
    sender: str
    date: datetime | None
    in_reply_to: str | None
    references: list[str]
    body: str
    raw: bytes
    origin: str = ""  # where it came from (file and position), for warnings
    warnings: list[str] = field(default_factory=list)

    @property
    def sender_email(self) -> str:
        """The lower-cased address part of ``sender`` (the whole sender when it has no address, as in
        archive renderings that show names only)."""
        addr = email.utils.parseaddr(self.sender)[1]
        return (addr if "@" in addr else " ".join(self.sender.split())).lower()

    @property
    def sender_name(self) -> str:
        """The display name of ``sender`` (the address when there is none)."""
        name, addr = email.utils.parseaddr(self.sender)
        return name or (addr if "@" in addr else " ".join(self.sender.split()))


def _header(msg: email.message.Message, name: str) -> str:
    value = msg.get(name)
    if value is None:
        return ""
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


def parse_message(raw: bytes, origin: str) -> tuple[Message | None, list[str]]:
    """Parse one raw message; returns (message or None, warnings naming it)."""
    warnings: list[str] = []
    if not raw.strip():
        return None, [f"{origin}: empty message skipped"]
    msg = email.message_from_bytes(raw)
    subject = _header(msg, "Subject")
    ids = _ids(_header(msg, "Message-ID"))
    label = f"{origin} ({subject[:60]!r})" if subject else origin
    if not msg.keys() or not (subject or msg.get("From")):
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
    if in_reply_to and in_reply_to not in refs:
        refs.append(in_reply_to)
    body = _text_body(msg, warnings, label)
    message = Message(message_id=message_id, subject=subject, sender=_header(msg, "From"), date=date,
                      in_reply_to=in_reply_to, references=refs, body=body, raw=raw, origin=origin,
                      warnings=warnings)
    return message, warnings
