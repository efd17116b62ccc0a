"""Series profiles: both shipped profiles validate; a broken one fails in one line naming file and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness import cli
from harness.core import profile
from harness.core.errors import ExitCode, UserError
from harness.kernel.variants import load_variants
from harness.series.concerns import load_catalogue


@pytest.mark.parametrize("name", ["async-buffered-reads", "cq-eventfd-disable"])
def test_shipped_profiles_validate_and_everything_they_name_loads(name: str) -> None:
    p = profile.load(name)
    assert p.name == name and p.title and p.concern_revisions
    cli.check_profile(p)  # concerns (rules, regexes), variants of each tree, named workloads
    assert len(load_catalogue(p.concerns_file)) >= 3
    assert load_variants(p.variants_file())[0].name == "series"
    assert p.series_role in {r.name for r in p.roles}


def test_default_profile_comes_from_data_and_both_are_listed() -> None:
    assert profile.default_name() == "async-buffered-reads"
    assert {"async-buffered-reads", "cq-eventfd-disable"} <= set(profile.names())
    tree = profile.default_tree()
    assert tree.name and tree.tarball.is_absolute() and "{release}" in tree.commit_message


def test_use_sets_the_profile_for_this_process_and_its_children(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(profile.ENV, raising=False)
    assert profile.active().name == profile.default_name()
    assert profile.use("cq-eventfd-disable").name == "cq-eventfd-disable"
    import os

    assert os.environ[profile.ENV] == "cq-eventfd-disable" and profile.active().name == "cq-eventfd-disable"


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "async-buffered-reads"
    shutil.copytree(profile.PROFILES_DIR / "async-buffered-reads", root)
    return root


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(("file", "old", "new", "message"), [
    # wrong key
    ("profile.toml", "[verdict]\n", "[verdict]\nseries_check = 1\n",
     r"profile\.toml: key 'verdict\.series_check': unknown \(expected one of baseline, series\)$"),
    ("profile.toml", 'marks = "io-wq enqueue', 'mark = "io-wq enqueue',
     r"profile\.toml: key 'evidence\.role\.1\.mark': unknown \(expected one of address_taken, candidates, "
     r"marks, name\)$"),
    ("profile.toml", 'title = "Add support for async buffered reads"\n', "",
     r"profile\.toml: key 'title': missing \(required\)$"),
    ("profile.toml", "concern_revisions = [3, 4, 5, 7]", 'concern_revisions = ["v3"]',
     r"profile\.toml: key 'concern_revisions\.0': expected an integer, got \"v3\"$"),
    ("profile.toml", 'series_role = "callback"', 'series_role = "callbak"',
     r"profile\.toml: key 'evidence\.series_role': expected one of the evidence roles .*got 'callbak'$"),
    # missing file
    ("profile.toml", 'concerns = "concerns.toml"', 'concerns = "concern.toml"',
     r"profile\.toml: key 'concerns': file missing: .*/concern\.toml$"),
    ("profile.toml", 'variants = "variants/debian-6.12"', 'variants = "variants/none"',
     r"profile\.toml: key 'trees\.debian-6\.12\.variants': directory missing: .*variants/none$"),
    # bad regex
    ("series.toml", "cover_subject = '^Add support", "cover_subject = '^(Add support",
     r"series\.toml: key 'cover_subject': bad regex .*missing \), unterminated subpattern"),
])
def test_broken_profile_is_one_line_naming_file_and_key(tmp_path: Path, file: str, old: str, new: str,
                                                         message: str) -> None:
    root = _copy(tmp_path)
    _edit(root / file, old, new)
    with pytest.raises(UserError, match=message) as exc:
        profile.load_dir(root)
    assert "\n" not in str(exc.value) and str(root / file) in str(exc.value)


def test_bad_regex_in_concerns_is_caught_before_anything_runs(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    _edit(root / "concerns.toml", "addressed = ['\\*\\s*ki_waitq;'", "addressed = ['(\\*\\s*ki_waitq;'")
    with pytest.raises(UserError) as exc:
        cli.check_profile(profile.load_dir(root))
    text = str(exc.value)
    assert "concerns.toml" in text and "iocb-private-reuse" in text and "\n" not in text


def test_missing_profile_file_and_unknown_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UserError, match=r"profile\.toml: file missing"):
        profile.load_dir(tmp_path)
    assert cli.main(["series", "concerns", "--profile", "no-such", "--source", "x"]) == ExitCode.USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("kwb: error: unknown profile 'no-such' (known: async-buffered-reads")
    assert len(err.splitlines()) == 1


def test_every_command_takes_profile() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["concern", "list", "--profile", "cq-eventfd-disable"])
    assert args.profile == "cq-eventfd-disable"
    args = parser.parse_args(["--profile", "cq-eventfd-disable", "doctor"])
    assert args.profile == "cq-eventfd-disable"
    assert parser.parse_args(["doctor"]).profile is None


def test_package_data_ships_every_profile_catalogue_and_probe_file() -> None:
    """pyproject's package-data globs cover every data file an installed kwb reads (no Python package
    holds them, so the "*" defaults do not)."""
    import tomllib

    root = profile.PROFILES_DIR.parent
    data = tomllib.loads((root.parent / "pyproject.toml").read_text(encoding="utf-8"))
    globs = data["tool"]["setuptools"]["package-data"]["harness"]
    shipped = {p for g in globs for p in root.glob(g) if p.is_file()}
    wanted = {p for d in ("profiles", "workloads/catalogue", "workloads/probes")
              for p in (root / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert wanted and not sorted(wanted - shipped), sorted(str(p) for p in wanted - shipped)


@pytest.mark.shared
@pytest.mark.real
def test_second_profile_concerns_on_the_shared_archive(lore_mbox: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`kwb series concerns --profile cq-eventfd-disable` finds the series and judges its two postings:
    v1 carries every concern Jens raised, v2 addresses each (its changelog says so)."""
    import json

    assert cli.main(["series", "concerns", "--profile", "cq-eventfd-disable", "--source", str(lore_mbox),
                     "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = data["concerns"]
    got = {(r["concern_id"], r["version"]): r["status"] for r in rows}
    for cid in ("flag-name-unclear", "default-enabled-at-init", "flag-polarity"):
        assert got[(cid, 1)] == "present" and got[(cid, 2)] == "addressed", got


@pytest.mark.boot
def test_second_profile_series_variant_runs_with_no_code_change(lore_mbox: Path, tmp_path: Path) -> None:
    """`kwb test-series --profile cq-eventfd-disable --variants series`: the default tree's series kernel,
    liburing's eventfd tests in the guest, the verdict from the profile's declared proof."""
    import json

    rc = cli.main(["-q", "test-series", "--profile", "cq-eventfd-disable", "--variants", "series",
                   "--source", str(lore_mbox), "--out", str(tmp_path)])
    data = json.loads((tmp_path / "latest" / "results.json").read_text())
    assert rc == 0, data["verdict"]
    assert data["variants"]["series"]["verdict"] == "pass"
    (job,) = data["jobs"]
    assert job["workload"] == "liburing-eventfd" and job["status"] == "pass"
    assert {s["name"]: s["status"] for s in job["subresults"]}["eventfd-disable"] == "pass"


def test_broken_default_profile_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "default.toml"
    bad.write_text("profile = 3\n")
    monkeypatch.setattr(profile, "DEFAULT_FILE", bad)
    assert cli.main(["doctor"]) == ExitCode.USAGE
    err = capsys.readouterr().err.strip()
    assert err == f"kwb: error: {bad}: key 'profile': expected the name of a profile directory"
