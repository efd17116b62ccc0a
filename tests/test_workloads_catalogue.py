"""Workload catalogue: the shipped files load; a bad file is a UserError naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.errors import UserError
from harness.workloads import catalogue, fio, kinds

GOOD = """\
name = "{name}"
kind = "fio"
description = "test job"
filesystems = ["ext4", "bdev"]
timeout = 60
must_show = ["async-path"]
[params]
ioengine = "io_uring"
repeats = 3
"""


def _write(tmp_path: Path, text: str, name: str = "job") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_shipped_catalogue_loads_and_covers_the_cover_letter_modes() -> None:
    cat = catalogue.load_catalogue()
    for name in ("fio-iouring", "fio-iouring-forced-async", "fio-psync"):
        spec = cat[name]
        assert spec.kind == "fio" and spec.default
        assert set(spec.filesystems) == {"ext4", "xfs", "btrfs", "bdev"}
        p = fio.FioParams.from_dict(spec.params)
        assert p.rw == "randread" and p.bs == "4k" and p.repeats >= 3 and p.runtime <= 15
    assert cat["fio-iouring"].must_show == ["async-path"]
    assert cat["fio-iouring"].must_show_by_kind["baseline"] == ["no-callback", "iowq-path"]
    assert fio.FioParams.from_dict(cat["fio-iouring-forced-async"].params).force_async
    assert cat["fio-iouring"].params["iodepth"] == 32


def test_catalogue_names_probe_and_liburing_entries() -> None:
    cat = catalogue.load_catalogue()
    wanted = {"probe-completion-accounting", "probe-data-integrity", "probe-kbuf-cancel",
              "probe-iopoll-buffered", "probe-ring-exit-inflight", "probe-short-read",
              "liburing-subset", "liburing-full"}
    assert wanted <= set(cat)
    assert not cat["liburing-full"].default
    for name in wanted - {"liburing-subset", "liburing-full"}:
        assert cat[name].kind == "probe" and cat[name].concerns, name


def test_good_file_loads(tmp_path: Path) -> None:
    spec = catalogue.load_file(_write(tmp_path, GOOD.format(name="job")))
    assert spec.name == "job" and spec.timeout == 60.0 and spec.source == tmp_path / "job.toml"
    assert spec.checks() == ["async-path"]


@pytest.mark.parametrize(("text", "field"), [
    (GOOD.format(name="job").replace('kind = "fio"\n', ""), "'kind'"),
    (GOOD.format(name="job").replace("timeout = 60", 'timeout = "60"'), "'timeout'"),
    (GOOD.format(name="job").replace("timeout = 60", "timeout = true"), "'timeout'"),
    (GOOD.format(name="job").replace("timeout = 60", "timeout = 0"), "'timeout'"),
    (GOOD.format(name="job") .replace('"bdev"', '"zfs"'), "'filesystems'"),
    (GOOD.format(name="job").replace('kind = "fio"', 'kind = "ltp"'), "'kind'"),
    (GOOD.format(name="other"), "'name'"),
    (GOOD.format(name="job") + "colour = 1\n", "'params.colour'"),
    ("tmeout = 3\n" + GOOD.format(name="job"), "'tmeout'"),
    (GOOD.format(name="job").replace("repeats = 3", 'repeats = "3"'), "'params.repeats'"),
    (GOOD.format(name="job").replace('ioengine = "io_uring"', 'ioengine = "libaio"'), "'params.ioengine'"),
    (GOOD.format(name="job").replace('ioengine = "io_uring"', 'ioengine = "psync"\nforce_async = true'),
     "'params.force_async'"),
    (GOOD.format(name="job").replace("repeats = 3", "repeats = 0"), "'params.repeats'"),
    (GOOD.format(name="job").replace('must_show = ["async-path"]', "must_show = [1]"), "'must_show'"),
])
def test_bad_file_names_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(UserError) as exc:
        catalogue.load_file(path)
    assert str(path) in str(exc.value) and field in str(exc.value)
    assert "\n" not in str(exc.value)


def test_bad_toml_and_empty_dir(tmp_path: Path) -> None:
    path = _write(tmp_path, "name = \n")
    with pytest.raises(UserError, match=r"^workload file .*: invalid TOML: "):
        catalogue.load_file(path)
    with pytest.raises(UserError, match="empty"):
        catalogue.load_catalogue(_empty(tmp_path))
    with pytest.raises(UserError, match="not found"):
        catalogue.load_catalogue(tmp_path / "missing")


def _empty(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_select_and_fs_list() -> None:
    cat = catalogue.load_catalogue()
    assert [s.name for s in catalogue.select(["fio-psync", "fio-iouring", "fio-psync"], cat)] == \
        ["fio-psync", "fio-iouring"]
    assert all(s.default for s in catalogue.select(None, cat))
    with pytest.raises(UserError, match="unknown workload nope"):
        catalogue.select(["nope"], cat)
    assert catalogue.parse_fs_list(None) == ["ext4", "xfs", "btrfs", "bdev"]
    assert catalogue.parse_fs_list("xfs, ext4") == ["xfs", "ext4"]
    with pytest.raises(UserError, match="unknown filesystem zfs"):
        catalogue.parse_fs_list("ext4,zfs")


def test_kind_registry() -> None:
    assert kinds.runner_for("fio") is fio.run_job
    with pytest.raises(UserError, match="unknown workload kind"):
        kinds.runner_for("ltp")
    assert set(kinds.KINDS) == {"fio", "probe", "liburing"}
