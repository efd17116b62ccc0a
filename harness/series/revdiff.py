"""Revision diff without a kernel tree: per patch unchanged / changed / new / dropped.

Sameness is ``git patch-id --stable`` (whitespace and line numbers do not count); patches are paired by
subject, then by patch-id for renamed ones. Changed patches get a diff of their diffs.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from harness.core.errors import InfraError
from harness.core.run import run
from harness.series.model import Patch, Revision
from harness.series.subjects import normalise_title

_FAKE_SHA = "{:040x}"


@dataclass
class PatchChange:
    """How one patch differs between revision A and revision B."""

    status: str  # unchanged | message-changed (same diff, new commit message) | changed | new | dropped
    subject: str
    old: int | None
    new: int | None
    old_patch_id: str | None
    new_patch_id: str | None
    interdiff: str = ""
    message_changed: bool = False
    message_diff: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {"status": self.status, "subject": self.subject, "old": self.old, "new": self.new,
                "old_patch_id": self.old_patch_id, "new_patch_id": self.new_patch_id,
                "interdiff": self.interdiff, "message_changed": self.message_changed,
                "message_diff": self.message_diff}


_TRAILER = re.compile(r"^[A-Z][A-Za-z-]+: .*\S")


def _message_text(message: str) -> list[str]:
    # Trailers collected between revisions (Acked-by, Reviewed-by …) are not a change of the message.
    return [line.rstrip() + "\n" for line in message.strip("\n").splitlines() if not _TRAILER.match(line)]


def patch_ids(patches: list[Patch]) -> dict[int, str]:
    """``git patch-id --stable`` of each patch's diff, keyed by patch number (absent when no diff)."""
    stream = "".join(f"From {_FAKE_SHA.format(p.number)} Mon Sep 17 00:00:00 2001\n\n{p.diff}\n"
                     for p in patches if p.diff)
    if not stream:
        return {}
    result = run(["git", "patch-id", "--stable"], input=stream, timeout=60)
    if not result.ok:
        raise InfraError(f"git patch-id failed: {result.tail(1)}")
    out: dict[int, str] = {}
    for line in result.stdout.splitlines():
        pid, _, commit = line.partition(" ")
        if re.fullmatch(r"[0-9a-f]{40}", commit):
            out[int(commit, 16)] = pid
    return out


def interdiff(old: str, new: str, old_label: str, new_label: str) -> str:
    """Unified diff of two diffs; ``index`` lines are dropped (they change with any base)."""
    def lines(text: str) -> list[str]:
        return [line for line in text.splitlines(keepends=True) if not line.startswith("index ")]
    return "".join(difflib.unified_diff(lines(old), lines(new), old_label, new_label, n=2))


def _pair(a: Revision, b: Revision, ids_a: dict[int, str], ids_b: dict[int, str]) -> list[tuple[
        Patch | None, Patch | None]]:
    by_title = {normalise_title(p.subject): p for p in a.patches}
    by_id = {ids_a[p.number]: p for p in a.patches if p.number in ids_a}
    used: set[int] = set()
    pairs: list[tuple[Patch | None, Patch | None]] = []
    for p in b.patches:
        match = by_title.get(normalise_title(p.subject))
        if match is None or match.number in used:
            match = by_id.get(ids_b.get(p.number, ""))
        if match is not None and match.number in used:
            match = None
        if match is not None:
            used.add(match.number)
        pairs.append((match, p))
    pairs.extend((p, None) for p in a.patches if p.number not in used)
    return pairs


def diff_revisions(a: Revision, b: Revision) -> list[PatchChange]:
    """Per-patch changes from revision ``a`` to revision ``b`` (in b's order, dropped ones last)."""
    ids_a, ids_b = patch_ids(a.patches), patch_ids(b.patches)
    changes = []
    for old, new in _pair(a, b, ids_a, ids_b):
        old_id = ids_a.get(old.number) if old else None
        new_id = ids_b.get(new.number) if new else None
        if old is None and new is not None:
            changes.append(PatchChange("new", new.subject, None, new.number, None, new_id))
        elif new is None and old is not None:
            changes.append(PatchChange("dropped", old.subject, old.number, None, old_id, None))
        elif old is not None and new is not None:
            same = old_id is not None and old_id == new_id
            text = "" if same else interdiff(old.diff, new.diff, f"v{a.version}/{old.number:02d}",
                                              f"v{b.version}/{new.number:02d}")
            before, after = _message_text(old.commit_message), _message_text(new.commit_message)
            labels = (f"v{a.version}/{old.number:02d} message", f"v{b.version}/{new.number:02d} message")
            message = "" if before == after else "".join(difflib.unified_diff(before, after, *labels, n=1))
            status = "changed" if not same else ("message-changed" if message else "unchanged")
            changes.append(PatchChange(status, new.subject, old.number, new.number, old_id, new_id, text,
                                       bool(message), message))
    return changes
