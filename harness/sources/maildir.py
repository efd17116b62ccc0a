"""Maildir directories (cur/ and new/), one message per file."""

from __future__ import annotations

from pathlib import Path

from harness.sources.base import SourceResult, iter_files, parse_all


class MaildirSource:
    """A Maildir: a directory with cur/ and/or new/ subdirectories."""

    name = "maildir"

    def accepts(self, spec: str) -> tuple[bool, str]:
        """A directory holding cur/ or new/."""
        path = Path(spec)
        if not path.is_dir():
            return False, "not a directory"
        if not ((path / "cur").is_dir() or (path / "new").is_dir()):
            return False, "no cur/ or new/ subdirectory"
        return True, ""

    def load(self, spec: str) -> SourceResult:
        """Parse every message file, in file-name order (delivery order for most writers)."""
        path = Path(spec)
        files = sorted(f for sub in ("new", "cur") if (path / sub).is_dir()
                       for f in (path / sub).iterdir() if f.is_file() and not f.name.startswith("."))
        return parse_all(self.name, spec, iter_files(files))
