"""CLI: exit codes and one-line errors."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.errors import ExitCode, InfraError, KwbError, UserError


def test_no_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == ExitCode.USAGE


def test_unknown_option_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--no-such-option"])
    assert exc.value.code == ExitCode.USAGE


def test_error_messages_are_one_line() -> None:
    assert str(UserError("a\nb")) == "a b"
    assert UserError("x").exit_code == ExitCode.USAGE
    assert InfraError("x").exit_code == ExitCode.INFRASTRUCTURE
    assert issubclass(UserError, KwbError) and issubclass(InfraError, KwbError)
