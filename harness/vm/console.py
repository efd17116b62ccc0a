"""Kernel console scanning: panics, oopses, BUGs, WARNINGs, KASAN, lockdep, hung tasks, stalls, lockups.

:func:`scan` works on a whole recorded log; :class:`ConsoleWatch` is fed line by line while a guest runs
and raises a flag the moment a fatal finding appears, so a crashed guest is noticed without waiting for
a command timeout.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

from harness.vm.markers import Marker, line

# Order matters: the first pattern that matches a line names its kind (lockdep before warning, kasan
# and soft lockup before the generic BUG).
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("panic", re.compile(r"Kernel panic - not syncing")),
    ("kasan", re.compile(r"BUG: KASAN: ")),
    ("soft_lockup", re.compile(r"BUG: soft lockup - CPU#\d+ stuck")),
    ("hard_lockup", re.compile(r"Watchdog detected hard LOCKUP")),
    ("lockdep", re.compile(
        r"WARNING: (possible (circular|recursive|irq) lock|inconsistent lock state|suspicious RCU usage"
        r"|bad unlock balance|lock held when returning|held lock freed|possible .*locking)"
        r"|BUG: (MAX_LOCKDEP|looking up invalid subclass)|INFO: trying to register non-static key")),
    ("oops", re.compile(r"\bOops: |general protection fault|BUG: unable to handle"
                        r"|BUG: kernel NULL pointer dereference")),
    ("bug", re.compile(r"kernel BUG at |\bBUG: ")),
    ("warning", re.compile(r"WARNING: CPU: \d+ PID: \d+ at |WARNING: at ")),
    ("hung_task", re.compile(r"INFO: task \S+ blocked for more than \d+ seconds")),
    ("rcu_stall", re.compile(r"rcu: INFO: \S+ (self-)?detected stall|rcu_\w+ detected stalls on")),
)

KINDS = tuple(kind for kind, _ in _PATTERNS)
# Kinds after which the guest kernel can no longer be trusted: the run is a crash.
FATAL_KINDS = frozenset({"panic", "oops", "bug", "kasan"})
# Kinds after which a running command is unlikely to return by itself (a task died holding locks, or is
# stuck): the command is abandoned after a grace period instead of waiting for its full timeout.
STUCK_KINDS = FATAL_KINDS | {"soft_lockup", "hard_lockup", "hung_task", "rcu_stall"}

# Boot milestones worth timing (first line containing the text), for the boot-time breakdown.
MILESTONES = {
    "kernel": "Linux version",
    "init": "as init process",
    "basic_init": "virtme-ng-init: basic initialization done",
    "udev": "virtme-ng-init: triggering udev coldplug",
    "dhcp": "udhcpc: lease of",
    "udev_done": "virtme-ng-init: udev is done",
    # virtme-ng-init prints this once every set-up thread (udev, DHCP, sshd) has ended
    "init_done": "virtme-ng-init: starting script",
    # vng's GUEST_INIT prints it. Matched anywhere in a line like the others, not by markers.parse: on the
    # serial console a kernel message can land in the middle of the init script's line.
    "guest_ready": line(Marker.GUEST_READY),
}

# Console lines that explain a boot that will never answer over SSH (see boot_problem()).
_IFACE_GONE = re.compile(r'Cannot find device "(eth\d+)"')
_RENAMED = re.compile(r"\b(\w+): renamed from (eth\d+)")
_SSHD_FAILED = re.compile(r"virtme-init: ssh: (.*)")
_LEASE = "udhcpc: lease of"
# Printed by virtme-ng-init only after every set-up thread (DHCP included) has ended.
_INIT_OVER = ("virtme-ng-init: initialization done", "virtme-ng-init: starting script")

_TIMESTAMP = re.compile(r"^\s*\[\s*\d+\.\d+\]\s?")
_END_MARK = re.compile(r"---\[ end (trace|Kernel panic)")
EXCERPT_BEFORE = 3
EXCERPT_AFTER = 40


@dataclass(frozen=True)
class Finding:
    """One suspicious console event: its kind, the matching line (timestamp stripped), an excerpt."""

    kind: str
    line: str
    excerpt: str
    lineno: int = 0

    @property
    def fatal(self) -> bool:
        """True for kinds that end the run as a crash."""
        return self.kind in FATAL_KINDS

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"kind": self.kind, "line": self.line, "lineno": self.lineno, "excerpt": self.excerpt}


def classify(line: str) -> str | None:
    """The finding kind of one console line, or None."""
    for kind, pattern in _PATTERNS:
        if pattern.search(line):
            return kind
    return None


def _excerpt(lines: list[str], index: int) -> str:
    start = max(0, index - EXCERPT_BEFORE)
    end = min(len(lines), index + EXCERPT_AFTER)
    for j in range(index + 1, end):
        if _END_MARK.search(lines[j]):
            end = j + 1
            break
    return "\n".join(ln.rstrip() for ln in lines[start:end])


def scan(text: str) -> list[Finding]:
    """Every finding in a console log, in order of appearance."""
    lines = text.splitlines()
    found: list[Finding] = []
    for i, raw in enumerate(lines):
        kind = classify(raw)
        if kind is None:
            continue
        line = _TIMESTAMP.sub("", raw).strip()
        found.append(Finding(kind, line, _excerpt(lines, i), i + 1))
    return found


def summary(findings: list[Finding]) -> dict[str, int]:
    """Count of findings per kind (kinds with none are left out)."""
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    return counts


def crash_excerpt(text: str, findings: list[Finding] | None = None, tail: int = 40) -> str:
    """The excerpt of the first fatal finding, else of the first finding, else the log's last lines."""
    findings = scan(text) if findings is None else findings
    fatal = [f for f in findings if f.fatal]
    if fatal or findings:
        return (fatal or findings)[0].excerpt
    return "\n".join(text.splitlines()[-tail:])


