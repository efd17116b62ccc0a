"""report.html: the markdown report as a styled page (readable width, a sticky header with the verdict,
status colours), plots grouped like the cover letter's table (per metric: the filesystems, each with the
baseline / series / forced-async / psync bars), and every job linking to its command, output and
reproducer. The PNGs are embedded as base64 so the file stands alone."""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Mapping
from typing import Any

from harness.judge.metrics import Value, job_value
from harness.report import markdown

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
    # Imported on first plot, not with the module: pyplot takes ~1.4 s to import and only report.html
    # plots, while every kwb command imports the report package.
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


def cover_series(data: Mapping[str, Any], name: str) -> dict[str, dict[str, Value]]:
    """fs -> cover row (baseline / series / forced-async / psync) -> value of metric ``name``."""
    out: dict[str, dict[str, Value]] = {}
    for fs, rows in markdown._cover_jobs(data).items():
        for label, job in rows.items():
            v = job_value(job, name)
            if v is not None:
                out.setdefault(fs, {})[label] = v
    return out


def _cover_plot(label: str, table: dict[str, dict[str, Value]]) -> str:
    """A PNG (base64): groups = filesystems, bars = the cover letter's rows in its order."""
    import matplotlib  # on first plot, as in _plot()

    matplotlib.use("Agg")  # headless; must precede pyplot
    import matplotlib.pyplot as plt

    fss = sorted(table)
    rows = [r for r, _, _ in markdown.COVER_ROWS if any(r in table[fs] for fs in fss)]
    colours = {"baseline": "#9e9e9e", "series": "#2e7d32", "forced-async": "#f9a825", "psync": "#1565c0"}
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    width = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows):
        vals = [table[fs].get(row) for fs in fss]
        xs = [j + i * width for j in range(len(fss))]
        ax.bar(xs, [v.median if v else 0.0 for v in vals], width,
               yerr=[v.median * v.spread / 2 if v else 0.0 for v in vals], label=row, capsize=2,
               color=colours.get(row))
    ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(fss))], fss)
    ax.set_ylabel(label)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=len(rows), frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _job_home(data: Mapping[str, Any], job_dir: str) -> str:
    """The job directory relative to the run directory (where report.html is), when it is inside it."""
    run_id = str(data.get("run", {}).get("id", ""))
    parts = job_dir.split("/")
    if run_id and run_id in parts:
        return "/".join(parts[parts.index(run_id) + 1:])
    return job_dir


def jobs_table(data: Mapping[str, Any]) -> str:
    """Every job with its status, reason and links to its command, output, exit code and reproducer."""
    rows = []
    for j in data.get("jobs", []):
        home = _job_home(data, str(j.get("job_dir", "")))
        links = " · ".join(f"<a href='{html.escape(home)}/{f}'>{t}</a>" for f, t in (
            ("command", "command"), ("stdout", "stdout"), ("stderr", "stderr"), ("exitcode", "exit code"),
            ("reproduce.sh", "reproducer"))) if home else "–"
        cells = [j["variant"], j["fs"], j["workload"]]
        row = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        status = html.escape(str(j["status"]))
        rows.append(f"<tr class='{status}'>{row}<td class='st {_status_class(status)}'>{status}</td>"
                    f"<td class='num'>{float(j.get('duration') or 0):.1f}s</td>"
                    f"<td>{html.escape(str(j.get('reason', '')))}</td><td class='links'>{links}</td>"
                    f"<td><code>{html.escape(str(j.get('reproducer', '')))}</code></td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("variant", "fs", "workload", "status", "time", "reason",
                                             "files", "reproduce"))
    return f"<div class='wide'><table class='jobs'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}" \
           "</tbody></table></div>"


_GOOD = ("pass", "flagged", "addressed", "punt-shown", "async", "=", "complete")
_BAD = ("fail", "missed", "present", "error", "crash", "timeout", "punt-missing", "failed")
_MUTED = ("skip", "not run", "equivalent", "within noise", "1 sample", "not-applicable", "–", "not-run")


def _status_class(text: str) -> str:
    """ok | bad | muted | "" for a table cell, by the status word it starts with."""
    t = re.sub(r"<[^>]+>", "", text).strip().lower()
    if t.startswith(_BAD):
        return "bad"
    if t.startswith(_GOOD):
        return "ok"
    if t.startswith(_MUTED) or "within noise" in t or "1 sample" in t:
        return "muted"
    if "significant" in t:
        return "sig"
    return ""


def _colour_cells(page: str) -> str:
    def cell(m: re.Match[str]) -> str:
        cls = _status_class(m.group(1))
        return f"<td class='{cls}'>{m.group(1)}</td>" if cls else m.group(0)

    return re.sub(r"<td>(.*?)</td>", cell, page)


