"""Review-concern probes: small C programs (``probes/probe-*.c``) built on the host, run in the guest.

Each probe is tied to concern ids in the series profile's ``concerns.toml``. It prints a last line
``KWB-RESULT {json}`` (probe, ok, skip, reason, counters) and exits 0 pass, 1 check failed, 77 skip,
2 could not set itself up. Probes carry their own alarm() watchdog; the guest command has an outer
timeout as well, so a hang is a failed (or timed-out) job, never a stuck run. While a probe runs, the
path markers of workloads.evidence (plus per-probe extra functions) are counted with kprobes, best effort:
a kernel that can't probe a function says why in the job's evidence.

Binaries go to ``cache_dir()/probes/<hash>/``, where the hash covers the sources, the compiler flags and
the liburing header, so an unchanged tree never recompiles. The guest sees the host's root read-only,
so the same path works there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core import profile
from harness.core.atomic import write_json
from harness.core.errors import InfraError, UserError
from harness.core.paths import cache_dir
from harness.core.run import run
from harness.vm.markers import Marker, line, parse
from harness.workloads import evidence, model
from harness.workloads.model import GuestSession, JobResult, JobStatus, Target, WorkloadSpec, write_job_files

SOURCE_DIR = Path(__file__).resolve().parent / "probes"
COMMON_HEADER = "probe_common.h"
CC = "gcc"
CFLAGS = ("-O2", "-Wall", "-Werror")
LIBS = ("-luring", "-lpthread")
LIBURING_HEADER = Path("/usr/include/liburing.h")
BUILD_TIMEOUT = 180.0
EXIT_PASS, EXIT_FAIL, EXIT_SETUP, EXIT_SKIP = 0, 1, 2, 77
# The probe's own watchdog fires this long before the guest command's timeout, so a hang is reported
# by the probe (with its counters) rather than by the outer kill.
WATCHDOG_MARGIN = 20.0
INT_PARAMS = ("size_mb", "iterations", "threads", "seconds", "probe_timeout")
BOOL_PARAMS = ("self_test_fail", "kprobes", "fadvise_random")
KNOWN_PARAMS = (*INT_PARAMS, *BOOL_PARAMS, "probe", "phase", "extra_kprobes")


def extra_kprobes(probe: str) -> tuple[str, ...]:
    """Functions worth counting for ``probe`` beyond harness.workloads.evidence's roles (the series profile's
    ``[kprobes]``). A function the kernel can't probe is recorded with the reason, never dropped."""
    return profile.active().kprobes.get(probe, ())


def available() -> list[str]:
    """Names of the probes in the source tree (``probe-*.c`` without the suffix)."""
    return sorted(p.stem for p in SOURCE_DIR.glob("probe-*.c"))


def _source(name: str) -> Path:
    src = SOURCE_DIR / f"{name}.c"
    if not src.is_file():
        raise UserError(f"unknown probe {name!r} (known: {', '.join(available())})")
    return src


def build_hash() -> str:
    """Hash of everything a probe binary depends on: sources, header, flags, the liburing header."""
    h = hashlib.sha256()
    h.update(" ".join((CC, *CFLAGS, *LIBS)).encode())
    files = [*sorted(SOURCE_DIR.glob("*.c")), SOURCE_DIR / COMMON_HEADER]
    if LIBURING_HEADER.is_file():
        files.append(LIBURING_HEADER)
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


# The hash a process first computed, per source directory: a run builds its probes once. A source edited
# while a run goes on must not move the binaries away from the guest's payload image, which holds the
# ones built at boot (seen: an edit mid-run made every later probe "not runnable in the guest").
_RUN_HASHES: dict[Path, str] = {}


def build_dir() -> Path:
    """Where this run's probe binaries live (the sources' hash when the run first asked)."""
    if SOURCE_DIR not in _RUN_HASHES:
        _RUN_HASHES[SOURCE_DIR] = build_hash()
    return cache_dir() / "probes" / _RUN_HASHES[SOURCE_DIR]


