"""The IPv6 stack matrix: the stacks the lab can run with IPv6, under the settings that change what
they send over IPv6, each a cell with its truth (-O over IPv6, issue 17). bench/osdetect/run6.py
runs every cell with hostprint and nmap -6 side by side; tests/test_ipv6_lab.py runs a sample.

Cells: this machine's kernel in one dual-stack namespace per setting (TCP sysctls, which Linux
shares between the families; the IPv6 hop limit; the flow label sysctls auto_flowlabels and
flowlabel_reflect; MTU 1280, IPv6's minimum), and gVisor (runsc's netstack speaks IPv6 on the
namespace's address). Addresses 2001:2::100-1ff (2001:2::/48 only, RFC 5180), no default route,
no router advertisements. Every Linux host listens on 80 and 8080 and has 81 closed.

Not here (said in NOTES.md): Debian's 6.1 kernel in QEMU (its initramfs configures IPv4 only),
lwIP (its server binds IPv4), libslirp (slirp4netns offers IPv6 only on fd00::/64, outside the lab
range) and pasta.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from hostprint.lab import HostSpec, Lab, LabSpec
from hostprint.lab.matrix import RMEM_616, Cell, hname, host_version, scanner_runner, set_mtu, start_gvisor_cell
from hostprint.lab.spec import v6_for

HL128 = {f"net.ipv6.conf.{i}.hop_limit": "128" for i in ("all", "default", "eth0")}
HL255 = {f"net.ipv6.conf.{i}.hop_limit": "255" for i in ("all", "default", "eth0")}

#: name -> (sysctls, MTU or None, what the cell says in words)
LINUX6_CELLS: dict[str, tuple[dict[str, str], int | None, str]] = {
    "v6-default": (dict(RMEM_616), None, "defaults (tcp_rmem 4096 131072 33554432, the 6.16+ default)"),
    "v6-rmem-6M": ({"net.ipv4.tcp_rmem": "4096 131072 6291456"}, None, "tcp_rmem 4096 131072 6291456 (4.20-6.15 default)"),
    "v6-ts0": ({"net.ipv4.tcp_timestamps": "0"}, None, "tcp_timestamps=0"),
    "v6-ts2": ({"net.ipv4.tcp_timestamps": "2"}, None, "tcp_timestamps=2"),
    "v6-sack0": ({"net.ipv4.tcp_sack": "0"}, None, "tcp_sack=0"),
    "v6-ws0": ({"net.ipv4.tcp_window_scaling": "0"}, None, "tcp_window_scaling=0"),
    "v6-ecn1": ({"net.ipv4.tcp_ecn": "1"}, None, "tcp_ecn=1"),
    "v6-mtu1280": ({}, 1280, "MTU 1280 (IPv6's minimum)"),
    "v6-hl128": (dict(HL128), None, "IPv6 hop_limit=128"),
    "v6-hl255": (dict(HL255), None, "IPv6 hop_limit=255"),
    "v6-flowlabels0": ({"net.ipv6.auto_flowlabels": "0"}, None, "auto_flowlabels=0 (no flow labels)"),
    "v6-flowreflect": ({"net.ipv6.flowlabel_reflect": "7"}, None, "flowlabel_reflect=7 (reflect into RSTs and echo replies)"),
    "v6-old-style": ({**HL128, "net.ipv4.tcp_timestamps": "0", "net.ipv4.tcp_sack": "0",
                      "net.ipv4.tcp_window_scaling": "0"}, None, "hop limit 128, no timestamps/SACK/window scaling"),
}

KINDS6 = ("linux-ns", "gvisor")


def plan6(linux: list[str] | None = None, kinds: tuple[str, ...] = KINDS6) -> list[Cell]:
    names = list(LINUX6_CELLS) if linux is None else linux
    ver = host_version()
    cells = []
    if "linux-ns" in kinds:
        for i, n in enumerate(names):
            cells.append(Cell(n, "linux-ns", v6_for(f"198.18.0.{100 + i}"), "Linux", LINUX6_CELLS[n][2], ver))
    if "gvisor" in kinds:
        cells.append(Cell("v6-gvisor", "gvisor", v6_for("198.18.0.170"), "gVisor", "runsc, network=sandbox"))
    return cells


def _spec(name: str, cells: list[Cell]) -> LabSpec:
    hosts = []
    for i, c in enumerate(cells):
        if c.kind == "linux-ns":
            v4 = f"198.18.0.{100 + list(LINUX6_CELLS).index(c.name)}"
            hosts.append(HostSpec(name=hname(c), address=v4, address6=c.address,
                                  services=["tcp-listen:80", "tcp-listen:8080"], sysctls=dict(LINUX6_CELLS[c.name][0])))
        elif c.kind == "gvisor":
            hosts.append(HostSpec(name="gv", address="198.18.0.170", address6=c.address))
    return LabSpec(name=name, hosts=hosts, ipv6=True)


@contextmanager
def matrix6_lab(cells: list[Cell], name: str = "mx6") -> Iterator[list[Cell]]:
    """Build every cell; yield them with `run` set (or `skipped`). Tears everything down on every
    exit path (namespaces, runsc)."""
    from hostprint.lab import gvisor

    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="hpt-mx6-"))
        for c in cells:
            if c.kind == "gvisor":
                c.skipped = gvisor.missing()
        lab = stack.enter_context(Lab(_spec(name, [c for c in cells if not c.skipped])))
        in_scanner = scanner_runner(lab)
        for c in cells:
            if c.skipped:
                continue
            c.run = in_scanner
            if c.kind == "linux-ns":
                set_mtu(lab, c, LINUX6_CELLS[c.name][1])
            elif c.kind == "gvisor":
                start_gvisor_cell(stack, lab, c, tmp)
        yield cells
