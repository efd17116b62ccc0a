"""`kwb test-series`: series → concern status → each variant (build, boot, workloads) → verdict → report.

The orchestration only calls stages; every stage is a field of :class:`Stages` so tests inject fakes
(the real ones are wired in :mod:`harness.orchestrate.stages`). A stage that fails fails its step with a
one-line error naming it, and the run still writes its (partial) results.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.core import atomic, profile
from harness.core.errors import InfraError, KwbError, UserError
from harness.core.progress import Progress, fmt_seconds
from harness.judge.verdict import VariantInfo
from harness.kernel.apply import ApplyError
from harness.kernel.build import KernelBuild
from harness.kernel.eras.resolve import probe_roles
from harness.orchestrate import reuse
from harness.report.results import RunRecord, new_run_id
from harness.report.write import finalize
from harness.series.model import Family, Revision
from harness.sources import mailsource
from harness.workloads.model import JobResult, JobStatus, VariantRun, WorkloadSpec
from harness.workloads.runner import plan_specs

DEFAULT_FILESYSTEMS = ("ext4", "xfs", "btrfs", "bdev")
# Which revisions get a concern status and what each variant kind runs by default are the series
# profile's (profile.toml: concern_revisions, [workloads]).
_MISSING_KIND = re.compile(r"no \S+ variant in this run")  # harness.judge.verdict's reason for an absent kind


class BuildKernelFn(Protocol):
    """The kernel stage: build (or reuse) ``variant`` of ``tree`` at ``base`` (None: the default tree)."""

    def __call__(self, variant: str, /, *, tree: Path | None, base: str | None,
                 progress: Callable[[str], None] | None) -> KernelBuild: ...


class RunVariantFn(Protocol):
    """The workloads stage: boot ``kernel`` and run ``workloads`` on ``filesystems`` under ``out_dir``.

    ``kind`` is the variant's kind (its variants.toml entry may not exist: a user tree's revisions);
    ``stop_on_flag`` ends the run at the first job that fails a check (mutants)."""

    def __call__(self, name: str, kernel: KernelBuild, filesystems: list[str], workloads: list[str],
                 out_dir: Path, progress: Callable[[str], None], /, *, kind: str,
                 stop_on_flag: bool) -> VariantRun: ...


class RunCoverageFn(Protocol):
    """The gcov variant: like :class:`RunVariantFn`, plus the coverage summary the report shows."""

    def __call__(self, name: str, kernel: KernelBuild, filesystems: list[str], workloads: list[str],
                 out_dir: Path, progress: Callable[[str], None], /) -> tuple[VariantRun, dict[str, Any]]: ...


@dataclass
class Options:
    """What `kwb test-series` was asked to do."""

    source: str | None  # None: sources.mailsource picks one (shared archive, lore) or skips the concern step
    out_root: Path
    command: str = "kwb test-series"
    tree: Path | None = None
    base: str | None = None
    revision: int | None = None
    # Several revisions on one user tree: the base built once as the baseline, each revision a variant.
    revisions: list[int] | None = None
    coverage: bool = False
    variants: list[str] | None = None
    filesystems: list[str] = field(default_factory=lambda: list(DEFAULT_FILESYSTEMS))
    workloads: list[str] | None = None
    # A CI shard: {variant: [filesystems]} instead of variants × filesystems.
    matrix: dict[str, list[str]] | None = None
    # Measure the baseline even when a kept run of the same kernel and workloads exists (orchestrate.reuse).
    fresh_baseline: bool = False


@dataclass
class Stages:
    """The pipeline's stages (real ones from :func:`real_stages`, fakes in tests)."""

    load_family: Callable[[str], Family]                        # source -> the series
    concern_statuses: Callable[[Family], list[dict[str, Any]]]  # -> ConcernStatus dicts (+ title)
    variant_catalogue: Callable[[], list[VariantInfo]]
    workload_catalogue: Callable[[], dict[str, WorkloadSpec]]
    build_kernel: BuildKernelFn
    run_variant: RunVariantFn
    apply_revision: Callable[[Path, str | None, Revision, Callable[[str], None]], str]  # -> applied ref
    run_coverage: RunCoverageFn
    # (kernel, filesystems, workloads) -> the key a baseline's results are kept under; None: never reuse
    reuse_key: Callable[[KernelBuild, list[str], list[str]], str | None] | None = None
    # (revisions, jobs, {version: variant}, concerns) -> (revisions.json data, revisions.md text)
    compare_revisions: Callable[[list[Revision], list[dict[str, Any]], dict[int, str], list[dict[str, Any]]],
                                tuple[dict[str, Any], str]] | None = None
    # (--source or None, progress): where the series' mail comes from (sources.mailsource)
    choose_source: Callable[[str | None, Callable[[str], None]], mailsource.MailChoice] | None = None


