"""`kwb test-series` orchestration with injected stages; the user-tree path on a synthetic git tree."""

from __future__ import annotations

import io
import itertools
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_report_results import VARIANTS, synthetic_concerns, synthetic_jobs
from test_workloads_fakeguest import fake_kernel

from harness.cli import main
from harness.core.errors import InfraError, UserError
from harness.core.progress import Progress
from harness.core.run import run
from harness.judge.verdict import VariantInfo
from harness.kernel.build import KernelBuild
from harness.orchestrate.pipeline import Options, Stages, run_pipeline, workloads_for
from harness.orchestrate.stages import real_stages
from harness.report import schema
from harness.series.model import Family, Revision
from harness.workloads.model import JobResult, JobStatus, VariantRun, WorkloadSpec


def _spec(name: str, kind: str, default: bool = True) -> WorkloadSpec:
    return WorkloadSpec(name, kind, "", ["ext4", "xfs", "btrfs", "bdev"], 60.0, default=default)


CATALOGUE = {s.name: s for s in (_spec("fio-iouring", "fio"), _spec("fio-iouring-forced-async", "fio"),
                                 _spec("fio-psync", "fio"), _spec("probe-cqe-accounting", "probe"),
                                 _spec("probe-kbuf-cancel", "probe"),
                                 _spec("liburing-subset", "liburing", default=False))}


def FakeKernel(variant: str) -> KernelBuild:
    return fake_kernel(variant, Path("/cache"), commit="c0ffee" * 6 + "abcd", config=Path("/cache/.config"))


def FakeFamily() -> Family:
    """A family of mail-less revisions v1-v5 and v7, labelled rev-N."""
    revisions = [Revision(v, f"rev-{v}", False, 0, None, []) for v in (1, 2, 3, 4, 5, 7)]
    return Family("async-buffered-reads", revisions)


@dataclass
class Recorder:
    """Fake stages that record what the pipeline asked for."""

    jobs: list[JobResult] = field(default_factory=synthetic_jobs)
    fail_build: set[str] = field(default_factory=set)
    builds: list[tuple[str, Path | None, str | None]] = field(default_factory=list)
    runs: list[tuple[str, list[str], list[str]]] = field(default_factory=list)
    stop_on_flag: dict[str, bool] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # the kind each variant was run as
    applied: list[tuple[Path, str | None, Revision]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (what, variant, thread)

    def build_kernel(self, variant: str, /, *, tree: Path | None, base: str | None,
                     progress: Any) -> KernelBuild:
        self.builds.append((variant, tree, base))
        self.events.append(("build", variant, threading.current_thread().name))
        if variant in self.fail_build:
            raise InfraError(f"build of {variant} failed: drivers/foo.c:1: error: bar")
        return FakeKernel(variant)

    def run_variant(self, name: str, kernel: KernelBuild, fss: list[str], workloads: list[str], out_dir: Path,
                    progress: Any, /, *, kind: str, stop_on_flag: bool) -> VariantRun:
        self.runs.append((name, fss, workloads))
        self.stop_on_flag[name] = stop_on_flag
        self.kinds[name] = kind
        self.events.append(("run", name, threading.current_thread().name))
        progress(f"{name}: booting guest #1")
        progress(f"{name}: guest up")
        (out_dir / name).mkdir(parents=True, exist_ok=True)  # the runner's variant directory
        mine = [j for j in self.jobs if j.variant == name and j.fs in fss and j.workload in workloads]
        jobs = [JobResult(**{**j.__dict__, "variant": ""}) for j in mine]  # runner leaves variant to us
        return VariantRun(jobs, accel="tcg", guest_root="isolated", boots=1)

    def run_coverage(self, name: str, kernel: KernelBuild, fss: list[str], workloads: list[str],
                     out_dir: Path,
                     progress: Any, /) -> tuple[VariantRun, dict[str, Any]]:
        ran = self.run_variant("series", kernel, fss, workloads, out_dir, progress, kind="coverage",
                               stop_on_flag=False)
        md = ("## Patch coverage\n\n7 of 9 executable series lines executed (77%).\n\n"
              "| | executed | lines | % |\n|---|---:|---:|---:|\n| io_uring/rw.c | 7 | 9 | 77 |\n")
        ran.jobs = [JobResult(**{**j.__dict__, "variant": name}) for j in ran.jobs]
        return ran, {"variant": name, "executed": 7, "total": 9, "html": f"{name}/coverage/coverage.html",
                     "timings": {"build": 400.0}, "markdown": md}

    def apply(self, tree: Path, base: str | None, revision: Any, progress: Any) -> str:
        self.applied.append((tree, base, revision))
        return "kwb/series/v5"

    def stages(self) -> Stages:
        return Stages(load_family=lambda source: FakeFamily(),
                      concern_statuses=lambda family: [*synthetic_concerns(),
                                                       {"concern_id": "x", "version": 1, "status": "present",
                                                        "evidence": "", "patch": None}],
                      variant_catalogue=lambda: list(VARIANTS), workload_catalogue=lambda: dict(CATALOGUE),
                      build_kernel=self.build_kernel,
                      run_variant=self.run_variant, apply_revision=self.apply,
                      run_coverage=self.run_coverage)


def _quiet() -> Progress:
    return Progress(quiet=True, stream=io.StringIO())


def _opts(tmp_path: Path, **kw: Any) -> Options:
    return Options(source="lore.mbox", out_root=tmp_path / "out", **kw)


def _latest(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "out" / "latest" / "results.json").read_text())  # type: ignore[no-any-return]


