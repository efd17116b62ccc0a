"""Out-of-tree kernel builds with ccache, and ``ensure_kernel`` — the one call the rest of kwb uses.

One build directory per (tree, configuration), shared by every variant of that tree, so checking out
another variant only rebuilds what changed. Finished kernels are copied to
``kernels/<variant>-<commit12>/<config12>/`` and reused while commit and configuration match.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.core import atomic
from harness.core.errors import InfraError, UserError
from harness.core.paths import cache_dir
from harness.core.progress import LiveSink
from harness.core.run import run
from harness.kernel import buildmeter, kconfig, variants
from harness.kernel.eras import resolve as eras_resolve
from harness.kernel.tree import Tree, checkout, current_commit, locked, prepare_tree, rev_parse

BUILD_TIMEOUT = 3600.0
BZIMAGE = Path("arch") / "x86" / "boot" / "bzImage"
SEED_TIMEOUT = 600.0   # copying a ~700 MB build dir
Progress = Callable[[str], None]

# A compiler/linker error line, for the one-line InfraError a broken build raises.
_COMPILER_ERROR = re.compile(r"(error:|undefined reference|fatal error)")
_ERROR_LINE = re.compile(r"(Error \d+|\*\*\*)")
LIVE_EVERY = 30.0  # seconds between build progress lines when the caller can't redraw one in place


@dataclass
class KernelBuild:
    """A built kernel, ready to boot.

    ``bzimage`` and ``config`` (and ``System.map`` beside them) belong to this kernel; ``build_dir`` is
    shared by every variant of the tree, so after another build it holds that variant's objects.
    """

    variant: str
    commit: str
    bzimage: Path
    build_dir: Path
    config: Path
    release: str
    duration: float
    log: Path

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form (paths as strings)."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def jobs() -> int:
    """Parallel make jobs: ``$KWB_JOBS`` or the CPU count."""
    return int(os.environ.get("KWB_JOBS") or os.cpu_count() or 1)


def ccache_env() -> dict[str, str]:
    """ccache in the kwb cache; BASEDIR makes paths relative so different build dirs share entries."""
    root = cache_dir()
    return {
        "CCACHE_DIR": str(root / "ccache"),
        "CCACHE_BASEDIR": str(root),
        "CCACHE_NOHASHDIR": "1",
        "CCACHE_MAXSIZE": os.environ.get("KWB_CCACHE_SIZE", "5G"),
        # Kbuild embeds no timestamps we need; sloppiness lets preprocessed-equal sources hit.
        "CCACHE_SLOPPINESS": "time_macros,include_file_mtime,include_file_ctime",
        # Not depend mode: it would skip the preprocessor on a miss (measured: no faster here, noise
        # ±25 %), but it keys on every header's bytes, so a kconfig change (autoconf.h) misses all
        # objects; preprocessor mode still hits those whose preprocessed text is unchanged (2 min
        # instead of a cold build after a fragment change).
        "CCACHE_NODEPEND": "1",
        "KBUILD_BUILD_TIMESTAMP": "2025-01-01",
        "KBUILD_BUILD_USER": "kwb",
        "KBUILD_BUILD_HOST": "kwb",
    }


def make_args() -> list[str]:
    """Variables every make call gets (configuration and build must agree on them)."""
    compiler = "ccache gcc" if shutil.which("ccache") else "gcc"
    return [f"CC={compiler}", f"HOSTCC={compiler}", *kconfig.CONFIG_MAKE_VARS]


def build_dir_for(tree: Tree, cfg_hash: str) -> Path:
    """The build directory of a tree + configuration (same depth for all, so ccache paths match)."""
    return cache_dir() / "build" / f"{tree.name}-{cfg_hash[:12]}"


def kernel_dir_for(variant: str, commit: str, cfg_hash: str) -> Path:
    """Where a finished kernel is kept."""
    return cache_dir() / "kernels" / f"{variant}-{commit[:12]}" / cfg_hash[:12]


class _Live:
    """Where the build meter's line goes: the caller's live line when it has one (Progress
    redraws it in place), else a plain progress line every LIVE_EVERY seconds."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.last = -LIVE_EVERY

    def __call__(self, text: str) -> None:
        if isinstance(self.progress, LiveSink):
            self.progress.live(text)
        elif self.progress is not None and time.monotonic() - self.last >= LIVE_EVERY:
            self.last = time.monotonic()
            self.progress(text)

    def end(self, text: str) -> None:
        if isinstance(self.progress, LiveSink):
            self.progress.end_live(text)
        elif self.progress is not None:
            self.progress(text)


