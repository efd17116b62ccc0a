"""Reproduce one review concern on demand, into a self-contained bundle that can be re-run.

``reproduce`` builds (or reuses) the variant, boots it, runs the workloads and probes the concern names
in ``concerns.toml`` through :func:`harness.workloads.runner.run_variant`, and records:

* ``bundle.json`` — concern, variant, filesystems, workloads, tree + base + variant commit, kernel
  release, the outcome (status and evidence *shape* per job: which counters were non-zero);
* ``patches/`` — the variant's patch files, ``config`` — the kernel's ``.config``;
* ``guest/`` — per boot the guest command line (``vm.json``: vng argv) and ``console.log``;
* ``commands.log`` / ``commands.jsonl`` — every guest command with its exit code and output;
* ``run/`` — the runner's per-job directories (command, stdout, stderr, dmesg, result.json ...);
* ``summary.md`` and ``repro.sh`` (``kwb concern repro --bundle DIR``).

Probes with phases (the lock_page_async() probe) run one job per phase so the kprobe counts of each
case stay apart.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from harness.core import profile
from harness.core.atomic import write_json, write_text
from harness.core.errors import InfraError, UserError
from harness.core.profile import ReproCase
from harness.core.run import Result
from harness.kernel.build import KernelBuild, ensure_kernel
from harness.kernel.tree import rev_parse
from harness.kernel.variants import get_variant
from harness.series.concerns import load_catalogue as load_concerns
from harness.vm.disks import ensure_disk
from harness.vm.markers import Marker, echo, parse
from harness.workloads import runner
from harness.workloads.catalogue import load_catalogue as load_workloads
from harness.workloads.model import (
    GuestSession,
    JobResult,
    ReportsBoot,
    WorkloadCommand,
    WorkloadSpec,
    wedge_of,
)
from harness.workloads.runner import GuestFactory, VariantRunner

Progress = Callable[[str], None]

BUNDLE_SCHEMA = 1
DISK_MB = 1536  # sparse; room for the probes' scratch files and fs metadata
# What concern repro knows about the series (probe phases, extra and return-value probes, the cases each
# concern asks about) is data: the series profile's [repro] table (harness.core.profile).
RET_LABELS = {-529: "eiocbqueued", -11: "eagain", 0: "0"}
TRACEFS = "/sys/kernel/tracing"
RET_GROUP = "kwbret"
RET_INSTANCE = f"{TRACEFS}/instances/{RET_GROUP}"


Case = ReproCase  # one branch a concern asks about (harness.core.profile.ReproCase)


@dataclass
class ReproRequest:
    """What to reproduce."""

    concern: str
    variant: str = "series"
    filesystems: list[str] = field(default_factory=lambda: ["ext4", "xfs"])
    workloads: list[str] | None = None   # None: the concern's own list
    out: Path = Path("out/concern")


def find_concern(concern_id: str) -> Any:
    """The catalogued concern ``concern_id``; UserError lists the known ids."""
    catalogue = load_concerns()
    for c in catalogue:
        if c.id == concern_id:
            return c
    raise UserError(f"unknown concern {concern_id!r} (known: {', '.join(c.id for c in catalogue)})")


def plan(concern: Any, catalogue: dict[str, WorkloadSpec], workloads: list[str] | None = None,
         filesystems: list[str] | None = None) -> dict[str, WorkloadSpec]:
    """The jobs for ``concern``: its workloads (or the ones named), phased probes split per phase."""
    names = list(workloads or concern.workloads)
    if not names:
        raise UserError(f"concern {concern.id} names no workloads to run (concerns.toml: workloads)")
    unknown = [n for n in names if n not in catalogue]
    if unknown:
        raise UserError(f"concern {concern.id}: unknown workload {', '.join(unknown)} "
                        f"(known: {', '.join(catalogue)})")
    out: dict[str, WorkloadSpec] = {}
    prof = profile.active()
    for name in dict.fromkeys(names):
        spec = catalogue[name]
        phases = prof.repro_phases
        for phase in phases.get(name, ()) if spec.kind == "probe" else ():
            params = {**spec.params, "probe": name, "phase": phase,
                      "extra_kprobes": [*spec.params.get("extra_kprobes", []), *prof.repro_extra_kprobes]}
            out[f"{name}@{phase}"] = replace(spec, name=f"{name}@{phase}", params=params)
        if name not in phases or spec.kind != "probe":
            out[name] = spec
    if filesystems and not any(fs in s.filesystems for s in out.values() for fs in filesystems):
        raise UserError(f"concern {concern.id}: none of its workloads runs on {', '.join(filesystems)}")
    return out


# ---- recording guest ------------------------------------------------------------------------------

class RecordingGuest:
    """Wraps a guest: every command and its output goes to ``commands.log`` / ``commands.jsonl``."""

    def __init__(self, guest: GuestSession, log_dir: Path) -> None:
        self._guest = guest
        self._dir = log_dir
        self._n = 0

    def run(self, command: str, timeout: float) -> Result:
        """Run in the wrapped guest and log the exchange."""
        start = time.time()
        res = self._guest.run(command, timeout)
        self._n += 1
        entry = {"n": self._n, "started": round(start, 3), "command": command, "timeout": timeout,
                 "exit": res.returncode, "timed_out": res.timed_out, "seconds": round(res.duration, 3),
                 "stdout": res.stdout, "stderr": res.stderr}
        with open(self._dir / "commands.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
        with open(self._dir / "commands.log", "a", encoding="utf-8") as fh:
            fh.write(f"### [{self._n}] exit {res.returncode}{' (timed out)' if res.timed_out else ''} "
                     f"in {res.duration:.2f}s\n$ {command}\n{res.stdout}")
            fh.write(f"--- stderr\n{res.stderr}" if res.stderr.strip() else "")
            fh.write("\n")
        return res

    def console_text(self) -> str:
        """The wrapped guest's console."""
        return self._guest.console_text()

    def alive(self) -> bool:
        """The wrapped guest's liveness."""
        return self._guest.alive()

    # What the runner asks a guest beyond GuestSession (model.ReportsBoot, ReportsWedge), passed on.
    @property
    def accel(self) -> str:
        """The wrapped guest's accelerator ("" when it does not say)."""
        return self._guest.accel if isinstance(self._guest, ReportsBoot) else ""

    @property
    def root_mode(self) -> str:
        """The wrapped guest's root ("" when it does not say)."""
        return self._guest.root_mode if isinstance(self._guest, ReportsBoot) else ""

    @property
    def wedge(self) -> dict[str, object] | None:
        """The wrapped guest's wedge report."""
        return wedge_of(self._guest)


