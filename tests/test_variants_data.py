"""The data behind the default tree's variants: the default profile's variants.toml and its patch files.

Unit tier: the TOML is well-formed for kernel.variants, every patch is a git format-patch that names its
variant and concern, stays small and touches only the series' files, every mutant is either flagged by a
known check or documented as equivalent, docs/mutants.md covers every variant. Real tier: every patch
applies to the default tree's base commit (`git apply --check` against a scratch index, so a tree that
is checked out on some other branch is left alone).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from harness.core import profile
from harness.core.paths import project_root
from harness.core.run import run
from harness.kernel.tree import Tree, prepare_tree
from harness.kernel.variants import load_variants

ROOT = project_root()
PROFILE = profile.load(profile.default_name())
VARIANTS = PROFILE.variants_file()
PATCH_DIR = VARIANTS.parent
CONCERNS = PROFILE.concerns_file
CATALOGUE = ROOT / "harness" / "workloads" / "catalogue"
PROBES = ROOT / "harness" / "workloads" / "probes"
DOC = ROOT / "docs" / "mutants.md"

# Checks a mutant may name in flagged_by (issue 4: fio path evidence, the concern probes, liburing's own
# tests, the kernel health scan that runs after every job).
KNOWN_CHECKS = {
    "fio-iouring", "fio-iouring-forced-async", "fio-psync", "fio-pvsync2",
    "probe-completion-accounting", "probe-data-integrity", "probe-kbuf-cancel", "probe-iopoll-buffered",
    "probe-ring-exit-inflight", "probe-short-read", "probe-lock-page-async", "liburing-subset", "health",
}
# The series' 6.12 files a variant may touch (io_uring, the page cache, the filesystems' fops flags).
ALLOWED_PATHS = re.compile(r"^(io_uring/|mm/filemap\.c$|include/linux/(pagemap|fs)\.h$|fs/(ext4|xfs|btrfs)/"
                           r"|block/fops\.c$)")
COVERAGE_PATHS = re.compile(r"^(io_uring|mm|block|fs/(ext4|xfs|btrfs))/Makefile$")
MAX_CHANGED_LINES = 12  # "a few lines": a mutant is a small, plausible defect
GIT_TIMEOUT = 120.0


def _entries() -> list[dict[str, object]]:
    data = tomllib.loads(VARIANTS.read_text(encoding="utf-8"))
    entries = data["variant"]
    assert isinstance(entries, list)
    return entries


def _mutants() -> list[dict[str, object]]:
    return [e for e in _entries() if e["kind"] == "mutant"]


def _names(kind: str | None = None) -> list[str]:
    return [str(e["name"]) for e in _entries() if kind is None or e["kind"] == kind]


def _patch_files() -> list[Path]:
    files: list[Path] = []
    for e in _entries():
        patches = e["patches"]
        assert isinstance(patches, list)
        files += [PATCH_DIR / str(p) for p in patches]
    return files


def _numstat(patch: Path) -> list[tuple[int, int, str]]:
    """(added, deleted, path) per file, as git itself parses the patch (no tree needed)."""
    # Outside any repository: inside one, git apply ignores paths outside the current directory.
    res = run(["git", "apply", "--numstat", str(patch)], timeout=GIT_TIMEOUT, cwd="/")
    assert res.ok, f"{patch.name}: git cannot parse it: {res.tail(3)}"
    rows = []
    for line in res.stdout.splitlines():
        added, deleted, path = line.split("\t")
        rows.append((int(added), int(deleted), path))
    assert rows, f"{patch.name}: no file changes"
    return rows


def test_loader_accepts_the_file() -> None:
    variants = load_variants(VARIANTS)
    assert [v.name for v in variants] == _names()
    assert all(p.is_file() for v in variants for p in v.patches)


def test_required_fields_and_kinds() -> None:
    for e in _entries():
        for key in ("name", "kind", "patches", "description", "concern", "flagged_by", "equivalent"):
            assert key in e, f"{e.get('name')}: missing {key}"
        assert str(e["description"]).strip(), f"{e['name']}: empty description"
    assert _names("series") == ["series"]
    series = next(e for e in _entries() if e["name"] == "series")
    assert series["patches"] == []
    assert _names("baseline") == ["baseline"]
    assert all(n.startswith("mutant-") for n in _names("mutant"))


def test_at_least_five_mutants_a_check_can_flag() -> None:
    flaggable = [e["name"] for e in _mutants() if e["flagged_by"] and not e["equivalent"]]
    assert len(flaggable) >= 5, flaggable


def test_mutant_is_flagged_or_equivalent_never_both() -> None:
    for e in _mutants():
        flagged, equivalent = e["flagged_by"], str(e["equivalent"]).strip()
        assert bool(flagged) != bool(equivalent), (
            f"{e['name']}: needs flagged_by or an equivalence reason (exactly one)")
        if equivalent:
            assert len(equivalent) > 40, f"{e['name']}: equivalence reason too thin: {equivalent!r}"


def test_flagged_by_names_known_checks() -> None:
    for e in _mutants():
        flagged = e["flagged_by"]
        assert isinstance(flagged, list)
        unknown = sorted(set(map(str, flagged)) - KNOWN_CHECKS)
        assert not unknown, f"{e['name']}: unknown checks {unknown}"


def test_flagged_by_checks_exist_in_the_harness() -> None:
    """Each named workload has a catalogue entry, and each probe its C source."""
    catalogue = {tomllib.loads(p.read_text(encoding="utf-8")).get("name") for p in CATALOGUE.glob("*.toml")}
    probes = {p.stem for p in PROBES.glob("probe-*.c")}
    named = {str(c) for e in _mutants() for c in e["flagged_by"]}  # type: ignore[attr-defined]
    assert named - {"health"}, "no mutant names a workload that flags it"
    missing = sorted(c for c in named - {"health"}
                     if c not in catalogue or (c.startswith("probe-") and c not in probes))
    assert not missing, f"checks named by mutants but not in the harness: {', '.join(missing)}"


def test_mutant_concerns_exist_in_catalogue() -> None:
    ids = {c["id"] for c in tomllib.loads(CONCERNS.read_text(encoding="utf-8"))["concern"]}
    for e in _mutants():
        assert e["concern"] in ids, f"{e['name']}: concern {e['concern']!r} not in {CONCERNS.name}"
    for e in _entries():
        if e["kind"] != "mutant":
            assert e["concern"] == "" and e["flagged_by"] == [], f"{e['name']}: only mutants carry these"


def test_every_patch_file_is_used_once() -> None:
    used = sorted(p.name for p in _patch_files())
    on_disk = sorted(p.name for p in PATCH_DIR.glob("*.patch"))
    assert used == on_disk, "orphan or shared patch files"


def test_patch_headers_name_variant_and_concern() -> None:
    for e in _entries():
        for rel in e["patches"]:  # type: ignore[attr-defined]
            text = (PATCH_DIR / str(rel)).read_text(encoding="utf-8")
            assert text.startswith("From "), f"{rel}: not a git format-patch"
            assert re.search(r"^Subject: \[PATCH\] \S", text, re.M), f"{rel}: no subject"
            assert f"kwb-variant: {e['name']}\n" in text, f"{rel}: header does not name {e['name']}"
            if e["kind"] == "mutant":
                assert f"Concern: {e['concern']}." in text, f"{rel}: header does not name the concern"
                assert re.search(r"<[^<>@\s]+@[^<>\s]+>|seeds/000_", text), (
                    f"{rel}: header does not cite the review message")
                if e["equivalent"]:
                    assert "EQUIVALENT" in text, f"{rel}: equivalence not explained in the header"


def test_patches_are_small_and_touch_only_series_files() -> None:
    for e in _entries():
        for rel in e["patches"]:  # type: ignore[attr-defined]
            rows = _numstat(PATCH_DIR / str(rel))
            for _, _, path in rows:
                # the coverage variant only marks the series' objects for gcov in their Makefiles
                allowed = COVERAGE_PATHS if e["kind"] == "coverage" else ALLOWED_PATHS
                assert allowed.match(path), f"{rel}: touches {path}"
            if e["kind"] == "mutant":
                changed = sum(a + d for a, d, _ in rows)
                assert changed <= MAX_CHANGED_LINES, f"{rel}: {changed} changed lines is not 'a few'"


def test_baseline_drops_rasync_everywhere_and_keeps_the_callback() -> None:
    text = (PATCH_DIR / "baseline.patch").read_text(encoding="utf-8")
    files = {path for _, _, path in _numstat(PATCH_DIR / "baseline.patch")}
    # io_uring/rw.c stays untouched: disarming io_rw_should_retry() there lets the compiler drop
    # io_async_buf_func(), and the path evidence could no longer count its (zero) hits.
    assert files == {"fs/ext4/file.c", "fs/xfs/xfs_file.c", "fs/btrfs/file.c", "block/fops.c"}
    removed = [ln for ln in text.splitlines() if ln.startswith("-") and "FOP_BUFFER_RASYNC" in ln]
    added = [ln for ln in text.splitlines() if ln.startswith("+") and "FOP_BUFFER_RASYNC" in ln]
    assert len(removed) == 4 and not added


def test_doc_covers_every_variant() -> None:
    if not DOC.is_file():
        pytest.fail(f"{DOC} missing")
    doc = DOC.read_text(encoding="utf-8")
    for name in _names():
        assert f"`{name}`" in doc, f"docs/mutants.md does not describe {name}"


@pytest.fixture(scope="module")
def default_tree() -> Tree:
    """The default tree (prepared by the kernel pipeline; prepared here if absent)."""
    return prepare_tree()


@pytest.mark.host
@pytest.mark.real
@pytest.mark.parametrize("patch", sorted(p.name for p in PATCH_DIR.glob("*.patch")))
def test_patch_applies_to_default_tree(default_tree: Tree, patch: str, tmp_path: Path) -> None:
    # A scratch index holding the base: the tree's own checkout and index stay untouched.
    env = {"GIT_INDEX_FILE": str(tmp_path / "index")}
    repo = str(default_tree.path)
    res = run(["git", "-C", repo, "read-tree", default_tree.base], timeout=GIT_TIMEOUT, env=env)
    assert res.ok, res.tail(3)
    res = run(["git", "-C", repo, "apply", "--check", "--cached", str(PATCH_DIR / patch)],
              timeout=GIT_TIMEOUT, env=env)
    assert res.ok, f"{patch} does not apply to the default tree: {res.tail(5)}"


@pytest.mark.build
@pytest.mark.real
@pytest.mark.parametrize("name", [n for n in _names() if n != "series"])
def test_variant_builds(name: str) -> None:
    """Each variant compiles and links (incremental build, reused from the kernel cache when present)."""
    from harness.kernel.build import ensure_kernel

    build = ensure_kernel(name)
    assert build.variant == name
    assert build.bzimage.is_file() and build.bzimage.stat().st_size > 1_000_000
    assert build.release.startswith("6.12")