def test_default_tree_pipeline_passes(tmp_path: Path) -> None:
    rec = Recorder()
    progress_out = tmp_path / "progress.txt"
    with progress_out.open("w") as stream:
        code = run_pipeline(_opts(tmp_path), rec.stages(), Progress(stream=stream))
    assert code == 0
    data = _latest(tmp_path)
    assert schema.errors(data) == []
    ran = [v.name for v in VARIANTS if not v.equivalent]  # equivalent mutants are not booted
    assert [r[0] for r in rec.runs] == ran
    assert all(r[1] == ["ext4", "xfs", "btrfs", "bdev"] for r in rec.runs)
    # Mutation testing stops at the first kill; the series and baseline run every job.
    assert rec.stop_on_flag == {v.name: v.kind == "mutant" for v in VARIANTS if not v.equivalent}
    workloads = {r[0]: r[2] for r in rec.runs}
    assert workloads["series"] == ["fio-iouring", "fio-iouring-forced-async", "fio-psync",
                                   "probe-cqe-accounting", "probe-kbuf-cancel", "liburing-subset"]
    assert workloads["baseline"] == ["fio-iouring"]
    assert workloads["mutant-lost-cqe"] == ["probe-cqe-accounting"]
    assert data["variants"]["mutant-hipri-wait"]["verdict"] == "equivalent"
    assert {"name": "variant mutant-hipri-wait", "status": "skipped", "seconds": 0.0} in data["run"]["steps"]
    assert {c["version"] for c in data["concerns"]} == {3, 4, 5, 7}  # v1 dropped: not a real posting
    assert data["run"]["status"] == "complete" and data["accel"] == "tcg"
    assert data["guest_root"] == {name: "isolated" for name in ran}
    assert "- guest root: kwb's isolated image" in (tmp_path / "out" / "latest" / "report.md").read_text()
    assert data["kernel"]["release"] == "6.12.117"
    assert set(data["kernel"]["variants"]) == set(ran)
    assert set(data["timings"]["build"]) == set(data["timings"]["boot"]) == set(data["timings"]["variants"]) \
        == set(ran)
    assert all(j["variant"] for j in data["jobs"])
    for name in ("junit.xml", "report.md", "report.html"):
        assert (tmp_path / "out" / "latest" / name).is_file()
    text = progress_out.read_text()
    assert "▶ variant mutant-kbuf-leak" in text and "verdict: PASS" in text


def test_unflagged_mutant_fails_the_run(tmp_path: Path) -> None:
    rec = Recorder(jobs=synthetic_jobs(lost_cqe_flagged=False))
    assert run_pipeline(_opts(tmp_path), rec.stages(), _quiet()) == 1
    data = _latest(tmp_path)
    assert data["mutants"]["mutant-lost-cqe"]["flagged"] is False
    assert data["verdict"]["reasons"] == ["mutant-lost-cqe: missed: no check flagged it"]


