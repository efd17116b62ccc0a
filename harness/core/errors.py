"""kwb's error kinds and the exit codes. Only the CLI turns exceptions into exit codes.

Four kinds, as LAVA has them: the user's input (usage), the machine or a tool (infrastructure), a test that
failed (a verdict, not an exception), and a bug in kwb itself (an internal invariant broke, or an exception
no stage expected): a bug is never reported as the machine's fault.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes, defined once for every kwb command."""

    PASS = 0
    TEST_FAILURE = 1
    INFRASTRUCTURE = 2
    USAGE = 3
    BUG = 4


class KwbError(Exception):
    """Base of kwb's own errors; the message is one line, shown to the user as is."""

    exit_code: ExitCode = ExitCode.INFRASTRUCTURE

    def __init__(self, message: str) -> None:
        # Multi-line messages would break the "one line per error" promise of the CLI.
        super().__init__(" ".join(message.split("\n")).strip())


class UserError(KwbError):
    """Bad input from the user: a missing file, a malformed mbox, an unknown revision (exit 3)."""

    exit_code = ExitCode.USAGE


class InfraError(KwbError):
    """The machine or a tool failed: build broke, QEMU died, a timeout expired (exit 2)."""

    exit_code = ExitCode.INFRASTRUCTURE


class OfflineError(InfraError):
    """A network-only operation was asked for on a machine without network."""


class CommandTimeout(InfraError):
    """A subprocess exceeded its timeout."""


class BugError(KwbError):
    """kwb broke one of its own invariants (exit 4): report it, do not retry the machine."""

    exit_code = ExitCode.BUG
