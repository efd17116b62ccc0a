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

    monkeypatch.setattr(cli, "build_parser", lambda *_: Parser())
    assert cli.main(["anything"]) == ExitCode.BUG
    assert int(ExitCode.BUG) == 4
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("kwb: bug in kwb: KeyError at test_cli.py:")


def test_command_table_names_every_command_of_its_module() -> None:
    """COMMANDS maps each command word to the module that registers it, so `kwb X` can import only
    that module; the full parser (no command) still has every command."""
    import argparse

    from harness import cli

    def words(parser: argparse.ArgumentParser) -> set[str]:
        return {w for a in parser._actions if isinstance(a, argparse._SubParsersAction) for w in a.choices}

    assert words(cli.build_parser()) == set(cli.COMMANDS)
    for word, module in cli.COMMANDS.items():
        assert word in words(cli.build_parser(word)), (word, module)
    assert cli.command_word(["-q", "--profile", "series", "ci", "watch"]) == "ci"
    assert cli.command_word(["--profile=x", "--host-root"]) is None


def test_series_command_does_not_import_the_rest() -> None:
    """`kwb series …` on a whole archive pays for its own imports only (paramiko and the pipeline cost
    ~0.5 s and ~20 MiB of peak memory)."""
    import sys

    from harness.core.run import run

    code = ("import sys; from harness import cli; cli.build_parser(cli.command_word(['series', 'list'])); "
            "print(sorted(m for m in ('paramiko', 'harness.orchestrate.pipeline', 'harness.vm.guest') "
            "if m in sys.modules))")
    result = run([sys.executable, "-c", code], timeout=60)
    assert result.ok, result.tail()
    assert result.stdout.strip() == "[]"
