"""junit.xml: one testsuite per variant (one testcase per job) plus the run's own checks.

How a job reads depends on its variant (harness.judge.verdict.job_verdict): a failed check on a mutant is a
kill, not a failure. The "verdict" suite holds the checks the exit code is made of: series passes,
baseline shows the punt path, each mutant flagged; the "concerns" suite records each concern's static
status per revision (informational: the merged v7 still had concerns Linus raised).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from harness.judge.verdict import job_verdict


def _case(suite: ET.Element, classname: str, name: str, seconds: float = 0.0,
          failure: str = "", error: str = "", out: str = "", skipped: str = "") -> None:
    case = ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")
    if failure:
        ET.SubElement(case, "failure", message=failure.splitlines()[0][:500]).text = failure
    if error:
        ET.SubElement(case, "error", message=error.splitlines()[0][:500]).text = error
    if skipped:
        ET.SubElement(case, "skipped", message=skipped[:500])
    if out:
        ET.SubElement(case, "system-out").text = out


def _finish(suite: ET.Element) -> None:
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    suite.set("errors", str(sum(1 for c in cases if c.find("error") is not None)))
    suite.set("skipped", str(sum(1 for c in cases if c.find("skipped") is not None)))
    suite.set("time", f"{sum(float(c.get('time', '0')) for c in cases):.3f}")


def _job_out(job: Mapping[str, Any], note: str) -> str:
    lines = [note] if note else []
    lines += [f"status: {job['status']}", f"command: {job.get('command', '')}",
              f"reproducer: {job.get('reproducer', '')}", f"job_dir: {job.get('job_dir', '')}"]
    lines += [f"finding: {f}" for f in job.get("findings") or []]
    return "\n".join(lines)


def _variant_suites(root: ET.Element, data: Mapping[str, Any]) -> None:
    kinds = {name: v.get("kind", "") for name, v in data.get("variants", {}).items()}
    suites: dict[str, ET.Element] = {}
    for job in data.get("jobs", []):
        variant = str(job["variant"])
        if variant not in suites:
            suites[variant] = ET.SubElement(root, "testsuite", name=f"variant.{variant}")
        verdict, message = job_verdict(job, kinds.get(variant, ""))
        _case(suites[variant], f"{variant}.{job['fs']}", str(job["workload"]),
              float(job.get("duration") or 0.0),
              failure=message if verdict == "failure" else "", error=message if verdict == "error" else "",
              skipped=str(job.get("reason") or "skipped") if job["status"] == "skip" else "",
              out=_job_out(job, message if verdict == "pass" else ""))
    for suite in suites.values():
        _finish(suite)


def _verdict_suite(root: ET.Element, data: Mapping[str, Any]) -> None:
    suite = ET.SubElement(root, "testsuite", name="verdict")
    for name, v in data.get("variants", {}).items():
        if v.get("kind") == "mutant":
            continue
        what = {"series": "passes everything", "baseline": "shows the io-wq punt path"}.get(v["kind"], "runs")
        _case(suite, "verdict.variant", f"{name} {what}", failure="" if v["ok"] else v["reason"],
              out=f"{v['verdict']}: {v['reason']}")
    for name, m in data.get("mutants", {}).items():
        fail = "" if m["flagged"] or m.get("equivalent") else "no check flagged this mutant"
        note = f"equivalent: {m['equivalent']}" if m.get("equivalent") else "by: " + ", ".join(m["by"])
        _case(suite, "verdict.mutant", f"{name} flagged ({m.get('concern', '')})", failure=fail, out=note)
    if data.get("run", {}).get("status") not in ("complete", None):
        run = data["run"]
        _case(suite, "verdict.run", "run completed", error=f"run {run['status']}: {run.get('error', '')}")
    _finish(suite)


def _concern_suite(root: ET.Element, data: Mapping[str, Any]) -> None:
    concerns = data.get("concerns") or []
    not_checked = (data.get("verdict") or {}).get("not_checked") or []
    if not concerns and not_checked:  # said as a skipped case, so a CI's test view shows it
        suite = ET.SubElement(root, "testsuite", name="concerns")
        _case(suite, "concerns", "static review-concern status", skipped="; ".join(map(str, not_checked)))
        _finish(suite)
        return
    if not concerns:
        return
    suite = ET.SubElement(root, "testsuite", name="concerns")
    for c in concerns:
        where = f" (patch {c['patch']})" if c.get("patch") is not None else ""
        _case(suite, f"concerns.v{c['version']}", str(c["concern_id"]),
              out=f"{c['status']}{where}: {c.get('evidence', '')}")
    _finish(suite)


def render(data: Mapping[str, Any]) -> str:
    """junit.xml text for a results.json dict."""
    root = ET.Element("testsuites", name=f"kwb {data.get('run', {}).get('id', '')}")
    _variant_suites(root, data)
    _verdict_suite(root, data)
    _concern_suite(root, data)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