def build_probe(name: str, *, timeout: float = BUILD_TIMEOUT) -> Path:
    """Compile probe ``name`` (skipped when the binary for these sources exists); returns its path.

    InfraError (one line, naming the probe and the compiler's first error) when compilation fails.
    """
    src = _source(name)
    out_dir = build_dir()
    binary = out_dir / name
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{name}.{os.getpid()}.tmp"
    log = out_dir / f"{name}.build.log"
    log.unlink(missing_ok=True)
    res = run([CC, *CFLAGS, "-I", str(SOURCE_DIR), "-o", str(tmp), str(src), *LIBS],
              timeout=timeout, log=log)
    if not res.ok:
        tmp.unlink(missing_ok=True)
        why = "timed out" if res.timed_out else _first_error(res.stderr) or f"exit {res.returncode}"
        raise InfraError(f"building probe {name} failed: {why} (log: {log})")
    os.replace(tmp, binary)  # atomic: a concurrent build never sees half a binary
    return binary


def _first_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln]
    return (errors or lines or [""])[0]


def build_all() -> dict[str, Path]:
    """Build every probe; returns name → binary."""
    return {name: build_probe(name) for name in available()}


@dataclass
class ProbeParams:
    """The ``[params]`` table of a probe workload (all optional)."""

    probe: str = ""                 # binary name when it differs from the workload's name
    size_mb: int | None = None
    iterations: int | None = None
    threads: int | None = None
    seconds: int | None = None
    probe_timeout: int | None = None
    self_test_fail: bool = False    # run against a deliberately wrong expectation (must fail)
    phase: str = ""                 # probes with phases: run only this one
    kprobes: bool = True            # count path markers (harness.workloads.evidence) while the probe runs
    extra_kprobes: tuple[str, ...] = ()
    fadvise_random: bool = False    # POSIX_FADV_RANDOM on the probe's file (the read-ahead dimension)

    @classmethod
    def from_dict(cls, params: dict[str, Any], where: str = "probe params") -> ProbeParams:
        """Validate ``params``; UserError names the field."""
        for key, value in params.items():
            if key not in KNOWN_PARAMS:
                raise UserError(f"{where}: unknown field 'params.{key}' (known: {', '.join(KNOWN_PARAMS)})")
            if key in INT_PARAMS and (type(value) is not int or value < 0):
                raise UserError(f"{where}: field 'params.{key}' must be a non-negative integer, "
                                f"got {value!r}")
            if key == "probe" and not isinstance(value, str):
                raise UserError(f"{where}: field 'params.probe' must be a string")
            if key in BOOL_PARAMS and not isinstance(value, bool):
                raise UserError(f"{where}: field 'params.{key}' must be true or false")
            if key == "phase" and not isinstance(value, str):
                raise UserError(f"{where}: field 'params.phase' must be a string")
            if key == "extra_kprobes" and not (isinstance(value, list)
                                               and all(isinstance(v, str) for v in value)):
                raise UserError(f"{where}: field 'params.extra_kprobes' must be a list of function names")
        fields: dict[str, Any] = {k: tuple(v) if k == "extra_kprobes" else v for k, v in params.items()}
        return cls(**fields)


def validate_params(params: dict[str, Any], where: str) -> None:
    """Catalogue hook: reject bad probe params (and unknown probe names) before anything boots."""
    p = ProbeParams.from_dict(params, where)
    if p.probe:
        _source(p.probe)


def probe_name(spec: WorkloadSpec, p: ProbeParams) -> str:
    """The probe binary a workload runs: ``params.probe`` or the workload's own name."""
    return p.probe or spec.name


def watchdog_seconds(spec_timeout: float, p: ProbeParams) -> int:
    """The probe's internal alarm: inside the outer timeout, never below 5 s."""
    inner = max(5, int(spec_timeout - WATCHDOG_MARGIN))
    return min(inner, p.probe_timeout) if p.probe_timeout else inner


