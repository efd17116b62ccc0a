"""Building generated mutants: one commit per mutant on the series' commit, one incremental build each.

The commit is made with git plumbing (a private index, fixed dates), so it never touches the shared
work tree and the same mutant is the same commit in every run (a resumed campaign reuses its kernel).
Before the kernel is linked the changed object alone is built: a compile error makes the mutant
stillborn, an object identical to the series' (debug info, build-id and .comment stripped) makes it
equivalent by object; only the others are linked and booted.
"""

from __future__ import annotations

import filecmp
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import InfraError, UserError
from harness.core.run import run
from harness.kernel import build, kconfig, variants
from harness.kernel.build import KernelBuild
from harness.kernel.tree import Tree, checkout, git, locked, prepare_tree, rev_parse
from harness.orchestrate.mutate.generate import Mutant

OBJCOPY_TIMEOUT = 60.0
OBJECT_BUILD_TIMEOUT = 900.0
# Fixed identity and dates: the commit of a mutant depends only on the series commit and the change.
_COMMIT_ENV = {"GIT_AUTHOR_NAME": "kwb", "GIT_AUTHOR_EMAIL": "kwb@localhost",
               "GIT_COMMITTER_NAME": "kwb", "GIT_COMMITTER_EMAIL": "kwb@localhost",
               "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z"}
# Sections that differ between two compilations of the same code (paths, line tables, compiler banner).
_STRIP = ["--strip-debug", "--remove-section=.note.gnu.build-id", "--remove-section=.comment"]


@dataclass
class BuildOutcome:
    """What building one mutant gave: a kernel to boot, or why there is none."""

    status: str                     # built | stillborn | equivalent
    kernel: KernelBuild | None = None  # set when built
    reason: str = ""
    seconds: dict[str, float] = field(default_factory=dict)  # object, kernel


def object_of(source: str) -> str:
    """``io_uring/rw.c`` → ``io_uring/rw.o`` (the kbuild target of one source file)."""
    if not source.endswith(".c"):
        raise UserError(f"mutate: {source} is not a C file")
    return source[:-2] + ".o"


def same_code(a: Path, b: Path, work: Path) -> bool:
    """True when objects ``a`` and ``b`` are identical once debug info, build-id and .comment are gone."""
    work.mkdir(parents=True, exist_ok=True)
    out = []
    for i, obj in enumerate((a, b)):
        dest = work / f"{i}-{obj.name}"
        res = run(["objcopy", *_STRIP, str(obj), str(dest)], timeout=OBJCOPY_TIMEOUT)
        if not res.ok:
            raise InfraError(f"objcopy failed on {obj}: {res.tail(1).strip() or f'exit {res.returncode}'}")
        out.append(dest)
    return filecmp.cmp(out[0], out[1], shallow=False)


