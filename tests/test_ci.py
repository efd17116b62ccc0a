"""CI: matrix plan, shards, the CI files, run-shard, and the list watcher (replay of the real list)."""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import mailbox
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import main
from harness.core.errors import UserError
from harness.core.paths import project_root
from harness.orchestrate import ci

CI_DIR = project_root() / "ci"
RUN_SHARD = re.compile(r"\bkwb (-q )?ci run-shard\b")


# ---- plan and shards ----------------------------------------------------------------------------

def test_plan_variant_by_fs() -> None:
    p = ci.plan(["ext4", "xfs"], variants=["series", "baseline", "mutant-a"])
    assert p["kind"] == "variant" and p["shards"] == 6
    assert p["items"][:2] == [{"variant": "series", "fs": "ext4"}, {"variant": "series", "fs": "xfs"}]
    assert [row["shard"] for row in p["include"]] == [f"{i}/6" for i in range(1, 7)]


def test_plan_revision_by_fs_with_fewer_shards() -> None:
    p = ci.plan(["ext4", "xfs", "btrfs", "bdev"], revisions=[3, 4, 5, 7], shards=4)
    assert p["kind"] == "revision" and p["shards"] == 4 and len(p["items"]) == 16
    assert sum(row["items"] for row in p["include"]) == 16
    with pytest.raises(UserError, match="empty CI matrix"):
        ci.plan([], revisions=[3])


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20])
def test_shards_are_disjoint_and_complete(n: int) -> None:
    items = list(range(17))
    parts = [ci.shard(items, i, n) for i in range(1, n + 1)]
    assert sorted(x for part in parts for x in part) == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("text", ["0/3", "4/3", "a/b", "3", "1/0"])
def test_bad_shard_spec_is_user_error(text: str) -> None:
    with pytest.raises(UserError, match="--shard"):
        ci.parse_shard(text)


def test_group_items_keeps_fs_per_variant() -> None:
    items = [{"variant": "series", "fs": "ext4"}, {"variant": "m", "fs": "xfs"},
             {"variant": "series", "fs": "bdev"}]
    assert ci.group_items(items, "variant") == {"series": ["ext4", "bdev"], "m": ["xfs"]}


def test_kwb_ci_plan_prints_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ci", "plan", "--revisions", "3,4,5,7", "--fs", "ext4,xfs", "--shards", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "revision" and data["shards"] == 3 and len(data["items"]) == 8
    assert main(["ci", "plan", "--revisions", "3,4", "--fs", "ext4", "--include-only"]) == 0
    assert json.loads(capsys.readouterr().out) == {"include": [{"shard": "1/2", "items": 1},
                                                               {"shard": "2/2", "items": 1}]}


def test_kwb_ci_plan_default_tree_uses_variants_toml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ci", "plan"]) == 0
    data = json.loads(capsys.readouterr().out)
    variants = {item["variant"] for item in data["items"]}
    assert "series" in variants and "coverage" not in variants
    assert "mutant-hipri-guard-only" not in variants  # documented equivalent: never booted
    assert {item["fs"] for item in data["items"]} == {"ext4", "xfs", "btrfs", "bdev"}


def test_run_shard_runs_its_slice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def fake_pipeline(opts: Any, stages: Any, progress: Any) -> int:
        calls.append((opts.revision, opts.filesystems, opts.matrix))
        return 0

    import harness.cli.ci as ci_cmd

    monkeypatch.setattr(ci_cmd, "run_pipeline", fake_pipeline)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(ci.plan(["ext4", "xfs"], variants=["series", "baseline", "m"], shards=2)))
    assert main(["-q", "ci", "run-shard", "--plan", str(plan), "--shard", "2/2", "--source", "x"]) == 0
    assert calls == [(None, ["ext4", "xfs", "btrfs", "bdev"], {"series": ["xfs"], "baseline": ["xfs"],
                                                              "m": ["xfs"]})]
    calls.clear()
    assert main(["-q", "ci", "run-shard", "--revisions", "4,5", "--fs", "ext4,xfs", "--shards", "2",
                 "--shard", "1/2", "--source", "x", "--tree", str(tmp_path)]) == 0
    assert [(c[0], c[1]) for c in calls] == [(4, ["ext4"]), (5, ["ext4"])]
    # Fewer CI jobs than the plan's shards would drop items; more leave the extra jobs empty.
    assert main(["ci", "run-shard", "--plan", str(plan), "--shard", "1/1", "--source", "x"]) == 3
    calls.clear()
    assert main(["-q", "ci", "run-shard", "--plan", str(plan), "--shard", "3/3", "--source", "x"]) == 0
    assert calls == []


