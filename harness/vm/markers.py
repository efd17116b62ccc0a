"""The one grammar of what the guest tells the host between its ordinary output: ``KWB-`` marker lines.

Guest shell snippets (and the C probes) print plain output with marker lines among it; the host finds
them with one parser. The grammar:

* a **marker** is a whole line ``KWB-<NAME>`` or ``KWB-<NAME> <payload>``; NAME is upper-case letters,
  digits and inner dashes (``[A-Z0-9]+(-[A-Z0-9]+)*``), the payload is the rest of the line (spaces
  and all; trailing blanks and a ``\\r`` dropped). A ``KWB-`` that does not start a line is not a marker;
* a **section** is the lines between ``KWB-<NAME>[ <payload>]`` and the next ``KWB-<NAME>-END[ <payload>]``.
  Its text is everything between the begin line and the line ending just before the end marker: the
  shell emitter prints a newline before the end marker, so a section holds exactly what its body
  printed, whether or not that ended with a newline. A second begin before the end leaves the first
  unterminated; an unterminated section is no section (a guest cut short never passes half a block).
  Sections of different names may overlap or nest; markers inside a section are markers too.

Every name is a :class:`Marker`, declared once here. ``KWB-RESULT {json}`` is also printed by
``harness/workloads/probes/probe_common.h``: its name and format are fixed by the probe binaries.

The emitters give guest shell text (:func:`echo`, :func:`echo_section`) and, for fakes and tests, the
text a guest prints (:func:`line`, :func:`block`) and whether a script prints a marker (:func:`emits`);
:func:`parse` reads it all back. No other module writes the prefix or splits marker lines itself.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

PREFIX = "KWB-"
END = "-END"
_LINE = re.compile(r"KWB-([A-Z0-9]+(?:-[A-Z0-9]+)*)(?: (.*))?")


class Marker(enum.StrEnum):
    """Every marker name on the guest channel (the value is the NAME after ``KWB-``)."""

    # harness.vm: the guest's init script is done; a command could not be killed (section: the threads
    # left), then their kernel stacks (section)
    GUEST_READY = "GUEST-READY"
    WEDGED = "WEDGED"
    STACKS = "STACKS"
    # harness.workloads.evidence: no tracefs; the traceable names (section, payload: where from); the
    # kallsyms names (section); a kprobe refused (payload: role); enabling failed; a counter read failed;
    # io-wq worker samples (section)
    NOTRACE = "NOTRACE"
    TRACEABLE = "TRACEABLE"
    KALLSYMS = "KALLSYMS"
    REFUSED = "REFUSED"
    ENABLE_FAILED = "ENABLE-FAILED"
    PROFILE_UNREADABLE = "PROFILE-UNREADABLE"
    IOWQ_SAMPLES = "IOWQ-SAMPLES"
    # harness.workloads.fio: /proc/stat around fio (payload: uptime and the cpu line); fio's JSON
    # (section); kprobe counters around fio (sections); the data file is laid out; no fio in the guest
    STAT_BEFORE = "STAT-BEFORE"
    STAT_AFTER = "STAT-AFTER"
    FIO = "FIO"
    KPROBES_BEFORE = "KPROBES-BEFORE"
    KPROBES_AFTER = "KPROBES-AFTER"
    LAID_OUT = "LAID-OUT"
    NO_FIO = "NO-FIO"
    # harness.workloads.liburing: a pooled test started (payload: test); its report (section, payload:
    # test; end payload: test, exit code, uptime at start and at end)
    LIBURING_START = "LIBURING-START"
    LIBURING = "LIBURING"
    # harness.workloads.probes (printed by probe_common.h): the probe's verdict (payload: JSON)
    RESULT = "RESULT"
    # harness.orchestrate.concern_repro: a return probe armed / refused (payload: function); one tally
    # (payload: function, return value, count); trace buffer overruns (payload: count)
    RET = "RET"
    RET_REFUSED = "RET-REFUSED"
    RETHIT = "RETHIT"
    OVERRUN = "OVERRUN"
    # harness.orchestrate.coverage_run: .gcda files copied (payload: count)
    GCDA = "GCDA"


def _wire(name: str, payload: str) -> str:
    return f"{PREFIX}{name}" + (f" {payload}" if payload else "")


def _end(name: Marker) -> str:
    return f"{name}{END}"


def line(name: Marker, payload: str = "") -> str:
    """The marker line a guest prints (no newline): ``KWB-NAME`` or ``KWB-NAME payload``."""
    return _wire(name, payload)


def echo(name: Marker, payload: str = "") -> str:
    """Guest shell that prints one marker line. ``payload`` is shell text (``$n`` expands; quote literal
    text that needs it with shlex.quote). The marker must start a line: the caller prints it where the
    output before it ended with a newline (or has none), e.g. after ``|| `` of a command that failed."""
    return f"echo {line(name)}" + (f" {payload}" if payload else "")


def echo_section(name: Marker, body: str, payload: str = "", end_payload: str = "",
                 *, fresh_line: bool = False) -> str:
    """Guest shell lines that print ``body``'s output as section ``name``. ``body`` is shell (any number
    of lines); a newline is printed before the end marker, so output not ending with one still ends the
    section cleanly. ``fresh_line``: print an empty line first, for a section following output that
    may end mid-line (a wrapped command's own)."""
    end = f"echo; echo {_wire(_end(name), end_payload)}"
    return "\n".join([*(["echo"] if fresh_line else []), echo(name, payload), body, end])


def block(name: Marker, text: str, payload: str = "", end_payload: str = "") -> str:
    """What :func:`echo_section` prints when its body printed ``text`` (fakes answer with it)."""
    return f"{line(name, payload)}\n{text}\n{_wire(_end(name), end_payload)}\n"


def emits(script: str, name: Marker) -> bool:
    """True when guest shell ``script`` prints marker ``name`` (fakes tell the scripts they answer apart
    by it); ``KWB-RET`` is not ``KWB-RET-REFUSED``."""
    return re.search(rf"echo {re.escape(line(name))}(?![A-Z0-9-])", script) is not None


@dataclass(frozen=True)
class Section:
    """One complete section: the begin marker's payload, the end marker's, and the text between."""

    payload: str
    end_payload: str
    text: str


@dataclass(frozen=True)
class _Found:
    name: str
    payload: str
    start: int  # offset of the marker line in the text
    after: int  # offset just past its line (and newline)


class Markers:
    """The markers and sections found in one guest output (:func:`parse`)."""

    def __init__(self, text: str, found: list[_Found]) -> None:
        self._text = text
        self._found = found

    def has(self, name: Marker) -> bool:
        """True when marker ``name`` was printed at least once."""
        return any(f.name == name for f in self._found)

    def payloads(self, name: Marker) -> list[str]:
        """The payload of each ``name`` marker, in order ("" for one without)."""
        return [f.payload for f in self._found if f.name == name]

    def first(self, name: Marker) -> str | None:
        """The payload of the first ``name`` marker, or None when there is none."""
        found = self.payloads(name)
        return found[0] if found else None

    def last(self, name: Marker) -> str | None:
        """The payload of the last ``name`` marker, or None when there is none."""
        found = self.payloads(name)
        return found[-1] if found else None

    def sections(self, name: Marker) -> list[Section]:
        """Every complete ``name`` section, in order."""
        out: list[Section] = []
        begin: _Found | None = None
        for f in self._found:
            if f.name == name:
                begin = f  # a begin after a begin: the earlier one never ended
            elif f.name == _end(name) and begin is not None:
                text = self._text[begin.after:f.start]
                out.append(Section(begin.payload, f.payload, text.removesuffix("\n")))
                begin = None
        return out

    def section(self, name: Marker, payload: str | None = None) -> str | None:
        """The text of the first complete ``name`` section (whose begin payload is ``payload``, when
        given); None when there is none or it never ended."""
        return next((s.text for s in self.sections(name) if payload is None or s.payload == payload), None)


def parse(text: str) -> Markers:
    """Every marker line of ``text`` (a guest command's stdout, a console log), with its position."""
    found: list[_Found] = []
    start = 0
    while start < len(text):
        # Lines end at "\n" only (str.splitlines would also break at form feeds and the like).
        newline = text.find("\n", start)
        after = len(text) if newline < 0 else newline + 1
        m = _LINE.fullmatch(text[start:after].rstrip("\r\n"))
        if m is not None:
            found.append(_Found(m.group(1), (m.group(2) or "").rstrip(), start, after))
        start = after
    return Markers(text, found)