def test_a_broken_variant_build_does_not_stop_the_others(tmp_path: Path) -> None:
    rec = Recorder(fail_build={"mutant-lost-cqe"})
    with pytest.raises(InfraError, match=r"build of mutant-lost-cqe failed.*partial results in"):
        run_pipeline(_opts(tmp_path), rec.stages(), _quiet())
    data = _latest(tmp_path)
    # The broken one never reaches the workloads stage (it runs only a built kernel); later ones ran.
    assert [r[0] for r in rec.runs] == [v.name for v in VARIANTS if not v.equivalent
                                        and v.name != "mutant-lost-cqe"]
    assert data["run"]["status"] == "failed" and "mutant-lost-cqe" in data["run"]["error"]
    assert data["verdict"]["exit_code"] == 2
    err = [j for j in data["jobs"] if j["status"] == "error"]
    assert err and err[0]["variant"] == "mutant-lost-cqe" and err[0]["workload"] == "build-boot"
    assert any(s["status"] == "failed" for s in data["run"]["steps"])


def test_next_mutant_builds_while_the_current_one_runs(tmp_path: Path) -> None:
    rec = Recorder()
    assert run_pipeline(_opts(tmp_path), rec.stages(), _quiet()) == 0
    mutants = [v.name for v in VARIANTS if v.kind == "mutant" and not v.equivalent]
    assert len(mutants) >= 2
    where = {name: thread for what, name, thread in rec.events if what == "build"}
    # series, baseline and the first mutant build in the foreground: nothing else runs meanwhile.
    assert not where["series"].startswith("kwb-prebuild") and not where["baseline"].startswith("kwb-prebuild")
    assert not where[mutants[0]].startswith("kwb-prebuild")
    assert all(where[m].startswith("kwb-prebuild") for m in mutants[1:])
    # A prebuild starts only once the current mutant's own kernel is there.
    order = [(what, name) for what, name, _ in rec.events]
    for prev, nxt in itertools.pairwise(mutants):
        assert order.index(("build", prev)) < order.index(("build", nxt)) < order.index(("run", nxt))
    data = _latest(tmp_path)
    assert set(data["timings"]["build_waited"]) == set(mutants[1:])
    assert schema.errors(data) == []


def test_a_failed_prebuild_fails_only_its_own_variant(tmp_path: Path) -> None:
    later = [v.name for v in VARIANTS if v.kind == "mutant" and not v.equivalent][1]
    rec = Recorder(fail_build={later})
    with pytest.raises(InfraError, match=f"build of {later} failed"):
        run_pipeline(_opts(tmp_path), rec.stages(), _quiet())
    data = _latest(tmp_path)
    err = [j for j in data["jobs"] if j["status"] == "error"]
    assert [(j["variant"], j["workload"]) for j in err] == [(later, "build-boot")]
    assert [r[0] for r in rec.runs] == [v.name for v in VARIANTS if not v.equivalent and v.name != later]


def test_an_unchanged_baseline_is_measured_once_then_reused(cache: Path, tmp_path: Path) -> None:
    rec = Recorder()
    for j in rec.jobs:
        if j.variant == "baseline":  # the real runner passes a baseline job that shows the punt path
            j.status = JobStatus.PASS
    stages = rec.stages()
    keys: list[tuple[str, list[str], list[str]]] = []

    def key(kernel: Any, fss: list[str], workloads: list[str]) -> str:
        keys.append((kernel.variant, fss, workloads))
        return "k-" + str(kernel.variant)

    stages.reuse_key = key
    opts = _opts(tmp_path, variants=["series", "baseline"])
    assert run_pipeline(opts, stages, _quiet()) == 0
    first = _latest(tmp_path)
    assert "reused" not in first and keys == [("baseline", list(opts.filesystems), ["fio-iouring"])]
    assert [r[0] for r in rec.runs] == ["series", "baseline"]

    assert run_pipeline(opts, stages, _quiet()) == 0
    second = _latest(tmp_path)
    assert [r[0] for r in rec.runs] == ["series", "baseline", "series"]  # the baseline was not booted
    assert second["reused"]["baseline"]["run"] == first["run"]["id"]
    assert schema.errors(second) == []
    assert second["variants"]["baseline"]["verdict"] == first["variants"]["baseline"]["verdict"]
    mine = sorted((j["fs"], j["workload"]) for j in second["jobs"] if j["variant"] == "baseline")
    assert mine == sorted((j["fs"], j["workload"]) for j in first["jobs"] if j["variant"] == "baseline")
    assert [v for v, *_ in rec.builds].count("baseline") == 2  # built (a cache hit) to know its commit
    md = (tmp_path / "out" / "latest" / "report.md").read_text()
    assert f"baseline: results reused from run {first['run']['id']}" in md

    assert run_pipeline(_opts(tmp_path, variants=["series", "baseline"], fresh_baseline=True), stages,
                        _quiet()) == 0
    third = _latest(tmp_path)
    assert [r[0] for r in rec.runs][-2:] == ["series", "baseline"] and "reused" not in third
    # the fresh measurement replaced the kept one
    assert run_pipeline(opts, stages, _quiet()) == 0
    assert _latest(tmp_path)["reused"]["baseline"]["run"] == third["run"]["id"]


