"""Run a variant's workloads: build, one guest boot, per-fs mkfs/mount, each job with health checks.

Every job ends as a JobResult with its own directory (command, stdout, stderr, exitcode, reproduce.sh,
result.json, dmesg, console.log); a panic or hang costs that job (crash/timeout) and a guest reboot, never
the run. Results are written as the run goes and again in ``finally``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from harness.core.atomic import write_json, write_text
from harness.core.errors import KwbError, UserError
from harness.core.paths import cache_dir
from harness.kernel.build import KernelBuild
from harness.kernel.eras.resolve import mkfs_options
from harness.kernel.variants import get_variant
from harness.vm.disks import FILESYSTEMS as DISK_FILESYSTEMS
from harness.vm.disks import guest_device, make_disk
from harness.vm.guest import Guest, GuestConfig
from harness.workloads import kinds, payload, readahead
from harness.workloads.catalogue import FILESYSTEMS, select
from harness.workloads.evidence import Health, HealthMonitor, ScanFn
from harness.workloads.fio import FioParams
from harness.workloads.model import (
    GuestSession,
    JobResult,
    JobStatus,
    ReportsBoot,
    Target,
    VariantRun,
    WorkloadHook,
    WorkloadSpec,
    wedge_of,
    write_job_files,
)
from harness.workloads.templates import TEMPLATE_FILESYSTEMS, template_overlay

__all__ = ["Target", "VariantRun", "run_variant"]

Progress = Callable[[str], None]
GuestFactory = Callable[[Path, list[Path], Path], AbstractContextManager[GuestSession]]


class VariantRunner(Protocol):
    """The shape of :func:`run_variant` that orchestration takes a fake of (coverage, concern repro)."""

    def __call__(self, variant: str, filesystems: list[str], workloads: list[str], out_dir: Path,
                 progress: Progress | None, /, *, kernel: KernelBuild, guest_factory: GuestFactory | None,
                 catalogue: dict[str, WorkloadSpec] | None,
                 on_workload: WorkloadHook | None = None) -> VariantRun: ...

# (fs, disk size MiB, fio data file sizes MiB, overlay path, progress) -> the overlay made on a template
TemplateFn = Callable[[str, int, list[int], Path, Progress], Path]

GUEST_MEMORY_MB = 768        # small on purpose: the fio data file (1 GiB) must not fit in the page cache
DISK_HEADROOM_MB = 1024      # filesystem metadata, probe scratch files, liburing test files
GUEST_BASE = "/tmp/kwb"      # the guest's /tmp is a rw overlay; its root is the host's, read-only
PREPARE_TIMEOUT = 180.0
# TCG boot to SSH takes ~10 s on an idle host and was measured at 114 s with the host at load 13.
GUEST_BOOT_TIMEOUT = 300.0
BOOT_ATTEMPTS = 2            # consecutive failed sessions before the remaining jobs are given up


@dataclass
class _Run:
    variant: str
    variant_kind: str
    out_dir: Path
    specs: list[WorkloadSpec]
    filesystems: list[str]
    disks: list[Path]
    kernel: KernelBuild
    progress: Progress
    guest_factory: GuestFactory
    scan: ScanFn | None
    results: list[JobResult] = field(default_factory=list)
    boots: int = 0
    accel: str = ""
    guest_root: str = ""  # "isolated" or "host": what the guest's / was (vm/rootfs)
    prepared: set[str] = field(default_factory=set)  # filesystems made in this run (host template or guest)
    stop_on_flag: bool = False                        # mutants: the first failing check is enough
    # (fs, workload) -> the command that re-runs one job, for variants `kwb run` cannot name (kwb mutate's)
    reproducer: Callable[[str, str], str] | None = None
    # (fs, workload) -> the part of a job a guest reboot cut short; its evidence["resume"] runs next boot
    resume: dict[tuple[str, str], JobResult] = field(default_factory=dict)
    on_workload: WorkloadHook | None = None  # the caller's hook around every job's workload commands

    @property
    def variant_dir(self) -> Path:
        return self.out_dir / self.variant


def variant_kind(variant: str) -> str:
    """The ``kind`` of a variant in the series profile's variants.toml; UserError for an unknown variant."""
    return get_variant(variant).kind


