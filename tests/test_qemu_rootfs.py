"""The isolated guest root: recipe and identity, the image with its payload, the vng argv, the real boot."""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from harness.core.errors import InfraError, UserError
from harness.core.run import run
from harness.orchestrate import reuse
from harness.vm import doctor, rootfs, vng

# --- mode, recipe, identity ------------------------------------------------------------------------


def test_mode_defaults_to_isolated_and_refuses_unknown_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(rootfs.MODE_ENV, raising=False)
    assert rootfs.mode() == "isolated"
    monkeypatch.setenv(rootfs.MODE_ENV, "host")
    assert rootfs.mode() == "host"
    monkeypatch.setenv(rootfs.MODE_ENV, "hots")
    with pytest.raises(UserError, match="KWB_GUEST_ROOT='hots' is not a guest root mode"):
        rootfs.mode()


def test_recipe_digest_follows_the_package_list(monkeypatch: pytest.MonkeyPatch) -> None:
    first = rootfs.recipe_digest()
    assert first == rootfs.recipe_digest() and len(first) == 16
    monkeypatch.setattr(rootfs, "PACKAGES", (*rootfs.PACKAGES, "strace"))
    assert rootfs.recipe_digest() != first
    assert rootfs.base_dir().name == f"bookworm-{rootfs.recipe_digest()}"


def test_mirror_is_an_http_debian_archive() -> None:
    assert rootfs.mirror().startswith(("http://", "https://")) and rootfs.mirror().endswith("/debian")


