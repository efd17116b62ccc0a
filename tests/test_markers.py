"""vm.markers: the guest channel's one grammar — emitters, the parser, and the shell round trip."""

from __future__ import annotations

import subprocess

import pytest

from harness.core.paths import project_root
from harness.vm import markers
from harness.vm.markers import Marker


def test_the_wire_format_is_pinned() -> None:
    # probe_common.h prints `KWB-RESULT {json}`: the probe binaries fix this spelling
    assert markers.line(Marker.RESULT, '{"ok": true}') == 'KWB-RESULT {"ok": true}'
    assert markers.line(Marker.GUEST_READY) == "KWB-GUEST-READY"
    assert markers.block(Marker.FIO, "{}") == "KWB-FIO\n{}\nKWB-FIO-END\n"
    assert markers.echo(Marker.GCDA, "$n") == "echo KWB-GCDA $n"


def test_the_probes_print_result_as_the_grammar_reads_it() -> None:
    # probe_common.h is C: it must go on printing `\nKWB-RESULT {` (a line of its own) for parse() to see it
    header = (project_root() / "harness" / "workloads" / "probes" / "probe_common.h").read_text()
    assert '"\\n' + markers.line(Marker.RESULT, "{") in header


def test_names_fit_the_grammar_and_none_reads_as_a_section_end() -> None:
    for name in Marker:
        assert markers.parse(markers.line(name, "x")).first(name) == "x", name
        assert not name.endswith(markers.END), f"{name} would read as the end of section {name[:-4]}"


def test_marker_inside_other_output() -> None:
    text = "fio: starting\nKWB-LAID-OUT\nmore output\n"
    got = markers.parse(text)
    assert got.has(Marker.LAID_OUT) and not got.has(Marker.NO_FIO)


@pytest.mark.parametrize("text", [
    "echo KWB-LAID-OUT\n",          # not at the start of its line (a logged command, say)
    "  KWB-LAID-OUT\n",             # indented
    "KWB-LAID-OUTSIDE\n",           # another word
    "KWB-laid-out\n",               # names are upper case
    "progressKWB-LAID-OUT\n",       # output that did not end its line
])
def test_only_a_whole_line_is_a_marker(text: str) -> None:
    assert not markers.parse(text).has(Marker.LAID_OUT)


def test_payload_with_spaces() -> None:
    got = markers.parse("KWB-STAT-BEFORE 10.00 cpu  100 0 100 800  \r\n")
    assert got.first(Marker.STAT_BEFORE) == "10.00 cpu  100 0 100 800"
    assert markers.parse("KWB-NOTRACE\n").first(Marker.NOTRACE) == ""


def test_repeated_markers() -> None:
    text = "KWB-REFUSED a\nnoise\nKWB-REFUSED b\nKWB-RESULT {\"n\": 1}\nKWB-RESULT {\"n\": 2}"
    got = markers.parse(text)
    assert got.payloads(Marker.REFUSED) == ["a", "b"]
    assert got.first(Marker.RESULT) == '{"n": 1}' and got.last(Marker.RESULT) == '{"n": 2}'
    assert got.first(Marker.RET) is None and got.last(Marker.RET) is None and got.payloads(Marker.RET) == []


def test_section_text_is_what_the_body_printed() -> None:
    got = markers.parse("before\nKWB-FIO\n{\n  \"jobs\": []\n}\n\nKWB-FIO-END\nafter\n")
    assert got.section(Marker.FIO) == '{\n  "jobs": []\n}\n'
    assert markers.parse("KWB-FIO\nKWB-FIO-END\n").section(Marker.FIO) == ""


def test_unterminated_section_is_none() -> None:
    assert markers.parse("KWB-FIO\n{\"jobs\": [\n").section(Marker.FIO) is None
    assert markers.parse("KWB-FIO-END\n").section(Marker.FIO) is None  # an end alone
    # a second begin before any end: the first never ended, the second did
    got = markers.parse("KWB-LIBURING a\ncut\nKWB-LIBURING b\nok\nKWB-LIBURING-END b 0 1 2\n")
    assert got.sections(Marker.LIBURING) == [markers.Section("b", "b 0 1 2", "ok")]
    assert got.section(Marker.LIBURING, "a") is None and got.section(Marker.LIBURING, "b") == "ok"


def test_sections_of_other_names_may_nest() -> None:
    text = ("KWB-KPROBES-BEFORE\ncat: no such file\nKWB-PROFILE-UNREADABLE\nKWB-KPROBES-BEFORE-END\n"
            + markers.block(Marker.IOWQ_SAMPLES, markers.block(Marker.FIO, "{}")))
    got = markers.parse(text)
    before = got.section(Marker.KPROBES_BEFORE)
    assert before is not None and markers.parse(before).has(Marker.PROFILE_UNREADABLE)
    assert got.section(Marker.FIO) == "{}"
    assert got.section(Marker.IOWQ_SAMPLES) == "KWB-FIO\n{}\nKWB-FIO-END\n"


def test_emits_tells_marker_names_apart() -> None:
    script = "if ok; then echo KWB-RET fn; fi\n" + markers.echo_section(Marker.FIO, "fio")
    assert markers.emits(script, Marker.RET) and markers.emits(script, Marker.FIO)
    assert not markers.emits(script, Marker.RET_REFUSED)
    assert not markers.emits("echo KWB-RET-REFUSED fn", Marker.RET)


def _sh(script: str) -> str:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("body,printed", [
    ("printf 'a\\nb\\n'", "a\nb\n"),
    ("printf 'no newline'", "no newline"),
    ("true", ""),
    ("printf '\\n\\n'", "\n\n"),
])
def test_shell_sections_round_trip(body: str, printed: str) -> None:
    script = markers.echo_section(Marker.LIBURING, body, "t", "t $((1 + 1))", fresh_line=True)
    out = _sh(f"printf 'output mid-line'\n{script}")
    assert markers.parse(out).sections(Marker.LIBURING) == [markers.Section("t", "t 2", printed)]
    assert out.endswith(markers.block(Marker.LIBURING, printed, "t", "t 2"))


def test_shell_marker_payload_expands() -> None:
    out = _sh(f"n=3; {markers.echo(Marker.GCDA, '$n')}; {markers.echo(Marker.NOTRACE)}")
    got = markers.parse(out)
    assert got.first(Marker.GCDA) == "3" and got.has(Marker.NOTRACE)
