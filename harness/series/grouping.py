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
    """Messages by id, their subjects parsed, and the replies below each patch or cover (by References
    and In-Reply-To)."""

    def __init__(self, messages: list[Message]) -> None:
        self.by_id = {m.message_id: m for m in messages}
        self.under: dict[str, list[Message]] = defaultdict(list)
        self.info = {m.message_id: parse_subject(m.subject) for m in messages}
        self._chains: dict[str, list[str]] = {}
        for m in messages:
            # References, not only In-Reply-To: a reply whose parent never reached this archive still
            # names the cover it hangs under; and In-Reply-To's ancestors, not only References: a
            # mailer that trimmed References still replied to a message that hangs under the cover.
            # Only patches and covers are asked for what is below them: a whole archive's replies under
            # every other ancestor were 2 MiB of a listing's peak.
            for ref in dict.fromkeys(self.chain(m)):
                info = self.info.get(ref)
                if info is not None and info.is_patch and not info.is_reply:
                    self.under[ref].append(m)

    def chain(self, msg: Message) -> list[str]:
        """``msg``'s ancestors, root first: its References, preceded by those of its In-Reply-To parent
        that References left out (followed iteratively; a loop stops it)."""
        if msg.message_id in self._chains:
            return self._chains[msg.message_id]
        path: list[Message] = []
        seen: set[str] = set()
        cur: Message | None = msg
        while cur is not None and cur.message_id not in self._chains and cur.message_id not in seen:
            path.append(cur)
            seen.add(cur.message_id)
            cur = self.by_id.get(cur.in_reply_to or "")
        for node in reversed(path):
            parent = self.by_id.get(node.in_reply_to or "")
            above = self._chains.get(parent.message_id, []) if parent is not None else []
            extra = [r for r in above if r not in node.references and r != node.message_id]
            self._chains[node.message_id] = extra + node.references if extra else node.references
        return self._chains[msg.message_id]

    def forget_subjects(self) -> None:
        """Drop the parsed subjects once the postings are found (revisions keep their own)."""
        self.info = {}

    def descendants(self, root: str) -> list[Message]:
        """Every message below ``root`` (a patch or cover), in archive order."""
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
            above = _cover_above(refs[:refs.index(ref)], index)
            if above is not None:
                return above  # an empty-subject interloper between a cover and its patches: skipped
            return ref  # a cover whose subject got lost (v7's first send): patches still hang under it
        if not (pinfo.is_patch and not pinfo.is_reply and pinfo.total == total):
            return last
        last = ref
    return last


def _cover_above(refs: list[str], index: ThreadIndex) -> str | None:
    for ref in reversed(refs):
        if ref in index.by_id and _is_cover(index.info[ref], index.by_id[ref]):
            return ref
    return None


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
    _adopt_reided(postings, index)
    # An unnumbered diff-less [PATCH] with no patches under it is a pull request or a note, not a posting.
    return [p for p in postings.values()
            if p.patches or (p.cover_info is not None and p.cover_info.number == 0)]


_REID_WINDOW_S = 600  # a re-sent cover and its patches leave one mailer within minutes


def _adopt_reided(postings: dict[str, Posting], index: ThreadIndex) -> None:
    """A cover without patches and a cover-less posting whose patches reply to a message that is not in
    the archive, from the same sender, with the same count, minutes apart: the sending mail server gave
    the cover a new Message-ID after the patches had been threaded under the old one (Outlook)."""
    lonely = [p for p in postings.values() if p.cover is not None and not p.patches]
    for key, post in list(postings.items()):
        if post.cover is not None or not post.patches or key in index.by_id:
            continue
        first = post.patches[0][1]
        total = post.patches[0][0].total
        best: tuple[float, Posting] | None = None
        for cand in lonely:
            assert cand.cover is not None and cand.cover_info is not None
            if (cand.cover.sender_email != first.sender_email or cand.cover_info.total != total
                    or cand.cover.date is None or first.date is None):
                continue
            gap = abs((first.date - cand.cover.date).total_seconds())
            if gap <= _REID_WINDOW_S and (best is None or gap < best[0]):
                best = (gap, cand)
        if best is None:
            continue
        cover = best[1]
        lonely.remove(cover)
        del postings[key]
        cover.patches = post.patches
        cover.notes.append(f"patches reply to <{key}>, which is not in the archive; cover "
                           f"<{cover.key}> from the same sender {best[0]:.0f}s apart is taken as that "
                           "message re-sent under a new Message-ID")


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
