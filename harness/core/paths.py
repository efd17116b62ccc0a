"""Where kwb keeps its cache and results; nothing is written elsewhere on the host."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$KWB_CACHE`` or ``$XDG_CACHE_HOME/kwb`` (default ``~/.cache/kwb``); created on demand."""
    explicit = os.environ.get("KWB_CACHE")
    if explicit:
        base = Path(explicit)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = Path(xdg) / "kwb"
    base.mkdir(parents=True, exist_ok=True)
    return base


def project_root() -> Path:
    """The kwb checkout (holds kconfig/, patches/)."""
    return Path(__file__).resolve().parents[2]


def results_root() -> Path:
    """``$KWB_OUT`` or ``out/`` in the current directory."""
    return Path(os.environ.get("KWB_OUT", "out"))
