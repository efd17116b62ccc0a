"""Streaming sources: an mbox is read in blocks with one message held; an oversized or unreadable
message is a counted warning naming it, never an abort; a 2 GiB mbox stays in bounded memory."""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from test_series_fixtures import mail, mbox, patch_body

from harness.sources import load_messages
from harness.sources import mbox as mbox_mod
from harness.sources.mbox import iter_mbox


def _run_measured(argv: list[str],
                  timeout: float) -> tuple[subprocess.CompletedProcess[str], resource.struct_rusage]:
    """Run argv to completion (killed after timeout) and return its result with its own rusage (wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(argv, stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        pid = 0
        try:
            while True:
                pid, status, usage = os.wait4(child.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"{argv[0]} still running after {timeout:.0f}s")
                time.sleep(0.2)
        finally:
            if not pid:
                child.kill()
                os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (subprocess.CompletedProcess(argv, child.returncode, out.read().decode(), err.read().decode()),
                usage)


def _sample() -> bytes:
    return mbox(mail("1@x", "[PATCH 1/2] a: one", patch_body()),
                mail("2@x", "[PATCH 2/2] b: two", patch_body()),
                mail("3@x", "Re: [PATCH 1/2] a: one", "From the start\n>From quoted\nok\n", reply_to="1@x"))


@pytest.mark.parametrize("block", [1, 2, 3, 5, 7, 8, 13, 64, 4096])
def test_any_block_size_splits_the_same(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _sample()
    whole = [(s.index, s.offset, s.length, s.raw) for s in iter_mbox(io.BytesIO(data))]
    monkeypatch.setattr(mbox_mod, "BLOCK", block)
    assert [(s.index, s.offset, s.length, s.raw) for s in iter_mbox(io.BytesIO(data))] == whole
    assert len(whole) == 3
    for _, offset, length, raw in whole:  # the locator reads the same bytes back
        assert mbox_mod.unescape(data[offset:offset + length]) == raw
    assert whole[2][3] is not None and b"\nFrom the start\n>From quoted\n" in whole[2][3]


def test_oversized_message_is_skipped_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = mail("big@x", "[PATCH] big: one", patch_body() + "x" * 5000 + "\n")
    path = tmp_path / "a.mbox"
    path.write_bytes(mbox(mail("1@x", "[PATCH] a: one", patch_body()), big, mail("2@x", "[PATCH] b: two",
                                                                                    patch_body())))
    monkeypatch.setattr(mbox_mod, "MAX_MESSAGE", 2000)
    result = mbox_mod.MboxSource().load(str(path))
    assert [m.message_id for m in result.messages] == ["1@x", "2@x"]
    assert result.skipped == 1 and any("a.mbox#2" in w and "skipped" in w for w in result.warnings)


def test_unreadable_messages_are_counted_warnings(tmp_path: Path) -> None:
    path = tmp_path / "a.mbox"
    path.write_bytes(mbox(mail("1@x", "[PATCH] a: one", patch_body()), b"no headers at all\n",
                          mail(None, "[PATCH] b: two", patch_body())))
    result = load_messages(path)
    assert len(result.messages) == 2 and result.skipped == 1
    assert any("a.mbox#2" in w for w in result.warnings)
    assert any("a.mbox#3" in w and "no Message-ID" in w for w in result.warnings)


@pytest.mark.host
@pytest.mark.real
def test_two_gib_sparse_mbox_streams_in_bounded_memory(tmp_path: Path) -> None:
    # Real messages, then one whose body is a 2 GiB hole (no newline: a corrupt download), then one
    # more message. Reading it must hold one bounded message at a time and find the last one.
    path = tmp_path / "huge.mbox"
    with path.open("wb") as f:
        f.write(_sample())
        f.write(b"From mboxrd@z Thu Jan  1 00:00:00 1970\nFrom: X <x@x>\nSubject: filler\n"
                b"Message-ID: <filler@x>\n\n")
        f.seek(2 << 30, io.SEEK_CUR)
        f.write(b"\n\n" + mbox(mail("last@x", "[PATCH] z: last", patch_body())))
    assert path.stat().st_size > 2 << 30
    kwb = Path(sys.executable).parent / "kwb"
    # The peak of this child alone: getrusage(RUSAGE_CHILDREN) is the largest child the whole pytest session
    # ever waited for (in CI, some earlier test's), not this one.
    proc, usage = _run_measured([str(kwb), "series", "list", "--json", "--source", str(path)], timeout=1200)
    peak_mib = usage.ru_maxrss / 1024
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    assert "huge.mbox#4" in proc.stderr and "skipped" in proc.stderr
    data = json.loads(proc.stdout)
    assert data["messages"] == 4
    names = {s["name"] for s in data["series"]}
    assert "z: last" in names
    # Bounded: one block and one held message (64 MiB at most) besides the interpreter, never the file.
    # Measured 120 MiB alone and 479 MiB once in a full CI-like session (not understood yet), so the bound
    # is what the test is about (a third of the file), not a figure tuned to one run.
    print(f"peak RSS {peak_mib:.0f} MiB")
    assert peak_mib < (path.stat().st_size >> 20) / 3, f"peak RSS {peak_mib:.0f} MiB"
