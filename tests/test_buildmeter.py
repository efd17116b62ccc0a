"""The build as one progress line: objects done/expected, ETA from the last build, samples, bench_eta."""

from __future__ import annotations

import importlib.util
import io
import itertools
import json
import sys
from pathlib import Path
from types import ModuleType

from harness.core.progress import LIVE_EVERY, Progress
from harness.kernel import buildmeter
from harness.kernel.buildmeter import BuildMeter, Expectation

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_eta", ROOT / "scripts" / "bench_eta.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_eta"] = mod
    spec.loader.exec_module(mod)
    return mod


def _build(meter: BuildMeter, clock: Clock, seconds_per_object: list[float]) -> None:
    for n, dt in enumerate(seconds_per_object):
        clock.now += dt
        meter(f"  CC      fs/f{n}.o")


# A build whose first half is slow (big objects) and second half fast: a linear ETA is wrong halfway.
SHAPE = [3.0] * 100 + [1.0] * 100


def test_first_build_counts_objects_without_an_eta(tmp_path: Path) -> None:
    clock, shown = Clock(), list[str]()
    meter = BuildMeter(Expectation(None, "no earlier build"), tmp_path / "s.jsonl", shown.append, clock)
    meter("make[1]: Entering directory")  # not an object
    _build(meter, clock, [3.0] * 5)
    assert meter.done == 5 and meter.eta(clock.now) is None
    assert shown[-1].startswith("build: 5 objects (no earlier build to compare), 15.0s — CC fs/f4.o")


def test_history_is_kept_and_gives_the_next_build_its_profile(cache: Path, tmp_path: Path) -> None:
    clock = Clock()
    meter = BuildMeter(buildmeter.expect(tmp_path, cold=True), tmp_path / "a.jsonl", None, clock)
    _build(meter, clock, SHAPE)
    assert meter.finish(tmp_path, cold=True, ok=True) == "build: 200 objects in 6m40s"
    exp = buildmeter.expect(tmp_path, cold=True)
    assert exp.objects == 200 and exp.source == "last cold build" and exp.profile[-1] == (400.0, 200)
    assert buildmeter.expect(tmp_path, cold=False).objects is None  # incremental builds are apart
    # The same shape on a host twice as slow: halfway through (in time) the ETA is right.
    clock2, shown = Clock(), list[str]()
    meter2 = BuildMeter(exp, tmp_path / "b.jsonl", shown.append, clock2)
    _build(meter2, clock2, [2 * s for s in SHAPE[:100]])
    eta = meter2.eta(clock2.now)
    assert eta is not None and abs(eta - 200.0) < 10  # 100 objects at 2 s left
    assert "100/200 objects (50%)" in shown[-1] and "ETA 3m" in shown[-1]


def test_a_linear_estimate_is_used_without_a_profile(tmp_path: Path) -> None:
    clock = Clock()
    meter = BuildMeter(Expectation(200, "kbuild's count"), None, None, clock)
    _build(meter, clock, SHAPE[:100])
    assert meter.eta(clock.now) == 300.0  # 100 left at the 3 s per object seen so far


def test_expected_count_from_a_finished_log_of_the_configuration(cache: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "build-series-abc-611e53e9b56f-1.log").write_text(
        "$ make\n" + "".join(f"  CC      f{i}.o\n" for i in range(40)) + "  LD      vmlinux\n"
        "Kernel: arch/x86/boot/bzImage is ready  (#1)\n")
    (logs / "build-series-abc-611e53e9b56f-2.log").write_text("  CC      f.o\nmake: *** Error 2\n")
    exp = buildmeter.expect(tmp_path / "bdir", cold=True, logs=logs, cfg12="611e53e9b56f")
    assert exp.objects == 41 and "build-series-abc-611e53e9b56f-1.log" in exp.source