def test_a_baseline_that_timed_out_is_not_kept(cache: Path, tmp_path: Path) -> None:
    rec = Recorder(jobs=[j for j in synthetic_jobs() if j.variant != "baseline" or j.fs != "xfs"])
    for j in rec.jobs:
        if j.variant == "baseline":
            j.status = JobStatus.TIMEOUT
    stages = rec.stages()
    stages.reuse_key = lambda kernel, fss, workloads: "k"
    opts = _opts(tmp_path, variants=["baseline"])
    run_pipeline(opts, stages, _quiet())
    run_pipeline(opts, stages, _quiet())
    assert [r[0] for r in rec.runs] == ["baseline", "baseline"] and "reused" not in _latest(tmp_path)


def test_coverage_variant_only_on_request(tmp_path: Path) -> None:
    rec = Recorder()
    stages = rec.stages()
    stages.variant_catalogue = lambda: [*VARIANTS, VariantInfo("coverage", "coverage")]
    assert run_pipeline(_opts(tmp_path), stages, _quiet()) == 0
    assert "coverage" not in [r[0] for r in rec.runs] and "coverage" not in _latest(tmp_path)
    assert run_pipeline(_opts(tmp_path, coverage=True), stages, _quiet()) == 0
    data = _latest(tmp_path)
    assert data["coverage"]["executed"] == 7 and data["variants"]["coverage"]["verdict"] == "pass"
    assert schema.errors(data) == []
    md = (tmp_path / "out" / "latest" / "report.md").read_text()
    assert "## Patch coverage" in md and "Annotated source: `coverage/coverage/coverage.html`" in md
    page = (tmp_path / "out" / "latest" / "report.html").read_text()
    assert "<td>io_uring/rw.c</td><td>7</td>" in page and "---:" not in page


def test_workloads_for_each_variant_kind() -> None:
    assert workloads_for(VariantInfo("m", "mutant", flagged_by=["health", "fio-iouring"]), CATALOGUE) == \
        ["fio-iouring"]  # fio only when nothing lighter is listed
    assert workloads_for(VariantInfo("m", "mutant", flagged_by=["fio-iouring", "probe-kbuf-cancel",
                                                                 "liburing-subset"]), CATALOGUE) == \
        ["probe-kbuf-cancel", "liburing-subset"]
    assert workloads_for(VariantInfo("m", "mutant"), CATALOGUE) == ["probe-cqe-accounting",
                                                                    "probe-kbuf-cancel"]
    assert workloads_for(VariantInfo("m", "mutant", equivalent="unreachable"), CATALOGUE) == []
    assert workloads_for(VariantInfo("c", "coverage"), CATALOGUE)[-1] == "liburing-subset"


def test_workloads_come_from_the_active_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    """What each kind runs by default is the profile's: the second profile names its series workloads
    and has no baseline list; the first adds liburing's subset to the catalogue's default set."""
    from harness.core import profile
    from harness.workloads.catalogue import load_catalogue

    real = load_catalogue()
    series = workloads_for(VariantInfo("series", "series"), real)
    assert "liburing-subset" in series and "liburing-eventfd" not in series
    assert workloads_for(VariantInfo("baseline", "baseline"), real) == ["fio-iouring"]
    monkeypatch.setenv(profile.ENV, "cq-eventfd-disable")
    assert workloads_for(VariantInfo("series", "series"), real) == ["liburing-eventfd"]
    assert workloads_for(VariantInfo("baseline", "baseline"), real) == []


def test_variant_and_fs_selection(tmp_path: Path) -> None:
    rec = Recorder()
    code = run_pipeline(_opts(tmp_path, variants=["series", "baseline"], filesystems=["xfs"],
                             workloads=["fio-iouring"]), rec.stages(), _quiet())
    assert code == 0
    assert rec.runs == [("series", ["xfs"], ["fio-iouring"]), ("baseline", ["xfs"], ["fio-iouring"])]
    with pytest.raises(UserError, match="unknown variant nope"):
        run_pipeline(_opts(tmp_path, variants=["nope"]), rec.stages(), _quiet())


