"""Is a posted patch whole? Its hunks against their own line counts, its diff against its own diffstat.

A mail cut short on a line boundary (a truncated mbox, a broken download) still parses; the only sign is
that the patch no longer adds up: a hunk header promises more lines than follow, or the diffstat's
insertions/deletions/files disagree with the diff. Exporting such a patch would write a shorter patch
that may even apply, so it is an error naming the patch instead.
"""

from __future__ import annotations

import re

_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_FILE = re.compile(r"^diff --git ")
_STAT_TOTAL = re.compile(r"^\s*(\d+) files? changed(?:, (\d+) insertions?\(\+\))?"
                         r"(?:, (\d+) deletions?\(-\))?")


def _diffstat(body: str) -> tuple[int, int, int] | None:
    """(files, insertions, deletions) from the summary line above the diff, None when there is none."""
    head = body.split("\ndiff --git ", 1)[0]
    for line in reversed(head.splitlines()):
        if m := _STAT_TOTAL.match(line):
            return int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)
    return None


def check_diff(diff: str) -> tuple[str | None, int, int, int]:
    """(problem or None, files, added, removed) for a diff text: every hunk must have the lines its
    header counts."""
    lines = diff.split("\n")
    files = added = removed = 0
    i = hunks = 0
    while i < len(lines):
        line = lines[i]
        if _FILE.match(line):
            files += 1
        m = _HUNK.match(line)
        if m is None:
            i += 1
            continue
        hunks += 1
        old = int(m.group(1)) if m.group(1) is not None else 1
        new = int(m.group(2)) if m.group(2) is not None else 1
        i += 1
        while (old > 0 or new > 0) and i < len(lines):
            body = lines[i]
            if body.startswith("\\"):  # "\ No newline at end of file"
                i += 1
                continue
            tag = body[:1]
            if tag == "+" and new > 0:
                new, added = new - 1, added + 1
            elif tag == "-" and old > 0:
                old, removed = old - 1, removed + 1
            elif tag in (" ", "") and old > 0 and new > 0:
                # Mailers strip the single space of an empty context line; git am accepts that too.
                old, new = old - 1, new - 1
            else:
                break
            i += 1
        if old > 0 or new > 0:
            return (f"hunk {hunks} ({line.split('@@')[1].strip()}) is cut short: {old} old and {new} new "
                    "lines missing"), files, added, removed
    return None, files, added, removed


def check_patch(body: str, diff: str) -> str | None:
    """What is wrong with a patch message's diff (``body`` is the whole message, for its diffstat), or
    None when it is whole."""
    problem, files, added, removed = check_diff(diff)
    if problem:
        return problem
    stat = _diffstat(body)
    if stat is not None:
        want_files, want_added, want_removed = stat
        if (added, removed) != (want_added, want_removed) or files != want_files:
            return (f"diffstat says {want_files} files, {want_added} insertions, {want_removed} deletions; "
                    f"the diff has {files} files, {added} insertions, {removed} deletions (cut short?)")
    return None