def default_guest_factory(kernel: Path, disks: list[Path], results_dir: Path) -> Guest:
    """A real guest (harness.vm.guest.Guest) with the disks attached in order (/dev/vda, vdb, ...)."""
    cfg = GuestConfig(kernel=kernel, results_dir=results_dir, disks=disks, memory_mb=GUEST_MEMORY_MB,
                      boot_timeout=GUEST_BOOT_TIMEOUT, root_payload=payload.for_guest())
    return Guest(cfg)


def _make_disks(root: Path, filesystems: list[str], specs: list[WorkloadSpec], templates: TemplateFn,
                progress: Progress) -> tuple[list[Path], set[str]]:
    """One image per filesystem in a directory private to this run, and the filesystems they already hold.

    ext4/xfs/btrfs get a qcow2 overlay on a host-made template (filesystem made, fio's data files laid out);
    when no template can be built, or for the raw block device, a fresh sparse image the guest formats.
    """
    size = max([int(s.params.get("size_mb", 0)) for s in specs] + [256]) + DISK_HEADROOM_MB
    data_mb = sorted({FioParams.from_dict(s.params, s.name).size_mb for s in specs if s.kind == "fio"})
    root.mkdir(parents=True, exist_ok=True)
    disks: list[Path] = []
    ready: set[str] = set()
    for fs in filesystems:
        if fs in TEMPLATE_FILESYSTEMS:
            try:
                disks.append(templates(fs, size, data_mb, root / f"{fs}.qcow2", progress))
                ready.add(fs)
                continue
            except (KwbError, OSError) as exc:
                progress(f"templates: no {fs} template ({exc}); making {fs} in the guest instead")
        disks.append(make_disk(root / f"{fs}.img", size))
    return disks, ready


def _prepare_fs(guest: GuestSession, fs: str, device: str, mkfs: bool,
                extra: tuple[str, ...] = ()) -> tuple[Target | None, str, str]:
    """mkfs (first boot) and mount one filesystem; returns (target, error reason, guest output).

    ``extra``: the kernel era's mkfs options (harness.kernel.eras: features older kernels cannot mount).
    """
    if fs == "bdev":
        scratch = f"{GUEST_BASE}/scratch-bdev"
        res = guest.run(f"mkdir -p {scratch} && test -b {device}", timeout=PREPARE_TIMEOUT)
        if not res.ok:
            return None, f"block device {device} missing in guest", res.stdout + res.stderr
        return Target(fs, device, None, scratch), "", res.stdout
    mnt = f"{GUEST_BASE}/mnt/{fs}"
    mkfs_cmd = " ".join([DISK_FILESYSTEMS[fs][0], *(shlex.quote(o) for o in extra)])
    tool = mkfs_cmd.split()[0]
    steps = [f"mkdir -p {mnt}",
             f"command -v {tool} >/dev/null || {{ echo '{tool} not found in guest' >&2; exit 127; }}"]
    if mkfs:
        steps.append(f"{mkfs_cmd} {device} || {{ echo '{tool} {device} failed' >&2; exit 1; }}")
    steps.append(f"mount -t {fs} {device} {mnt} || {{ echo 'mount -t {fs} {device} failed' >&2; exit 1; }}")
    steps.append(f"mkdir -p {mnt}/kwb-scratch")
    res = guest.run(" && ".join(f"{{ {s}; }}" for s in steps), timeout=PREPARE_TIMEOUT)
    out = res.stdout + res.stderr
    if res.timed_out:
        return None, f"preparing {fs} on {device} timed out", out
    if not res.ok:
        last = res.tail(1).strip() or f"exit {res.returncode}"
        return None, f"{fs}: {last}", out
    return Target(fs, device, mnt, f"{mnt}/kwb-scratch"), "", out


def _reproducer(run: _Run, fs: str, workload: str) -> str:
    if run.reproducer is not None:
        return run.reproducer(fs, workload)
    argv = ["kwb", "run", "--variant", run.variant, "--fs", fs, "--workload", workload,
            "--out", str(run.out_dir.resolve() / "reproduce")]
    return shlex.join(argv)