@dataclass
class _Planned:
    info: VariantInfo
    tree: Path | None = None
    base: str | None = None
    build_variant: str = ""  # the variants.toml entry to build (user trees: always the unmodified one)
    workloads: list[str] | None = None  # instead of workloads_for() (a user tree's base: the revisions')


def run_pipeline(opts: Options, stages: Stages, progress: Progress) -> int:
    """Run the whole pipeline; returns the exit code (0 only when the verdict holds).

    A failing step still leaves out/<run-id>/ complete with what was learned; the first such
    failure is re-raised after the results are written (the CLI shows it as one line).
    """
    record = RunRecord(run_id=new_run_id(), command=opts.command, revision=opts.revision,
                       source=opts.source)
    run_dir = opts.out_root / record.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    failure: KwbError | None = None
    try:
        failure = _steps(opts, stages, record, run_dir, progress)
        record.status = "failed" if failure else "complete"
        record.error = str(failure) if failure else ""
    except KwbError as exc:
        record.status, record.error, failure = "failed", str(exc), exc
    except KeyboardInterrupt:
        record.status, record.error = "interrupted", "interrupted"
        raise
    finally:
        data = finalize(record, run_dir, opts.out_root)
        progress.note(f"results: {run_dir} (report.md, report.html, junit.xml, results.json)")
    if failure is not None:
        kind = UserError if isinstance(failure, UserError) else InfraError
        raise kind(f"{failure} (partial results in {run_dir})")
    verdict = data["verdict"]
    if opts.matrix is not None:
        return _shard_exit(verdict, progress)
    progress.note("verdict: PASS" if verdict["ok"] else "verdict: FAIL: " + "; ".join(verdict["reasons"]))
    for item in verdict.get("not_checked") or []:
        progress.note(f"not checked: {item}")
    return int(verdict["exit_code"])


def _shard_exit(verdict: dict[str, Any], progress: Progress) -> int:
    """A CI shard's exit code: its own jobs only. A shard holds part of the matrix, so "no baseline
    variant in this run" is the merge's to judge (it sees every shard), not a failure of this one."""
    own = [r for r in verdict["reasons"] if not _MISSING_KIND.fullmatch(r)]
    for item in verdict.get("not_checked") or []:
        progress.note(f"not checked: {item}")
    if not own:
        progress.note("shard verdict: PASS (series against baseline is judged by the merge of all shards)")
        return 0
    progress.note("shard verdict: FAIL: " + "; ".join(own))
    return int(verdict["exit_code"]) or 1


@contextlib.contextmanager
def _step(record: RunRecord, progress: Progress, name: str) -> Iterator[None]:
    start = time.monotonic()
    entry: dict[str, Any] = {"name": name, "status": "ok", "seconds": 0.0}
    record.steps.append(entry)
    try:
        with progress.step(name):
            yield
    except KwbError as exc:
        entry["status"], entry["error"] = "failed", str(exc)
        raise
    finally:
        entry["seconds"] = round(time.monotonic() - start, 2)
        record.timings["steps"][name] = entry["seconds"]


