"""The real stages of a test-series run: each one the kwb module that does the work, imported plainly.

:mod:`harness.orchestrate.pipeline` only sequences stages it is handed (tests hand it fakes); this module
wires the real ones.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import series
from harness.core.paths import cache_dir
from harness.judge import revcompare
from harness.judge.verdict import VariantInfo
from harness.kernel import apply, build, variants
from harness.kernel import tree as tree_mod
from harness.kernel.build import KernelBuild
from harness.orchestrate import coverage, coverage_run, reuse
from harness.orchestrate.pipeline import Stages
from harness.series import concerns, export
from harness.series.model import Family, Revision
from harness.sources import mailsource
from harness.vm import accel as accel_mod
from harness.workloads import catalogue, runner
from harness.workloads.model import VariantRun, WorkloadSpec


def _load_family(source: str) -> Family:
    return series.find_family(series.load_families(source), None)


def _concern_statuses(family: Family) -> list[dict[str, Any]]:
    catalogue = concerns.load_catalogue()
    titles = {c.id: c.title for c in catalogue}
    checks = concern_checks(catalogue, _workload_catalogue())
    out = []
    for status in concerns.evaluate_family(catalogue, family):
        d = status.to_dict()
        d["title"] = titles.get(d["concern_id"], "")
        d["workloads"] = checks.get(d["concern_id"], [])
        out.append(d)
    return out


def concern_checks(catalogue: list[concerns.Concern],
                   workloads: dict[str, WorkloadSpec]) -> dict[str, list[str]]:
    """Per concern, its checks: the workloads its entry names, then those whose catalogue entry names it.
    Without them the revision comparison said "no check of it ran" for every concern."""
    checks = {c.id: list(c.workloads) for c in catalogue}
    for spec in workloads.values():
        for cid in spec.concerns:
            if cid in checks and spec.name not in checks[cid]:
                checks[cid].append(spec.name)
    return checks


def _choose_source(given: str | None, progress: Callable[[str], None]) -> mailsource.MailChoice:
    return mailsource.resolve(given, progress)


def _workload_catalogue() -> dict[str, WorkloadSpec]:
    specs: dict[str, WorkloadSpec] = catalogue.load_catalogue()
    return specs


def _variant_catalogue() -> list[VariantInfo]:
    return [VariantInfo(v.name, v.kind, v.concern, list(v.flagged_by), v.equivalent)
            for v in variants.load_variants()]


def _build_kernel(variant: str, /, *, tree: Path | None, base: str | None,
                  progress: Callable[[str], None] | None) -> KernelBuild:
    return build.ensure_kernel(variant, tree=tree, base=base, progress=progress)


def _run_variant(name: str, kernel: KernelBuild, filesystems: list[str], workloads: list[str], out_dir: Path,
                 progress: Callable[[str], None], /, *, kind: str, stop_on_flag: bool) -> VariantRun:
    return runner.run_variant(name, filesystems, workloads, out_dir, progress, kernel=kernel, kind=kind,
                              stop_on_flag=stop_on_flag)


def _run_coverage(name: str, kernel: KernelBuild, filesystems: list[str], workloads: list[str], out_dir: Path,
                  progress: Callable[[str], None], /) -> tuple[VariantRun, dict[str, Any]]:
    cov = coverage_run.run_coverage(out_dir, kernel=kernel, filesystems=filesystems, workloads=workloads,
                                    variant=name, progress=progress)
    total = cov.total()
    summary = {"variant": name, "executed": total.executed, "total": total.total,
               "html": f"{name}/coverage/coverage.html", "timings": dict(cov.timings),
               "markdown": coverage.coverage_markdown(cov)}
    assert cov.run is not None  # run_coverage always sets it
    return cov.run, summary


def _apply_revision(tree: Path, base: str | None, revision: Revision, progress: Callable[[str], None]) -> str:
    prepared = tree_mod.prepare_tree(tree, base, progress)
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="revision-") as tmp:
        mbox = export.export_revision(revision, Path(tmp) / f"v{revision.version}.mbx")
        result = apply.apply_patch_files(prepared, [Path(mbox)], f"kwb/series/v{revision.version}",
                                         progress=progress)
    return str(result.head)


def _reuse_key_real(kernel: KernelBuild, filesystems: list[str], workloads: list[str]) -> str | None:
    catalogue = _workload_catalogue()
    accel = accel_mod.choose()
    return reuse.reuse_key(kernel, filesystems, [catalogue[w] for w in workloads if w in catalogue],
                           accel.accel)


def _compare_revisions_real(revisions: list[Revision], jobs: list[dict[str, Any]], variants: dict[int, str],
                            concerns: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    comp = revcompare.compare(revisions, jobs, variants, "baseline", concerns)
    return comp.to_dict(), str(revcompare.markdown(comp))


def real_stages() -> Stages:
    """The stages backed by the other kwb modules."""
    return Stages(load_family=_load_family, concern_statuses=_concern_statuses,
                  variant_catalogue=_variant_catalogue, workload_catalogue=_workload_catalogue,
                  build_kernel=_build_kernel,
                  run_variant=_run_variant, apply_revision=_apply_revision, run_coverage=_run_coverage,
                  reuse_key=_reuse_key_real, compare_revisions=_compare_revisions_real,
                  choose_source=_choose_source)
