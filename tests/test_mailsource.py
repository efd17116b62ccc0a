"""Where the static concern step's mail comes from: given, shared archive, lore (b4), or skipped."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_pipeline import Recorder, _opts

from harness.core.errors import OfflineError
from harness.core.progress import Progress
from harness.orchestrate.pipeline import run_pipeline
from harness.report import schema
from harness.sources import mailsource

ROOT = Path(__file__).resolve().parent.parent


def _no_shared() -> Path | None:
    return None


def test_given_source_wins_and_asks_nobody() -> None:
    def boom() -> bool:
        raise AssertionError("must not probe the network")

    choice = mailsource.choose("x.mbox", probe=boom, shared=boom)  # type: ignore[arg-type]
    assert (choice.kind, choice.spec) == ("given", "x.mbox")


def test_shared_archive_before_lore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lore = tmp_path / "shared" / "lore"
    lore.mkdir(parents=True)
    (lore / "other-list-2020.mbox").write_text("From x\n")
    (lore / "io-uring-2020.mbox").write_text("From x\n")
    monkeypatch.setenv("KWB_SHARED", str(tmp_path / "shared"))
    assert mailsource.shared_archive() == lore / "io-uring-2020.mbox"  # the profile's list is io-uring@
    choice = mailsource.choose(None, probe=lambda: True)
    assert choice.kind == "shared" and choice.spec == str(lore / "io-uring-2020.mbox")
    # SOURCE=lore: lore only, even with an archive beside the checkout.
    assert mailsource.choose("lore", probe=lambda: True).kind == "lore"


def test_no_shared_archive_when_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KWB_SHARED", str(tmp_path / "nothing"))
    assert mailsource.shared_archive() is None


def test_lore_when_online_skip_when_offline() -> None:
    online = mailsource.choose(None, probe=lambda: True, shared=_no_shared)
    ids = mailsource.revision_message_ids()
    assert online.kind == "lore" and online.spec == ",".join(ids)
    offline = mailsource.choose(None, probe=lambda: False, shared=_no_shared)
    assert offline.kind == "none" and offline.spec is None
    assert offline.reason.startswith("skipped: no mail source (offline) — pass SOURCE=")


def test_every_revision_of_the_profile_has_a_thread_id() -> None:
    ids = mailsource.revision_message_ids()
    assert len(ids) >= 5 and all("@" in i and "<" not in i for i in ids)
    assert len(set(ids)) == len(ids)


def test_network_probe_faked_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.sources.lore as lore

    calls: list[float] = []

    def up(host: str = "", timeout: float = 0) -> None:
        calls.append(timeout)

    def down(host: str = "", timeout: float = 0) -> None:
        calls.append(timeout)
        raise OfflineError("cannot reach lore")

    monkeypatch.delenv("KWB_OFFLINE", raising=False)
    monkeypatch.setattr(lore, "check_online", up)
    assert mailsource.network_up() is True
    monkeypatch.setattr(lore, "check_online", down)
    assert mailsource.network_up() is False
    assert calls == [mailsource.NETWORK_TIMEOUT] * 2 and mailsource.NETWORK_TIMEOUT <= 3
    monkeypatch.setattr(lore, "check_online", up)
    monkeypatch.setenv("KWB_OFFLINE", "1")
    assert mailsource.network_up() is False and len(calls) == 2  # not even asked


def test_the_probe_gives_up_quickly_on_a_dead_port() -> None:
    from harness.sources.lore import check_online

    start = time.monotonic()
    with pytest.raises(OfflineError):
        check_online("127.0.0.1", timeout=1.0)  # nothing listens on 443 here: refused at once
    assert time.monotonic() - start < 2.5


def test_fetch_lore_concatenates_one_thread_per_revision(cache: Path) -> None:
    fetched: list[str] = []

    def fake_b4(msgid: str, dest: Path) -> None:
        fetched.append(msgid)
        dest.write_text(f"From a@b Thu Jan  1 00:00:00 1970\nMessage-ID: <{msgid}>\nSubject: x\n\nbody\n")

    lines: list[str] = []
    path = mailsource.fetch_lore(["a@x", "b@x"], lines.append, run_b4=fake_b4)
    text = path.read_text()
    assert "<a@x>" in text and "<b@x>" in text and fetched == ["a@x", "b@x"]
    assert lines == ["lore: b4 mbox 1/2 a@x", "lore: b4 mbox 2/2 b@x"]
    mailsource.fetch_lore(["a@x", "b@x"], run_b4=fake_b4)
    assert fetched == ["a@x", "b@x"]  # kept threads are not fetched again


def test_require_fails_fast_offline() -> None:
    start = time.monotonic()
    with pytest.raises(OfflineError, match="pass --source"):
        mailsource.require(None, probe=lambda: False, shared=_no_shared)
    assert time.monotonic() - start < 5


def test_series_cli_offline_without_source_is_one_line_within_5s(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KWB_CACHE": str(tmp_path / "cache"),
           "KWB_SHARED": str(tmp_path / "no-shared"), "KWB_OFFLINE": "1"}
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "harness.cli", "series", "list"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    took = time.monotonic() - start
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().count("\n") == 0 and "no mail source" in res.stderr and "offline" in res.stderr
    assert took < 5, took


def test_pipeline_without_mail_runs_the_kernel_part_and_says_what_was_not_checked(tmp_path: Path) -> None:
    rec = Recorder()
    stages = rec.stages()
    stages.choose_source = lambda given, progress: mailsource.choose(given, probe=lambda: False,
                                                                     shared=_no_shared)
    console = io.StringIO()
    opts = _opts(tmp_path)
    opts.source = None
    code = run_pipeline(opts, stages, Progress(quiet=True, stream=console))
    assert code == 0  # nothing failed: the concern step was not possible, the kernel part passed
    data = json.loads((tmp_path / "out" / "latest" / "results.json").read_text())
    assert schema.errors(data) == []
    assert rec.runs, "the kernel part must run without mail"
    step = next(s for s in data["run"]["steps"] if s["name"] == "series")
    assert step["status"] == "skipped" and step["reason"] == mailsource.SKIPPED
    assert data["run"]["mail"] == {"kind": "none", "spec": None, "reason": mailsource.SKIPPED}
    assert data["concerns"] == []
    assert data["verdict"]["ok"] is True
    assert data["verdict"]["not_checked"] == [f"review concerns (static, per revision): {mailsource.SKIPPED}"]
    report = (tmp_path / "out" / "latest" / "report.md").read_text()
    assert mailsource.SKIPPED in report
    assert f"series: {mailsource.SKIPPED}" in console.getvalue()
    assert "not checked: review concerns" in console.getvalue()


def test_user_tree_without_mail_is_a_usage_error(tmp_path: Path) -> None:
    from harness.core.errors import UserError

    stages = Recorder().stages()
    stages.choose_source = lambda given, progress: mailsource.choose(given, probe=lambda: False,
                                                                     shared=_no_shared)
    opts = _opts(tmp_path, tree=tmp_path, revision=5)
    opts.source = None
    with pytest.raises(UserError, match="--tree needs the series' mail"):
        run_pipeline(opts, stages, Progress(quiet=True, stream=io.StringIO()))


@pytest.mark.host
@pytest.mark.real
def test_real_b4_offline_fails_in_one_line_within_5s(tmp_path: Path) -> None:
    """The real probe and b4 on this machine: online it fetches the series' first thread, offline it
    says so in one line within seconds (whichever this machine is)."""
    if mailsource.network_up():
        path = mailsource.fetch_lore(mailsource.revision_message_ids()[:1])
        assert path.stat().st_size > 1000
        return
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KWB_CACHE": str(tmp_path / "cache"),
           "KWB_SHARED": str(tmp_path / "no-shared")}
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "harness.cli", "series", "list"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "offline" in res.stderr
    assert time.monotonic() - start < 5
