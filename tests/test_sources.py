"""Sources: mbox/mboxrd, Maildir, public-inbox v2 (real git), lore offline, saved thread views."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_series_fixtures import mail, mbox, patch_body

from harness.core.errors import OfflineError, UserError
from harness.core.run import run
from harness.sources import load_messages, open_source
from harness.sources.lore import LoreSource, check_online
from harness.sources.mbox import split_mbox
from harness.sources.publicinbox import epochs


def test_mboxrd_from_lines_are_unescaped() -> None:
    data = mbox(mail("a@x", "hello", "line\nFrom the start\n>From twice\n"))
    assert b"\n>From the start\n>>From twice\n" in data  # written escaped
    [(origin, raw)] = list(split_mbox(data, "t.mbox"))
    assert origin == "t.mbox#1"
    assert b"\nFrom the start\n>From twice\n" in raw


def test_mbox_source_reads_messages_in_order(tmp_path: Path) -> None:
    path = tmp_path / "a.mbox"
    path.write_bytes(mbox(mail("1@x", "[PATCH 1/2] a", patch_body()), mail("2@x", "[PATCH 2/2] b",
                                                                             patch_body())))
    result = load_messages(path)
    assert result.kind == "mbox"
    assert [m.message_id for m in result.messages] == ["1@x", "2@x"]
    assert result.messages[0].sender_email == "axboe@kernel.dk"


def test_real_archive_parses_every_message(lore_mbox: Path) -> None:
    result = load_messages(lore_mbox)
    # 1,672 messages, one of them a second copy of an earlier Message-ID (reported, not dropped silently).
    assert len(result.messages) == 1671
    assert any("duplicate Message-ID" in w for w in result.warnings)


def test_maildir(tmp_path: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (tmp_path / "md" / sub).mkdir(parents=True)
    (tmp_path / "md" / "cur" / "1:2,S").write_bytes(mail("m1@x", "[PATCH] one", patch_body()))
    (tmp_path / "md" / "new" / "2").write_bytes(mail("m2@x", "Re: [PATCH] one", "ok", reply_to="m1@x"))
    result = load_messages(tmp_path / "md")
    assert result.kind == "maildir"
    assert {m.message_id for m in result.messages} == {"m1@x", "m2@x"}


def _public_inbox(root: Path, messages: list[bytes], per_epoch: int) -> Path:
    """A v2 inbox built with real git: one commit per message, the message in a file named m."""
    inbox = root / "inbox"
    for start in range(0, len(messages), per_epoch):
        repo = inbox / "git" / f"{start // per_epoch}.git"
        work = root / f"work{start // per_epoch}"
        run(["git", "init", "-q", "--bare", str(repo)], timeout=30, check=True)
        run(["git", "init", "-q", str(work)], timeout=30, check=True)
        for raw in messages[start:start + per_epoch]:
            (work / "m").write_bytes(raw)
            run(["git", "-C", str(work), "add", "m"], timeout=30, check=True)
            run(["git", "-C", str(work), "commit", "-q", "-m", "m"], timeout=30, check=True)
        run(["git", "-C", str(work), "push", "-q", str(repo), "HEAD:refs/heads/master"], timeout=30,
            check=True)
    return inbox


@pytest.mark.shared
@pytest.mark.real
def test_public_inbox_built_from_real_messages(tmp_path: Path, lore_mbox: Path) -> None:
    # The v5 cover and its 12 patches, taken from the shared archive at test time.
    data = lore_mbox.read_bytes()
    raws = [raw for _, raw in split_mbox(data, "lore")
            if b"20200526195123.29053-" in raw.split(b"\n\n", 1)[0]
            and b"\nMessage-Id: <20200526195123.29053-" in raw.split(b"\n\n", 1)[0]]
    assert len(raws) == 13
    inbox = _public_inbox(tmp_path, raws, per_epoch=8)
    assert [p.name for p in epochs(inbox)] == ["0.git", "1.git"]
    result = load_messages(inbox)
    assert result.kind == "public-inbox"
    assert [m.raw for m in result.messages] == raws  # byte-exact, epoch then commit order
    from harness.series.loader import load_series
    fam = load_series(inbox).families[0]
    assert fam.revisions[0].version == 5 and len(fam.revisions[0].patches) == 12


def test_single_epoch_repo_is_accepted(tmp_path: Path) -> None:
    inbox = _public_inbox(tmp_path, [mail("e1@x", "[PATCH] one", patch_body())], per_epoch=1)
    assert open_source(inbox / "git" / "0.git").name == "public-inbox"


@pytest.mark.host
@pytest.mark.real
def test_lore_offline_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        check_online(timeout=3)
    except OfflineError:
        pass
    else:
        pytest.skip("this machine reaches lore.kernel.org; the offline path is not exercised")
    start = time.monotonic()
    with pytest.raises(OfflineError, match="offline"):
        load_messages("20200526195123.29053-1-axboe@kernel.dk")
    assert time.monotonic() - start < 15


def test_lore_accepts_only_message_ids(tmp_path: Path) -> None:
    src = LoreSource()
    assert src.accepts("<20200526195123.29053-1-axboe@kernel.dk>")[0]
    assert not src.accepts(str(tmp_path))[0]
    assert not src.accepts("no-at-sign")[0]


def test_unknown_source_names_every_kind(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"mbox: .*maildir: .*public-inbox: .*lore: "):
        open_source(tmp_path / "missing-file")


def test_thread_view_v3_yields_messages_with_threading(seeds: Path) -> None:
    [path] = seeds.glob("001_*")
    result = load_messages(path)
    assert result.kind == "thread-view"
    msgs = result.messages
    assert len(msgs) == 27  # 29 shown; the two strays below are named, not made messages
    assert msgs[0].subject == "[PATCHSET v2 0/12] Add support for async buffered reads"
    trond = next(m for m in msgs if m.sender == "Trond Myklebust")
    parent = next(m for m in msgs if m.message_id == trond.in_reply_to)
    assert parent.subject.startswith("[PATCH 05/12]")
    assert "'private' field" in trond.body
    # two later reposts of patch 06 hang under covers the view does not show: said, not hidden
    assert sum("a posting this view does not show" in w for w in result.warnings) == 2


def test_thread_view_older_archive_and_hypermail_page(seeds: Path) -> None:
    [aio] = seeds.glob("003_*")
    msgs = load_messages(aio).messages
    assert msgs[0].subject == "[PATCH 1/5] aio: Kill return value of aio_complete()"
    assert any(m.in_reply_to and "gmane" in m.in_reply_to for m in msgs)  # [not found] parents kept
    [page] = seeds.glob("004_*")
    [msg] = load_messages(page).messages
    assert msg.sender == "Al Viro" and msg.date is not None and msg.date.year == 2019


def test_lore_online_path_runs_b4_mbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       lore_mbox: Path) -> None:
    """The online path with the network and b4 replaced: kwb asks `b4 mbox` for the thread and parses
    the mbox it writes (the real b4 needs lore; this machine has no network)."""
    import sys

    import harness.sources.lore as lore

    thread = tmp_path / "thread.src"
    data = lore_mbox.read_bytes()
    raws = [raw for _, raw in split_mbox(data, "lore")
            if b"\nMessage-Id: <20200526195123.29053-" in raw.split(b"\n\n", 1)[0]]
    thread.write_bytes(mbox(*raws))
    fake = tmp_path / "fake_b4.py"
    fake.write_text(
        "import shutil, sys\n"
        "args = sys.argv[1:]\n"
        "assert args[0] == 'mbox' and args[-1] == '20200526195123.29053-1-axboe@kernel.dk', args\n"
        f"shutil.copyfile({str(thread)!r}, args[args.index('-o') + 1] + '/' + args[args.index('-n') + 1])\n")
    monkeypatch.setattr(lore, "check_online", lambda *a, **k: None)
    monkeypatch.setattr(lore, "b4_command", lambda: [sys.executable, str(fake)])
    result = load_messages("<20200526195123.29053-1-axboe@kernel.dk>")
    assert result.kind == "lore" and len(result.messages) == 13
