"""The real stages' own logic (the rest is covered through the pipeline tests and the real tier)."""

from __future__ import annotations

from harness.orchestrate import stages
from harness.series import concerns
from harness.workloads import catalogue


def test_every_concern_gets_the_checks_that_name_it() -> None:
    cat = concerns.load_catalogue()
    workloads = catalogue.load_catalogue()
    checks = stages.concern_checks(cat, workloads)
    assert set(checks) == {c.id for c in cat}
    for spec in workloads.values():
        for cid in spec.concerns:
            assert spec.name in checks[cid], (cid, spec.name)
    for c in cat:
        assert checks[c.id][:len(c.workloads)] == list(c.workloads)  # its own list first, in order
