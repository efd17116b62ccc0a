"""git cat-file --batch as a byte stream (harness.sources.gitbatch), started by harness.core.run.spawn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import harness.sources.gitbatch as gitbatch
from harness.core.errors import InfraError
from harness.core.run import Child, run, spawn
from harness.sources.gitbatch import BatchReader


def _repo(tmp_path: Path, n: int) -> tuple[Path, list[str]]:
    repo = tmp_path / "r"
    run(["git", "init", "-q", str(repo)], timeout=30, check=True)
    commits = []
    for i in range(n):
        (repo / "m").write_bytes(b"message %d\n\x00\xff" % i)
        run(["git", "-C", str(repo), "add", "m"], timeout=30, check=True)
        run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "-m", "m"],
            timeout=30, check=True)
        head = run(["git", "-C", str(repo), "rev-parse", "HEAD"], timeout=30, check=True)
        commits.append(head.stdout.strip())
    return repo, commits


def test_reads_objects_as_bytes_and_missing_as_none(tmp_path: Path) -> None:
    repo, commits = _repo(tmp_path, 3)
    with BatchReader(repo) as reader:
        assert reader.read(f"{commits[1]}:m") == b"message 1\n\x00\xff"
        assert reader.read(f"{commits[1]}:nothing") is None
        got = list(reader.stream(commits, suffix=":m"))
        assert [name for name, _ in got] == commits
        assert [data for _, data in got] == [b"message %d\n\x00\xff" % i for i in range(3)]


def test_abandoned_stream_kills_git_and_the_next_read_starts_another(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    repo, commits = _repo(tmp_path, 3)
    started: list[Child] = []

    def tracked(argv: list[str], **kw: Any) -> Child:
        started.append(spawn(argv, **kw))
        return started[-1]

    monkeypatch.setattr(gitbatch, "spawn", tracked)
    with BatchReader(repo) as reader:
        stream = reader.stream(commits, suffix=":m")
        next(stream)
        stream.close()  # its other answers are still in the pipe: that git must not be reused
        assert not started[0].running()
        assert reader.read(f"{commits[2]}:m") == b"message 2\n\x00\xff"
        assert len(started) == 2
    assert not any(child.running() for child in started)


def test_a_git_that_stops_answering_is_killed_and_named(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    hung: list[Child] = []

    def silent(argv: list[str], **kw: Any) -> Child:
        hung.append(spawn(["sh", "-c", "echo stuck on a lock >&2; exec sleep 300"], **kw))
        return hung[-1]

    monkeypatch.setattr(gitbatch, "spawn", silent)
    with BatchReader(tmp_path) as reader, pytest.raises(InfraError) as err:
        reader.read("HEAD:m", timeout=0.5)
    assert str(err.value).startswith(f"git cat-file --batch in {tmp_path} stopped answering at HEAD:m "
                                     "(timed out)")
    assert "stuck on a lock" in str(err.value)
    assert not hung[0].running()
