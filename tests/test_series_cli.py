"""`kwb series …` through harness.cli.main: JSON shapes, diffs, concerns, and bad input → warning or
one-line error with exit 3, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_series_fixtures import FAMILY, lore_loaded, mail, mbox, patch_body

from harness.cli import main
from harness.core.errors import ExitCode


def _lore() -> str:
    lore_loaded()
    from conftest import LORE_MBOX
    return str(LORE_MBOX)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.mark.shared
@pytest.mark.real
def test_list_json_has_the_family(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "series", "list", "--source", _lore(), "--json")
    assert code == 0
    data = json.loads(out)
    [fam] = [s for s in data["series"] if s["name"] == FAMILY]
    got = [(r["version"], r["label"], r["rfc"], r["expected"], r["patches"]) for r in fam["revisions"]]
    assert got == [(1, "RFC", True, 11, 11), (2, "v2 RFC", True, 11, 11), (3, "v2", False, 12, 12),
                   (4, "v4", False, 12, 12), (5, "v5", False, 12, 12), (7, "v7", False, 12, 15)]
    assert fam["revisions"][4]["cover_message_id"] == "20200526195123.29053-1-axboe@kernel.dk"
    assert any("NN/15" in w for w in fam["revisions"][5]["warnings"])


@pytest.mark.shared
@pytest.mark.real
def test_diff_names_changed_patch(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "series", "diff", "--source", _lore(), "4", "5")
    assert code == 0
    # v5 changed patch 12's code and only 04/12's commit message: the diff tells the two apart.
    lines = {line.split()[1]: line.split()[0] for line in out.splitlines()[1:-1]}
    assert lines["12→12"] == "changed" and lines["4→4"] == "message-changed"
    assert "10 unchanged, 1 message-changed, 1 changed, 0 new, 0 dropped" in out
    code, out, _ = _run(capsys, "series", "diff", "--source", _lore(), "v4", "v5", "--json")
    assert json.loads(out)["counts"] == {"unchanged": 10, "message-changed": 1, "changed": 1, "new": 0,
                                         "dropped": 0}


def test_show_revision_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "series", "show", "--source", _lore(), "--revision", "3", "--json")
    assert code == 0
    [rev] = json.loads(out)["revisions"]
    assert rev["version"] == 3 and len(rev["patches"]) == 12
    assert any(r["reviewer"] == "Trond Myklebust" for r in rev["patches"][4]["reviews"])


def test_show_unknown_revision_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "series", "show", "--source", _lore(), "--revision", "6")
    assert code == ExitCode.USAGE and "no revision 6" in err


def test_concerns_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "series", "concerns", "--source", _lore(), "--json")
    if code == ExitCode.INFRASTRUCTURE and "not available" in err:
        pytest.skip("concern catalogue module not there yet")
    assert code == 0
    records = json.loads(out)["concerns"]
    versions = {r["version"] for r in records}
    assert {3, 4, 5, 7} <= versions
    assert all(r["status"] in ("present", "addressed", "not-applicable") for r in records)


def test_thread_view_source_via_cli(capsys: pytest.CaptureFixture[str], seeds: Path) -> None:
    [path] = seeds.glob("001_*")
    code, out, _ = _run(capsys, "series", "show", "--source", str(path), "--json")
    assert code == 0
    revs = json.loads(out)["revisions"]
    v3 = next(r for r in revs if r["label"] == "v2")
    assert v3["version"] == 3  # relabelled from the author's reply inside the thread view
    assert len(v3["patches"]) == 12
    reviewers = {r["reviewer"] for p in v3["patches"] for r in p["reviews"]}
    assert {"Trond Myklebust", "Pavel Begunkov"} <= reviewers


# --------------------------------------------------------------------------------- robustness


def test_empty_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "empty.mbox").write_bytes(b"")
    code, _, err = _run(capsys, "series", "list", "--source", str(tmp_path / "empty.mbox"))
    assert code == ExitCode.USAGE and "empty file" in err and len(err.strip().splitlines()) == 1


def test_missing_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, "series", "list", "--source", str(tmp_path / "nope" / "x.mbox"))
    assert code == ExitCode.USAGE and "not a usable series source" in err


def test_binary_junk(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 64)
    code, _, err = _run(capsys, "series", "list", "--source", str(junk))
    assert code == ExitCode.USAGE and "junk.bin" in err and len(err.strip().splitlines()) == 1


def test_binary_junk_after_from_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    junk = tmp_path / "junk.mbox"
    junk.write_bytes(b"From x Thu Jan  1 00:00:00 1970\n" + bytes(range(256)) * 16)
    code, _, err = _run(capsys, "series", "list", "--source", str(junk))
    assert code == ExitCode.USAGE and "no readable messages" in err


def test_truncated_mbox(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = mbox(mail("c@x", "[PATCH 0/2] thing", "cover"),
                mail("p1@x", "[PATCH 1/2] a: one", patch_body(), reply_to="c@x"),
                mail("p2@x", "[PATCH 2/2] a: two", patch_body(), reply_to="c@x"))
    path = tmp_path / "cut.mbox"
    path.write_bytes(data[: data.index(b"Subject: [PATCH 2/2]") + 10])
    code, out, err = _run(capsys, "series", "list", "--source", str(path), "--json")
    assert code == 0
    [fam] = json.loads(out)["series"]
    assert fam["revisions"][0]["patches"] == 1 and fam["revisions"][0]["missing"] == [2]
    assert "cut.mbox#3" in err and "truncated" in err


def test_message_without_message_id(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "noid.mbox"
    path.write_bytes(mbox(mail(None, "[PATCH] a: one", patch_body())))
    code, out, err = _run(capsys, "series", "list", "--source", str(path), "--json")
    assert code == 0 and "noid.mbox#1" in err and "no Message-ID" in err
    assert json.loads(out)["series"][0]["revisions"][0]["patches"] == 1


def test_undecodable_charset(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "cs.mbox"
    bad = mail("cs@x", "[PATCH] a: one", patch_body(), charset="x-no-such-charset")
    invalid = mail("iv@x", "Re: [PATCH] a: one", "caf\xe9", reply_to="cs@x", charset="ascii")
    path.write_bytes(mbox(bad, invalid.replace("caf\xe9".encode(), b"caf\xff\xfe")))
    code, out, err = _run(capsys, "series", "show", "--source", str(path), "--series", "1", "--json")
    assert code == 0
    assert "cs.mbox#1" in err and "unknown charset" in err
    assert "cs.mbox#2" in err and "undecodable" in err
    [rev] = json.loads(out)["revisions"]
    assert rev["patches"][0]["reviews"][0]["reviewer"] == "Jens Axboe"


def test_offline_message_id_is_one_line_infra_error(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.core.errors import OfflineError
    from harness.sources.lore import check_online
    try:
        check_online(timeout=3)
    except OfflineError:
        pass
    else:
        pytest.skip("online: the offline path is not exercised")
    code, _, err = _run(capsys, "series", "list", "--source", "20200526195123.29053-1-axboe@kernel.dk")
    assert code == ExitCode.INFRASTRUCTURE and "offline" in err and len(err.strip().splitlines()) == 1


def test_series_without_verb_is_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = _run(capsys, "series")
    assert code == ExitCode.USAGE
