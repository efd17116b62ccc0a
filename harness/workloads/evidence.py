"""Path evidence and kernel health, measured in the guest — never assumed.

* kprobes on the functions that mark each path, resolved per kernel from
  ``available_filter_functions`` (the series profile's ``[[evidence.role]]`` entries: one candidate name
  per kernel era); a function that cannot be probed is listed with the reason, never silently dropped;
* io-wq worker threads (``iou-wrk-*``) sampled every ~0.5 s while a job runs;
* the "async path taken" verdict computed from the counters;
* dmesg and console scanned after every job (only the lines that job produced).
"""

from __future__ import annotations

import contextlib
import copy
import re
import shlex
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.core import profile
from harness.core.errors import InfraError
from harness.core.profile import Role
from harness.vm.console import Finding
from harness.vm.console import scan as scan_console
from harness.vm.markers import Marker, Markers, echo, echo_section, parse
from harness.workloads.model import GuestSession

TRACEFS = "/sys/kernel/tracing"
GROUP = "kwb"
GUEST_TIMEOUT = 60.0
NOT_PROBEABLE = "not probeable: not in {source} (inlined/static)"


def roles() -> tuple[Role, ...]:
    """The things worth counting, from the active series profile (``[[evidence.role]]``)."""
    return profile.active().roles


def era_markers() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Names only one kernel era has, per era (``[[evidence.era]]``)."""
    return profile.active().eras


@dataclass
class ProbePoint:
    """A role resolved on one kernel: the symbol to probe, or why it can't be probed."""

    role: str
    function: str | None
    reason: str = ""
    absent: bool = False  # no symbol in the kernel at all, for an address-taken role: counts as 0

    @property
    def probeable(self) -> bool:
        """True when a kprobe can be placed."""
        return self.function is not None and not self.reason


@dataclass
class ProbeSet:
    """Every role resolved on one kernel."""

    era: str
    source: str                     # "available_filter_functions" | "kallsyms" | "" (no tracing)
    points: list[ProbePoint]
    reason: str = ""                # set when nothing at all can be probed

    def probeable(self) -> list[ProbePoint]:
        """The points a kprobe can be placed on."""
        return [p for p in self.points if p.probeable]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the job's evidence."""
        return {"era": self.era, "source": self.source, "reason": self.reason,
                "points": {p.role: {"function": p.function, "reason": p.reason, "absent": p.absent}
                           for p in self.points}}


def _pattern(names: Iterable[str]) -> str:
    # Compiler clones (foo.isra.0, foo.constprop.0, foo.part.0) are probeable under their full name.
    alts = "|".join(re.escape(n) for n in names)
    return rf"^({alts})(\.[a-z_]+\.[0-9]+)*( |$)"


def all_candidates() -> list[str]:
    """Every function name any role may resolve to."""
    return [c for r in roles() for c in r.candidates]


def _find(role: Role, names: list[str], exact: set[str]) -> str | None:
    for cand in role.candidates:
        if cand in exact:
            return cand
        clones = sorted(n for n in names if re.match(_pattern([cand]), n))
        if clones:
            return clones[0]
    return None


def resolve(available: Iterable[str], source: str = "available_filter_functions",
            kallsyms: Iterable[str] | None = None) -> ProbeSet:
    """Resolve every role against the kernel's traceable function names (pure; unit-testable).

    ``kallsyms`` (candidate names found in /proc/kallsyms) tells "inlined/notrace" apart from "not in
    this kernel at all" for address-taken roles.
    """
    names = [line.split()[0] for line in available if line.strip()]
    exact = set(names)
    syms = [s.split()[0] for s in kallsyms if s.strip()] if kallsyms is not None else None
    points: list[ProbePoint] = []
    for role in roles():
        found = _find(role, names, exact)
        if found is not None:
            points.append(ProbePoint(role.name, found))
        elif role.address_taken and syms is not None and _find(role, syms, set(syms)) is None:
            why = (f"absent from this kernel: {' / '.join(role.candidates)} not in /proc/kallsyms "
                   "(dead code: cannot run; counted as 0)")
            points.append(ProbePoint(role.name, None, why, absent=True))
        else:
            reason = NOT_PROBEABLE.format(source=source) + f": {' / '.join(role.candidates)}"
            points.append(ProbePoint(role.name, None, reason))
    era = next((label for label, markers in era_markers() if exact & set(markers)), "unknown")
    return ProbeSet(era=era, source=source, points=points)


