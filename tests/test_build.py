"""Builds on the fake kernel tree (configure, build, reuse, failure, progress) and the real build."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import git

from harness.cli import main
from harness.core.errors import InfraError
from harness.kernel import build, kconfig, variants
from harness.kernel.build import KernelBuild
from harness.kernel.tree import prepare_local

FAKELINUX = Path(__file__).resolve().parent / "fakelinux"


@pytest.fixture
def fake_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "linux"
    shutil.copytree(FAKELINUX, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo


def test_ensure_kernel_builds_then_reuses(cache: Path, fake_repo: Path) -> None:
    lines: list[str] = []
    kb = build.ensure_kernel("series", tree=fake_repo, base="main", progress=lines.append)
    assert kb.variant == "series" and kb.release == "6.12.0-fake"
    assert kb.commit == git(fake_repo, "rev-parse", "main")
    assert kb.bzimage.is_file() and kb.bzimage.is_relative_to(cache / "kernels")
    assert kb.bzimage.parent.parent.name == f"series-{kb.commit[:12]}"
    assert "CONFIG_IO_URING=y" in kb.config.read_text()
    assert kb.build_dir.parent == cache / "build"
    log = kb.log.read_text()
    assert "$ " in log and "bzImage" in log  # the reproducer line heads the log
    # One line for the build (objects done, elapsed; a plain callback gets it at most every 30 s) and its end.
    assert any(ln.startswith("build: 1 objects (no earlier build to compare)") and "— CC src/" in ln
               for ln in lines)
    assert any(ln.startswith("build: ") and " objects in " in ln for ln in lines)
    assert (kb.build_dir / "kwb-build.log").resolve() == kb.log.resolve()
    assert list((kb.build_dir / "kwb-progress").glob("*.jsonl"))
    again_lines: list[str] = []
    again = build.ensure_kernel("series", tree=fake_repo, base="main", progress=again_lines.append)
    assert again == kb
    assert any(ln.startswith("reusing ") for ln in again_lines)


def test_other_fragments_get_another_build_dir(cache: Path, fake_repo: Path) -> None:
    plain = build.ensure_kernel("series", tree=fake_repo, base="main")
    lockdep = build.ensure_kernel("series", tree=fake_repo, base="main", fragments=["lockdep"])
    assert plain.build_dir != lockdep.build_dir and plain.bzimage != lockdep.bzimage
    assert "CONFIG_PROVE_LOCKING=y" in lockdep.config.read_text()


def test_a_new_configuration_starts_from_the_last_build_dir(cache: Path, fake_repo: Path) -> None:
    plain = build.ensure_kernel("series", tree=fake_repo, base="main")
    (plain.build_dir / "src-main.o").write_text("object built with the plain config")
    lines: list[str] = []
    lockdep = build.ensure_kernel("series", tree=fake_repo, base="main", fragments=["lockdep"],
                                  progress=lines.append)
    assert any(ln.startswith(f"seeding {lockdep.build_dir.name} from {plain.build_dir.name}") for ln in lines)
    # kbuild gets the old objects to compare against; the seed itself is left as it was.
    assert (lockdep.build_dir / "src-main.o").is_file()
    assert "CONFIG_PROVE_LOCKING=y" in (lockdep.build_dir / ".config").read_text()
    assert "CONFIG_PROVE_LOCKING" not in (plain.build_dir / ".config").read_text()
    assert not list(cache.glob("build/*.seeding"))


def test_build_failure_raises_with_the_compiler_error(cache: Path, fake_repo: Path) -> None:
    (fake_repo / "src" / "main.c").write_text("int main(void) { BUILD_BREAKER }\n")
    git(fake_repo, "commit", "-q", "-am", "break")
    with pytest.raises(InfraError, match=r"kernel build failed: src/main.c:3:1: error: expected .*log: "):
        build.ensure_kernel("series", tree=fake_repo, base="main")


def test_build_ref_builds_an_applied_branch(cache: Path, fake_repo: Path) -> None:
    git(fake_repo, "checkout", "-q", "-b", "topic")
    (fake_repo / "src" / "extra.c").write_text("int extra;\n")
    git(fake_repo, "add", "-A")
    git(fake_repo, "commit", "-q", "-m", "topic")
    git(fake_repo, "checkout", "-q", "main")
    tree = prepare_local(fake_repo, "main", lambda _m: None)
    kb = build.build_ref("topic", "my-topic", tree=fake_repo, base="main")
    assert kb.variant == "my-topic" and b"int extra" in kb.bzimage.read_bytes()
    assert kb.commit == git(fake_repo, "rev-parse", "topic")
    assert tree.base == git(fake_repo, "rev-parse", "main")


def test_kernel_build_json_cli(cache: Path, fake_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "build", "--tree", str(fake_repo), "--base", "main", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["variant"] == "series" and Path(data["bzimage"]).is_file()
    assert main(["build", "--tree", str(fake_repo), "--base", "main", "--fragment", "nope"]) == 3
    assert "unknown kconfig fragment 'nope'" in capsys.readouterr().err
    assert main(["build", "--variant", "no-such-variant", "--tree", str(fake_repo), "--base", "main"]) == 3


def test_configuration_does_not_depend_on_a_host_rust_toolchain(cache: Path, fake_repo: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Same config hash, same .config: a rustc found (or not) through the caller's HOME must not matter.
    assert "RUSTC=/bin/false" in build.make_args()
    before = kconfig.config_hash(kconfig.load_fragments())
    monkeypatch.setattr(kconfig, "CONFIG_MAKE_VARS", ("LOCALVERSION=",))
    assert kconfig.config_hash(kconfig.load_fragments()) != before  # the variables are part of the key


def test_ccache_env_shares_entries_across_build_dirs(cache: Path) -> None:
    env = build.ccache_env()
    assert env["CCACHE_DIR"] == str(cache / "ccache") and env["CCACHE_BASEDIR"] == str(cache)
    assert env["CCACHE_NOHASHDIR"] == "1"
    assert "LOCALVERSION=" in build.make_args()


def test_variant_switch_only_touches_changed_files(cache: Path, fake_repo: Path, tmp_path: Path) -> None:
    patch = tmp_path / "vdir" / "m.diff"
    patch.parent.mkdir()
    patch.write_text("diff --git a/src/main.c b/src/main.c\n--- a/src/main.c\n+++ b/src/main.c\n"
                     "@@ -1,4 +1,4 @@\n int main(void)\n {\n-\treturn 0;\n+\treturn 7;\n }\n")
    toml = tmp_path / "vdir" / "variants.toml"
    toml.write_text('[[variant]]\nname = "series"\nkind = "series"\npatches = []\n\n'
                    '[[variant]]\nname = "mutant-x"\nkind = "mutant"\npatches = ["m.diff"]\n')
    tree = prepare_local(fake_repo, "main", lambda _m: None)
    variants.checkout_variant(tree, "series", path=toml)
    untouched = (tree.path / "src" / "io_uring.c").stat().st_mtime_ns
    ref = variants.checkout_variant(tree, "mutant-x", path=toml)
    assert ref == "kwb/variant/mutant-x" and "return 7" in (tree.path / "src" / "main.c").read_text()
    variants.checkout_variant(tree, "series", path=toml)
    assert "return 0" in (tree.path / "src" / "main.c").read_text()
    assert (tree.path / "src" / "io_uring.c").stat().st_mtime_ns == untouched


@pytest.mark.build
@pytest.mark.real
def test_real_build_has_every_requested_symbol(built_kernel: KernelBuild) -> None:
    assert built_kernel.release == "6.12.117"
    assert built_kernel.bzimage.stat().st_size > 1_000_000
    assert kconfig.missing_symbols(built_kernel.config.read_text(),
                                   kconfig.requested(kconfig.load_fragments())) == []
    # Whatever rust toolchain the host has, the configuration says "none" (see kconfig.CONFIG_MAKE_VARS).
    assert "CONFIG_RUSTC_VERSION=0" in built_kernel.config.read_text()
    head = built_kernel.bzimage.read_bytes()[:0x300]
    assert head[0x202:0x206] == b"HdrS"  # an x86 boot image


def test_the_build_line_goes_to_a_live_sink_else_as_plain_lines() -> None:
    class Sink:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str]] = []

        def __call__(self, line: str) -> None:
            self.calls.append(("line", line))

        def live(self, text: str) -> None:
            self.calls.append(("live", text))

        def end_live(self, text: str = "") -> None:
            self.calls.append(("end", text))

    sink = Sink()
    meter = build._Live(sink)
    meter("1/10 objects")
    meter("2/10 objects")
    meter.end("10 objects in 5s")
    assert sink.calls == [("live", "1/10 objects"), ("live", "2/10 objects"), ("end", "10 objects in 5s")]
    lines: list[str] = []
    plain = build._Live(lines.append)
    plain("1/10 objects")
    plain("2/10 objects")  # within LIVE_EVERY of the first: not repeated
    plain.end("10 objects in 5s")
    assert lines == ["1/10 objects", "10 objects in 5s"]
