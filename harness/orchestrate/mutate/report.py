"""A campaign's results: the mutation score, the survivors' diffs, the cost (results.json, report.md)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from harness.core.atomic import write_json, write_text
from harness.orchestrate.mutate.campaign import OUTCOMES, Outcome, State
from harness.orchestrate.mutate.generate import Argued


def argued_survivors(state: State, argued: dict[str, Argued] | None) -> dict[str, Argued]:
    """Survivors whose equivalence is argued (docs/mutants.md) for the very line this tree has."""
    out = {}
    for m in state.mutants:
        a = (argued or {}).get(m.id)
        survived = state.outcomes.get(m.id, Outcome()).status == "survived"
        if a and survived and a.original.strip() == m.original.strip():
            out[m.id] = a
    return out


def summary(state: State, argued: dict[str, Argued] | None = None) -> dict[str, Any]:
    """Counts per outcome, the score (killed+timeout / non-equivalent scored mutants) and the cost.

    A survivor argued equivalent (``argued``, the campaign file's ``[[equivalent]]``) is counted apart and
    leaves the score's denominator; ``raw_score`` keeps it in."""
    outcomes = {m.id: state.outcomes.get(m.id, Outcome()) for m in state.mutants}
    counts = {k: sum(1 for o in outcomes.values() if o.status == k) for k in OUTCOMES}
    equal = argued_survivors(state, argued)
    counts["argued_equivalent"] = len(equal)
    counts["survived"] -= len(equal)
    detected = counts["killed"] + counts["timeout"]
    scored = detected + counts["survived"]
    cost: dict[str, Any] = {"wall_seconds": round(state.wall_seconds, 1)}
    for part in ("object", "kernel", "boot", "checks", "total"):
        values = [o.cost[part] for o in outcomes.values() if part in o.cost]
        if values:
            cost[part] = {"n": len(values), "median": round(statistics.median(values), 1),
                          "min": round(min(values), 1), "max": round(max(values), 1),
                          "sum": round(sum(values), 1)}
    booted = [o.cost["total"] for o in outcomes.values() if "boot" in o.cost]
    if booted:
        cost["per_booted_mutant_median"] = round(statistics.median(booted), 1)
    return {"counts": counts, "detected": detected, "scored": scored,
            # None, not 0 %, when nothing was scored yet: a missing score must not read as a bad one
            "score": round(detected / scored, 4) if scored else None,
            "raw_score": round(detected / (scored + len(equal)), 4) if scored + len(equal) else None,
            "kills_by_check": dict(sorted(state.kills.items(), key=lambda kv: -kv[1])), "cost": cost}


def results(state: State, argued: dict[str, Argued] | None = None) -> dict[str, Any]:
    """results.json of a campaign."""
    equal = argued_survivors(state, argued)
    rows = []
    for m in state.mutants:
        o = state.outcomes.get(m.id, Outcome())
        rows.append({**m.to_dict(), "diff": m.diff(), "outcome": o.to_dict(),
                     **({"argued_equivalent": equal[m.id].reason} if m.id in equal else {})})
    return {"kind": "mutation-campaign", "settings": state.to_dict()["settings"],
            "summary": summary(state, argued),
            "control": state.control, "mutants": rows}


def _pct(score: float | None) -> str:
    return "n/a (nothing scored yet)" if score is None else f"{100 * score:.1f}%"


def _stat(cost: dict[str, Any], part: str) -> str:
    s = cost.get(part)
    return "-" if not s else f"{s['median']:.0f} s (min {s['min']:.0f}, max {s['max']:.0f}, n={s['n']})"


def _control(state: State) -> str:
    c = state.control
    if c is None:
        return "Control: not run (`--control` runs the checks on the unmodified kernel first)."
    ok = "passed every check" if c["status"] == "survived" else f"FAILED ({c['status']}: {c['evidence']})"
    return f"Control: the unmodified kernel {ok} — " + ", ".join(c.get("checks_run", []))


def markdown(state: State, argued: dict[str, Argued] | None = None) -> str:
    """report.md of a campaign."""
    s, equal = summary(state, argued), argued_survivors(state, argued)
    c, cost = s["counts"], s["cost"]
    st = state.settings
    out = ["# Mutation campaign", "",
           f"Files: {', '.join(f'`{f}`' for f in st.files)}; tree: {st.tree} (series commit "
           f"`{st.series_commit[:12]}`); {len(state.mutants)} mutants (max {st.max}, seed {st.seed}"
           + (f", shard {st.shard}" if st.shard else "") + ")",
           f"Checks: {', '.join(st.checks)} on {', '.join(st.filesystems)} (stop at the first kill; most "
           "kills first)", "",
           f"**Mutation score: {_pct(s['score'])}** — {s['detected']} detected (killed {c['killed']}, "
           f"timeout {c['timeout']}) of {s['scored']} non-equivalent mutants that ran; survived "
           f"{c['survived']}, stillborn {c['stillborn']}, equivalent by object {c['equivalent']}, "
           f"argued equivalent {c['argued_equivalent']} (docs/mutants.md), error {c['error']}, "
           f"pending {c['pending']}. Counting the argued ones as survivors: {_pct(s['raw_score'])}.", "",
           _control(state), "",
           "## Cost", "",
           f"Campaign wall time: {cost['wall_seconds']:.0f} s. Per mutant (median, min, max):", "",
           f"- object build (stillborn/equivalent decided here): {_stat(cost, 'object')}",
           f"- kernel link: {_stat(cost, 'kernel')}",
           f"- guest boot: {_stat(cost, 'boot')}",
           f"- checks until the first kill: {_stat(cost, 'checks')}",
           f"- whole mutant: {_stat(cost, 'total')}", ""]
    if s["kills_by_check"]:
        out += ["Kills by check: " + ", ".join(f"{k} {v}" for k, v in s["kills_by_check"].items()), ""]
    out += ["## Mutants", "", "| mutant | operator | line | outcome | by | evidence | time |",
            "|---|---|---|---|---|---|---:|"]
    for m in state.mutants:
        o = state.outcomes.get(m.id, Outcome())
        by = f"{o.check} ({o.fs})" if o.check else ""
        ev = o.evidence.replace("|", "\\|").replace("\n", " ")[:160]
        out.append(f"| `{m.id}` | {m.operator} | `{m.file}:{m.line}` | {o.status} | {by} | {ev} | "
                   f"{o.cost.get('total', 0):.0f} s |")
    survivors = [m for m in state.mutants
                 if state.outcomes.get(m.id, Outcome()).status == "survived" and m.id not in equal]
    out += ["", f"## Survivors ({len(survivors)})", "",
            "Each is a gap to close with a check, or an equivalence to argue in docs/mutants.md.", ""]
    for m in survivors:
        o = state.outcomes[m.id]
        out += [f"### `{m.id}`" + (f" (in `{m.function}`)" if m.function else ""), "",
                "Checks run: " + ", ".join(o.checks_run), "", "```diff", m.diff().rstrip(), "```", ""]
    if not survivors:
        out.append("(none)")
    out += ["", f"## Argued equivalent ({len(equal)})", "",
            "Survivors no input the tested kernel allows can tell from the series; the argument for each is "
            "in docs/mutants.md and the campaign file's `[[equivalent]]`.", ""]
    out += [f"- `{i}`: {a.reason}" for i, a in equal.items()] or ["(none)"]
    return "\n".join(out) + "\n"


def write(state: State, out_dir: Path, argued: dict[str, Argued] | None = None) -> None:
    """Write results.json and report.md into ``out_dir``."""
    write_json(out_dir / "results.json", results(state, argued))
    write_text(out_dir / "report.md", markdown(state, argued))
