"""Atomic file writes: readers see the old file or the new one, never half of one."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.atomic import replacing, write_text


def test_replacing_writes_piece_by_piece_and_keeps_the_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "index.json"
    write_text(target, "old\n")
    with pytest.raises(RuntimeError), replacing(target) as out:
        out.write("half of the new")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old\n"
    with replacing(target) as out:
        for n in range(3):
            out.write(f"line {n}\n")
        assert target.read_text() == "old\n"  # not yet: only when the block ends
    assert target.read_text() == "line 0\nline 1\nline 2\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["index.json"]  # no temporary file left