# ---- the CI files -------------------------------------------------------------------------------

def _commands(node: Any) -> list[str]:
    """Every shell line in a parsed CI file."""
    if isinstance(node, dict):
        return [c for v in node.values() for c in _commands(v)]
    if isinstance(node, list):
        return [c for v in node for c in _commands(v)]
    return [node] if isinstance(node, str) else []


def test_github_workflow_plan_matrix_merge() -> None:
    wf = yaml.safe_load((CI_DIR / "github-actions.yml").read_text())
    jobs = wf["jobs"]
    assert set(jobs) >= {"plan", "shard", "merge"}
    assert any("kwb ci plan" in c for c in _commands(jobs["plan"]))
    assert "matrix" in str(jobs["plan"]["outputs"])
    strategy = jobs["shard"]["strategy"]
    assert "fromJSON(needs.plan.outputs.matrix)" in str(strategy["matrix"]) and strategy["fail-fast"] is False
    assert jobs["shard"]["needs"] == "plan"
    assert any(RUN_SHARD.search(c) and "--shard ${{ matrix.shard }}" in c for c in _commands(jobs["shard"]))
    assert any("kwb report --merge" in c for c in _commands(jobs["merge"]))
    assert "shard" in jobs["merge"]["needs"] and jobs["merge"]["if"].startswith("always()")


def test_gitlab_ci_plan_matrix_merge() -> None:
    doc = yaml.safe_load((CI_DIR / "gitlab-ci.yml").read_text())
    assert doc["stages"] == ["plan", "test", "merge"]
    # The templates (.kwb-plan, .kwb-shard, .kwb-merge) carry the scripts; kwb-* and kwb-*-shell extend them.
    jobs = {k: v for k, v in doc.items() if isinstance(v, dict) and "stage" in v}
    by_stage = {v["stage"]: (k, v) for k, v in jobs.items()}
    assert set(jobs) == {".kwb-plan", ".kwb-shard", ".kwb-merge"}
    _, plan_job = by_stage["plan"]
    assert any("kwb ci plan" in c for c in _commands(plan_job))
    _, shard_job = by_stage["test"]
    assert any(RUN_SHARD.search(c) and "--shard" in c for c in _commands(shard_job))
    # GitLab's `parallel` must be a literal: the most shards a plan may have (run-shard refuses fewer jobs).
    assert shard_job["parallel"] == int(doc["variables"]["KWB_SHARDS"])
    assert any('--shards "$KWB_SHARDS"' in c for c in _commands(plan_job))
    _, merge_job = by_stage["merge"]
    assert any("kwb report --merge" in c for c in _commands(merge_job))
    assert any("kwb ci check-merged" in c for c in _commands(merge_job))
    for name in ("kwb-merge", "kwb-merge-shell"):
        assert doc[name]["rules"][0]["when"] == "always"


# ---- watch --------------------------------------------------------------------------------------

@dataclass
class Starter:
    """A fake run starter recording which revisions it was asked to run."""

    calls: list[tuple[int, str]] = field(default_factory=list)

    def __call__(self, family: Any, revision: Any) -> dict[str, Any]:
        self.calls.append((revision.version, revision.label))
        return {"fake": True, "version": revision.version}


