"""liburing's own test suite: Debian's source package, built on the host, run test by test in the guest.

Sources come from ``apt-get source liburing`` (a deb-src entry is added by scripts/setup.sh) into
``cache_dir()/liburing-src``; ``./configure && make -C src && make -C test`` builds the ``*.t`` binaries
there once. In the guest each test runs with its own timeout and log and the working directory on the
target filesystem: liburing's tests create their data files in the current directory, and the tests
that take a path argument get the raw device on the ``bdev`` target. ``params.parallel = N`` keeps N
tests running side by side (one guest command for the job), each in its own directory: one test keeps
one vCPU of the TCG guest (one host core) busy, out of two. On the raw device they always run one at a
time. Exit 0 is pass, 77 (or a
"skip" message) skip, a killed test timeout. A failure listed in liburing-known-failures.toml for the
running kernel and filesystem is reported as known, with its reason, and does not fail the job, but
only in the modes the entry names (``fail``: a non-zero exit, ``timeout``: killed by its timeout): any
other outcome of a listed test still fails, and a listed test that passes shows as ``xpass``
(kselftest's XPASS) rather than vanishing among the passes.
"""

from __future__ import annotations

import hashlib
import platform
import re
import shlex
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from harness.core.atomic import write_json, write_text
from harness.core.errors import InfraError, UserError
from harness.core.paths import cache_dir
from harness.core.run import Result, run
from harness.core.tomlfile import load_toml
from harness.vm.markers import Marker, echo, echo_section, parse
from harness.workloads import model
from harness.workloads.model import (
    GuestSession,
    JobResult,
    JobStatus,
    Target,
    WorkloadSpec,
    wedge_of,
    write_job_files,
)

KNOWN_FAILURES = Path(__file__).resolve().parent / "liburing-known-failures.toml"
FETCH_TIMEOUT = 600.0
CONFIGURE_TIMEOUT = 180.0
MAKE_TIMEOUT = 1800.0
# read-before-exit took 31-65 s under TCG on a loaded 2-core host (timerfd-driven, not I/O bound)
PER_TEST_TIMEOUT = 120
MIN_TEST_TIMEOUT = 10
GUEST_SLACK = 30.0          # ssh + process start-up under TCG, on top of the in-guest `timeout`
EXIT_SKIP = 77
TIMEOUT_EXIT = 124          # coreutils timeout(1) after killing the test

# Curated for the pipeline: the buffered read/write paths, cancellation, provided buffers, exit with
# requests in flight, plus a few basics. Each takes seconds on the host.
SUBSET = (
    "read-write", "file-verify", "short-read", "eeed8b54e0df", "submit-reuse", "iopoll", "iopoll-leak",
    "fadvise", "madvise", "io-cancel", "ringbuf-read", "buf-ring", "thread-exit", "read-before-exit",
    "d4ae271dfaae", "fixed-buf-iter", "fpos", "rw_merge_test", "exit-no-cleanup", "across-fork",
    "defer-taskrun", "fsync", "fallocate", "nop", "probe", "link",
)
# SQPOLL tests run one at a time: d4ae271dfaae races its own SQPOLL thread (see the known-failures
# file) and lost that race far more often beside another test on the guest's two vCPUs (~1 s alone).
SOLO_TESTS = frozenset({"d4ae271dfaae"})
# Tests whose first argument is the file (or device) to do I/O on.
PATH_TESTS = frozenset({
    "d4ae271dfaae", "fadvise", "file-verify", "iopoll-leak", "iopoll", "madvise", "read-write",
    "sq-poll-dup", "sq-poll-share", "submit-reuse", "thread-exit",
})
# Built by the Makefile but not tests: helpers other tests exec.
NOT_TESTS = frozenset({"exec-target", "helpers"})
# liburing 2.3 tests that can't run often say so and exit 0 (e.g. iopoll: "File/device/fs doesn't
# support polled IO"); those count as skips, not passes.
SKIP_TEXT = re.compile(r"\bskip(ping|ped)?\b|doesn't support|not supported", re.IGNORECASE)
KNOWN_PARAMS = ("set", "tests", "exclude", "per_test_timeout", "parallel")
# Reason of a test not run because the guest had to be rebooted first: the runner runs it on the next guest.
NOT_RUN_REBOOT = "not run yet: the guest was rebooted after "


