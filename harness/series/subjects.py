"""Subject prefixes: ``[PATCH v4 03/12]``, ``[PATCHSET v2 RFC 0/11]``, ``[RFC PATCH net-next 1/3]``…"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_REPLY = re.compile(r"^\s*((re|fwd?|aw|sv|antw)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_BRACKET = re.compile(r"^\s*\[([^\]]*)\]\s*")
_COUNT = re.compile(r"^(\d+)/(\d+)$")
_VERSION = re.compile(r"^v(\d+)$", re.IGNORECASE)
_EXTRA_WORDS = {"RESEND", "REPOST", "RFT", "UPDATED"}
_PATCH_WORD = re.compile(r"^(PATCH|PATCHSET|PATCHES|RFC)(v(\d+))?$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)  # one per message of a whole archive: no __dict__ each
class SubjectInfo:
    """What a subject line says about the message."""

    is_reply: bool
    is_patch: bool
    version: int | None  # None when the prefix names none
    rfc: bool
    number: int | None
    total: int | None
    label: str  # the prefix as posted minus PATCH words and N/M, e.g. "v2 RFC" ("" when bare)
    title: str  # the subject without reply markers and prefixes


# Replies and re-sends repeat a subject close by; a whole archive's worth of entries (each ~120 bytes of
# cache links beside its result) was 4 MiB of a listing's peak for hits a small window gets too.
@functools.lru_cache(maxsize=4096)
def parse_subject(subject: str) -> SubjectInfo:
    """Parse reply markers and bracket prefixes off ``subject``."""
    text = " ".join(subject.split())
    reply = _REPLY.match(text)
    if reply:
        text = text[reply.end():]
    is_patch = rfc = False
    version = number = total = None
    label: list[str] = []
    while (m := _BRACKET.match(text)) is not None:
        tokens = m.group(1).split()
        words = [t.upper() for t in tokens]
        if not any(_PATCH_WORD.match(w) for w in words):
            if is_patch and words and all(w in _EXTRA_WORDS for w in words):
                label.extend(tokens)  # "[PATCH 0/4] [RESEND] title"
                text = text[m.end():]
                continue
            break  # e.g. "[io_uring]" tags are part of the title
        is_patch = True
        for tok in tokens:
            if (pw := _PATCH_WORD.match(tok)) is not None:
                rfc = rfc or pw.group(1).upper() == "RFC"
                if pw.group(1).upper() == "RFC":
                    label.append(tok)
                if pw.group(3):
                    version = int(pw.group(3))
                    label.append(f"v{pw.group(3)}")
            elif (c := _COUNT.match(tok)) is not None:
                number, total = int(c.group(1)), int(c.group(2))
            elif (v := _VERSION.match(tok)) is not None:
                version = int(v.group(1))
                label.append(tok)
            else:
                label.append(tok)
        text = text[m.end():]
    return SubjectInfo(is_reply=reply is not None, is_patch=is_patch, version=version, rfc=rfc,
                       number=number, total=total, label=" ".join(label), title=text.strip())


def normalise_title(title: str) -> str:
    """Lower-case, single-spaced title for matching across revisions."""
    return " ".join(title.lower().split()).rstrip(".")