def _steps(opts: Options, stages: Stages, record: RunRecord, run_dir: Path,
           progress: Progress) -> KwbError | None:
    _check_options(opts)
    family = _series_step(opts, stages, record, progress)
    plan = _plan(opts, stages, record, family, progress)
    record.variant_infos = [p.info for p in plan]
    runnable: list[_Planned] = []
    for planned in plan:
        if planned.info.equivalent and not opts.workloads:
            # Documented as equivalent: no check can flag it, so building and booting it proves nothing.
            record.steps.append({"name": f"variant {planned.info.name}", "status": "skipped", "seconds": 0.0})
            progress(f"skipping {planned.info.name}: equivalent mutant ({planned.info.equivalent[:60]}…)")
        else:
            runnable.append(planned)
    first: KwbError | None = None
    with _Prebuilder(stages, progress) as prebuild:
        for i, planned in enumerate(runnable):
            following = runnable[i + 1] if i + 1 < len(runnable) else None
            overlap = following if following is not None and _overlappable(planned, following) else None
            progress.note(f"[{i + 1}/{len(runnable)}] variant {planned.info.name}"
                          + _variants_eta(record, runnable[:i], len(runnable) - i))
            try:
                step = f"variant {planned.info.name}"
                with _step(record, progress, step):
                    _run_one(opts, stages, record, run_dir, planned, progress, prebuild, overlap)
                record.timings["variants"][planned.info.name] = record.timings["steps"][step]
            except KwbError as exc:
                # One variant failing (build broke, guest never booted) must not cost the others.
                record.add_jobs([_error_job(planned.info.name, str(exc))])
                first = first or exc
    if opts.tree is not None and stages.compare_revisions is not None:
        _compare_revisions(opts, stages, family, record, run_dir, progress)
    return first


def _compare_revisions(opts: Options, stages: Stages, family: Family | None, record: RunRecord, run_dir: Path,
                       progress: Progress) -> None:
    """revisions.json / revisions.md: each revision against the base, and what changed between them."""
    assert stages.compare_revisions is not None
    assert family is not None, "a user tree's run reads the series' mail (_series_step)"
    versions = opts.revisions or ([opts.revision] if opts.revision is not None else [])
    try:
        data, text = stages.compare_revisions([family.revision(v) for v in versions], record.jobs,
                                              {v: _revision_variant(opts, v) for v in versions},
                                              record.concerns)
    except KwbError as exc:  # the comparison is a report: its failure must not hide the run's results
        progress(f"revision comparison not written: {exc}")
        return
    atomic.write_json(run_dir / "revisions.json", data)
    atomic.write_text(run_dir / "revisions.md", text)
    for pair in data["pairs"]:
        progress(f"{pair['old']} → {pair['new']}: {len(pair['patches'])} patch(es) changed, "
                 f"{len(pair['checks'])} check(s) changed outcome")


def _revision_variant(opts: Options, version: int) -> str:
    """The variant name a revision runs under (one revision: "series", as before)."""
    return f"series-v{version}" if opts.revisions else "series"


def _series_step(opts: Options, stages: Stages, record: RunRecord, progress: Progress) -> Family | None:
    """The static concern step; None (step skipped, the verdict says what was not checked) when there
    is no mail to read. The default tree's kernel part needs no mail, a user's tree does (the revision)."""
    choose = stages.choose_source or mailsource.resolve
    with _step(record, progress, "mail source"):
        choice = choose(opts.source, progress)
    record.mail = choice.to_dict()
    if choice.spec is None:
        if opts.tree is not None:
            raise UserError(f"--tree needs the series' mail to apply v{opts.revision}: {choice.reason}")
        record.steps.append({"name": "series", "status": "skipped", "seconds": 0.0, "reason": choice.reason})
        record.not_checked.append(f"review concerns (static, per revision): {choice.reason}")
        progress.note(f"series: {choice.reason}")
        return None
    record.source = choice.spec
    with _step(record, progress, "series"):
        family = stages.load_family(choice.spec)
        statuses = stages.concern_statuses(family)
        wanted = (set(profile.active().concern_revisions) | ({opts.revision} if opts.revision else set())
                  | set(opts.revisions or ()))
        record.concerns = [s for s in statuses if int(s["version"]) in wanted]
    return family


def _variants_eta(record: RunRecord, finished: list[_Planned], left: int) -> str:
    """``, ETA 1h10m`` for the variants left, from the mean time of those done (nothing before one is)."""
    done = record.timings["variants"]
    times = [done[p.info.name] for p in finished if p.info.name in done]
    if not times:
        return ""
    return f" (ETA {fmt_seconds(sum(times) / len(times) * left)} for the {left} left)"