def _write_job(run: _Run, result: JobResult, job_dir: Path, health_text: str = "") -> None:
    result.reproducer = _reproducer(run, result.fs, result.workload)
    write_text(job_dir / "reproduce.sh", "#!/bin/sh\n# Re-run just this job "
               f"({run.variant} / {result.fs} / {result.workload}).\nexec {result.reproducer}\n")
    (job_dir / "reproduce.sh").chmod(0o755)
    for name in ("command", "stdout", "stderr", "exitcode"):
        if not (job_dir / name).exists():
            write_text(job_dir / name, {"command": result.command, "exitcode": "" if result.exitcode is None
                                        else f"{result.exitcode}\n"}.get(name, ""))
    if health_text:
        write_text(job_dir / "health.txt", health_text)
    write_json(job_dir / "result.json", result.to_dict())


def _summary(run: _Run) -> dict[str, Any]:
    k = run.kernel
    return {"variant": run.variant, "variant_kind": run.variant_kind, "accel": run.accel,
            "guest_root": run.guest_root, "boots": run.boots,
            "kernel": {"release": k.release, "commit": k.commit, "bzimage": str(k.bzimage)},
            "filesystems": run.filesystems, "workloads": [s.name for s in run.specs],
            "jobs": [r.to_dict() for r in run.results]}


def _apply_health(result: JobResult, health: Health, alive: bool) -> None:
    """Kernel findings fail the job (crash for panic/oops/BUG/KASAN); a dead guest is a crash."""
    if health.findings:
        result.findings = health.summaries()
        first = health.findings[0]
        status = JobStatus.CRASH if health.crashed else JobStatus.FAIL
        was = f" (workload: {result.status.value}{': ' + result.reason if result.reason else ''})"
        result.status, result.reason = status, f"kernel {first.kind}: {first.line.strip()}{was}"
    elif not alive and result.status is not JobStatus.TIMEOUT:
        tail = "\n".join(health.console.strip().splitlines()[-5:])
        result.status, result.reason = JobStatus.CRASH, f"guest died during the job; console tail: {tail}"


def _one_job(run: _Run, guest: GuestSession, monitor: HealthMonitor, spec: WorkloadSpec,
             target: Target) -> tuple[JobResult, bool]:
    """Run one job; returns (result, guest needs a reboot)."""
    job_dir = run.variant_dir / target.fs / spec.name
    job_dir.mkdir(parents=True, exist_ok=True)
    first = run.resume.pop((target.fs, spec.name), None)
    run_dir, run_spec = job_dir, spec
    if first is not None:  # the rest of a job a reboot cut short, in a directory of its own
        run_dir = job_dir / f"resumed-boot-{run.boots}"
        run_dir.mkdir(parents=True, exist_ok=True)
        run_spec = replace(spec, params={**spec.params, "tests": list(first.evidence["resume"]),
                                         "exclude": []})
    start = time.monotonic()
    result = JobResult(spec.name, target.fs, run.variant, JobStatus.ERROR, "job did not finish",
                       job_dir=str(job_dir))
    health_text = ""
    try:
        monitor.mark()
        window: readahead.Window | None = None
        try:
            if spec.read_ahead_kb is not None:
                window = readahead.apply(guest, target, spec.read_ahead_kb)
            result = kinds.runner_for(spec.kind)(guest, run_spec, target, run_dir, hook=run.on_workload)
        except KwbError as exc:
            result = JobResult(spec.name, target.fs, run.variant, JobStatus.ERROR, str(exc))
        except Exception as exc:  # a runner bug must cost one job, not the run
            result = JobResult(spec.name, target.fs, run.variant, JobStatus.ERROR,
                               f"workload runner failed: {type(exc).__name__}: {exc}")
        if window is not None:
            result.evidence["read_ahead_kb"] = {"asked": spec.read_ahead_kb, "before": window.before,
                                                "set": window.after}
            _restore_window(result, guest, window)
        result.variant, result.job_dir = run.variant, str(job_dir)
        # TCG timings depend on what else the host runs: keep the host load next to the numbers.
        result.evidence["host_loadavg"] = [round(x, 2) for x in os.getloadavg()]
        result.duration = result.duration or round(time.monotonic() - start, 2)
        _overhead(result, time.monotonic() - start)
        alive = guest.alive()  # QEMU running, no panic, nothing abandoned, and an SSH ping answered
        health = monitor.collect()
        write_text(job_dir / "dmesg", health.dmesg)
        write_text(job_dir / "console.log", health.console)
        health_text = health.excerpt()
        _apply_health(result, health, alive)
        _apply_wedge(result, guest)
        reboot = not alive or result.status in (JobStatus.TIMEOUT, JobStatus.CRASH)
        merge = kinds.resume_merger(spec.kind)
        if first is not None and merge is not None:
            result = merge(first, result)
            result.variant, result.job_dir = run.variant, str(job_dir)
            _overhead(result, result.duration)
        if reboot and merge is not None and result.evidence.get("resume"):
            run.resume[(target.fs, spec.name)] = result
            run.progress(f"{run.variant} {target.fs} {spec.name}: guest reboot; "
                         f"{len(result.evidence['resume'])} tests to run on the next guest")
        return result, reboot
    finally:
        _write_job(run, result, job_dir, health_text)


