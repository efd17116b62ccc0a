"""Patch integrity: a patch whose body was cut short is an error naming it, never a shorter patch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_series_fixtures import mail, mbox

from harness.cli import main
from harness.core.errors import ExitCode
from harness.series.integrity import check_diff, check_patch
from harness.series.loader import find_family, load_series

V5_LAST = b"Message-Id: <20200526195123.29053-13-axboe@kernel.dk>"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


DIFF = """diff --git a/f.c b/f.c
--- a/f.c
+++ b/f.c
@@ -1,3 +1,4 @@
 a
+b
 c

"""


def test_whole_hunk_passes_and_a_short_one_is_named() -> None:
    assert check_diff(DIFF)[0] is None
    problem, files, added, removed = check_diff(DIFF.replace(" c\n\n", ""))
    assert problem is not None and "hunk 1" in problem and "cut short" in problem
    assert (files, added, removed) == (1, 1, 0)


def test_diffstat_disagreeing_with_the_diff_is_named() -> None:
    body = " f.c | 3 ++-\n 1 file changed, 2 insertions(+), 1 deletion(-)\n\n" + DIFF
    problem = check_patch(body, DIFF)
    assert problem is not None and "2 insertions" in problem and "1 insertions" in problem


def _cut(lore_mbox: Path, tmp_path: Path, lines_before_end: int) -> Path:
    data = lore_mbox.read_bytes()
    start = data.index(V5_LAST)
    end = data.index(b"\nFrom ", start)
    body = data[start:end].rstrip(b"\n").split(b"\n")
    cut = start + len(b"\n".join(body[:-lines_before_end])) + 1  # ends on a line boundary
    path = tmp_path / "cut.mbox"
    path.write_bytes(data[:cut])
    return path


def test_shared_mbox_is_whole(lore_mbox: Path) -> None:
    family = find_family(load_series(lore_mbox).families)
    for rev in family.revisions:
        assert not [w for w in rev.warnings if "cut short" in w], rev.label


def test_truncated_mbox_export_names_patch_12_of_v5(capsys: pytest.CaptureFixture[str], lore_mbox: Path,
                                                     tmp_path: Path) -> None:
    # Cut 12 lines before the end of v5 12/12, on a line boundary: still parses, no newline warning.
    path = _cut(lore_mbox, tmp_path, 12)
    assert path.read_bytes().endswith(b"\n")
    code, out, err = _run(capsys, "series", "show", "--source", str(path), "--revision", "5", "--json")
    assert code == 0
    [rev] = json.loads(out)["revisions"]
    assert any("patch 12/12" in w and "cut short" in w for w in rev["warnings"])
    code, out, err = _run(capsys, "series", "export", "--source", str(path), "--revision", "5",
                          "-o", str(tmp_path / "v5.mbx"))
    assert code == ExitCode.USAGE
    assert "v5 patch 12/12" in err and "20200526195123.29053-13-axboe@kernel.dk" in err
    assert "cut short" in err and "Traceback" not in err
    assert not (tmp_path / "v5.mbx").exists()


def test_synthetic_cut_between_files_is_caught_by_the_diffstat(tmp_path: Path) -> None:
    # A cut at a file boundary leaves every hunk whole: only the diffstat can tell.
    two = DIFF + DIFF.replace("f.c", "g.c")
    body = ("Two files.\n\nSigned-off-by: A <a@x>\n---\n f.c | 1 +\n g.c | 1 +\n"
            " 2 files changed, 2 insertions(+)\n\n")
    path = tmp_path / "a.mbox"
    path.write_bytes(mbox(mail("p@x", "[PATCH] a: one", body + two[:len(DIFF)])))
    [fam] = load_series(path).families
    assert any("diffstat says 2 files" in w for w in fam.revisions[0].warnings)
    whole = tmp_path / "b.mbox"
    whole.write_bytes(mbox(mail("p@x", "[PATCH] a: one", body + two + "-- \n2.26.2\n")))
    [fam] = load_series(whole).families
    assert not [w for w in fam.revisions[0].warnings if "cut short" in w]


def test_kept_families_answer_a_repeat_exactly(capsys: pytest.CaptureFixture[str], lore_mbox: Path,
                                               cache: Path) -> None:
    # The first command groups and keeps the result beside the archive index; the second rebuilds it
    # from there: same output, and the kept file is what answered.
    code, first, _ = _run(capsys, "series", "show", "--source", str(lore_mbox), "--json", "--full")
    assert code == 0
    [kept] = list((cache / "archive-index").glob("*.families.json"))
    before = kept.stat().st_mtime_ns
    code, second, _ = _run(capsys, "series", "show", "--source", str(lore_mbox), "--json", "--full")
    assert code == 0 and second == first
    assert kept.stat().st_mtime_ns == before  # not regrouped
    kept.write_text(kept.read_text().replace('"code":"', '"code":"stale'))
    code, third, _ = _run(capsys, "series", "show", "--source", str(lore_mbox), "--json", "--full")
    assert code == 0 and third == first and kept.stat().st_mtime_ns != before  # regrouped, rewritten