def _overlappable(running: _Planned, following: _Planned) -> bool:
    """Build ``following`` while ``running`` runs? Only between mutants: their checks are pass/fail with
    generous timeouts, while the series/baseline numbers must come from a quiet host."""
    return running.info.kind == "mutant" and following.info.kind == "mutant"


class _Prebuilder:
    """Builds the next variant's kernel in a background thread while the current variant's guest runs
    (TCG leaves host CPU idle while the guest waits on I/O). One build at a time; results are handed to
    the variant's own build step, errors included."""

    def __init__(self, stages: Stages, progress: Progress) -> None:
        self.stages, self.progress = stages, progress
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kwb-prebuild")
        self.futures: dict[str, Future[tuple[KernelBuild, float]]] = {}

    def __enter__(self) -> _Prebuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        # An interrupted run must not leave a build going: drop queued ones, wait for the running one.
        for fut in self.futures.values():
            fut.cancel()
        self.pool.shutdown(wait=True)

    def start(self, planned: _Planned) -> None:
        """Queue ``planned``'s kernel build."""
        name = planned.info.name
        if name in self.futures:
            return

        def build() -> tuple[KernelBuild, float]:
            start = time.monotonic()
            kernel = self.stages.build_kernel(planned.build_variant, tree=planned.tree, base=planned.base,
                                              progress=lambda line: self.progress(f"prebuild {name}: {line}"))
            return kernel, round(time.monotonic() - start, 2)

        self.progress(f"prebuilding {name}'s kernel while the current guest runs")
        self.futures[name] = self.pool.submit(build)

    def take(self, name: str) -> tuple[KernelBuild, float] | None:
        """The prebuilt (kernel, build seconds) of ``name`` (waits for it), or None if none was started;
        a failed prebuild raises its error here, in the variant's own step."""
        fut = self.futures.pop(name, None)
        return None if fut is None else fut.result()


def _check_options(opts: Options) -> None:
    # Usage errors first, before minutes of parsing and building.
    if opts.revisions is not None and opts.revision is not None:
        raise UserError("--revision and --revisions are exclusive (use --revisions N,M,… for several)")
    if opts.revisions is not None and opts.tree is None:
        raise UserError("--revisions needs --tree (the default tree carries the series already)")
    if opts.revisions is not None and len(set(opts.revisions)) != len(opts.revisions):
        raise UserError(f"--revisions names a revision twice: {opts.revisions}")
    if opts.tree is not None and opts.revision is None and not opts.revisions:
        raise UserError("--tree needs --revision N (which revision of the series to apply)")
    if opts.tree is None and opts.base is not None:
        raise UserError("--base needs --tree")
    if opts.tree is not None and opts.variants:
        raise UserError("--variants is for the default tree; a user tree runs the revision and its base")
    if not opts.filesystems:
        raise UserError("no filesystem selected (--fs)")


def _plan(opts: Options, stages: Stages, record: RunRecord, family: Family | None,
          progress: Progress) -> list[_Planned]:
    if opts.tree is not None:
        return _plan_user_tree(opts, stages, record, family, progress)
    catalogue = stages.variant_catalogue()
    known = {v.name: v for v in catalogue}
    names = list(opts.matrix) if opts.matrix else opts.variants
    if names:
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UserError(f"unknown variant {', '.join(unknown)} (known: {', '.join(known)})")
        chosen = [known[n] for n in names]
    else:
        chosen = [v for v in catalogue if (v.kind != "coverage" or opts.coverage) and v.kind != "selftest"]
    return [_Planned(v, None, None, v.name) for v in chosen]