def configure_build_dir(tree: Tree, fragments: Sequence[kconfig.Fragment], cfg_hash: str, log: Path,
                        progress: Progress | None = None) -> Path:
    """Configure the build directory once per configuration (a stamp records the hash)."""
    bdir = build_dir_for(tree, cfg_hash)
    stamp = bdir / ".kwb-config-hash"
    if stamp.is_file() and stamp.read_text().strip() == cfg_hash and (bdir / ".config").is_file():
        return bdir / ".config"
    seed = None if (bdir / ".config").is_file() else _seed_for(tree, bdir)
    if seed is not None:
        _copy_build_dir(seed, bdir, log, progress)
    if progress:
        progress(f"configuring {bdir.name}: tinyconfig + {', '.join(f.name for f in fragments)}")
    config = kconfig.configure(tree.path, bdir, fragments, [*make_args()], log)
    atomic.write_text(stamp, cfg_hash + "\n")
    return config


def _seed_for(tree: Tree, bdir: Path) -> Path | None:
    """The most recently built sibling build dir of the same tree, to start a new configuration from."""
    siblings = [d for d in bdir.parent.glob(f"{tree.name}-*")
                if d != bdir and (d / ".kwb-config-hash").is_file() and (d / BZIMAGE).is_file()]
    return max(siblings, key=lambda d: (d / BZIMAGE).stat().st_mtime, default=None)


def _copy_build_dir(seed: Path, bdir: Path, log: Path, progress: Progress | None) -> None:
    """Start ``bdir`` as a copy of ``seed``: kbuild tracks which CONFIG_ symbols each object uses, so a new
    configuration (the gcov variant, a debug fragment) recompiles only the objects whose symbols changed
    instead of the whole kernel. A real copy, never hard links: the compiler rewrites objects in place."""
    if progress:
        progress(f"seeding {bdir.name} from {seed.name} (kbuild then rebuilds only what the new "
                 "configuration changes)")
    tmp = bdir.with_name(bdir.name + ".seeding")
    shutil.rmtree(tmp, ignore_errors=True)
    res = run(["cp", "-a", "--reflink=auto", str(seed), str(tmp)], timeout=SEED_TIMEOUT, log=log)
    if not res.ok:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InfraError(f"could not copy build dir {seed} to {tmp}: {res.tail(1).strip()}")
    (tmp / ".kwb-config-hash").unlink(missing_ok=True)  # configured afresh below
    shutil.rmtree(bdir, ignore_errors=True)  # an unconfigured leftover of an interrupted attempt
    os.replace(tmp, bdir)


def make_kernel(tree: Tree, build_dir: Path, log: Path, progress: Progress | None = None,
                targets: Sequence[str] = ("bzImage",), timeout: float = BUILD_TIMEOUT,
                extra_env: dict[str, str] | None = None) -> float:
    """Run make in ``build_dir``; returns the duration. A failure raises with the last error lines."""
    argv = ["make", "-C", str(tree.path), f"O={build_dir}", f"-j{jobs()}", *make_args(), *targets]
    cold = not (build_dir / "vmlinux").is_file()
    expectation = buildmeter.expect(build_dir, cold, log.parent, build_dir.name.rsplit("-", 1)[-1],
                                     tree.path)
    _link_log(build_dir, log)
    show = _Live(progress)
    meter = buildmeter.BuildMeter(expectation, buildmeter.progress_dir(build_dir) / f"{log.stem}.jsonl", show)
    if progress:
        progress(f"{'cold' if cold else 'incremental'} build in {build_dir.name}: expecting "
                 f"{expectation.objects or '?'} objects ({expectation.source}); full log {log}")
    try:
        res = run(argv, cwd=tree.path, timeout=timeout, env={**ccache_env(), **(extra_env or {})}, log=log,
                  on_line=meter)
    except BaseException:
        show.end(meter.finish(build_dir, cold, ok=False) + " (interrupted)")
        raise
    show.end(meter.finish(build_dir, cold, ok=res.returncode == 0 and not res.timed_out))
    if res.timed_out:
        raise InfraError(f"kernel build timed out after {timeout:.0f}s (log: {log})")
    if res.returncode != 0:
        lines = (res.stdout + res.stderr).splitlines()
        compiler = [ln.strip() for ln in lines if _COMPILER_ERROR.search(ln)]
        make_errors = [ln.strip() for ln in lines if _ERROR_LINE.search(ln)]
        summary = " | ".join(compiler[-3:] or make_errors[-2:]) or res.tail(1).strip()
        raise InfraError(f"kernel build failed: {summary} (log: {log})")
    return res.duration


def _link_log(build_dir: Path, log: Path) -> None:
    """``<build dir>/kwb-build.log``: the full make output of the newest build of this directory."""
    link = build_dir / "kwb-build.log"
    try:
        link.unlink(missing_ok=True)
        link.symlink_to(log)
    except OSError:
        pass  # a convenience: the log itself is in the cache's logs/ either way


def kernel_release(build_dir: Path) -> str:
    """The built kernel's release string (``uname -r`` in the guest)."""
    path = build_dir / "include" / "config" / "kernel.release"
    return path.read_text().strip() if path.is_file() else ""


