"""report.md: a reply-ready summary of a run, laid out like the series' cover letter.

It leads with the verdict in two lines (what holds; what failed or was not checked), then the cover
letter's comparison per filesystem (baseline / series / forced-async / psync: IOPS, CPU per IO, context
switches, each ratio to the series with whether it is significant), the async-path evidence, the review
concerns per revision, the mutants; then the variant table, failures with reproducers, run facts and
timings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.judge.metrics import METRIC_KEYS, RatioCI, Value, cpu_per_io_us, job_ratios, metric
from harness.report.results import kernel_base

COMPARED = ("baseline", "series")
# The cover letter's rows: (label, variant kind, workload kind) — the plain io_uring job of the baseline
# (every blocking read punted to io-wq), of the series (the async callback), the series forced through
# io-wq (IOSQE_ASYNC) and plain preadv2 for scale. Workload names are matched by what they end in.
COVER_ROWS: tuple[tuple[str, str, str], ...] = (
    ("baseline", "baseline", "plain"), ("series", "series", "plain"), ("forced-async", "series", "forced"),
    ("psync", "series", "psync"))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return out


def _fmt(v: Value | None, fmt: str) -> str:
    return v.text(fmt) if v is not None else "–"


def _variant_names(data: Mapping[str, Any], kind: str) -> list[str]:
    return [n for n, v in data.get("variants", {}).items() if v.get("kind") == kind]


def _perf_jobs(data: Mapping[str, Any]) -> dict[str, dict[tuple[str, str], Mapping[str, Any]]]:
    """fs -> (workload, kind) -> job, for jobs with an IOPS figure on the series/baseline variants."""
    kinds = {n: v.get("kind", "") for n, v in data.get("variants", {}).items()}
    out: dict[str, dict[tuple[str, str], Mapping[str, Any]]] = {}
    for job in data.get("jobs", []):
        kind = kinds.get(str(job["variant"]), "")
        if kind in COMPARED and metric(job.get("metrics") or {}, "iops") is not None:
            out.setdefault(str(job["fs"]), {})[(str(job["workload"]), kind)] = job
    return out


def ratio(a: Value | None, b: Value | None) -> str:
    """``a/b`` as ``1.49x ±5%`` (spreads of the two medians added), or ``–``."""
    if a is None or b is None or b.median == 0:
        return "–"
    spread = a.spread + b.spread
    return f"{a.median / b.median:.2f}x" + (f" ±{spread * 100:.0f}%" if spread else "")


def _perf_section(data: Mapping[str, Any]) -> list[str]:
    per_fs = _perf_jobs(data)
    if not per_fs:
        return ["_No performance jobs (no IOPS figures) in this run._", ""]
    lines: list[str] = []
    for fs in sorted(per_fs):
        jobs = per_fs[fs]
        rows = []
        for (workload, kind), job in sorted(jobs.items()):
            m = job.get("metrics") or {}
            cpio = cpu_per_io_us(m)
            rows.append([workload, kind, _fmt(metric(m, "time"), "{:.2f}s"),
                         _fmt(metric(m, "iops"), "{:,.0f}"), _fmt(metric(m, "cpu"), "{:.0f}%"),
                         f"{cpio:.1f}" if cpio is not None else "–", _fmt(metric(m, "ctx"), "{:,.0f}")])
        lines += [f"### {fs}", ""]
        lines += _table(["mode", "variant", "time", "IOPS", "CPU", "CPU µs/IO", "ctx switches"], rows)
        lines += ["", *_ratios(jobs), ""]
    return lines


def _ratios(jobs: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[str]:
    out = []
    for workload in sorted({w for w, _ in jobs}):
        s, b = jobs.get((workload, "series")), jobs.get((workload, "baseline"))
        if s is None or b is None:
            continue
        sm, bm = s.get("metrics") or {}, b.get("metrics") or {}
        s_cpio, b_cpio = cpu_per_io_us(sm), cpu_per_io_us(bm)
        cpu_ratio = f"{s_cpio / b_cpio:.2f}x" if s_cpio and b_cpio else "–"
        out.append(f"- {workload}: series/baseline IOPS {ratio(metric(sm, 'iops'), metric(bm, 'iops'))}, "
                   f"CPU per IO {cpu_ratio}, ctx switches {ratio(metric(sm, 'ctx'), metric(bm, 'ctx'))}")
        cis = job_ratios(sm, bm, paired=bool(sm.get("ab_paired") and bm.get("ab_paired")))
        if cis:
            how = next(iter(cis.values())).method_short
            out.append(f"  - 95% CI ({how}-interval on logs): " + "; ".join(
                f"{label} {cis[k].text()}" for k, label in (("iops", "IOPS"), ("cpu_per_io", "CPU per IO"),
                                                             ("ctx", "ctx switches")) if k in cis))
    series = {w: j for (w, k), j in jobs.items() if k == "series"}
    plain = [w for w in series if "uring" in w and not any(x in w for x in ("force", "psync", "sync"))]
    for p in plain:
        p_iops = metric(series[p].get("metrics") or {}, "iops")
        for other in sorted(series):
            if other != p:
                o_iops = metric(series[other].get("metrics") or {}, "iops")
                out.append(f"- series {p} vs {other}: IOPS {ratio(p_iops, o_iops)}")
    return out


def mode_of(workload: str) -> str:
    """plain | forced | psync | other: which cover-letter row a workload's job belongs to."""
    name = workload.lower()
    if "psync" in name or name.endswith("-sync"):
        return "psync"
    if "uring" in name:
        return "forced" if "force" in name else "plain"
    return "other"


