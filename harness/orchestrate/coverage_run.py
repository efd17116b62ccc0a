"""A coverage run: the gcov variant through the normal runner, gcov data copied out of each boot, mapped.

``run_coverage`` is what the pipeline calls for a ``kind = "coverage"`` variant (``make test-series
COVERAGE=1``): the variant builds into its own build directory (its configuration differs), so the other
variants stay uninstrumented; counters are reset when a guest comes up and copied out of
``/sys/kernel/debug/gcov`` before it goes down (after a crash, that boot's data is lost and noted).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.core.atomic import write_json, write_text
from harness.core.errors import InfraError
from harness.kernel import build as kernel_build
from harness.kernel.build import KernelBuild
from harness.orchestrate import coverage, coverage_html
from harness.orchestrate.coverage import CoverageReport
from harness.vm.disks import ensure_disk
from harness.vm.markers import Marker, echo
from harness.workloads import runner
from harness.workloads.model import GuestSession, WorkloadSpec
from harness.workloads.runner import GuestFactory, VariantRunner

Progress = Callable[[str], None]

GCOV_DIR = "/sys/kernel/debug/gcov"
COPY_TIMEOUT = 300.0
DISK_MB = 2304  # sparse; the fio data file is 1 GiB


def _copy_script(dest: Path) -> str:
    # debugfs files report size 0 to cp's fast paths on some kernels: cat each one.
    return "\n".join([
        f"[ -d {GCOV_DIR} ] || mount -t debugfs none /sys/kernel/debug 2>/dev/null",
        f"[ -d {GCOV_DIR} ] || {{ echo 'no {GCOV_DIR} (CONFIG_GCOV_KERNEL off?)' >&2; exit 3; }}",
        f"cd {GCOV_DIR} && n=0",
        "for f in $(find . -name '*.gcda'); do",
        f"  mkdir -p \"{dest}/$(dirname \"$f\")\" && cat \"$f\" > \"{dest}/$f\" && n=$((n+1))",
        "done",
        echo(Marker.GCDA, "$n"),
    ])


def collecting_factory(inner: GuestFactory, *, make_disks: bool = True,
                       disk_mb: int = DISK_MB) -> GuestFactory:
    """Wrap a guest factory: reset gcov counters after boot, copy the .gcda files out before shutdown.

    The data of boot N lands in ``<results_dir>/gcov`` (results_dir is the guest's writable host dir).
    """
    @contextmanager
    def factory(kernel: Path, disks: list[Path], results_dir: Path) -> Iterator[GuestSession]:
        if make_disks:
            for disk in disks:  # the runner makes its own; only a missing one is made here
                ensure_disk(disk, disk_mb)
        with inner(kernel, disks, results_dir) as guest:
            reset = guest.run(f"[ -d {GCOV_DIR} ] || mount -t debugfs none /sys/kernel/debug 2>/dev/null; "
                              f"echo 0 > {GCOV_DIR}/reset", timeout=60)
            write_text(results_dir / "gcov-reset.txt", f"exit {reset.returncode}\n{reset.stderr}")
            try:
                yield guest
            finally:
                _collect(guest, results_dir)
    return factory


def _collect(guest: GuestSession, results_dir: Path) -> None:
    dest = results_dir.resolve() / "gcov"
    if not guest.alive():
        write_text(results_dir / "gcov-collect.txt", "guest not alive: this boot's gcov data is lost\n")
        return
    res = guest.run(_copy_script(dest), timeout=COPY_TIMEOUT)
    write_text(results_dir / "gcov-collect.txt",
               f"exit {res.returncode}{' (timed out)' if res.timed_out else ''}\n{res.stdout}{res.stderr}")


def process(variant_dir: Path, kernel: KernelBuild,
            series: list[coverage.SeriesLine] | None = None) -> CoverageReport:
    """Map every boot's gcov data under ``variant_dir/guest-*/gcov`` onto the series' lines."""
    tree_source = _tree_source(kernel)
    lines = series if series is not None else coverage.default_series_lines(tree_source)
    notes: list[str] = []
    data = [d for d in sorted(variant_dir.glob("guest-*/gcov")) if d.is_dir()]
    files: dict[str, coverage.GcovFile] = {}
    for d in data:
        work = variant_dir / "gcov-work" / d.parent.name
        got, why = coverage.read_gcov_tree(d, kernel.build_dir, work)
        notes += why
        for path, gf in got.items():
            if path in files:
                files[path].merge(gf)
            else:
                files[path] = gf
    for status in sorted(variant_dir.glob("guest-*/gcov-collect.txt")):
        first = status.read_text(encoding="utf-8").splitlines()[:1]
        if first and first[0] != "exit 0":
            notes.append(f"{status.parent.name}: gcov copy: {first[0]}")
    if not data:
        notes.append("no gcov data was copied out of any guest")
    cov = coverage.map_coverage(lines, files, tree_source)
    cov.notes += notes
    return cov


def _tree_source(kernel: KernelBuild) -> coverage.SourceFn:
    """Sources at the kernel's commit (the shared work tree may have another variant checked out)."""
    tree = (kernel.build_dir / "source").resolve()
    if not tree.is_dir():
        raise InfraError(f"kernel build dir {kernel.build_dir} has no source link: cannot read the tree")
    return coverage.git_source(tree, kernel.commit)


def write_outputs(out: Path, cov: CoverageReport, source: coverage.SourceFn) -> None:
    """coverage.json, coverage.md and coverage.html in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "coverage.json", cov.to_dict())
    write_text(out / "coverage.md", coverage.coverage_markdown(cov))
    write_text(out / "coverage.html", coverage_html.render(cov, source))


def run_coverage(out_dir: Path, *, filesystems: list[str], workloads: list[str], variant: str = "coverage",
                 kernel: KernelBuild | None = None, progress: Progress | None = None,
                 guest_factory: GuestFactory | None = None, run_variant: VariantRunner | None = None,
                 series: list[coverage.SeriesLine] | None = None,
                 catalogue: dict[str, WorkloadSpec] | None = None) -> CoverageReport:
    """Run the coverage variant's ``kernel`` (built here when None), collect gcov from each boot, write
    ``<out>/<variant>/coverage/``.

    The returned report carries the run (jobs, accelerator, boots) and the timings (``build`` s: the
    kernel's own build time, else how long getting it took here; ``run`` s = workloads incl. boots and gcov
    copying; ``process`` s = host gcov + mapping). ``series``: the lines to map (default: the default
    tree's); ``catalogue``: workload specs to use instead of the packaged catalogue (tests: smaller probes).
    """
    fetched = 0.0
    if kernel is None:
        start = time.monotonic()
        kernel = kernel_build.ensure_kernel(variant, progress=progress)
        fetched = time.monotonic() - start
    start = time.monotonic()
    factory = collecting_factory(guest_factory or runner.default_guest_factory)
    ran = (run_variant or runner.run_variant)(variant, filesystems, workloads, out_dir, progress,
                                               kernel=kernel, guest_factory=factory, catalogue=catalogue)
    run_seconds = time.monotonic() - start
    variant_dir = out_dir / variant
    for img in variant_dir.glob("fake-*.img"):
        img.unlink()  # the scratch disks the factory made
    t_process = time.monotonic()
    cov = process(variant_dir, kernel, series)
    cov.run = ran
    cov.timings = {"build": round(kernel.duration or fetched, 1),
                   "run": round(run_seconds, 1), "process": round(time.monotonic() - t_process, 1)}
    write_outputs(variant_dir / "coverage", cov, _tree_source(kernel))
    return cov


def load_report(run_dir: Path, variant: str = "coverage") -> CoverageReport | None:
    """The coverage report a run wrote (for the report's coverage section), or None."""
    path = run_dir / variant / "coverage" / "coverage.json"
    if not path.is_file():
        return None
    return CoverageReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
