"""From a pile of list messages to revisions of series: which patch belongs to which posting.

A posting is keyed by its cover letter or, when the cover is absent (bounced, never sent), by the
message its patches reply to; a hand-written cover that replies to that missing message joins it (v7).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from harness.series.bodies import has_diff
from harness.series.subjects import SubjectInfo, parse_subject
from harness.sources.message import Message


@dataclass
class Posting:
    """The messages of one posting before they become a :class:`Revision`."""

    key: str
    cover: Message | None = None
    cover_info: SubjectInfo | None = None
    patches: list[tuple[SubjectInfo, Message]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class ThreadIndex:
    """Messages by id and children by parent id (from In-Reply-To, else the last reference)."""

    def __init__(self, messages: list[Message]) -> None:
        self.by_id = {m.message_id: m for m in messages}
        self.under: dict[str, list[Message]] = defaultdict(list)
        self.info = {m.message_id: parse_subject(m.subject) for m in messages}
        for m in messages:
            # References, not only In-Reply-To: a reply whose parent never reached this archive still
            # names the cover it hangs under.
            for ref in dict.fromkeys(m.references):
                self.under[ref].append(m)

    def descendants(self, root: str) -> list[Message]:
        """Every message below ``root``, in archive order."""
        return list(self.under.get(root, []))


def _is_cover(info: SubjectInfo, msg: Message | None = None) -> bool:
    # "[PATCH 0/N]", or an unnumbered "[PATCHSET] title" without a diff of its own.
    if not info.is_patch or info.is_reply:
        return False
    return info.number == 0 or (info.number is None and msg is not None and not has_diff(msg))


def _is_numbered_patch(info: SubjectInfo, msg: Message) -> bool:
    return (info.is_patch and not info.is_reply and info.number is not None and info.number > 0
            and has_diff(msg))


def _patch_key(msg: Message, index: ThreadIndex) -> str:
    """The posting a numbered patch belongs to: the nearest cover above it, else the first ancestor
    that is not itself a patch of the same size (deep threading), else the patch itself."""
    total = index.info[msg.message_id].total
    refs = msg.references or ([msg.in_reply_to] if msg.in_reply_to else [])
    last = msg.message_id
    for ref in reversed(refs):
        if ref not in index.by_id:
            return ref if last == msg.message_id else last
        pinfo = index.info[ref]
        if _is_cover(pinfo, index.by_id[ref]):
            return ref
        if not pinfo.is_patch and not pinfo.is_reply and last == msg.message_id:
            return ref  # a cover whose subject got lost (v7's first send): patches still hang under it
        if not (pinfo.is_patch and not pinfo.is_reply and pinfo.total == total):
            return last
        last = ref
    return last


def _single_patch_is_reply(msg: Message, index: ThreadIndex) -> bool:
    # An unnumbered [PATCH] sent inside another series' thread is a proposed fix-up, not a posting.
    parent = index.by_id.get(msg.in_reply_to or "")
    if parent is None:
        return False
    pinfo = index.info[parent.message_id]
    return pinfo.is_patch or pinfo.is_reply


def collect_postings(messages: list[Message], index: ThreadIndex) -> list[Posting]:
    """Group patch messages into postings, in order of first appearance."""
    postings: dict[str, Posting] = {}
    for msg in messages:
        info = index.info[msg.message_id]
        if not info.is_patch or info.is_reply:
            continue
        if _is_cover(info, msg):
            post = postings.setdefault(msg.message_id, Posting(msg.message_id))
            post.cover, post.cover_info = msg, info
        elif _is_numbered_patch(info, msg):
            postings.setdefault(_patch_key(msg, index), Posting(_patch_key(msg, index))).patches.append(
                (info, msg))
        elif (info.number is None and has_diff(msg)
              and not _single_patch_is_reply(msg, index)):
            single = SubjectInfo(info.is_reply, True, info.version, info.rfc, 1, 1, info.label, info.title)
            postings.setdefault(msg.message_id, Posting(msg.message_id)).patches.append((single, msg))
    _adopt_orphans(postings, index)
    # An unnumbered diff-less [PATCH] with no patches under it is a pull request or a note, not a posting.
    return [p for p in postings.values()
            if p.patches or (p.cover_info is not None and p.cover_info.number == 0)]


def _adopt_orphans(postings: dict[str, Posting], index: ThreadIndex) -> None:
    """A cover replying to a missing message whose patches formed a cover-less posting joins it."""
    for key, post in list(postings.items()):
        if post.cover is None or post.patches or not post.cover.in_reply_to:
            continue
        target = postings.get(post.cover.in_reply_to)
        if target is not None and target.cover is None:
            target.cover, target.cover_info = post.cover, post.cover_info
            if post.cover.in_reply_to in index.by_id:
                target.notes.append(f"patches reply to <{target.key}> (subject "
                                    f"{index.by_id[target.key].subject!r}); cover <{post.cover.message_id}> "
                                    "was sent separately in reply to it")
            else:
                target.notes.append(f"patches reply to <{target.key}>, which is not in the archive; "
                                    f"cover <{post.cover.message_id}> replies to it")
            del postings[key]


def posting_counts(post: Posting) -> tuple[int, int]:
    """(expected from the cover or patch subjects, total the patches themselves claim)."""
    totals = Counter(info.total for info, _ in post.patches if info.total)
    patch_total = totals.most_common(1)[0][0] if totals else 0
    cover_total = post.cover_info.total if post.cover_info and post.cover_info.total else 0
    return (cover_total or patch_total), (patch_total or cover_total)
