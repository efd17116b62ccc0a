"""Revisions of one series grouped into a family across threads: same cover title, or most patch
titles shared."""

from __future__ import annotations

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
            if _related(count, len(own), len(titles[j]), covers[i], covers[j]):
                uf.union(i, j)
    groups: dict[int, list[Revision]] = defaultdict(list)
    for i, rev in enumerate(revisions):
        groups[uf.find(i)].append(rev)
    families = []
    for revs in groups.values():
        revs.sort(key=lambda r: (r.version, r.date or ""))
        _warn_duplicate_versions(revs)
        latest = max(revs, key=lambda r: r.date or "")
        families.append(Family(name=_display_name(latest), revisions=revs))
    families.sort(key=lambda f: (f.first_date, f.name))
    return families


def _related(shared: int, size_a: int, size_b: int, cover_a: str, cover_b: str) -> bool:
    """Do two postings sharing ``shared`` patch titles belong to one series?"""
    if cover_a and cover_b and cover_a != cover_b:
        # Two differently titled cover letters: only a near-identical patch list makes them one series
        # (a small prep series later folded into a bigger one stays separate).
        return 5 * shared >= 4 * max(size_a, size_b)
    # One shared title is enough only between single patches: a lone patch of a bigger series
    # reposted elsewhere must not merge two families.
    return 2 * shared >= min(size_a, size_b) and (shared >= 2 or max(size_a, size_b) == 1)


def _warn_duplicate_versions(revs: list[Revision]) -> None:
    seen: dict[int, Revision] = {}
    for rev in revs:
        if rev.version in seen:
            rev.warnings.append(f"version {rev.version} posted twice (also as {seen[rev.version].label!r}); "
                                f"`--revision {rev.version}` picks the later posting")
        seen[rev.version] = rev
