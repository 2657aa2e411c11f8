"""Which interface, source address and next-hop MAC reach a target.

Frames sent through AF_PACKET skip the kernel's routing, so we do the lookup ourselves: the routing
tables are read once (`ip -j route show table main|local`) and matched by longest prefix, which
scales to a /16 of targets where one `ip route get` per target would take minutes. Policy routing
(ip rules) is not modelled; where it matters the raw-IP send path lets the kernel route.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass
from functools import lru_cache

from hostprint.errors import UsageError


@dataclass(frozen=True)
class Route:
    iface: str
    src: str
    gateway: str | None  # None: the target is on-link
    local: bool = False  # the target is one of our own addresses (loopback path)


def _ip_json(*args: str) -> list[dict]:
    try:
        out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise UsageError(f"cannot read routing information (ip {' '.join(args)}): {e}") from None
    return json.loads(out or "[]")


class RouteTable:
    def __init__(self) -> None:
        self.routes: list[tuple[ipaddress.IPv4Network, dict]] = []
        for r in _ip_json("-4", "route", "show", "table", "main"):
            dst = r.get("dst", "")
            net = ipaddress.IPv4Network("0.0.0.0/0" if dst == "default" else dst, strict=False)
            self.routes.append((net, r))
        self.routes.sort(key=lambda x: -x[0].prefixlen)
        self.local: list[tuple[ipaddress.IPv4Network, str]] = []  # our own addresses (127/8 included)
        for r in _ip_json("-4", "route", "show", "table", "local"):
            if r.get("type") == "local":
                try:
                    self.local.append((ipaddress.IPv4Network(r.get("dst", ""), strict=False), r.get("dev", "lo")))
                except ValueError:
                    continue
        self.addrs: dict[str, list[str]] = {}
        for link in _ip_json("-4", "addr", "show"):
            self.addrs[link["ifname"]] = [a["local"] for a in link.get("addr_info", []) if a.get("family") == "inet"]

    def lookup(self, dst: str) -> Route:
        a = ipaddress.IPv4Address(dst)
        iface, src = _override.get("iface"), _override.get("src")
        if iface is not None:  # -e: this interface; its routes' gateway, else on-link
            r = next((r for net, r in self.routes if a in net and r.get("dev") == iface), None)
            addrs = self.addrs.get(iface) or []
            s = src or (r.get("prefsrc") if r else None) or (addrs[0] if addrs else None)
            if s is None:
                raise UsageError(f"no IPv4 source address on interface {iface} (-e); give one with -S")
            return Route(iface, s, r.get("gateway") if r else None)
        if any(a in net for net, _ in self.local):
            return Route("lo", dst, None, local=True)
        for net, r in self.routes:
            if a in net:
                dev = r["dev"]
                addrs = self.addrs.get(dev) or []
                src = _override.get("src") or r.get("prefsrc") or (addrs[0] if addrs else None)
                if src is None:
                    raise UsageError(f"no IPv4 source address on interface {dev} to reach {dst}")
                return Route(dev, src, r.get("gateway"))
        raise UsageError(f"no route to host {dst}")


#: -e IFACE / -S ADDR for the whole run (set by the command before any lookup)
_override: dict[str, str | None] = {"iface": None, "src": None}


def set_override(iface: str | None = None, src: str | None = None) -> None:
    """nmap's -e and -S: every lookup leaves by `iface` and/or from `src`."""
    _override["iface"], _override["src"] = iface, src


@lru_cache(maxsize=1)
def table() -> RouteTable:
    return RouteTable()


def neighbours(iface: str) -> dict[str, str]:
    """The kernel's neighbour cache for `iface`: IPv4 address -> MAC (reachable or stale entries)."""
    out = {}
    for n in _ip_json("-4", "neigh", "show", "dev", iface):
        if n.get("lladdr") and "FAILED" not in n.get("state", []) and "INCOMPLETE" not in n.get("state", []):
            out[n["dst"]] = n["lladdr"]
    return out


def iface_mac(iface: str) -> str:
    try:
        with open(f"/sys/class/net/{iface}/address") as f:
            return f.read().strip()
    except OSError:
        raise UsageError(f"no such interface: {iface}") from None


def local_port_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = f.read().split()
            return int(lo), int(hi)
    except OSError:
        return 32768, 60999


def probe_port_range(size: int = 4096) -> tuple[int, int]:
    """A source-port block for crafted probes outside the kernel's ephemeral range, so the RST
    guard never touches the user's own connections."""
    lo, hi = local_port_range()
    if hi + size <= 65535:
        return 65536 - size, 65535
    if lo - size >= 1024:
        return lo - size, lo - 1
    return 65536 - size, 65535
