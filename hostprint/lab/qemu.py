"""A second Linux kernel for the lab: Debian's 6.1 kernel image booted in QEMU with a minimal
initramfs (busybox-static, the e1000 driver module, a tiny HTTP listener), its NIC a tap device
bridged to the lab segment inside a lab host's namespace.

Why: the lab's namespaces all share this machine's kernel, so without a VM every "Linux" cell of the
matrix is one kernel version. A class must hold for the other kernels of its generation too.

Wiring (all inside the lab, no user-mode networking, no route anywhere but the lab's /16):

    scanner --- lab bridge --- host ns "eth0" --br0-- tap0 --- QEMU e1000 --- guest eth0 (ADDRESS)

The host namespace's own address is flushed: only the guest answers. The guest sets its sysctls
from the kernel command line's `hp.sysctl=` list before the listener starts and prints a ready
line on the serial console, which `start_guest` waits for. Runtime is one boot (a few seconds with
software emulation here), then the probes, then `stop()` kills QEMU by PID.

Needs Debian packages: qemu-system-x86, busybox-static, linux-image-amd64 (bookworm: 6.1).
"""

from __future__ import annotations

import glob
import gzip
import io
import os
import re
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from hostprint.lab.state import kill_child

QEMU = "qemu-system-x86_64"
BUSYBOX = "/bin/busybox"
READY = "HOSTPRINT-GUEST-READY"


def find_kernel(series: str = "6.1") -> tuple[str, str, str] | None:
    """(vmlinuz, e1000.ko, version) of an installed Debian kernel of `series`, newest first."""
    found = []
    for vmlinuz in glob.glob(f"/boot/vmlinuz-{series}.*"):
        ver = vmlinuz.split("vmlinuz-", 1)[1]
        ko = f"/lib/modules/{ver}/kernel/drivers/net/ethernet/intel/e1000/e1000.ko"
        if os.path.exists(ko):
            found.append((vmlinuz, ko, ver))
    found.sort(key=lambda f: [int(x) if x.isdigit() else 0 for x in re.split(r"[.-]", f[2])], reverse=True)
    return found[0] if found else None


def missing(series: str = "6.1") -> str | None:
    """Why a guest cannot start here (the Debian package to install), or None."""
    if shutil.which(QEMU) is None:
        return "needs Debian package qemu-system-x86"
    if not _static_busybox():
        return "needs Debian package busybox-static"
    if find_kernel(series) is None:
        return f"needs a Debian {series} kernel image with modules (linux-image-amd64 on bookworm)"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    return None


def kernel_release(version: str) -> str:
    """'6.1.0-57-amd64' -> the upstream release the package holds is in its version; the major.minor
    is what a generation must contain."""
    m = re.match(r"(\d+\.\d+)", version)
    return m.group(1) if m else version


def _static_busybox() -> bool:
    try:
        out = subprocess.run(["file", "-L", BUSYBOX], capture_output=True, text=True).stdout
    except OSError:
        out = ""
    if out:
        return "statically linked" in out or "static-pie" in out
    # no `file`: busybox-static installs /bin/busybox; the dynamic one is /bin/busybox too, so ask dpkg
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "busybox-static"], capture_output=True, text=True)
    return "install ok installed" in r.stdout


def _cpio(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive (the kernel's initramfs format) of (path, mode, data) entries."""
    out = io.BytesIO()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        nm = name.encode() + b"\0"
        hdr = "070701" + "".join("%08X" % v for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nm), 0))
        out.write(hdr.encode() + nm)
        out.write(b"\0" * (-(110 + len(nm)) % 4))
        out.write(data)
        out.write(b"\0" * (-len(data) % 4))
    return out.getvalue()


INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
insmod /e1000.ko
for m in /mod/*.ko; do [ -e "$m" ] && { insmod "$m" || echo "hostprint: insmod $m rejected"; }; done
for kv in $(sed -n 's/.*hp\\.sysctl=\\([^ ]*\\).*/\\1/p' /proc/cmdline | tr ',' ' '); do
  k=${kv%%=*}; v=${kv#*=}
  echo "$v" | tr ':' ' ' > /proc/sys/$(echo "$k" | tr . /) || echo "hostprint: sysctl $k rejected"
done
addr=$(sed -n 's/.*hp\\.addr=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
ip link set lo up
ip link set eth0 up
ip addr add "$addr" dev eth0
mkdir -p /www
echo ok > /www/index.html
for p in $(sed -n 's/.*hp\\.ports=\\([^ ]*\\).*/\\1/p' /proc/cmdline | tr ',' ' '); do
  httpd -p "$p" -h /www
done
echo "%s $(uname -r)" > /dev/console
while :; do sleep 3600; done
""" % READY


def module_paths(version: str, names: tuple[str, ...]) -> list[str]:
    """The .ko files of `names` (e.g. "sctp", "ip_gre") and everything they depend on, in load
    order, from the guest kernel's modules.dep; crc32c_generic goes before libcrc32c (libcrc32c
    asks the crypto API for "crc32c" at load time, an implicit dependency modules.dep lacks)."""
    base = f"/lib/modules/{version}"
    deps: dict[str, list[str]] = {}
    with open(os.path.join(base, "modules.dep")) as f:
        for line in f:
            mod, _, rest = line.partition(":")
            deps[mod.strip()] = rest.split()
    by_name = {os.path.basename(m).split(".ko")[0].replace("-", "_"): m for m in deps}
    order: list[str] = []

    def add(mod: str) -> None:
        if mod in order:
            return
        for d in deps.get(mod, []):
            add(d)
        if os.path.basename(mod).startswith("libcrc32c") and "crc32c_generic" in by_name:
            add(by_name["crc32c_generic"])
        order.append(mod)

    for n in names:
        key = n.replace("-", "_")
        if key not in by_name:
            raise RuntimeError(f"no module {n} for kernel {version}")
        add(by_name[key])
    return [os.path.join(base, m) for m in order]


def build_initramfs(path: str, e1000_ko: str, modules: list[str] | None = None) -> None:
    """`modules`: .ko files the guest loads after e1000, in this order (module_paths)."""
    with open(BUSYBOX, "rb") as f:
        bb = f.read()
    with open(e1000_ko, "rb") as f:
        ko = f.read()
    d = stat.S_IFDIR | 0o755
    entries = [("bin", d, b""), ("proc", d, b""), ("sys", d, b""), ("dev", d, b""), ("www", d, b""),
               ("bin/busybox", stat.S_IFREG | 0o755, bb), ("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
               ("init", stat.S_IFREG | 0o755, INIT.encode()), ("e1000.ko", stat.S_IFREG | 0o644, ko)]
    if modules:
        entries.append(("mod", d, b""))
        for i, m in enumerate(modules):
            with open(m, "rb") as f:
                entries.append((f"mod/{i:02d}-{os.path.basename(m)}", stat.S_IFREG | 0o644, f.read()))
    with open(path, "wb") as f:
        f.write(gzip.compress(_cpio(entries), 1))


@dataclass
class Guest:
    """A running QEMU guest (see the module docstring)."""

    address: str
    version: str  # the guest kernel's `uname -r`
    pid: int
    proc: subprocess.Popen[Any]
    log: str
    accel: str
    boot_s: float


def start_guest(lab: Any, host: str, address: str, tmpdir: str, *, ports: tuple[int, ...] = (80,),
                sysctls: dict[str, str] | None = None, mac: str = "52:54:00:68:70:01",
                series: str = "6.1", timeout: float = 240.0, modules: tuple[str, ...] = ()) -> Guest:
    """Boot the guest behind lab host `host` (a plain HostSpec without services) with `address`
    (in the lab's /16). The host namespace bridges its eth0 and a tap and keeps no address.
    `modules`: kernel modules the guest loads at boot ("sctp", "ip_gre" …, with their dependencies)."""
    why = missing(series)
    if why:
        raise RuntimeError(why)
    found = find_kernel(series)
    assert found is not None
    vmlinuz, ko, ver = found
    ns = lab.host(host).ns
    initrd = os.path.join(tmpdir, f"initrd-{host}.cpio.gz")
    build_initramfs(initrd, ko, module_paths(ver, modules) if modules else None)
    for argv in (["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"],
                 ["ip", "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0"],
                 ["ip", "addr", "flush", "dev", "eth0"],
                 ["ip", "link", "set", "eth0", "master", "br0"], ["ip", "link", "set", "tap0", "master", "br0"],
                 ["ip", "link", "set", "tap0", "up"], ["ip", "link", "set", "br0", "up"]):
        lab.exec(ns, argv, check=True, capture_output=True)
    sc = ",".join(f"{k}={v.replace(' ', ':').replace(chr(9), ':')}" for k, v in (sysctls or {}).items())
    append = f"console=ttyS0 quiet panic=-1 hp.addr={address}/16 hp.ports={','.join(map(str, ports))}"
    if sc:
        append += f" hp.sysctl={sc}"
    # Software emulation only: /dev/kvm exists on this machine but a KVM guest never starts (nested
    # virtualisation is not offered; measured: no serial output in 20 s), while TCG boots in ~2 s.
    log = os.path.join(tmpdir, f"qemu-{host}.log")
    argv = [QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-m", "256", "-smp", "1",
            "-accel", "tcg",
            "-kernel", vmlinuz, "-initrd", initrd, "-append", append,
            "-serial", f"file:{log}",
            # the only NIC: a tap in the lab namespace (never -nic user, which would reach out)
            "-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no", "-device", f"e1000,netdev=n0,mac={mac}"]
    t0 = time.monotonic()
    errlog = log + ".stderr"
    with open(errlog, "wb") as err:
        p = lab.spawn(ns, argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    deadline = t0 + timeout
    while True:
        text = ""
        if os.path.exists(log):
            with open(log, errors="replace") as f:
                text = f.read()
        m = re.search(READY + r" (\S+)", text)
        if m:
            break
        if p.poll() is not None:
            raise RuntimeError(f"qemu exited {p.returncode}: {_tail(errlog)} {text.strip()[-400:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"guest not ready after {timeout:.0f} s: {text.strip()[-400:]}")
        time.sleep(0.2)
    if "rejected" in text:
        raise RuntimeError(f"guest rejected a sysctl: {text.strip()[-400:]}")
    return Guest(address, m.group(1), p.pid, p, log, "tcg", time.monotonic() - t0)


def _tail(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read().strip()[-400:]
    except OSError:
        return ""


def stop_guest(g: Guest) -> None:
    """Kill QEMU by its PID (the lab's down() would too)."""
    kill_child(g.proc)
