"""Review fidelity: attribution lines in any language, trailers only from the reviewer's own words,
commit-message changes told apart from diff changes, replies reached through In-Reply-To."""

from __future__ import annotations

from pathlib import Path

from test_series_fixtures import abr_family, mail, mbox, patch_body

from harness.series.bodies import own_words
from harness.series.loader import load_series
from harness.series.revdiff import diff_revisions


def test_attribution_lines_in_any_language_are_stripped() -> None:
    body = ("Am 05.06.20 um 23:02 schrieb Jens Axboe:\n> quoted\n\nLooks fine.\n\n"
            "Le 6 juin 2020 à 10:00, Pavel Begunkov <p@x> a écrit :\n> more\nOk.\n")
    assert own_words(body) == "Looks fine.\n\nOk."


def test_review_trailers_come_only_from_the_reviewers_own_text(tmp_path: Path) -> None:
    pasted = ("Something like this instead?\n\nReviewed-by: R <r@example.org>\nLINK: https://example.invalid/x\n\n"
              "From: Other <o@x>\nSubject: [PATCH] fix\n\nSigned-off-by: Other <o@example.org>\n---\n"
              "diff --git a/f.c b/f.c\n--- a/f.c\n+++ b/f.c\n@@ -1 +1 @@\n-a\n+b\n")
    path = tmp_path / "a.mbox"
    path.write_bytes(mbox(mail("p@x", "[PATCH] a: one", patch_body()),
                          mail("r@x", "Re: [PATCH] a: one", pasted, reply_to="p@x", sender="R <r@x>")))
    [fam] = load_series(path).families
    [review] = fam.revisions[0].patch(1).reviews
    assert review.trailers == [("Reviewed-by", "R <r@example.org>")]
    assert review.fixup_diff is not None


def test_series_diff_reports_a_commit_message_change_of_an_unchanged_diff() -> None:
    fam = abr_family()
    changes = {c.new: c for c in diff_revisions(fam.revision(4), fam.revision(5))}
    assert changes[4].status == "message-changed" and changes[4].message_changed
    assert "ki_waitq" in changes[4].message_diff
    assert changes[1].status == "unchanged" and not changes[1].message_changed


def test_v5_replies_with_trimmed_references_are_on_the_cover() -> None:
    rev = abr_family().revision(5)
    ids = {r.message.message_id for r in rev.all_reviews()}
    for mid in ("20200605225429.s424lrrqhaseoa2h@alap3.anarazel.de",
                "0179d0bf-0b01-3f05-9221-654a00f0452d@kernel.dk",
                "20200605230244.u342xw4negic2nmr@alap3.anarazel.de"):
        assert mid in ids


def test_withdrawn_snippet_is_not_the_fixup_the_real_suggestion_is() -> None:
    # Pavel on v3 12/12: a pseudo-snippet, then "thinking twice ... it should be ok as is", then the
    # real suggestion (add a CQE before "goto free_out").
    fam = abr_family()
    [review] = [rv for rv in fam.revision(3).all_reviews()
                if rv.message.message_id == "a8212987-bd06-5c67-73d7-e77a654df4ac@gmail.com"]
    assert review.fixup_diff is not None
    assert "put_task_struct" not in review.fixup_diff
    assert "kiocb_done(kiocb, ret2);" in review.fixup_diff


def test_summaries_say_something() -> None:
    from harness.series.bodies import summary
    assert summary("Hi,\n\nThat seems to fix it! Yay.") == "That seems to fix it! Yay."
    assert summary("...\nThis looks fishy.") == "This looks fishy."
    assert summary("Jens,\nThis hunk should be elsewhere.") == "This hunk should be elsewhere."
    assert summary("Hi,") == "Hi,"  # nothing else to say: the line itself, not an empty summary
    texts = [summary(rv.text) for r in abr_family().revisions for rv in r.all_reviews()]
    assert not [t for t in texts if t in ("...", "Hi,", "Hi Jens,")]
