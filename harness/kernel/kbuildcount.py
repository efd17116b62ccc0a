"""How many objects a cold build of a configured tree will make, before it has ever been built.

The build meter needs an expected object count for its first cold build of a configuration, when there is
no earlier build to learn from. kbuild itself cannot say without building (``make -n`` needs the generated
headers), so this reads the tree's Kbuild files the way kbuild does, from the top-level directories down:
``obj-y``/``obj-$(CONFIG_X)``/``lib-y`` lists with the configuration's ``=y`` symbols, subdirectories they
name, and composite objects (``foo-y``/``foo-objs`` parts plus the link). Conditionals (``ifdef``) are not
evaluated — both branches count — which is why this is an estimate: on the default tree it is within ~10%
of what the build then does (2,262 against 2,228 targets; tests/test_kbuildcount.py).

Targets kbuild makes outside the Kbuild lists (generated headers, host tools, the vmlinux link, the
bzImage and its boot code) are a roughly fixed share of a lean build; ``FIXED`` adds them.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.kernel import kconfig

# Top-level directories kbuild descends into (Kbuild's obj-y list and the arch Makefile's core/libs).
ROOTS = ("init", "usr", "arch/{arch}", "kernel", "certs", "mm", "fs", "ipc", "security", "crypto", "block",
         "io_uring", "drivers", "sound", "net", "lib", "virt", "arch/{arch}/lib", "arch/{arch}/pci",
         "arch/{arch}/power", "arch/{arch}/video")
FIXED = 100   # host programs, generated headers, vmlinux link, bzImage: targets outside the Kbuild lists
MAX_FILES = 20_000  # a tree with more Kbuild files than this is not a kernel tree
_ASSIGN = re.compile(r"^([A-Za-z0-9_.-]+?)-(y|objs|\$\((CONFIG_[A-Za-z0-9_]+)\))\s*[:+]?=\s*(.*)$")
_LISTS = ("obj", "lib", "core", "drivers", "libs", "net")


def _lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace").replace("\\\n", " ")
    return [line.split("#", 1)[0].strip() for line in text.splitlines()]


def _parse(makefile: Path, config: dict[str, str]) -> tuple[list[str], dict[str, list[str]]]:
    """The built-in items of one Kbuild file and its composite objects' parts (name -> parts)."""
    items: list[str] = []
    parts: dict[str, list[str]] = {}
    for line in _lines(makefile):
        m = _ASSIGN.match(line)
        if not m:
            continue
        name, sel, symbol, rest = m.groups()
        if symbol is not None and config.get(symbol) != "y":
            continue
        words = [w for w in rest.split() if "$(" not in w or w.startswith("$(SRCARCH)")]
        if name in _LISTS and sel != "objs":
            items.extend(words)
        else:
            parts.setdefault(name, []).extend(words)
    return items, parts


def _count_object(name: str, parts: dict[str, list[str]], depth: int = 0) -> int:
    """1 for a plain object; its parts plus the link for a composite one."""
    own = parts.get(name[:-2]) if name.endswith(".o") else None
    if not own or depth > 4:
        return 1
    return 1 + sum(_count_object(p, parts, depth + 1) for p in own if p.endswith(".o") and p != name)


def estimate(tree: Path, config: Path, arch: str = "x86") -> int:
    """Objects a cold ``make bzImage`` of ``tree`` configured with ``config`` is expected to make
    (a malformed ``config`` raises UserError, an unreadable one OSError)."""
    values = kconfig.parse_symbols(config.read_text(encoding="utf-8", errors="replace"), str(config))
    seen: set[Path] = set()
    queue = [tree / r.format(arch=arch) for r in ROOTS]
    total = FIXED
    while queue and len(seen) < MAX_FILES:
        d = queue.pop(0)
        if d in seen or not d.is_dir():
            continue
        seen.add(d)
        makefile = d / "Kbuild" if (d / "Kbuild").is_file() else d / "Makefile"
        if not makefile.is_file():
            continue
        items, parts = _parse(makefile, values)
        objects = [w for w in items if w.endswith(".o")]
        total += 1  # kbuild archives every directory it descends into (built-in.a), empty or not
        total += sum(_count_object(o, parts) for o in dict.fromkeys(objects))
        for w in items:
            if w.endswith("/"):
                queue.append(d / w.replace("$(SRCARCH)", arch).rstrip("/"))
    return total
