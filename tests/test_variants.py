"""variants.toml loading and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.errors import UserError
from harness.kernel import variants


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "variants.toml"
    path.write_text(text)
    return path


def test_missing_file_means_series_only(tmp_path: Path) -> None:
    found = variants.load_variants(tmp_path / "absent.toml")
    assert [v.name for v in found] == ["series"] and found[0].patches == []


def test_fields_are_loaded_and_series_is_always_there(tmp_path: Path) -> None:
    (tmp_path / "m.patch").write_text("diff --git a/x b/x\n")
    path = _write(tmp_path, '[[variant]]\nname = "mutant-a"\nkind = "mutant"\npatches = ["m.patch"]\n'
                            'concern = "lost-cqe-retry-incremental"\nflagged_by = ["probe-x"]\n')
    found = {v.name: v for v in variants.load_variants(path)}
    assert set(found) == {"series", "mutant-a"}
    assert found["mutant-a"].patches == [tmp_path / "m.patch"]
    assert found["mutant-a"].flagged_by == ["probe-x"]


@pytest.mark.parametrize(("text", "message"), [
    ('[[variant]]\nname = "a"\nkind = "series"\n[[variant]]\nname = "a"\nkind = "series"\n', "duplicate"),
    ('[[variant]]\nname = "a"\nkind = "weird"\n', "unknown kind 'weird'"),
    ('[[variant]]\nname = "a"\npatches = ["gone.patch"]\n', "patch file missing"),
    ('[[variant]]\nkind = "mutant"\n', "missing or invalid name"),
    ('[[variant]\n', "invalid TOML"),
])
def test_bad_files_are_user_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        variants.load_variants(_write(tmp_path, text))


def test_unknown_variant_lists_known(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"unknown variant 'x' \(known: series\)"):
        variants.get_variant("x", tmp_path / "absent.toml")


def test_project_variants_file_loads() -> None:
    names = [v.name for v in variants.load_variants()]
    assert "series" in names


def test_coverage_kind_adds_the_gcov_fragment(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[variant]]\nname = "coverage"\nkind = "coverage"\n\n'
                            '[[variant]]\nname = "m"\nkind = "mutant"\nfragments = ["lockdep"]\n')
    found = {v.name: v for v in variants.load_variants(path)}
    assert found["coverage"].fragments == ["gcov"]
    assert found["m"].fragments == ["lockdep"] and found["series"].fragments == []