def test_user_tree_runs_revision_and_its_base(tmp_path: Path) -> None:
    rec = Recorder(jobs=[j for j in synthetic_jobs() if j.variant in ("series", "baseline")])
    tree = tmp_path / "linux"
    code = run_pipeline(_opts(tmp_path, tree=tree, base="v5.7-rc7", revision=5), rec.stages(),
                       _quiet())
    assert code == 0
    assert [(t, b, r.label) for t, b, r in rec.applied] == [(tree, "v5.7-rc7", "rev-5")]
    # The revision applied, then the bare base as baseline; both from the user's tree, never 6.12 patches.
    assert rec.builds == [("series", tree, "kwb/series/v5"), ("series", tree, "v5.7-rc7")]
    data = _latest(tmp_path)
    assert data["kernel"]["tree"] == str(tree) and data["kernel"]["revision"] == 5
    assert data["run"]["revision"] == 5 and set(data["variants"]) == {"series", "baseline"}


def test_user_tree_needs_revision_and_base_needs_tree(tmp_path: Path) -> None:
    rec = Recorder()
    quiet = _quiet()
    with pytest.raises(UserError, match="--tree needs --revision"):
        run_pipeline(_opts(tmp_path, tree=tmp_path), rec.stages(), quiet)
    with pytest.raises(UserError, match="--base needs --tree"):
        run_pipeline(_opts(tmp_path, base="v5.8"), rec.stages(), quiet)
    assert _latest(tmp_path)["run"]["status"] == "failed"


def test_real_stages_are_wired() -> None:
    stages = real_stages()
    assert all(callable(getattr(stages, f)) for f in Stages.__dataclass_fields__)


# ---- the user-tree path for real: synthetic tree, synthetic two-revision series, real b4 + git am ----

def _git(repo: Path, *args: str) -> str:
    res = run(["git", "-C", str(repo), *args], timeout=60, check=True)
    return res.stdout.strip()


def _patch_mail(n: int, total: int, version: int, msgid: str, old: str, new: str, date: str) -> str:
    diff = (f"diff --git a/hello.c b/hello.c\n--- a/hello.c\n+++ b/hello.c\n@@ -1 +1 @@\n-{old}\n+{new}\n")
    return (f"From: Dev Eloper <dev@example.org>\nDate: {date}\nMessage-ID: <{msgid}>\n"
            f"Subject: [PATCH v{version} {n}/{total}] hello: say {new}\n"
            f"In-Reply-To: <cover-v{version}@example.org>\nReferences: <cover-v{version}@example.org>\n\n"
            f"Say {new}.\n\nSigned-off-by: Dev Eloper <dev@example.org>\n---\n{diff}-- \n2.30.0\n")


def _cover(version: int, total: int, date: str) -> str:
    return (f"From: Dev Eloper <dev@example.org>\nDate: {date}\nMessage-ID: <cover-v{version}@example.org>\n"
            f"Subject: [PATCH v{version} 0/{total}] Greet better\n\nThis greets better.\n")


def _hello_tree(tmp_path: Path) -> tuple[Path, str]:
    """A one-commit git tree holding hello.c ("hello"), and that commit."""
    tree = tmp_path / "linux"
    tree.mkdir()
    (tree / "hello.c").write_text("hello\n")
    _git(tree, "init", "-q")
    _git(tree, "add", "hello.c")
    _git(tree, "commit", "-q", "-m", "base")
    return tree, _git(tree, "rev-parse", "HEAD")


def test_user_tree_path_on_a_synthetic_tree(tmp_path: Path) -> None:
    tree, base = _hello_tree(tmp_path)
    msgs = [_cover(2, 2, "Mon, 1 Jun 2020 10:00:00 +0000"),
            _patch_mail(1, 2, 2, "p1-v2@example.org", "hello", "hi", "Mon, 1 Jun 2020 10:00:01 +0000"),
            _patch_mail(2, 2, 2, "p2-v2@example.org", "hi", "hey", "Mon, 1 Jun 2020 10:00:02 +0000")]
    mbox = tmp_path / "series.mbox"
    mbox.write_text("".join(f"From mboxrd@z Thu Jan  1 00:00:00 1970\n{m}\n" for m in msgs))
    rec = Recorder(jobs=[j for j in synthetic_jobs() if j.variant in ("series", "baseline")])
    stages = real_stages()
    stages.build_kernel, stages.run_variant = rec.build_kernel, rec.run_variant
    stages.variant_catalogue = lambda: []
    stages.concern_statuses = lambda family: []  # the concern rules target the 2020 io_uring series
    opts = Options(source=str(mbox), out_root=tmp_path / "out", tree=tree, base=base, revision=2)
    code = run_pipeline(opts, stages, _quiet())
    assert code == 0
    (series_build, baseline_build) = rec.builds
    assert baseline_build == ("series", tree, base)
    applied = series_build[2]
    assert applied is not None
    assert _git(tree, "show", f"{applied}:hello.c") == "hey"
    assert _git(tree, "log", "--format=%s", f"{base}..{applied}").splitlines() == ["hello: say hey",
                                                                                  "hello: say hi"]
    assert _git(tree, "status", "--porcelain") == ""  # the user's checkout is untouched
    assert (tree / "hello.c").read_text() == "hello\n"