class RetProbes:
    """The runner's workload hook for a repro: return-value probes on the functions the series profile
    names for a probe (``[repro]`` retprobes), armed just around that probe's own command, their tally
    kept per job (``<fs>/<workload>``). The runner says which probe a command runs, so no command line is
    read here."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int | None]] = {}

    @contextmanager
    def around(self, guest: GuestSession, command: WorkloadCommand, /) -> Iterator[None]:
        """Arm before ``command`` runs and tally after (inside the probe's own kprobes: see
        :func:`_ret_read_script`); commands of programs with no functions listed run as they are."""
        functions = profile.active().repro_retprobes.get(command.program, ())
        if not functions:
            yield
            return
        armed = guest.run(_ret_arm_script(functions), timeout=60)
        try:
            yield
        finally:
            tally = guest.run(_ret_read_script(functions), timeout=60)
            if tally.ok:
                self.counts[command.job] = parse_ret_tally(armed.stdout + tally.stdout, functions)


def _ret_arm_script(functions: tuple[str, ...]) -> str:
    lines = [f"mkdir -p {RET_INSTANCE} 2>/dev/null; echo 0 > {RET_INSTANCE}/tracing_on"]
    for fn in functions:
        lines.append(f"if echo 'r:{RET_GROUP}/ret_{fn} {fn} ret=$retval:s32' >> {TRACEFS}/kprobe_events "
                     f"2>/dev/null && echo 1 > {RET_INSTANCE}/events/{RET_GROUP}/ret_{fn}/enable; "
                     f"then {echo(Marker.RET, fn)}; else {echo(Marker.RET_REFUSED, fn)}; fi")
    lines += [f"echo > {RET_INSTANCE}/trace; echo 1 > {RET_INSTANCE}/tracing_on", "exit 0"]
    return "\n".join(lines)


def _ret_read_script(functions: tuple[str, ...]) -> str:
    # Disarm before the evidence module's own disarm clears kprobe_events (EBUSY while ours are enabled).
    events = f"{RET_INSTANCE}/events/{RET_GROUP}"
    # One RETHIT marker per (function, return value): its count from uniq -c, read back with builtins.
    hit = r"s/.* ret_\([A-Za-z0-9_]*\): .* ret=\(-\{0,1\}[0-9]*\)$/\1 \2/p"
    overruns = (f"$(grep -h '^overrun' {RET_INSTANCE}/per_cpu/cpu*/stats 2>/dev/null "
                "| awk '{o += $2} END {print o + 0}')")
    lines = [f"echo 0 > {RET_INSTANCE}/tracing_on 2>/dev/null",
             f"[ -d {events} ] && echo 0 > {events}/enable",
             echo(Marker.OVERRUN, overruns),
             f"sed -n '{hit}' {RET_INSTANCE}/trace | sort | uniq -c | while read -r n fn ret; do "
             f"{echo(Marker.RETHIT, '$fn $ret $n')}; done"]
    lines += [f"echo '-:{RET_GROUP}/ret_{fn}' >> {TRACEFS}/kprobe_events 2>/dev/null" for fn in functions]
    lines += [f"rmdir {RET_INSTANCE} 2>/dev/null", "exit 0"]
    return "\n".join(lines)


def parse_ret_tally(text: str, functions: tuple[str, ...]) -> dict[str, int | None]:
    """The arm and read scripts' markers (RET, RETHIT ``<fn> <ret> <count>``, OVERRUN) →
    ``ret_<fn>_<label>`` counts (None: not probed).

    Every function gets ``_eiocbqueued`` and ``_eagain`` keys (0 when probed and never seen); a trace
    buffer overrun is reported as ``ret_overrun`` (counts are then lower bounds).
    """
    said = parse(text)
    counts: dict[str, int | None] = {}
    probed = set(said.payloads(Marker.RET))
    for hit in said.payloads(Marker.RETHIT):
        parts = hit.split()
        if len(parts) != 3 or not (_is_int(parts[1]) and parts[2].isdigit()):
            continue
        fn, ret, n = parts
        probed.add(fn)
        label = RET_LABELS.get(int(ret), ret.replace("-", "neg"))
        key = f"ret_{fn}_{label}"
        counts[key] = (counts.get(key) or 0) + int(n)
    for fn in functions:
        for label in ("eiocbqueued", "eagain"):
            counts.setdefault(f"ret_{fn}_{label}", 0 if fn in probed else None)
    overrun = said.first(Marker.OVERRUN) or ""
    if overrun.isdigit() and int(overrun):
        counts["ret_overrun"] = int(overrun)
    return counts


def _is_int(text: str) -> bool:
    return text.removeprefix("-").isdigit()


def recording_factory(inner: GuestFactory, log_dir: Path, disk_mb: int = DISK_MB) -> GuestFactory:
    """A guest factory that records every command (and makes any disk it is handed that is missing).

    The runner makes its disks itself; a disk that exists is never touched (a re-boot keeps its fs).
    """
    @contextmanager
    def factory(kernel: Path, disks: list[Path], results_dir: Path) -> Iterator[RecordingGuest]:
        for disk in disks:
            ensure_disk(disk, disk_mb)
        with inner(kernel, disks, results_dir) as guest:
            rec = RecordingGuest(guest, log_dir)
            cmdline = rec.run("cat /proc/cmdline; uname -a", timeout=30)
            write_text(results_dir / "guest-cmdline.txt", cmdline.stdout)
            yield rec
    return factory


def default_guest_factory() -> GuestFactory:
    """The runner's real guest factory."""
    return runner.default_guest_factory


