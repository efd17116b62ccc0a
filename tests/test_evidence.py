"""Path evidence: kprobe resolution per kernel era, counters, verdicts, io-wq sampling, health scanning."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_workloads_fakeguest import AVAILABLE_612, AVAILABLE_2020, PANIC, WARNING, FakeGuest

from harness.core.errors import InfraError
from harness.core.run import Result, run
from harness.vm import markers
from harness.vm.markers import Marker
from harness.workloads import evidence


def _point(ps: evidence.ProbeSet, role: str) -> evidence.ProbePoint:
    return next(p for p in ps.points if p.role == role)


def test_resolve_612_names_and_unprobeable_reason() -> None:
    ps = evidence.resolve(AVAILABLE_612)
    assert ps.era == "6.x-folio"
    assert _point(ps, "callback").function == "io_async_buf_func"
    assert _point(ps, "async_lock").function == "__folio_lock_async"
    assert _point(ps, "queue_async").function == "io_queue_iowq"
    retry = _point(ps, "should_retry")
    assert retry.function is None and not retry.probeable
    assert retry.reason.startswith("not probeable: not in available_filter_functions (inlined/static)")
    assert "io_rw_should_retry" in retry.reason


def test_resolve_2020_names_and_compiler_clones() -> None:
    ps = evidence.resolve(AVAILABLE_2020)
    assert ps.era == "2020"
    assert _point(ps, "async_lock").function == "__lock_page_async"
    assert _point(ps, "queue_async").function == "io_queue_async_work"
    assert _point(ps, "wake_function").function == "wake_page_function.isra.0"
    assert _point(ps, "should_retry").probeable
    # wake_page_match() is a static inline in pagemap.h in both eras: stated, not dropped.
    assert "wake_page_match" in _point(ps, "wake_match").reason
    assert {p.role for p in ps.points} == {r.name for r in evidence.roles()}


def test_absent_callback_counts_zero_but_inlined_stays_unknown() -> None:
    # baseline: io_rw_should_retry() returns early, io_async_buf_func is dead code and dropped
    no_cb = [n for n in AVAILABLE_612 if n != "io_async_buf_func"]
    ps = evidence.resolve(no_cb, kallsyms=no_cb)
    cb = _point(ps, "callback")
    assert cb.absent and "not in /proc/kallsyms" in cb.reason
    counts = evidence.counts_for(ps, {})
    assert counts["callback"] == 0 and evidence.check_no_callback(counts, 100).ok
    # in kallsyms but not traceable (notrace/inlined copy): no number, no verdict
    ps = evidence.resolve(no_cb, kallsyms=AVAILABLE_612)
    assert not _point(ps, "callback").absent and evidence.counts_for(ps, {})["callback"] is None
    # should_retry may be inlined: absence from kallsyms proves nothing, never counted as 0
    ps = evidence.resolve(AVAILABLE_612, kallsyms=AVAILABLE_612)
    assert evidence.counts_for(ps, {})["should_retry"] is None


def test_discover_reads_kallsyms_section() -> None:
    no_cb = [n for n in AVAILABLE_612 if n != "io_async_buf_func"]
    ps = evidence.discover(FakeGuest(available=no_cb, kallsyms=no_cb))
    assert _point(ps, "callback").absent and _point(ps, "iowq_enqueue").probeable


class _Hashable(FakeGuest):
    __hash__ = object.__hash__  # a real Guest is hashable; the dataclass fake is not


def test_discover_asks_once_per_guest_and_hands_out_copies() -> None:
    g = _Hashable()
    first = evidence.discover(g)
    first.points.append(evidence.ProbePoint("extra", "filemap_read"))
    again = evidence.discover(g)
    assert sum("available_filter_functions" in c for c in g.commands) == 1
    assert len(again.points) == len(first.points) - 1  # the caller's change did not leak into the cache
    other = _Hashable()
    evidence.discover(other)
    assert sum("available_filter_functions" in c for c in other.commands) == 1  # a new boot asks again


def test_resolve_ignores_prefix_lookalikes() -> None:
    ps = evidence.resolve(["io_wq_enqueue_foo", "io_async_buf_func_x"])
    assert not _point(ps, "iowq_enqueue").probeable and not _point(ps, "callback").probeable
    assert ps.era == "unknown"


def test_parse_profile_with_and_without_group() -> None:
    text = ("  callback                                      144218               0\n"
            "  kwb/iowq_enqueue                                   0               3\n"
            "garbage line\n")
    assert evidence.parse_profile(text) == {"callback": (144218, 0), "iowq_enqueue": (0, 3)}


def test_kprobes_arm_read_disarm_on_fake() -> None:
    g = FakeGuest()
    ps = evidence.discover(g)
    kp = evidence.Kprobes(g, ps)
    kp.arm()
    assert set(kp.armed) == {p.role for p in ps.probeable()}
    assert "p:kwb/callback io_async_buf_func" in g.commands[-1]
    g.run("fio --name=x --ioengine=io_uring", 10)
    counts = kp.read()
    assert counts["callback"][0] > 0 and counts["iowq_enqueue"] == (0, 0)
    kp.disarm()
    assert kp.armed == [] and g.armed == []


def test_kprobes_read_folded_into_a_command() -> None:
    g = FakeGuest()
    kp = evidence.Kprobes(g, evidence.discover(g))
    kp.arm()
    before, after = Marker.KPROBES_BEFORE, Marker.KPROBES_AFTER
    script = f"{kp.read_script(before)}\nfio --name=x --ioengine=io_uring\n{kp.read_script(after)}"
    out = markers.parse(g.run(script, 10).stdout)
    assert kp.parse_read(out, before)["callback"] == (0, 0)
    assert kp.parse_read(out, after)["callback"][0] > 0
    with pytest.raises(InfraError, match="kprobe_profile"):
        kp.parse_read(markers.parse("no markers here\n"), before)
    unreadable = markers.block(before, "cat: kprobe_profile: No such file\n"
                               + markers.line(Marker.PROFILE_UNREADABLE))
    with pytest.raises(InfraError, match="kprobe_profile"):
        kp.parse_read(markers.parse(unreadable), before)
    unarmed = evidence.Kprobes(g, evidence.discover(g))
    assert unarmed.read_script(before) == "" and unarmed.parse_read(markers.parse(""), before) == {}


def test_refused_probe_gets_a_reason() -> None:
    g = FakeGuest()
    ps = evidence.discover(g)
    original = g._answer

    def refuse(command: str) -> Result:
        res = original(command)
        if "p:kwb/" in command:
            res.stdout += markers.line(Marker.REFUSED, "wake_function") + "\n"
        return res

    g._answer = refuse  # type: ignore[method-assign]
    kp = evidence.Kprobes(g, ps)
    kp.arm()
    assert "wake_function" not in kp.armed
    assert "refused" in _point(ps, "wake_function").reason


def test_discover_without_tracefs_states_why() -> None:
    ps = evidence.discover(FakeGuest(tracefs=False))
    assert ps.probeable() == [] and "kprobe_events" in ps.reason
    assert all(p.reason for p in ps.points)


def test_checks_are_computed_from_counters() -> None:
    ok = evidence.check_async_path({"callback": 144218, "iowq_enqueue": 0}, 320000)
    assert ok.ok and "144218" in ok.reason
    assert not evidence.check_async_path({"callback": 0, "iowq_enqueue": 0}, 320000).ok
    assert not evidence.check_async_path({"callback": 10, "iowq_enqueue": 72091}, 214000).ok
    assert not evidence.check_async_path({"callback": None, "iowq_enqueue": 0}, 1000).ok
    # a handful of enqueues is noise ("≈ 0"); a real share of the reads is not
    assert evidence.check_async_path({"callback": 5, "iowq_enqueue": 12}, 1000).ok
    assert evidence.check_iowq_path({"iowq_enqueue": 72091}, 214000).ok
    assert not evidence.check_iowq_path({"iowq_enqueue": 3}, 214000).ok
    assert evidence.check_no_callback({"callback": 0}, 10).ok
    assert not evidence.check_no_callback({"callback": 1}, 10).ok
    assert not evidence.check_no_callback({}, 10).ok


def test_path_taken() -> None:
    assert evidence.path_taken({"callback": 144218, "iowq_enqueue": 0}, 320000) == "async"
    assert evidence.path_taken({"callback": 0, "iowq_enqueue": 72091}, 214000) == "io-wq"
    assert evidence.path_taken({"callback": 900, "iowq_enqueue": 72091}, 214000) == "mixed"
    assert evidence.path_taken({"callback": 0, "iowq_enqueue": 0}, 20000) == "none"
    assert evidence.path_taken({"callback": None, "iowq_enqueue": 0}, 20000) == "unknown"


def test_iowq_samples() -> None:
    out = "fio output\n" + markers.block(Marker.IOWQ_SAMPLES, "0\n3\n5\n")
    assert evidence.iowq_samples(markers.parse(out)) == {"samples": 3, "max": 5, "mean": 2.67}
    assert evidence.iowq_samples(markers.parse("no marker"))["samples"] == 0
    cut = out.rsplit(markers.line(Marker.IOWQ_SAMPLES), 1)[0] + markers.line(Marker.IOWQ_SAMPLES) + "\n0\n"
    assert evidence.iowq_samples(markers.parse(cut))["samples"] == 0  # never ended: not a count


def test_sampler_script_keeps_the_exit_code_and_ends_its_section(tmp_path: Path) -> None:
    command = "sleep 0.3; printf 'no newline'; (exit 3)"
    script = evidence.with_iowq_sampler(command, str(tmp_path / "s"), interval=0.1)
    res = run(["sh", "-c", script], timeout=30)
    assert res.returncode == 3 and res.stdout.startswith("no newline\n")
    assert evidence.iowq_samples(markers.parse(res.stdout))["samples"] >= 1


def test_discover_script_on_a_fake_tracefs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The shell the guest runs, run here: tracefs is a directory, /proc/kallsyms the host's own.
    (tmp_path / "kprobe_events").write_text("")
    (tmp_path / "available_filter_functions").write_text(
        "io_wq_enqueue\nio_async_buf_func [io_uring]\nwake_page_function.isra.0\nunrelated_fn\n")
    monkeypatch.setattr(evidence, "TRACEFS", str(tmp_path))
    said = markers.parse(run(["sh", "-c", evidence._discover_script()], timeout=60).stdout)
    assert said.sections(Marker.TRACEABLE)[0].payload == "available_filter_functions"
    assert said.section(Marker.TRACEABLE) == "io_wq_enqueue\nio_async_buf_func\nwake_page_function.isra.0\n"
    assert said.section(Marker.KALLSYMS) is not None
    (tmp_path / "kprobe_events").unlink()
    monkeypatch.setattr(evidence, "TRACEFS", str(tmp_path / "none"))
    assert markers.parse(run(["sh", "-c", evidence._discover_script()], timeout=60).stdout).has(
        Marker.NOTRACE)


@pytest.mark.host
@pytest.mark.real
def test_iowq_sampler_counts_real_iou_wrk_threads(tmp_path: Path) -> None:
    """The sampler shell loop, run on the host kernel: fio with force_async spawns iou-wrk threads."""
    if shutil.which("fio") is None:
        pytest.skip("fio not installed on the host")
    data = tmp_path / "data"
    fio = (f"fio --name=s --filename={data} --size=32M --rw=randread --bs=4k --iodepth=32 "
           "--ioengine=io_uring --force_async=1 --time_based=1 --runtime=2 --output-format=json >/dev/null")
    script = evidence.with_iowq_sampler(fio, str(tmp_path / "samples.txt"), interval=0.2)
    res = run(["bash", "-c", script], timeout=60)
    assert res.ok, res.stderr
    samples = evidence.iowq_samples(markers.parse(res.stdout))
    assert samples["samples"] >= 5
    assert samples["max"] is not None and samples["max"] >= 1


def _scan_fake(text: str) -> list[object]:
    from harness.vm.console import scan

    return list(scan(text))


def test_health_monitor_sees_only_new_lines_and_dedupes() -> None:
    g = FakeGuest()
    g.dmesg_pending = WARNING  # before the job: must not be blamed on it
    mon = evidence.HealthMonitor(g)
    mon.mark()
    assert mon.collect().findings == []
    g.dmesg_pending = WARNING
    g.console += WARNING  # the same message reaches the console too
    health = mon.collect()
    assert [f.kind for f in health.findings] == ["warning"]
    assert not health.crashed and "folio_wake_bit" in health.excerpt()
    assert mon.collect().findings == []


def test_health_monitor_dead_guest_uses_console() -> None:
    g = FakeGuest()
    mon = evidence.HealthMonitor(g)
    mon.mark()
    g.console += PANIC
    g.dead = True
    health = mon.collect()
    assert health.crashed and "console shows a kernel crash" in health.note
    assert {f.kind for f in health.findings} >= {"panic"}


def test_health_monitor_does_not_ask_an_oopsed_kernel_for_dmesg() -> None:
    g = FakeGuest()
    mon = evidence.HealthMonitor(g)
    mon.mark()
    asked = len(g.commands)
    g.console += "BUG: kernel NULL pointer dereference, address: 0000000000000020\n"
    health = mon.collect()
    assert health.crashed and len(g.commands) == asked  # no `dmesg -c` round trip
    g.dead = True  # a guest that died without a console report: dmesg is tried, console only
    health = mon.collect()
    assert not health.findings and "console only" in health.note