# ---- the real thing: built kernels, a TCG boot, fio with kprobes ---------------------------------

@pytest.mark.boot
@pytest.mark.real
def test_real_series_vs_baseline_on_ext4(built_kernel: Any, lore_mbox: Path, tmp_path: Path) -> None:
    """The pipeline on the real stages, cut to one fs and one workload: async path vs punt path."""
    opts = Options(source=str(lore_mbox), out_root=tmp_path / "out", variants=["series", "baseline"],
                   filesystems=["ext4"], workloads=["fio-iouring"], fresh_baseline=True)
    log = io.StringIO()
    code = run_pipeline(opts, real_stages(), Progress(stream=log))
    data = _latest(tmp_path)
    assert schema.errors(data) == []
    assert code == 0, (data["verdict"], log.getvalue()[-3000:])
    assert data["variants"]["series"]["paths"]["ext4"]["path"] == "async"
    assert data["variants"]["baseline"]["paths"]["ext4"]["path"] == "io-wq"
    assert data["kernel"]["release"] == built_kernel.release
    assert data["accel"] in ("tcg", "kvm") and set(data["timings"]["boot"]) == {"series", "baseline"}
    assert {c["version"] for c in data["concerns"]} == {3, 4, 5, 7}
    md = (tmp_path / "out" / "latest" / "report.md").read_text()
    assert "| fio-iouring | baseline |" in md and "| fio-iouring | series |" in md
    for job in data["jobs"]:
        assert (Path(job["job_dir"]) / "command").is_file() and job["reproducer"]
    # The same baseline kernel and workload again: the kept results are taken, the guest is not booted.
    again = Options(source=str(lore_mbox), out_root=tmp_path / "out", variants=["baseline"],
                    filesystems=["ext4"], workloads=["fio-iouring"])
    run_pipeline(again, real_stages(), Progress(stream=log))
    reused = _latest(tmp_path)
    assert reused["verdict"]["reasons"] == ["no series variant in this run"]  # the baseline alone
    assert reused["reused"]["baseline"]["run"] == data["run"]["id"], log.getvalue()[-2000:]
    assert "baseline" not in reused["timings"]["boot"] and schema.errors(reused) == []
    assert reused["variants"]["baseline"]["paths"]["ext4"]["path"] == "io-wq"
    (job,) = reused["jobs"]
    assert Path(job["job_dir"]).is_relative_to(tmp_path / "out" / reused["run"]["id"])


# ---- several revisions on one user tree: the base once, each revision a variant ------------------

def _revision_jobs(versions: list[int]) -> list[JobResult]:
    """The synthetic series jobs once per revision variant, plus the baseline's (same checks)."""
    series = [j for j in synthetic_jobs() if j.variant == "series"]
    jobs = [JobResult(**{**j.__dict__, "variant": f"series-v{v}"}) for v in versions for j in series]
    baseline = [j for j in synthetic_jobs() if j.variant == "baseline"]
    return jobs + baseline