def _discover_script() -> str:
    pat = _pattern(all_candidates())
    traceable = (f"{{ if [ \"$src\" = kallsyms ]; then awk '$2 ~ /^[tT]$/ {{print $3}}' /proc/kallsyms; "
                 f"else cut -d' ' -f1 {TRACEFS}/available_filter_functions; fi; }} | grep -E '{pat}'")
    return "\n".join([
        f"[ -e {TRACEFS}/kprobe_events ] || mount -t tracefs nodev {TRACEFS} 2>/dev/null",
        f"if [ ! -e {TRACEFS}/kprobe_events ]; then {echo(Marker.NOTRACE)}; exit 0; fi",
        f"src=kallsyms; [ -r {TRACEFS}/available_filter_functions ] && src=available_filter_functions",
        echo_section(Marker.TRACEABLE, traceable, "$src"),
        echo_section(Marker.KALLSYMS, "awk '{print $3}' /proc/kallsyms | grep -E '" + pat + "'"),
        "exit 0",
    ])


# One answer per booted guest: the traceable functions are a property of its kernel, and asking costs a
# read of available_filter_functions (~1 s under TCG) that every job used to repeat.
_DISCOVERED: weakref.WeakKeyDictionary[Any, ProbeSet] = weakref.WeakKeyDictionary()


def discover(guest: GuestSession) -> ProbeSet:
    """Which marker functions the guest kernel can trace (asked once per guest; callers get a copy they
    may change); never raises for a kernel without kprobes."""
    try:
        known = _DISCOVERED.get(guest)
    except TypeError:  # a guest object that can't be weakly referenced or hashed: just ask
        known = None
    if known is None:
        known = _discover(guest)
        if known.source:  # a failed query may succeed next time
            with contextlib.suppress(TypeError):
                _DISCOVERED[guest] = known
    return copy.deepcopy(known)


def _discover(guest: GuestSession) -> ProbeSet:
    res = guest.run(_discover_script(), timeout=GUEST_TIMEOUT)
    if not res.ok:
        return ProbeSet("unknown", "", [ProbePoint(r.name, None, "tracefs query failed") for r in roles()],
                        reason=f"tracefs query failed (exit {res.returncode}): {res.tail(1)}")
    said = parse(res.stdout)
    if said.has(Marker.NOTRACE):
        why = f"kernel has no {TRACEFS}/kprobe_events (CONFIG_KPROBE_EVENTS off?)"
        return ProbeSet("unknown", "", [ProbePoint(r.name, None, why) for r in roles()], reason=why)
    traceable = said.sections(Marker.TRACEABLE)
    source = traceable[0].payload if traceable else "kallsyms"
    syms = said.section(Marker.KALLSYMS)
    return resolve(traceable[0].text.splitlines() if traceable else [], source,
                   syms.splitlines() if syms is not None else None)


def parse_profile(text: str) -> dict[str, tuple[int, int]]:
    """``kprobe_profile`` → {event name: (hits, misses)} (names with or without the ``kwb/`` group)."""
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            continue
        name = parts[0].split("/", 1)[-1]
        out[name] = (int(parts[1]), int(parts[2]))
    return out