def _family_loader() -> Any:
    from harness.series import find_family, load_families

    return lambda source: find_family(load_families(source), None)


def _dated_messages(mbox_path: Path) -> list[tuple[dt.datetime, bytes]]:
    box = mailbox.mbox(str(mbox_path), create=False)
    out = []
    try:
        for key in box.iterkeys():
            msg = box.get_message(key)
            try:
                date = email.utils.parsedate_to_datetime(str(msg.get("Date", "")))
            except (TypeError, ValueError):
                continue
            if date.tzinfo is None:
                date = date.replace(tzinfo=dt.UTC)
            out.append((date, box.get_bytes(key, from_=True)))
    finally:
        box.close()
    return sorted(out, key=lambda pair: pair[0])


def _write(path: Path, msgs: list[tuple[dt.datetime, bytes]]) -> Path:
    with path.open("wb") as f:
        for _, raw in msgs:
            f.write(raw if raw.endswith(b"\n") else raw + b"\n")
    return path


V4_POSTED = dt.datetime(2020, 5, 24, 19, 21, 54, tzinfo=dt.UTC)


def test_watch_replay_of_the_list_runs_v4_v5_v7_once(lore_mbox: Path, tmp_path: Path) -> None:
    msgs = _dated_messages(lore_mbox)
    assert len(msgs) > 1500
    load = _family_loader()
    state = ci.load_state(tmp_path / "state.json")
    starter = Starter()
    # The watcher is set up after v3 (and its "this is v3" reply) was on the list: seed with that.
    before_v4 = [m for m in msgs if m[0] < V4_POSTED]
    seeded = ci.watch_once(str(_write(tmp_path / "seed.mbox", before_v4)), state, starter, load_family=load,
                           now=before_v4[-1][0], seed=True)
    assert seeded == [] and starter.calls == []
    assert sorted(s.version for s in state.seen) == [1, 2, 3]
    # Then the rest of the list arrives in date order, batch by batch; each poll sees everything so far.
    rest = msgs[len(before_v4):]
    # The first poll lands in the middle of v4's posting (cover + 4 of 12 patches): nothing may run yet.
    ends = [5, *range(125, len(rest) + 120, 120)]
    triggered = []
    for end in ends:
        upto = before_v4 + rest[:end]
        source = _write(tmp_path / "inbox.mbox", upto)
        triggered += ci.watch_once(str(source), ci.load_state(tmp_path / "state.json"), starter,
                                   load_family=load, now=upto[-1][0])
    assert [t.version for t in triggered] == [4, 5, 7]
    assert len(triggered[0].key) > 0 and rest[4][0] < V4_POSTED + dt.timedelta(minutes=5)
    assert [c[0] for c in starter.calls] == [4, 5, 7]
    # A poll of the complete archive again, with a fresh process (state from disk), runs nothing.
    assert ci.watch_once(str(lore_mbox), ci.load_state(tmp_path / "state.json"), starter,
                         load_family=load) == []
    assert [c[0] for c in starter.calls] == [4, 5, 7]
    saved = json.loads((tmp_path / "state.json").read_text())
    assert [s["version"] for s in saved["seen"]] == [1, 2, 3, 4, 5, 7]
    assert saved["seen"][2]["label"] == "v2"  # the mislabeled posting, run as v3


@dataclass
class FakeMsg:
    message_id: str
    date: dt.datetime | None


@dataclass
class FakePatch:
    message: FakeMsg


@dataclass
class FakeRev:
    version: int
    label: str
    patches: list[FakePatch]
    missing: list[int] = field(default_factory=list)
    cover: FakeMsg | None = None


@dataclass
class FakeFam:
    revisions: list[FakeRev]
    name: str = "fam"


T0 = dt.datetime(2020, 5, 23, tzinfo=dt.UTC)