@dataclass
class RevRecorder(Recorder):
    unappliable: set[str] = field(default_factory=set)
    compared: list[tuple[list[Revision], dict[int, str]]] = field(default_factory=list)

    def apply(self, tree: Path, base: str | None, revision: Revision, progress: Any) -> str:
        self.applied.append((tree, base, revision))
        if revision.label in self.unappliable:
            from harness.kernel.apply import ApplyError

            raise ApplyError(f"patch 2/12 \"mm: allow read-ahead\" does not apply ({revision.label})",
                             {"patch": 2, "total": 12, "conflict": {"hunks": []}})
        return f"kwb/series/{revision.label}"

    def compare(self, revisions: list[Revision], jobs: list[dict[str, Any]], variants: dict[int, str],
                concerns: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
        self.compared.append((revisions, variants))
        return {"pairs": [{"old": "v3", "new": "v4", "patches": [{}], "checks": []}]}, "# revisions\n"

    def stages(self) -> Stages:
        stages = super().stages()
        stages.compare_revisions = self.compare
        return stages


def test_revisions_build_the_base_once_and_each_revision_as_a_variant(tmp_path: Path) -> None:
    rec = RevRecorder(jobs=_revision_jobs([3, 4, 5]))
    tree = tmp_path / "linux"
    code = run_pipeline(_opts(tmp_path, tree=tree, base="v5.8-base", revisions=[3, 4, 5]), rec.stages(),
                        _quiet())
    assert code == 0
    assert [a[2].label for a in rec.applied] == ["rev-3", "rev-4", "rev-5"]
    assert rec.builds == [("series", tree, "kwb/series/rev-3"), ("series", tree, "kwb/series/rev-4"),
                          ("series", tree, "kwb/series/rev-5"), ("series", tree, "v5.8-base")]
    # the base runs the same checks as the revisions (so each failure can be attributed)
    workloads = {r[0]: r[2] for r in rec.runs}
    assert workloads["baseline"] == workloads["series-v3"] == workloads["series-v5"]
    assert [([r.label for r in revs], variants) for revs, variants in rec.compared] == [
        (["rev-3", "rev-4", "rev-5"], {3: "series-v3", 4: "series-v4", 5: "series-v5"})]
    data = _latest(tmp_path)
    assert set(data["variants"]) == {"series-v3", "series-v4", "series-v5", "baseline"}
    assert data["kernel"]["revisions"] == [3, 4, 5]
    assert (tmp_path / "out" / "latest" / "revisions.md").read_text() == "# revisions\n"
    assert json.loads((tmp_path / "out" / "latest" / "revisions.json").read_text())["pairs"][0]["old"] == "v3"


def test_a_revision_that_does_not_apply_is_its_own_error_and_the_others_run(tmp_path: Path) -> None:
    rec = RevRecorder(jobs=_revision_jobs([4, 5]), unappliable={"rev-3"})
    tree = tmp_path / "linux"
    code = run_pipeline(_opts(tmp_path, tree=tree, base="b", revisions=[3, 4, 5]), rec.stages(), _quiet())
    assert code == 1
    assert [r[0] for r in rec.runs] == ["series-v4", "series-v5", "baseline"]
    data = _latest(tmp_path)
    [err] = [j for j in data["jobs"] if j["variant"] == "series-v3"]
    assert err["status"] == "error" and "v3 does not apply: patch 2/12" in err["reason"]
    assert err["evidence"]["apply"]["patch"] == 2
    assert data["variants"]["series-v3"]["ok"] is False


def test_revisions_options_are_checked_first(tmp_path: Path) -> None:
    rec = RevRecorder()
    with pytest.raises(UserError, match="--revisions needs --tree"):
        run_pipeline(_opts(tmp_path, revisions=[3, 4]), rec.stages(), _quiet())
    with pytest.raises(UserError, match="exclusive"):
        run_pipeline(_opts(tmp_path, tree=tmp_path, base="b", revision=5, revisions=[3]), rec.stages(),
                     _quiet())
    with pytest.raises(UserError, match="names a revision twice"):
        run_pipeline(_opts(tmp_path, tree=tmp_path, base="b", revisions=[3, 3]), rec.stages(), _quiet())
    assert rec.builds == []


def test_cli_takes_revisions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Options] = []

    def fake_run(opts: Options, stages: Stages, progress: Progress) -> int:
        seen.append(opts)
        return 0

    monkeypatch.setattr("harness.cli.pipeline.run_pipeline", fake_run)
    assert main(["-q", "test-series", "--source", "x.mbox", "--tree", str(tmp_path), "--base", "b",
                 "--revisions", "3,4,5"]) == 0
    assert seen[0].revisions == [3, 4, 5] and seen[0].revision is None
    with pytest.raises(SystemExit) as exc:
        main(["-q", "test-series", "--source", "x.mbox", "--revisions", "3,x"])
    assert exc.value.code == 3


