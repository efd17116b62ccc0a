"""report.html in headless Chromium (Debian's `chromium`): the rendered DOM holds the report's tables and
the screenshot is a page, not a blank; a page that lost its tables fails the same check."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report_results import stored

from harness.report import html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WINDOW = (1280, 2400)
# run-a: 4 cover-letter tables, paths, concerns, mutants, variants, every-job perf tables, the jobs table.
MIN_TABLES = 10


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    argv = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", "--disable-dev-shm-usage", f"--window-size={WINDOW[0]},{WINDOW[1]}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def screenshot(page: Path, png: Path) -> Path:
    """A PNG of ``page`` as headless Chromium draws it."""
    res = _chromium(f"--screenshot={png}", page.as_uri())
    assert png.is_file(), res.stderr[-2000:]
    return png


def dom(page: Path) -> str:
    """The DOM after Chromium parsed and laid out ``page``."""
    res = _chromium("--dump-dom", page.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def _pixels(png: Path) -> object:
    import matplotlib.image

    return matplotlib.image.imread(str(png))


def check_page(page: Path, tmp: Path) -> list[str]:
    """What is wrong with a rendered report: too few tables (or empty ones) in the DOM, a blank
    screenshot, or a screenshot no different from the same page with its tables taken out."""
    import numpy as np

    problems = []
    tree = dom(page)
    tables = re.findall(r"<table\b.*?</table>", tree, flags=re.S)
    full = [t for t in tables if t.count("<tr") >= 2]
    if len(full) < MIN_TABLES:
        problems.append(f"{len(full)} tables with rows in the rendered DOM, expected at least {MIN_TABLES}")
    if "position: sticky" not in tree and "position:sticky" not in tree:
        problems.append("no sticky header style")
    shot = np.asarray(_pixels(screenshot(page, tmp / f"{page.stem}.png")))
    colours = len(np.unique(shot.reshape(-1, shot.shape[-1])[::97], axis=0))
    if colours < 20:
        problems.append(f"screenshot looks blank ({colours} colours)")
    stripped = tmp / f"{page.stem}-no-tables.html"
    stripped.write_text(re.sub(r"<table\b.*?</table>", "", page.read_text(), flags=re.S))
    bare = np.asarray(_pixels(screenshot(stripped, tmp / f"{page.stem}-no-tables.png")))
    if shot.shape == bare.shape:
        changed = float(np.mean(np.any(np.abs(shot - bare) > 0.02, axis=-1)))
        if changed < 0.05:  # the tables make up far more of the page than 5 % of its pixels
            problems.append(f"the page without its tables looks the same ({changed:.1%} of pixels differ)")
    return problems


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    if CHROMIUM is None:
        pytest.skip("chromium not installed (ci/debian-packages.txt; run `make setup`)")
    page = tmp_path / "report.html"
    page.write_text(html.render(stored("run-a")))
    return page


@pytest.mark.host
def test_report_html_renders_its_tables_in_chromium(rendered: Path, tmp_path: Path) -> None:
    assert check_page(rendered, tmp_path) == []


@pytest.mark.host
def test_the_check_fails_when_the_page_loses_its_tables(rendered: Path, tmp_path: Path) -> None:
    # As if the renderer dropped every table (the Markdown pipe rows left as paragraphs).
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r"<table\b.*?</table>", "<p>| row | IOPS |</p>", rendered.read_text(),
                             flags=re.S))
    problems = check_page(broken, tmp_path)
    assert any("tables with rows in the rendered DOM" in p for p in problems)
    assert any("looks the same" in p for p in problems)