def test_mmdebstrap_argv_is_minbase_with_the_workload_packages(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    argv = rootfs.mmdebstrap_argv(tmp_path / "t")
    assert argv[0] == "/usr/bin/mmdebstrap" and "--variant=minbase" in argv
    include = next(a for a in argv if a.startswith("--include="))
    assert {"openssh-server", "fio", "xfsprogs", "btrfs-progs", "e2fsprogs", "liburing2", "busybox"} <= \
        set(include.split("=", 1)[1].split(","))
    assert argv[-3:] == ["bookworm", str(tmp_path / "t"), f"deb {rootfs.mirror()} bookworm main"]
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(InfraError, match="mmdebstrap not found: run `make setup`"):
        rootfs.mmdebstrap_argv(tmp_path / "t")


def _fake_base(cache: Path) -> Path:
    """A tiny stand-in for the mmdebstrap tree (enough for existing_base and mkfs.ext4 -d)."""
    tree = rootfs.base_dir() / "tree"
    (tree / "usr" / "sbin").mkdir(parents=True)
    (tree / "usr" / "sbin" / "sshd").write_text("#!/bin/sh\n")
    (tree / "etc").mkdir()
    (rootfs.base_dir() / "manifest.txt").write_text("fio 3.33-3 amd64\n")
    (rootfs.base_dir() / "build.json").write_text(json.dumps({"seconds": 12.5}))
    return tree


def test_identity_is_none_until_built_then_follows_the_manifest(cache: Path) -> None:
    assert rootfs.identity() is None and rootfs.existing_base() is None
    _fake_base(cache)
    base = rootfs.existing_base()
    assert base is not None and base.build_seconds == 12.5 and not base.built_now
    first = rootfs.identity()
    assert first == base.identity
    (rootfs.base_dir() / "manifest.txt").write_text("fio 3.33-3+b1 amd64\n")  # a newer package
    assert rootfs.identity() != first


def test_payload_digest_covers_binaries_not_sources(tmp_path: Path) -> None:
    d = tmp_path / "test"
    d.mkdir()
    (d / "nop.t").write_bytes(b"\x7fELF one")
    (d / "nop.c").write_text("int main(void) { return 0; }\n")
    first = rootfs.payload_digest([d])
    (d / "nop.c").write_text("/* edited */\n")
    assert rootfs.payload_digest([d]) == first
    (d / "nop.t").write_bytes(b"\x7fELF two")
    assert rootfs.payload_digest([d]) != first
    with pytest.raises(InfraError, match="not an absolute path"):
        rootfs.payload_digest([Path("relative")])


def _debugfs_cat(image: Path, path: str) -> str:
    return run(["debugfs", "-R", f"cat {path}", str(image)], timeout=60, check=True).stdout


def test_image_holds_the_tree_and_the_payload_at_host_paths(cache: Path, tmp_path: Path) -> None:
    """A real mkfs.ext4 -d image (small tree): made once, read back with debugfs, pruned, overlaid."""
    _fake_base(cache)
    payload = tmp_path / "build" / "probes"
    payload.mkdir(parents=True)
    (payload / "probe-x").write_bytes(b"probe binary\n")
    (payload / "probe-x.c").write_text("source, not copied\n")
    image = rootfs.ensure_image([payload])
    assert image.is_file() and image.parent == rootfs.base_dir() / "images"
    assert _debugfs_cat(image, "/usr/sbin/sshd") == "#!/bin/sh\n"
    assert _debugfs_cat(image, f"{payload}/probe-x") == "probe binary\n"
    missing = run(["debugfs", "-R", f"stat {payload}/probe-x.c", str(image)], timeout=60)
    assert "File not found" in missing.stderr + missing.stdout
    mtime = image.stat().st_mtime_ns
    assert rootfs.ensure_image([payload]) == image and image.stat().st_mtime_ns >= mtime  # reused
    assert not (rootfs.base_dir() / "images" / "staging.tmp").exists()
    # The base tree was hard-linked, never written: the payload is not in it.
    assert not (rootfs.base_dir() / "tree" / payload.relative_to("/")).exists()
    # A changed payload is a new image; the oldest beyond KEEP_IMAGES are removed.
    made = [image]
    for i in range(rootfs.KEEP_IMAGES):
        (payload / "probe-x").write_bytes(f"probe binary {i}\n".encode())
        made.append(rootfs.ensure_image([payload]))
    assert len(set(made)) == len(made)
    assert sorted((rootfs.base_dir() / "images").glob("root-*.img")) == sorted(made[-rootfs.KEEP_IMAGES:])
    overlay = rootfs.boot_overlay(made[-1], tmp_path / "state" / "root.qcow2")
    info = json.loads(run(["qemu-img", "info", "--output=json", str(overlay)], timeout=30, check=True).stdout)
    assert info["format"] == "qcow2" and info["backing-filename"] == str(made[-1])


def test_prepare_boot_host_needs_nothing_and_bad_modes_are_refused(tmp_path: Path) -> None:
    root = rootfs.prepare_boot("host", tmp_path)
    assert root.mode == "host" and root.overlay is None and root.info()["image"] == ""
    with pytest.raises(UserError, match="unknown guest root 'chroot'"):
        rootfs.prepare_boot("chroot", tmp_path)


def test_reuse_key_follows_the_guest_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_workloads_fakeguest import fake_kernel

    config = tmp_path / "config"
    config.write_text("CONFIG_IO_URING=y\n")
    k = fake_kernel(commit="a" * 40, config=config)
    keys = {reuse.reuse_key(k, ["ext4"], [], "tcg", code="c", root=r)
            for r in ("host", "isolated:1", "isolated:2")}
    assert len(keys) == 3
    monkeypatch.setenv(rootfs.MODE_ENV, "host")
    assert reuse.guest_root_identity() == "host"
    assert reuse.reuse_key(k, ["ext4"], [], "tcg", code="c") == reuse.reuse_key(k, ["ext4"], [], "tcg",
                                                                                code="c", root="host")


def test_doctor_reports_the_isolation_in_effect(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(rootfs.MODE_ENV, raising=False)
    iso = doctor.isolation()
    assert iso["mode"] == "isolated" and "restrict=on" in iso["network"] and not iso["image"]["built"]
    _fake_base(cache)
    assert doctor.isolation()["image"]["built"]
    monkeypatch.setenv(rootfs.MODE_ENV, "host")
    iso = doctor.isolation()
    assert iso["mode"] == "host" and "--host-root" in iso["chosen_by"] and "10.0.2.2" in iso["network"]


def test_cli_host_root_flag_selects_the_host_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness import cli

    seen: dict[str, str] = {}
    monkeypatch.delenv(rootfs.MODE_ENV, raising=False)
    monkeypatch.setattr(doctor, "diagnose", lambda kernel=None: seen.setdefault("mode", rootfs.mode()) and
                        (_ for _ in ()).throw(InfraError("stop here")))
    assert cli.main(["--host-root", "doctor"]) != 0
    assert seen["mode"] == "host"


# --- the vng argv ----------------------------------------------------------------------------------

def _spec(tmp_path: Path, **kw: Any) -> vng.VngSpec:
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"\0" * 4096)
    base: dict[str, Any] = dict(kernel=kernel, name="kwb-test1", ssh_port=34567,
                                pidfile=tmp_path / "qemu.pid")
    base.update(kw)
    return vng.VngSpec(**base)


def _opt(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_isolated_argv_boots_the_overlay_with_results_at_their_host_path(tmp_path: Path) -> None:
    res = tmp_path / "res"
    argv = vng.build_argv(_spec(tmp_path, rwdirs=[res], root_disk=tmp_path / "root.qcow2", restrict_net=True),
                          vng=Path("/x/vng"))
    assert _opt(argv, "--root-disk") == str(tmp_path / "root.qcow2") and "--rw" in argv
    assert _opt(argv, "--root-dev") == "/dev/vda" and _opt(argv, "--root-fstype") == "ext4"
    assert _opt(argv, "--rwdir") == f"{res}={res}"
    assert "-set netdev.ssh.restrict=on" in argv[-1]
    host = vng.build_argv(_spec(tmp_path, rwdirs=[res]), vng=Path("/x/vng"))
    assert "--root-disk" not in host and "--rw" not in host and "restrict" not in host[-1]


def test_kwb_disks_keep_vda_and_the_root_goes_last(tmp_path: Path) -> None:
    disks = [tmp_path / "ext4.qcow2", tmp_path / "xfs.img", tmp_path / "bdev.img"]
    spec = _spec(tmp_path, disks=disks, root_disk=tmp_path / "root.qcow2")
    assert vng.root_device(spec) == "/dev/vdd"
    opts = vng.qemu_opts(spec)
    sets = [opts[i + 1] for i, o in enumerate(opts) if o == "-set"]
    assert sets == [f"drive.virtme-root.file={disks[0]}", "drive.virtme-root.format=qcow2",
                    "drive.virtme-root.cache=writeback"]
    drives = [o for o in opts if o.startswith("if=none")]
    assert drives == [f"if=none,id=kwbdisk1,file={disks[1]},format=raw,cache=writeback",
                      f"if=none,id=kwbdisk2,file={disks[2]},format=raw,cache=writeback",
                      f"if=none,id=kwbroot,file={tmp_path}/root.qcow2,format=qcow2"]


def test_real_vng_dry_run_exports_no_host_directory_but_the_results(tmp_path: Path) -> None:
    """What the installed virtme-ng would run for the isolated argv: no host root, restricted network."""
    home = tmp_path / "home"
    res_dir = tmp_path / "results"
    res_dir.mkdir()
    disk = tmp_path / "d0.img"
    disk.write_bytes(b"")
    root = tmp_path / "root.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(root), "64M"], timeout=30, check=True)
    spec = _spec(tmp_path, rwdirs=[res_dir], disks=[disk], root_disk=root, restrict_net=True)
    argv = vng.build_argv(spec)
    argv.insert(1, "--dry-run")
    res = run(argv, timeout=60, env=vng.vng_env(home), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    qemu = shlex.split(next(ln for ln in res.stdout.splitlines() if "qemu-system-x86_64" in ln))
    exports = [a for a in qemu if a.startswith("local,id=")]
    paths = [a.split("path=", 1)[1].split(",", 1)[0] for a in exports]
    assert "/" not in paths
    import virtme

    guest_tools = str(Path(virtme.__file__).parent / "guest")
    # vng's own guest scripts (read-only), the per-invocation cache vng made for sshd under the per-run
    # HOME, the results directory: nothing else of the host.
    others = [p for p in paths if p not in (str(res_dir), guest_tools)]
    assert len(others) == 1 and others[0].startswith(f"{home}/.cache/virtme-ng/guest/run-"), paths
    writable = [a for a in exports if "readonly=on" not in a]
    writable_paths = sorted(a.split("path=", 1)[1].split(",", 1)[0] for a in writable)
    assert writable_paths == sorted([str(res_dir), others[0]])
    # vng's root drive now carries kwb's first disk; the root is attached last; network restricted.
    assert qemu[qemu.index("-set") + 1] == "netdev.ssh.restrict=on"
    assert f"drive.virtme-root.file={disk}" in qemu
    assert any(a.startswith("if=none,id=virtme-root,") for a in qemu)
    assert f"if=none,id=kwbroot,file={root},format=qcow2" in qemu
    netdevs = [qemu[i + 1] for i, a in enumerate(qemu) if a == "-netdev"]
    assert netdevs == ["user,id=ssh,hostfwd=tcp:127.0.0.1:34567-:22"]
    append = _opt(qemu, "-append")
    assert "root=/dev/vdb" in append or "virtme_root=/dev/vdb" in append or "/dev/vdb" in append, append


# --- the real thing -----------------------------------------------------------------------------------

class _Listener:
    """A TCP server on the host's 127.0.0.1 that records whether anybody connected."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.5)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.sendall(b"host-secret-banner\n")
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.mark.boot
@pytest.mark.real
def test_real_isolated_guest_sees_no_host_file_and_no_host_service(built_kernel: Any, tmp_path: Path) -> None:
    from harness.vm import disks
    from harness.vm.guest import Guest, GuestConfig

    canary_dir = tmp_path / "canary"  # the test's own tmp dir: on the host's root filesystem
    canary_dir.mkdir()
    secret = f"kwb-canary-{tmp_path.name}-do-not-leak"
    canary = canary_dir / "canary.txt"
    canary.write_text(secret + "\n")
    res_dir = tmp_path / "results"
    res_dir.mkdir()
    # Positive control for the scans below: the same marker in the results directory must be found.
    (res_dir / "visible.txt").write_text(secret.replace("do-not-leak", "results") + "\n")
    image = disks.make_disk(tmp_path / "ext4.img", 128)
    listener = _Listener()
    try:
        # The host path is reachable (host root): the same listener accepts from the host itself.
        with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as c:
            assert c.recv(64).startswith(b"host-secret-banner")
        cfg = GuestConfig(kernel=Path(built_kernel.bzimage), results_dir=res_dir, disks=[image],
                          root="isolated", boot_timeout=400.0)
        with Guest(cfg) as g:
            assert g.root.mode == "isolated" and g.root.overlay is not None
            # SSH from the host works; the kernel under test runs.
            assert g.run("uname -r", timeout=60).stdout.strip() == built_kernel.release
            # By path: the canary's directory does not exist in the guest.
            by_path = g.run(f"cat {canary}; ls -d {canary_dir}", timeout=60)
            assert by_path.returncode != 0 and secret not in by_path.stdout, by_path.stdout
            # By scanning mounts: no 9p/virtiofs mount but vng's tools, its ssh cache and the results.
            mounts = g.run("cat /proc/mounts", timeout=60).stdout
            shared = [ln.split()[1] for ln in mounts.splitlines() if ln.split()[2] in ("9p", "virtiofs")]
            assert str(res_dir.resolve()) in shared
            others = sorted(set(shared) - {str(res_dir.resolve())})
            assert others == ["/run/virtme/cache", "/run/virtme/guesttools"], shared
            assert not any(ln.split()[1] == "/" and ln.split()[2] == "9p" for ln in mounts.splitlines())
            stem = secret.replace("-do-not-leak", "")
            grep = g.run("grep -rIl -D skip --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev "
                         f"-s {stem} / 2>/dev/null | head -5", timeout=600)
            assert grep.stdout.split() == [f"{res_dir.resolve()}/visible.txt"], grep.stdout
            # By 9p: mounting every 9p tag the guest can see never shows the canary.
            tags = g.run("cat /sys/bus/virtio/drivers/9pnet_virtio/virtio*/mount_tag 2>/dev/null "
                         "| tr '\\0' '\\n'", timeout=60).stdout.split()
            assert tags and "/dev/root" not in tags and "ROOTFS" not in tags, tags
            mounted = {ln.split()[0] for ln in mounts.splitlines() if ln.split()[2] == "9p"}
            # A tag already mounted was covered by the scan of / above (9p refuses a second mount).
            for i, tag in enumerate(t for t in tags if t not in mounted):
                probe = g.run(f"mkdir -p /tmp/p{i} && mount -t 9p -o trans=virtio,version=9p2000.L,ro {tag} "
                              f"/tmp/p{i} && echo mounted && grep -rIl -s {stem} /tmp/p{i} | head -3; "
                              f"umount /tmp/p{i}", timeout=120)
                assert "mounted" in probe.stdout, (tag, probe.stdout + probe.stderr)
                assert [Path(f).name for f in probe.stdout.split()[1:]] in ([], ["visible.txt"]), probe.stdout
            # The host's loopback service: unreachable through 10.0.2.2 (and the default route is gone).
            before = listener.connections
            # Positive control: busybox nc works in the guest (the guest's own sshd answers).
            own = g.run("timeout 20 busybox nc 127.0.0.1 22 </dev/null", timeout=60)
            assert own.stdout.startswith("SSH-2.0"), own.stdout + own.stderr
            conn = g.run(f"timeout 20 busybox nc 10.0.2.2 {listener.port} </dev/null; echo rc=$?", timeout=60)
            assert "host-secret-banner" not in conn.stdout and listener.connections == before, conn.stdout
            dns = g.run("timeout 20 busybox nc 10.0.2.3 53 </dev/null; echo rc=$?", timeout=60)
            assert "rc=0" not in dns.stdout
            # The disk kwb attached is /dev/vda as before; the guest's root is its own device.
            findmnt = g.run("findmnt -no SOURCE,FSTYPE / && test -b /dev/vda && "
                            "command -v fio mkfs.xfs mkfs.btrfs mkfs.ext4 sshd busybox", timeout=60)
            assert findmnt.ok, findmnt.stderr
            root_line = findmnt.stdout.split()
            assert root_line[:2] == ["/dev/vdb", "ext4"], findmnt.stdout
            # The results directory is writable, at its host path.
            w = g.run(f"echo from-guest > {res_dir.resolve()}/w.txt", timeout=60)
            assert w.ok, w.stderr
        assert (res_dir / "w.txt").read_text() == "from-guest\n"
        assert listener.connections == before
        assert json.loads((res_dir / "vm.json").read_text())["guest_root"]["mode"] == "isolated"
    finally:
        listener.close()


@pytest.mark.boot
@pytest.mark.real
def test_real_host_root_control_reads_the_canary_and_reaches_the_host(built_kernel: Any,
                                                                     tmp_path: Path) -> None:
    """The control for the test above: with `--host-root` (today's behaviour) the same probes succeed, so
    the isolated test's "cannot" is the isolation, not a broken probe."""
    from harness.vm.guest import Guest, GuestConfig

    canary = tmp_path / "canary.txt"
    canary.write_text("kwb-host-root-canary\n")
    listener = _Listener()
    try:
        cfg = GuestConfig(kernel=Path(built_kernel.bzimage), results_dir=tmp_path / "results", root="host",
                          boot_timeout=400.0)
        with Guest(cfg) as g:
            assert g.run(f"cat {canary}", timeout=60).stdout == "kwb-host-root-canary\n"
            conn = g.run(f"timeout 20 busybox nc 10.0.2.2 {listener.port} </dev/null", timeout=60)
            assert conn.stdout.startswith("host-secret-banner"), conn.stdout + conn.stderr
        assert listener.connections >= 1
    finally:
        listener.close()
