"""kwb commands: tree prepare, apply, build (issue: kernel pipeline).

Placeholder until that work lands.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Register this module's commands (none yet)."""