def probe_argv(binary: Path, target: Target | None, p: ProbeParams, watchdog: int,
               scratch: str | None = None) -> list[str]:
    """The probe's command line: the raw device for bdev, else a scratch dir on the filesystem."""
    argv = [str(binary), "--timeout", str(watchdog)]
    if target is not None and target.mount is None:
        argv += ["--file", target.device]
    else:
        argv += ["--dir", scratch or (target.scratch if target else ".")]
    for key in ("size_mb", "iterations", "threads", "seconds"):
        value = getattr(p, key)
        if value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    if p.phase:
        argv += ["--phase", p.phase]
    if p.self_test_fail:
        argv.append("--self-test-fail")
    if p.fadvise_random:
        argv.append("--fadvise-random")
    return argv


@dataclass
class ProbeOutcome:
    """What one probe run said, mapped onto a job status."""

    status: JobStatus
    reason: str
    counters: dict[str, Any]
    result: dict[str, Any] | None


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The JSON of the last ``KWB-RESULT`` line, or None when there is none (or it is not JSON)."""
    payload = parse(stdout).last(Marker.RESULT)
    if payload is None:
        return None
    try:
        data = json.loads(payload)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def interpret(name: str, returncode: int, timed_out: bool, stdout: str, timeout: float) -> ProbeOutcome:
    """Map exit code + KWB-RESULT onto pass/fail/skip/error/timeout, with a one-line reason."""
    result = parse_result(stdout)
    counters = dict(result.get("counters", {})) if result else {}
    said = str(result.get("reason", "")) if result else ""
    if timed_out:
        return ProbeOutcome(JobStatus.TIMEOUT, f"{name} hung: killed after {timeout:.0f}s "
                            "(its own watchdog did not fire either)", counters, result)
    if result is None:
        if returncode in (126, 127):
            return ProbeOutcome(JobStatus.ERROR, f"{name} not runnable in the guest (exit {returncode})",
                                counters, None)
        return ProbeOutcome(JobStatus.FAIL, f"{name} exited {returncode} without a {line(Marker.RESULT)} "
                            "line (crashed or killed)", counters, None)
    ok, skip = result.get("ok") is True, result.get("skip") is True
    if returncode == EXIT_PASS and ok:
        return ProbeOutcome(JobStatus.PASS, said, counters, result)
    if returncode == EXIT_SKIP or skip:
        return ProbeOutcome(JobStatus.SKIP, f"{name} skipped: {said}", counters, result)
    if returncode == EXIT_SETUP:
        return ProbeOutcome(JobStatus.ERROR, f"{name} could not set up: {said}", counters, result)
    if returncode == EXIT_FAIL or not ok:
        return ProbeOutcome(JobStatus.FAIL, f"{name}: {said}", counters, result)
    return ProbeOutcome(JobStatus.FAIL, f"{name}: exit {returncode} contradicts ok={ok}: {said}",
                        counters, result)


def _checks(spec: WorkloadSpec, outcome: ProbeOutcome) -> list[dict[str, Any]]:
    checks = []
    for name in spec.checks():
        if name == "probe-ok":
            checks.append({"name": name, "ok": outcome.status is JobStatus.PASS, "reason": outcome.reason})
        else:
            checks.append({"name": name, "ok": False, "reason": f"unknown check {name!r} for kind probe"})
    return checks


class _PathCounters:
    """Best-effort kprobe counters around one probe run; a kernel without kprobes yields reasons."""

    def __init__(self, guest: GuestSession, name: str, p: ProbeParams) -> None:
        self.guest = guest
        self.info: dict[str, Any] = {}
        self.kprobes: evidence.Kprobes | None = None
        if not p.kprobes:
            self.info["kprobes"] = "disabled by params.kprobes"
            return
        extra = list(dict.fromkeys([*extra_kprobes(name), *p.extra_kprobes]))
        try:
            self.probe_set = evidence.discover(guest)
            if not self.probe_set.source:
                self.info["probes"] = self.probe_set.to_dict()
                return
            for fn in extra:
                self.probe_set.points.append(evidence.ProbePoint(_role(fn), fn))
            self.kprobes = evidence.Kprobes(guest, self.probe_set)
            self.kprobes.arm()
        except InfraError as exc:
            self.info["kprobes_error"] = str(exc)
            self.kprobes = None

    def collect(self) -> None:
        """Read the counters into ``info`` and disarm (only when the guest still answers)."""
        if self.kprobes is None:
            return
        try:
            if self.guest.alive():
                hits = {role: h for role, (h, _m) in self.kprobes.read().items()}
                self.info["counts"] = evidence.counts_for(self.probe_set, hits)
        except InfraError as exc:
            self.info["kprobes_error"] = str(exc)
        finally:
            self.info["probes"] = self.probe_set.to_dict()
            if self.guest.alive():
                self.kprobes.disarm()


def _role(function: str) -> str:
    # kprobe event names are C identifiers; compiler clone suffixes (.isra.0) are not
    return "fn_" + "".join(c if c.isalnum() or c == "_" else "_" for c in function)


def _error(spec: WorkloadSpec, target: Target, job_dir: Path, reason: str, command: str,
           start: float) -> JobResult:
    write_job_files(job_dir, command or f"# not run: {reason}", "", reason + "\n", None)
    return JobResult(workload=spec.name, fs=target.fs, variant="", status=JobStatus.ERROR, reason=reason,
                     command=command, duration=round(time.monotonic() - start, 2), job_dir=str(job_dir))


def run_job(guest: GuestSession, spec: WorkloadSpec, target: Target, job_dir: Path,
            hook: model.WorkloadHook | None = None) -> JobResult:
    """Build (if needed) and run one probe in the guest on ``target``; never raises for a probe failure.

    The probe's own command runs inside ``hook`` (told the probe's binary name), after the path counters
    are armed and before they are read."""
    start = time.monotonic()
    job_dir.mkdir(parents=True, exist_ok=True)
    try:
        p = ProbeParams.from_dict(dict(spec.params), f"workload {spec.name}")
        name = probe_name(spec, p)
        binary = build_probe(name)
    except (UserError, InfraError) as exc:
        return _error(spec, target, job_dir, str(exc), "", start)
    argv = probe_argv(binary, target, p, watchdog_seconds(spec.timeout, p))
    command = f"mkdir -p {shlex.quote(target.scratch)} && cd {shlex.quote(target.scratch)} && " \
              + shlex.join(argv)
    path = _PathCounters(guest, name, p)
    try:
        with model.around(hook, guest, model.WorkloadCommand(spec, target, name, command)):
            res = guest.run(command, timeout=spec.timeout)
    finally:
        path.collect()
    outcome = interpret(name, res.returncode, res.timed_out, res.stdout, spec.timeout)
    checks = _checks(spec, outcome)
    status, reason = outcome.status, outcome.reason
    failed = [c for c in checks if not c["ok"]]
    if status is JobStatus.PASS and failed:
        status, reason = JobStatus.FAIL, "; ".join(f"{c['name']} not shown: {c['reason']}" for c in failed)
    write_job_files(job_dir, command, res.stdout, res.stderr, None if res.timed_out else res.returncode)
    if outcome.result is not None:
        write_json(job_dir / "probe-result.json", outcome.result)
    return JobResult(workload=spec.name, fs=target.fs, variant="", status=status, reason=reason,
                     command=command, exitcode=None if res.timed_out else res.returncode,
                     duration=round(time.monotonic() - start, 2), metrics=outcome.counters,
                     evidence={"probe": name, "binary": str(binary), "concerns": list(spec.concerns),
                               "self_test_fail": p.self_test_fail, "checks": checks, **path.info},
                     job_dir=str(job_dir))


def run_on_host(name: str, directory: Path, *, args: list[str] | None = None, timeout: float = 300.0,
                env: dict[str, str] | None = None) -> tuple[ProbeOutcome, int]:
    """Build and run a probe on the host against a scratch file in ``directory`` (tests, bring-up).

    Returns the outcome and the probe's exit code.
    """
    binary = build_probe(name)
    watchdog = max(5, int(timeout - WATCHDOG_MARGIN))
    argv = [str(binary), "--timeout", str(watchdog), "--dir", str(directory), *(args or [])]
    res = run(argv, timeout=timeout, cwd=directory, env=env)
    return interpret(name, res.returncode, res.timed_out, res.stdout, timeout), res.returncode