def _raw(metrics: Mapping[str, Any], name: str) -> Any:
    for key in METRIC_KEYS.get(name, (name,)):
        if key in metrics:
            return metrics[key]
    return None


def interval(metrics: Mapping[str, Any], name: str) -> tuple[float, float, str] | None:
    """(low, high, what) for a metric: its 95 % interval when the runner gave one (``ci95``/``ci``:
    ``[lo, hi]`` or ``{"low", "high"}``), else the min–max range of its repeats; None for one sample."""
    raw = _raw(metrics, name)
    if not isinstance(raw, Mapping):
        return None
    for key in ("ci95", "ci"):
        ci = raw.get(key)
        if isinstance(ci, list | tuple) and len(ci) == 2 and all(isinstance(v, int | float) for v in ci):
            return float(ci[0]), float(ci[1]), "95% intervals"
        if isinstance(ci, Mapping) and isinstance(ci.get("low"), int | float) and isinstance(
                ci.get("high"), int | float):
            return float(ci["low"]), float(ci["high"]), "95% intervals"
    values = raw.get("values")
    if isinstance(values, list) and len(values) >= 2 and all(isinstance(v, int | float) for v in values):
        return float(min(values)), float(max(values)), "ranges"
    lo, hi = raw.get("min"), raw.get("max")
    if isinstance(lo, int | float) and isinstance(hi, int | float) and hi > lo:
        return float(lo), float(hi), "ranges"
    return None


def significance(a: Mapping[str, Any], b: Mapping[str, Any], name: str) -> str:
    """Is metric ``name`` of job metrics ``a`` different from ``b``'s? ``significant`` when their 95 %
    intervals (or min–max ranges) are apart, ``within noise`` when they overlap, ``1 sample`` otherwise."""
    ia, ib = interval(a, name), interval(b, name)
    if ia is None or ib is None:
        return "1 sample"
    what = ia[2] if ia[2] == ib[2] else "ranges"
    apart = ia[1] < ib[0] or ib[1] < ia[0]
    return f"significant ({what} apart)" if apart else f"within noise ({what} overlap)"


def _cover_jobs(data: Mapping[str, Any]) -> dict[str, dict[str, Mapping[str, Any]]]:
    """fs -> cover row label -> job (the first matching job with an IOPS figure)."""
    kinds = {n: v.get("kind", "") for n, v in data.get("variants", {}).items()}
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    for job in data.get("jobs", []):
        if metric(job.get("metrics") or {}, "iops") is None:
            continue
        kind, mode = kinds.get(str(job["variant"]), ""), mode_of(str(job["workload"]))
        for label, want_kind, want_mode in COVER_ROWS:
            if kind == want_kind and mode == want_mode:
                out.setdefault(str(job["fs"]), {}).setdefault(label, job)
    return out


