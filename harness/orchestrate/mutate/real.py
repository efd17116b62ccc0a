"""The real campaign stages: the series' lines of a tree, mutant builds, guest checks, shard merging."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.core.errors import KwbError, UserError
from harness.kernel.build import KernelBuild
from harness.orchestrate import coverage
from harness.orchestrate.ci import parse_shard, shard
from harness.orchestrate.mutate.campaign import GENERATED_PREFIX, Lab, Outcome, Settings, State
from harness.orchestrate.mutate.generate import Mutant, Operator, generate, sample
from harness.orchestrate.mutate.kernel import BuildOutcome, MutantBuilder
from harness.vm.console import scan
from harness.vm.guest import Guest, GuestConfig
from harness.workloads import payload, runner
from harness.workloads.catalogue import load_catalogue, parse_fs_list
from harness.workloads.model import JobResult, JobStatus

Progress = Callable[[str], None]


def series_lines(source: coverage.SourceFn, files: Sequence[str], *, tree: Path | None, base: str | None,
                 head: str | None) -> tuple[dict[str, list[int]], dict[str, dict[int, str]]]:
    """Candidate lines per file, and the enclosing function of each.

    Default tree: the lines the coverage mapping assigns to the series; a user's tree: the lines
    the commits ``base..head`` (the applied revision) leave in ``head`` (git blame).
    """
    if tree is None:
        chosen = coverage.default_series_lines(source)
    else:
        if base is None or head is None:
            raise UserError("kwb mutate --tree needs --base and --head (the applied revision's branch)")
        chosen = coverage.blame_series_lines(tree, base, head, files or None)
    lines: dict[str, list[int]] = {}
    funcs: dict[str, dict[int, str]] = {}
    for s in chosen:
        if files and s.file not in files:
            continue
        lines.setdefault(s.file, []).append(s.line)
        name = s.function or coverage.enclosing_function(source(s.file) or "", s.line)
        funcs.setdefault(s.file, {})[s.line] = name
    missing = [f for f in files if f not in lines]
    if missing:
        raise UserError(f"mutate: no series lines in {', '.join(missing)} (files with series lines: "
                        f"{', '.join(sorted({s.file for s in chosen})) or 'none'})")
    return lines, funcs


def plan_mutants(source: coverage.SourceFn, operators: Sequence[Operator], settings: Settings, *,
                 tree: Path | None, base: str | None, head: str | None) -> list[Mutant]:
    """The campaign's mutants: generated over the series' lines, sampled with the seed, sharded."""
    lines, funcs = series_lines(source, settings.files, tree=tree, base=base, head=head)
    chosen = sample(generate(source, lines, operators, funcs), settings.max, settings.seed)
    if settings.shard:
        i, n = parse_shard(settings.shard)
        chosen = shard(chosen, i, n)
    return chosen


class _Boot:
    """A guest whose boot is recorded: its time, or why it failed and what the console said."""

    def __init__(self, inner: Any, record: GuestBoots) -> None:
        self.inner, self.record = inner, record

    def __enter__(self) -> Any:
        try:
            guest = self.inner.__enter__()
        except KwbError as exc:
            console = _console_findings(getattr(self.inner, "console_log", None))
            self.record.failures.append(str(exc) + console)
            raise
        self.record.seconds.append(float(getattr(guest, "boot_seconds", 0.0) or 0.0))
        return guest

    def __exit__(self, *exc: object) -> Any:
        return self.inner.__exit__(*exc)


def _console_findings(log: Path | None) -> str:
    if log is None or not Path(log).is_file():
        return ""
    found = scan(Path(log).read_text(encoding="utf-8", errors="replace"))
    return f"; console: {found[0].kind}: {found[0].line.strip()}" if found else ""


class GuestBoots:
    """The guest factory of mutant runs: the campaign's boot timeout, every boot recorded."""

    def __init__(self, boot_timeout: float) -> None:
        self.boot_timeout = boot_timeout
        self.failures: list[str] = []
        self.seconds: list[float] = []

    def __call__(self, kernel: Path, disks: list[Path], results_dir: Path) -> Any:
        cfg = GuestConfig(kernel=kernel, results_dir=results_dir, disks=disks,
                          memory_mb=runner.GUEST_MEMORY_MB,
                          boot_timeout=self.boot_timeout, root_payload=payload.for_guest())
        return _Boot(Guest(cfg), self)


def boot_verdict(jobs: list[JobResult], boots: GuestBoots, name: str) -> list[JobResult]:
    """A mutant kernel that never booted (while the series kernel does) failed the boot check."""
    if boots.failures and all(j.status in (JobStatus.ERROR, JobStatus.SKIP) for j in jobs):
        reason = f"the mutant kernel did not boot within {boots.boot_timeout:.0f}s: {boots.failures[0]}"
        return [JobResult("boot", "-", name, JobStatus.FAIL, reason), *jobs]
    return jobs


