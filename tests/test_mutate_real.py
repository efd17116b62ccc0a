"""kwb mutate end to end on the default tree: three generated mutants built, booted and checked.

Needs the default tree and its `series` kernel (a cold build takes ~20 min; each mutant is an incremental
build plus a TCG boot). Run under the heavy lock: `flock /tmp/kwb-heavy.lock pytest -m real -k mutate`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main

pytestmark = pytest.mark.real

FINAL = {"killed", "timeout", "survived", "stillborn", "equivalent"}


@pytest.mark.boot
def test_three_mutant_campaign_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "campaign"
    argv = ["mutate", "--max", "3", "--seed", "1", "--checks", "probe-short-read,probe-completion-accounting",
            "--fs", "ext4", "--control", "--out", str(out)]
    rc = main(argv)
    err = capsys.readouterr().err
    with capsys.disabled():  # the run's outcomes and cost in the test log (tmp_path does not last)
        print("\n" + (out / "report.md").read_text() if (out / "report.md").is_file() else err[-3000:])
    assert rc == 0, err[-2000:]
    data = json.loads((out / "results.json").read_text())
    rows = data["mutants"]
    assert len(rows) == 3
    for row in rows:
        o = row["outcome"]
        assert o["status"] in FINAL, row
        assert o["cost"]["object"] > 0 and o["cost"]["total"] >= o["cost"]["object"]
        assert (out / "mutants" / f"{row['id']}.diff").is_file()
        if o["status"] in ("killed", "timeout"):
            assert o["check"] and o["fs"] and o["evidence"], row
        if o["status"] in ("killed", "timeout", "survived") and o["check"] != "boot":
            # a kernel (linked now, or kept from an earlier run: the same mutant is the same commit),
            # one boot and at least one check really ran for it
            assert o["cost"]["kernel"] >= 0 and o["cost"]["boot"] > 0 and o["checks_run"], row
        if o["status"] == "stillborn":
            assert "error" in o["evidence"] or "failed" in o["evidence"], row
    assert data["control"]["status"] == "survived"  # the checks pass on the unmodified kernel
    summary = data["summary"]
    # a survivor argued equivalent (the campaign file's [[equivalent]]) leaves the score's denominator
    argued = [r for r in rows if "argued_equivalent" in r]
    assert all(r["outcome"]["status"] == "survived" for r in argued)
    assert summary["counts"]["argued_equivalent"] == len(argued)
    assert summary["scored"] + len(argued) == sum(r["outcome"]["status"] in ("killed", "timeout", "survived")
                                                  for r in rows)
    md = (out / "report.md").read_text()
    assert "Mutation score:" in md and "Campaign wall time:" in md
    for row in rows:
        if row in argued:
            assert f"- `{row['id']}`: {row['argued_equivalent']}" in md  # listed with its reason
        elif row["outcome"]["status"] == "survived":
            assert row["mutated"] in md  # the survivor's diff is in the report

    # A second run with the same --out resumes: nothing left to build, same outcomes.
    assert main(argv) == 0
    assert "0 of 3 mutants to run" in capsys.readouterr().err
    again = json.loads((out / "results.json").read_text())
    assert [r["outcome"]["status"] for r in again["mutants"]] == [r["outcome"]["status"] for r in rows]
