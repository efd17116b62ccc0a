"""The virtme-ng argv: flags, loopback-only SSH, raw disks, and what real vng turns it into (--dry-run)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from harness.core.errors import UserError
from harness.core.run import run
from harness.vm import vng


def _spec(tmp_path: Path, **kw: object) -> vng.VngSpec:
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"\0" * 4096)
    base: dict[str, object] = dict(kernel=kernel, name="kwb-test1", ssh_port=34567,
                                   pidfile=tmp_path / "qemu.pid")
    base.update(kw)
    return vng.VngSpec(**base)  # type: ignore[arg-type]


def _opt(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_argv_tcg(tmp_path: Path) -> None:
    argv = vng.build_argv(_spec(tmp_path, memory_mb=1024, cpus=1, rwdirs=[tmp_path / "res"],
                                cmdline=["hung_task_panic=0"]), vng=Path("/x/vng"))
    assert argv[:3] == ["/x/vng", "--run", str(tmp_path / "bzImage")]
    assert "--disable-kvm" in argv
    assert _opt(argv, "--ssh") == "34567" and "--ssh-tcp" in argv
    assert _opt(argv, "--memory") == "1024M" and _opt(argv, "--cpus") == "1"
    assert _opt(argv, "--rwdir") == str(tmp_path / "res")
    assert _opt(argv, "--append") == " ".join([*vng.BASE_CMDLINE, "hung_task_panic=0"])
    assert "SYSTEMD_PROC_CMDLINE=net.ifnames=0" in vng.BASE_CMDLINE
    assert {"--verbose", "--force-9p", "--disable-microvm", "--disable-monitor"} <= set(argv)
    assert argv[-1].startswith("--qemu-opts=-no-reboot -pidfile ")


def test_argv_kvm_has_no_disable_flag(tmp_path: Path) -> None:
    assert "--disable-kvm" not in vng.build_argv(_spec(tmp_path, accel="kvm"), vng=Path("/x/vng"))


def test_disks_are_raw_virtio_blk_in_order(tmp_path: Path) -> None:
    opts = vng.disk_qemu_opts([tmp_path / "a.img", tmp_path / "b.img"])
    assert opts == [
        "-drive", f"if=none,id=kwbdisk0,file={tmp_path}/a.img,format=raw,cache=writeback",
        "-device", "virtio-blk-pci,drive=kwbdisk0,serial=kwbdisk0",
        "-drive", f"if=none,id=kwbdisk1,file={tmp_path}/b.img,format=raw,cache=writeback",
        "-device", "virtio-blk-pci,drive=kwbdisk1,serial=kwbdisk1",
    ]


def test_qcow2_overlays_get_their_own_explicit_format(tmp_path: Path) -> None:
    opts = vng.disk_qemu_opts([tmp_path / "ext4.qcow2", tmp_path / "bdev.img"])
    drives = [o for o in opts if o.startswith("if=none")]
    assert drives == [f"if=none,id=kwbdisk0,file={tmp_path}/ext4.qcow2,format=qcow2,cache=writeback",
                      f"if=none,id=kwbdisk1,file={tmp_path}/bdev.img,format=raw,cache=writeback"]


@pytest.mark.parametrize("bad", ["/tmp/a b.img", "/tmp/a,b.img", "/tmp/a;rm.img", "/tmp/$(x)"])
def test_paths_vng_would_mangle_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UserError, match="characters virtme-ng cannot pass through"):
        vng.disk_qemu_opts([Path(bad)])


def test_env_gives_per_run_home_and_virtme_run_on_path(tmp_path: Path) -> None:
    env = vng.vng_env(tmp_path / "home", vng=Path("/venv/bin/vng"))
    assert env["HOME"] == str(tmp_path / "home")
    assert env["PATH"].startswith("/venv/bin:")
    assert vng.ssh_key_path(tmp_path) == tmp_path / ".cache/virtme-ng/.ssh/id_virtme"


def test_root_cache_and_cpu_model_are_given_after_virtme_runs_own(tmp_path: Path) -> None:
    argv = vng.build_argv(_spec(tmp_path, root_cache="loose", cpu_model="qemu64"), vng=Path("/x/vng"))
    assert _opt(argv, "--append").split()[-1] == f"rootflags={vng.ROOT_9P_FLAGS},cache=loose"
    assert argv[-1].split()[3:5] == ["-cpu", "qemu64"]
    plain = vng.build_argv(_spec(tmp_path), vng=Path("/x/vng"))
    assert "rootflags" not in _opt(plain, "--append") and "-cpu" not in plain[-1]
    with pytest.raises(Exception, match="unknown 9p cache mode 'fast'"):
        vng.build_argv(_spec(tmp_path, root_cache="fast"), vng=Path("/x/vng"))
    with pytest.raises(UserError, match="bad QEMU cpu model"):
        vng.build_argv(_spec(tmp_path, cpu_model="max;rm -rf /"), vng=Path("/x/vng"))


def test_real_vng_dry_run_produces_the_qemu_line_we_expect(tmp_path: Path) -> None:
    """Ask the installed virtme-ng what QEMU command it would run for our argv."""
    home = tmp_path / "home"
    res_dir = tmp_path / "results"
    res_dir.mkdir()
    disk = tmp_path / "d0.img"
    disk.write_bytes(b"")
    spec = _spec(tmp_path, rwdirs=[res_dir], disks=[disk], root_cache="loose", cpu_model="qemu64")
    argv = vng.build_argv(spec)
    argv.insert(1, "--dry-run")
    res = run(argv, timeout=60, env=vng.vng_env(home), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if "qemu-system-x86_64" in ln)
    qemu = shlex.split(line)
    # SSH is forwarded from loopback only, to the guest's port 22.
    forwards = [a for a in qemu if "hostfwd=" in a]
    assert forwards and all("hostfwd=tcp:127.0.0.1:34567-:22" in a for a in forwards)
    assert not any("0.0.0.0" in a for a in qemu)
    # TCG: no KVM accelerator requested; no reboot on panic; our pid file; raw disk with format.
    assert not any("accel=kvm" in a or a == "-enable-kvm" for a in qemu)
    assert "-no-reboot" in qemu and _opt(qemu, "-pidfile") == str(tmp_path / "qemu.pid")
    assert f"if=none,id=kwbdisk0,file={disk},format=raw,cache=writeback" in qemu
    # The host root is exported read-only; the results directory is the one writable export.
    fsdevs = [a for a in qemu if a.startswith("local,id=")]
    root = [a for a in fsdevs if ",path=/," in a]
    assert root and all("readonly=on" in a for a in root)
    writable = [a for a in fsdevs if "readonly=on" not in a]
    assert writable == [next(a for a in fsdevs if f"path={res_dir}," in a)]
    append = _opt(qemu, "-append")
    assert "panic=-1" in append and f"virtme_ssh_cache={home}/.cache/virtme-ng/.ssh" in append
    # Ours come after virtme-run's: the kernel keeps the last rootflags=, QEMU the last -cpu.
    flags = [a for a in append.split() if a.startswith("rootflags=")]
    assert flags[-1].endswith(",cache=loose") and len(flags) == 2
    assert [qemu[i + 1] for i, a in enumerate(qemu) if a == "-cpu"][-1] == "qemu64"
    # The per-run HOME received vng's SSH host keys: nothing was written to the real home.
    assert (home / ".cache/virtme-ng/.ssh/etc/ssh/ssh_host_ed25519_key.pub").is_file()


def test_host_udev_honours_the_rename_race_fix() -> None:
    """The guest runs the host's udevd; on a host where systemd believes it is in a container (Docker's
    /.dockerenv) it reads PID 1's argv, not /proc/cmdline, and renames eth0 despite vng's net.ifnames=0.
    Checked on the host's own udev: with SYSTEMD_PROC_CMDLINE as kwb passes it, naming policies are off."""
    import shutil

    value = next(a.split("=", 1)[1] for a in vng.BASE_CMDLINE if a.startswith("SYSTEMD_PROC_CMDLINE="))
    assert value == "net.ifnames=0"
    nics = sorted(p for p in Path("/sys/class/net").iterdir() if (p / "device").exists())
    if not shutil.which("udevadm") or not nics:
        pytest.skip("needs udevadm and a network device with a driver on the host")
    res = run(["udevadm", "test-builtin", "net_setup_link", str(nics[0])], timeout=30,
              env={"SYSTEMD_PROC_CMDLINE": value})
    assert "NamePolicy= disabled on kernel command line" in res.stdout + res.stderr, res.stderr[-2000:]