def real_lab(builder: MutantBuilder, source: coverage.SourceFn, boot_timeout: float = 180.0,
             reproducer: Callable[[str, str, str], str] | None = None) -> Lab:
    """Stages backed by kwb's build and the workloads runner (one guest boot per mutant).

    ``reproducer`` (run name, fs, workload) is the command each job's reproduce.sh runs: a generated
    mutant is no variant ``kwb run`` knows, so it is re-run through ``kwb mutate --only``."""
    def build(mutant: Mutant) -> BuildOutcome:
        text = source(mutant.file)
        if text is None:
            raise UserError(f"mutate: {mutant.file} is not in the series commit")
        return builder.build(mutant, text)

    def run_checks(name: str, kernel: KernelBuild, checks: list[str], filesystems: list[str], out_dir: Path,
                   progress: Progress) -> list[JobResult]:
        # Kernel mutants cannot share a boot: a mutant that corrupts a wait queue poisons every later
        # check in the same guest, so each mutant gets its own kernel and its own boot. One boot only
        # (max_boots=1): every flag ends the run anyway, and a kernel that wedged once wedges again.
        boots = GuestBoots(boot_timeout)
        last_boot.clear()
        last_boot.append(boots)
        again = (lambda fs, w: reproducer(name, fs, w)) if reproducer else None
        jobs = runner.run_variant(name, filesystems, checks, out_dir, progress, kernel=kernel,
                                  guest_factory=boots, stop_on_flag=True, kind="mutant", max_boots=1,
                                  reproducer=again).jobs
        return boot_verdict(jobs, boots, name)

    last_boot: list[GuestBoots] = []

    def boot_seconds() -> float | None:
        return last_boot[0].seconds[0] if last_boot and last_boot[0].seconds else None

    return Lab(build=build, run_checks=run_checks, boot_seconds=boot_seconds)


def validate_checks(checks: Sequence[str], filesystems: Sequence[str]) -> None:
    """Every check is a catalogue workload that runs on at least one of ``filesystems``."""
    parse_fs_list(",".join(filesystems))
    cat = load_catalogue()
    unknown = [c for c in checks if c not in cat]
    if unknown:
        raise UserError(f"unknown check {', '.join(unknown)} (known: {', '.join(cat)})")
    idle = [c for c in checks if not set(cat[c].filesystems) & set(filesystems)]
    if idle:
        raise UserError(f"check {', '.join(idle)} runs on none of {', '.join(filesystems)}")
    if not checks:
        raise UserError("no checks selected")


def merge_states(dirs: Sequence[Path]) -> State:
    """One state out of several shards' (or campaigns') state.json files; the first one's settings."""
    states = []
    for d in dirs:
        path = d / "state.json"
        if not path.is_file():
            raise UserError(f"not a mutation campaign directory (no state.json): {d}")
        states.append(State.from_dict(json.loads(path.read_text(encoding="utf-8"))))
    merged = State(states[0].settings, [], {}, {})
    merged.settings.shard = ""
    seen: set[str] = set()
    for st in states:
        for m in st.mutants:
            if m.id not in seen:
                seen.add(m.id)
                merged.mutants.append(m)
                merged.outcomes[m.id] = st.outcomes.get(m.id, Outcome())
        for check, n in st.kills.items():
            merged.kills[check] = merged.kills.get(check, 0) + n
        # Shards run in parallel: the merged campaign took as long as its slowest shard.
        merged.wall_seconds = max(merged.wall_seconds, st.wall_seconds)
        # every shard ran the same control (same kernel, same checks): keep one, a failed one first
        if st.control and (merged.control is None or st.control.get("status") != "survived"):
            merged.control = st.control
    merged.mutants.sort(key=lambda m: (m.file, m.line, m.id))
    return merged


def reproduce_command(settings: Settings, out: Path, *, profile: str | None, base: str | None,
                      head: str | None) -> Callable[[str, str, str], str]:
    """The reproduce.sh command of a campaign's jobs: (run name, fs, workload) -> shell command.

    A generated mutant is re-made from the campaign's generation settings (the same mutant is the same
    commit) and run through that one check on that filesystem, into a directory of its own so the
    campaign's state is untouched. The control ran the unmodified series kernel: ``kwb run`` of it."""
    def command(name: str, fs: str, workload: str) -> str:
        top = ["kwb", *(["--profile", profile] if profile else [])]
        if not name.startswith(GENERATED_PREFIX):
            return shlex.join([*top, "run", "--variant", "series", "--fs", fs, "--workload", workload,
                               "--out", str(out.resolve() / "reproduce")])
        mutant = name[len(GENERATED_PREFIX):]
        argv = [*top, "mutate", "--out", str(out.resolve() / f"reproduce-{mutant}"),
                "--files", ",".join(settings.files), "--seed", str(settings.seed)]
        if settings.max is not None:
            argv += ["--max", str(settings.max)]
        if settings.tree != "default":
            argv += ["--tree", settings.tree, *(["--base", base] if base else []),
                     *(["--head", head] if head else [])]
        if settings.shard:
            argv += ["--shard", settings.shard]
        return shlex.join([*argv, "--only", mutant, "--rerun", "--checks", workload, "--fs", fs])
    return command
