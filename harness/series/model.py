"""The series model: families of revisions of one patch series, their patches and review replies.

Plain data handed to the next pipeline stages (apply, concerns, report); see INTERFACES.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.core.errors import UserError
from harness.series.bodies import summary
from harness.sources.message import Message

__all__ = ["Family", "Message", "Patch", "Review", "Revision"]


Analysis = Callable[[Message], tuple[str, list[tuple[str, str]], str | None]]


class Review:
    """A reply to a patch or cover: the reviewer's own words (quotes stripped), trailers, fix-up diff.

    ``analyse`` (own words, trailers, fix-up of a message) runs the first time any of the three is
    asked for, and ``reviewer`` defaults to the sender's name, worked out when asked for: listing a whole
    archive counts 30k replies without reading their bodies or parsing their senders.
    """

    __slots__ = ("_analyse", "_fixup", "_reviewer", "_text", "_trailers", "message")

    def __init__(self, message: Message, reviewer: str | None = None, text: str = "",
                 trailers: list[tuple[str, str]] | None = None, fixup_diff: str | None = None, *,
                 analyse: Analysis | None = None) -> None:
        self.message = message
        self._reviewer = reviewer
        self._analyse = analyse
        self._text, self._trailers, self._fixup = text, trailers, fixup_diff

    def _ready(self) -> None:
        if self._analyse is not None:
            self._text, self._trailers, self._fixup = self._analyse(self.message)
            self._analyse = None

    @property
    def reviewer(self) -> str:
        """Who replied (the sender's display name unless given)."""
        return self._reviewer if self._reviewer is not None else self.message.sender_name

    @property
    def text(self) -> str:
        """The reviewer's own words."""
        self._ready()
        return self._text

    @property
    def trailers(self) -> list[tuple[str, str]]:
        """Trailers the reviewer gave in their own text (Reviewed-by, Acked-by …)."""
        self._ready()
        if self._trailers is None:
            self._trailers = []
        return self._trailers

    @property
    def fixup_diff(self) -> str | None:
        """A change the reviewer proposes (diff or code snippet), None when there is none."""
        self._ready()
        return self._fixup

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"message_id": self.message.message_id, "reviewer": self.reviewer,
                "date": self.message.date.isoformat() if self.message.date else None,
                "subject": self.message.subject, "summary": summary(self.text), "text": self.text,
                "trailers": [list(t) for t in self.trailers], "fixup_diff": self.fixup_diff}


PatchAnalysis = Callable[[Message], tuple[str, str, list[tuple[str, str]]]]


class Patch:
    """One patch of a revision; ``diff`` runs from the first ``diff --git`` to the end, as posted.

    ``diff``, ``commit_message`` and the patch's own trailers come from ``analyse`` on first use;
    ``trailers`` adds those given in replies.
    """

    __slots__ = ("_analyse", "_commit_message", "_diff", "_own", "message", "number", "reviews", "subject",
                 "total")

    def __init__(self, number: int, total: int, subject: str, message: Message, diff: str = "",
                 commit_message: str = "", trailers: list[tuple[str, str]] | None = None,
                 reviews: list[Review] | None = None, *, analyse: PatchAnalysis | None = None) -> None:
        self.number, self.total, self.subject, self.message = number, total, subject, message
        self.reviews: list[Review] = reviews if reviews is not None else []
        self._analyse = analyse
        self._diff, self._commit_message, self._own = diff, commit_message, trailers or []

    def _ready(self) -> None:
        if self._analyse is not None:
            self._diff, self._commit_message, self._own = self._analyse(self.message)
            self._analyse = None

    @property
    def diff(self) -> str:
        """The diff as posted."""
        self._ready()
        return self._diff

    @property
    def commit_message(self) -> str:
        """The commit message (up to ``---``)."""
        self._ready()
        return self._commit_message

    @property
    def trailers(self) -> list[tuple[str, str]]:
        """The patch's own trailers, then those reviewers gave in replies (each once)."""
        self._ready()
        out = list(self._own)
        for review in self.reviews:
            out.extend(t for t in review.trailers if t not in out)
        return out

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        """JSON-ready summary (``full`` adds the diff, commit message and review texts)."""
        data: dict[str, Any] = {"number": self.number, "total": self.total, "subject": self.subject,
                                "message_id": self.message.message_id,
                                "trailers": [list(t) for t in self.trailers],
                                "reviews": [r.to_dict() if full else
                                            {"reviewer": r.reviewer, "message_id": r.message.message_id,
                                             "fixup": r.fixup_diff is not None} for r in self.reviews]}
        if full:
            data["commit_message"] = self.commit_message
            data["diff"] = self.diff
        return data


@dataclass
class Revision:
    """One posting of the series. ``version`` is the real one (after an author's relabel)."""

    version: int
    label: str
    rfc: bool
    expected: int
    cover: Message | None
    patches: list[Patch]
    missing: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cover_reviews: list[Review] = field(default_factory=list)

    @property
    def date(self) -> str | None:
        """ISO date of the cover (or first patch)."""
        first = self.cover or (self.patches[0].message if self.patches else None)
        return first.date.isoformat() if first and first.date else None

    def patch(self, number: int) -> Patch:
        """Patch ``number`` of this revision (UserError when not posted)."""
        for p in self.patches:
            if p.number == number:
                return p
        raise UserError(f"revision v{self.version} has no patch {number}")

    def all_reviews(self) -> list[Review]:
        """Cover reviews then each patch's reviews, in patch order."""
        out = list(self.cover_reviews)
        for p in self.patches:
            out.extend(p.reviews)
        return out

    def summary(self) -> dict[str, Any]:
        """The `series list` record for this revision."""
        return {"version": self.version, "label": self.label, "rfc": self.rfc, "expected": self.expected,
                "patches": len(self.patches), "missing": self.missing,
                "cover_message_id": self.cover.message_id if self.cover else None,
                "date": self.date, "reviews": len(self.all_reviews()), "warnings": self.warnings}


@dataclass
class Family:
    """All revisions of one series, ordered by version (then posting date)."""

    name: str
    revisions: list[Revision]
    notes: list[str] = field(default_factory=list)  # how the family was put together (title changes)

    def revision(self, version: int) -> Revision:
        """The revision with this version (the latest posting when two share it); UserError if unknown."""
        found = [r for r in self.revisions if r.version == version]
        if not found:
            known = ", ".join(str(r.version) for r in self.revisions)
            raise UserError(f"series {self.name!r} has no revision {version} (known: {known})")
        return found[-1]

    @property
    def first_date(self) -> str:
        """ISO date of the earliest revision ('' when undated), for sorting."""
        dates = [r.date for r in self.revisions if r.date]
        return min(dates) if dates else ""
