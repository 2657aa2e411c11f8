"""What a lab looks like, as plain data: tests and the demo describe hosts, `Lab` builds them.

Kept apart from the building code so a spec can be validated (names, addresses, services) before
anything touches the kernel: a typo must become a UsageError, not half a lab.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from hostprint.errors import UsageError

#: Every lab address lives here (rule: 198.18.0.0/15 only). Segment 1 is flat L2.
SEGMENT1 = ipaddress.ip_network("198.18.0.0/16")
#: Behind the optional router.
SEGMENT2 = ipaddress.ip_network("198.19.0.0/16")
SCANNER_ADDR = "198.18.0.1"
#: IPv6 lab addresses (rule: 2001:2::/48 only, RFC 5180, the IPv6 benchmarking range): segment 1
#: is 2001:2::/64, segment 2 (behind the router) 2001:2:0:1::/64.
LAB_V6 = ipaddress.ip_network("2001:2::/48")
SEGMENT1_V6 = ipaddress.ip_network("2001:2::/64")
SEGMENT2_V6 = ipaddress.ip_network("2001:2:0:1::/64")
SCANNER_ADDR6 = "2001:2::1"


def v6_for(address: str) -> str:
    """A host's IPv6 lab address from its IPv4 one, so the two read alike: 198.18.0.10 ->
    2001:2::10, 198.18.1.5 -> 2001:2::1:5, 198.19.0.191 -> 2001:2:0:1::191 (the last two
    octets written as they read, as hex groups)."""
    o = ipaddress.IPv4Address(address).packed
    net = SEGMENT2_V6 if ipaddress.IPv4Address(address) in SEGMENT2 else SEGMENT1_V6
    return str(ipaddress.IPv6Address(int(net.network_address) | int(str(o[2]), 16) << 16 | int(str(o[3]), 16)))

# No '-' in names: namespace names are hpl-<lab>-<host>, so a dash would make the prefix used by
# stale cleanup ambiguous (lab "a" vs lab "a-b").
_LAB_NAME = re.compile(r"^[a-z0-9]{1,12}$")
_HOST_NAME = re.compile(r"^[a-z][a-z0-9_]{0,19}$")
RESERVED_HOST_NAMES = {"scan", "sw"}


@dataclass
class HostSpec:
    """One simulated machine: a network namespace with its own kernel stack settings and daemons."""

    name: str
    address: str
    services: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    #: nft rule lines put in the input chain of `table inet hostprint_fw` in the host namespace.
    firewall: str | list[str] = ""
    #: nft rule lines for the output chain of the same table.
    firewall_output: str | list[str] = ""
    #: Drop everything addressed to the host (ARP still answered: ARP is not in the inet family).
    silent: bool = False
    extra_addresses: list[str] = field(default_factory=list)
    #: Put a userspace delay relay namespace between this host and the bridge (see delayrelay.py).
    delay_relay: bool = False
    #: Forward between segment 1 (address) and segment 2 (router_address2).
    router: bool = False
    router_address2: str = "198.19.0.1"
    #: 1 = on the scanner's bridge; 2 = behind the router.
    segment: int = 1
    #: Fixed MAC (locally administered by default, derived from the host index) for repeatable runs.
    mac: str | None = None
    #: IPv6 address (2001:2::/48); in a dual-stack lab (LabSpec.ipv6) derived from `address` when
    #: not given. extra_addresses may hold IPv6 addresses too.
    address6: str | None = None

    def firewall_lines(self) -> list[str]:
        return _lines(self.firewall)

    def firewall_output_lines(self) -> list[str]:
        return _lines(self.firewall_output)


@dataclass
class LabSpec:
    name: str
    hosts: list[HostSpec] = field(default_factory=list)
    #: Dual stack: the scanner and every host get an IPv6 address too (v6_for their IPv4 one unless
    #: given), daemons listen on both families, no router advertisements, no default route.
    ipv6: bool = False

    def v6(self, h: HostSpec) -> str | None:
        """The host's IPv6 address (None: IPv4 only)."""
        if h.address6:
            return h.address6
        return v6_for(h.address) if self.ipv6 else None

    def v6_router2(self, h: HostSpec) -> str:
        return v6_for(h.router_address2)

    def validate(self) -> None:
        """Raise UsageError naming the first bad token; called by Lab before any kernel change."""
        from hostprint.lab.services import parse_service

        if not _LAB_NAME.match(self.name):
            raise UsageError(f"bad lab name {self.name!r}: use 1-12 of [a-z0-9]")
        seen_names: set[str] = set()
        seen_addrs: set[str] = {SCANNER_ADDR}
        routers = [h for h in self.hosts if h.router]
        if len(routers) > 1:
            raise UsageError(f"more than one router host: {', '.join(h.name for h in routers)}")
        for h in self.hosts:
            if not _HOST_NAME.match(h.name) or h.name in RESERVED_HOST_NAMES:
                raise UsageError(f"bad host name {h.name!r}: use [a-z][a-z0-9_]{{0,19}}, not scan/sw")
            if h.name in seen_names:
                raise UsageError(f"duplicate host name {h.name!r}")
            seen_names.add(h.name)
            if h.segment not in (1, 2):
                raise UsageError(f"host {h.name}: bad segment {h.segment!r} (1 or 2)")
            if h.segment == 2 and not routers:
                raise UsageError(f"host {h.name}: segment 2 needs a host with router=True")
            if h.router and h.segment != 1:
                raise UsageError(f"host {h.name}: a router sits on segment 1")
            net = SEGMENT1 if h.segment == 1 else SEGMENT2
            addrs = [h.address, *h.extra_addresses]
            if h.router:
                addrs.append(h.router_address2)
            v6 = self.v6(h)
            if v6 is not None:
                addrs.append(v6)
                if h.router:
                    addrs.append(self.v6_router2(h))
            for a in addrs:
                try:
                    ip = ipaddress.ip_address(a)
                except ValueError:
                    raise UsageError(f"host {h.name}: bad address {a!r}") from None
                if ip.version == 6:
                    net6 = SEGMENT2_V6 if (h.segment == 2 or (h.router and a == self.v6_router2(h))) else SEGMENT1_V6
                    if ip not in net6 or ip == net6.network_address or a == SCANNER_ADDR6:
                        raise UsageError(f"host {h.name}: address {a} is not a host address in {net6}")
                    if a in seen_addrs:
                        raise UsageError(f"host {h.name}: address {a} used twice")
                    seen_addrs.add(a)
                    continue
                want = SEGMENT2 if (h.router and a == h.router_address2) else net
                if ip not in want or ip == want.network_address or ip == want.broadcast_address:
                    raise UsageError(f"host {h.name}: address {a} is not a host address in {want}")
                if a in seen_addrs:
                    raise UsageError(f"host {h.name}: address {a} used twice")
                seen_addrs.add(a)
            ports: set[int] = set()
            for s in h.services:
                _kind, port = parse_service(s)
                if port in ports:
                    raise UsageError(f"host {h.name}: port {port} used twice in {s!r}")
                ports.add(port)
            for k in h.sysctls:
                if not re.match(r"^net\.[a-z0-9_.]+$", k):
                    raise UsageError(f"host {h.name}: sysctl {k!r} is not a net.* key")
            if h.mac is not None and not re.match(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$", h.mac):
                raise UsageError(f"host {h.name}: bad mac {h.mac!r}")
            if h.router and h.delay_relay:
                raise UsageError(f"host {h.name}: delay_relay on a router is not supported")

    def host(self, name: str) -> HostSpec:
        for h in self.hosts:
            if h.name == name:
                return h
        raise UsageError(f"no host {name!r} in lab {self.name}")


def _lines(v: str | list[str]) -> list[str]:
    if isinstance(v, str):
        v = v.splitlines()
    return [ln.strip() for ln in v if ln.strip()]


def demo_spec(name: str = "demo") -> LabSpec:
    """Four hosts whose differences a scanner should notice: stack personality, filtering, silence.

    db's sysctls mimic a stack with TTL 128 and no TCP options beyond MSS (what an old Windows-like
    or embedded stack sends); fw answers TCP on a few ports but drops a port range and ICMP echo,
    so host discovery by ping fails while a TCP probe finds it; silent answers nothing (only ARP);
    ns is the lab's DNS server (names and PTR records of every host).

    Dual stack (issue 17): every host also has 2001:2::<last octets> (web 2001:2::10 ...), its
    daemons listen on both families, fw drops ICMPv6 echo as it drops ICMP echo, silent answers
    only Neighbor Discovery.
    """
    return LabSpec(
        name=name,
        ipv6=True,
        hosts=[
            HostSpec(name="web", address="198.18.0.10", services=["nginx:80", "ssh:22"]),
            HostSpec(
                name="db",
                address="198.18.0.20",
                services=["redis:6379", "ftp:21"],
                sysctls={
                    "net.ipv4.ip_default_ttl": "128",
                    "net.ipv4.tcp_timestamps": "0",
                    "net.ipv4.tcp_sack": "0",
                    "net.ipv4.tcp_window_scaling": "0",
                },
            ),
            HostSpec(
                name="fw",
                address="198.18.0.30",
                services=["ssh:2222", "nginx:8080"],
                firewall=["tcp dport 1000-1099 drop", "icmp type echo-request drop", "icmpv6 type echo-request drop"],
            ),
            HostSpec(name="silent", address="198.18.0.40", silent=True),
            # the lab's DNS server: A and PTR records for every host (<host>.<lab>.hostprint.test),
            # the scanner namespace's resolver (reverse DNS never leaves the lab)
            HostSpec(name="ns", address="198.18.0.53", services=["dns:53"]),
        ],
    )