def _cached(variant: str, commit: str, cfg_hash: str) -> KernelBuild | None:
    meta = kernel_dir_for(variant, commit, cfg_hash) / "build.json"
    if not meta.is_file():
        return None
    data = json.loads(meta.read_text())
    build = KernelBuild(variant=data["variant"], commit=data["commit"], bzimage=Path(data["bzimage"]),
                        build_dir=Path(data["build_dir"]), config=Path(data["config"]),
                        release=data["release"], duration=float(data["duration"]), log=Path(data["log"]))
    return build if build.bzimage.is_file() and build.config.is_file() else None


def _store(variant: str, commit: str, cfg_hash: str, build_dir: Path, duration: float,
           log: Path) -> KernelBuild:
    dest = kernel_dir_for(variant, commit, cfg_hash)
    dest.mkdir(parents=True, exist_ok=True)
    image = build_dir / "arch" / "x86" / "boot" / "bzImage"
    if not image.is_file():
        raise InfraError(f"build finished but no bzImage in {build_dir}")
    shutil.copy2(image, dest / "bzImage.tmp")
    os.replace(dest / "bzImage.tmp", dest / "bzImage")
    atomic.write_text(dest / "config", (build_dir / ".config").read_text())
    # The build dir is shared by all variants; keep this kernel's symbol map beside its image.
    if (build_dir / "System.map").is_file():
        shutil.copy2(build_dir / "System.map", dest / "System.map")
    build = KernelBuild(variant=variant, commit=commit, bzimage=dest / "bzImage", build_dir=build_dir,
                        config=dest / "config", release=kernel_release(build_dir), duration=duration,
                        log=log)
    atomic.write_json(dest / "build.json", {**build.to_dict(), "config_hash": cfg_hash})
    return build


def build_tree(tree: Tree, variant: str, fragments: Sequence[kconfig.Fragment],
               progress: Progress | None = None) -> KernelBuild:
    """Build whatever is checked out in ``tree`` (no locking; callers hold the build lock)."""
    fragments = eras_resolve.for_tree(tree.path, fragments, progress)  # the tree's era (harness.kernel.eras)
    cfg_hash = kconfig.config_hash(fragments)
    commit = current_commit(tree)
    hit = _cached(variant, commit, cfg_hash)
    if hit is not None:
        if progress:
            progress(f"reusing {hit.bzimage} (commit {commit[:12]}, config {cfg_hash[:12]})")
        return hit
    logs = cache_dir() / "logs"
    log = logs / f"build-{variant}-{commit[:12]}-{cfg_hash[:12]}-{int(time.time())}.log"
    start = time.monotonic()
    config = configure_build_dir(tree, fragments, cfg_hash, log, progress)
    make_kernel(tree, config.parent, log, progress)
    # A variant may touch Kconfig files; kbuild re-syncs the config, so check the symbols again.
    kconfig.verify(config, kconfig.requested(fragments))
    return _store(variant, commit, cfg_hash, config.parent, time.monotonic() - start, log)


def ensure_kernel(variant: str = "series", *, tree: Path | None = None, base: str | None = None,
                  fragments: list[str] | None = None,
                  progress: Progress | None = None) -> KernelBuild:
    """Prepare the tree, check out ``variant``, build it incrementally (or reuse it) and return it."""
    wanted = [*(fragments or []), *variants.get_variant(variant).fragments]
    frags = kconfig.load_fragments(wanted)
    # One kernel build at a time on this machine, across kwb processes.
    with locked("kernel", progress=progress):
        prepared = prepare_tree(tree, base, progress)
        ref = variants.checkout_variant(prepared, variant, progress=progress)
        checkout(prepared, ref)
        return build_tree(prepared, variant, frags, progress)


def build_ref(ref: str, label: str, *, tree: Path | None = None, base: str | None = None,
              fragments: list[str] | None = None, progress: Progress | None = None) -> KernelBuild:
    """Build an arbitrary ref of a prepared tree (e.g. the ``kwb/apply/...`` branch of a revision)."""
    frags = kconfig.load_fragments(fragments)
    with locked("kernel", progress=progress):
        prepared = prepare_tree(tree, base, progress)
        if rev_parse(prepared.path, ref) is None:
            raise UserError(f"no such ref in {prepared.path}: {ref}")
        checkout(prepared, ref)
        return build_tree(prepared, label, frags, progress)


def parse_fragment_args(values: Sequence[str] | None) -> list[str]:
    """``--fragment a,b --fragment c`` → ``[a, b, c]``."""
    names: list[str] = []
    for value in values or ():
        names += [v.strip() for v in value.split(",") if v.strip()]
    for name in names:
        if "/" not in name and name not in kconfig.available_fragments():
            raise UserError(f"unknown kconfig fragment {name!r} "
                            f"(available: {', '.join(kconfig.available_fragments())})")
    return names