def test_samples_file_and_bench_eta(cache: Path, tmp_path: Path) -> None:
    bench = _bench()
    clock = Clock()
    first = BuildMeter(Expectation(None, "none"), tmp_path / "first.jsonl", None, clock)
    _build(first, clock, SHAPE)
    first.finish(tmp_path, cold=True, ok=True)
    rows = bench.load(tmp_path / "first.jsonl")
    assert set(rows[0]) >= {"t", "done", "expected", "eta"}
    assert bench.halfway(rows)["error"] is None  # the first build had nothing to expect from
    clock2 = Clock()
    second = BuildMeter(buildmeter.expect(tmp_path, cold=True), tmp_path / "second.jsonl", None, clock2)
    _build(second, clock2, [1.3 * s for s in SHAPE])
    second.finish(tmp_path, cold=True, ok=True)
    res = bench.halfway(bench.load(tmp_path / "second.jsonl"))
    assert res["error"] is not None and abs(res["error"]) < 0.05
    # Replaying the first build's samples as if a linear estimate: the error a profile avoids.
    linear = [{**r, "eta": r["t"] / r["done"] * (200 - r["done"]) if r["done"] else None}
              for r in bench.load(tmp_path / "second.jsonl")]
    assert abs(bench.halfway(linear)["error"]) > 0.25
    replayed = bench.replay(bench.load(tmp_path / "second.jsonl"), bench.load(tmp_path / "first.jsonl"))
    assert abs(bench.halfway(replayed)["error"]) < 0.05
    assert bench.main([str(tmp_path / "second.jsonl")]) == 0


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_live_line_is_redrawn_in_place_on_a_terminal() -> None:
    out, clock = Tty(), Clock()
    p = Progress(stream=out, clock=clock, heartbeat=0)
    with p.step("build"):
        p.live("build: 1/10 objects")
        clock.now += 1
        p.live("build: 2/10 objects")
        p("a line in between")
        p.end_live("build: 10 objects in 5.0s")
    text = out.getvalue()
    assert "\r\x1b[K[   0.0s] build: build: 1/10 objects" in text
    assert "\r\x1b[K[   1.0s] build: build: 2/10 objects" in text
    # The ordinary line clears the live one, prints, and the live line comes back below it.
    assert "\r\x1b[K[   1.0s] build: a line in between\n[   1.0s] build: build: 2/10 objects" in text
    assert text.rstrip().endswith("✓ build (1.0s)")
    assert "build: build: 10 objects in 5.0s\n" in text


def test_quiet_and_piped_live_lines_are_plain_lines_every_30s() -> None:
    for quiet in (True, False):
        out, clock = Tty() if quiet else io.StringIO(), Clock()
        p = Progress(quiet=quiet, stream=out, clock=clock, heartbeat=0)
        with p.step("build"):
            for n in range(100):
                clock.now += 1
                p.live(f"build: {n}/100 objects")
        lines = out.getvalue().splitlines()
        live = [ln for ln in lines if "objects" in ln]
        assert "\r" not in out.getvalue()
        assert len(live) == 4  # at 1 s, 31 s, 61 s, 91 s: never silent for longer than LIVE_EVERY
        assert LIVE_EVERY == 30.0


def test_job_lines_get_an_eta_for_the_rest_of_the_step() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress(stream=out, clock=clock, heartbeat=0)
    with p.step("variant series"):
        clock.now += 900  # a cold build and a boot before the first job: not a job's time
        p("[1/6] series ext4 fio-iouring-forced-async: pass")
        clock.now += 30
        p("[2/6] series ext4 fio-iouring: pass")
        p("[6/6] series bdev fio-psync: pass")
    text = out.getvalue()
    assert "[1/6] series ext4 fio-iouring-forced-async: pass\n" in text
    assert "[2/6] series ext4 fio-iouring: pass (ETA 2m00s)" in text
    assert "[6/6] series bdev fio-psync: pass\n" in text


def test_samples_are_json_lines(cache: Path, tmp_path: Path) -> None:
    clock = Clock()
    meter = BuildMeter(Expectation(10, "x"), tmp_path / "s.jsonl", None, clock)
    _build(meter, clock, [1.0] * 10)
    meter.finish(tmp_path, cold=False, ok=True)
    rows = [json.loads(ln) for ln in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert rows[-1]["done"] == 10 and rows[-1]["eta"] == 0.0
    assert all(b["t"] >= a["t"] for a, b in itertools.pairwise(rows))


def test_a_cold_history_survives_deleting_the_build_dir(cache: Path, tmp_path: Path) -> None:
    bdir = tmp_path / "build" / "tree-611e53e9b56f"
    bdir.mkdir(parents=True)
    buildmeter.keep(bdir, True, 100, 50.0, [(0.0, 0), (50.0, 100)])
    (bdir / "x.o").unlink(missing_ok=True)
    bdir.rmdir()
    assert buildmeter.history_path(bdir).is_relative_to(cache)
    assert buildmeter.expect(bdir, cold=True).objects == 100


def test_a_profile_read_back_from_object_mtimes(cache: Path, tmp_path: Path) -> None:
    import os

    for n, t in enumerate((1000.0, 1010.0, 1030.0, 2000.0)):
        obj = tmp_path / f"o{n}.o"
        obj.write_text("")
        os.utime(obj, (t, t))
    # The object written at 2000 came from a later incremental build: left out.
    assert buildmeter.profile_from_mtimes(tmp_path, 990.0, 1040.0) == [
        (0.0, 0), (10.0, 1), (20.0, 2), (40.0, 3), (50.0, 3)]
