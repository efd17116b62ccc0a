"""Shared fixtures: every test runs with an isolated HOME, XDG dirs and git identity."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from harness.kernel.build import KernelBuild

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
LORE_MBOX = SHARED / "lore" / "io-uring-2020-05-18--2020-07-15.mbox"
SEEDS = SHARED / "seeds"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME, XDG dirs and git config point into a temp dir; the kwb cache is kept (kernel builds are slow)."""
    home = tmp_path_factory.mktemp("home")
    real_cache = os.environ.get("KWB_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kwb")
    monkeypatch.setenv("KWB_CACHE", real_cache)
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, str(home / var.lower()))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg_cache"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    # The series profile a test sees is the default unless it chooses one (profile.use() sets this).
    monkeypatch.setenv("KWB_PROFILE", "")
    (home / "gitconfig").write_text("[user]\n\tname = kwb test\n\temail = kwb@example.invalid\n"
                                    "[init]\n\tdefaultBranch = main\n")
    return home


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private kwb cache for unit tests that must not touch the real one (fake trees, fake builds)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("KWB_CACHE", str(path))
    return path


def git(repo: Path, *args: str) -> str:
    """``git -C repo args…`` for test set-up; raises on failure, returns stripped stdout."""
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def lore_mbox() -> Path:
    """The shared io-uring list archive; skips with a reason when ../shared is absent."""
    if not LORE_MBOX.is_file():
        pytest.skip(f"shared input missing: {LORE_MBOX}")
    return LORE_MBOX


@pytest.fixture
def seeds() -> Path:
    """The shared seed documents directory; skips with a reason when absent."""
    if not SEEDS.is_dir():
        pytest.skip(f"shared input missing: {SEEDS}")
    return SEEDS


# What each tier needs, for skip reasons that say what was skipped.
TIERS = {"shared": "the shared input data (../shared)", "host": "host tools",
         "build": "a kernel build", "boot": "a booted guest"}
# Tiers that are slow enough to be `real` (the umbrella `make test-unit` deselects).
REAL_TIERS = ("host", "build", "boot")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tier markers: host/build/boot imply `real`; a `real` test must say which tier it is. With
    KWB_SKIP_REAL=1 real tests are skipped, loudly, naming what they need (never silently)."""
    untiered, unbuilt = [], []
    for item in items:
        # Checked at collection, so a test that needs a kernel but does not say so fails in the unit tier too,
        # before anything is built.
        if "built_kernel" in getattr(item, "fixturenames", ()) and not any(
                item.get_closest_marker(t) for t in ("build", "boot")):
            unbuilt.append(item.nodeid)
        if any(item.get_closest_marker(t) for t in REAL_TIERS) and item.get_closest_marker("real") is None:
            item.add_marker(pytest.mark.real)
        if item.get_closest_marker("real") is not None and not any(item.get_closest_marker(t) for t in TIERS):
            untiered.append(item.nodeid)
    if untiered:
        raise pytest.UsageError("real tests must name their tier (shared, host, build or boot): "
                                + ", ".join(untiered))
    if unbuilt:
        raise pytest.UsageError("tests using built_kernel must be marked build or boot: "
                                + ", ".join(unbuilt))
    if os.environ.get("KWB_SKIP_REAL") != "1":
        return
    for item in items:
        if "real" in item.keywords:
            needs = ", ".join(TIERS[t] for t in TIERS if item.get_closest_marker(t))
            item.add_marker(pytest.mark.skip(reason=f"KWB_SKIP_REAL=1: real tier skipped on request "
                                                    f"(needs {needs})"))


def _real_cache() -> str:
    return os.environ.get("KWB_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kwb")


@pytest.fixture(scope="session")
def _series_kernel() -> KernelBuild:
    """Built once per session through ensure_kernel and the real kwb cache (fast when already built)."""
    import sys
    import time

    from harness.kernel.build import ensure_kernel

    last = [0.0]

    def progress(message: str) -> None:
        # CI logs get a sign of life every 30 s during a cold build, not thousands of lines.
        if time.monotonic() - last[0] >= 30 or message.startswith(("reusing", "configuring")):
            last[0] = time.monotonic()
            print(f"built_kernel: {message}", file=sys.__stderr__, flush=True)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KWB_CACHE", _real_cache())
        return ensure_kernel("series", progress=progress)


@pytest.fixture
def built_kernel(request: pytest.FixtureRequest) -> KernelBuild:
    """KernelBuild of the default tree's "series" variant; only for tests marked build or boot."""
    if not any(request.node.get_closest_marker(t) for t in ("build", "boot")):
        pytest.fail("built_kernel builds a real kernel: mark the test @pytest.mark.build (or boot)")
    kernel: KernelBuild = request.getfixturevalue("_series_kernel")
    return kernel