# --- host side: sources and build --------------------------------------------------------------------

def source_root() -> Path:
    """Where ``apt-get source liburing`` unpacks."""
    return cache_dir() / "liburing-src"


def _unpacked(root: Path) -> Path | None:
    found = sorted(p.parent.parent for p in root.glob("liburing-*/test/Makefile"))
    return found[-1] if found else None


def fetch_sources(timeout: float = FETCH_TIMEOUT) -> Path:
    """The unpacked Debian liburing source tree (fetched once); InfraError in one line if apt can't."""
    root = source_root()
    have = _unpacked(root)
    if have is not None:
        return have
    root.mkdir(parents=True, exist_ok=True)
    res = run(["apt-get", "source", "--yes", "liburing"], cwd=root, timeout=timeout,
              log=root / "apt-get-source.log")
    tree = _unpacked(root)
    if not res.ok or tree is None:
        why = "timed out" if res.timed_out else (res.tail(1).strip() or f"exit {res.returncode}")
        raise InfraError(f"apt-get source liburing failed: {why} (needs a deb-src entry: run `make setup`)")
    return tree


def _stamp(tree: Path) -> str:
    h = hashlib.sha256(tree.name.encode())
    h.update((tree / "test" / "Makefile").read_bytes())
    return h.hexdigest()[:16]


def build_tests(tree: Path | None = None) -> Path:
    """Build liburing's tests (skipped when already built for this tree); returns the test directory."""
    tree = tree or fetch_sources()
    test_dir = tree / "test"
    stamp_file = test_dir / ".kwb-built"
    if stamp_file.is_file() and stamp_file.read_text().strip() == _stamp(tree) and list_tests(test_dir):
        return test_dir
    log = tree / "kwb-build.log"
    steps: list[tuple[list[str], float]] = [
        (["./configure"], CONFIGURE_TIMEOUT),
        (["make", "-C", "src", "-j2"], MAKE_TIMEOUT),
        # -k: one test that doesn't compile with this toolchain must not cost the others
        (["make", "-C", "test", "-j2", "-k"], MAKE_TIMEOUT),
    ]
    for argv, timeout in steps:
        res = run(argv, cwd=tree, timeout=timeout, log=log)
        if not res.ok and not (argv[-1] == "-k" and list_tests(test_dir)):
            why = "timed out" if res.timed_out else (res.tail(1).strip() or f"exit {res.returncode}")
            raise InfraError(f"building liburing tests failed at `{' '.join(argv)}`: {why} (log: {log})")
    write_text(stamp_file, _stamp(tree) + "\n")
    return test_dir


def list_tests(test_dir: Path) -> list[str]:
    """Names of the built tests (``foo.t`` → ``foo``), helpers excluded."""
    return sorted(p.stem for p in test_dir.glob("*.t") if p.stem not in NOT_TESTS)


# --- known failures ------------------------------------------------------------------------------

# How a listed test is expected to go wrong; any other outcome is judged as if it were not listed.
FAILURE_MODES = ("fail", "timeout")


@dataclass(frozen=True)
class KnownFailure:
    """A test expected to fail on some kernels (and filesystems), in the named modes, and why."""

    test: str
    kernels: tuple[str, ...]
    filesystems: tuple[str, ...]
    reason: str
    modes: tuple[str, ...] = FAILURE_MODES

    def matches(self, test: str, release: str, fs: str) -> bool:
        """True for this test on a kernel whose release starts with one of ``kernels`` (``*`` = any)."""
        if test != self.test or (self.filesystems and fs not in self.filesystems):
            return False
        return any(k == "*" or release == k or release.startswith(k + ".") or release.startswith(k + "-")
                   for k in self.kernels)


