"""Grouped families kept beside the archive index, so a repeat command on a whole archive does not
regroup 30,000 messages: what was found (which message is which patch or review of which revision, the
warnings) is stored by message-id and rebuilt over the index's header-only messages.

The key is the index's own key (it changes with the archive) plus a hash of the grouping code, so a
changed rule can never be answered from an old result. JSON lines (the key, then a family a line), written
and read a family at a time: the whole file's text and parsed tree beside the families made from it were
a fifth of a repeat listing's peak memory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from harness.core.atomic import replacing
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


def _line(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":")) + "\n"


def save(index_file: str, key: str, families: list[Family]) -> None:
    """Keep ``families`` for the index ``index_file`` at ``key``."""
    with replacing(cache_file(index_file)) as out:
        out.write(_line({"key": key, "code": _code_hash(), "families": len(families)}))
        for f in families:
            revisions = [_rev_record(r) for r in f.revisions]
            out.write(_line({"name": f.name, "notes": f.notes, "revisions": revisions}))


def load(index_file: str, key: str, messages: list[Message]) -> list[Family] | None:
    """The kept families, rebuilt over ``messages``; None when absent, stale or not matching."""
    by_id = {m.message_id: m for m in messages}
    families: list[Family] = []
    try:
        with cache_file(index_file).open(encoding="utf-8") as f:
            head = json.loads(f.readline())
            if not isinstance(head, dict) or head.get("key") != key or head.get("code") != _code_hash():
                return None
            for line in f:
                rec = json.loads(line)
                families.append(Family(rec["name"], [_revision(r, by_id) for r in rec["revisions"]],
                                       list(rec["notes"])))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, damaged, or an id the index no longer has: regroup
    return families if len(families) == head.get("families") else None


def _revision(rec: dict[str, Any], by_id: dict[str, Message]) -> Revision:
    patches = [Patch(number, total, subject, by_id[mid], reviews=[make_review(by_id[r]) for r in reviews],
                     analyse=analyse_patch) for number, total, subject, mid, reviews in rec["patches"]]
    return Revision(version=rec["version"], label=rec["label"], rfc=rec["rfc"], expected=rec["expected"],
                    cover=by_id[rec["cover"]] if rec["cover"] else None, patches=patches,
                    missing=list(rec["missing"]), warnings=list(rec["warnings"]),
                    cover_reviews=[make_review(by_id[r]) for r in rec["cover_reviews"]])