def _restore_window(result: JobResult, guest: GuestSession, window: readahead.Window) -> None:
    """Put the read-ahead windows back for the next job; a guest that died keeps its reason instead."""
    if not guest.alive():
        return
    try:
        readahead.restore(guest, window)
    except KwbError as exc:
        result.evidence["read_ahead_restore_error"] = str(exc)


def _overhead(result: JobResult, wall: float) -> None:
    """metrics.overhead: the job's wall time minus the workload's own runtime (``metrics.workload_s``,
    when the runner measured it): set-up, data layout, cache drops, process starts, SSH."""
    work = result.metrics.get("workload_s")
    if not isinstance(work, int | float):
        return
    # A job can take no measurable wall time (a fake guest): then it has no overhead either, not no entry.
    wall = max(wall, 0.0)
    work = min(float(work), wall)
    result.metrics["overhead"] = {"wall_s": round(wall, 2), "workload_s": round(work, 2),
                                  "overhead_s": round(wall - work, 2),
                                  "overhead_pct": round(100.0 * (wall - work) / wall, 1) if wall > 0 else 0.0}


def _apply_wedge(result: JobResult, guest: GuestSession) -> None:
    """A guest that wedged (or died) under the job: its report, naming the test, goes into the result."""
    wedge = wedge_of(guest)
    if wedge is None:
        return
    tests = [str(t) for t in result.evidence.get("stopped_by", [])] or [result.workload]
    state = "wedged in the kernel" if wedge.get("alive") else "stopped answering"
    summary = f"guest {state} during {' / '.join(tests)} (detected after {wedge.get('detected_after_s')}s)"
    result.evidence["wedge"] = {**wedge, "test": tests, "summary": summary}
    if result.status is JobStatus.PASS:
        result.status = JobStatus.TIMEOUT
    result.reason = f"{summary}; {result.reason}"


def _error_job(run: _Run, spec: WorkloadSpec, fs: str, reason: str, output: str = "") -> JobResult:
    job_dir = run.variant_dir / fs / spec.name
    job_dir.mkdir(parents=True, exist_ok=True)
    result = JobResult(spec.name, fs, run.variant, JobStatus.ERROR, reason, job_dir=str(job_dir))
    write_job_files(job_dir, f"# not run: {reason}", output, "", None)
    _write_job(run, result, job_dir)
    return result


@contextmanager
def _booted(run: _Run) -> Iterator[GuestSession]:
    run.boots += 1
    results_dir = run.variant_dir / f"guest-{run.boots}"
    results_dir.mkdir(parents=True, exist_ok=True)
    run.progress(f"{run.variant}: booting guest #{run.boots}")
    with run.guest_factory(run.kernel.bzimage, run.disks, results_dir) as guest:
        if isinstance(guest, ReportsBoot):  # a scripted fake may not say; the last guest that did counts
            run.accel = guest.accel or run.accel
            run.guest_root = guest.root_mode or run.guest_root
        yield guest


def _prepare_all(run: _Run, guest: GuestSession) -> dict[str, Target | str]:
    """Per filesystem: a Target, or the reason its jobs can't run."""
    targets: dict[str, Target | str] = {}
    for i, fs in enumerate(run.filesystems):
        extra = _era_mkfs(run.kernel, fs)
        target, why, out = _prepare_fs(guest, fs, guest_device(i), mkfs=fs not in run.prepared, extra=extra)
        if target is None and fs in run.prepared:
            # After a crash the old filesystem (or a host-made template) may not mount; start it afresh.
            run.progress(f"{run.variant}: {fs} did not mount ({why}); making it afresh in the guest")
            target, why, out = _prepare_fs(guest, fs, guest_device(i), mkfs=True, extra=extra)
        write_text(run.variant_dir / fs / "prepare.log", out)
        run.prepared.add(fs)
        targets[fs] = target if target is not None else why
        run.progress(f"{run.variant}: {fs} " + ("ready" if target else f"unusable: {why}"))
    return targets


