"""``load_families(source)``: read a source, find every posting, build revisions, group families."""

from __future__ import annotations

import binascii
from dataclasses import dataclass, field
from pathlib import Path

import harness.series.cache as family_cache
from harness.core import profile
from harness.core.errors import UserError
from harness.core.tomlfile import load_toml
from harness.series.bodies import find_diff
from harness.series.families import group_families
from harness.series.grouping import ThreadIndex, collect_postings
from harness.series.integrity import check_patch
from harness.series.model import Family, Message
from harness.series.revisions import RELABEL, build_revision
from harness.series.subjects import normalise_title, parse_subject
from harness.sources.index import Annotator
from harness.sources.message import read_headers, split_head
from harness.sources.registry import load_messages


@dataclass
class LoadResult:
    """Families plus what the source had to say (warnings naming messages)."""

    source: str
    kind: str
    message_count: int
    families: list[Family]
    warnings: list[str] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    index_note: str = ""

    def late_warnings(self) -> list[str]:
        """Warnings found while reading bodies after loading (e.g. an undecodable charset)."""
        reported = set(self.warnings)
        out: list[str] = []
        for msg in self.messages:
            out.extend(w for w in msg.warnings if w not in reported and w not in out)
        return out


def group_messages(messages: list[Message]) -> list[Family]:
    """Postings → revisions (with reviews) → families, for already parsed messages."""
    index = ThreadIndex(messages)
    postings = collect_postings(messages, index)
    index.forget_subjects()  # a SubjectInfo per message of a whole archive, not needed from here on
    patch_ids = {msg.message_id for post in postings for _, msg in post.patches}
    patch_ids |= {post.cover.message_id for post in postings if post.cover is not None}
    revisions = [build_revision(post, index, patch_ids) for post in postings]
    del index, postings, patch_ids  # a whole archive's thread lists: freed before families are grouped
    return group_families(revisions)


def body_facts(msg: Message) -> tuple[bool | None, bool | None, str | None]:
    """What the archive index keeps about a body: (has a diff, may say "this is vN", integrity problem).

    Only patch postings (not replies) have their body decoded here: grouping asks about their diffs.
    A reply is only searched for relabel wording (transfer encoding undone with binascii, no MIME
    parse; None for multipart mail, whose body is then read when the relabel rule asks).
    """
    info = parse_subject(msg.subject)
    if info.is_patch and not info.is_reply:
        body = msg.body
        diff = find_diff(body)
        return diff is not None, False, (check_patch(body, diff) or "") if diff else ""
    head, rest = split_head(msg.raw)
    headers = read_headers(head)
    if headers.get("content-type", "").lower().startswith("multipart"):
        return None, None, None  # the text may sit in an encoded part: look at the body when asked
    encoding = headers.get("content-transfer-encoding", "").lower().strip()
    try:
        if encoding == "quoted-printable":
            rest = binascii.a2b_qp(rest[:16384])
        elif encoding == "base64":
            rest = binascii.a2b_base64(rest)
    except (binascii.Error, ValueError):
        return None, None, None
    # The relabel rule reads the first lines of the author's own words: quoted lines never count.
    own = [line for line in rest.decode("latin-1").splitlines()[:200]
           if line.strip() and not line.lstrip().startswith(">")][:8]
    return None, RELABEL.search("\n".join(own)) is not None, None


ANNOTATOR = Annotator("series-facts-3", body_facts)


def load_series(source: str | Path) -> LoadResult:
    """Parse ``source`` and group its patch postings into families (warnings kept, not printed)."""
    loaded = load_messages(source, ANNOTATOR)
    families = None
    if loaded.index_file:  # a whole archive: its grouping is kept beside its index
        families = family_cache.load(loaded.index_file, loaded.index_key, loaded.messages)
    if families is None:
        families = group_messages(loaded.messages)
        if loaded.index_file:
            family_cache.save(loaded.index_file, loaded.index_key, families)
    warnings = list(loaded.warnings)
    if loaded.skipped:
        warnings.append(f"{loaded.skipped} message(s) of {source} could not be read (named above); the rest "
                        "were used")
    return LoadResult(str(source), loaded.kind, len(loaded.messages), families, warnings,
                      loaded.messages, loaded.index_note)


def load_families(source: str | Path) -> list[Family]:
    """Every series family in ``source`` (a path or a message-id), sorted by first posting date."""
    return load_series(source).families


def default_family_name(path: Path | None = None) -> str | None:
    """The series title named in the profile's series.toml (or ``path``), if that file says one."""
    path = path or profile.active().series_file
    if not path.is_file():
        return None
    try:
        data = load_toml(path, "series metadata")
    except UserError:
        return None  # the default family is a convenience: a broken series.toml falls back to the largest
    tables = [data, *(v for v in data.values() if isinstance(v, dict))]
    for table in tables:
        for key in ("title", "name", "subject", "cover_subject"):
            value = table.get(key)
            if isinstance(value, str) and value.strip():
                return value
    return None


def _matches(family: Family, wanted: str) -> bool:
    return normalise_title(wanted) in normalise_title(family.name)


def find_family(families: list[Family], name_or_index: str | None = None) -> Family:
    """Pick a family: by 1-based index (as `kwb series list` numbers them), by (part of) its name, or
    by default the one named in series.toml, else the one with most revisions."""
    if not families:
        raise UserError("no patch series found in this source")
    if name_or_index is None:
        wanted = default_family_name()
        named = [f for f in families if wanted and _matches(f, wanted)]
        if named:
            return max(named, key=lambda f: len(f.revisions))
        return max(families, key=lambda f: (len(f.revisions), sum(len(r.patches) for r in f.revisions)))
    if name_or_index.isdigit():
        index = int(name_or_index)
        if not 1 <= index <= len(families):
            raise UserError(f"series index {index} out of range (1..{len(families)})")
        return families[index - 1]
    found = [f for f in families if _matches(f, name_or_index)]
    exact = [f for f in found if normalise_title(f.name) == normalise_title(name_or_index)]
    if len(exact) == 1 or len(found) == 1:
        return (exact or found)[0]
    if not found:
        raise UserError(f"no series named like {name_or_index!r} in this source")
    raise UserError(f"{name_or_index!r} matches {len(found)} series: "
                    + "; ".join(f.name for f in found[:5]))
