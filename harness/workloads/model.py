"""Data shared by every workload kind: the declarative spec, the guest it runs on, the job result.

A workload is a TOML file under harness/workloads/catalogue/; its ``kind`` picks the runner
(``fio``, ``probe``, ``liburing``). Every runner returns a :class:`JobResult`; nothing raises past it.
"""

from __future__ import annotations

import contextlib
import enum
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from harness.core.atomic import write_text
from harness.core.run import Result


class JobStatus(enum.StrEnum):
    """Outcome of one job; ``pass`` and ``skip`` are the only non-failures."""

    PASS = "pass"
    FAIL = "fail"        # the workload ran and a check failed (test failure)
    ERROR = "error"      # infrastructure: mkfs failed, tool missing in guest, build failed
    TIMEOUT = "timeout"  # the workload or the guest stopped answering within its bound
    CRASH = "crash"      # panic / oops / BUG seen on the console or in dmesg
    SKIP = "skip"        # not applicable (reason given)


class GuestSession(Protocol):
    """What a workload needs from a booted guest (implemented by harness.vm.guest.Guest)."""

    def run(self, command: str, timeout: float) -> Result:
        """Run a shell command in the guest; a timeout gives ``timed_out=True``, never a hang."""
        ...

    def console_text(self) -> str:
        """Everything the guest printed on its console so far."""
        ...

    def alive(self) -> bool:
        """True while the guest still answers (no panic, QEMU running)."""
        ...


@runtime_checkable
class ReportsBoot(Protocol):
    """A guest that says what it booted on (harness.vm.guest.Guest does; a scripted fake need not)."""

    @property
    def accel(self) -> str:
        """The accelerator the guest runs on ("kvm" or "tcg")."""
        ...

    @property
    def root_mode(self) -> str:
        """What the guest's / is: "isolated" (kwb's image) or "host" (harness.vm.rootfs)."""
        ...


@runtime_checkable
class ReportsWedge(Protocol):
    """A guest that reports a wedge: set when a command overran and the guest was found wedged or dead."""

    @property
    def wedge(self) -> dict[str, object] | None:
        """The wedge report (``alive``, ``how``, ``detected_after_s``, ``unkillable``, …), or None."""
        ...


def wedge_of(guest: GuestSession) -> dict[str, object] | None:
    """``guest``'s wedge report, or None when it has none (or cannot report one)."""
    return guest.wedge if isinstance(guest, ReportsWedge) else None


@dataclass
class WorkloadSpec:
    """One workload file, as loaded from the catalogue."""

    name: str
    kind: str
    description: str
    filesystems: list[str]
    timeout: float
    must_show: list[str] = field(default_factory=list)
    concerns: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    default: bool = True  # part of `kwb run` when no --workload is given
    # Per variant kind ("baseline", "mutant", ...): checks replacing must_show on that kind.
    must_show_by_kind: dict[str, list[str]] = field(default_factory=dict)
    variant_kind: str = "series"  # set by the runner: the kind of the variant this job runs on
    # The read-ahead dimension (harness.workloads.readahead): None keeps the kernel's window.
    read_ahead_kb: int | None = None

    def checks(self) -> list[str]:
        """The must_show checks that apply to the variant kind this spec runs on."""
        return list(self.must_show_by_kind.get(self.variant_kind, self.must_show))


@dataclass(frozen=True)
class Target:
    """Where a job runs in the guest: one filesystem (or the raw device) prepared by the runner."""

    fs: str                  # "ext4" | "xfs" | "btrfs" | "bdev"
    device: str              # guest block device, e.g. "/dev/vda"
    mount: str | None        # guest mount point; None for bdev (use ``device`` directly)
    scratch: str             # guest directory the job may write to (on the fs; guest /tmp for bdev)


@dataclass(frozen=True)
class WorkloadCommand:
    """A guest command that runs a job's workload itself (not its set-up or evidence reads), and the job
    it belongs to: what a :class:`WorkloadHook` is told, so nobody has to read the command text."""

    spec: WorkloadSpec       # the job's workload (a phased probe's own: ``probe-x@phase``)
    target: Target
    program: str             # what the command runs: the probe's binary name, "fio", "liburing"
    command: str

    @property
    def job(self) -> str:
        """``<fs>/<workload>``: the job's key in results and in concern repro's outcome."""
        return f"{self.target.fs}/{self.spec.name}"


class WorkloadHook(Protocol):
    """What the runner hands each job for its workload commands (``run_variant(on_workload=...)``): the
    context it returns is open while the command runs, so the hook may run guest commands of its own
    just before and after (concern repro's return-value probes)."""

    def __call__(self, guest: GuestSession, command: WorkloadCommand, /) -> AbstractContextManager[object]:
        """The context to run ``command`` in."""
        ...


def around(hook: WorkloadHook | None, guest: GuestSession,
           command: WorkloadCommand) -> AbstractContextManager[object]:
    """``hook``'s context for ``command``; one that does nothing when the job was given no hook."""
    return hook(guest, command) if hook is not None else contextlib.nullcontext()


@dataclass
class JobResult:
    """One workload on one filesystem on one variant; serialised into results.json."""

    workload: str
    fs: str
    variant: str
    status: JobStatus
    reason: str = ""
    command: str = ""
    exitcode: int | None = None
    duration: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    subresults: list[dict[str, Any]] = field(default_factory=list)
    job_dir: str = ""
    reproducer: str = ""

    @property
    def failed(self) -> bool:
        """Anything but pass/skip counts against the variant."""
        return self.status not in (JobStatus.PASS, JobStatus.SKIP)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (status as its string value)."""
        d = asdict(self)
        d["status"] = self.status.value
        return d


def write_job_files(job_dir: Path, command: str, stdout: str, stderr: str,
                    exitcode: int | None) -> None:
    """Write the per-job reproducer files (``command``, ``stdout``, ``stderr``, ``exitcode``) atomically."""
    write_text(job_dir / "command", command.rstrip("\n") + "\n")
    write_text(job_dir / "stdout", stdout)
    write_text(job_dir / "stderr", stderr)
    write_text(job_dir / "exitcode", "" if exitcode is None else f"{exitcode}\n")


@dataclass
class VariantRun:
    """What running one variant's workloads hands on (harness.workloads.runner.run_variant).

    ``accel`` and ``guest_root`` are the last booted guest's ("" when no guest booted or the guest did not
    say); ``boots`` counts guest sessions tried, failed boots included.
    """

    jobs: list[JobResult]
    accel: str = ""
    guest_root: str = ""  # "isolated" or "host"
    boots: int = 0
