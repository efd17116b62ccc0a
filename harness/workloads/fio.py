"""fio workloads: the cover letter's 4k random buffered reads at QD32, repeated, with path evidence.

One job = one catalogue entry on one target: lay out the data file once per filesystem, then per repeat
drop the page cache, run fio (``--output-format=json``) with io-wq threads sampled alongside, and read the
kprobe counters. Metrics are summarised as median and spread; must_show checks are computed from the
counters (harness.workloads.evidence), never assumed.
"""

from __future__ import annotations

import json
import re
import shlex
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.core.atomic import write_json
from harness.core.errors import InfraError, UserError
from harness.core.run import Result
from harness.vm.markers import Marker, Markers, echo, echo_section, parse
from harness.workloads import evidence, model
from harness.workloads.model import GuestSession, JobResult, JobStatus, Target, WorkloadSpec, write_job_files

ENGINES = ("io_uring", "psync", "pvsync2", "sync")
CHECKS = tuple(evidence.CHECKS)
LAYOUT_MB_PER_S_FLOOR = 20.0   # TCG writes far faster than this; it only bounds the layout step
REPEAT_SLACK = 60.0            # fio start-up, cache invalidation and JSON output under TCG
PERCENTILES = {"p50": "50.000000", "p90": "90.000000", "p99": "99.000000", "p99.9": "99.900000"}
SUMMARY_KEYS = ("iops", "bw_kib", "clat_mean_us", "clat_p50_us", "clat_p99_us", "clat_p99.9_us",
                "usr_cpu", "sys_cpu", "ctx", "cpu_per_io_us", "guest_busy_pct", "guest_cpu_per_io_us",
                "wall_s", "fio_wall_s")


@dataclass(frozen=True)
class FioParams:
    """The ``[params]`` table of a fio workload."""

    ioengine: str = "io_uring"
    force_async: bool = False
    rw: str = "randread"
    bs: str = "4k"
    iodepth: int = 32
    size_mb: int = 1024
    runtime: int = 10
    repeats: int = 3
    drop_caches: bool = True
    invalidate: bool = True

    @classmethod
    def from_dict(cls, params: dict[str, Any], where: str = "fio params") -> FioParams:
        """Validate ``params``; UserError names the field."""
        fields = cls.__dataclass_fields__
        for key, value in params.items():
            if key not in fields:
                raise UserError(f"{where}: unknown field 'params.{key}' (known: {', '.join(fields)})")
            want = type(getattr(cls(), key))
            if type(value) is not want:
                raise UserError(f"{where}: field 'params.{key}' must be {want.__name__}, got {value!r}")
        p = cls(**params)
        if p.ioengine not in ENGINES:
            known = ", ".join(ENGINES)
            raise UserError(f"{where}: field 'params.ioengine' is {p.ioengine!r} (known: {known})")
        if p.force_async and p.ioengine != "io_uring":
            raise UserError(f"{where}: field 'params.force_async' needs ioengine io_uring")
        for name in ("iodepth", "size_mb", "runtime", "repeats"):
            if getattr(p, name) < 1:
                raise UserError(f"{where}: field 'params.{name}' must be >= 1")
        return p


def validate_params(params: dict[str, Any], where: str) -> None:
    """Catalogue hook: reject bad fio params before anything boots."""
    FioParams.from_dict(params, where)


def data_file(target: Target, p: FioParams) -> str:
    """The file (or device) fio reads; one data file per size, shared by every fio job on the fs."""
    if target.mount is None:
        return target.device
    return f"{target.mount}/kwb-fio/data-{p.size_mb}M"


def fio_argv(spec: WorkloadSpec, p: FioParams, filename: str) -> list[str]:
    """The fio command line of one repeat (buffered: direct=0)."""
    argv = ["fio", f"--name={spec.name}", f"--filename={filename}", f"--size={p.size_mb}M",
            f"--rw={p.rw}", f"--bs={p.bs}", f"--iodepth={p.iodepth}", f"--ioengine={p.ioengine}"]
    if p.force_async:
        argv.append("--force_async=1")
    argv += ["--direct=0", f"--invalidate={int(p.invalidate)}", "--time_based=1", f"--runtime={p.runtime}",
             "--numjobs=1", "--group_reporting=1", "--output-format=json"]
    return argv


