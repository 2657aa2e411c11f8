"""The stack matrix: every stack class the lab can run, under the settings that change what a stack
sends, each a cell with its truth. The OS-detection benchmark (bench/osdetect/run.py) runs every
cell with hostprint and nmap side by side; tests/test_stack_matrix.py runs a sample.

Cells:
- Linux sysctl variants of this machine's kernel, one namespace each: tcp_rmem/tcp_wmem (the
  defaults of 6.16+, 4.20-6.15 and older kernels per Documentation/networking/ip-sysctl.rst, and a
  common tuning), MTU 1280/1500/9000, tcp_timestamps 0/1/2, tcp_sack 0, tcp_window_scaling 0,
  tcp_ecn 0/1/2, tcp_syncookies 2, ip_default_ttl 128/255;
- Debian's 6.1 kernel in QEMU (hostprint/lab/qemu.py), defaults;
- lwIP 2.1 (Debian liblwip) with its packaged lwipopts, and with a 576-byte netif MTU;
- gVisor (runsc), an iptables SYNPROXY in front of a Linux host, libslirp and pasta
  (hostprint/lab/usernet.py: the scanner sits behind the relay).

Every Linux host listens on 80 and 8080 (two open ports: the port-TTL architecture check sees
something) and has 81 closed. Addresses 198.18.0.100-199 and 198.19.0.100-199 (behind the router).
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from hostprint.lab import HostSpec, Lab, LabSpec

RMEM_616 = {"net.ipv4.tcp_rmem": "4096 131072 33554432", "net.ipv4.tcp_wmem": "4096 16384 4194304"}

#: name -> (sysctls, MTU or None, what the cell says in words)
LINUX_CELLS: dict[str, tuple[dict[str, str], int | None, str]] = {
    "rmem-32M": (dict(RMEM_616), None, "tcp_rmem 4096 131072 33554432 (6.16+ default)"),
    "rmem-6M": ({"net.ipv4.tcp_rmem": "4096 131072 6291456", "net.ipv4.tcp_wmem": "4096 16384 4194304"}, None,
                "tcp_rmem 4096 131072 6291456 (4.20-6.15 default)"),
    "rmem-87380": ({"net.ipv4.tcp_rmem": "4096 87380 6291456", "net.ipv4.tcp_wmem": "4096 16384 4194304"}, None,
                   "tcp_rmem 4096 87380 6291456 (pre-4.20 default)"),
    "rmem-16M": ({"net.ipv4.tcp_rmem": "4096 87380 16777216", "net.ipv4.tcp_wmem": "4096 65536 16777216"}, None,
                 "tcp_rmem 4096 87380 16777216, tcp_wmem 4096 65536 16777216 (a common tuning)"),
    "mtu1280": ({}, 1280, "MTU 1280"),
    "mtu9000": ({}, 9000, "MTU 9000"),
    "ts0": ({"net.ipv4.tcp_timestamps": "0"}, None, "tcp_timestamps=0"),
    "ts2": ({"net.ipv4.tcp_timestamps": "2"}, None, "tcp_timestamps=2"),
    "sack0": ({"net.ipv4.tcp_sack": "0"}, None, "tcp_sack=0"),
    "ws0": ({"net.ipv4.tcp_window_scaling": "0"}, None, "tcp_window_scaling=0"),
    "ecn0": ({"net.ipv4.tcp_ecn": "0"}, None, "tcp_ecn=0"),
    "ecn1": ({"net.ipv4.tcp_ecn": "1"}, None, "tcp_ecn=1"),
    "cookies2": ({"net.ipv4.tcp_syncookies": "2"}, None, "tcp_syncookies=2"),
    "ttl128": ({"net.ipv4.ip_default_ttl": "128"}, None, "ip_default_ttl=128"),
    "ttl255": ({"net.ipv4.ip_default_ttl": "255"}, None, "ip_default_ttl=255"),
    "old-style": ({"net.ipv4.ip_default_ttl": "128", "net.ipv4.tcp_timestamps": "0", "net.ipv4.tcp_sack": "0",
                   "net.ipv4.tcp_window_scaling": "0"}, None, "TTL 128, no timestamps/SACK/window scaling"),
}


@dataclass
class Cell:
    name: str
    kind: str  # linux-ns | qemu | lwip | gvisor | synproxy | slirp4netns | pasta
    address: str
    family: str  # the family a right answer names
    setting: str
    version: str | None = None  # Linux: the kernel's major.minor; a right generation contains its major
    ports: str = "80,8080,81"
    #: runs argv where the scanner sits for this cell (the lab's scanner namespace or a relay's inner one)
    run: Callable[..., subprocess.CompletedProcess[Any]] | None = field(default=None, repr=False)
    skipped: str | None = None  # why the cell could not run here


def hname(cell: Cell) -> str:
    """The lab host name of a Linux namespace cell."""
    return re.sub(r"[^a-z0-9_]", "_", cell.name.lower())


def host_version() -> str:
    m = re.match(r"(\d+\.\d+)", platform.release())
    return m.group(1) if m else platform.release()


KINDS = ("linux-ns", "qemu", "lwip", "gvisor", "synproxy", "slirp4netns", "pasta", "lb")
FAMILY = {"linux-ns": "Linux", "qemu": "Linux", "lwip": "lwIP", "gvisor": "gVisor", "synproxy": "netfilter SYNPROXY",
          "slirp4netns": "libslirp", "pasta": "pasta", "lb": "Linux"}
LB_NFT = ("table ip hplb {\n chain pre {\n  type nat hook prerouting priority -100;\n"
          "  ip daddr 198.18.0.199 tcp dport 80 dnat to numgen inc mod 2 map { 0 : 198.19.0.191, 1 : 198.19.0.192 }\n"
          " }\n}\n")


def plan(linux: list[str] | None = None, kinds: tuple[str, ...] = KINDS) -> list[Cell]:
    """The cells to run (all by default): Linux sysctl cells by name, other stacks by kind."""
    names = list(LINUX_CELLS) if linux is None else linux
    cells = []
    ver = host_version()
    if "linux-ns" in kinds:
        for i, n in enumerate(names):
            cells.append(Cell(n, "linux-ns", f"198.18.0.{100 + i}", "Linux", LINUX_CELLS[n][2], ver))
    if "qemu" in kinds:
        cells.append(Cell("debian-6.1-qemu", "qemu", "198.18.0.151", "Linux", "Debian 6.1 kernel in QEMU, defaults", "6.1"))
    if "lwip" in kinds:
        cells.append(Cell("lwip", "lwip", "198.18.0.160", "lwIP", "Debian liblwip 2.1 lwipopts", ports="80,81"))
        cells.append(Cell("lwip-mtu576", "lwip", "198.18.0.162", "lwIP", "Debian liblwip 2.1, netif MTU 576", ports="80,81"))
    if "gvisor" in kinds:
        cells.append(Cell("gvisor", "gvisor", "198.18.0.170", "gVisor", "runsc, network=sandbox"))
    if "synproxy" in kinds:
        cells.append(Cell("synproxy", "synproxy", "198.19.0.180", "netfilter SYNPROXY",
                          "iptables SYNPROXY router, Linux host behind", ports="80,81"))
    if "lb" in kinds:  # not one host: graded on the architecture finding (two backends behind one address)
        cells.append(Cell("load-balancer", "lb", "198.18.0.199", "Linux",
                          "nft DNAT round robin to 2 Linux backends (one with tcp_timestamps=0)", ver, ports="80,81"))
    for k, sub in (("slirp4netns", 60), ("pasta", 62)):
        if k in kinds:
            cells.append(Cell(k, k, f"198.18.{sub}.1", FAMILY[k], f"{k}, scanner behind the relay", ports="80,81"))
    return cells


def _lab_spec(name: str, cells: list[Cell]) -> LabSpec:
    hosts: list[HostSpec] = []
    for c in cells:
        if c.kind == "linux-ns":
            hosts.append(HostSpec(name=hname(c), address=c.address,
                                  services=["tcp-listen:80", "tcp-listen:8080"], sysctls=dict(LINUX_CELLS[c.name][0])))
        elif c.kind == "qemu":
            hosts.append(HostSpec(name="vmh", address="198.18.0.150"))
        elif c.kind == "lwip":
            n = c.address.rsplit(".", 1)[1]
            hosts.append(HostSpec(name=f"lwh{n}", address=f"198.18.0.{int(n) + 1}",
                                  sysctls={"net.ipv4.ip_forward": "1", "net.ipv4.conf.eth0.proxy_arp": "1"}))
        elif c.kind == "gvisor":
            hosts.append(HostSpec(name="gv", address=c.address))
        elif c.kind == "synproxy":
            hosts.append(HostSpec(name="sp", address=c.address, segment=2, services=["tcp-listen:80"]))
        elif c.kind == "lb":
            hosts.append(HostSpec(name="be1", address="198.19.0.191", segment=2, services=["tcp-listen:80"]))
            hosts.append(HostSpec(name="be2", address="198.19.0.192", segment=2, services=["tcp-listen:80"],
                                  sysctls={"net.ipv4.tcp_timestamps": "0"}))
    if any(h.segment == 2 for h in hosts):
        hosts.append(HostSpec(name="rtr", address="198.18.0.199", router=True))
    return LabSpec(name=name, hosts=hosts)


@contextmanager
def matrix_lab(cells: list[Cell], name: str = "mx") -> Iterator[list[Cell]]:
    """Build every cell; yield them with `run` set (or `skipped` with the reason). Tears everything
    down on every exit path (namespaces, QEMU, runsc, relays)."""
    from hostprint.lab import gvisor, qemu
    from hostprint.lab.stacks import build_lwip, start_lwip, start_synproxy
    from hostprint.lab.usernet import binary, usernet

    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="hpt-mx-"))
        in_lab = [c for c in cells if c.kind not in ("slirp4netns", "pasta")]
        for c in cells:
            if c.kind == "qemu":
                c.skipped = qemu.missing("6.1")
            elif c.kind == "gvisor":
                c.skipped = gvisor.missing()
        lab = stack.enter_context(Lab(_lab_spec(name, [c for c in in_lab if not c.skipped])))
        in_scanner = scanner_runner(lab)
        lwip_bin = build_lwip(tmp) if any(c.kind == "lwip" for c in cells) else None
        for c in in_lab:
            if c.skipped:
                continue
            c.run = in_scanner
            if c.kind == "linux-ns":
                set_mtu(lab, c, LINUX_CELLS[c.name][1])
            elif c.kind == "qemu":
                try:
                    g = qemu.start_guest(lab, "vmh", c.address, tmp, ports=(80, 8080))
                except RuntimeError as e:
                    c.skipped, c.run = f"QEMU guest did not start: {e}", None
                    continue
                stack.callback(qemu.stop_guest, g)
                c.version = qemu.kernel_release(g.version)
                c.setting = f"Debian {g.version} in QEMU ({g.accel}, booted in {g.boot_s:.0f} s), defaults"
            elif c.kind == "lwip":
                if not lwip_bin:
                    c.skipped, c.run = "needs Debian liblwip-dev and a C compiler", None
                    continue
                n = c.address.rsplit(".", 1)[1]
                start_lwip(lab, lwip_bin, f"lwh{n}", c.address, mtu=576 if "mtu576" in c.name else None)
            elif c.kind == "gvisor":
                start_gvisor_cell(stack, lab, c, tmp)
            elif c.kind == "synproxy":
                start_synproxy(lab, "rtr", dest=c.address)
            elif c.kind == "lb":
                lab.exec("rtr", ["nft", "-f", "-"], check=True, text=True, input=LB_NFT)
        for i, c in enumerate(c for c in cells if c.kind in ("slirp4netns", "pasta")):
            if binary(c.kind) is None:
                c.skipped = f"needs Debian package {'slirp4netns' if c.kind == 'slirp4netns' else 'passt'}"
                continue
            u = stack.enter_context(usernet(c.kind, f"{name}r{i}{os.getpid() % 1000}", int(c.address.split(".")[2])))
            c.address = u.server_addr
            c.run = _relay_runner(u)
        yield cells


def scanner_runner(lab: Lab) -> Callable[..., subprocess.CompletedProcess[Any]]:
    """A cell's `run` when the scanner sits in the lab's scanner namespace."""
    def in_scanner(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        return lab.exec(lab.scanner_ns, argv, capture_output=True, text=True, **kw)
    return in_scanner


def set_mtu(lab: Lab, c: Cell, mtu: int | None) -> None:
    """A Linux cell's MTU, when its setting names one."""
    if mtu:
        lab.exec(hname(c), ["ip", "link", "set", "eth0", "mtu", str(mtu)], check=True, capture_output=True)


