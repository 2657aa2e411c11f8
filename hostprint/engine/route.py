"""Which interface, source address and next-hop MAC reach a target.

Frames sent through AF_PACKET skip the kernel's routing, so we do the lookup ourselves: the routing
tables are read once (`ip -j route show table main|local`, `ip -6 ...` for IPv6) and matched by
longest prefix, which scales to a /16 of targets where one `ip route get` per target would take
minutes. Policy routing
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
        self.local = _local_nets("-4")  # our own addresses (127/8 included)
        self.addrs: dict[str, list[str]] = {}
        for link in _ip_json("-4", "addr", "show"):
            self.addrs[link["ifname"]] = [a["local"] for a in link.get("addr_info", []) if a.get("family") == "inet"]

    def lookup(self, dst: str) -> Route:
        a = ipaddress.IPv4Address(dst)
        iface, src = _override.get("iface"), _override.get("src")
        src = None if src is not None and ":" in src else src  # an IPv6 -S is RouteTable6's
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
                src = src or r.get("prefsrc") or (addrs[0] if addrs else None)
                if src is None:
                    raise UsageError(f"no IPv4 source address on interface {dev} to reach {dst}")
                return Route(dev, src, r.get("gateway"))
        raise UsageError(f"no route to host {dst}")


def _local_nets(family: str) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
    """The kernel's local table for -4 or -6: our own addresses, and the device each is on."""
    out: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
    for r in _ip_json(family, "route", "show", "table", "local"):
        if r.get("type") == "local":
            try:
                out.append((ipaddress.ip_network(r.get("dst", ""), strict=False), r.get("dev", "lo")))
            except ValueError:
                continue
    return out


#: -e IFACE / -S ADDR for the whole run (set by the command before any lookup)
_override: dict[str, str | None] = {"iface": None, "src": None}


def set_override(iface: str | None = None, src: str | None = None) -> None:
    """nmap's -e and -S: every lookup leaves by `iface` and/or from `src`."""
    _override["iface"], _override["src"] = iface, src


@lru_cache(maxsize=1)
def table() -> RouteTable:
    return RouteTable()


def _common_prefix(a: ipaddress.IPv6Address, b: ipaddress.IPv6Address) -> int:
    return 128 - (int(a) ^ int(b)).bit_length()


class RouteTable6:
    """The IPv6 counterpart of RouteTable (same longest-prefix idea, `ip -6 -j`).

    Differences that matter: link-local destinations (fe80::/10) are on every interface, so they
    need a zone (`fe80::1%eth0`) or the first interface with a link-local route wins; the source
    address follows RFC 6724 in its two rules that decide on a scanner (same scope as the
    destination, then the longest common prefix), skipping tentative and deprecated addresses,
    which the kernel would not use either."""

    def __init__(self) -> None:
        self.routes: list[tuple[ipaddress.IPv6Network, int, dict]] = []
        for r in _ip_json("-6", "route", "show", "table", "main"):
            dst = r.get("dst", "")
            try:
                net = ipaddress.IPv6Network("::/0" if dst == "default" else dst, strict=False)
            except ValueError:
                continue
            if r.get("type", "unicast") not in ("unicast",):
                continue  # unreachable / prohibit / blackhole routes carry no device to send on
            if "dev" not in r and r.get("nexthops"):
                hop = r["nexthops"][0]
                r = {**r, "dev": hop.get("dev"), "gateway": hop.get("gateway")}
            if not r.get("dev"):
                continue
            self.routes.append((net, int(r.get("metric", 0)), r))
        self.routes.sort(key=lambda x: (-x[0].prefixlen, x[1]))
        self.local = _local_nets("-6")
        self.addrs: dict[str, list[str]] = {}
        for link in _ip_json("-6", "addr", "show"):
            self.addrs[link["ifname"]] = [
                a["local"] for a in link.get("addr_info", [])
                if a.get("family") == "inet6" and not a.get("tentative") and not a.get("dadfailed")
                and a.get("preferred_life_time", 1) != 0]

    def source(self, iface: str, dst: ipaddress.IPv6Address) -> str | None:
        cands = [ipaddress.IPv6Address(a) for a in self.addrs.get(iface, [])]
        if not cands:
            return None
        link_local = dst.is_link_local
        same_scope = [a for a in cands if a.is_link_local == link_local] or cands
        return str(max(same_scope, key=lambda a: _common_prefix(a, dst)))

    def lookup(self, dst: str) -> Route:
        addr, _, zone = dst.partition("%")
        a = ipaddress.IPv6Address(addr)
        iface, src = _override.get("iface"), _override.get("src")
        src = src if src is not None and ":" in src else None
        if iface is not None:  # -e: this interface; its routes' gateway, else on-link
            r = next((r for net, _m, r in self.routes if a in net and r.get("dev") == iface), None)
            s = src or (r.get("prefsrc") if r else None) or self.source(iface, a)
            if s is None:
                raise UsageError(f"no IPv6 source address on interface {iface} (-e); give one with -S")
            return Route(iface, s, r.get("gateway") if r else None)
        if any(a in net for net, _ in self.local):
            return Route("lo", addr, None, local=True)
        for net, _, r in self.routes:
            if a in net and (not zone or r["dev"] == zone):
                dev = r["dev"]
                src = src or r.get("prefsrc") or self.source(dev, a)
                if src is None:
                    raise UsageError(f"no usable IPv6 source address on interface {dev} to reach {dst}")
                return Route(dev, src, r.get("gateway"))
        raise UsageError(f"no route to host {dst}")


@lru_cache(maxsize=1)
def table6() -> RouteTable6:
    return RouteTable6()


def lookup_any(dst: str) -> Route:
    """The route to an address of either family."""
    return table6().lookup(dst) if ":" in dst else table().lookup(dst)


def neighbours6(iface: str) -> dict[str, str]:
    """The kernel's IPv6 neighbour cache for `iface`: address -> MAC (entries with an address)."""
    out = {}
    for n in _ip_json("-6", "neigh", "show", "dev", iface):
        if n.get("lladdr") and "FAILED" not in n.get("state", []) and "INCOMPLETE" not in n.get("state", []):
            out[str(ipaddress.IPv6Address(n["dst"]))] = n["lladdr"]
    return out


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