class Kprobes:
    """Arms the probeable points of a :class:`ProbeSet` in the guest; counters via ``kprobe_profile``."""

    def __init__(self, guest: GuestSession, probe_set: ProbeSet) -> None:
        self.guest = guest
        self.probe_set = probe_set
        self.armed: list[str] = []

    def _clear_script(self) -> str:
        # Writing an empty kprobe_events fails while events are enabled: disable our group first.
        return (f"[ -e {TRACEFS}/events/{GROUP}/enable ] && echo 0 > {TRACEFS}/events/{GROUP}/enable; "
                f"echo > {TRACEFS}/kprobe_events")

    def arm(self) -> None:
        """Register and enable one kprobe per probeable point; a refused probe gets its reason recorded."""
        points = self.probe_set.probeable()
        if not points:
            return
        lines = [self._clear_script()]
        for p in points:
            lines.append(f"echo 'p:{GROUP}/{p.role} {p.function}' >> {TRACEFS}/kprobe_events "
                         f"2>/dev/null || {echo(Marker.REFUSED, shlex.quote(p.role))}")
        lines.append(f"echo 1 > {TRACEFS}/events/{GROUP}/enable 2>/dev/null || {echo(Marker.ENABLE_FAILED)}")
        lines.append("exit 0")
        res = self.guest.run("\n".join(lines), timeout=GUEST_TIMEOUT)
        if not res.ok:
            raise InfraError(f"arming kprobes failed (exit {res.returncode}): {res.tail(1)}")
        said = parse(res.stdout)
        refused = set(said.payloads(Marker.REFUSED))
        for p in points:
            if p.role in refused:
                p.reason = f"not probeable: kprobe on {p.function} refused (notrace/blacklisted)"
        self.armed = [p.role for p in points if p.role not in refused]
        if said.has(Marker.ENABLE_FAILED) and self.armed:
            raise InfraError(f"enabling kprobes failed: {TRACEFS}/events/{GROUP}/enable")

    def read(self) -> dict[str, tuple[int, int]]:
        """Current (hits, misses) per armed role (cumulative since :meth:`arm`)."""
        if not self.armed:
            return {}
        res = self.guest.run(f"cat {TRACEFS}/kprobe_profile", timeout=GUEST_TIMEOUT)
        if not res.ok:
            raise InfraError(f"reading kprobe_profile failed (exit {res.returncode}): {res.tail(1)}")
        return self._armed_counts(res.stdout)

    def _armed_counts(self, profile: str) -> dict[str, tuple[int, int]]:
        prof = parse_profile(profile)
        return {role: prof.get(role, (0, 0)) for role in self.armed}

    def read_script(self, tag: Marker) -> str:
        """Shell lines that print the counters as section ``tag``, for a caller folding the read into its
        own guest command: under TCG each SSH round trip costs ~0.4 s, and fio reads twice a repeat."""
        if not self.armed:
            return ""
        return echo_section(tag, f"cat {TRACEFS}/kprobe_profile || {echo(Marker.PROFILE_UNREADABLE)}")

    def parse_read(self, said: Markers, tag: Marker) -> dict[str, tuple[int, int]]:
        """The counters :meth:`read_script` printed as section ``tag`` in a guest output."""
        if not self.armed:
            return {}
        text = said.section(tag)
        if text is None or parse(text).has(Marker.PROFILE_UNREADABLE):
            raise InfraError(f"reading kprobe_profile failed ({tag} counters missing from the guest output)")
        return self._armed_counts(text)

    def disarm(self) -> None:
        """Remove every kwb kprobe (best effort: the guest may be gone)."""
        if self.armed:
            self.guest.run(self._clear_script(), timeout=GUEST_TIMEOUT)
            self.armed = []


def counts_for(probe_set: ProbeSet, hits: dict[str, int]) -> dict[str, int | None]:
    """Hit counts for every role; None for roles that could not be probed (0 when absent from the kernel)."""
    return {p.role: (hits.get(p.role, 0) if p.probeable else 0 if p.absent else None)
            for p in probe_set.points}


# ---- verdicts computed from counters ------------------------------------------------------------

IOWQ_NOISE_FLOOR = 16      # a handful of enqueues (e.g. fio's own setup) is still "≈ 0"
IOWQ_NOISE_FRACTION = 0.01  # ... and so is ≤ 1 % of the reads issued


@dataclass
class Check:
    """One must_show check evaluated on a job's counters."""

    name: str
    ok: bool
    reason: str


def _iowq_limit(ios: int) -> int:
    return max(IOWQ_NOISE_FLOOR, int(ios * IOWQ_NOISE_FRACTION))


def _path_counts(counts: Mapping[str, int | None]) -> tuple[int | None, int | None, str, str]:
    # The profile names which role marks the series' path and which the punt to io-wq workers.
    prof = profile.active()
    series, punt = prof.series_role, prof.punt_role
    return (counts.get(series), counts.get(punt) if punt else 0, prof.role_functions(series),
            prof.role_functions(punt) if punt else "io-wq")


