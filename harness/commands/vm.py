"""kwb commands: doctor, boot, shell (issue: kernel pipeline, VM side).

Placeholder until that work lands.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Register this module's commands (none yet)."""