# ---- outcome and comparison -------------------------------------------------------------------------

def shape(counts: dict[str, Any]) -> dict[str, str]:
    """The evidence shape of a job: per counter ``>0``, ``0`` or ``n/a`` (could not be probed)."""
    out = {}
    for key, value in sorted(counts.items()):
        out[key] = "n/a" if value is None else (">0" if isinstance(value, int) and value > 0 else "0")
    return out


def outcome(jobs: list[JobResult],
            retcounts: dict[str, dict[str, int | None]] | None = None) -> dict[str, Any]:
    """Per job (``fs/workload``): status, evidence shape, counts (kprobes, return values, probe's own)."""
    out: dict[str, Any] = {}
    for job in jobs:
        counts = dict(job.evidence.get("counts", {}) or {})
        counts.update((retcounts or {}).get(f"{job.fs}/{job.workload}", {}))
        counts.update({k: v for k, v in job.metrics.items()
                       if isinstance(v, int) and k.endswith("_at_submit")})
        out[f"{job.fs}/{job.workload}"] = {"status": job.status.value, "reason": job.reason,
                                          "shape": shape(counts), "counts": counts}
    return out


def cases(concern_id: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per filesystem and case: the counters that mark it and whether all were > 0 with a passing job."""
    rows = []
    for case in profile.active().repro_cases.get(concern_id, ()):
        for key, job in sorted(result.items()):
            fs, workload = key.split("/", 1)
            if workload != case.job:
                continue
            counts = {c: _first(job["counts"], c) for c in case.counters}
            shown = job["status"] == "pass" and all(isinstance(v, int) and v > 0 for v in counts.values())
            rows.append({"case": case.name, "fs": fs, "job": workload, "counts": counts, "shown": shown,
                         "status": job["status"], "means": case.means})
    return rows


def _first(counts: dict[str, Any], spec: str) -> Any:
    """``a|b``: the first alternative that was counted (kernel eras spell functions differently)."""
    values = [counts.get(alt) for alt in spec.split("|")]
    counted = [v for v in values if v is not None]
    return next((v for v in counted if isinstance(v, int) and v > 0), counted[0] if counted else None)


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Differences between two outcomes (statuses and evidence shapes); empty when the same."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        if key not in new or key not in old:
            diffs.append(f"{key}: only in the {'saved' if key in old else 'new'} run")
            continue
        a, b = old[key], new[key]
        if a["status"] != b["status"]:
            diffs.append(f"{key}: status {a['status']} -> {b['status']} ({b.get('reason', '')})")
        for counter in sorted(set(a["shape"]) | set(b["shape"])):
            sa, sb = a["shape"].get(counter, "-"), b["shape"].get(counter, "-")
            if sa != sb:
                diffs.append(f"{key}: {counter} {sa} -> {sb}")
    return diffs


# ---- the run ----------------------------------------------------------------------------------------

@dataclass
class ReproResult:
    """What ``reproduce`` did."""

    bundle: Path
    outcome: dict[str, Any]
    cases: list[dict[str, Any]]
    jobs: list[JobResult]

    @property
    def ok(self) -> bool:
        """Every job passed/skipped and every case of the concern was shown."""
        return not any(j.failed for j in self.jobs) and all(c["shown"] for c in self.cases)


class BuildFn(Protocol):
    """How a repro gets its kernel (:func:`harness.kernel.build.ensure_kernel`; tests hand a fake)."""

    def __call__(self, variant: str, /, *, progress: Progress | None) -> KernelBuild: ...


def reproduce(req: ReproRequest, *, progress: Progress | None = None,
              guest_factory: GuestFactory | None = None, build: BuildFn | None = None,
              run_variant: VariantRunner | None = None,
              catalogue: dict[str, WorkloadSpec] | None = None) -> ReproResult:
    """Build + boot ``req.variant``, run the concern's jobs, write the bundle to ``req.out``."""
    say = progress or (lambda _m: None)
    concern = find_concern(req.concern)
    specs = plan(concern, catalogue if catalogue is not None else load_workloads(), req.workloads,
                 req.filesystems)
    bundle = req.out
    if (bundle / "bundle.json").exists():
        raise UserError(f"{bundle} already holds a bundle: choose another --out")
    bundle.mkdir(parents=True, exist_ok=True)
    kernel: KernelBuild | None = None
    build_seconds: float | None = None
    meta: dict[str, Any] = {"schema": BUNDLE_SCHEMA, "concern": concern.to_dict(), "variant": req.variant,
                            "filesystems": req.filesystems, "workloads": req.workloads,
                            "jobs_planned": list(specs), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                   time.gmtime())}
    jobs: list[JobResult] = []
    retprobes = RetProbes()
    start = time.monotonic()
    try:
        factory = recording_factory(guest_factory or default_guest_factory(), bundle)
        built = time.monotonic()
        kernel = (build or ensure_kernel)(req.variant, progress=say)
        build_seconds = round(time.monotonic() - built, 2)
        jobs = (run_variant or runner.run_variant)(req.variant, req.filesystems, list(specs),
                                                   bundle / "run", say, kernel=kernel, guest_factory=factory,
                                                   catalogue=specs, on_workload=retprobes.around).jobs
    finally:
        meta["run_seconds"] = round(time.monotonic() - start, 2)  # the build included, as it always was
        meta.update(_kernel_meta(req.variant, kernel, build_seconds))
        result = outcome(jobs, retprobes.counts)
        meta["outcome"] = result
        meta["cases"] = cases(concern.id, result)
        _finish_bundle(bundle, meta, kernel)
    return ReproResult(bundle, result, meta["cases"], jobs)