def mutant_commit(repo: Path, parent: str, mutant: Mutant, text: str) -> str:
    """A commit = ``parent`` with ``mutant.file`` replaced by ``text`` (plumbing only; deterministic)."""
    listing = git(repo, "ls-tree", parent, "--", mutant.file).stdout.split()
    if len(listing) < 3:
        raise UserError(f"mutate: {mutant.file} is not in commit {parent[:12]}")
    blob = git(repo, "hash-object", "-w", "--stdin", input=text).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="kwb-mutant-index-") as tmp:
        env = {**_COMMIT_ENV, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git(repo, "read-tree", parent, env=env)
        git(repo, "update-index", "--cacheinfo", f"{listing[0]},{blob},{mutant.file}", env=env)
        tree = git(repo, "write-tree", env=env).stdout.strip()
        msg = f"kwb mutant {mutant.id}\n\n{mutant.file}:{mutant.line} ({mutant.operator})\n"
        return git(repo, "commit-tree", tree, "-p", parent, "-m", msg, env=env).stdout.strip()


class MutantBuilder:
    """Builds mutants of one series commit in kwb's tree (default tree, or a user's tree at ``head``)."""

    def __init__(self, work: Path, *, tree: Path | None = None, base: str | None = None,
                 head: str | None = None, progress: Any = None) -> None:
        self.work, self.progress = work, progress or (lambda _line: None)
        self.tree_arg, self.base_arg, self.head = tree, base, head
        self.frags = kconfig.load_fragments([])
        self.prepared: Tree | None = None
        self.series = ""

    def prepare(self) -> str:
        """Prepare the tree and the series' commit; returns that commit."""
        with locked("kernel", progress=self.progress):
            self.prepared = prepare_tree(self.tree_arg, self.base_arg, self.progress)
            if self.head is None:
                ref = variants.checkout_variant(self.prepared, "series", progress=self.progress)
                self.frags = kconfig.load_fragments(variants.get_variant("series").fragments)
            else:
                ref = self.head
            commit = rev_parse(self.prepared.path, ref)
            if commit is None:
                raise UserError(f"no such ref in {self.prepared.path}: {ref}")
            self.series = commit
        return commit

    def _tree(self) -> Tree:
        if self.prepared is None:
            raise InfraError("MutantBuilder.prepare() was not called")
        return self.prepared

    def _make_object(self, source: str) -> Path:
        """Build one object of the checked-out commit in the shared build dir (caller holds the lock)."""
        tree = self._tree()
        cfg_hash = kconfig.config_hash(self.frags)
        log = self.work / "logs" / f"object-{int(time.time() * 1000)}.log"
        config = build.configure_build_dir(tree, self.frags, cfg_hash, log, self.progress)
        build.make_kernel(tree, config.parent, log, targets=[object_of(source)], timeout=OBJECT_BUILD_TIMEOUT)
        return config.parent / object_of(source)

    def reference(self, sources: list[str]) -> None:
        """Keep the series' objects of ``sources`` (what "equivalent by object" compares with)."""
        tree = self._tree()
        with locked("kernel", progress=self.progress):
            checkout(tree, self.series)
            for source in sources:
                dest = self._reference_path(source)
                if dest.is_file():
                    continue
                obj = self._make_object(source)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(obj, dest)

    def _reference_path(self, source: str) -> Path:
        return self.work / "reference" / self.series[:12] / object_of(source)

    def build(self, mutant: Mutant, series_text: str) -> BuildOutcome:
        """Build ``mutant``: stillborn / equivalent by object / built (with its KernelBuild)."""
        tree = self._tree()
        commit = mutant_commit(tree.path, self.series, mutant, mutant.apply(series_text))
        seconds: dict[str, float] = {}
        with locked("kernel", progress=self.progress):
            checkout(tree, commit)
            start = time.monotonic()
            try:
                obj = self._make_object(mutant.file)
            except InfraError as exc:
                if "timed out" in str(exc):
                    raise  # a stuck build is the host's failure, not the mutant's
                seconds["object"] = round(time.monotonic() - start, 2)
                return BuildOutcome("stillborn", reason=str(exc), seconds=seconds)
            seconds["object"] = round(time.monotonic() - start, 2)
            if same_code(obj, self._reference_path(mutant.file), self.work / "objcmp"):
                return BuildOutcome("equivalent", reason=f"{object_of(mutant.file)} is identical to the "
                                    "series' (debug info, build-id and .comment ignored)", seconds=seconds)
            start = time.monotonic()
            kernel = build.build_tree(tree, f"mutant-{mutant.id}", self.frags, self.progress)
            seconds["kernel"] = round(time.monotonic() - start, 2)
        return BuildOutcome("built", kernel=kernel, seconds=seconds)

    def series_kernel(self) -> KernelBuild:
        """The unmodified series kernel (the control), built or reused from the kernel cache."""
        tree = self._tree()
        with locked("kernel", progress=self.progress):
            checkout(tree, self.series)
            return build.build_tree(tree, "series", self.frags, self.progress)

    def restore(self) -> None:
        """Leave the tree on the series' commit (the next build of any variant checks out its own)."""
        if self.prepared is not None and self.series:
            with locked("kernel", progress=self.progress):
                checkout(self.prepared, self.series)
