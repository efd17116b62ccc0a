"""The whole list archive a maintainer mirrors (a public-inbox, path from $KWB_PUBLIC_INBOX): read as it
is, one missing blob a warning, the series family whole, a repeat answered from the archive index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FAMILY = "Add support for async buffered reads"


@pytest.fixture
def public_inbox() -> Path:
    """The mirror named by $KWB_PUBLIC_INBOX (fetched by the user, never part of the project)."""
    where = os.environ.get("KWB_PUBLIC_INBOX", "")
    if not where or not Path(where).is_dir():
        pytest.skip("KWB_PUBLIC_INBOX is not set to a public-inbox mirror of the io-uring list")
    return Path(where)


def _kwb(*argv: str, cache: Path) -> subprocess.CompletedProcess[str]:
    kwb = Path(sys.executable).parent / "kwb"
    return subprocess.run([str(kwb), *argv], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "KWB_CACHE": str(cache)})


@pytest.mark.host
@pytest.mark.real
def test_whole_archive_lists_with_one_warning_per_unreadable_message(public_inbox: Path,
                                                                     tmp_path: Path) -> None:
    first = _kwb("series", "list", "--json", "--source", str(public_inbox), cache=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "Traceback" not in first.stderr
    unreadable = [line for line in first.stderr.splitlines() if "cannot read message blob" in line]
    data = json.loads(first.stdout)
    assert data["messages"] > 30000
    # The mirror this was written against misses one blob; any other count must match the summary.
    assert unreadable and f"{len(unreadable)} message(s)" in first.stderr
    family = [s for s in data["series"] if s["name"] == FAMILY]
    assert len(family) == 1
    revs = family[0]["revisions"]
    assert [r["version"] for r in revs] == [1, 2, 3, 4, 5, 7]
    assert [(r["patches"], r["expected"]) for r in revs] == [(11, 11), (11, 11), (12, 12), (12, 12),
                                                             (12, 12), (15, 12)]
    assert data["index"].startswith("archive index built")
    again = _kwb("series", "list", "--json", "--source", str(public_inbox), cache=tmp_path)
    repeat = json.loads(again.stdout)
    assert again.returncode == 0 and repeat.pop("index").startswith("archive index reused")
    data.pop("index")
    assert repeat == data
