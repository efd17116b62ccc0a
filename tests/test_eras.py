"""Tree eras: the data file, kconfig resolution on synthetic trees, roles from System.map, mkfs options."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_workloads_fakeguest import fake_kernel

from harness.core.errors import UserError
from harness.core.run import Result
from harness.kernel import eras, kconfig
from harness.kernel.eras import resolve


def _tree(root: Path, version: str, kconfig_text: str) -> Path:
    major, minor = version.split(".")[:2]
    root.mkdir(parents=True)
    (root / "Makefile").write_text(f"VERSION = {major}\nPATCHLEVEL = {minor}\nSUBLEVEL = 1\nEXTRAVERSION =\n")
    (root / "arch").mkdir()
    (root / "arch" / "Kconfig").write_text(kconfig_text)
    return root


def _frag(tmp: Path, name: str, text: str) -> kconfig.Fragment:
    path = tmp / f"{name}.config"
    path.write_text(text)
    return kconfig.load_fragment(str(path))


KCONFIG = ("config MODULES\n\tbool\n\nmenuconfig KPROBES\n\tbool \"Kprobes\"\n\tdepends on MODULES\n\n"
           "config KPROBE_EVENTS\n\tbool\n")


def test_packaged_eras_cover_the_2020_trees_and_leave_the_default_tree_alone() -> None:
    known = eras.load_eras()
    old = eras.era_for("5.8.1", known)
    assert [n.symbol for n in old.kconfig] == ["CONFIG_MODULES"]
    assert old.mkfs_options("xfs") == ["-m", "bigtime=0,inobtcount=0"] and old.mkfs_options("ext4") == []
    assert old.roles["async_lock"] == ("__lock_page_async",)
    new = eras.era_for("6.12.117", known)
    assert new.kconfig == () and new.mkfs_options("xfs") == []
    assert new.roles["async_lock"] == ("__folio_lock_async",)
    with pytest.raises(UserError, match=r"no kernel era covers release 4\.19"):
        eras.era_for("4.19.0", known)


def test_an_eras_file_with_overlapping_ranges_is_refused(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "eras.toml"
    bad.write_text('[[era]]\nname = "a"\nmin = "5.0"\nmax = "5.10"\n[[era]]\nname = "b"\nmin = "5.8"\n')
    monkeypatch.setenv(eras.ENV, str(bad))
    with pytest.raises(UserError, match="eras 'a' and 'b' overlap"):
        eras.load_eras()
    bad.write_text('[[era]]\nname = "a"\nmin = "5.0"\n[era.roles.x]\ncandidates = []\n')
    with pytest.raises(UserError, match=r"roles\.x\.candidates must be a non-empty list"):
        eras.load_eras()


def test_a_set_symbol_the_tree_lacks_is_reported_before_merging(tmp_path: Path, cache: Path) -> None:
    tree = _tree(tmp_path / "linux", "5.8", KCONFIG)
    frags = [_frag(tmp_path, "tracing", "CONFIG_KPROBES=y\nCONFIG_NOT_HERE=y\n# CONFIG_GONE is not set\n")]
    with pytest.raises(UserError, match=r"CONFIG_NOT_HERE=y \(tracing\)") as exc:
        resolve.resolve_fragments(tree, frags)
    assert "Linux 5.8.1, era 5.7-5.9" in str(exc.value) and "CONFIG_GONE" not in str(exc.value)


def test_the_eras_needs_become_one_more_fragment_in_the_config_hash(tmp_path: Path, cache: Path) -> None:
    tree = _tree(tmp_path / "linux", "5.8", KCONFIG)
    frags = [_frag(tmp_path, "tracing",
                   "CONFIG_KPROBES=y\nCONFIG_KPROBE_EVENTS=y\n# CONFIG_GONE is not set\n")]
    res = resolve.resolve_fragments(tree, frags)
    assert [f.name for f in res.fragments] == ["tracing", "era-5.7-5.9"]
    assert res.fragments[-1].symbols == {"CONFIG_MODULES": "y"}
    assert res.added == {"CONFIG_MODULES": "KPROBES depends on MODULES before 6.10"}
    assert res.absent_unset == ["CONFIG_GONE"]
    assert kconfig.config_hash(res.fragments) != kconfig.config_hash(frags)
    assert any("adds CONFIG_MODULES" in n for n in res.notes())
    # without KPROBES requested the era adds nothing
    plain = [_frag(tmp_path, "plain", "CONFIG_KPROBE_EVENTS=y\n")]
    assert resolve.resolve_fragments(tree, plain).fragments == plain


def test_a_6_12_tree_gets_its_fragments_unchanged(tmp_path: Path, cache: Path) -> None:
    tree = _tree(tmp_path / "linux", "6.12", KCONFIG)
    frags = [_frag(tmp_path, "tracing", "CONFIG_KPROBES=y\nCONFIG_KPROBE_EVENTS=y\n")]
    res = resolve.resolve_fragments(tree, frags)
    assert res.fragments == frags and res.notes() == []
    assert kconfig.config_hash(res.fragments) == kconfig.config_hash(frags)


def test_kconfig_for_tree_on_the_real_fragments_keeps_the_default_hash(tmp_path: Path, cache: Path) -> None:
    frags = kconfig.load_fragments()
    text = "".join(f"config {s.removeprefix('CONFIG_')}\n" for s in kconfig.requested(frags))
    tree = _tree(tmp_path / "linux", "6.12", text)
    assert kconfig.config_hash(resolve.for_tree(tree, frags)) == kconfig.config_hash(frags)


SYSTEM_MAP = """\
ffffffff81000000 T _stext
ffffffff81000100 T __kprobes_text_start
ffffffff81000120 t kprobe_helper
ffffffff81000200 T __kprobes_text_end
ffffffff81200000 T io_wq_enqueue
ffffffff81200100 t io_async_buf_func
ffffffff81200200 t wake_page_match.isra.0
ffffffff81200300 D io_queue_async_work
"""


def test_roles_resolve_from_system_map_with_a_reason_for_each_one_that_cannot_be_probed() -> None:
    roles = {"iowq_enqueue": ("io_wq_enqueue",), "callback": ("io_async_buf_func",),
             "wake_match": ("wake_page_match",), "queue_async": ("io_queue_async_work",),
             "async_lock": ("__lock_page_async", "__folio_lock_async"), "guarded": ("kprobe_helper",)}
    points = {p.role: p for p in resolve.resolve_roles(SYSTEM_MAP, roles)}
    assert points["iowq_enqueue"].probeable and points["callback"].function == "io_async_buf_func"
    assert points["wake_match"].function == "wake_page_match.isra.0" and points["wake_match"].probeable
    assert not points["queue_async"].probeable  # a data symbol of that name is no function
    assert "no text symbol io_queue_async_work" in points["queue_async"].reason
    assert points["async_lock"].reason.startswith("not probeable on this kernel: no text symbol "
                                                  "__lock_page_async or __folio_lock_async in System.map")
    assert points["guarded"].reason == "kprobe_helper is in the kprobes text section, which kprobes refuse"


def test_roles_for_kernel_uses_the_eras_names(tmp_path: Path) -> None:
    sysmap = tmp_path / "System.map"
    sysmap.write_text(SYSTEM_MAP + "ffffffff81300000 T __lock_page_async\n")
    points = {p.role: p for p in resolve.roles_for_kernel(sysmap, "5.8.1")}
    assert points["async_lock"].function == "__lock_page_async"
    assert not points["should_retry"].probeable
    with pytest.raises(UserError, match=r"no System\.map"):
        resolve.roles_for_kernel(tmp_path / "nope", "5.8.1")


@pytest.mark.skipif(shutil.which("mkfs.xfs") is None or shutil.which("xfs_db") is None,
                    reason="xfsprogs not installed (make setup installs it)")
def test_the_5_8_xfs_options_make_a_filesystem_without_the_features_5_8_cannot_mount(tmp_path: Path) -> None:
    image = tmp_path / "xfs.img"
    with image.open("wb") as fh:
        fh.truncate(320 << 20)

    def features(extra: list[str]) -> str:
        subprocess.run(["mkfs.xfs", "-q", "-f", *extra, str(image)], check=True, timeout=120)
        return subprocess.run(["xfs_db", "-r", "-c", "version", str(image)], check=True, capture_output=True,
                              text=True, timeout=60).stdout

    assert "BIGTIME" in features(resolve.mkfs_options("6.12.0", "xfs"))  # the host's defaults
    old = features(resolve.mkfs_options("5.8.1", "xfs"))
    assert "BIGTIME" not in old and "INOBTCNT" not in old and "CRC" in old and "REFLINK" in old


class _Guest:
    """Records the guest commands; every command succeeds."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(self, command: str, timeout: float) -> Result:
        self.commands.append(command)
        return Result(["ssh", "guest"], 0, "", "", 0.01)

    def console_text(self) -> str:
        return ""

    def alive(self) -> bool:
        return True