def _vs(row: Mapping[str, Any], ref: Mapping[str, Any], name: str) -> str:
    """``0.67x [0.63, 0.70], significant`` (else by median and range): this row's metric over the series'."""
    if row is ref:
        return "="
    ci = job_ratios(row, ref).get(name)
    if ci is not None:  # per-repeat samples on both sides: the same 95 % interval as results.json ratios
        return _ci_text(ci)
    if name == "cpu_per_io":
        a, b = cpu_per_io_us(row), cpu_per_io_us(ref)
        if a is None or not b:
            return "–"
        # CPU per IO is derived from busy % and IOPS: significant only if both inputs are.
        sig = [significance(row, ref, m) for m in ("cpu", "iops")]
        verdict = sig[0] if sig[0] == sig[1] else "1 sample" if "1 sample" in sig else "within noise"
        return f"{a / b:.2f}x, {verdict}"
    va, vb = metric(row, name), metric(ref, name)
    if va is None or vb is None or vb.median == 0:
        return "–"
    return f"{va.median / vb.median:.2f}x, {significance(row, ref, name)}"


def _ci_text(ci: RatioCI) -> str:
    """``0.67x [0.63, 0.70], significant``: the ratio, its 95 % interval, whether it excludes 1.0."""
    return f"{ci.ratio:.2f}x [{ci.low:.2f}, {ci.high:.2f}], {'' if ci.significant else 'not '}significant"


def cover_section(data: Mapping[str, Any]) -> list[str]:
    """The cover letter's comparison: per filesystem, the four rows with each ratio to the series."""
    per_fs = _cover_jobs(data)
    if not per_fs:
        return ["_No performance jobs (no IOPS figures) in this run._", ""]
    lines = ["Each ratio is the row's figure over the series' on the same filesystem (geometric means of "
             "the repeats) with its 95% interval (Welch t on logs); significant when the interval excludes "
             "1.0. A job without per-repeat figures is compared by its median and min–max range instead.", ""]
    for fs in sorted(per_fs):
        rows_by_label = per_fs[fs]
        ref = rows_by_label.get("series")
        rows = []
        for label, _, _ in COVER_ROWS:
            job = rows_by_label.get(label)
            if job is None:
                rows.append([label, "not run", "", "", "", "", ""])
                continue
            m = job.get("metrics") or {}
            cpio = cpu_per_io_us(m)
            cells = [_fmt(metric(m, "iops"), "{:,.0f}"), f"{cpio:.1f}" if cpio is not None else "–",
                     _fmt(metric(m, "ctx"), "{:,.0f}")]
            ratios = [_vs(m, ref.get("metrics") or {}, n) if ref is not None else "–"
                      for n in ("iops", "cpu_per_io", "ctx")]
            rows.append([f"{label} ({job['workload']})", cells[0], ratios[0], cells[1], ratios[1], cells[2],
                         ratios[2]])
        lines += [f"### {fs}", ""]
        lines += _table(["row", "IOPS", "÷ series", "CPU µs/IO", "÷ series", "ctx switches", "÷ series"],
                        rows)
        lines.append("")
    return lines


def _path_section(data: Mapping[str, Any]) -> list[str]:
    variants = data.get("variants", {})
    shown = [n for n in variants if variants[n].get("kind") in COMPARED]
    fss = sorted({fs for n in shown for fs in (variants[n].get("paths") or {})})
    if not fss:
        return ["_No path evidence (no plain io_uring job with probe counters)._", ""]
    rows = []
    for fs in fss:
        row = [fs]
        for n in shown:
            p = (variants[n].get("paths") or {}).get(fs)
            row.append(f"**{p['path']}** ({p['evidence']})" if p else "–")
        rows.append(row)
    return [*_table(["fs", *shown], rows), ""]