def start_gvisor_cell(stack: ExitStack, lab: Lab, c: Cell, tmp: str) -> None:
    """runsc in the lab host "gv", stopped when `stack` closes; when it does not start the cell is
    skipped with the reason."""
    from hostprint.lab import gvisor

    try:
        sb = gvisor.start_gvisor(lab, "gv", tmp, ports=(80, 8080))
    except RuntimeError as e:
        c.skipped, c.run = f"runsc did not start: {e}", None
        return
    stack.callback(gvisor.stop_gvisor, sb)
    c.setting = f"runsc {gvisor.version()}, network=sandbox"


def _relay_runner(u: Any) -> Callable[..., subprocess.CompletedProcess[Any]]:
    def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        return u.exec(argv, capture_output=True, text=True, **kw)  # type: ignore[no-any-return]
    return run


# ---------------------------------------------------------------------------------------- grading

def majors(generation: str) -> list[int]:
    """The major versions a generation text names: '4.x-6.x' -> [4, 6], 'Linux 5.0 - 5.4' -> [5, 5]."""
    return [int(x) for x in re.findall(r"(?<![\d.])(\d+)\.(?:x|X|\d+)", generation)]


def family_right(cell: Cell, family: str | None, name: str) -> bool:
    want = cell.family.lower()
    text = f"{family or ''} {name}".lower()
    if cell.kind == "slirp4netns":
        return bool(re.search(r"slirp|qemu user mode", text))
    if cell.kind == "pasta":
        return bool(re.search(r"pasta|passt", text))
    if cell.kind == "synproxy":
        return "synproxy" in text
    return want in text


def right(cell: Cell, family: str | None, generation: str | None, name: str) -> bool:
    """Family right and, for Linux, a generation range that contains the kernel's major version."""
    if not family_right(cell, family, name):
        return False
    if cell.family != "Linux" or not cell.version:
        return True
    ms = majors(generation or name)
    major = int(cell.version.split(".")[0])
    return bool(ms) and min(ms) <= major <= max(ms)