def check_async_path(counts: Mapping[str, int | None], ios: int) -> Check:
    """The series' path taken: its marker hit > 0 and io-wq enqueues ≈ 0."""
    cb, wq, cb_fn, wq_fn = _path_counts(counts)
    if cb is None or wq is None:
        return Check("async-path", False, f"no evidence: {cb_fn}/{wq_fn} not probeable")
    limit = _iowq_limit(ios)
    ok = cb > 0 and wq <= limit
    return Check("async-path", ok, f"{cb_fn} {cb} hits, {wq_fn} {wq} (≈0 means ≤ {limit} for {ios} reads)")


def check_iowq_path(counts: Mapping[str, int | None], ios: int) -> Check:
    """io-wq path taken: enqueues well above noise."""
    _, wq, _, wq_fn = _path_counts(counts)
    if wq is None:
        return Check("iowq-path", False, f"no evidence: {wq_fn} not probeable")
    limit = _iowq_limit(ios)
    return Check("iowq-path", wq > limit, f"{wq_fn} {wq} (needs > {limit} for {ios} reads)")


def check_no_callback(counts: Mapping[str, int | None], ios: int) -> Check:
    """The series' path marker never ran (the series' path is absent)."""
    cb, _, cb_fn, _ = _path_counts(counts)
    if cb is None:
        return Check("no-callback", False, f"no evidence: {cb_fn} not probeable")
    return Check("no-callback", cb == 0, f"{cb_fn} {cb} hits (needs 0)")


def path_taken(counts: Mapping[str, int | None], ios: int) -> str:
    """Which path the reads took, from the counters: async | io-wq | mixed | none | unknown.

    The one path rule: the series' marker hit at all is its path, io-wq enqueues above noise (16, or
    1 % of the reads issued) the punt; both is mixed. Punts above noise with the marker unprobeable are
    still the punt.
    """
    cb, wq, _, _ = _path_counts(counts)
    if wq is not None and cb is None and wq > _iowq_limit(ios):
        # The series' marker could not be probed, but the reads were punted in bulk: that is the punt.
        return "io-wq"
    if cb is None or wq is None:
        return "unknown"
    quiet_wq = wq <= _iowq_limit(ios)
    if cb > 0:
        return "async" if quiet_wq else "mixed"
    return "none" if quiet_wq else "io-wq"


def _reads(metrics: Mapping[str, Any]) -> int:
    per_repeat = metrics.get("per_repeat")
    if isinstance(per_repeat, list):
        return sum(int(r.get("total_ios") or 0) for r in per_repeat if isinstance(r, Mapping))
    total = metrics.get("total_ios")
    if isinstance(total, Mapping):
        total = total.get("median")
    return int(total) if isinstance(total, int | float) and not isinstance(total, bool) else 0


def job_path(job: Mapping[str, Any]) -> tuple[str, str]:
    """Which path a recorded job's reads took, and the counters that say so (results.json jobs).

    The runner's own conclusion wins; a job recorded without one is judged here by the same rule as
    :func:`path_taken` (counters from ``evidence.counts``, reads from ``metrics``).
    """
    ev = job.get("evidence") or {}
    raw = ev.get("counts")
    counts: dict[str, int | None] = dict(raw) if isinstance(raw, Mapping) else {}
    cb, wq, _, _ = _path_counts(counts)
    text = f"{profile.active().series_role}={cb} io-wq={wq}" if counts else "no path counters"
    declared = ev.get("path")
    if isinstance(declared, str) and declared and declared != "unknown":
        return declared, text
    if not counts:
        return "unknown", text
    return path_taken(counts, _reads(job.get("metrics") or {})), text


CHECKS: dict[str, Callable[[Mapping[str, int | None], int], Check]] = {
    "async-path": check_async_path,
    "iowq-path": check_iowq_path,
    "no-callback": check_no_callback,
}


# ---- io-wq worker sampling ----------------------------------------------------------------------