_STYLE = """
:root{--ok:#e3f4e1;--ok-fg:#1b5e20;--bad:#fde2e2;--bad-fg:#b71c1c;--muted:#f1f1f1;--sig:#e8f0fe}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;margin:0;background:#fafafa}
main{max-width:72rem;margin:0 auto;padding:0 1.2rem 3rem}
header{position:sticky;top:0;z-index:5;background:#fff;border-bottom:3px solid #999;
  padding:.6rem 1.2rem;box-shadow:0 1px 4px rgba(0,0,0,.12)}
header.pass{border-color:#2e7d32}header.fail{border-color:#c62828}
header .v{font-size:1.15rem;max-width:72rem;margin:0 auto}header .why{max-width:72rem;margin:.2rem auto 0;
  color:#444;font-size:.9rem}
header .badge{display:inline-block;padding:0 .5rem;border-radius:4px;color:#fff;font-weight:700;
  margin-right:.4rem}
header.pass .badge{background:#2e7d32}header.fail .badge{background:#c62828}
nav{max-width:72rem;margin:.3rem auto 0;font-size:.85rem}nav a{margin-right:.9rem;color:#1565c0}
h2{margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;scroll-margin-top:7rem}
h3{margin:1.2rem 0 .3rem}p,li{max-width:60rem}
.wide{overflow-x:auto}
table{border-collapse:collapse;margin:.4rem 0 1rem;background:#fff;font-size:.88rem}
th,td{border:1px solid #d0d0d0;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f3f3f3;position:sticky;top:0}
td.ok{background:var(--ok);color:var(--ok-fg)}td.bad{background:var(--bad);color:var(--bad-fg)}
td.muted{background:var(--muted);color:#666}td.sig{background:var(--sig)}td.num{text-align:right}
tr.fail td:first-child,tr.crash td:first-child,tr.timeout td:first-child{border-left:4px solid #c62828}
tr.error td:first-child{border-left:4px solid #f9a825}
td.links{white-space:nowrap}code{background:#f2f2f2;padding:0 .2rem;border-radius:3px;font-size:.85em}
img{max-width:100%;background:#fff;border:1px solid #e0e0e0}
footer{color:#777;font-size:.8rem;margin-top:2rem}
"""


def _sections(body: str) -> str:
    """Anchors on every h2, and a nav bar listing them."""
    links = []

    def anchor(m: re.Match[str]) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", re.sub(r"<[^>]+>", "", m.group(1)).lower()).strip("-")[:40]
        links.append(f"<a href='#{slug}'>{re.sub(r'<[^>]+>', '', m.group(1)).split(':')[0]}</a>")
        return f"<h2 id='{slug}'>{m.group(1)}</h2>"

    body = re.sub(r"<h2>(.*?)</h2>", anchor, body)
    return "<nav>" + "".join(links) + "</nav>\n" + body


def render(data: Mapping[str, Any]) -> str:
    """report.html text for a results.json dict."""
    md = markdown.render(data)
    first, second, rest = [*md.split("\n", 2), "", ""][:3]
    plots = []
    for name, label in PLOTS:
        table = cover_series(data, name)
        if table:
            plots.append(f"<h3>{html.escape(label)}: baseline / series / forced-async / psync per "
                         f"filesystem</h3><img alt='{html.escape(label)}' "
                         f"src='data:image/png;base64,{_cover_plot(label, table)}'>")
    if not plots:
        plots.append("<p><i>No metrics to plot in this run.</i></p>")
    body = _colour_cells(md_to_html(rest))
    body = re.sub(r"<table>(.*?)</table>", r"<div class='wide'><table>\1</table></div>", body, flags=re.S)
    plot_html = "<h2>Plots, grouped like the cover letter's table</h2>\n" + "\n".join(plots)
    marker = "<h2>Async buffered read path"
    body = body.replace(marker, plot_html + "\n" + marker, 1) if marker in body else body + plot_html
    body += "\n<h2>All jobs: command, output and reproducer</h2>\n" + jobs_table(data)
    ok = bool(data["verdict"]["ok"])
    verdict_text = _inline(first.strip())
    for word in ("PASS", "FAIL"):
        verdict_text = verdict_text.replace(f"<b>kwb verdict: {word}</b>",
                                            f"<span class='badge'>{word}</span>")
    body_with_nav = _sections(body)
    nav, _, main_body = body_with_nav.partition("\n")
    title = html.escape(f"kwb run {data['run']['id']}: {'PASS' if ok else 'FAIL'}")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{title}</title>"
            f"<style>{_STYLE}</style></head><body>\n"
            f"<header class='{'pass' if ok else 'fail'}'><div class='v'>{verdict_text}</div>"
            f"<div class='why'>{_inline(second.strip())}</div>{nav}</header>\n<main>\n{main_body}\n"
            f"<footer>kwb report of run {html.escape(str(data['run']['id']))}, finished "
            f"{html.escape(str(data['run'].get('finished') or '–'))}"
            "</footer></main></body></html>\n")