def test_the_guest_makes_xfs_with_the_kernels_era_options_and_6_12_as_before() -> None:
    from harness.workloads import runner

    assert runner._era_mkfs(fake_kernel(release="5.8.1"), "xfs") == ("-m", "bigtime=0,inobtcount=0")
    assert runner._era_mkfs(fake_kernel(release="6.12.117"), "xfs") == ()
    assert runner._era_mkfs(fake_kernel(release="2.6.32"), "xfs") == ()  # no era: the host's defaults
    assert runner._era_mkfs(fake_kernel(release=""), "ext4") == ()  # release unknown
    guest = _Guest()
    target, why, _out = runner._prepare_fs(guest, "xfs", "/dev/vdb", True, ("-m", "bigtime=0,inobtcount=0"))
    assert target is not None and why == ""
    assert "mkfs.xfs -q -f -m bigtime=0,inobtcount=0 /dev/vdb" in guest.commands[0]


@pytest.mark.host
@pytest.mark.real
def test_real_5_8_tree_keeps_every_fragment_symbol_only_with_the_eras_needs(tmp_path: Path,
                                                                           cache: Path) -> None:
    """On Linux 5.8 tinyconfig + the fragments loses KPROBES (it depends on MODULES there); the era's
    MODULES makes every requested symbol hold. Needs a checked-out 5.8 tree in $KWB_TREE_5_8."""
    import os

    from harness.core.errors import InfraError
    from harness.kernel.build import make_args

    path = os.environ.get("KWB_TREE_5_8")
    if not path or not (Path(path) / "Makefile").is_file():
        pytest.skip("KWB_TREE_5_8 is not set to a checked-out Linux 5.8 tree")
    tree = Path(path)
    if (tree / ".config").exists():  # kbuild refuses O= builds from a configured source tree
        pytest.skip(f"{tree} has a .config of its own (kbuild: source tree is not clean)")
    frags = kconfig.load_fragments()
    with pytest.raises(InfraError, match=r"CONFIG_KPROBES \(wanted y"):
        kconfig.configure(tree, tmp_path / "plain", frags, [*make_args()], tmp_path / "plain.log")
    resolved = resolve.for_tree(tree, frags)
    assert [f.name for f in resolved][-1] == "era-5.7-5.9"
    config = kconfig.configure(tree, tmp_path / "era", resolved, [*make_args()], tmp_path / "era.log")
    text = config.read_text()
    assert "CONFIG_KPROBES=y" in text and "CONFIG_MODULES=y" in text and "CONFIG_KPROBE_EVENTS=y" in text