def _era_mkfs(kernel: KernelBuild, fs: str) -> tuple[str, ...]:
    """The mkfs options the kernel's era asks for (none when its release is unknown or not covered)."""
    release = kernel.release
    try:
        return tuple(mkfs_options(release, fs)) if release else ()
    except UserError:  # a release no era covers: the host's mkfs defaults, as before
        return ()


def _flagged_by(run: _Run) -> JobResult | None:
    """The first job that failed a check (fail/crash/timeout), when the run stops at a flag."""
    if not run.stop_on_flag:
        return None
    flagging = (JobStatus.FAIL, JobStatus.CRASH, JobStatus.TIMEOUT)
    return next((r for r in run.results if r.status in flagging), None)


def _pending(run: _Run) -> list[tuple[str, WorkloadSpec]]:
    return [] if _flagged_by(run) else _remaining(run)


def _remaining(run: _Run) -> list[tuple[str, WorkloadSpec]]:
    done = {(r.fs, r.workload) for r in run.results}
    pairs = [(fs, s) for fs in run.filesystems for s in run.specs]
    if run.stop_on_flag:
        # A mutant: each expected check on every filesystem before the next check — a race that only one
        # filesystem shows (e.g. btrfs) is reached without first running every other check elsewhere.
        pairs = [(fs, s) for s in run.specs for fs in run.filesystems]
    return [(fs, s) for fs, s in pairs if fs in s.filesystems and (fs, s.name) not in done]


def _session(run: _Run) -> bool:
    """One guest boot: run pending jobs until done (True) or the guest needs a reboot (False)."""
    with _booted(run) as guest:
        monitor = HealthMonitor(guest, run.scan)
        targets = _prepare_all(run, guest)
        for fs, spec in _pending(run):
            if _flagged_by(run):  # the list was taken at boot; a flag since then ends the session
                break
            target = targets[fs]
            if isinstance(target, str):
                run.results.append(_error_job(run, spec, fs, f"filesystem unusable: {target}"))
                continue
            result, reboot = _one_job(run, guest, monitor, spec, target)
            if (fs, spec.name) not in run.resume:  # else it goes on after the reboot
                run.results.append(result)
            n, total = len(run.results), len(run.results) + len(_pending(run))
            run.progress(f"[{n}/{total}] {run.variant} {fs} {spec.name}: {result.status.value}"
                         + (f" — {result.reason}" if result.reason else ""))
            write_json(run.variant_dir / "summary.json", _summary(run))
            if reboot:
                return False
        _final_health(run, guest, monitor)
        return True


def _final_health(run: _Run, guest: GuestSession, monitor: HealthMonitor) -> None:
    """Unmount everything (xfs/btrfs check on unmount) and scan what the kernel said since the last job."""
    guest.run(f"for m in {GUEST_BASE}/mnt/*; do mountpoint -q $m && umount $m; done; sync",
              timeout=PREPARE_TIMEOUT)
    health = monitor.collect()
    if health.findings:
        job_dir = run.variant_dir / "final-health"
        job_dir.mkdir(parents=True, exist_ok=True)
        result = JobResult("final-health", "all", run.variant, JobStatus.FAIL, "", job_dir=str(job_dir))
        _apply_health(result, health, True)
        write_text(job_dir / "dmesg", health.dmesg)
        write_job_files(job_dir, "dmesg -c (after unmounting every filesystem)", health.dmesg, "", 0)
        _write_job(run, result, job_dir, health.excerpt())
        run.results.append(result)


def plan_specs(variant: str, filesystems: list[str], workloads: list[str],
               catalogue: dict[str, WorkloadSpec] | None = None,
               kind: str | None = None) -> tuple[str, list[WorkloadSpec]]:
    """(the variant's kind, the specs it runs, each knowing that kind); UserError for an unknown filesystem,
    variant or workload. Callers check a request with it before they spend minutes building the kernel."""
    unknown = [fs for fs in filesystems if fs not in FILESYSTEMS]
    if unknown:
        raise UserError(f"unknown filesystem {', '.join(unknown)} (known: {', '.join(FILESYSTEMS)})")
    kind = kind or variant_kind(variant)
    return kind, [replace(s, variant_kind=kind) for s in select(workloads or None, catalogue)]


