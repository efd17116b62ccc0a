"""Export via real b4 am: order, acks from replies, diffs byte-identical, git mailsplit/mailinfo accept."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_series_fixtures import abr_family, lore_loaded

from harness.cli import main
from harness.core.errors import UserError
from harness.core.run import run
from harness.series.export import export_revision
from harness.series.model import Revision


def _split(mbx: Path, out: Path) -> list[Path]:
    out.mkdir()
    result = run(["git", "mailsplit", f"-o{out}", str(mbx)], timeout=60, check=True)
    assert int(result.stdout.strip()) == len(list(out.iterdir()))
    return sorted(out.iterdir())


def _mailinfo(mail: Path, tmp: Path) -> tuple[str, str]:
    """(commit message, patch) exactly as `git am` would take them from one mail."""
    msg, patch = tmp / f"{mail.name}.msg", tmp / f"{mail.name}.patch"
    run(["git", "mailinfo", "-b", str(msg), str(patch)], timeout=30, check=True,
        input=mail.read_text(encoding="utf-8"))
    return msg.read_text(encoding="utf-8"), patch.read_text(encoding="utf-8")


def _check_export(rev: Revision, tmp_path: Path, mbx: Path) -> list[str]:
    mails = _split(mbx, tmp_path / "split")
    assert len(mails) == len(rev.patches)
    messages = []
    for mail, posted in zip(mails, rev.patches, strict=True):
        message, patch = _mailinfo(mail, tmp_path)
        # byte-identical diff: mailinfo's patch runs from the diffstat to the "-- " signature
        exported = patch[patch.index("diff --git"):patch.rindex("\n-- \n") + 1]
        assert exported == posted.diff
        assert posted.subject.split(":")[0] in mail.read_text(encoding="utf-8").split("\n\n")[0]
        messages.append(message)
    return messages


@pytest.mark.shared
@pytest.mark.real
def test_export_v5_with_acks(tmp_path: Path) -> None:
    rev = abr_family().revision(5)
    out = export_revision(rev, tmp_path / "v5.mbx")
    messages = _check_export(rev, tmp_path, out)
    assert "Acked-by: Johannes Weiner <hannes@cmpxchg.org>" in messages[1]
    assert "Acked-by: Darrick J. Wong <darrick.wong@oracle.com>" in messages[8]
    assert "Acked-by" not in messages[0]


@pytest.mark.shared
@pytest.mark.real
def test_export_v7_despite_count_mismatch(tmp_path: Path) -> None:
    rev = abr_family().revision(7)
    out = export_revision(rev, tmp_path / "v7.mbx")
    assert len(_check_export(rev, tmp_path, out)) == 15


def test_export_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lore_loaded()
    from conftest import LORE_MBOX
    out = tmp_path / "v5.mbx"
    assert main(["series", "export", "--source", str(LORE_MBOX), "--revision", "5", "-o", str(out)]) == 0
    assert "wrote 12 patches of v5" in capsys.readouterr().out
    assert out.read_text(encoding="utf-8").count("\nFrom: Jens Axboe") >= 12


@pytest.mark.shared
@pytest.mark.real
def test_git_am_accepts_export(tmp_path: Path) -> None:
    """git am applies the exported v5 patch 06 (a context-only header hunk) onto a file holding its
    pre-image, i.e. the mbox is am-ready; a full-tree apply belongs to the kernel pipeline."""
    rev = abr_family().revision(5)
    out = export_revision(rev, tmp_path / "v5.mbx")
    mails = _split(out, tmp_path / "split")
    repo = tmp_path / "repo"
    run(["git", "init", "-q", str(repo)], timeout=30, check=True)
    patch = rev.patch(6).diff
    pre = [line[1:] for line in patch.splitlines()[5:] if line.startswith((" ", "-"))]
    (repo / "include" / "linux").mkdir(parents=True)
    (repo / "include" / "linux" / "fs.h").write_text("\n".join(pre) + "\n")
    run(["git", "-C", str(repo), "add", "-A"], timeout=30, check=True)
    run(["git", "-C", str(repo), "commit", "-q", "-m", "pre-image"], timeout=30, check=True)
    result = run(["git", "-C", str(repo), "am", "-C0", str(mails[5])], timeout=60)
    assert result.ok, result.tail()
    log = run(["git", "-C", str(repo), "log", "-1", "--format=%s"], timeout=30, check=True)
    assert log.stdout.strip() == "fs: add FMODE_BUF_RASYNC"


def test_export_without_patches_is_user_error(tmp_path: Path) -> None:
    rev = abr_family().revision(5)
    empty = Revision(version=9, label="v9", rfc=False, expected=0, cover=rev.cover, patches=[])
    with pytest.raises(UserError, match="no patches"):
        export_revision(empty, tmp_path / "x.mbx")


@pytest.mark.shared
@pytest.mark.real
def test_export_rfc_writes_the_patch_show_uses(tmp_path: Path) -> None:
    # RFC 03/11 was re-sent inside the thread as "[PATCH v2 03/11]"; show and concerns use the first
    # posting (the re-send is a fix-up review), so export must write that one too, not b4's pick.
    rev = abr_family().revision(1)
    assert rev.patch(3).message.message_id == "20200522202311.10959-4-axboe@kernel.dk"
    assert any(r.message.message_id == "43ad2c54-1e42-35ed-26be-6535cb0541b6@kernel.dk"
               for r in rev.patch(3).reviews)
    out = export_revision(rev, tmp_path / "rfc.mbx")
    _check_export(rev, tmp_path, out)  # every exported diff byte-identical to the patch show lists