def _kernel_meta(variant: str, kernel: KernelBuild | None, build_seconds: float | None) -> dict[str, Any]:
    if kernel is None:
        return {"kernel": None}
    info: dict[str, Any] = {"release": kernel.release, "commit": kernel.commit,
                            "bzimage": str(kernel.bzimage),
                            "build_dir": str(kernel.build_dir), "build_seconds": build_seconds}
    info.update(_tree_meta(kernel))
    try:
        info["patches"] = [{"name": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
                           for p in get_variant(variant).patches]
    except UserError as exc:
        info["patches_error"] = str(exc)
    return {"kernel": info}


def _tree_meta(kernel: KernelBuild) -> dict[str, str]:
    """Tree path and base commit, read from the build directory's ``source`` link (kbuild makes it)."""
    source = kernel.build_dir / "source"
    if not source.exists():
        return {}
    tree = source.resolve()
    base = rev_parse(tree, "kwb/base") or ""
    return {"tree": str(tree), "base": base}


def _finish_bundle(bundle: Path, meta: dict[str, Any], kernel: KernelBuild | None) -> None:
    """Copy patches, config and guest records in; write bundle.json, summary.md and repro.sh."""
    try:
        (bundle / "patches").mkdir(exist_ok=True)
        patches = get_variant(meta["variant"]).patches
        for p in patches:
            shutil.copy2(p, bundle / "patches" / p.name)
        write_text(bundle / "patches" / "series", "".join(f"{p.name}\n" for p in patches))
    except UserError as exc:
        meta["patches_error"] = str(exc)
    config = kernel.config if kernel is not None else None
    if config is not None and config.is_file():
        shutil.copy2(config, bundle / "config")
    for guest_dir in sorted((bundle / "run" / meta["variant"]).glob("guest-*")):
        dest = bundle / "guest" / guest_dir.name
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("vm.json", "console.log", "guest-cmdline.txt"):
            if (guest_dir / name).is_file():
                shutil.copy2(guest_dir / name, dest / name)
    for img in (bundle / "run").rglob("*.img"):
        img.unlink()  # scratch disks: large, and recreated by a re-run
    write_json(bundle / "bundle.json", meta)
    write_text(bundle / "summary.md", summary_markdown(meta))
    script = _REPRO_SH.format(concern=meta["concern"]["id"], variant=meta["variant"])
    write_text(bundle / "repro.sh", script)
    (bundle / "repro.sh").chmod(0o755)


_REPRO_SH = """#!/bin/sh
# Re-run concern {concern} on variant {variant} exactly as recorded in bundle.json, and say whether the
# outcome (job statuses and which path counters were non-zero) is the same. From a clean kwb checkout:
#   make setup && PATH=$PWD/.venv/bin:$PATH sh /path/to/this/bundle/repro.sh
# Exit 0: same outcome; 1: different (differences printed); 2/3: could not run.
here=$(cd "$(dirname "$0")" && pwd)
exec "${{KWB:-kwb}}" concern repro --bundle "$here" "$@"
"""


def summary_markdown(meta: dict[str, Any]) -> str:
    """A human-readable account of the bundle."""
    c = meta["concern"]
    k = meta.get("kernel") or {}
    out = [f"# Concern {c['id']}: {c['title']}", "",
           f"Raised by {c['raised_by']} (message {c['message_id']}).", "",
           f"Variant `{meta['variant']}`, kernel {k.get('release', '?')} "
           f"(commit {str(k.get('commit', ''))[:12]}, tree {k.get('tree', '?')}, "
           f"base {str(k.get('base', ''))[:12]}), filesystems {', '.join(meta['filesystems'])}; "
           f"run {meta.get('run_seconds', 0):.0f} s.", ""]
    if meta.get("cases"):
        out += ["## Cases", "", "| case | fs | counts | shown |", "|---|---|---|---|"]
        for row in meta["cases"]:
            counts = ", ".join(f"{n} {v}" for n, v in row["counts"].items())
            out.append(f"| {row['case']} | {row['fs']} | {counts} | {'yes' if row['shown'] else 'NO'} |")
        out.append("")
    out += ["## Jobs", "", "| job | status | non-zero counters |", "|---|---|---|"]
    for key, job in meta.get("outcome", {}).items():
        nz = ", ".join(f"{n} {job['counts'][n]}" for n, s in job["shape"].items() if s == ">0")
        out.append(f"| {key} | {job['status']} | {nz} |")
    return "\n".join(out) + "\n"


def load_bundle(bundle: Path) -> dict[str, Any]:
    """``bundle.json`` of a saved bundle; UserError when it is not one."""
    path = bundle / "bundle.json"
    if not path.is_file():
        raise UserError(f"{bundle}: not a kwb concern bundle (no bundle.json)")
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON: {exc}") from exc
    if data.get("schema") != BUNDLE_SCHEMA or "outcome" not in data:
        raise UserError(f"{path}: unsupported bundle (schema {data.get('schema')!r})")
    return data


def rerun(bundle: Path, **kwargs: Any) -> tuple[ReproResult, list[str]]:
    """Re-run a saved bundle into ``<bundle>/rerun-<n>`` and compare outcomes (statuses + shapes)."""
    saved = load_bundle(bundle)
    n = 1
    while (bundle / f"rerun-{n}").exists():
        n += 1
    req = ReproRequest(concern=saved["concern"]["id"], variant=saved["variant"],
                       filesystems=list(saved["filesystems"]), workloads=saved.get("workloads"),
                       out=bundle / f"rerun-{n}")
    new = reproduce(req, **kwargs)
    diffs = compare(saved["outcome"], new.outcome)
    old_patches = (saved.get("kernel") or {}).get("patches")
    new_meta = load_bundle(new.bundle)
    if old_patches is not None and old_patches != (new_meta.get("kernel") or {}).get("patches"):
        diffs.append("the variant's patches differ from the saved bundle's (name or sha256)")
    if not new.jobs:
        raise InfraError(f"re-run of {bundle} produced no jobs (see {new.bundle})")
    return new, diffs