def layout_argv(filename: str, p: FioParams) -> list[str]:
    """fio writing the data file once (real data: reads of unwritten extents would never block)."""
    return ["fio", "--name=kwb-layout", f"--filename={filename}", f"--size={p.size_mb}M", "--rw=write",
            "--bs=1M", "--ioengine=psync", "--end_fsync=1", "--output-format=json"]


def extract_json(text: str) -> dict[str, Any]:
    """fio's JSON document, with any text fio printed around it trimmed."""
    m = re.search(r"^\{", text, re.MULTILINE)
    if m is None:
        raise ValueError("no JSON object in fio output")
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[m.start():])
    except json.JSONDecodeError as exc:
        raise ValueError(f"fio JSON unparsable: {exc}") from exc
    if not isinstance(obj, dict) or not obj.get("jobs"):
        raise ValueError("fio JSON has no jobs")
    return obj


def parse_fio(data: dict[str, Any]) -> dict[str, Any]:
    """IOPS, bandwidth, latency percentiles (µs), usr/sys CPU and context switches of the first job."""
    job = data["jobs"][0]
    rd = job["read"]
    clat = rd.get("clat_ns", {})
    pct = clat.get("percentile", {})
    runtime_s = rd.get("runtime", job.get("job_runtime", 0)) / 1000.0
    ios = int(rd.get("total_ios", 0))
    cpu = (float(job.get("usr_cpu", 0.0)) + float(job.get("sys_cpu", 0.0))) / 100.0
    out: dict[str, Any] = {
        "error": int(job.get("error", 0)), "iops": float(rd.get("iops", 0.0)), "bw_kib": int(rd.get("bw", 0)),
        "total_ios": ios, "runtime_s": runtime_s,
        "clat_mean_us": round(float(clat.get("mean", 0.0)) / 1000.0, 2),
        "lat_mean_us": round(float(rd.get("lat_ns", {}).get("mean", 0.0)) / 1000.0, 2),
        "usr_cpu": float(job.get("usr_cpu", 0.0)), "sys_cpu": float(job.get("sys_cpu", 0.0)),
        "ctx": int(job.get("ctx", 0)), "majf": int(job.get("majf", 0)), "minf": int(job.get("minf", 0)),
        "cpu_per_io_us": round(cpu * runtime_s / ios * 1e6, 3) if ios else None,
    }
    for label, key in PERCENTILES.items():
        out[f"clat_{label}_us"] = round(pct[key] / 1000.0, 2) if key in pct else None
    return out


def parse_stat(line: str) -> tuple[int, int]:
    """``cpu  user nice system idle iowait ...`` → (busy, total) jiffies."""
    vals = [int(x) for x in line.split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals) - idle, sum(vals)


