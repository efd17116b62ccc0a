"""The cold build's object count estimated from a tree's Kbuild files, before its first build."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.kernel import buildmeter, kbuildcount
from harness.kernel.build import KernelBuild


def _tree(root: Path) -> tuple[Path, Path]:
    files = {
        "kernel/Makefile": "obj-y = fork.o exit.o \\\n\tsys.o\nobj-$(CONFIG_FOO) += foo.o\n"
                           "obj-$(CONFIG_BAR) += bar.o  # a module: not in bzImage\nobj-y += sched/\n",
        "kernel/sched/Makefile": "obj-y += core.o\n",
        "fs/Makefile": "obj-y += open.o\nobj-$(CONFIG_EXT4) += ext4/\nobj-$(CONFIG_XFS) += xfs/\n",
        "fs/ext4/Makefile": "obj-$(CONFIG_EXT4) += ext4.o\next4-y := super.o inode.o\n"
                            "ext4-$(CONFIG_EXT4_ACL) += acl.o\n",
        "fs/xfs/Makefile": "obj-y += " + " ".join(f"x{i}.o" for i in range(50)) + "\n",
        "arch/x86/Kbuild": "obj-y += entry/\n",
        "arch/x86/entry/Makefile": "obj-y += entry_64.o\n",
        "arch/arm/Kbuild": "obj-y += " + " ".join(f"a{i}.o" for i in range(50)) + "\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    config = root / ".config"
    config.write_text("CONFIG_FOO=y\nCONFIG_BAR=m\nCONFIG_EXT4=y\n# CONFIG_XFS is not set\n"
                      "CONFIG_EXT4_ACL=y\n")
    return root, config


def test_lists_subdirectories_and_composites_follow_the_configuration(tmp_path: Path) -> None:
    tree, config = _tree(tmp_path)
    # kernel: fork exit sys foo (4) + sched/core (1); fs: open (1) + ext4.o = super inode acl + link (4);
    # arch/x86/entry: 1; one archive per directory reached: kernel sched fs ext4 x86 entry (6).
    # Not counted: a module (=m), a disabled directory (xfs), another architecture (arm).
    assert kbuildcount.estimate(tree, config) == kbuildcount.FIXED + 4 + 1 + 1 + 4 + 1 + 6


def test_first_cold_build_expects_the_estimate_and_a_shaped_eta(cache: Path, tmp_path: Path) -> None:
    tree, config = _tree(tmp_path / "tree")
    bdir = tmp_path / "bdir"
    bdir.mkdir()
    (bdir / ".config").write_text(config.read_text())
    exp = buildmeter.expect(bdir, cold=True, logs=tmp_path / "no-logs", tree=tree)
    assert exp.objects == kbuildcount.estimate(tree, config) and "Kbuild files" in exp.source
    assert exp.profile[0] == (0.0, 0) and exp.profile[-1] == (1000.0, exp.objects)
    # Incremental builds are never paced by the cold shape.
    assert buildmeter.expect(bdir, cold=False, tree=tree).objects is None


def test_generic_shape_halfway_on_a_build_that_follows_it() -> None:
    # A build exactly on the shape at twice its nominal pace: the ETA at half the objects is the shape's rest.
    n = 1000
    prof = buildmeter.generic_profile(n)
    meter = buildmeter.BuildMeter(buildmeter.Expectation(n, "shape", prof), None, None, clock=lambda: 0.0)
    meter.done = n // 2
    t_half = 2 * dict((d, t) for t, d in prof)[n // 2]
    eta = meter.eta(t_half)
    assert eta is not None and abs(eta - (2000.0 - t_half)) < 5


@pytest.mark.build
@pytest.mark.real
def test_real_estimate_is_near_what_the_default_tree_built(built_kernel: KernelBuild) -> None:
    """On the real default tree: the estimate is within 15% of the objects its cold build really made."""
    last = buildmeter.expect(built_kernel.build_dir, cold=True)
    if last.objects is None or last.source != "last cold build":
        pytest.skip(f"{built_kernel.build_dir.name} has no cold build recorded in this cache to compare with")
    tree = Path(os.path.realpath(built_kernel.build_dir / "source"))
    if not (tree / "Kbuild").is_file():
        pytest.skip(f"{built_kernel.build_dir}/source does not lead to the tree it was built from")
    est = kbuildcount.estimate(tree, built_kernel.build_dir / ".config")
    real = last.objects
    assert abs(est - real) / real < 0.15, f"estimated {est}, built {real}"
