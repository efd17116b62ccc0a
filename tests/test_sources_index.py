"""The archive index: built once per source, reused while the source is unchanged, extended with only the
new commits of a public-inbox, rebuilt when an mbox changes; a blob missing from a mirror is a warning."""

from __future__ import annotations

from pathlib import Path

from test_series_fixtures import mail, mbox, patch_body
from test_sources import _public_inbox

from harness.core.run import run
from harness.series.loader import ANNOTATOR, load_series
from harness.sources.registry import load_messages


def _msgs(n: int, start: int = 1) -> list[bytes]:
    return [mail(f"m{i}@x", f"[PATCH {i}/9] a: p{i}", patch_body(f"patch {i}"),
                 reply_to=None if i == 1 else "m1@x") for i in range(start, start + n)]


def _commit(repo: Path, work: Path, raw: bytes) -> None:
    (work / "m").write_bytes(raw)
    run(["git", "-C", str(work), "add", "m"], timeout=30, check=True)
    run(["git", "-C", str(work), "commit", "-q", "-m", "m"], timeout=30, check=True)
    run(["git", "-C", str(work), "push", "-q", str(repo), "HEAD:refs/heads/master"], timeout=30, check=True)


def test_public_inbox_index_is_reused_then_extended_by_new_commits_only(tmp_path: Path, cache: Path) -> None:
    inbox = _public_inbox(tmp_path, _msgs(3), per_epoch=10)
    first = load_messages(inbox, ANNOTATOR)
    assert "built (3 messages)" in first.index_note and len(first.messages) == 3
    again = load_messages(inbox, ANNOTATOR)
    assert "reused" in again.index_note and [m.message_id for m in again.messages] == ["m1@x", "m2@x", "m3@x"]
    _commit(inbox / "git" / "0.git", tmp_path / "work0", _msgs(1, start=4)[0])
    grown = load_messages(inbox, ANNOTATOR)
    assert "extended by 1 messages" in grown.index_note
    assert [m.message_id for m in grown.messages] == ["m1@x", "m2@x", "m3@x", "m4@x"]
    assert b"patch 4" in grown.messages[-1].raw  # bodies are read back from the mirror on demand


def test_missing_blob_is_a_counted_warning_not_an_abort(tmp_path: Path, cache: Path) -> None:
    inbox = _public_inbox(tmp_path, _msgs(3), per_epoch=10)
    repo = inbox / "git" / "0.git"
    blob = run(["git", "-C", str(repo), "rev-parse", "master~1:m"], timeout=30, check=True).stdout.strip()
    (repo / "objects" / blob[:2] / blob[2:]).unlink()  # loose objects: the mirror lost this one
    loaded = load_series(inbox)
    missing = [w for w in loaded.warnings if "cannot read message blob" in w]
    assert len(missing) == 1 and blob[:12] in missing[0] and "0.git@" in missing[0]
    assert any("1 message(s)" in w for w in loaded.warnings)
    assert loaded.message_count == 2


def test_changed_mbox_is_reindexed(tmp_path: Path, cache: Path) -> None:
    path = tmp_path / "a.mbox"
    path.write_bytes(mbox(*_msgs(2)))
    assert "built (2" in load_messages(path, ANNOTATOR).index_note
    assert "reused" in load_messages(path, ANNOTATOR).index_note
    path.write_bytes(mbox(*_msgs(3)))
    again = load_messages(path, ANNOTATOR)
    assert "built (3" in again.index_note and len(again.messages) == 3


def test_index_of_a_source_that_is_gone_is_pruned(tmp_path: Path, cache: Path) -> None:
    gone = tmp_path / "gone.mbox"
    gone.write_bytes(mbox(*_msgs(2)))
    load_series(gone)
    assert len(list((cache / "archive-index").glob("*.json"))) == 2  # index + kept families
    gone.unlink()
    kept = tmp_path / "kept.mbox"
    kept.write_bytes(mbox(*_msgs(2)))
    load_series(kept)
    names = sorted(p.name for p in (cache / "archive-index").glob("*.json"))
    assert len(names) == 2 and all(n.startswith("mbox-") for n in names)
    assert load_messages(kept, ANNOTATOR).index_note.startswith("archive index reused")


def test_damaged_index_is_rebuilt_and_ids_are_shared(tmp_path: Path, cache: Path) -> None:
    """An index cut short (no trailer) is built again, whether it was to be reused or extended; the
    messages read back share each message-id string with the references naming it."""
    inbox = _public_inbox(tmp_path, _msgs(3), per_epoch=10)
    load_messages(inbox, ANNOTATOR)
    (index,) = (cache / "archive-index").glob("public-inbox-*.json")
    lines = index.read_text().splitlines(keepends=True)
    assert len(lines) == 1 + 3 + 1  # header, a record per message, trailer
    index.write_text("".join(lines[:3]))
    rebuilt = load_messages(inbox, ANNOTATOR)
    assert "built (3 messages)" in rebuilt.index_note
    again = load_messages(inbox, ANNOTATOR)
    assert "reused" in again.index_note
    first, second = again.messages[:2]
    assert second.in_reply_to is first.message_id and second.references[-1] is first.message_id
    index.write_text("".join(index.read_text().splitlines(keepends=True)[:2]))
    _commit(inbox / "git" / "0.git", tmp_path / "work0", _msgs(1, start=4)[0])
    grown = load_messages(inbox, ANNOTATOR)
    assert "built (4 messages)" in grown.index_note and len(grown.messages) == 4
