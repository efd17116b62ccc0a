"""Grouped families kept beside the archive index, so a repeat command on a whole archive does not
regroup 30,000 messages: what was found (which message is which patch or review of which revision, the
warnings) is stored by message-id and rebuilt over the index's header-only messages.

The key is the index's own key (it changes with the archive) plus a hash of the grouping code, so a
changed rule can never be answered from an old result.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from harness.core.atomic import write_text
from harness.series.model import Family, Patch, Revision
from harness.series.revisions import analyse_patch, make_review
from harness.sources.message import Message

_CODE = ("bodies.py", "families.py", "grouping.py", "integrity.py", "model.py", "revisions.py",
         "subjects.py", "cache.py")


def _code_hash() -> str:
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _CODE:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def cache_file(index_file: str) -> Path:
    """Where the families of one archive index are kept."""
    return Path(index_file).with_suffix(".families.json")


def _rev_record(rev: Revision) -> dict[str, Any]:
    return {"version": rev.version, "label": rev.label, "rfc": rev.rfc, "expected": rev.expected,
            "cover": rev.cover.message_id if rev.cover else None, "missing": rev.missing,
            "warnings": rev.warnings, "cover_reviews": [r.message.message_id for r in rev.cover_reviews],
            "patches": [[p.number, p.total, p.subject, p.message.message_id,
                         [r.message.message_id for r in p.reviews]] for p in rev.patches]}


def save(index_file: str, key: str, families: list[Family]) -> None:
    """Keep ``families`` for the index ``index_file`` at ``key``."""
    data = {"key": key, "code": _code_hash(),
            "families": [{"name": f.name, "notes": f.notes,
                          "revisions": [_rev_record(r) for r in f.revisions]} for f in families]}
    write_text(cache_file(index_file), json.dumps(data, separators=(",", ":")))


def load(index_file: str, key: str, messages: list[Message]) -> list[Family] | None:
    """The kept families, rebuilt over ``messages``; None when absent, stale or not matching."""
    try:
        data = json.loads(cache_file(index_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key or data.get("code") != _code_hash():
        return None
    by_id = {m.message_id: m for m in messages}
    try:
        return [Family(f["name"], [_revision(r, by_id) for r in f["revisions"]], list(f["notes"]))
                for f in data["families"]]
    except (KeyError, TypeError, ValueError):
        return None  # an id the index no longer has: regroup


def _revision(rec: dict[str, Any], by_id: dict[str, Message]) -> Revision:
    patches = [Patch(number, total, subject, by_id[mid], reviews=[make_review(by_id[r]) for r in reviews],
                     analyse=analyse_patch) for number, total, subject, mid, reviews in rec["patches"]]
    return Revision(version=rec["version"], label=rec["label"], rfc=rec["rfc"], expected=rec["expected"],
                    cover=by_id[rec["cover"]] if rec["cover"] else None, patches=patches,
                    missing=list(rec["missing"]), warnings=list(rec["warnings"]),
                    cover_reviews=[make_review(by_id[r]) for r in rec["cover_reviews"]])
