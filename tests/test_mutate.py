"""kwb mutate: the generator (exact mutants of a small C file), outcomes, the campaign loop, the report."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import git
from test_workloads_fakeguest import fake_kernel

from harness.cli import main
from harness.core.errors import InfraError, UserError
from harness.kernel.build import KernelBuild
from harness.orchestrate.mutate import generate as gen
from harness.orchestrate.mutate import report
from harness.orchestrate.mutate.campaign import (
    Lab,
    Outcome,
    Settings,
    State,
    check_order,
    judge,
    run_campaign,
    run_control,
    save_state,
)
from harness.orchestrate.mutate.kernel import BuildOutcome, mutant_commit, object_of, same_code
from harness.orchestrate.mutate.real import GuestBoots, boot_verdict, merge_states, reproduce_command
from harness.workloads.model import JobResult, JobStatus

SMALL = Path(__file__).parent / "data" / "mutate" / "small.c"


def test_generator_gives_exactly_the_known_mutants_of_a_small_file() -> None:
    ops = gen.load_operators()
    mutants = gen.mutants_of("lib/small.c", SMALL.read_text(), range(1, 40), ops)
    got = [(m.line, m.operator, m.mutated) for m in mutants]
    assert got == [
        (11, "negate-condition", "\tif (!(flags & (FLAG_A | FLAG_B)))"),
        (11, "drop-flag", "\tif (flags & (FLAG_A))"),
        (11, "drop-flag", "\tif (flags & (FLAG_B))"),
        (12, "delete-statement", "\t\t;"),
        (13, "negate-condition", "\twhile (!(n > 0 && total < 10)) {"),
        (13, "swap-and-or", "\twhile (n > 0 || total < 10) {"),
        (14, "delete-statement", "\t\t;"),                 # total++;
        (15, "negate-condition", "\t\tif (!(n == 3))"),
        (16, "remove-break", "\t\t\t;"),
        (17, "delete-statement", "\t\t;"),                 # n--;
        (19, "swap-and-or", "\tif (total &&"),             # the if spans two lines: not negated
        (21, "early-success", "\t\treturn 0;"),
        (22, "early-success", "\treturn 0; // the result"),  # the comment is kept, never mutated
    ]
    # the declaration with an initialiser (line 9) and the #define body (lines 2-5) are never touched
    assert not {m.line for m in mutants} & {2, 3, 4, 5, 9}
    assert mutants[1].id == "lib-small-c-11-drop-flag-1"
    assert len({m.id for m in mutants}) == len(mutants)


def test_generator_only_looks_at_the_lines_it_is_given() -> None:
    mutants = gen.mutants_of("lib/small.c", SMALL.read_text(), [16, 21, 99], gen.load_operators())
    assert [(m.line, m.operator) for m in mutants] == [(16, "remove-break"), (21, "early-success")]


def test_mutant_apply_keeps_the_line_count_and_refuses_a_moved_line() -> None:
    text = SMALL.read_text()
    m = gen.mutants_of("lib/small.c", text, [16], gen.load_operators())[0]
    mutated = m.apply(text)
    assert mutated.count("\n") == text.count("\n")
    assert mutated.splitlines()[15] == "\t\t\t;"
    assert "-\t\t\tbreak;\n+\t\t\t;" in m.diff()
    with pytest.raises(UserError, match="no longer"):
        m.apply("\n" + text)


def test_operators_file_errors_name_the_operator(tmp_path: Path) -> None:
    bad = tmp_path / "ops.toml"
    bad.write_text('[[operator]]\nname = "x"\nguards = ["nope"]\nrules = [{ match = "a" }]\n')
    with pytest.raises(UserError, match="operator x: unknown guard nope"):
        gen.load_operators(bad)
    bad.write_text('[[operator]]\nname = "y"\nrules = [{ match = "(" }]\n')
    with pytest.raises(UserError, match="operator y: bad rule"):
        gen.load_operators(bad)
    bad.write_text('[[operator]]\nname = "z"\n')
    with pytest.raises(UserError, match="operator z has no rules"):
        gen.load_operators(bad)


def test_campaign_defaults_are_data() -> None:
    d = gen.load_defaults()
    assert d.files == ["io_uring/rw.c", "mm/filemap.c"] and d.max == 40
    assert d.checks and d.filesystems


def test_sample_is_deterministic_and_keeps_line_order() -> None:
    mutants = gen.mutants_of("lib/small.c", SMALL.read_text(), range(1, 40), gen.load_operators())
    a, b = gen.sample(mutants, 5, 7), gen.sample(mutants, 5, 7)
    assert a == b and len(a) == 5
    assert [m.line for m in a] == sorted(m.line for m in a)
    assert gen.sample(mutants, None, 7) == mutants


def _job(workload: str, status: JobStatus, reason: str = "", fs: str = "ext4", **kw: Any) -> JobResult:
    return JobResult(workload, fs, "gen-x", status, reason, duration=kw.pop("duration", 2.0), **kw)


def test_judge_names_the_killing_check_its_filesystem_and_evidence() -> None:
    out = judge([_job("probe-a", JobStatus.PASS), _job("probe-b", JobStatus.FAIL, "3 reads wrong", fs="xfs",
                                                       findings=["WARNING: at x"]),
                 _job("probe-c", JobStatus.SKIP, "not run")])
    assert (out.status, out.check, out.fs) == ("killed", "probe-b", "xfs")
    assert "3 reads wrong" in out.evidence and "WARNING: at x" in out.evidence
    assert out.checks_run == ["probe-a/ext4: pass", "probe-b/xfs: fail"]
    assert judge([_job("fio", JobStatus.TIMEOUT, "did not finish in 68s")]).status == "timeout"
    assert judge([_job("p", JobStatus.PASS), _job("q", JobStatus.PASS)]).status == "survived"
    boot = judge([_job("boot", JobStatus.FAIL, "the mutant kernel did not boot", fs="-"),
                  _job("p", JobStatus.ERROR, "not run: guest re-booted 1 times")])
    assert (boot.status, boot.check) == ("killed", "boot")
    assert judge([_job("p", JobStatus.PASS), _job("q", JobStatus.ERROR, "mkfs failed")]).status == "error"
    assert judge([]).status == "error"


def test_check_order_puts_the_best_killers_first() -> None:
    assert check_order(["a", "b", "c"], {}) == ["a", "b", "c"]
    assert check_order(["a", "b", "c"], {"c": 2, "b": 1}) == ["c", "b", "a"]


def _mutants() -> list[gen.Mutant]:
    return gen.mutants_of("lib/small.c", SMALL.read_text(), range(1, 40), gen.load_operators())[:4]


def _settings() -> Settings:
    return Settings(files=["lib/small.c"], max=4, seed=1, checks=["probe-a", "probe-b"], filesystems=["ext4"])


class FakeLab:
    """Builds: mutant 0 stillborn, 1 equivalent, 2 killed by probe-b, 3 survives; optional interrupt."""

    def __init__(self, mutants: list[gen.Mutant], interrupt_at: str = "", broken: str = "") -> None:
        self.m, self.interrupt_at, self.broken = mutants, interrupt_at, broken
        self.orders: list[list[str]] = []
        self.built: list[str] = []

    def build(self, mutant: gen.Mutant) -> BuildOutcome:
        self.built.append(mutant.id)
        if mutant.id == self.interrupt_at:
            raise KeyboardInterrupt
        if mutant.id == self.broken:
            raise InfraError("kernel build timed out after 3600s")
        i = self.m.index(mutant)
        if i == 0:
            return BuildOutcome("stillborn", reason="error: expected ';'", seconds={"object": 1.0})
        if i == 1:
            return BuildOutcome("equivalent", reason="same object", seconds={"object": 1.0})
        return BuildOutcome("built", kernel=fake_kernel(f"kernel-{i}"),
                            seconds={"object": 1.0, "kernel": 9.0})

    def run_checks(self, name: str, kernel: KernelBuild, checks: list[str], fss: list[str], out: Path,
                   progress: Any) -> list[JobResult]:
        self.orders.append(list(checks))
        progress("gen: booting guest #1")
        progress("gen: ext4 ready")
        if kernel.variant == "kernel-2":
            return [_job("probe-b", JobStatus.FAIL, "lost CQE")]
        return [_job(c, JobStatus.PASS) for c in checks]

    def lab(self) -> Lab:
        return Lab(build=self.build, run_checks=self.run_checks)


def test_campaign_outcomes_score_and_check_order(tmp_path: Path) -> None:
    mutants = _mutants()
    fake = FakeLab(mutants)
    state = run_campaign(State(_settings(), mutants), fake.lab(), tmp_path, lambda _l: None,
                         save=save_state(tmp_path / "state.json"))
    assert [state.outcomes[m.id].status for m in mutants] == ["stillborn", "equivalent", "killed", "survived"]
    assert state.kills == {"probe-b": 1}
    # after probe-b's kill, the next mutant runs probe-b first
    assert fake.orders == [["probe-a", "probe-b"], ["probe-b", "probe-a"]]
    s = report.summary(state)
    assert (s["detected"], s["scored"], s["score"]) == (1, 2, 0.5)
    assert s["cost"]["kernel"]["n"] == 2 and s["cost"]["checks"]["sum"] == 6.0
    assert state.outcomes[mutants[2].id].cost["boot"] >= 0.0
    report.write(state, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "Mutation score: 50.0%" in md and "## Survivors (1)" in md
    assert mutants[3].diff().splitlines()[-1] in md        # the survivor's diff is listed
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["summary"]["score"] == 0.5 and data["mutants"][2]["outcome"]["check"] == "probe-b"


def test_campaign_resumes_after_an_interrupt(tmp_path: Path) -> None:
    mutants = _mutants()
    state_file = tmp_path / "state.json"
    with pytest.raises(KeyboardInterrupt):
        lab = FakeLab(mutants, interrupt_at=mutants[2].id).lab()
        run_campaign(State(_settings(), mutants), lab, tmp_path, lambda _l: None, save=save_state(state_file))
    saved = State.from_dict(json.loads(state_file.read_text()))
    assert [saved.outcomes.get(m.id, Outcome()).status for m in mutants] == ["stillborn", "equivalent",
                                                                            "pending", "pending"]
    again = FakeLab(mutants)
    run_campaign(saved, again.lab(), tmp_path, lambda _l: None, save=save_state(state_file))
    assert again.built == [mutants[2].id, mutants[3].id]     # the finished ones are not rebuilt
    assert report.summary(saved)["counts"]["pending"] == 0


def test_budget_leaves_the_rest_pending(tmp_path: Path) -> None:
    mutants = _mutants()
    state = run_campaign(State(_settings(), mutants), FakeLab(mutants).lab(), tmp_path, lambda _l: None,
                         budget_minutes=1e-9)
    assert report.summary(state)["counts"]["pending"] == 4
    assert report.summary(state)["score"] is None
    assert "n/a" in report.markdown(state)


def test_merge_shards(tmp_path: Path) -> None:
    mutants = _mutants()
    for i, part in enumerate((mutants[:2], mutants[2:])):
        d = tmp_path / f"s{i}"
        run_campaign(State(_settings(), part), FakeLab(mutants).lab(), d, lambda _l: None,
                     save=save_state(d / "state.json"))
    merged = merge_states([tmp_path / "s0", tmp_path / "s1"])
    assert len(merged.mutants) == 4 and report.summary(merged)["score"] == 0.5
    assert merged.control is None
    # the control a shard ran is the merged campaign's (the report says what the unmodified kernel did)
    shard = json.loads((tmp_path / "s1" / "state.json").read_text())
    shard["control"] = {"status": "survived", "checks_run": ["probe-a/ext4: pass"]}
    (tmp_path / "s1" / "state.json").write_text(json.dumps(shard))
    merged = merge_states([tmp_path / "s0", tmp_path / "s1"])
    assert merged.control is not None and merged.control["status"] == "survived"
    assert "passed every check" in report.markdown(merged)
    with pytest.raises(UserError, match=r"no state\.json"):
        merge_states([tmp_path])


def test_object_of() -> None:
    assert object_of("io_uring/rw.c") == "io_uring/rw.o"
    with pytest.raises(UserError):
        object_of("include/linux/fs.h")


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("objcopy") is None,
                    reason="needs gcc and objcopy")
def test_same_code_ignores_debug_info_but_not_code(tmp_path: Path) -> None:
    base = "int f(int x)\n{\n\treturn x + 1;\n}\n"
    variants = {"base": base, "comment": base.replace("x + 1;", "x + 1; /* same */"),
                "other": base.replace("x + 1", "x + 2")}
    objs = {}
    for name, text in variants.items():
        (tmp_path / f"{name}.c").write_text(text)
        subprocess.run(["gcc", "-g", "-O2", "-c", f"{name}.c", "-o", f"{name}.o"], cwd=tmp_path, check=True)
        objs[name] = tmp_path / f"{name}.o"
    assert same_code(objs["base"], objs["comment"], tmp_path / "w")
    assert not same_code(objs["base"], objs["other"], tmp_path / "w")


def test_mutant_commit_is_plumbing_only_and_deterministic(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "lib").mkdir(parents=True)
    shutil.copy(SMALL, repo / "lib" / "small.c")
    git(tmp_path, "init", "-q", str(repo))
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    parent = git(repo, "rev-parse", "HEAD")
    m = gen.mutants_of("lib/small.c", SMALL.read_text(), [16], gen.load_operators())[0]
    c1 = mutant_commit(repo, parent, m, m.apply(SMALL.read_text()))
    c2 = mutant_commit(repo, parent, m, m.apply(SMALL.read_text()))
    assert c1 == c2 != parent
    assert git(repo, "rev-parse", "HEAD") == parent and git(repo, "status", "--porcelain") == ""
    assert "\t\t\t;" in git(repo, "show", f"{c1}:lib/small.c").splitlines()
    with pytest.raises(UserError, match="not in commit"):
        mutant_commit(repo, parent, gen.Mutant("x", "lib/none.c", 1, "op", "", ""), "")


def test_cli_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["mutate", "--max", "0"]) == 3
    assert "--max must be at least 1" in capsys.readouterr().err
    assert main(["mutate", "--profile", "no-such-profile"]) == 3
    assert "no-such-profile" in capsys.readouterr().err
    assert main(["mutate", "--merge", str(tmp_path)]) == 3
    assert main(["mutate", "--checks", "no-such-check"]) == 3
    assert "unknown check no-such-check" in capsys.readouterr().err
    assert main(["mutate", "--base", "x"]) == 3
    assert main(["mutate", "--shard", "3/2"]) == 3
    assert "--shard 3/2" in capsys.readouterr().err
    assert main(["mutate", "--files", "include/linux/fs.h"]) == 3
    assert "not a C file" in capsys.readouterr().err


def test_only_runs_just_the_named_mutants(tmp_path: Path) -> None:
    mutants = _mutants()
    fake = FakeLab(mutants)
    state = run_campaign(State(_settings(), mutants), fake.lab(), tmp_path, lambda _l: None,
                         only={mutants[3].id})
    assert fake.built == [mutants[3].id]
    assert report.summary(state)["counts"]["pending"] == 3


def test_rerun_needs_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mutate", "--rerun"]) == 3
    assert "--rerun needs --only" in capsys.readouterr().err


def test_control_must_pass_on_the_unmodified_kernel(tmp_path: Path) -> None:
    mutants = _mutants()
    state = State(_settings(), mutants)
    fake = FakeLab(mutants)
    control = run_control(state, fake.lab(), fake_kernel("series"), tmp_path, lambda _l: None)
    assert control.status == "survived"
    assert state.control is not None
    assert state.control["checks_run"] == ["probe-a/ext4: pass", "probe-b/ext4: pass"]
    assert "Control: the unmodified kernel passed every check" in report.markdown(state)
    with pytest.raises(InfraError, match="control: the unmodified kernel does not pass the checks"):
        run_control(state, fake.lab(), fake_kernel("kernel-2"), tmp_path, lambda _l: None)  # fails probe-b
    assert state.control["status"] == "killed"


def test_a_harness_failure_costs_one_mutant_not_the_campaign(tmp_path: Path) -> None:
    mutants = _mutants()
    state = run_campaign(State(_settings(), mutants), FakeLab(mutants, broken=mutants[2].id).lab(), tmp_path,
                         lambda _l: None)
    assert [state.outcomes[m.id].status for m in mutants] == ["stillborn", "equivalent", "error", "survived"]
    assert "timed out" in state.outcomes[mutants[2].id].evidence


def test_a_mutant_kernel_that_never_boots_fails_the_boot_check() -> None:
    boots = GuestBoots(180)
    not_run = [_job("probe-a", JobStatus.ERROR, "not run: guest re-booted 1 times")]
    assert boot_verdict(not_run, boots, "gen-x") == not_run     # no boot failed: an infrastructure error
    boots.failures.append("guest not reachable over SSH within 180s; console: hung_task: INFO: task blocked")
    jobs = boot_verdict(not_run, boots, "gen-x")
    assert (jobs[0].workload, jobs[0].status) == ("boot", JobStatus.FAIL)
    assert "did not boot within 180s" in jobs[0].reason and "hung_task" in jobs[0].reason
    out = judge(jobs)
    assert (out.status, out.check) == ("killed", "boot")
    # a boot that failed once but a later job ran and passed is not a boot kill
    assert boot_verdict([_job("probe-a", JobStatus.PASS)], boots, "gen-x")[0].workload == "probe-a"


class _FakeGuest:
    def __init__(self, console: Path, fail: bool) -> None:
        self.console_log, self.fail, self.boot_seconds = console, fail, 12.5

    def __enter__(self) -> _FakeGuest:
        if self.fail:
            raise InfraError("guest not reachable over SSH within 180s")
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def test_boots_are_recorded_with_the_console_finding(tmp_path: Path) -> None:
    from harness.orchestrate.mutate.real import _Boot

    console = tmp_path / "console.log"
    console.write_text("[  1.0] Linux version 6.12\n"
                       "[245.1] INFO: task (udev-worker):76 blocked for more than 245 seconds.\n")
    boots = GuestBoots(180)
    with _Boot(_FakeGuest(console, fail=False), boots):
        pass
    assert boots.seconds == [12.5] and boots.failures == []
    with pytest.raises(InfraError), _Boot(_FakeGuest(console, fail=True), boots):
        pass
    assert boots.failures[0].startswith("guest not reachable over SSH within 180s; console: ")
    assert "blocked for more than 245 seconds" in boots.failures[0]


def test_user_tree_lines_are_those_the_revision_adds(tmp_path: Path) -> None:
    from harness.orchestrate.coverage import git_source
    from harness.orchestrate.mutate.real import series_lines

    repo = tmp_path / "repo"
    (repo / "lib").mkdir(parents=True)
    text = SMALL.read_text()
    lines = text.split("\n")
    (repo / "lib" / "small.c").write_text("\n".join(ln for i, ln in enumerate(lines, 1) if i not in (15, 16)))
    git(tmp_path, "init", "-q", str(repo))
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    base = git(repo, "rev-parse", "HEAD")
    (repo / "lib" / "small.c").write_text(text)  # "the revision" adds lines 15-16 (if + break)
    git(repo, "commit", "-qam", "lib: stop at 3")
    got, funcs = series_lines(git_source(repo, "HEAD"), ["lib/small.c"], tree=repo, base=base, head="HEAD")
    assert got == {"lib/small.c": [15, 16]} and funcs["lib/small.c"][16] == "pick"
    mutants = gen.generate(git_source(repo, "HEAD"), got, gen.load_operators())
    assert [(m.line, m.operator) for m in mutants] == [(15, "negate-condition"), (16, "remove-break")]
    with pytest.raises(UserError, match=r"lib/other\.c"):
        series_lines(git_source(repo, "HEAD"), ["lib/other.c"], tree=repo, base=base, head="HEAD")


def test_reproducer_remakes_the_mutant_and_runs_one_check_into_its_own_directory(tmp_path: Path) -> None:
    settings = Settings(files=["io_uring/rw.c", "mm/filemap.c"], max=40, seed=1, checks=["probe-short-read"],
                        filesystems=["ext4"])
    cmd = reproduce_command(settings, tmp_path, profile=None, base=None, head=None)
    line = cmd("gen-mm-filemap-c-2417-negate-condition-1", "ext4", "probe-invalidate-race")
    out = tmp_path.resolve() / "reproduce-mm-filemap-c-2417-negate-condition-1"
    assert line == (f"kwb mutate --out {out}"
                    " --files io_uring/rw.c,mm/filemap.c --seed 1 --max 40 --only "
                    "mm-filemap-c-2417-negate-condition-1 --rerun --checks probe-invalidate-race --fs ext4")
    # the control ran the unmodified kernel: kwb run knows it
    assert cmd("control-series", "bdev", "fio-iouring").startswith("kwb run --variant series --fs bdev ")
    user = Settings(files=["mm/filemap.c"], max=None, seed=2, checks=[], filesystems=["ext4"], tree="/t")
    line = reproduce_command(user, tmp_path, profile="p", base="v1", head="kwb/apply/x")("gen-a", "xfs", "w")
    assert line.startswith("kwb --profile p mutate ") and "--tree /t --base v1 --head kwb/apply/x" in line
    assert "--max" not in line


def test_an_argued_survivor_leaves_the_score_only_while_its_line_is_unchanged(tmp_path: Path) -> None:
    mutants = _mutants()
    state = run_campaign(State(_settings(), mutants), FakeLab(mutants).lab(), tmp_path, lambda _l: None,
                         save=save_state(tmp_path / "state.json"))
    survivor = mutants[3]
    argued = {survivor.id: gen.Argued(survivor.id, survivor.original, "unreachable (test)")}
    s = report.summary(state, argued)
    c = s["counts"]
    assert (c["survived"], c["argued_equivalent"], s["score"], s["raw_score"]) == (0, 1, 1.0, 0.5)
    report.write(state, tmp_path, argued)
    md = (tmp_path / "report.md").read_text()
    assert "## Survivors (0)" in md and "## Argued equivalent (1)" in md and "unreachable (test)" in md
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["mutants"][3]["argued_equivalent"] == "unreachable (test)"
    stale = {survivor.id: gen.Argued(survivor.id, "something else;", "written for another tree")}
    assert report.summary(state, stale)["counts"]["survived"] == 1, "a changed line voids the argument"


def test_equivalents_file_errors_name_the_entry_and_field(tmp_path: Path) -> None:
    path = tmp_path / "ops.toml"
    path.write_text('[[equivalent]]\nid = "m-1"\noriginal = "x;"\n')
    with pytest.raises(UserError, match=r"equivalent\[0\]: field 'reason' must be a non-empty string"):
        gen.load_equivalents(path)
    path.write_text('[[equivalent]]\nid = "m-1"\noriginal = "x;"\nreason = "r"\nwhy = "?"\n')
    with pytest.raises(UserError, match="unknown field 'why'"):
        gen.load_equivalents(path)
    assert set(gen.load_equivalents()) >= {"io-uring-rw-c-735-early-success-1"}
