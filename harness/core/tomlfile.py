"""Reading a TOML data file, with one consistent one-line error for every way that can fail.

Every declarative file kwb reads (concern catalogue, variants, workloads, known failures, coverage
config, doctor's tool list) goes through :func:`load_toml`, so a user always sees the same shape:
``<what> <path>: not found`` / ``cannot read: <reason>`` / ``invalid TOML: <reason>``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from harness.core.errors import KwbError, UserError


def load_toml(path: Path, what: str, *, error: type[KwbError] = UserError) -> dict[str, Any]:
    """Parse ``path`` as UTF-8 TOML; raise ``error`` (a one-line message naming ``what`` and ``path``).

    ``error`` is :class:`UserError` for files a user writes or points at; packaged files whose absence
    means a broken installation pass :class:`~harness.core.errors.InfraError`.
    """
    where = f"{what} {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{where}: not found") from None
    except OSError as exc:
        raise error(f"{where}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{where}: cannot read: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{where}: invalid TOML: {exc}") from exc
