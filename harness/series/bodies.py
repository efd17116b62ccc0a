"""Splitting a message body: commit message, diff, signature; a reply's own words and trailers."""

from __future__ import annotations

import re

from harness.sources.message import Message

_DIFF_START = re.compile(r"^diff --git ", re.MULTILINE)
_PLAIN_DIFF = re.compile(r"^--- (a/|\S+\.[ch]\b)[^\n]*\n\+\+\+ ", re.MULTILINE)
_ATTRIBUTION = re.compile(r"^(On .*|.*\b(wrote|writes|said):)\s*$")
# "Am 05.06.20 um 23:02 schrieb X:", "Le … a écrit :", "El … escribió:": any language's attribution
# line names an address or a date and ends with a colon right above the quote.
_ATTRIBUTION_ANY = re.compile(r"^.*(@|\d{1,2}[./:]\d{1,2}|\d{4}).*:\s*$")
_ATTRIBUTION_START = re.compile(r"^On .*[^:]\s*$")
_SNIP = re.compile(r"^\[\s*(\.\.\.|…|snip(ped)?)\s*\]$|^<\s*snip\s*>$", re.IGNORECASE)


def split_signature(body: str) -> str:
    """``body`` without the trailing ``-- `` signature block (the last one)."""
    idx = body.rfind("\n-- \n")
    if body.startswith("-- \n"):
        return ""
    return body[: idx + 1] if idx >= 0 else body


def find_diff(body: str) -> str | None:
    """The diff in ``body``: from the first ``diff --git`` (or ``--- a/``) to the signature, as posted."""
    m = _DIFF_START.search(body) or _PLAIN_DIFF.search(body)
    if m is None:
        return None
    text = body[m.start():]
    sig = text.rfind("\n-- \n")
    return text[: sig + 1] if sig >= 0 else text


def has_diff(msg: Message) -> bool:
    """Does ``msg`` carry a diff? (What the archive index recorded, else a look at the body.)"""
    if msg.has_diff is not None:
        return msg.has_diff
    return find_diff(msg.body) is not None


_HUNK = re.compile(r"^@@ -\d+(,\d+)? \+\d+(,\d+)? @@")
_CODE_CHANGE = re.compile(r"^[+-]\s+\S.*[;{}]\s*$")


# "but, thinking twice, ... it should be ok as is", "never mind", "scratch that": the snippet above it
# is taken back.
_WITHDRAWN = re.compile(r"(?i)\b(thinking (twice|again|about it more)|on second thought|never ?mind|scratch "
                        r"that|ignore (that|this)|should be (ok|fine) as is|forget (it|that))\b")
_C_LINE = re.compile(r"^\s*(\S.*[;{}]|}|\S.*\)\s*\{?)\s*$")


def find_snippet(text: str) -> str | None:
    """A diff fragment without file headers: a hunk header, or two or more ``+``/``-`` code lines
    (``+ put_task_struct(req->task);``), returned with the lines around them up to a blank line.

    A fragment the mail takes back in the next paragraph ("thinking twice, it should be ok as is") is
    not the proposal: then the last code block after it that is not taken back is, if there is one.
    """
    blocks = text.split("\n\n")
    withdrawn = [i for i, block in enumerate(blocks[1:], 1) if _WITHDRAWN.search(block)
                 and _snippet_lines(blocks[i - 1]) is not None]
    if not withdrawn:
        return _snippet_lines(text)
    after = blocks[withdrawn[-1] + 1:]
    code = [b for b in after if _code_block(b)]
    return (code[-1].strip("\n") + "\n") if code else None


def _code_block(block: str) -> bool:
    lines = [line for line in block.split("\n") if line.strip()]
    return len(lines) >= 2 and all(_C_LINE.match(line) or _CODE_CHANGE.match(line) for line in lines)


def _snippet_lines(text: str) -> str | None:
    lines = text.split("\n")
    hits = [i for i, line in enumerate(lines) if _HUNK.match(line) or _CODE_CHANGE.match(line)]
    if not hits or (len(hits) < 2 and not any(_HUNK.match(lines[i]) for i in hits)):
        return None
    start, end = hits[0], hits[-1]
    while start > 0 and lines[start - 1].strip():
        start -= 1
    while end + 1 < len(lines) and lines[end + 1].strip():
        end += 1
    return "\n".join(lines[start:end + 1]) + "\n"


def commit_message(body: str) -> str:
    """The commit message part of a patch body: up to the ``---`` line (or the diff)."""
    lines = body.split("\n")
    out = []
    for line in lines:
        if line.rstrip() == "---" or line.startswith("diff --git "):
            break
        out.append(line)
    return "\n".join(out).strip("\n") + "\n"


def trailers(text: str, *, followup: bool) -> list[tuple[str, str]]:
    """``(name, value)`` trailers in ``text``, found with b4's own trailer parser."""
    import b4  # imported on first use: a listing needs no trailers, and b4 takes ~0.3 s to import

    found, _ = b4.LoreMessage.find_trailers(text, followup=followup)
    return [(t.name, t.value) for t in found]


def own_words(body: str) -> str:
    """A reply's own text: quoted lines, attribution lines, the quoted diff's context and the signature
    removed, consecutive blank lines collapsed."""
    lines = split_signature(body).split("\n")
    out: list[str] = []
    skip_next_quote_intro = False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(">"):
            continue
        if _SNIP.match(stripped):
            continue
        nxt = next((x for x in lines[i + 1:] if x.strip() and not _SNIP.match(x.strip())), "")
        attribution = _ATTRIBUTION.match(stripped) or _ATTRIBUTION_ANY.match(stripped)
        if attribution and nxt.lstrip().startswith(">"):
            continue
        # Attributions wrapped over two lines: "On Mon, ... Jens Axboe" / "<axboe@kernel.dk> wrote:".
        if _ATTRIBUTION_START.match(stripped) and i + 1 < len(lines) and lines[i + 1].rstrip().endswith(
                ("wrote:", "writes:")):
            skip_next_quote_intro = True
            continue
        if skip_next_quote_intro:
            skip_next_quote_intro = False
            continue
        if not stripped and out and not out[-1].strip():
            continue
        out.append(line.rstrip())
    return "\n".join(out).strip("\n")


_GREETING = re.compile(r"(?i)^(hi|hello|hey|dear|greetings|thanks|thank you)\b[^.!?]{0,40}[,!]?$|^[\w.-]+,$")
_FILLER = re.compile(r"^[\s.…:;,!?*-]*$|^\[?\.\.\.\]?")


def summary(text: str, width: int = 100) -> str:
    """The first line of a reply's own words that says something: not "...", not a greeting ("Hi,",
    "Jens,"), not an empty attribution leftover; the first line at all when none qualifies."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if _FILLER.match(line) or _GREETING.match(line):
            continue
        return line[:width]
    return lines[0][:width] if lines else ""
