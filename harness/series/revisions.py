"""Postings become revisions: patches in order, counts checked, review replies attached, and the
author's own relabel ("this one is v3, obviously, not v2") applied."""

from __future__ import annotations

import re

from harness.series.bodies import commit_message, find_diff, find_snippet, own_words, trailers
from harness.series.grouping import Posting, ThreadIndex, posting_counts
from harness.series.integrity import check_patch
from harness.series.model import Patch, Review, Revision
from harness.sources.message import Message

# "this one is v3", "this is really v3", "it should be v3", "should have been v3", "v3, not v2".
RELABEL = re.compile(
    r"\b(?:(?:this|it|that)(?: one| series| posting)? (?:is|was) (?:really |actually |of course )?"
    r"|should (?:have been|be|read) |meant to be )v(\d+)\b|\bv(\d+)\s*,?\s*(?:obviously\s*,?\s*)?not v\d+\b",
    re.IGNORECASE)


def analyse_reply(msg: Message) -> tuple[str, list[tuple[str, str]], str | None]:
    """Own words, trailers (b4's parser) and a proposed fix-up diff of one reply."""
    text = own_words(msg.body)
    diff = find_diff(text) or find_snippet(text)
    return text, review_trailers(text, msg), diff


# Trailers a reply gives about the patch; a Link: or someone else's Signed-off-by in a reply comes from
# a patch pasted inline or a reference, not from the reviewer.
_NOT_REVIEW = {"link", "closes", "cc", "fixes"}


def review_trailers(text: str, msg: Message) -> list[tuple[str, str]]:
    """Trailers from the reviewer's own text: none from a pasted patch (Signed-off-by of others), no
    Link:/Closes:/Cc:/Fixes: lines."""
    me = msg.sender_email
    out = []
    for name, value in trailers(text, followup=True):
        if name.lower() in _NOT_REVIEW:
            continue
        if name.lower() == "signed-off-by" and me not in value.lower():
            continue
        out.append((name, value))
    return out


def make_review(msg: Message) -> Review:
    """A Review of ``msg`` (its body is read when the review's text is first asked for)."""
    return Review(message=msg, analyse=analyse_reply)


def analyse_patch(msg: Message) -> tuple[str, str, list[tuple[str, str]]]:
    """Diff, commit message and own trailers of one patch message."""
    message = commit_message(msg.body)
    return find_diff(msg.body) or "", message, trailers(message, followup=False)


def _make_patch(number: int, total: int, title: str, msg: Message) -> Patch:
    return Patch(number=number, total=total, subject=title, message=msg, analyse=analyse_patch)


def _order_patches(post: Posting, warnings: list[str]) -> list[Patch]:
    chosen: dict[int, Patch] = {}
    for info, msg in post.patches:
        number = info.number or 1
        if number in chosen:
            # A re-sent patch inside the thread is an update proposed for that patch: keep the first
            # posting as the revision's content, the re-send as a fix-up review.
            warnings.append(f"patch {number} posted twice (<{chosen[number].message.message_id}> and "
                            f"<{msg.message_id}>); keeping the first, the second is kept as a fix-up")
            chosen[number].reviews.append(make_review(msg))
            continue
        chosen[number] = _make_patch(number, info.total or 1, info.title, msg)
    return [chosen[n] for n in sorted(chosen)]


def _attach_reviews(rev: Revision, index: ThreadIndex, patch_ids: set[str]) -> None:
    """Every reply below the cover or a patch goes to the nearest patch/cover it answers."""
    owners: dict[str, Patch | None] = {p.message.message_id: p for p in rev.patches}
    roots = [p.message.message_id for p in rev.patches]
    if rev.cover is not None:
        owners[rev.cover.message_id] = None
        roots.insert(0, rev.cover.message_id)
    seen: set[str] = set()
    for root in roots:
        for msg in index.descendants(root):
            if msg.message_id in seen or msg.message_id in patch_ids:
                continue
            seen.add(msg.message_id)
            owner = _nearest_owner(msg, owners, index)
            review = make_review(msg)
            if owner is None:
                rev.cover_reviews.append(review)
            else:
                owner.reviews.append(review)


def _nearest_owner(msg: Message, owners: dict[str, Patch | None], index: ThreadIndex) -> Patch | None:
    for ref in reversed(index.chain(msg)):
        if ref in owners:
            return owners[ref]
    return None


def _relabel(rev: Revision, author: str) -> None:
    """Apply a version correction stated by the posting's author in a reply."""
    for review in rev.all_reviews():
        if review.message.claims_version is False or review.message.sender_email != author:
            continue  # the index saw no "this is vN" wording in this reply: its body is not read
        # own_words, not review.text: the relabel needs no trailers (b4) nor fix-up search.
        head = "\n".join(own_words(review.message.body).splitlines()[:5])
        m = RELABEL.search(head)
        if m is None:
            continue
        said = int(m.group(1) or m.group(2))
        if said != rev.version:
            rev.warnings.append(f"posted as {rev.label or 'v1'} but the author says it is v{said} "
                                f"(<{review.message.message_id}>); using version {said}")
            rev.version = said
        return


def build_revision(post: Posting, index: ThreadIndex, patch_ids: set[str]) -> Revision:
    """The :class:`Revision` for one posting."""
    warnings: list[str] = list(post.notes)
    head = post.cover_info or (post.patches[0][0] if post.patches else None)
    assert head is not None
    patches = _order_patches(post, warnings)
    expected, claimed = posting_counts(post)
    if expected != claimed:
        warnings.append(f"cover says 0/{expected} but the patches say NN/{claimed}; {len(patches)} found")
    numbers = {p.number for p in patches}
    missing = [n for n in range(1, claimed + 1) if n not in numbers]
    if missing:
        warnings.append("missing patches: " + ", ".join(f"{n}/{claimed}" for n in missing))
    for p in patches:
        # The archive index recorded it when it read the patch; a small source has the body at hand.
        problem = p.message.integrity if p.message.integrity is not None else check_patch(
            p.message.body, p.diff)
        if problem:
            warnings.append(f"patch {p.number}/{p.total} <{p.message.message_id}> is cut short: {problem}")
    if post.cover is None and claimed > 1:
        warnings.append("no cover letter found")
    version = head.version or 1
    label = head.label or f"v{version}"
    rev = Revision(version=version, label=label, rfc=head.rfc, expected=expected, cover=post.cover,
                   patches=patches, missing=missing, warnings=warnings)
    _attach_reviews(rev, index, patch_ids)
    author = (post.cover or (patches[0].message if patches else None))
    if author is not None:
        _relabel(rev, author.sender_email)
    return rev
