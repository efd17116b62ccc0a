"""Streaming sources: an mbox is read in blocks with one message held; an oversized or unreadable
message is a counted warning naming it, never an abort; a 2 GiB mbox stays in bounded memory."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_series_fixtures import mail, mbox, patch_body

from harness.sources import load_messages
from harness.sources import mbox as mbox_mod
from harness.sources.mbox import iter_mbox

# kwb in a wrapper that prints the process's own peak RSS (VmHWM: since its exec) as it exits. Not the
# rusage of a waited-for child: a child's ru_maxrss starts from its parent's peak (exec records the
# address space it replaces, which after vfork is the parent's), so inside a full pytest session it read
# pytest's ~480 MiB, not kwb's.
_OWN_PEAK = """
import atexit, sys
def _peak():
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    print(f"KWB_OWN_PEAK_KIB={kib}", file=sys.stderr)
atexit.register(_peak)
from harness.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _kwb_own_peak(argv: list[str], timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run kwb with ``argv``; its result and its own peak RSS in MiB."""
    proc = subprocess.run([sys.executable, "-c", _OWN_PEAK, *argv], capture_output=True, text=True,
                          timeout=timeout)
    peaks = [int(line.split("=")[1]) for line in proc.stderr.splitlines()
             if line.startswith("KWB_OWN_PEAK_KIB=")]
    assert peaks, proc.stderr[-2000:]
    return proc, peaks[-1] / 1024


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
    proc, peak_mib = _kwb_own_peak(["series", "list", "--json", "--source", str(path)], timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    assert "huge.mbox#4" in proc.stderr and "skipped" in proc.stderr
    data = json.loads(proc.stdout)
    assert data["messages"] == 4
    names = {s["name"] for s in data["series"]}
    assert "z: last" in names
    # Bounded: at most one held message (MAX_MESSAGE: the oversized one is held that far before it is
    # dropped) and a block besides the interpreter and kwb's imports, never the file. Measured 94 MiB
    # (27 MiB of it before reading).
    print(f"own peak RSS {peak_mib:.0f} MiB")
    assert peak_mib <= (mbox_mod.MAX_MESSAGE >> 20) + 128, f"own peak RSS {peak_mib:.0f} MiB"