def with_iowq_sampler(command: str, samples_file: str, interval: float = 0.5) -> str:
    """Wrap a guest shell command so ``iou-wrk-*`` threads are counted every ``interval`` s while it runs.

    The samples follow the command's output as a section; the command's exit code is kept.
    """
    # Shell builtins only (read, case): under TCG every fork+exec per sample would cost the job CPU.
    loop = ("while :; do n=0; for f in /proc/[0-9]*/task/*/comm; do "
            "read -r c < $f 2>/dev/null && case $c in iou-wrk-*) n=$((n+1));; esac; done; "
            f"echo $n; sleep {interval}; done")
    return "\n".join([
        f"( {loop} ) > {samples_file} 2>/dev/null < /dev/null &",
        "KWB_SP=$!",
        command,
        "KWB_RC=$?",
        "kill $KWB_SP 2>/dev/null; wait $KWB_SP 2>/dev/null",
        # the command's output may end mid-line: the section starts a line of its own
        echo_section(Marker.IOWQ_SAMPLES, f"cat {samples_file} 2>/dev/null", fresh_line=True),
        "exit $KWB_RC",
    ])


def iowq_samples(said: Markers) -> dict[str, Any]:
    """The io-wq samples :func:`with_iowq_sampler` printed, summarised (none when they never ended)."""
    tail = said.section(Marker.IOWQ_SAMPLES)
    if tail is None:
        return {"samples": 0, "max": None, "mean": None}
    values = [int(x) for x in tail.split() if x.isdigit()]
    mean = round(sum(values) / len(values), 2) if values else None
    return {"samples": len(values), "max": max(values) if values else None, "mean": mean}


# ---- kernel health ------------------------------------------------------------------------------

ScanFn = Callable[[str], list[Finding]]
_TS = re.compile(r"^\s*(<\d+>)?\[\s*\d+\.\d+\]\s*")


def default_scan(text: str) -> list[Finding]:
    """The VM helper's console scanner (harness.vm.console)."""
    return list(scan_console(text))


@dataclass
class Health:
    """What one job left in dmesg and on the console."""

    findings: list[Finding] = field(default_factory=list)
    dmesg: str = ""
    console: str = ""
    note: str = ""

    @property
    def crashed(self) -> bool:
        """A panic/oops/BUG/KASAN report was seen."""
        return any(f.fatal for f in self.findings)

    def summaries(self) -> list[str]:
        """One line per finding: ``kind: line``."""
        return [f"{f.kind}: {f.line.strip()}" for f in self.findings]

    def excerpt(self) -> str:
        """Every finding's excerpt, for the job's health file and the failure reason."""
        return "\n\n".join(f"[{f.kind}]\n{f.excerpt}" for f in self.findings)


class HealthMonitor:
    """Incremental dmesg/console scanning: each job sees only the kernel lines it produced."""

    def __init__(self, guest: GuestSession, scan: ScanFn | None = None) -> None:
        self.guest = guest
        self.scan = scan or default_scan
        self.console_offset = len(guest.console_text())
        self._dmesg_clear = False  # True right after collect(): its `dmesg -c` already emptied the log

    def mark(self) -> None:
        """Start a job: forget earlier dmesg lines (dmesg -c) and remember the console position."""
        self.console_offset = len(self.guest.console_text())
        if not self._dmesg_clear:  # each SSH round trip costs ~0.4 s under TCG
            self.guest.run("dmesg -c > /dev/null", timeout=GUEST_TIMEOUT)
        self._dmesg_clear = False

    def collect(self) -> Health:
        """Kernel lines since :meth:`mark`, scanned; works on a dead guest (console only)."""
        console = self.guest.console_text()
        new_console = console[self.console_offset:]
        self.console_offset = len(console)
        dmesg, note = "", ""
        on_console = self.scan(new_console)
        if any(f.fatal for f in on_console):
            # The console already has the kernel's report (loglevel 7), and asking a kernel that just
            # oopsed for its log can wait out the whole timeout.
            note = "dmesg not read: the console shows a kernel crash"
        else:
            # A dead or hung guest answers at once (Guest.run knows); no separate "alive?" round trip.
            res = self.guest.run("dmesg -c", timeout=GUEST_TIMEOUT)
            if res.ok:
                dmesg, self._dmesg_clear = res.stdout, True
            else:
                note = "dmesg unreadable (guest not answering); console only"
        findings = _dedupe([*self.scan(dmesg), *on_console])
        return Health(findings=findings, dmesg=dmesg, console=new_console, note=note)


def _dedupe(findings: list[Finding]) -> list[Finding]:
    # A message reaches both dmesg and the console; count it once.
    seen: set[tuple[str, str]] = set()
    out = []
    for f in findings:
        key = (f.kind, _TS.sub("", f.line).strip())
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out
