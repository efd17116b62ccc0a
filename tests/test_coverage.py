"""orchestrate.coverage: series lines from a patch, real gcov data of a synthetic file, mapping, markdown."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_workloads_fakeguest import fake_kernel

from harness.core.errors import UserError
from harness.core.run import Result
from harness.kernel.build import KernelBuild
from harness.orchestrate import coverage, coverage_html, coverage_run
from harness.orchestrate.coverage import CoverageReport, GcovFile, SeriesLine
from harness.vm import markers
from harness.vm.markers import Marker
from harness.workloads.catalogue import load_catalogue
from harness.workloads.model import JobResult, JobStatus, VariantRun, WorkloadHook

DATA = Path(__file__).parent / "data" / "coverage"
SRC = DATA / "lib" / "demo.c"


def _source(path: str) -> str | None:
    p = DATA / path
    return p.read_text() if p.is_file() else None


def test_parse_diff_old_side_numbers() -> None:
    hunks = coverage.parse_diff((DATA / "baseline.patch").read_text())
    assert [(h.file, h.old_start, h.new_start) for h in hunks] == [("lib/demo.c", 24, 24),
                                                                  ("lib/demo.c", 33, 36)]
    assert sum(1 for t, _ in hunks[0].lines if t == "+") == 3


def test_function_span_and_enclosing() -> None:
    text = SRC.read_text()
    assert coverage.function_span(text, "async_read") == (14, 23)
    assert coverage.function_span(text, "should_retry") == (25, 32)
    assert coverage.function_span(text, "nope") is None
    assert coverage.enclosing_function(text, 19) == "async_read"
    assert coverage.enclosing_function(text, 36) == ""  # an initialiser is in no function


def test_series_lines_from_baseline_and_functions() -> None:
    lines = coverage.default_series_lines(_source, DATA / "coverage.toml")
    by_line = {s.line: s for s in lines}
    # the early return disables the rest of should_retry (27-31); .flags is changed; async_read listed
    assert [n for n, s in by_line.items() if s.why == "disabled"] == [27, 28, 29, 30, 31]
    assert by_line[36].why == "changed" and by_line[36].text.strip() == ".flags = 1 | 2,"
    assert [n for n, s in by_line.items() if s.why == "function"] == list(range(14, 24))
    assert by_line[27].origin == "demo: retry reads asynchronously"
    assert by_line[16].origin == "demo: add async_read"


def test_unknown_function_is_a_user_error(tmp_path: Path) -> None:
    cfg = tmp_path / "coverage.toml"
    shutil.copy(DATA / "baseline.patch", tmp_path / "baseline.patch")
    cfg.write_text('baseline = "baseline.patch"\n[[function]]\nfile = "lib/demo.c"\nname = "gone"\n')
    with pytest.raises(UserError, match=r"function gone not found in lib/demo\.c"):
        coverage.default_series_lines(_source, cfg)


def test_missing_config_is_a_user_error(tmp_path: Path) -> None:
    cfg = tmp_path / "coverage.toml"
    with pytest.raises(UserError, match=r"^coverage config .*coverage\.toml: not found$"):
        coverage.default_series_lines(_source, cfg)


def _real_gcov(tmp_path: Path) -> tuple[Path, Path]:
    """Compile lib/demo.c with --coverage in an 'objtree', run it, and lay the .gcda out like debugfs."""
    if shutil.which("gcc") is None or shutil.which("gcov") is None:
        pytest.skip("gcc/gcov not installed")
    objtree = tmp_path / "build" / "tree-abc"
    (objtree / "lib").mkdir(parents=True)
    src = tmp_path / "src" / "lib"
    src.mkdir(parents=True)
    shutil.copy(SRC, src / "demo.c")
    obj = objtree / "lib" / "demo.o"
    subprocess.run(["gcc", "--coverage", "-O0", "-c", "-o", str(obj), str(src / "demo.c")], check=True)
    subprocess.run(["gcc", "--coverage", "-o", str(objtree / "demo"), str(obj)], check=True)
    subprocess.run([str(objtree / "demo")], check=True, capture_output=True)
    # debugfs names the data by the object's absolute path: gcov/<objtree>/lib/demo.gcda
    data_root = tmp_path / "guest-1" / "gcov"
    dest = data_root / Path(*objtree.resolve().parts[1:]) / "lib"
    dest.mkdir(parents=True)
    shutil.move(str(objtree / "lib" / "demo.gcda"), dest / "demo.gcda")
    return data_root, objtree


def test_mapping_on_real_gcov_data(tmp_path: Path) -> None:
    data_root, objtree = _real_gcov(tmp_path)
    files, notes = coverage.read_gcov_tree(data_root, objtree, tmp_path / "work")
    assert notes == []
    gf = coverage.find_gcov_file(files, "lib/demo.c")
    assert gf is not None
    series = coverage.default_series_lines(_source, DATA / "coverage.toml")
    cov = coverage.map_coverage(series, files, _source)
    count = {ln.line: ln.count for ln in cov.lines}
    # main() calls should_retry(0..5): odd numbers return at 28, even ones pass 29 and return at 31
    assert count[27] == 6 and count[28] == 3 and count[29] == 3 and count[30] == 0 and count[31] == 3
    # async_read(0), (2), (4): the error branches never run
    assert count[16] == 3 and count[17] == 0 and count[19] == 0 and count[20] == 0 and count[22] == 3
    assert count[36] is None  # the changed initialiser carries no code
    never = [(ln.line, ln.function) for ln in cov.never_executed()]
    assert never == [(17, "async_read"), (19, "async_read"), (20, "async_read"), (30, "should_retry")]
    patches = {r.name: (r.executed, r.total) for r in cov.per_patch()}
    assert patches["demo: retry reads asynchronously"] == (4, 5)
    functions = {r.name: (r.executed, r.total) for r in cov.per_function()}
    assert functions["lib/demo.c:should_retry"] == (4, 5)
    assert functions["lib/demo.c:async_read"][0] == functions["lib/demo.c:async_read"][1] - 3


def test_two_boots_add_up(tmp_path: Path) -> None:
    data_root, objtree = _real_gcov(tmp_path)
    second = tmp_path / "both" / "guest-2"
    shutil.copytree(data_root, second / "gcov")
    shutil.copytree(data_root, tmp_path / "both" / "guest-1" / "gcov")
    files, _ = coverage.read_gcov_tree(tmp_path / "both", objtree, tmp_path / "work")
    gf = coverage.find_gcov_file(files, "lib/demo.c")
    assert gf is not None and gf.counts[27] == 12


def test_missing_gcno_is_a_note(tmp_path: Path) -> None:
    data_root, objtree = _real_gcov(tmp_path)
    (objtree / "lib" / "demo.gcno").unlink()
    files, notes = coverage.read_gcov_tree(data_root, objtree, tmp_path / "work")
    assert files == {} and "no demo.gcno for lib/demo.gcda" in notes[0]
    cov = coverage.map_coverage(coverage.default_series_lines(_source, DATA / "coverage.toml"), files,
                                _source)
    assert cov.missing_files == ["lib/demo.c"] and cov.total().total == 0


def _report() -> CoverageReport:
    series = [SeriesLine("a.c", 3, "\tx = 1;", "p1 | pipe", "disabled"),
              SeriesLine("a.c", 4, "\ty = 2;", "p1 | pipe", "disabled"),
              SeriesLine("a.c", 9, "\t.f = 1,", "p2", "changed")]
    gf = GcovFile("../../tree/a.c", {3: 5, 4: 0}, {3: "fn", 4: "fn"})
    return coverage.map_coverage(series, {gf.path: gf}, lambda _p: "int fn(void)\n{\n\tx = 1;\n\ty = 2;\n}\n")


def test_markdown_lists_rollups_and_never_executed() -> None:
    md = coverage.coverage_markdown(_report())
    assert "1 of 2 executable series lines executed (50.0%)" in md
    assert "| p1 \\| pipe | 1 | 2 | 50.0 |" in md
    assert "| a.c:fn | 1 | 2 | 50.0 |" in md
    assert "- `a.c:4` (fn, p1 \\| pipe): `y = 2;`" in md
    assert "| p2 | 0 | 0 | no code |" in md and "| a.c:(initialiser) | 0 | 0 | no code |" in md


def test_report_round_trip_and_html(tmp_path: Path) -> None:
    cov = _report()
    again = CoverageReport.from_dict(cov.to_dict())
    assert again.to_dict() == cov.to_dict()
    page = coverage_html.render(cov, lambda _p: "int fn(void)\n{\n\tx = 1;\n\ty = 2;\n}\nif (a<b)\n")
    assert "<tr class='never'><td class='cnt'>4</td><td class='cnt'>0</td>" in page
    assert "<tr class='hit'><td class='cnt'>3</td><td class='cnt'>5</td>" in page
    assert "<tr class='nocode'><td class='cnt'>9</td>" in page
    assert "if (a&lt;b)" in page and "p1 | pipe" in page and "50.0%" in page


def test_blame_lines_on_a_user_tree(tmp_path: Path) -> None:
    repo = tmp_path / "tree"
    repo.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                              text=True).stdout.strip()
    git("init", "-q")
    (repo / "f.c").write_text("a\nb\nc\n")
    git("add", "f.c")
    git("commit", "-qm", "base")
    base = git("rev-parse", "HEAD")
    (repo / "f.c").write_text("a\nnew1\nb\nc\n")
    git("commit", "-qam", "mm: first patch")
    (repo / "f.c").write_text("a\nnew1\nb\nchanged\n")
    git("commit", "-qam", "io_uring: second patch")
    lines = coverage.blame_series_lines(repo, base, "HEAD")
    assert [(s.line, s.text, s.origin) for s in lines] == [(2, "new1", "mm: first patch"),
                                                           (4, "changed", "io_uring: second patch")]


# ---- coverage_run: collection from the guest and the run wrapper ---------------------------------

class _GcovGuest:
    """Answers the reset and the copy script; the copy lays real gcov data out like debugfs would."""

    def __init__(self, data_root: Path, alive: bool = True) -> None:
        self.data_root = data_root
        self.commands: list[str] = []
        self.live = alive

    def run(self, command: str, timeout: float) -> Result:
        self.commands.append(command)
        if markers.emits(command, Marker.GCDA):
            dest = Path(re.search(r'cat "\$f" > "([^"]+)/\$f"', command).group(1))  # type: ignore[union-attr]
            shutil.copytree(self.data_root, dest, dirs_exist_ok=True)
            return Result(["sh"], 0, markers.line(Marker.GCDA, "1") + "\n", "", 0.1)
        return Result(["sh"], 0, "", "", 0.1)

    def console_text(self) -> str:
        return ""

    def alive(self) -> bool:
        return self.live


def _kernel_for(tmp_path: Path, objtree: Path) -> KernelBuild:
    """A 'kernel' whose build dir is the synthetic objtree and whose source link is a git tree."""
    tree = tmp_path / "tree"
    (tree / "lib").mkdir(parents=True)
    shutil.copy(SRC, tree / "lib" / "demo.c")
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "base"]):
        subprocess.run(["git", "-C", str(tree), *args], check=True, capture_output=True)
    commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], check=True, capture_output=True,
                            text=True).stdout.strip()
    (objtree / "source").symlink_to(tree)
    return fake_kernel("coverage", tmp_path, build_dir=objtree, commit=commit, duration=12.5,
                       bzimage=tmp_path / "bz")


def test_collecting_factory_resets_and_copies(tmp_path: Path) -> None:
    data_root, _objtree = _real_gcov(tmp_path)
    guest = _GcovGuest(data_root)

    @contextmanager
    def inner(_k: Path, _d: list[Path], _r: Path) -> Iterator[_GcovGuest]:
        yield guest
    results = tmp_path / "out" / "coverage" / "guest-1"
    results.mkdir(parents=True)
    disk = tmp_path / "out" / "coverage" / "fake-ext4.img"
    with coverage_run.collecting_factory(inner, disk_mb=8)(tmp_path / "bz", [disk], results) as g:
        assert g is guest and disk.stat().st_size == 8 << 20
    assert "echo 0 > /sys/kernel/debug/gcov/reset" in guest.commands[0]
    assert list((results / "gcov").rglob("demo.gcda"))
    assert (results / "gcov-collect.txt").read_text().startswith("exit 0")


def test_dead_guest_loses_its_data_with_a_note(tmp_path: Path) -> None:
    data_root, objtree = _real_gcov(tmp_path)
    guest = _GcovGuest(data_root, alive=False)

    @contextmanager
    def inner(_k: Path, _d: list[Path], _r: Path) -> Iterator[_GcovGuest]:
        yield guest
    vdir = tmp_path / "out" / "coverage"
    (vdir / "guest-1").mkdir(parents=True)
    with coverage_run.collecting_factory(inner, make_disks=False)(tmp_path / "bz", [], vdir / "guest-1"):
        pass
    assert "lost" in (vdir / "guest-1" / "gcov-collect.txt").read_text()
    series = coverage.default_series_lines(_source, DATA / "coverage.toml")
    cov = coverage_run.process(vdir, _kernel_for(tmp_path, objtree), series)
    assert "no gcov data was copied out of any guest" in cov.notes
    assert "guest-1: gcov copy: guest not alive: this boot's gcov data is lost" in cov.notes


def test_run_coverage_end_to_end_on_fakes(tmp_path: Path) -> None:
    data_root, objtree = _real_gcov(tmp_path)
    kernel = _kernel_for(tmp_path, objtree)
    out = tmp_path / "run"

    job = JobResult("fio-iouring", "ext4", "coverage", JobStatus.PASS)

    def run_variant(variant: str, fss: list[str], workloads: list[str], out_dir: Path, progress: Any, /, *,
                    kernel: KernelBuild, guest_factory: Any, catalogue: Any,
                    on_workload: WorkloadHook | None = None) -> VariantRun:
        built = kernel
        for boot in (1, 2):  # a reboot: both boots' data count
            rdir = out_dir / variant / f"guest-{boot}"
            rdir.mkdir(parents=True)

            @contextmanager
            def inner(_k: Path, _d: list[Path], _r: Path) -> Iterator[_GcovGuest]:
                yield _GcovGuest(data_root)
            with coverage_run.collecting_factory(inner, make_disks=False)(built.bzimage, [], rdir):
                pass
        return VariantRun([job], accel="tcg", boots=2)

    series = coverage.default_series_lines(_source, DATA / "coverage.toml")
    cov = coverage_run.run_coverage(out, filesystems=["ext4"], workloads=["fio-iouring"], series=series,
                                    kernel=kernel, run_variant=run_variant)
    assert cov.run == VariantRun([job], accel="tcg", boots=2) and cov.timings["build"] == 12.5
    assert {ln.line: ln.count for ln in cov.lines}[27] == 12  # 6 calls per boot, two boots
    written = coverage_run.load_report(out)
    assert written is not None and written.total().total == cov.total().total
    assert (out / "coverage" / "coverage" / "coverage.html").is_file()
    assert "## Patch coverage" in (out / "coverage" / "coverage" / "coverage.md").read_text()


@pytest.mark.boot
@pytest.mark.real
def test_real_coverage_run_on_ext4(tmp_path: Path) -> None:
    """Real gcov kernel: the page-unlock callback's lines run under the lock_page_async probe."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 not installed")
    spec = load_catalogue()["probe-lock-page-async"]
    small = replace(spec, params={**spec.params, "size_mb": 8, "iterations": 8})  # seconds, not minutes
    cov = coverage_run.run_coverage(tmp_path, filesystems=["ext4"], workloads=[spec.name],
                                    catalogue={spec.name: small})
    assert not cov.missing_files, cov.notes
    functions = {r.name: r for r in cov.per_function()}
    assert functions["io_uring/rw.c:io_async_buf_func"].executed > 0
    assert functions["mm/filemap.c:__folio_lock_async"].executed > 0
    assert 0 < cov.total().executed < cov.total().total
    assert (tmp_path / "coverage" / "coverage" / "coverage.html").is_file()
