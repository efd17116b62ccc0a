"""Series model: subject prefixes, postings, revisions (relabel, counts), families, reviews."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_series_fixtures import FAMILY, abr_family, lore_loaded, mail, mbox, patch_body

from harness.core.errors import UserError
from harness.series import find_family, load_families
from harness.series.bodies import find_diff, own_words
from harness.series.loader import default_family_name
from harness.series.subjects import parse_subject


@pytest.mark.parametrize(("subject", "version", "rfc", "number", "total", "label"), [
    ("[PATCH v4 03/12] mm: x", 4, False, 3, 12, "v4"),
    ("[PATCHSET v2 RFC 0/11] Add support", 2, True, 0, 11, "v2 RFC"),
    ("[PATCHSET RFC 0/11] Add support", None, True, 0, 11, "RFC"),
    ("[PATCH 05/15] io_uring: y", None, False, 5, 15, ""),
    ("[RFC PATCH net-next v3 1/3] z", 3, True, 1, 3, "RFC net-next v3"),
    ("[PATCHv2] single", 2, False, None, None, "v2"),
])
def test_subject_prefixes(subject: str, version: int | None, rfc: bool, number: int | None,
                          total: int | None, label: str) -> None:
    info = parse_subject(subject)
    assert (info.is_patch, info.version, info.rfc, info.number, info.total, info.label) == (
        True, version, rfc, number, total, label)


def test_reply_and_tag_subjects() -> None:
    info = parse_subject("Re: [PATCH 12/12] io_uring: support")
    assert info.is_reply and info.number == 12
    assert not parse_subject("[GIT PULL] io_uring changes").is_patch


def test_async_buffered_reads_revisions_from_real_archive() -> None:
    fam = abr_family()
    got = [(r.version, r.label, r.rfc, r.expected, len(r.patches)) for r in fam.revisions]
    assert got == [(1, "RFC", True, 11, 11), (2, "v2 RFC", True, 11, 11), (3, "v2", False, 12, 12),
                   (4, "v4", False, 12, 12), (5, "v5", False, 12, 12), (7, "v7", False, 12, 15)]
    cover = fam.revision(3).cover
    assert cover is not None
    assert cover.message_id == "20200523185755.8494-1-axboe@kernel.dk"
    assert any("author says it is v3" in w for w in fam.revision(3).warnings)
    v7 = fam.revision(7)
    assert any("0/12" in w and "NN/15" in w for w in v7.warnings)
    assert [p.number for p in v7.patches] == list(range(1, 16)) and v7.missing == []


def test_unknown_revision_is_user_error() -> None:
    with pytest.raises(UserError, match="no revision 6"):
        abr_family().revision(6)


def test_default_family_and_lookup() -> None:
    families = lore_loaded().families
    assert find_family(families).name == FAMILY
    assert find_family(families, "async buffered").name == FAMILY
    with pytest.raises(UserError):
        find_family(families, "no such series anywhere")


def test_default_family_name_falls_back_quietly_on_a_broken_series_toml(tmp_path: Path) -> None:
    path = tmp_path / "series.toml"
    path.write_text('[series]\ntitle = "Add support for async buffered reads"\n')
    assert default_family_name(path) == "Add support for async buffered reads"
    path.write_text("[series\n")
    assert default_family_name(path) is None
    path.unlink()
    assert default_family_name(path) is None


def test_acks_collected_from_replies_on_v5() -> None:
    v5 = abr_family().revision(5)
    acks = {(p.number, v) for p in v5.patches for n, v in p.trailers if n == "Acked-by"}
    assert (2, "Johannes Weiner <hannes@cmpxchg.org>") in acks
    assert (9, "Darrick J. Wong <darrick.wong@oracle.com>") in acks


def test_reviews_attached_with_quotes_stripped() -> None:
    v3 = abr_family().revision(3)
    trond = [r for r in v3.patch(5).reviews if r.reviewer == "Trond Myklebust"]
    assert trond and "private' field" in trond[0].text
    assert all(not line.startswith(">") for r in v3.all_reviews() for line in r.text.splitlines())
    assert not any("wrote:" in r.text.splitlines()[0] for r in v3.all_reviews() if r.text)
    assert {r.reviewer for r in v3.patch(12).reviews} >= {"Pavel Begunkov", "Jens Axboe"}


def test_fixup_diffs_recognised() -> None:
    fam = abr_family()
    v3_fixups = [r.fixup_diff for r in fam.revision(3).all_reviews() if r.fixup_diff]
    assert any("ki_waitq" in d for d in v3_fixups)  # the ki_waitq incremental (Trond's point)
    assert any("__io_read" in d for d in v3_fixups)  # the __io_read() helper incremental (Pavel's)
    v5_cover = [r for r in fam.revision(5).cover_reviews if r.fixup_diff]
    # the patch-01 revert Jens sent for Sedat's slow boot: REQ_RAHEAD no longer implies REQ_NOWAIT
    assert any("blk_types.h" in (r.fixup_diff or "") and "REQ_RAHEAD" in (r.fixup_diff or "")
               for r in v5_cover)


def test_own_words_strips_quotes_and_attribution() -> None:
    body = ("On 5/23/20 12:57 PM, Jens Axboe wrote:\n> quoted\n> more\n\nMy point.\n\n"
            "Acked-by: A B <a@b.c>\n-- \nsig\n")
    assert own_words(body) == "My point.\n\nAcked-by: A B <a@b.c>"
    assert find_diff("text\n" + patch_body()) is not None


def test_synthetic_series_grouping_and_missing(tmp_path: Path) -> None:
    msgs = [mail("c1@x", "[PATCH 0/3] thing", "cover"),
            mail("p1@x", "[PATCH 1/3] a: one", patch_body(), reply_to="c1@x"),
            mail("p3@x", "[PATCH 3/3] a: three", patch_body(), reply_to="c1@x"),
            mail("c2@x", "[PATCH v2 0/2] thing", "cover v2", date="Sun, 24 May 2020 12:00:00 -0600"),
            mail("q1@x", "[PATCH v2 1/2] a: one", patch_body(), reply_to="c2@x"),
            mail("q2@x", "[PATCH v2 2/2] a: three", patch_body("changed"), reply_to="c2@x"),
            mail("r1@x", "Re: [PATCH v2 1/2] a: one", "> x\nReviewed-by: Rev Iewer <rev@example.org>\n",
                 reply_to="q1@x", sender="Rev Iewer <rev@example.org>")]
    path = tmp_path / "s.mbox"
    path.write_bytes(mbox(*msgs))
    [fam] = load_families(path)
    v1, v2 = fam.revisions
    assert v1.missing == [2] and any("missing patches: 2/3" in w for w in v1.warnings)
    assert v2.version == 2 and v2.patch(1).trailers[-1] == ("Reviewed-by", "Rev Iewer <rev@example.org>")


def test_own_words_drops_snip_markers_before_quotes() -> None:
    body = "On Fri, May 29, 2020 at 12:02 PM S D <s@d.e> wrote:\n\n[ ... ]\n\n> quoted\n\nMine.\n"
    assert own_words(body) == "Mine."


def test_resend_tag_is_a_prefix() -> None:
    info = parse_subject("[PATCH 0/4] [RESEND] cancel all reqs of an exiting task")
    assert (info.number, info.label, info.title) == (0, "RESEND", "cancel all reqs of an exiting task")


@pytest.mark.parametrize(("reply", "sender", "version"), [
    ("Oops, this should be v4.", "Jens Axboe <axboe@kernel.dk>", 4),
    ("And this one is v4, obviously, not v3...", "Jens Axboe <axboe@kernel.dk>", 4),
    ("I think this should be v4.", "Someone Else <else@example.org>", 3),  # not the author: ignored
    ("Looks fine to me.", "Jens Axboe <axboe@kernel.dk>", 3),
])
def test_relabel_only_by_the_author(tmp_path: Path, reply: str, sender: str, version: int) -> None:
    path = tmp_path / "r.mbox"
    path.write_bytes(mbox(mail("c@x", "[PATCH v3 0/1] thing", "cover"),
                          mail("p@x", "[PATCH v3 1/1] a: one", patch_body(), reply_to="c@x"),
                          mail("r@x", "Re: [PATCH v3 0/1] thing", reply, reply_to="c@x", sender=sender)))
    [fam] = load_families(path)
    assert fam.revisions[0].version == version and fam.revisions[0].label == "v3"


def _posting(tag: str, cover: str, titles: list[str], date: str) -> list[bytes]:
    n = len(titles)
    out = [mail(f"{tag}-0@x", f"[PATCH {tag} 0/{n}] {cover}", "cover", date=date)]
    out += [mail(f"{tag}-{i}@x", f"[PATCH {tag} {i}/{n}] {t}", patch_body(), reply_to=f"{tag}-0@x",
                 date=date) for i, t in enumerate(titles, 1)]
    return out


def test_families_across_threads_by_cover_or_patch_titles(tmp_path: Path) -> None:
    d1, d2, d3 = ("Mon, 1 Jun 2020 10:00:00 +0000", "Tue, 2 Jun 2020 10:00:00 +0000",
                  "Wed, 3 Jun 2020 10:00:00 +0000")
    msgs = (_posting("v1", "Frob the widgets", ["a: one", "b: two", "c: three"], d1)
            + _posting("v2", "frob the widgets.", ["a: one", "b: two", "c: three v2"], d2)  # same cover
            + _posting("v3", "Widget frobbing", ["a: one", "b: two", "c: three v2"], d3)  # renamed cover
            + _posting("v9", "Unrelated prep", ["a: one", "x: other", "y: more", "z: end"], d3))
    path = tmp_path / "f.mbox"
    path.write_bytes(mbox(*msgs))
    families = load_families(path)
    by_versions = sorted(tuple(r.version for r in f.revisions) for f in families)
    # v3's cover was renamed but its patch list matches v2's: same family; v9 shares one title only
    assert by_versions == [(1, 2, 3), (9,)]
