"""load_toml: parsed tables, and one one-line error naming the file and what it is for each failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.errors import InfraError, UserError
from harness.core.tomlfile import load_toml


def _raised(path: Path, what: str = "widget list") -> str:
    with pytest.raises(UserError) as exc:
        load_toml(path, what)
    text = str(exc.value)
    assert text.startswith(f"{what} {path}: ") and "\n" not in text
    return text


def test_parses_tables_and_arrays(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text('title = "é"\n[[widget]]\nname = "a"\nsize = 3\n', encoding="utf-8")
    assert load_toml(path, "widget list") == {"title": "é", "widget": [{"name": "a", "size": 3}]}


def test_missing_file_says_not_found(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    assert _raised(path) == f"widget list {path}: not found"


def test_unreadable_path_says_why(tmp_path: Path) -> None:
    path = tmp_path / "dir.toml"
    path.mkdir()
    assert _raised(path) == f"widget list {path}: cannot read: Is a directory"


def test_non_utf8_file_is_a_read_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    assert "cannot read: not UTF-8 text (invalid continuation byte at byte 11)" in _raised(path)


def test_invalid_toml_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('ok = 1\n[[widget]\nname = "a"\n')
    text = _raised(path)
    assert f"{path}: invalid TOML: " in text and "line 2" in text


def test_error_class_can_be_infra_for_packaged_files(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(InfraError, match=r"^tool list .*absent\.toml: not found$"):
        load_toml(path, "tool list", error=InfraError)
