"""Thread-view renderings: the series and its replies, or a warning naming what could not be placed."""

from __future__ import annotations

from pathlib import Path

from harness.series.loader import load_series


def test_seed_003_is_one_five_patch_series_with_its_replies(seeds: Path) -> None:
    # A 2012 linux-aio thread from a mirror that rewrote Message-IDs (gmane style): each message's
    # real id is the "[not found]" line below it, which is what its replies refer to.
    loaded = load_series(seeds / "003_f5b8230a3d4cacf7.txt")
    [fam] = loaded.families
    [rev] = fam.revisions
    assert [p.number for p in rev.patches] == [1, 2, 3, 4, 5] and not rev.missing
    replies = rev.all_reviews()
    assert len(replies) == 30
    assert all(r.message.subject.startswith("Re: ") for r in replies)
    assert {len(p.reviews) for p in rev.patches} >= {1, 6, 4, 8, 11}


def test_seed_001_has_no_invented_family(seeds: Path) -> None:
    # The v3 view also shows patch 06 of v4 and of v5 (their covers are not in the view): named, not
    # taken as two one-patch "v1" postings.
    loaded = load_series(seeds / "001_001cfc21aac17572.txt")
    [fam] = loaded.families
    assert fam.name == "Add support for async buffered reads"
    assert [(r.version, len(r.patches)) for r in fam.revisions] == [(3, 12)]
    strays = [w for w in loaded.warnings if "a posting this view does not show" in w]
    assert len(strays) == 2 and all("06/12" in w for w in strays)
