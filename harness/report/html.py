"""report.html: the markdown report as HTML plus plots (IOPS, CPU per IO, context switches per variant
and filesystem), each a matplotlib PNG embedded as base64 so the file stands alone."""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping
from typing import Any

from harness.report import markdown
from harness.report.metrics import Value, job_value

PLOTS: tuple[tuple[str, str], ...] = (("iops", "IOPS"), ("cpu_per_io", "CPU µs per IO"),
                                      ("ctx", "context switches"))


def series_for(data: Mapping[str, Any], name: str) -> dict[str, dict[str, dict[str, Value]]]:
    """workload -> variant -> fs -> value for metric ``name`` (jobs without it are left out)."""
    out: dict[str, dict[str, dict[str, Value]]] = {}
    for job in data.get("jobs", []):
        v = job_value(job, name)
        if v is not None:
            out.setdefault(str(job["workload"]), {}).setdefault(str(job["variant"]), {})[str(job["fs"])] = v
    return out


def _plot(name: str, label: str, table: dict[str, dict[str, dict[str, Value]]]) -> str:
    """A PNG (base64) with one panel per workload: groups = filesystems, bars = variants."""
    import matplotlib

    matplotlib.use("Agg")  # headless; must precede pyplot
    import matplotlib.pyplot as plt

    workloads = sorted(table)
    fig, axes = plt.subplots(1, len(workloads), figsize=(5 * len(workloads), 3.6), squeeze=False)
    for ax, workload in zip(axes[0], workloads, strict=True):
        variants = sorted(table[workload])
        fss = sorted({fs for v in variants for fs in table[workload][v]})
        width = 0.8 / max(1, len(variants))
        for i, variant in enumerate(variants):
            vals = [table[workload][variant].get(fs) for fs in fss]
            xs = [j + i * width for j in range(len(fss))]
            heights = [v.median if v else 0.0 for v in vals]
            errs = [v.median * v.spread / 2 if v else 0.0 for v in vals]
            ax.bar(xs, heights, width, yerr=errs, label=variant, capsize=2)
        ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(fss))], fss)
        ax.set_title(workload, fontsize=9)
        ax.set_ylabel(label)
        ax.legend(fontsize=7, loc="upper right")  # "best" is slow and warns
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _inline(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"`(.+?)`", r"<code>\1</code>", t)
    return re.sub(r"_(.+?)_$", r"<i>\1</i>", t)


def md_to_html(md: str) -> str:
    """The subset of markdown report.md uses: headings, tables, bullet lists, paragraphs."""
    out: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                if not re.fullmatch(r"\|(:?-+:?\|)+", lines[i]):
                    rows.append([c.strip().replace("\\|", "|") for c in
                                 re.split(r"(?<!\\)\|", lines[i].strip())[1:-1]])
                i += 1
            head = "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            continue
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.lstrip().startswith("- "):
            out.append(f"<li style='margin-left:{len(line) - len(line.lstrip())}em'>"
                       f"{_inline(line.lstrip()[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def jobs_table(data: Mapping[str, Any]) -> str:
    """Every job with its status, reason, directory (command/stdout/stderr/exitcode) and reproducer."""
    rows = []
    for j in data.get("jobs", []):
        cells = [j["variant"], j["fs"], j["workload"], j["status"], f"{float(j.get('duration') or 0):.1f}s",
                 j.get("reason", ""), j.get("job_dir", "")]
        row = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        rows.append(f"<tr class='{html.escape(str(j['status']))}'>{row}"
                    f"<td><code>{html.escape(str(j.get('reproducer', '')))}</code></td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("variant", "fs", "workload", "status", "time", "reason",
                                             "job directory", "reproducer"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


_STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:1em auto;}"
          "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:2px 6px;"
          "font-size:90%}code{background:#f2f2f2}img{max-width:100%}"
          "tr.fail,tr.crash,tr.timeout{background:#fde2e2}tr.error{background:#fff1c9}")


def render(data: Mapping[str, Any]) -> str:
    """report.html text for a results.json dict."""
    plots = []
    for name, label in PLOTS:
        table = series_for(data, name)
        if table:
            png = _plot(name, label, table)
            plots.append(f"<h3>{html.escape(label)} per variant and filesystem</h3>"
                         f"<img alt='{html.escape(label)}' src='data:image/png;base64,{png}'>")
    if not plots:
        plots.append("<p><i>No metrics to plot in this run.</i></p>")
    title = html.escape(f"kwb run {data['run']['id']}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{_STYLE}</style></head><body>\n{md_to_html(markdown.render(data))}\n"
            f"<h2>Plots</h2>\n" + "\n".join(plots) + "\n<h2>All jobs</h2>\n" + jobs_table(data)
            + "\n</body></html>\n")
