"""report.md: a reply-ready summary of a run, laid out like the series' cover letter.

Sections: verdict, per-filesystem performance (baseline vs series, median ± spread), async-path
evidence per filesystem, mutant kill table, each concern's static status per revision, failures with
reproducers, timings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.report.metrics import Value, cpu_per_io_us, job_ratios, metric
from harness.report.results import kernel_base

COMPARED = ("baseline", "series")


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


def _header(data: Mapping[str, Any]) -> list[str]:
    run, kernel, verdict = data["run"], data.get("kernel", {}), data["verdict"]
    state = "PASS" if verdict["ok"] else "FAIL"
    rev = f", series revision v{run['revision']}" if run.get("revision") else ""
    lines = [f"# kwb run {run['id']}: {state}", "",
             f"- command: `{run['command']}`",
             f"- kernel: {kernel.get('tree')} base {kernel_base(data)}, release "
             f"{kernel.get('release') or '–'}{rev}",
             f"- accelerator: {data.get('accel', 'unknown')}; run status: {run['status']}"
             + (f" ({run['error']})" if run.get("error") else ""),
             f"- started {run['started']}, finished {run.get('finished') or '–'}",
             *_reused(data), ""]
    if verdict["reasons"]:
        lines += ["Why it did not pass:", *[f"- {r}" for r in verdict["reasons"]], ""]
    lines += ["| variant | kind | verdict | detail |", "|---|---|---|---|"]
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
    lines = _header(data)
    lines += ["## Performance: baseline vs series (median ± spread over repeats)", "", *_perf_section(data)]
    lines += ["## Async buffered read path evidence (plain io_uring job, kprobe hits)", "",
              *_path_section(data)]
    lines += ["## Mutants: each re-introduces a defect a reviewer caught", "", *_mutant_section(data)]
    lines += ["## Review concerns: static status per revision", "", *_concern_section(data)]
    coverage = data.get("coverage")
    if coverage:
        section = str(coverage["markdown"]).rstrip().splitlines()
        lines += [*section, "", f"Annotated source: `{coverage.get('html', '')}`", ""]
    lines += ["## Failures", "", *_failures(data)]
    lines += ["## Timings", "", *_timings(data)]
    return "\n".join(lines).rstrip() + "\n"
