"""Process remarks: catalogued as their own kind, each a real message that says what the entry quotes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.core.errors import UserError
from harness.series.remarks import load_remarks
from harness.sources import load_messages


def test_catalogue_has_the_process_remarks() -> None:
    remarks = {r.id: r for r in load_remarks()}
    assert set(remarks) == {"v7-broken-reply-to-empty-cover", "btrfs-list-not-copied"}
    assert all(r.raised_on == 7 for r in remarks.values())


def test_remark_quotes_are_in_their_messages(lore_mbox: Path) -> None:
    by_id = {m.message_id: m for m in load_messages(lore_mbox).messages}
    for remark in load_remarks():
        msg = by_id[remark.message_id]
        assert " ".join(remark.quote.split()) in " ".join(msg.body.split()), remark.id
        assert all(r in by_id for r in remark.related)


def test_series_concerns_lists_them_as_process(capsys: pytest.CaptureFixture[str], lore_mbox: Path) -> None:
    assert main(["series", "concerns", "--source", str(lore_mbox), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {r["kind"] for r in data["process"]} == {"process"} and len(data["process"]) == 2
    assert len(data["concerns"]) == 24 * 6


def test_bad_remark_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[process]]\nid = "x"\ntitle = "t"\n')
    with pytest.raises(UserError, match="process remark #1"):
        load_remarks(path)
