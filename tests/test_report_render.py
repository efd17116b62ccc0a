"""junit.xml, report.md and report.html rendered from the stored synthetic runs."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

from test_report_results import default_tree_run, stored

from harness.report import html, junit, markdown


def _suites(xml: str) -> dict[str, ET.Element]:
    root = ET.fromstring(xml)
    return {s.get("name", ""): s for s in root.findall("testsuite")}


def test_junit_one_testcase_per_job_plus_checks() -> None:
    data = stored("run-a")
    suites = _suites(junit.render(data))
    job_cases = sum(len(s.findall("testcase")) for n, s in suites.items() if n.startswith("variant."))
    assert job_cases == len(data["jobs"])
    assert suites["variant.series"].get("failures") == "0"
    # A killed mutant's failing probe is evidence, not a failure; the expected baseline miss likewise.
    assert suites["variant.mutant-kbuf-leak"].get("failures") == "0"
    killed = [c for c in suites["variant.mutant-kbuf-leak"] if c.get("name") == "probe-kbuf-cancel"
              and c.get("classname") == "mutant-kbuf-leak.ext4"]
    assert "flagged: timeout" in (killed[0].findtext("system-out") or "")
    verdict = suites["verdict"]
    assert verdict.get("failures") == "0" and len(verdict.findall("testcase")) == 5
    assert len(suites["concerns"].findall("testcase")) == len(data["concerns"])


def test_junit_failures_carry_the_reason() -> None:
    data = stored("run-b")
    verdict = _suites(junit.render(data))["verdict"]
    failed = [c for c in verdict if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["mutant-lost-cqe flagged (lost-cqe-retry-incremental)"]
    failure = failed[0].find("failure")
    assert failure is not None and failure.get("message") == "no check flagged this mutant"


def test_junit_series_job_failure_and_unfinished_run() -> None:
    data = stored("run-a")
    job = next(j for j in data["jobs"] if j["variant"] == "series" and j["workload"] == "fio-psync")
    job.update(status="crash", reason="BUG: soft lockup")
    data["run"].update(status="failed", error="guest never booted")
    suites = _suites(junit.render(data))
    assert suites["variant.series"].get("failures") == "1"
    case = next(c for c in suites["verdict"] if c.get("name") == "run completed")
    err = case.find("error")
    assert err is not None and "guest never booted" in (err.get("message") or "")


def test_markdown_has_the_cover_letter_table_paths_mutants_concerns() -> None:
    md = markdown.render(stored("run-a"))
    first, second = md.splitlines()[:2]
    assert first.startswith("**kwb verdict: PASS** — series: pass (all 20 jobs passed); "
                            "baseline: punt-shown")
    assert first.endswith("mutants: 2 of 2 flagged  ")
    assert second == "All checks ran: 52 jobs on debian-6.12 6.12.117 (tcg), run run-a."
    for fs in ("ext4", "xfs", "btrfs", "bdev"):
        assert f"### {fs}" in md
    # The cover letter's table: the four rows, each ratio to the series with its significance.
    assert "| row | IOPS | ÷ series | CPU µs/IO | ÷ series | ctx switches | ÷ series |" in md
    # per-repeat IOPS on both sides: the Welch t-interval of results.json's ratios, not the ranges
    assert "| baseline (fio-iouring) | 10,700 ±4% | 0.67x [0.63, 0.70], significant | 74.8 | " \
        "2.66x, 1 sample" in md
    assert "| series (fio-iouring) | 16,000 ±4% | = | 28.1 | = | 251 | = |" in md
    assert "| psync (fio-psync) | 2,926 ±2% | 0.18x [0.17, 0.19], significant |" in md
    sections = [ln for ln in md.splitlines() if ln.startswith("## ")]
    assert [s.split(":")[0].split(" (")[0] for s in sections[:4]] == [
        "## Cover letter comparison", "## Async buffered read path evidence", "## Review concerns",
        "## Mutants"]
    assert "| fio-iouring | series | 8.00s | 16,000 ±4% | 45% | 28.1 | 251 |" in md
    assert "- fio-iouring: series/baseline IOPS 1.50x ±8%, CPU per IO 0.38x, ctx switches 0.01x" in md
    assert "| ext4 | **async** (callback=144000 io-wq=0) | **io-wq** (callback=0 io-wq=72000) |" in md
    assert "2 of 2 mutants flagged (1 more documented as equivalent: no check can flag them)." in md
    assert "| mutant-kbuf-leak | kbuf-leak-on-cancel | **flagged** | probe-kbuf-cancel@ext4 |" in md
    assert re.search(r"\| `iocb-private-reuse` .* \| present \(p7\) \| addressed \(p7\) \| addressed", md)
    assert "| concern | v3 | v4 | v5 | v7 |" in md


def test_markdown_failing_run_says_why() -> None:
    md = markdown.render(stored("run-b"))
    assert md.startswith("**kwb verdict: FAIL** — ")
    assert md.splitlines()[1].startswith("Failed: mutant-lost-cqe: missed")
    assert "Failed: mutant-lost-cqe: missed: no check flagged it" in md
    assert "| mutant-lost-cqe | lost-cqe-retry-incremental | **MISSED** |" in md


def test_markdown_of_an_empty_run_does_not_crash() -> None:
    from harness.report.results import RunRecord

    md = markdown.render(RunRecord(run_id="x", command="kwb test-series").to_dict())
    assert "_No performance jobs" in md and "_No mutants in this run._" in md


def test_markdown_names_the_default_tree_base_commit() -> None:
    md = markdown.render(default_tree_run("series", "baseline"))
    assert "- kernel: debian-6.12 base 0123456789ab (Debian linux-source-6.12), release –" in md
    assert "- kernel: debian-6.12 base base, release 6.12.117" in markdown.render(stored("run-a"))


def test_html_embeds_three_png_plots_and_the_tables() -> None:
    page = html.render(stored("run-a"))
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 3
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    for label in ("IOPS", "CPU µs per IO", "context switches"):
        assert f"<h3>{label}: baseline / series / forced-async / psync per filesystem</h3>" in page
    assert "<table>" in page and "<b>flagged</b>" in page and "<code>iocb-private-reuse</code>" in page
    assert "<script" not in page
    assert page.count("<tr class='") == len(stored("run-a")["jobs"])
    assert "<code>kwb run --variant series</code>" in page
    # Styled: sticky verdict header, status colours, a readable width; each job links to its files.
    assert "<header class='pass'>" in page and "position:sticky" in page and "max-width:72rem" in page
    assert "<span class='badge'>PASS</span>" in page
    assert "<td class='ok'><b>flagged</b></td>" in page and "<td class='bad'>present (p7)</td>" in page
    for name in ("command", "stdout", "stderr", "exitcode", "reproduce.sh"):
        assert f"<a href='series/ext4/fio-iouring/{name}'>" in page
    # The plots sit right after the cover letter's table, before the path evidence.
    assert page.index("Plots, grouped like") < page.index("Async buffered read path evidence")


def test_html_series_per_metric() -> None:
    table = html.series_for(stored("run-a"), "cpu_per_io")
    assert round(table["fio-iouring"]["series"]["ext4"].median, 1) == 28.1
    assert "probe-kbuf-cancel" not in table  # no metrics, no plot
    cover = html.cover_series(stored("run-a"), "iops")
    assert list(cover["ext4"]) == ["series", "forced-async", "psync", "baseline"] or \
        set(cover["ext4"]) == {"baseline", "series", "forced-async", "psync"}
    assert cover["ext4"]["series"].median == 16000.0 and cover["ext4"]["baseline"].median == 10700.0


def test_significance_uses_95_intervals_when_given_else_ranges() -> None:
    a = {"iops": {"median": 100.0, "ci95": [95.0, 105.0], "values": [90.0, 100.0, 110.0]}}
    b = {"iops": {"median": 110.0, "ci95": [106.0, 114.0], "values": [104.0, 110.0, 116.0]}}
    assert markdown.significance(a, b, "iops") == "significant (95% intervals apart)"
    assert markdown.significance({"iops": {"median": 1, "values": [90.0, 110.0]}},
                                 {"iops": {"values": [104.0, 116.0]}}, "iops") == \
        "within noise (ranges overlap)"
    assert markdown.significance({"iops": 100.0}, b, "iops") == "1 sample"


def test_a_run_without_mail_says_so_in_its_two_verdict_lines() -> None:
    data = stored("run-a")
    data = {**data, "concerns": [], "run": {**data["run"], "mail": {"kind": "none", "spec": None,
                                                                      "reason": "skipped: no mail source"}},
            "verdict": {**data["verdict"], "not_checked": ["review concerns: skipped: no mail source"]}}
    md = markdown.render(data)
    assert md.splitlines()[1] == "Not checked: review concerns: skipped: no mail source"
    assert "_skipped: no mail source_" in md
