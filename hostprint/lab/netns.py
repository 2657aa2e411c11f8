"""Thin wrappers over iproute2/nft/sysctl inside named namespaces.

We shell out to `ip` rather than speak netlink ourselves: iproute2 is the reference behaviour,
its error messages are what an operator knows, and lab setup is not a hot path.
"""

from __future__ import annotations

import subprocess
from typing import Sequence


class LabError(RuntimeError):
    """Building or driving the lab failed (message says which step and why)."""


def run(argv: Sequence[str], *, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(argv), input=input, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {(r.stderr or r.stdout).strip()}")
    return r


def nsexec(ns: str, argv: Sequence[str], *, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["ip", "netns", "exec", ns, *argv], input=input, check=check)


def ip_batch(ns: str, lines: list[str]) -> None:
    """Many `ip` commands in one process (hundreds of addresses on a benchmark host)."""
    if lines:
        run(["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n")


def add_netns(ns: str) -> None:
    run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])


def add_veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    """Create both ends directly inside their namespaces: no name clash in the root namespace
    (every host's end is called eth0) and nothing ever appears there."""
    run(["ip", "link", "add", name_a, "netns", ns_a, "type", "veth", "peer", name_b, "netns", ns_b])


def sysctl(ns: str, values: dict[str, str]) -> None:
    if values:
        nsexec(ns, ["sysctl", "-q", "-w", *[f"{k}={v}" for k, v in values.items()]])


def nft_load(ns: str, ruleset: str) -> None:
    nsexec(ns, ["nft", "-f", "-"], input=ruleset)


def nft_delete_table(ns: str, family: str, table: str) -> None:
    nsexec(ns, ["nft", "delete", "table", family, table], check=False)


def listening_tcp_ports(ns: str) -> set[int]:
    r = nsexec(ns, ["ss", "-ltnH"], check=False)
    ports: set[int] = set()
    for ln in r.stdout.splitlines():
        f = ln.split()
        if len(f) >= 4:
            _, _, port = f[3].rpartition(":")
            if port.isdigit():
                ports.add(int(port))
    return ports


def link_mac(ns: str, dev: str) -> str:
    r = run(["ip", "-n", ns, "-br", "link", "show", dev], check=False)
    f = r.stdout.split()
    return f[2] if len(f) >= 3 else ""