def boot_problem(text: str) -> str | None:
    """Why a booting guest will never answer over SSH, read from its console; None while nothing says so.

    - "guest has no network: eth0 renamed to enp0s10 while DHCP ran on it": udev renamed the interface
      under udhcpc (which then finds no eth0), or set-up ended without a DHCP lease;
    - "sshd not started: ...": virtme-ng's sshd script reported why;
    - "kernel panic|oops|bug|kasan: <line>": the kernel died or is no longer trustworthy.
    """
    fatal = next((f for f in scan(text) if f.fatal), None)
    if fatal is not None:
        return f"kernel {fatal.kind}: {fatal.line[:160]}"
    renamed = _RENAMED.search(text)
    gone = _IFACE_GONE.search(text)
    init_over = any(mark in text for mark in _INIT_OVER)
    if gone or (init_over and _LEASE not in text):
        if renamed:
            return (f"guest has no network: {renamed.group(2)} renamed to {renamed.group(1)} by udev "
                    "while DHCP ran on it")
        return "guest has no network: " + (f"{gone.group(1)} vanished" if gone else "no DHCP lease")
    sshd = _SSHD_FAILED.search(text)
    if sshd:
        return f"sshd not started: {sshd.group(1).strip()[:160]}"
    return None


def stalled_at(milestones: dict[str, float]) -> str:
    """The boot stage a guest that never answered got stuck in, from its console milestones."""
    if "kernel" not in milestones:
        return "the kernel never started (no 'Linux version' on the console)"
    if "init" not in milestones:
        return "the kernel never reached init"
    if "init_done" not in milestones:
        return "virtme-ng-init never finished its set-up (udev or DHCP)"
    return "sshd not answering although the guest finished booting"


@dataclass(frozen=True)
class Stuck:
    """A console line of a :data:`STUCK_KINDS` kind, with when it arrived (monotonic seconds)."""

    index: int
    kind: str
    line: str
    at: float


class ConsoleWatch:
    """Collects console lines as they arrive (from the QEMU output pump threads) and flags fatal ones."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self.fatal = threading.Event()
        self.panicked = threading.Event()
        self.started = time.monotonic()
        self.milestones: dict[str, float] = {}
        self._stuck: list[Stuck] = []

    def feed(self, line: str) -> None:
        """Take one line of guest console output."""
        kind = classify(line)
        with self._lock:
            self._lines.append(line.rstrip("\n"))
            if kind in STUCK_KINDS:
                self._stuck.append(Stuck(len(self._lines), str(kind), line.strip(), time.monotonic()))
        for name, needle in MILESTONES.items():
            if name not in self.milestones and needle in line:
                self.milestones[name] = round(time.monotonic() - self.started, 2)
        if kind in FATAL_KINDS:
            self.fatal.set()
        if kind == "panic":
            self.panicked.set()

    def line_count(self) -> int:
        """How many lines were seen so far (a mark for :meth:`stuck_since`)."""
        with self._lock:
            return len(self._lines)

    def stuck_since(self, mark: int) -> Stuck | None:
        """The first :data:`STUCK_KINDS` line that arrived after line ``mark``, if any."""
        with self._lock:
            return next((s for s in self._stuck if s.index > mark), None)

    def text(self) -> str:
        """Everything seen so far."""
        with self._lock:
            return "\n".join(self._lines) + ("\n" if self._lines else "")

    def contains(self, needle: str) -> bool:
        """True if any line seen so far contains ``needle``."""
        with self._lock:
            return any(needle in ln for ln in self._lines)

    def findings(self) -> list[Finding]:
        """:func:`scan` over everything seen so far."""
        return scan(self.text())
