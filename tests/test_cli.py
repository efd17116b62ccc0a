"""CLI: exit codes and one-line errors."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.core.errors import ExitCode, InfraError, KwbError, UserError


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


def test_unexpected_exception_is_a_bug_not_infrastructure(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """An exception no stage expected exits 4 ("bug in kwb") with one line, never 2 (the machine's fault)."""
    import argparse

    from harness import cli

    def broken(args: argparse.Namespace) -> int:
        raise KeyError("profile")

    class Parser(argparse.ArgumentParser):
        def parse_args(self, *a: object, **k: object) -> argparse.Namespace:  # type: ignore[override]
            return argparse.Namespace(func=broken, profile=None)

    monkeypatch.setattr(cli, "build_parser", lambda: Parser())
    assert cli.main(["anything"]) == ExitCode.BUG
    assert int(ExitCode.BUG) == 4
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("kwb: bug in kwb: KeyError at test_cli.py:")