def test_revisions_on_a_synthetic_tree_with_real_apply_and_series_diff(tmp_path: Path) -> None:
    """Real b4 export, git am and series diff; fake build and guest: v1 → v2 changed patch 2 only, and
    the comparison puts that beside the check whose outcome changed."""
    tree, base = _hello_tree(tmp_path)
    msgs = []
    for version, last, day in ((1, "hey", 1), (2, "howdy", 8)):
        date = f"Mon, {day} Jun 2020 10:00:0{{}} +0000"
        msgs += [_cover(version, 2, date.format(0)),
                 _patch_mail(1, 2, version, f"p1-v{version}@example.org", "hello", "hi", date.format(1)),
                 # v2 reworks patch 2 under the same subject (as a revision does)
                 _patch_mail(2, 2, version, f"p2-v{version}@example.org", "hi", last, date.format(2))
                 .replace(f"hello: say {last}", "hello: say hey")]
    mbox = tmp_path / "series.mbox"
    mbox.write_text("".join(f"From mboxrd@z Thu Jan  1 00:00:00 1970\n{m}\n" for m in msgs))
    series = [j for j in synthetic_jobs() if j.variant == "series" and j.fs == "ext4"]
    jobs = [JobResult(**{**j.__dict__, "variant": f"series-v{v}"}) for v in (1, 2) for j in series]
    jobs += [JobResult(**{**j.__dict__, "variant": "baseline"}) for j in series]
    [probe] = [j for j in jobs if j.variant == "series-v1" and j.workload == "probe-kbuf-cancel"]
    probe.status, probe.reason = JobStatus.FAIL, "buffer leaked"
    rec = Recorder(jobs=jobs)
    stages = real_stages()
    stages.build_kernel, stages.run_variant = rec.build_kernel, rec.run_variant
    stages.variant_catalogue = lambda: []
    stages.workload_catalogue = lambda: dict(CATALOGUE)
    stages.concern_statuses = lambda family: []
    opts = Options(source=str(mbox), out_root=tmp_path / "out", tree=tree, base=base, revisions=[1, 2],
                   filesystems=["ext4"])
    code = run_pipeline(opts, stages, _quiet())
    assert code == 1  # v1's probe fails
    v1_ref, v2_ref = rec.builds[0][2], rec.builds[1][2]
    assert v1_ref and v2_ref and rec.builds[2] == ("series", tree, base)
    # Revisions are no entries of variants.toml: the pipeline hands the runner their kind.
    assert rec.kinds == {"series-v1": "series", "series-v2": "series", "baseline": "baseline"}
    assert _git(tree, "show", f"{v1_ref}:hello.c") == "hey"
    assert _git(tree, "show", f"{v2_ref}:hello.c") == "howdy"
    comp = json.loads((tmp_path / "out" / "latest" / "revisions.json").read_text())
    [pair] = comp["pairs"]
    assert [(p["status"], p["new"]) for p in pair["patches"]] == [("changed", 2)]
    assert pair["checks"] == [{"check": "probe-kbuf-cancel@ext4", "before": "fail", "after": "pass",
                               "before_reason": "buffer leaked", "after_reason": ""}]
    [failure] = comp["revisions"][0]["failures"]
    assert failure["verdict"] == "introduced" and failure["text"].startswith("introduced by v1")
    assert comp["revisions"][1]["failures"] == []
    md = (tmp_path / "out" / "latest" / "revisions.md").read_text()
    assert "## v1 → v2" in md and "patch 2→2 changed: hello: say hey" in md


def test_an_interrupted_variant_keeps_the_jobs_it_finished(tmp_path: Path) -> None:
    """Ctrl-C (or SIGTERM) in the middle of a variant: results.json holds the jobs whose result.json the
    runner had written, marked with the variant, and the run is 'interrupted'."""
    rec = Recorder()

    def interrupted(name: str, kernel: KernelBuild, fss: list[str], workloads: list[str], out_dir: Path,
                    progress: Any, /, *, kind: str, stop_on_flag: bool) -> VariantRun:
        done = next(j for j in rec.jobs if j.variant == name)
        job_dir = out_dir / name / done.fs / done.workload
        job_dir.mkdir(parents=True)
        (job_dir / "result.json").write_text(json.dumps({**done.to_dict(), "variant": ""}))
        cut = out_dir / name / "xfs" / "fio-psync"
        cut.mkdir(parents=True)
        (cut / "result.json").write_text('{"fs": "xfs", "workl')  # being written when the signal came
        raise KeyboardInterrupt

    stages = rec.stages()
    stages.run_variant = interrupted
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(_opts(tmp_path), stages, _quiet())
    data = _latest(tmp_path)
    assert data["run"]["status"] == "interrupted"
    assert [(j["variant"], j["fs"], j["workload"]) for j in data["jobs"]] == \
        [(j.variant, j.fs, j.workload) for j in rec.jobs[:1]]
