"""Kconfig fragments: parsing, merge onto tinyconfig and verification, on the fake tree and the real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.errors import InfraError, UserError
from harness.kernel import kconfig

FAKELINUX = Path(__file__).resolve().parent / "fakelinux"


def test_parse_symbols_handles_set_unset_values_and_comments() -> None:
    text = "# a comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=30\nCONFIG_D=\"x y\"\n\n"
    assert kconfig.parse_symbols(text) == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_C": "30",
                                           "CONFIG_D": '"x y"'}
    with pytest.raises(UserError, match=r"frag:2: not a kconfig line"):
        kconfig.parse_symbols("CONFIG_A=y\nA=y\n", "frag")


def test_shipped_fragments_parse_and_cover_the_essentials() -> None:
    wanted = kconfig.requested(kconfig.load_fragments())
    for symbol in ("CONFIG_IO_URING", "CONFIG_VIRTIO_BLK", "CONFIG_9P_FS", "CONFIG_EXT4_FS", "CONFIG_XFS_FS",
                   "CONFIG_BTRFS_FS", "CONFIG_BLK_DEV_NULL_BLK", "CONFIG_KPROBE_EVENTS", "CONFIG_MAGIC_SYSRQ",
                   "CONFIG_DETECT_HUNG_TASK", "CONFIG_OVERLAY_FS", "CONFIG_VIRTIO_NET", "CONFIG_DEVTMPFS"):
        assert wanted[symbol] == "y", symbol
    assert "CONFIG_PROVE_LOCKING" not in wanted  # optional fragment, not in the default set
    assert kconfig.requested(kconfig.load_fragments(["lockdep"]))["CONFIG_PROVE_LOCKING"] == "y"


def test_unknown_fragment_is_a_user_error_listing_the_known_ones() -> None:
    with pytest.raises(UserError, match=r"unknown kconfig fragment 'nope' \(available: .*lockdep"):
        kconfig.load_fragments(["nope"])


def test_config_hash_changes_with_fragment_content(tmp_path: Path) -> None:
    frag = tmp_path / "extra.config"
    frag.write_text("CONFIG_X=y\n")
    h1 = kconfig.config_hash(kconfig.load_fragments([str(frag)]))
    frag.write_text("CONFIG_X=n\n")
    h2 = kconfig.config_hash(kconfig.load_fragments([str(frag)]))
    assert h1 != h2
    assert kconfig.config_hash(kconfig.load_fragments()) == kconfig.config_hash(kconfig.load_fragments())


def test_missing_symbols_lists_values_and_absent() -> None:
    config = "CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_E=30\n"
    wanted = {"CONFIG_A": "y", "CONFIG_B": "y", "CONFIG_C": "n", "CONFIG_D": "y", "CONFIG_E": "30",
              "CONFIG_F": "n"}
    assert kconfig.missing_symbols(config, wanted) == ["CONFIG_B (wanted y, got m)",
                                                       "CONFIG_D (wanted y, got absent)"]


def test_configure_on_fake_tree_merges_and_verifies(tmp_path: Path) -> None:
    frag = tmp_path / "extra.config"
    frag.write_text("CONFIG_PRINTK=y\n# CONFIG_TINY is not set\nCONFIG_HZ=250\n")
    frags = kconfig.load_fragments([str(frag)])
    config = kconfig.configure(FAKELINUX, tmp_path / "build", frags, [], tmp_path / "log")
    text = config.read_text()
    assert "CONFIG_PRINTK=y" in text and "CONFIG_HZ=250" in text and "CONFIG_IO_URING=y" in text
    assert "CONFIG_TINY=y" not in text
    assert "tinyconfig" in (tmp_path / "log").read_text()


def test_configure_names_every_dropped_symbol(tmp_path: Path) -> None:
    frag = tmp_path / "bad.config"
    frag.write_text("CONFIG_UNKNOWN_ONE=y\nCONFIG_UNKNOWN_TWO=y\nCONFIG_FINE=y\n")
    with pytest.raises(InfraError, match=r"dropped 2 requested symbol\(s\).*CONFIG_UNKNOWN_ONE \(wanted y, "
                       r"got absent\); CONFIG_UNKNOWN_TWO"):
        kconfig.configure(FAKELINUX, tmp_path / "build", kconfig.load_fragments([str(frag)]), [],
                          tmp_path / "log")


def test_configure_rejects_a_non_kernel_tree(tmp_path: Path) -> None:
    (tmp_path / "Makefile").write_text("tinyconfig:\n\t@mkdir -p $(O)\n")
    with pytest.raises(InfraError, match="not a kernel tree"):
        kconfig.configure(tmp_path, tmp_path / "build", kconfig.load_fragments(), [], tmp_path / "log")