def _mutant_section(data: Mapping[str, Any]) -> list[str]:
    mutants = data.get("mutants") or {}
    if not mutants:
        return ["_No mutants in this run._", ""]
    rows = []
    for name, m in sorted(mutants.items()):
        if m.get("equivalent"):
            state = f"equivalent: {m['equivalent']}"
        else:
            state = "**flagged**" if m["flagged"] else ("NOT RUN" if not m.get("ran", True) else "**MISSED**")
        rows.append([name, m.get("concern", ""), state, ", ".join(m["by"]) or "–",
                     ", ".join(m.get("expected") or []) or "–"])
    flagged = sum(1 for m in mutants.values() if m["flagged"])
    equivalent = sum(1 for m in mutants.values() if m.get("equivalent"))
    counted = f"{flagged} of {len(mutants) - equivalent} mutants flagged"
    return [counted + (f" ({equivalent} more documented as equivalent: no check can flag them)."
                       if equivalent else "."), "",
            *_table(["mutant", "concern", "result", "flagged by", "expected"], rows), ""]


def _concern_section(data: Mapping[str, Any]) -> list[str]:
    concerns = data.get("concerns") or []
    mail = (data.get("run") or {}).get("mail") or {}
    if not concerns and mail.get("kind") == "none":
        return [f"_{mail.get('reason')}_", ""]
    if not concerns:
        return ["_No static concern status in this run._", ""]
    revisions = sorted({int(c["version"]) for c in concerns})
    by_id: dict[str, dict[int, Mapping[str, Any]]] = {}
    titles: dict[str, str] = {}
    for c in concerns:
        by_id.setdefault(str(c["concern_id"]), {})[int(c["version"])] = c
        titles.setdefault(str(c["concern_id"]), str(c.get("title") or ""))
    rows = []
    for cid, per_rev in by_id.items():
        cells = []
        for r in revisions:
            c = per_rev.get(r)
            where = f" (p{c['patch']})" if c and c.get("patch") else ""
            cells.append("–" if c is None else str(c["status"]) + where)
        rows.append([f"`{cid}`" + (f" {titles[cid]}" if titles[cid] else ""), *cells])
    return [*_table(["concern", *[f"v{r}" for r in revisions]], rows), ""]


def _failures(data: Mapping[str, Any]) -> list[str]:
    kinds = {n: v.get("kind", "") for n, v in data.get("variants", {}).items()}
    bad = [j for j in data.get("jobs", []) if kinds.get(str(j["variant"])) in ("series", "coverage", "")
           and j["status"] not in ("pass", "skip")]
    bad += [j for j in data.get("jobs", []) if j["status"] == "error" and kinds.get(str(j["variant"])) in
            ("baseline", "mutant")]
    if not bad:
        return ["None on the series variant.", ""]
    out = []
    for j in bad:
        out.append(f"- `{j['variant']}` {j['workload']}@{j['fs']}: **{j['status']}** {j.get('reason', '')}")
        if j.get("reproducer"):
            out.append(f"  - reproduce: `{j['reproducer']}`")
    return [*out, ""]


def verdict_lines(data: Mapping[str, Any]) -> list[str]:
    """The two lines a reply starts with: the verdict and what holds; what failed or was not checked
    (or, when all ran and held, what was run)."""
    verdict, variants = data["verdict"], data.get("variants") or {}
    parts = [f"{n}: {v['verdict']} ({v['reason']})" for n, v in variants.items()
             if v.get("kind") in ("series", "baseline", "coverage")]
    mutants = data.get("mutants") or {}
    counted = [m for m in mutants.values() if not m.get("equivalent")]
    if counted:
        parts.append(f"mutants: {sum(1 for m in counted if m['flagged'])} of {len(counted)} flagged")
    first = f"**kwb verdict: {'PASS' if verdict['ok'] else 'FAIL'}** — " + ("; ".join(parts) or "nothing ran")
    second: list[str] = []
    if verdict["reasons"]:
        second.append("Failed: " + "; ".join(verdict["reasons"]))
    if verdict.get("not_checked"):
        second.append("Not checked: " + "; ".join(verdict["not_checked"]))
    if not second:
        run, kernel = data["run"], data.get("kernel") or {}
        second.append(f"All checks ran: {len(data.get('jobs') or [])} jobs on {kernel.get('tree')} "
                      f"{kernel.get('release') or ''} ({data.get('accel', 'unknown')}), run {run['id']}.")
    # Two trailing spaces: a Markdown line break, invisible in a plain-text mail.
    return [first + "  ", " · ".join(second)]


