"""The annotated patch-coverage page: every series line in its source context, coloured by gcov count."""

from __future__ import annotations

from collections.abc import Callable
from html import escape

from harness.orchestrate.coverage import CoverageReport, LineCoverage

CONTEXT = 3  # source lines shown around each run of series lines
_STYLE = """
body{font-family:sans-serif;margin:1.5em} table{border-collapse:collapse}
td,th{padding:2px 8px;border:1px solid #ccc;text-align:right} td.n{text-align:left}
pre{margin:0} .src td{border:none;padding:0 6px;font-family:monospace;white-space:pre;text-align:left}
tr.hit{background:#d9f7d9} tr.never{background:#f9c9c9} tr.nocode{background:#eee} tr.ctx{color:#888}
td.cnt{text-align:right;color:#333} .why{color:#666;font-size:85%}
"""


def render(cov: CoverageReport, source: Callable[[str], str | None], title: str = "Patch coverage") -> str:
    """A self-contained HTML page (no external assets)."""
    tot = cov.total()
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body>", f"<h1>{escape(title)}</h1>",
             f"<p>{tot.executed} of {tot.total} executable series lines executed ({tot.percent}%). "
             "Green: executed; red: never executed; grey: no code on the line; plain: context.</p>"]
    for heading, rows in (("Per patch", cov.per_patch()), ("Per function", cov.per_function())):
        parts.append(f"<h2>{heading}</h2><table><tr><th>name</th><th>executed</th><th>lines</th>"
                     "<th>%</th></tr>")
        parts += [f"<tr><td class='n'>{escape(r.name)}</td><td>{r.executed}</td><td>{r.total}</td>"
                  f"<td>{f'{r.percent}%' if r.total else 'no code'}</td></tr>" for r in rows]
        parts.append("</table>")
    if cov.missing_files:
        parts.append("<p>No gcov data for: " + ", ".join(escape(f) for f in cov.missing_files) + "</p>")
    for path in sorted({ln.file for ln in cov.lines}):
        parts.append(f"<h2>{escape(path)}</h2>")
        parts.append(_file_table(path, [ln for ln in cov.lines if ln.file == path], source(path) or ""))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _file_table(path: str, lines: list[LineCoverage], text: str) -> str:
    src = text.splitlines()
    marked = {ln.line: ln for ln in lines}
    shown: list[int] = []
    for n in sorted(marked):
        for k in range(max(1, n - CONTEXT), n + CONTEXT + 1):
            if (k <= len(src) or k in marked) and (not shown or k > shown[-1]):
                shown.append(k)
    rows = ["<table class='src'>"]
    prev = 0
    for n in shown:
        if prev and n != prev + 1:
            rows.append("<tr class='ctx'><td></td><td></td><td>…</td></tr>")
        prev = n
        ln = marked.get(n)
        code = ln.text if ln is not None else (src[n - 1] if n <= len(src) else "")
        if ln is None:
            cls, cnt = "ctx", ""
        elif ln.count is None:
            cls, cnt = "nocode", "–"
        else:
            cls, cnt = ("hit" if ln.count else "never"), str(ln.count)
        why = f" <span class='why'>[{escape(ln.why)}: {escape(ln.origin)}]</span>" if ln is not None else ""
        rows.append(f"<tr class='{cls}'><td class='cnt'>{n}</td><td class='cnt'>{cnt}</td>"
                    f"<td>{escape(code)}{why}</td></tr>")
    rows.append("</table>")
    return "\n".join(rows)