def test_probe_roles_of_a_built_kernel_never_raise(tmp_path: Path) -> None:
    (tmp_path / "System.map").write_text(SYSTEM_MAP)
    roles = resolve.probe_roles(tmp_path / "bzImage", "5.8.1")
    assert roles["callback"] == {"function": "io_async_buf_func", "reason": ""}
    assert roles["async_lock"]["function"] is None and "no text symbol" in str(roles["async_lock"]["reason"])
    assert "no System.map" in str(resolve.probe_roles(tmp_path / "x" / "bzImage", "5.8.1")["*"]["reason"])
    assert "no bzImage" in str(resolve.probe_roles(None, None)["*"]["reason"])


@pytest.mark.build
@pytest.mark.real
def test_real_6_12_kernel_roles_come_from_its_system_map(built_kernel: Any) -> None:
    """On the built default kernel: the io_uring callback and io-wq enqueue resolve; a role whose
    function the compiler inlined (6.12: __folio_lock_async) says so instead of vanishing."""
    roles = resolve.probe_roles(built_kernel.bzimage, built_kernel.release)
    assert roles["callback"]["function"] == "io_async_buf_func" and roles["callback"]["reason"] == ""
    assert roles["iowq_enqueue"]["function"] == "io_wq_enqueue"
    unprobeable = {r: v for r, v in roles.items() if v["function"] is None}
    assert all(str(v["reason"]).startswith("not probeable on this kernel") for v in unprobeable.values())
