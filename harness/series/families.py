"""Revisions of one series grouped into a family across threads: same cover title, or most patch
titles shared."""

from __future__ import annotations

import itertools
from collections import defaultdict

from harness.series.model import Family, Revision
from harness.series.subjects import normalise_title, parse_subject


def _cover_title(rev: Revision) -> str:
    if rev.cover is not None:
        return normalise_title(parse_subject(rev.cover.subject).title)
    return normalise_title(rev.patches[0].subject) if len(rev.patches) == 1 else ""


def _display_name(rev: Revision) -> str:
    if rev.cover is not None and (title := parse_subject(rev.cover.subject).title):
        return title
    if rev.patches:
        more = len(rev.patches) - 1
        return rev.patches[0].subject + (f" (+{more})" if more else "")
    return "(untitled)"


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def group_families(revisions: list[Revision]) -> list[Family]:
    """Families sorted by first posting date; revisions inside ordered by version, then date."""
    uf = _UnionFind(len(revisions))
    by_cover: dict[str, list[int]] = defaultdict(list)
    by_patch: dict[str, list[int]] = defaultdict(list)
    titles: list[set[str]] = []
    covers = [_cover_title(rev) for rev in revisions]
    for i, rev in enumerate(revisions):
        if (title := _cover_title(rev)):
            by_cover[title].append(i)
        own = {normalise_title(p.subject) for p in rev.patches}
        titles.append(own)
        for t in own:
            by_patch[t].append(i)
    for members in by_cover.values():
        for j in members[1:]:
            uf.union(members[0], j)
    for i, own in enumerate(titles):
        shared: dict[int, int] = defaultdict(int)
        for t in own:
            for j in by_patch[t]:
                if j != i:
                    shared[j] += 1
        for j, count in shared.items():
            if _related(count, len(own), len(titles[j]), covers[i], covers[j],
                        _author(revisions[i]) == _author(revisions[j])):
                uf.union(i, j)
    groups: dict[int, list[Revision]] = defaultdict(list)
    for i, rev in enumerate(revisions):
        groups[uf.find(i)].append(rev)
    families = []
    for revs in groups.values():
        _order(revs)
        _warn_duplicate_versions(revs)
        latest = max(revs, key=lambda r: r.date or "")
        family = Family(name=_display_name(latest), revisions=revs)
        family.notes.extend(_title_changes(revs))
        families.append(family)
    families.sort(key=lambda f: (f.first_date, f.name))
    return families


def _author(rev: Revision) -> str:
    first = rev.cover or (rev.patches[0].message if rev.patches else None)
    return first.sender_email if first is not None else ""


def _related(shared: int, size_a: int, size_b: int, cover_a: str, cover_b: str,
             same_author: bool = False) -> bool:
    """Do two postings sharing ``shared`` patch titles belong to one series?"""
    if cover_a and cover_b and cover_a != cover_b:
        # Two differently titled cover letters: the series was renamed between revisions when the same
        # author carried at least half of the bigger patch list over; otherwise only a near-identical
        # list joins them (a small prep series later folded into a bigger one stays separate).
        if same_author and shared >= 2 and 2 * shared >= max(size_a, size_b):
            return True
        return 5 * shared >= 4 * max(size_a, size_b)
    # One shared title is enough only between single patches: a lone patch of a bigger series
    # reposted elsewhere must not merge two families.
    return 2 * shared >= min(size_a, size_b) and (shared >= 2 or max(size_a, size_b) == 1)


def _when(rev: Revision) -> float:
    # Timestamps, not the ISO strings: postings from different UTC offsets must compare by instant.
    first = rev.cover or (rev.patches[0].message if rev.patches else None)
    return first.date.timestamp() if first is not None and first.date is not None else 0.0


def _order(revs: list[Revision]) -> None:
    """Revisions in posting order; where that disagrees with their numbers, say why on the revision."""
    revs.sort(key=lambda r: (_when(r), r.version))
    for before, rev in itertools.pairwise(revs):
        if rev.version < before.version:
            why = ("numbering restarted when the RFC tag was dropped" if before.rfc and not rev.rfc
                   else "its number is lower than the one posted before it")
            rev.warnings.append(f"posted after {before.label or f'v{before.version}'} ({before.date}) but "
                                f"numbered v{rev.version}: {why}; listed in posting order")


def _title_changes(revs: list[Revision]) -> list[str]:
    notes = []
    for before, rev in itertools.pairwise(revs):
        a, b = _cover_title(before), _cover_title(rev)
        if a and b and a != b:
            shared = ({normalise_title(p.subject) for p in before.patches}
                      & {normalise_title(p.subject) for p in rev.patches})
            notes.append(f"title changed at {rev.label or f'v{rev.version}'}: {_display_name(before)!r} → "
                         f"{_display_name(rev)!r}; joined because {len(shared)} patch subjects carried over")
    return notes


def _warn_duplicate_versions(revs: list[Revision]) -> None:
    seen: dict[int, Revision] = {}
    for rev in revs:
        if rev.version in seen:
            first = seen[rev.version]
            if "RESEND" in rev.label.upper():
                rev.warnings.append(f"{rev.label!r} is a resend of {first.label!r} (version {rev.version}); "
                                    f"`--revision {rev.version}` picks the resend")
            elif rev.rfc != first.rfc:
                pass  # explained by _order: a non-RFC series numbered afresh after its RFCs
            else:
                rev.warnings.append(f"version {rev.version} posted twice (also as {first.label!r}); "
                                    f"`--revision {rev.version}` picks the later posting")
        seen[rev.version] = rev