def load_known_failures(path: Path | None = None) -> list[KnownFailure]:
    """Parse the known-failures TOML; UserError naming the file and entry when malformed."""
    path = path or KNOWN_FAILURES
    data = load_toml(path, "liburing known-failures file")
    out = []
    for i, entry in enumerate(data.get("failure", [])):
        where = f"{path.name}: failure #{i + 1}"
        for key in ("test", "reason"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise UserError(f"{where}: field '{key}' must be a non-empty string")
        kernels, fss = entry.get("kernels"), entry.get("filesystems", [])
        if not isinstance(kernels, list) or not kernels or not all(isinstance(k, str) for k in kernels):
            raise UserError(f"{where} ({entry['test']}): field 'kernels' must be a non-empty list of strings")
        if not isinstance(fss, list) or not all(isinstance(f, str) for f in fss):
            raise UserError(f"{where} ({entry['test']}): field 'filesystems' must be a list of strings")
        modes = entry.get("modes")
        if (not isinstance(modes, list) or not modes or not all(m in FAILURE_MODES for m in modes)):
            raise UserError(f"{where} ({entry['test']}): field 'modes' must be a non-empty list of "
                            f"{' / '.join(FAILURE_MODES)} (the way the test is known to go wrong)")
        unknown = set(entry) - {"test", "reason", "kernels", "filesystems", "modes"}
        if unknown:
            raise UserError(f"{where} ({entry['test']}): unknown field(s) {', '.join(sorted(unknown))}")
        out.append(KnownFailure(entry["test"], tuple(kernels), tuple(fss), entry["reason"].strip(),
                                tuple(modes)))
    return out


def known_failure(known: list[KnownFailure], test: str, release: str, fs: str) -> KnownFailure | None:
    """The entry that expects ``test`` to fail on this kernel and filesystem, or None."""
    return next((k for k in known if k.matches(test, release, fs)), None)


# --- per-test outcome ----------------------------------------------------------------------------

@dataclass
class CaseOutcome:
    """One liburing test on one target."""

    name: str
    status: str          # pass | fail | skip | timeout | known-fail | xpass | not-run
    exitcode: int | None
    duration: float
    reason: str = ""


def classify(name: str, returncode: int, timed_out: bool, output: str, duration: float,
             known: KnownFailure | None = None) -> CaseOutcome:
    """Map one test's exit code and output onto pass/fail/skip/timeout.

    A listed test failing in one of its entry's modes is ``known-fail``; failing another way it stays a
    failure (the reason says it is listed for something else); passing it is ``xpass``.
    """
    if timed_out or returncode == TIMEOUT_EXIT:
        status, reason = "timeout", "killed by its timeout"
    elif returncode == EXIT_SKIP:
        status, reason = "skip", _last_line(output) or "exit 77"
    elif returncode == 0:
        skipped = SKIP_TEXT.search(output)
        status, reason = ("skip", _last_line(output)) if skipped else ("pass", "")
    else:
        status, reason = "fail", f"exit {returncode}: {_last_line(output)}".rstrip(": ")
    if known is not None and status in known.modes:
        status, reason = "known-fail", f"{reason} — known {status}: {known.reason}"
    elif known is not None and status in FAILURE_MODES:
        reason = f"{reason} (listed as a known {' / '.join(known.modes)} only: this is not that)"
    elif known is not None and status == "pass":
        status, reason = "xpass", f"passed, although listed as a known {' / '.join(known.modes)}"
    return CaseOutcome(name, status, None if timed_out else returncode, round(duration, 2), reason)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def select_tests(spec: WorkloadSpec, built: list[str]) -> list[str]:
    """The tests a workload runs: ``params.tests``, else the subset or (set = "full") every built test."""
    params = spec.params
    which = params.get("set", "full" if spec.name.endswith("-full") else "subset")
    if "tests" in params:
        wanted = list(params["tests"])
    elif which == "full":
        wanted = list(built)
    else:
        wanted = list(SUBSET)
    exclude = set(params.get("exclude", []))
    missing = [t for t in wanted if t not in built]
    if missing:
        raise InfraError(f"liburing tests not built: {', '.join(missing)}")
    return [t for t in wanted if t not in exclude]


def validate_params(params: dict[str, Any], where: str) -> None:
    """Catalogue hook: reject unknown or mistyped liburing params."""
    for key, value in params.items():
        if key not in KNOWN_PARAMS:
            raise UserError(f"{where}: unknown field 'params.{key}' (known: {', '.join(KNOWN_PARAMS)})")
        if key == "set" and value not in ("subset", "full"):
            raise UserError(f"{where}: field 'params.set' must be \"subset\" or \"full\", got {value!r}")
        if key in ("tests", "exclude") and not (isinstance(value, list)
                                                and all(isinstance(v, str) for v in value)):
            raise UserError(f"{where}: field 'params.{key}' must be a list of test names")
        if key in ("per_test_timeout", "parallel") and (type(value) is not int or value < 1):
            raise UserError(f"{where}: field 'params.{key}' must be a positive integer")


# --- guest side ----------------------------------------------------------------------------------

def command_for(test_dir: Path, name: str, target: Target, workdir: str, per_test: int) -> str | None:
    """The guest shell command for one test, or None when it does not apply to the target."""
    args: list[str] = []
    if target.mount is None:
        if name not in PATH_TESTS:
            return None
        args = [target.device]
    binary = shlex.quote(str(test_dir / f"{name}.t"))
    tail = " ".join(shlex.quote(a) for a in args)
    w = shlex.quote(workdir)
    # timeout.t execs ./exec-target.t from its working directory
    helper = f"ln -sf {shlex.quote(str(test_dir / 'exec-target.t'))} exec-target.t; " \
        if name == "timeout" else ""
    return f"mkdir -p {w} && cd {w} && {helper}timeout -k 5 {per_test} {binary} {tail}".rstrip()


def _kernel_release(guest: GuestSession) -> str:
    res = guest.run("uname -r", timeout=30)
    return res.stdout.strip() if res.ok else ""


def run_job(guest: GuestSession, spec: WorkloadSpec, target: Target, job_dir: Path,
            hook: model.WorkloadHook | None = None) -> JobResult:
    """Run the selected liburing tests on ``target``; one subresult per test. Each guest command that
    runs tests (one test, or a pool) runs inside ``hook``."""
    start = time.monotonic()
    job_dir.mkdir(parents=True, exist_ok=True)
    try:
        validate_params(dict(spec.params), f"workload {spec.name}")
        test_dir = build_tests()
        tests = select_tests(spec, list_tests(test_dir))
        known = load_known_failures()
    except (UserError, InfraError) as exc:
        write_job_files(job_dir, f"# not run: {exc}", "", f"{exc}\n", None)
        return JobResult(spec.name, target.fs, "", JobStatus.ERROR, str(exc), job_dir=str(job_dir),
                         duration=round(time.monotonic() - start, 2))
    per_test = int(spec.params.get("per_test_timeout", PER_TEST_TIMEOUT))
    release = _kernel_release(guest)
    workdir = f"{target.scratch}/liburing"
    outcomes, commands, log = _run_tests(guest, spec, target, job_dir, test_dir, tests, known, release,
                                         workdir, per_test, start, hook)
    guest.run(f"rm -rf {shlex.quote(workdir)}", timeout=120)
    return _finish(spec, target, job_dir, outcomes, commands, log, release, start)


def _run_tests(guest: GuestSession, spec: WorkloadSpec, target: Target, job_dir: Path, test_dir: Path,
               tests: list[str], known: list[KnownFailure], release: str, workdir: str, per_test: int,
               start: float,
               hook: model.WorkloadHook | None) -> tuple[list[CaseOutcome], list[str], list[str]]:
    outcomes: list[CaseOutcome] = []
    commands: list[str] = []
    log: list[str] = []
    # Tests given the raw device share it (some write to it): one at a time there. Side by side, the
    # pool first, then the tests that must run alone, one command each.
    width = 1 if target.mount is None else int(spec.params.get("parallel", 1))
    if width > 1:
        pool = [t for t in tests if t not in SOLO_TESTS]
        groups = ([pool] if pool else []) + [[t] for t in tests if t in SOLO_TESTS]
    else:
        groups = [[t] for t in tests]
    job = _BatchJob(guest, spec, target, hook)
    for i, group in enumerate(groups):
        # the last tests get what is left of the job's budget rather than being skipped outright
        left = spec.timeout - (time.monotonic() - start) - GUEST_SLACK
        limit = min(per_test, int(left))
        if limit < MIN_TEST_TIMEOUT:
            outcomes += [CaseOutcome(t, "not-run", None, 0.0, "job time budget exhausted")
                         for g in groups[i:] for t in g]
            break
        batch: list[tuple[str, str]] = []
        for name in group:
            # side by side, each test has its own directory: liburing's tests reuse file names
            command = command_for(test_dir, name, target, f"{workdir}/{name}" if width > 1 else workdir,
                                  max(limit, 1))
            if command is None:
                outcomes.append(CaseOutcome(name, "skip", None, 0.0, "needs a filesystem (bdev target)"))
            else:
                batch.append((name, command))
        if not batch:
            continue
        commands += [c for _, c in batch]
        results, running = _run_batch(job, batch, width, limit, max(int(left), limit), workdir)
        # A timeout or an abandoned command (rc -1) may have taken the guest with it.
        gone = any(r.timed_out or r.returncode == -1 for r, _ in results) and not guest.alive()
        culprits = _culprits(guest, running) if gone else []
        for (name, command), (res, output) in zip(batch, results, strict=True):
            write_text(job_dir / "tests" / f"{name}.log", f"$ {command}\n{output}\nexit: {res.returncode}\n")
            # never started, or beside the test the wedge report names: it runs on the next guest
            if gone and (res.timed_out or name in running) and name not in culprits:
                outcome = CaseOutcome(name, "not-run", None, 0.0, NOT_RUN_REBOOT + " / ".join(culprits))
            elif name in culprits:
                outcome = CaseOutcome(name, "timeout", None, round(res.duration, 2), _stopped_reason(guest))
            else:
                outcome = classify(name, res.returncode, res.timed_out, output, res.duration,
                                   known_failure(known, name, release, target.fs))
            outcomes.append(outcome)
            log.append(f"{name}: {outcome.status} ({outcome.duration:.1f}s) {outcome.reason}".rstrip())
        if gone:
            outcomes += [CaseOutcome(t, "not-run", None, 0.0, NOT_RUN_REBOOT + " / ".join(culprits))
                         for g in groups[i + 1:] for t in g]
            break
    return outcomes, commands, log


def _stopped_reason(guest: GuestSession) -> str:
    wedge = wedge_of(guest)
    if wedge is not None:
        state = "wedged in the kernel" if wedge.get("alive") else "stopped answering"
        return f"the guest {state} during this test ({wedge.get('how', '')})"
    return "the guest stopped answering during this test"


def _culprits(guest: GuestSession, running: list[str]) -> list[str]:
    """The tests that were running when the guest stopped answering; when the guest's wedge report lists
    processes stuck in the kernel, the running tests among them (liburing's binaries are ``NAME.t``)."""
    wedge = wedge_of(guest) or {}
    unkillable = wedge.get("unkillable", [])
    stuck = " ".join(str(x) for x in unkillable) if isinstance(unkillable, list) else ""
    named = [t for t in running if re.search(rf"\b{re.escape(t)}\.t\b", stuck)]
    return named or running


@dataclass(frozen=True)
class _BatchJob:
    """Where a batch's command runs: the job's guest, and the hook its test commands run inside."""

    guest: GuestSession
    spec: WorkloadSpec
    target: Target
    hook: model.WorkloadHook | None

    def run(self, command: str, timeout: float) -> Result:
        told = model.WorkloadCommand(self.spec, self.target, "liburing", command)
        with model.around(self.hook, self.guest, told):
            return self.guest.run(command, timeout=timeout)


def _run_batch(job: _BatchJob, batch: list[tuple[str, str]], width: int, limit: int, budget: int,
               workdir: str) -> tuple[list[tuple[Result, str]], list[str]]:
    """One test (its own SSH command), or a pool of ``width`` tests at a time in one command; with the
    tests that had started but not ended when the command returned."""
    if len(batch) == 1:
        res = job.run(batch[0][1], timeout=limit + GUEST_SLACK)
        cut = res.timed_out or res.returncode == -1  # timed out or abandoned: it never finished
        return [(res, res.stdout + res.stderr)], [batch[0][0]] if cut else []
    res = job.run(pool_command(batch, width, f"{workdir}/.kwb-logs"), timeout=budget + GUEST_SLACK)
    parsed = parse_pool_output(res.stdout)
    started = parse(res.stdout).payloads(Marker.LIBURING_START)
    running = [n for n in started if n not in parsed]
    out: list[tuple[Result, str]] = []
    for name, command in batch:
        argv = ["sh", "-c", command]
        if name in parsed:
            rc, seconds, text = parsed[name]
            out.append((Result(argv, rc, text, "", seconds), text))
        else:  # the pool was cut short (job budget, guest gone) before this test reported
            why = (res.stderr.strip().splitlines() or ["no result reported"])[-1]
            out.append((Result(argv, -1, "", why, 0.0, timed_out=True), why))
    return out, running


def pool_command(batch: list[tuple[str, str]], width: int, logdir: str) -> str:
    """A guest command running the ``(name, command)`` pairs ``width`` at a time (bash ``wait -n``); each
    test says when it starts (marker LIBURING-START) and, as it ends, prints its output as section
    LIBURING with its exit code and uptimes on the end marker (under ``flock``, so sections never
    interleave, a pool cut short still reports the tests that finished and which ones were running)."""
    d = shlex.quote(logdir)
    lines = [f"mkdir -p {d}", "running=0"]
    for name, command in batch:
        f = shlex.quote(f"{logdir}/{name}")
        q = shlex.quote(name)
        report = echo_section(Marker.LIBURING, f"cat {f}.out", q, f"{q} $(cat {f}.rc)")
        lines += [f"( flock {d}/.lock {echo(Marker.LIBURING_START, q)}; read -r s _ < /proc/uptime; "
                  f"( {command} ) > {f}.out 2>&1; rc=$?; "
                  f"read -r e _ < /proc/uptime; echo \"$rc $s $e\" > {f}.rc; "
                  f"flock {d}/.lock sh -c {shlex.quote(report)} ) &",
                  "running=$((running + 1))",
                  f"if [ $running -ge {width} ]; then wait -n; running=$((running - 1)); fi"]
    lines.append("wait")
    return f"exec bash -c {shlex.quote(chr(10).join(lines))}"


def parse_pool_output(stdout: str) -> dict[str, tuple[int, float, str]]:
    """``{test: (exit code, seconds, output)}`` from :func:`pool_command`'s output; a test whose section
    never ended, or whose end marker does not name it with an exit code and two uptimes, is left out."""
    found: dict[str, tuple[int, float, str]] = {}
    for section in parse(stdout).sections(Marker.LIBURING):
        end = section.end_payload.split()
        if len(end) != 4 or end[0] != section.payload:
            continue
        try:
            rc, began, ended = int(end[1]), float(end[2]), float(end[3])
        except ValueError:
            continue
        found[section.payload] = (rc, round(max(ended - began, 0.0), 2), section.text)
    return found


def _test_seconds(outcomes: list[CaseOutcome]) -> float:
    """Seconds the tests themselves ran (side by side tests count each; the runner caps it at wall)."""
    return sum(o.duration for o in outcomes)


def summarise(outcomes: list[CaseOutcome]) -> dict[str, int]:
    """Counts per test status."""
    counts = {s: 0 for s in ("pass", "fail", "skip", "timeout", "known-fail", "xpass", "not-run")}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    counts["total"] = len(outcomes)
    return counts


def job_status(outcomes: list[CaseOutcome]) -> tuple[JobStatus, str]:
    """FAIL on any unexpected failure, TIMEOUT when a test hung (and nothing failed), else PASS."""
    bad = [o for o in outcomes if o.status == "fail"]
    hung = [o for o in outcomes if o.status == "timeout"]
    unrun = [o for o in outcomes if o.status == "not-run"]
    c = summarise(outcomes)
    tally = f"{c['pass']} pass, {c['fail']} fail, {c['skip']} skip, {c['timeout']} timeout, " \
            f"{c['known-fail']} known-fail" + (f", {c['xpass']} xpass" if c["xpass"] else "")
    if bad:
        return JobStatus.FAIL, f"{tally}; failed: {', '.join(o.name for o in bad)}"
    if hung:
        return JobStatus.TIMEOUT, f"{tally}; timed out: {', '.join(o.name for o in hung)}"
    if unrun:
        return JobStatus.TIMEOUT, f"{tally}; {len(unrun)} not run ({unrun[0].reason})"
    return JobStatus.PASS, tally


def _finish(spec: WorkloadSpec, target: Target, job_dir: Path, outcomes: list[CaseOutcome],
            commands: list[str], log: list[str], release: str, start: float) -> JobResult:
    status, reason = job_status(outcomes)
    subresults = [asdict(o) for o in outcomes]
    # Tests the guest's reboot kept from running: the runner runs them on the next guest (resume).
    resume = [o.name for o in outcomes if o.status == "not-run" and o.reason.startswith(NOT_RUN_REBOOT)]
    culprits = [o.name for o in outcomes if o.status == "timeout" and o.reason.startswith("the guest ")]
    write_job_files(job_dir, "\n".join(commands), "\n".join(log) + "\n", "", 0 if status is JobStatus.PASS
                    else 1)
    write_json(job_dir / "liburing-results.json", {"kernel": release, "fs": target.fs, "tests": subresults})
    checks: list[dict[str, Any]] = [
        {"name": n, "ok": status is JobStatus.PASS if n == "tests-pass" else False,
         "reason": reason if n == "tests-pass" else f"unknown check {n!r} for kind liburing"}
        for n in spec.checks()]
    if status is JobStatus.PASS and not all(c["ok"] for c in checks):
        status, reason = JobStatus.FAIL, "; ".join(str(c["reason"]) for c in checks if not c["ok"])
    return JobResult(spec.name, target.fs, "", status, reason, command="\n".join(commands),
                     exitcode=0 if status is JobStatus.PASS else 1,
                     duration=round(time.monotonic() - start, 2),
                     metrics={**summarise(outcomes), "workload_s": round(_test_seconds(outcomes), 2)},
                     evidence={"kernel": release, "checks": checks,
                               **({"resume": resume} if resume else {}),
                               **({"stopped_by": culprits} if culprits else {})},
                     subresults=subresults,
                     job_dir=str(job_dir))


def run_on_host(tests: list[str], workdir: Path, *, per_test: int = PER_TEST_TIMEOUT,
                release: str | None = None) -> list[CaseOutcome]:
    """Run liburing tests on the host in ``workdir`` (bring-up and real tests); same classification.

    Known failures are looked up for filesystem "host" and the host's kernel release.
    """
    release = platform.release() if release is None else release
    test_dir = build_tests()
    known = load_known_failures()
    out = []
    for name in tests:
        res = run([str(test_dir / f"{name}.t")], cwd=workdir, timeout=per_test)
        out.append(classify(name, res.returncode, res.timed_out, res.stdout + res.stderr, res.duration,
                            known_failure(known, name, release, "host")))
    return out


def merge_resumed(first: JobResult, second: JobResult) -> JobResult:
    """One job from a run the guest's reboot cut short (``first``) and the run of its remaining tests on
    the fresh guest (``second``): every test once, the status over all of them, a kernel finding of the
    first part kept (it is what made the reboot necessary)."""
    again = {str(s["name"]) for s in second.subresults}
    subs = [s for s in first.subresults if s["name"] not in again] + list(second.subresults)
    outcomes = [CaseOutcome(str(s["name"]), str(s["status"]), s.get("exitcode"),
                            float(s.get("duration", 0.0)), str(s.get("reason", ""))) for s in subs]
    status, reason = job_status(outcomes)
    if first.findings and first.status in (JobStatus.CRASH, JobStatus.FAIL):
        status, reason = first.status, f"{first.reason}; after the reboot: {reason}"
    elif isinstance(first.evidence.get("wedge"), dict):
        reason = f"{first.evidence['wedge'].get('summary', 'guest wedged')}; {reason}"
    evidence = {**second.evidence, "resumed_after_reboot": sorted(again)}
    for key in ("stopped_by", "wedge"):
        if key in first.evidence:
            evidence[key] = first.evidence[key]
    evidence.pop("resume", None)
    if any(o.status == "not-run" and o.reason.startswith(NOT_RUN_REBOOT) for o in outcomes):
        evidence["resume"] = [o.name for o in outcomes
                              if o.status == "not-run" and o.reason.startswith(NOT_RUN_REBOOT)]
    checks = [dict(c, ok=status is JobStatus.PASS, reason=reason) if c.get("name") == "tests-pass" else c
              for c in second.evidence.get("checks", [])]
    evidence["checks"] = checks
    return replace(second, status=status, reason=reason, subresults=subs, evidence=evidence,
                   metrics={**summarise(outcomes), "workload_s": round(_test_seconds(outcomes), 2)},
                   findings=first.findings + second.findings,
                   duration=round(first.duration + second.duration, 2),
                   command="\n".join(c for c in (first.command, second.command) if c),
                   exitcode=0 if status is JobStatus.PASS else 1)