def run_variant(variant: str, filesystems: list[str], workloads: list[str], out_dir: Path,
                progress: Progress | None = None, *, kernel: KernelBuild,
                guest_factory: GuestFactory | None = None, scan: ScanFn | None = None,
                catalogue: dict[str, WorkloadSpec] | None = None, max_boots: int = 0,
                stop_on_flag: bool = False, templates: TemplateFn | None = None,
                kind: str | None = None,
                reproducer: Callable[[str, str], str] | None = None,
                on_workload: WorkloadHook | None = None) -> VariantRun:
    """Boot ``kernel`` (built for ``variant``) once (re-boot after a crash/hang), run the workloads on each
    filesystem; returns the jobs with the accelerator, guest root and number of boots.

    ``guest_factory``, ``scan``, ``catalogue`` and ``templates`` (the host-made filesystem images,
    :mod:`harness.workloads.templates`) are for tests (fakes); ``max_boots`` bounds
    re-boots (default: one more than the number of jobs). ``stop_on_flag`` (mutants) ends the run at the
    first job that fails a check: the rest are recorded as skipped, naming the job that flagged it.
    ``kind`` is the variant's kind when it is not in variants.toml (kwb mutate's generated mutants);
    ``reproducer`` (fs, workload) gives their jobs' reproduce.sh command when ``kwb run`` cannot name them.
    ``on_workload`` is told, around each guest command that runs a job's workload, which job, target and
    program it is (:class:`harness.workloads.model.WorkloadCommand`), and may run commands of its own then.
    """
    say = progress or (lambda _msg: None)
    kind, specs = plan_specs(variant, filesystems, workloads, catalogue, kind)
    fss = [fs for fs in filesystems if any(fs in s.filesystems for s in specs)]
    # Private to this run (concurrent runs of the same variant must not share images); removed at the end.
    disk_dir = cache_dir() / "disks" / f"{variant}-{os.getpid()}-{time.time_ns()}"
    disks, ready = _make_disks(disk_dir, fss, specs, templates or template_overlay, say)
    run = _Run(variant, kind, out_dir, specs, fss, disks, kernel, say,
               guest_factory or default_guest_factory, scan, prepared=ready, stop_on_flag=stop_on_flag,
               reproducer=reproducer, on_workload=on_workload)
    limit = max_boots or len(_pending(run)) + 1
    try:
        _drive(run, limit)
        _skip_after_flag(run)
    finally:
        run.results += run.resume.values()  # parts still waiting for a guest (interrupted run)
        run.resume.clear()
        write_json(run.variant_dir / "summary.json", _summary(run))
        shutil.rmtree(disk_dir, ignore_errors=True)
    return VariantRun(run.results, accel=run.accel, guest_root=run.guest_root, boots=run.boots)


def _skip_after_flag(run: _Run) -> None:
    flag = _flagged_by(run)
    if flag is None:
        return
    for fs, spec in _remaining(run):
        run.results.append(JobResult(spec.name, fs, run.variant, JobStatus.SKIP,
                                     f"not run: already flagged by {flag.workload} on {flag.fs}"))



def _partial_or_error(run: _Run, spec: WorkloadSpec, fs: str, reason: str) -> JobResult:
    """What a job gets when no further guest comes: its part run before the last reboot, else an error."""
    partial = run.resume.pop((fs, spec.name), None)
    return partial if partial is not None else _error_job(run, spec, fs, reason)


def _drive(run: _Run, limit: int) -> None:
    failures = 0
    while _pending(run):
        if run.boots >= limit:
            for fs, spec in _pending(run):
                why = f"not run: guest re-booted {run.boots} times"
                run.results.append(_partial_or_error(run, spec, fs, why))
            return
        try:
            if _session(run):
                return
            failures = 0
        except KwbError as exc:
            # The guest did not boot (or died while being prepared): try once more, then give up.
            failures += 1
            run.progress(f"{run.variant}: guest session failed ({failures}/{BOOT_ATTEMPTS}): {exc}")
            if failures >= BOOT_ATTEMPTS:
                for fs, spec in _pending(run):
                    run.results.append(_partial_or_error(run, spec, fs, f"guest unavailable: {exc}"))
                return