def _run_facts(data: Mapping[str, Any]) -> list[str]:
    run, kernel = data["run"], data.get("kernel", {})
    rev = f", series revision v{run['revision']}" if run.get("revision") else ""
    mail = run.get("mail") or {}
    lines = [f"- run {run['id']}: `{run['command']}`",
             f"- kernel: {kernel.get('tree')} base {kernel_base(data)}, release "
             f"{kernel.get('release') or '–'}{rev}",
             f"- accelerator: {data.get('accel', 'unknown')}; run status: {run['status']}"
             + (f" ({run['error']})" if run.get("error") else ""),
             f"- started {run['started']}, finished {run.get('finished') or '–'}"]
    if mail:
        lines.append(f"- series mail: {mail.get('kind')}: {mail.get('reason')}")
    roots = set((data.get("guest_root") or {}).values())
    if roots:
        lines.append("- guest root: " + "; ".join(ROOT_TEXT.get(r, r) for r in sorted(roots)))
    return [*lines, *_reused(data), ""]


ROOT_TEXT = {"isolated": "kwb's isolated image (no host file exported, network only the SSH forward)",
             "host": "the host's filesystem over 9p, read-only (--host-root: the guest could read every host "
                     "file; not for untrusted series)"}


def _variants_table(data: Mapping[str, Any]) -> list[str]:
    lines = ["| variant | kind | verdict | detail |", "|---|---|---|---|"]
    lines += [f"| {n} | {v['kind']} | {v['verdict']} | {v['reason']} |" for n, v in data["variants"].items()]
    return [*lines, ""]


def _reused(data: Mapping[str, Any]) -> list[str]:
    # Numbers not measured by this run must say so next to the run's own facts.
    return [f"- {name}: results reused from run {r['run']} (measured {r['measured']}; same kernel commit, "
            f".config, workloads and accelerator; `--fresh-baseline` measures again)"
            for name, r in (data.get("reused") or {}).items()]


def _timings(data: Mapping[str, Any]) -> list[str]:
    t = data.get("timings") or {}
    parts = [f"total {float(t.get('total', 0)):.0f}s"]
    parts += [f"{k} {float(v):.0f}s" for k, v in (t.get("steps") or {}).items()]
    out = ["- steps: " + ", ".join(parts)]
    for key in ("build", "boot", "variants"):
        if t.get(key):
            out.append(f"- {key}: " + ", ".join(f"{k} {float(v):.0f}s" for k, v in t[key].items()))
    return [*out, ""]


def render(data: Mapping[str, Any]) -> str:
    """report.md text for a results.json dict."""
    lines = [*verdict_lines(data), ""]
    lines += ["## Cover letter comparison: baseline / series / forced-async / psync", "",
              *cover_section(data)]
    lines += ["## Async buffered read path evidence (plain io_uring job, kprobe hits)", "",
              *_path_section(data)]
    lines += ["## Review concerns: static status per revision", "", *_concern_section(data)]
    lines += ["## Mutants: each re-introduces a defect a reviewer caught", "", *_mutant_section(data)]
    lines += ["## Variants", "", *_variants_table(data)]
    coverage = data.get("coverage")
    if coverage:
        section = str(coverage["markdown"]).rstrip().splitlines()
        lines += [*section, "", f"Annotated source: `{coverage.get('html', '')}`", ""]
    lines += ["## Failures", "", *_failures(data)]
    lines += ["## Every performance job (median ± spread over repeats)", "", *_perf_section(data)]
    lines += ["## Run", "", *_run_facts(data)]
    lines += ["## Timings", "", *_timings(data)]
    return "\n".join(lines).rstrip() + "\n"
