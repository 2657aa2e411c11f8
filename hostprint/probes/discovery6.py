"""The IPv6 probes of host discovery (probes/discovery.py): frames per method, Neighbor Discovery
in place of ARP, and the all-nodes echo in place of the broadcast echo.

- echo: ICMPv6 echo request (RFC 4443 §4.1), id/seq the keyed cookie of the target, as for IPv4.
- ND (-PR, and the MAC every other on-link probe needs): a Neighbor Solicitation to the target's
  solicited-node group (RFC 4861 §7.2.2), answered by a Neighbor Advertisement that must carry hop
  limit 255 and name the target (§7.1.2: nothing routed can forge it); reason nd-response as in nmap.
- syn / ack / udp sweeps: the IPv4 probes over an IPv6 header, same cookies (over the address's
  keyed fold, engine/replies.addr_key).
- all-nodes echo: one echo request to ff02::1 per link that has on-link IPv6 targets; every node of
  the link answers from its own address (Linux: net.ipv6.icmp.echo_ignore_multicast = 0 by
  default), so the answers name the hosts of a /64 that could never be swept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hostprint.engine import ndp
from hostprint.engine import packets as P
from hostprint.engine.frames import build_frame6
from hostprint.engine.icmpv6 import ECHO_REPLY, NEIGHBOR_ADVERT, OPT_TARGET_LLADDR, echo_request
from hostprint.engine.ipv6 import IPPROTO_ICMPV6, IPv6, ip6_bytes, ip6_str
from hostprint.engine.link import Link
from hostprint.engine.rate import Pacer
from hostprint.engine.replies import Reply, Want, addr_key

if TYPE_CHECKING:
    from hostprint.engine import route
    from hostprint.probes.discovery import Discovery, MethodSpec

__all__ = ["ECHO_REPLY", "IPPROTO_ICMPV6", "ND_REASON", "MULTICAST_REASON", "frames", "ns_frame", "na_want",
           "send_all_nodes"]

ND_REASON = "nd-response"  # nmap's word for a host seen by Neighbor Discovery
MULTICAST_REASON = "multicast-echo-reply"  # answered the all-nodes echo (ff02::1)
ALL_NODES = ip6_bytes("ff02::1")
HOP_LIMIT = 64


def _ip(link: Link, addr: str, proto: int) -> IPv6:
    return IPv6(ip6_bytes(link.source_for(addr)), ip6_bytes(addr.partition("%")[0]), proto, HOP_LIMIT)


def frames(d: Discovery, link: Link, addr: str, mac: bytes, m: MethodSpec) -> list[bytes]:
    """The probe of method `m` to an IPv6 target (none for timestamp and mask: IPv4 only)."""
    SALT = d.salts
    eth = link.eth(mac, P.ETH_P_IPV6)
    dst = ip6_bytes(addr.partition("%")[0])
    key = addr_key(d.cookie, dst)
    if m.name == "echo":
        i, s = d._icmp_ident(addr, "echo")
        return [build_frame6(eth, _ip(link, addr, IPPROTO_ICMPV6), echo_request(i, s))]
    if m.name in ("syn", "ack"):
        ipid = d.cookie(key, m.port, 0, 99) & 0xFFFF
        sport = d.sport_lo + (ipid % (d.sport_hi - d.sport_lo + 1))
        c = d.cookie(key, m.port, sport, SALT[m.name])
        if m.name == "syn":
            tcp = P.TCP(sport, m.port, c, 0, P.SYN, 1024, options=[(P.OPT_MSS, 1440)])
        else:
            tcp = P.TCP(sport, m.port, 0, c, P.ACK, 1024)
        return [build_frame6(eth, _ip(link, addr, P.IPPROTO_TCP), tcp)]
    if m.name == "udp":
        return [build_frame6(eth, _ip(link, addr, P.IPPROTO_UDP), P.UDP(d._udp_sport(addr, m.port), m.port, b""))]
    return []


def ns_frame(link: Link, addr: str) -> bytes:
    """A Neighbor Solicitation for `addr` from our address of its scope, to its solicited-node group."""
    return ndp.ns_frame(link.mac, ip6_bytes(link.source_for(addr)), ip6_bytes(addr.partition("%")[0]))


def na_want(d: Discovery, link: Link) -> tuple[Want, Callable[[Reply], None]]:
    """Neighbor Advertisements for our targets on `link`: the MAC for later probes, and nd-response."""
    def on_na(r: Reply) -> None:
        m = r.icmp6
        if m is None or r.ip.ttl != ndp.ND_HOP_LIMIT or m.code != 0 or len(m.target) != 16 or m.opt_bad:
            return
        target = d.by_raw.get(m.target) or ip6_str(m.target)
        if target not in d.target_set:
            return
        mac = m.lladdr(OPT_TARGET_LLADDR)
        if mac is None:
            return
        link.neigh[target] = mac
        if "arp" in d._enabled:
            d._saw(target, ND_REASON, r.ts_ns, None, "arp", mac=P.mac_str(mac))
            d.seen[target].mac = P.mac_str(mac)

    return Want(None, frozenset({IPPROTO_ICMPV6}), errors=False, icmp_types=frozenset({NEIGHBOR_ADVERT})), on_na


async def send_all_nodes(d: Discovery, plan: list[tuple[Link, str, route.Route]], pacer: Pacer) -> int:
    """One echo to ff02::1 on each link with on-link IPv6 targets (from our address of the first
    target's scope); its id/seq is the cookie of ff02::1, so any answer carrying it came from it."""
    SALT = d.salts
    sent = 0
    done: set[tuple[str, str]] = set()
    for link, a, r in plan:
        if ":" not in a or r.gateway or link.loopback:
            continue
        src = link.source_for(a)
        if (link.iface, src) in done:
            continue
        done.add((link.iface, src))
        c = d.cookie(addr_key(d.cookie, ALL_NODES), 0, 0, SALT["broadcast"])
        i, s = c >> 16, c & 0xFFFF
        d.bcast_idents.add((i, s))
        fr = build_frame6(link.eth(ndp.multicast_mac(ALL_NODES), P.ETH_P_IPV6),
                          IPv6(ip6_bytes(src), ALL_NODES, IPPROTO_ICMPV6, 1), echo_request(i, s))
        d.bcast_sent_ns = time.time_ns()
        await pacer.budget(1)
        link.send(fr)
        sent += 1
    return sent