def _plan_user_tree(opts: Options, stages: Stages, record: RunRecord, family: Family | None,
                    progress: Progress) -> list[_Planned]:
    """Each revision applied to the user's base as a variant, then the base itself as the baseline.

    With several revisions one that does not apply is an error job of its own variant (its conflict
    report as the reason) and the others still run; with one, that stops the run as before.
    """
    assert opts.tree is not None
    assert family is not None, "a user tree's run reads the series' mail (_series_step)"
    single = [opts.revision] if opts.revision is not None else []
    versions = list(opts.revisions) if opts.revisions else single
    planned: list[_Planned] = []
    for version in versions:
        name = _revision_variant(opts, version)
        try:
            with _step(record, progress, f"apply v{version}"):
                ref = stages.apply_revision(opts.tree, opts.base, family.revision(version), progress)
        except UserError as exc:
            if not opts.revisions:
                raise
            job = _error_job(name, f"v{version} does not apply: {exc}")
            # the structured conflict report, when the patch failed to apply (not another usage error)
            job["evidence"] = {"apply": exc.details if isinstance(exc, ApplyError) else {}}
            record.add_jobs([job])
            continue
        planned.append(_Planned(VariantInfo(name, "series"), opts.tree, ref, "series"))
    record.kernel.update({"tree": str(opts.tree), "base": opts.base, "revision": opts.revision})
    if opts.revisions:
        record.kernel["revisions"] = list(opts.revisions)
    # On a user's tree the baseline is the base itself (mainline before the series), running the same
    # checks as the revisions so each failure can be told apart: introduced, or on the base too.
    same = list(opts.workloads or workloads_for(VariantInfo("series", "series"), stages.workload_catalogue()))
    planned.append(_Planned(VariantInfo("baseline", "baseline"), opts.tree, opts.base, "series", same))
    return planned


def _run_one(opts: Options, stages: Stages, record: RunRecord, run_dir: Path, planned: _Planned,
             progress: Progress, prebuild: _Prebuilder | None = None,
             following: _Planned | None = None) -> None:
    name = planned.info.name
    boot = _BootClock(progress)
    built: list[KernelBuild] = []

    def build(progress: Callable[[str], None]) -> KernelBuild:
        if built:  # the reuse check below already built it
            return built[0]
        start = time.monotonic()
        ready = prebuild.take(name) if prebuild is not None else None
        if ready is not None:
            kernel, seconds = ready
            record.timings.setdefault("build_waited", {})[name] = round(time.monotonic() - start, 2)
        else:
            kernel = stages.build_kernel(planned.build_variant, tree=planned.tree, base=planned.base,
                                         progress=progress)
            seconds = round(time.monotonic() - start, 2)
        if prebuild is not None and following is not None:
            prebuild.start(following)  # now that this kernel is built: the next one builds as this runs
        record.timings["build"][name] = seconds
        record.kernel["variants"][name] = _kernel_info(kernel, record.timings["build"][name])
        if planned.info.kind == "series":
            record.kernel["release"] = kernel.release
            record.kernel["config"] = str(kernel.config) or None
        built.append(kernel)
        return kernel

    fss = list((opts.matrix or {}).get(name, opts.filesystems))
    workloads = list(opts.workloads or planned.workloads or workloads_for(planned.info,
                                                                          stages.workload_catalogue()))
    key = _reuse_key(stages, planned, build, fss, workloads, progress)
    if key is not None and not opts.fresh_baseline and _take_kept(record, run_dir, name, key, progress):
        return
    # A request the workloads stage would refuse (unknown filesystem or workload) fails before the build.
    plan_specs(name, fss, workloads, stages.workload_catalogue(), planned.info.kind)
    kernel = build(boot)
    if planned.info.kind == "coverage":
        ran, record.coverage = stages.run_coverage(name, kernel, fss, workloads, run_dir, boot)
    else:
        try:
            ran = stages.run_variant(name, kernel, fss, workloads, run_dir, boot, kind=planned.info.kind,
                                     stop_on_flag=planned.info.kind == "mutant")
        except BaseException:
            # Interrupted or failed part-way: the jobs that ended are on disk; without them results.json
            # said "no jobs ran" for a variant that had run 22 (seen on a SIGTERM during a long run).
            record.add_jobs(jobs_on_disk(run_dir / name, name))
            raise
    jobs = ran.jobs
    for job in jobs:
        job.variant = job.variant or name
    record.add_jobs([j.to_dict() for j in jobs])
    if boot.seconds is not None:
        record.timings["boot"][name] = boot.seconds
    record.accel = ran.accel or record.accel
    if ran.guest_root:
        record.guest_roots[name] = ran.guest_root
    if key is not None and reuse.store(name, key, record.run_id, record.started, record.accel,
                                       [j.to_dict() for j in jobs], run_dir / name):
        progress(f"{name}: results kept for later runs of the same kernel (key {key})")