def _rev(version: int, label: str, ids: list[str], missing: list[int] | None = None,
         cover: str | None = None) -> FakeRev:
    return FakeRev(version, label, [FakePatch(FakeMsg(i, T0)) for i in ids], missing or [],
                   FakeMsg(cover, T0) if cover else None)


def test_watch_relabel_and_late_cover_do_not_rerun(tmp_path: Path) -> None:
    state = ci.load_state(tmp_path / "s.json")
    starter = Starter()
    fams = iter([FakeFam([_rev(2, "v2", ["a1", "a2"])]),
                 FakeFam([_rev(3, "v2", ["a1", "a2"], cover="a0")]),       # relabelled, cover joined
                 FakeFam([_rev(3, "v2", ["a1", "a2"], cover="a0"), _rev(4, "v4", ["b1"], missing=[2])]),
                 FakeFam([_rev(3, "v2", ["a1", "a2"], cover="a0"), _rev(4, "v4", ["b1", "b2"])])])
    polls = [ci.watch_once("src", state, starter, load_family=lambda s: next(fams), now=T0) for _ in range(4)]
    assert [[t.version for t in p] for p in polls] == [[2], [], [], [4]]
    assert state.seen[0].version == 3 and state.seen[0].message_ids == ["a0", "a1", "a2"]


def test_watch_incomplete_revision_runs_after_settling(tmp_path: Path) -> None:
    state = ci.load_state(tmp_path / "s.json")
    starter = Starter()
    fam = FakeFam([_rev(5, "v5", ["c1"], missing=[2])])
    assert ci.watch_once("s", state, starter, load_family=lambda s: fam, now=T0) == []
    later = T0 + dt.timedelta(hours=7)
    again = ci.watch_once("s", state, starter, load_family=lambda s: fam, now=later)
    assert [t.version for t in again] == [5]


def test_watch_dry_run_starts_and_saves_nothing(tmp_path: Path) -> None:
    state = ci.load_state(tmp_path / "s.json")
    starter = Starter()
    fam = FakeFam([_rev(4, "v4", ["b1"])])
    out = ci.watch_once("s", state, starter, load_family=lambda s: fam, now=T0, dry_run=True)
    assert [t.version for t in out] == [4] and out[0].run is None
    assert starter.calls == [] and not (tmp_path / "s.json").exists()


def test_watch_failed_start_is_retried(tmp_path: Path) -> None:
    state = ci.load_state(tmp_path / "s.json")
    fam = FakeFam([_rev(4, "v4", ["b1"])])

    def broken(family: Any, revision: Any) -> dict[str, Any]:
        raise UserError("no tree")

    with pytest.raises(UserError):
        ci.watch_once("s", state, broken, load_family=lambda s: fam, now=T0)
    assert [t.version for t in ci.watch_once("s", ci.load_state(tmp_path / "s.json"), Starter(),
                                             load_family=lambda s: fam, now=T0)] == [4]


def test_corrupt_state_is_one_line_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "s.json"
    bad.write_text("{")
    with pytest.raises(UserError, match="delete it to start over"):
        ci.load_state(bad)


def test_default_state_lives_in_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KWB_CACHE", str(tmp_path / "cache"))
    path = ci.default_state_path(str(tmp_path / "inbox"))
    assert path.parent == tmp_path / "cache" / "watch"
    assert ci.default_state_path(str(tmp_path / "inbox")) == path != ci.default_state_path("other")


def test_kwb_ci_watch_dry_run_cli(lore_mbox: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.json"
    assert main(["ci", "watch", "--source", str(lore_mbox), "--state", str(state), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in out] == ["v1", "v2", "v3", "v4", "v5", "v7"]
    assert not state.exists()
    assert main(["ci", "watch", "--source", str(lore_mbox), "--state", str(state), "--seed"]) == 0
    assert main(["ci", "watch", "--source", str(lore_mbox), "--state", str(state), "--dry-run"]) == 0
    assert "would start" not in capsys.readouterr().out