def summarise(values: list[float]) -> dict[str, Any]:
    """Median and spread (min, max, stdev) of one metric over repeats."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "stdev": round(statistics.stdev(values), 3) if len(values) > 1 else 0.0, "values": values}


def _snapshot(tag: Marker) -> str:
    # CPU counters and uptime around fio, read with shell builtins (no fork under TCG).
    return "read -r KWB_S < /proc/stat; read -r KWB_U KWB_X < /proc/uptime; " + echo(tag, '"$KWB_U $KWB_S"')


class _Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.total = seconds

    def left(self, want: float) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 1:
            raise TimeoutError(f"job exceeded its timeout of {self.total:.0f}s")
        return min(want, remaining)


class _Job:
    """State of one fio job while it runs; ``finish`` turns it into a JobResult."""

    def __init__(self, guest: GuestSession, spec: WorkloadSpec, target: Target, job_dir: Path,
                 hook: model.WorkloadHook | None) -> None:
        self.guest, self.spec, self.target, self.job_dir, self.hook = guest, spec, target, job_dir, hook
        self.p = FioParams.from_dict(spec.params, str(spec.source or spec.name))
        self.budget = _Budget(spec.timeout)
        self.commands: list[str] = []
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.exitcode: int | None = None
        self.repeats: list[dict[str, Any]] = []
        self.evidence: dict[str, Any] = {}

    def guest_run(self, label: str, script: str, want: float) -> Result:
        self.commands.append(f"# {label}\n{script}")
        res = self.guest.run(script, timeout=self.budget.left(want))
        self.stdout.append(f"### {label} (exit {res.returncode})\n{res.stdout}")
        self.stderr.append(f"### {label}\n{res.stderr}" if res.stderr else "")
        self.exitcode = res.returncode
        if res.timed_out:
            raise TimeoutError(f"{label} did not finish within {res.duration:.0f}s")
        return res

    def layout(self, filename: str) -> float | None:
        if self.target.mount is None:
            return None
        size = self.p.size_mb * 1024 * 1024
        q = shlex.quote(filename)
        check = f"[ \"$(stat -c %s {q} 2>/dev/null)\" = {size} ] && {echo(Marker.LAID_OUT)}; exit 0"
        if parse(self.guest_run("check data file", check, 60).stdout).has(Marker.LAID_OUT):
            return 0.0
        script = f"mkdir -p {shlex.quote(str(Path(filename).parent))} && rm -f {q} && " \
                 f"{shlex.join(layout_argv(filename, self.p))} > /dev/null"
        start = time.monotonic()
        res = self.guest_run("lay out data file", script, 60 + self.p.size_mb / LAYOUT_MB_PER_S_FLOOR)
        if not res.ok:
            why = f"laying out {filename} failed (exit {res.returncode}): {res.tail(1)}"
            raise _Failed(JobStatus.FAIL, why)
        return round(time.monotonic() - start, 2)

    def one_repeat(self, n: int, argv: list[str], kprobes: evidence.Kprobes) -> None:
        drop = "sync; echo 3 > /proc/sys/vm/drop_caches; " if self.p.drop_caches else ""
        # The counters are read inside the repeat's own command, right around fio.
        inner = "\n".join([f"{drop}{kprobes.read_script(Marker.KPROBES_BEFORE)}",
                           _snapshot(Marker.STAT_BEFORE),
                           echo_section(Marker.FIO, f"{shlex.join(argv)}\nKWB_FIO_RC=$?"),
                           _snapshot(Marker.STAT_AFTER), kprobes.read_script(Marker.KPROBES_AFTER),
                           "(exit $KWB_FIO_RC)"])
        script = evidence.with_iowq_sampler(inner, f"/tmp/kwb-iowq-{self.spec.name}-{n}.txt")
        told = model.WorkloadCommand(self.spec, self.target, "fio", script)
        with model.around(self.hook, self.guest, told):
            res = self.guest_run(f"repeat {n}", script, self.p.runtime + REPEAT_SLACK)
        out = parse(res.stdout)
        if not res.ok:
            raise _Failed(JobStatus.FAIL, f"fio exited {res.returncode} on repeat {n}: {res.tail(1)}")
        try:
            data = extract_json(out.section(Marker.FIO) or "")
        except ValueError as exc:
            raise _Failed(JobStatus.FAIL, f"repeat {n}: {exc}") from exc
        write_json(self.job_dir / f"fio-{n}.json", data)
        metrics = parse_fio(data)
        if metrics["error"]:
            raise _Failed(JobStatus.FAIL, f"fio reported error {metrics['error']} on repeat {n}")
        metrics.update(_guest_cpu(out, metrics["total_ios"]))
        before = kprobes.parse_read(out, Marker.KPROBES_BEFORE)
        after = kprobes.parse_read(out, Marker.KPROBES_AFTER)
        metrics["kprobe_hits"] = {r: after[r][0] - before.get(r, (0, 0))[0] for r in after}
        metrics["kprobe_misses"] = {r: after[r][1] - before.get(r, (0, 0))[1] for r in after}
        metrics["iowq_workers"] = evidence.iowq_samples(out)
        metrics["wall_s"] = round(res.duration, 2)  # the whole repeat in the guest: the ≤ 15 s TCG target
        self.repeats.append(metrics)

    def run(self) -> JobResult:
        start = time.monotonic()
        try:
            self.execute()
            return self.finish(JobStatus.PASS, "", start)
        except _Failed as exc:
            return self.finish(exc.status, exc.reason, start)
        except TimeoutError as exc:
            return self.finish(JobStatus.TIMEOUT, str(exc), start)
        except InfraError as exc:
            return self.finish(JobStatus.ERROR, str(exc), start)

    def execute(self) -> None:
        which = self.guest_run("find fio", f"command -v fio || {echo(Marker.NO_FIO)}", 30)
        if parse(which.stdout).has(Marker.NO_FIO) or not which.stdout.strip():
            raise _Failed(JobStatus.ERROR, "fio not found in guest")
        filename = data_file(self.target, self.p)
        self.evidence["layout_s"] = self.layout(filename)
        probe_set = evidence.discover(self.guest)
        self.evidence["probes"] = probe_set.to_dict()
        kprobes = evidence.Kprobes(self.guest, probe_set)
        try:
            kprobes.arm()
            self.evidence["probes"] = probe_set.to_dict()  # refused probes now carry their reason
            argv = fio_argv(self.spec, self.p, filename)
            for n in range(1, self.p.repeats + 1):
                self.one_repeat(n, argv, kprobes)
        finally:
            if self.guest.alive():
                kprobes.disarm()
        counts = evidence.counts_for(probe_set, self._total("kprobe_hits"))
        self.evidence["counts"] = counts
        ios = sum(r["total_ios"] for r in self.repeats)
        self.evidence["path"] = evidence.path_taken(counts, ios)
        checks = [self._check(name, counts, ios) for name in self.spec.checks()]
        self.evidence["checks"] = [c.__dict__ for c in checks]
        failed = [c for c in checks if not c.ok]
        if failed:
            raise _Failed(JobStatus.FAIL, "; ".join(f"{c.name} not shown: {c.reason}" for c in failed))

    def _check(self, name: str, counts: dict[str, int | None], ios: int) -> evidence.Check:
        fn = evidence.CHECKS.get(name)
        if fn is None:
            return evidence.Check(name, False, f"unknown check {name!r} for kind fio")
        return fn(counts, ios)

    def _total(self, key: str) -> dict[str, int]:
        total: dict[str, int] = {}
        for r in self.repeats:
            for role, n in r.get(key, {}).items():
                total[role] = total.get(role, 0) + n
        return total

    def finish(self, status: JobStatus, reason: str, start: float) -> JobResult:
        write_job_files(self.job_dir, "\n\n".join(self.commands), "\n".join(self.stdout),
                        "".join(self.stderr), self.exitcode)
        metrics: dict[str, Any] = {"repeats": len(self.repeats), "params": asdict(self.p),
                                   "per_repeat": self.repeats,
                                   # fio's own measured runtime: the rest of the job's wall is overhead
                                   "workload_s": round(sum(float(r["runtime_s"]) for r in self.repeats), 2)}
        for key in SUMMARY_KEYS:
            vals = [r[key] for r in self.repeats if r.get(key) is not None]
            if vals:
                metrics[key] = summarise(vals)
        if self.repeats:
            workers = [r["iowq_workers"]["max"] for r in self.repeats if r["iowq_workers"]["max"] is not None]
            self.evidence["iowq_workers_max"] = max(workers) if workers else None
        return JobResult(workload=self.spec.name, fs=self.target.fs, variant="", status=status, reason=reason,
                         command="\n".join(c for c in self.commands if "fio --name" in c),
                         exitcode=self.exitcode, duration=round(time.monotonic() - start, 2),
                         metrics=metrics, evidence=self.evidence, job_dir=str(self.job_dir))


class _Failed(Exception):
    def __init__(self, status: JobStatus, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def _guest_cpu(out: Markers, ios: int) -> dict[str, Any]:
    # Guest-wide CPU (covers io-wq workers and task_work wherever they run), from /proc/stat deltas.
    snaps = [(out.first(tag) or "").split(None, 1) for tag in (Marker.STAT_BEFORE, Marker.STAT_AFTER)]
    if any(len(snap) != 2 for snap in snaps):
        return {"guest_busy_pct": None, "guest_cpu_per_io_us": None, "fio_wall_s": None}
    (up0, stat0), (up1, stat1) = snaps
    b0, t0 = parse_stat(stat0)
    b1, t1 = parse_stat(stat1)
    busy, total = b1 - b0, t1 - t0
    user_hz = 100  # USER_HZ is 100 on x86 regardless of CONFIG_HZ
    return {"guest_busy_pct": round(100.0 * busy / total, 2) if total else None,
            "guest_cpu_per_io_us": round(busy / user_hz / ios * 1e6, 3) if ios else None,
            "fio_wall_s": round(float(up1) - float(up0), 2)}


def run_job(guest: GuestSession, spec: WorkloadSpec, target: Target, job_dir: Path,
            hook: model.WorkloadHook | None = None) -> JobResult:
    """Run one fio workload on one target; every outcome is a JobResult (never raises for job failures).
    Each repeat's command runs inside ``hook``."""
    job_dir.mkdir(parents=True, exist_ok=True)
    return _Job(guest, spec, target, job_dir, hook).run()
