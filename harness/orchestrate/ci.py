"""CI support: the test matrix (plan), sharding it over parallel jobs, and watching a list archive.

* ``plan``: variant × filesystem on the default tree, revision × filesystem on a user's tree.
* ``shard(items, i, n)``: the i-th of n round-robin slices (1-based, every item in exactly one shard).
* ``watch_once``: look at a public-inbox repo or mbox, start a run for each new, complete revision of
  the tracked series, and remember (in a state file) every message-id that belonged to a revision
  already handled, so nothing runs twice — not even when a later reply relabels a revision ("v2" →
  v3) or a re-sent cover joins it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness.core.atomic import write_json
from harness.core.errors import UserError
from harness.core.paths import cache_dir

T = TypeVar("T")
PLAN_SCHEMA = 1


# ---- plan and shards ----------------------------------------------------------------------------

def plan(filesystems: Sequence[str], *, variants: Sequence[str] = (), revisions: Sequence[int] = (),
         shards: int | None = None) -> dict[str, Any]:
    """The matrix as JSON-ready data: items, and ``include`` rows (``{"shard": "i/n"}``) for CI.

    ``revisions`` given: revision × filesystem (a user's tree); else variant × filesystem.
    """
    if revisions:
        items: list[dict[str, Any]] = [{"revision": r, "fs": fs} for r in revisions for fs in filesystems]
        kind = "revision"
    else:
        items = [{"variant": v, "fs": fs} for v in variants for fs in filesystems]
        kind = "variant"
    if not items:
        raise UserError("empty CI matrix: no variants/revisions or no filesystems")
    n = min(shards or len(items), len(items))
    if n < 1:
        raise UserError(f"--shards must be at least 1, not {shards}")
    return {"schema": PLAN_SCHEMA, "kind": kind, "shards": n, "items": items,
            "include": [{"shard": f"{i}/{n}", "items": len(shard(items, i, n))} for i in range(1, n + 1)]}


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/5"`` → (2, 5); UserError naming the bad value otherwise."""
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise UserError(f"--shard must look like I/N (e.g. 2/5), not {text!r}") from None
    if not 1 <= i <= n:
        raise UserError(f"--shard {text}: I must be between 1 and N")
    return i, n


def shard(items: Sequence[T], i: int, n: int) -> list[T]:
    """Shard ``i`` of ``n`` (1-based): items i-1, i-1+n, ... — shards are disjoint and cover all items."""
    if n < 1 or not 1 <= i <= n:
        raise UserError(f"shard {i}/{n} does not exist")
    return list(items[i - 1::n])


def shard_of_plan(plan_data: dict[str, Any], i: int, n: int) -> list[dict[str, Any]]:
    """The items CI job ``i`` of ``n`` runs. ``n`` is the CI's job count (GitLab's literal ``parallel:``),
    at least the plan's shard count: jobs past the plan's shards run nothing. Fewer jobs than shards
    would drop items, so that is refused."""
    planned = int(plan_data["shards"])
    if n < planned:
        raise UserError(f"--shard {i}/{n}: the plan has {planned} shards; {n} CI jobs would leave "
                        f"{planned - n} of them unrun (raise parallel/the matrix, or lower --shards)")
    if i > planned:
        return []
    return shard(plan_data["items"], i, planned)


def check_merged(plan_data: dict[str, Any], results: dict[str, Any], junit_xml: str) -> list[str]:
    """What a merged run gets wrong against its plan: a planned (variant or revision, fs) item with no
    job, a job no item planned, junit testcases that don't match the jobs. Empty when they agree."""
    key = "variant" if plan_data["kind"] == "variant" else "revision"
    planned = {(str(it[key]), str(it["fs"])) for it in plan_data["items"]}
    jobs = results.get("jobs") or []

    def item_of(job: dict[str, Any]) -> tuple[str, str]:
        variant = str(job["variant"])
        if key == "revision":  # merged revision shards name variants v<N>/<variant>
            variant = variant.split("/", 1)[0].lstrip("v") if "/" in variant else str(
                (results.get("run") or {}).get("revision"))
        return variant, str(job["fs"])

    ran = {item_of(j) for j in jobs if j["fs"] != "-"}
    broken = {item_of(j)[0] for j in jobs if j["fs"] == "-"}  # a build/boot error covers its variant
    problems = [f"planned {key} {v} on {fs}: no job in the merged run"
                for v, fs in sorted(planned - ran) if v not in broken]
    problems += [f"job on {key} {v} {fs} was not planned" for v, fs in sorted(ran - planned)]
    try:
        root = ET.fromstring(junit_xml)
    except ET.ParseError as exc:
        return [*problems, f"junit.xml does not parse: {exc}"]
    count = sum(len(suite.findall("testcase")) for suite in root.iter("testsuite")
                if str(suite.get("name", "")).startswith("variant."))  # one testcase per job
    if count != len(jobs):
        problems.append(f"junit.xml has {count} testcases, the merged run {len(jobs)} jobs")
    return problems


def group_items(items: Iterable[dict[str, Any]], key: str) -> dict[Any, list[str]]:
    """``{variant or revision: [filesystems]}`` for one shard's items, in first-seen order."""
    out: dict[Any, list[str]] = {}
    for item in items:
        out.setdefault(item[key], []).append(str(item["fs"]))
    return out


# ---- watch --------------------------------------------------------------------------------------

@dataclass
class Seen:
    """One revision handled by the watcher."""

    key: str                      # the first message-id it was recognised by
    version: int
    label: str
    message_ids: list[str]
    first_seen: str
    run: dict[str, Any] | None = None   # what the run starter returned; None when only seeded

    def to_dict(self) -> dict[str, Any]:
        """State-file form."""
        return {"key": self.key, "version": self.version, "label": self.label,
                "message_ids": self.message_ids, "first_seen": self.first_seen, "run": self.run}


@dataclass
class WatchState:
    """What the watcher has seen, per tracked family; stored as JSON (atomically)."""

    path: Path
    family: str = ""
    seen: list[Seen] = field(default_factory=list)

    def known(self, ids: set[str]) -> Seen | None:
        """The handled revision sharing any of ``ids``."""
        return next((s for s in self.seen if ids & set(s.message_ids)), None)

    def save(self) -> None:
        """Write the state file atomically."""
        write_json(self.path, {"schema": 1, "family": self.family, "seen": [s.to_dict() for s in self.seen]})


def default_state_path(source: str) -> Path:
    """Per-source state file in the cache: ``<cache>/watch/<sha1 of the source path>.json``."""
    ident = str(Path(source).resolve()) if Path(source).exists() else source
    return cache_dir() / "watch" / (hashlib.sha1(ident.encode()).hexdigest()[:16] + ".json")


def load_state(path: Path) -> WatchState:
    """Read a state file (a missing file is an empty state); UserError on a corrupt one."""
    if not path.exists():
        return WatchState(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        seen = [Seen(**s) for s in data["seen"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"watch state {path} is unreadable ({exc}); delete it to start over") from exc
    return WatchState(path, str(data.get("family", "")), seen)


def revision_ids(revision: Any) -> set[str]:
    """Every message-id that identifies a revision: its cover and its patches."""
    ids = {p.message.message_id for p in revision.patches}
    if revision.cover is not None:
        ids.add(revision.cover.message_id)
    return ids


def _dates(revision: Any) -> list[dt.datetime]:
    msgs = [p.message for p in revision.patches] + ([revision.cover] if revision.cover is not None else [])
    return [m.date for m in msgs if m.date is not None]


def is_ready(revision: Any, now: dt.datetime, settle: dt.timedelta) -> bool:
    """Complete (no missing patches) — or incomplete but quiet for ``settle`` (a patch never came)."""
    if not revision.patches:
        return False
    if not revision.missing:
        return True
    dates = _dates(revision)
    return bool(dates) and now - max(dates) >= settle


@dataclass
class Trigger:
    """A run the watcher started (or, in a dry run, would start)."""

    version: int
    label: str
    key: str
    run: dict[str, Any] | None


StartRun = Callable[[Any, Any], dict[str, Any]]  # (family, revision) -> run record


def watch_once(source: str, state: WatchState, start_run: StartRun, *,
               load_family: Callable[[str], Any], now: dt.datetime | None = None,
               seed: bool = False, dry_run: bool = False,
               settle: dt.timedelta = dt.timedelta(hours=6)) -> list[Trigger]:
    """One poll: start a run for each new ready revision; returns what was (or would be) started.

    ``seed``: record what is there without starting runs (the first look at an archive).
    ``dry_run``: start nothing and leave the state file alone.
    """
    family = load_family(source)
    now = now or dt.datetime.now(dt.UTC)
    state.family = state.family or str(family.name)
    triggers: list[Trigger] = []
    for revision in family.revisions:
        ids = revision_ids(revision)
        known = state.known(ids)
        if known is not None:
            # Same revision seen before: note relabels and late members (re-sent cover), never re-run.
            known.version, known.label = int(revision.version), str(revision.label)
            known.message_ids = sorted(set(known.message_ids) | ids)
            continue
        if not ids or not is_ready(revision, now, settle):
            continue
        key = min(ids)
        run = None if seed or dry_run else start_run(family, revision)
        triggers.append(Trigger(int(revision.version), str(revision.label), key, run))
        state.seen.append(Seen(key, int(revision.version), str(revision.label), sorted(ids),
                               now.isoformat(), run))
        if not dry_run:
            state.save()  # after each start: a crash later in this poll must not re-run this one
    if not dry_run:
        state.save()
    return [] if seed else triggers