def jobs_on_disk(variant_dir: Path, variant: str) -> list[dict[str, Any]]:
    """The job results a variant's runner wrote so far (``<fs>/<workload>/result.json``), in file order;
    unreadable ones are left out (a job cut off while its result was being written has none)."""
    jobs: list[dict[str, Any]] = []
    for path in sorted(variant_dir.glob("*/*/result.json")):
        try:
            job = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(job, dict) and {"fs", "workload", "status"} <= job.keys():
            job["variant"] = job.get("variant") or variant
            jobs.append(job)
    return jobs


def _reuse_key(stages: Stages, planned: _Planned, build: Callable[[Callable[[str], None]], KernelBuild],
               fss: list[str], workloads: list[str], progress: Progress) -> str | None:
    """The key a baseline's results are kept under (None: this variant is never kept). A fresh baseline
    has a key too: it is measured, and its results replace the kept ones."""
    if planned.info.kind != "baseline" or stages.reuse_key is None:
        return None
    return stages.reuse_key(build(progress), fss, workloads)


def _take_kept(record: RunRecord, run_dir: Path, name: str, key: str, progress: Progress) -> bool:
    """Use the kept results of ``name`` under ``key``, if there are any."""
    kept = reuse.lookup(name, key)
    if kept is None:
        return False
    record.add_jobs(reuse.restore(kept, run_dir))
    record.reused[name] = kept.info()
    record.accel = kept.accel
    progress(f"{name}: reusing the results of run {kept.run_id} (measured {kept.measured}): same kernel "
             "commit, .config, workloads and accelerator; --fresh-baseline measures again")
    return True


def workloads_for(info: VariantInfo, catalogue: dict[str, WorkloadSpec]) -> list[str]:
    """What a variant runs when the user named no workloads.

    series/coverage: the profile's series workloads (else the catalogue's default set) plus its extras;
    baseline: the profile's baseline workloads; a mutant: the checks variants.toml expects to flag it
    (fio only when nothing lighter is listed); an equivalent mutant (no check can flag it): nothing.
    """
    prof = profile.active()
    if info.kind == "baseline":
        return [w for w in prof.baseline_workloads if w in catalogue]
    if info.kind == "mutant":
        if info.equivalent:
            return []
        listed = [w for w in info.flagged_by if w in catalogue]  # "health" is checked on every job
        light = [w for w in listed if catalogue[w].kind != "fio"]
        return light or listed or [n for n, s in catalogue.items() if s.default and s.kind != "fio"]
    base = list(prof.series_workloads) if prof.series_workloads is not None else [
        n for n, s in catalogue.items() if s.default]
    return [w for w in dict.fromkeys(base + list(prof.series_extra)) if w in catalogue]


class _BootClock:
    """A progress callback that passes lines on and times the first boot (boot line → next line)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.started: float | None = None
        self.seconds: float | None = None

    def __call__(self, line: str) -> None:
        if self.started is not None and self.seconds is None:
            self.seconds = round(time.monotonic() - self.started, 2)
        if self.started is None and "booting guest" in line:
            self.started = time.monotonic()
        self.progress(line)

    def live(self, text: str) -> None:
        """The build's updating line, passed on (harness.core.progress.Progress.live)."""
        self.progress.live(text)

    def end_live(self, text: str = "") -> None:
        """End the updating line."""
        self.progress.end_live(text)


def _kernel_info(kernel: KernelBuild, seconds: float) -> dict[str, Any]:
    bzimage = str(kernel.bzimage) or None
    release = kernel.release
    return {"commit": kernel.commit, "release": release, "config": str(kernel.config) or None,
            "bzimage": bzimage, "build_seconds": seconds,
            # Which kprobe roles this kernel can count, from its System.map (era names), before any boot.
            "probe_roles": probe_roles(bzimage, release)}


def _error_job(variant: str, reason: str) -> dict[str, Any]:
    return JobResult(workload="build-boot", fs="-", variant=variant, status=JobStatus.ERROR,
                     reason=reason).to_dict()
