"""Writing a run: results.json first, then the renderers (junit.xml, report.md, report.html), and
``out/latest``. Kept apart from the model (:mod:`harness.report.results`) so the model never imports the
writers that read it."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.core.atomic import write_json, write_text
from harness.report import html, junit, markdown
from harness.report.results import RunRecord, now_iso


def write_run(data: dict[str, Any], run_dir: Path) -> list[str]:
    """Write results.json then junit.xml, report.md, report.html; returns the problems met.

    results.json comes first and on its own: a broken renderer must never cost the raw results.
    """
    write_json(run_dir / "results.json", data)
    renderers: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("junit.xml", junit.render), ("report.md", markdown.render), ("report.html", html.render)]
    problems: list[str] = []
    for name, render in renderers:
        try:
            write_text(run_dir / name, render(data))
        except Exception as exc:  # one failing renderer must not stop the others
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
            print(f"kwb: warning: could not write {name}: {exc}", file=sys.stderr)
    return problems


def update_latest(out_root: Path, run_dir: Path) -> None:
    """Point ``out_root/latest`` at ``run_dir`` atomically (new symlink, then rename over the old)."""
    link = out_root / "latest"
    tmp = out_root / f".latest.{os.getpid()}.{secrets.token_hex(2)}"
    target = os.path.relpath(run_dir, out_root)
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def finalize(record: RunRecord, run_dir: Path, out_root: Path | None) -> dict[str, Any]:
    """Stamp the finish time, write every file and move ``latest``; returns results.json's content."""
    record.finished = now_iso()
    data = record.to_dict()
    write_run(data, run_dir)
    if out_root is not None:
        update_latest(out_root, run_dir)
    return data
