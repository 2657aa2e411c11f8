"""Neighbor Discovery (RFC 4861): the next hop's MAC for crafted IPv6 frames, as ARP is for IPv4.

AF_PACKET frames skip the kernel's neighbour resolution, so a probe needs the MAC itself: first
from the kernel's neighbour cache, else by sending a Neighbor Solicitation to the target's
solicited-node multicast group and reading the Neighbor Advertisement. The resolver has its own
small packet socket whose BPF program passes only advertisements to our address, so it works
beside any Link (whatever that link's filter) and many resolutions can wait on it at once.
Advertisements are checked as RFC 4861 §7.1.2 says a host must (hop limit 255, code 0, a unicast
target) so that nothing routed from afar can poison the answer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import TYPE_CHECKING, Self

from hostprint.engine import afpacket, bpf, route
from hostprint.engine.frames import build_ip6
from hostprint.engine.icmpv6 import NEIGHBOR_ADVERT, OPT_TARGET_LLADDR, ICMPv6, decode_icmpv6, neighbor_solicitation
from hostprint.engine.ipv6 import IPPROTO_ICMPV6, IPv6, ip6_bytes, ip6_str
from hostprint.engine.packets import ETH_P_IPV6, DecodeError, Ethernet, decode_ethernet, mac_bytes

if TYPE_CHECKING:
    from hostprint.engine.link import Link
    from hostprint.engine.trace import PacketTracer

ND_HOP_LIMIT = 255  # RFC 4861: ND messages are sent, and only accepted, with hop limit 255


def solicited_node(addr: bytes) -> bytes:
    """ff02::1:ffXX:XXXX, the group a node joins for each of its addresses (RFC 4291 §2.7.1)."""
    return b"\xff\x02" + b"\0" * 9 + b"\x01\xff" + bytes(addr[13:16])


def multicast_mac(group: bytes) -> bytes:
    """33:33 followed by the group's last 32 bits (RFC 2464 §7)."""
    return b"\x33\x33" + bytes(group[12:16])


def ns_frame(src_mac: bytes, src: bytes, target: bytes, dst_mac: bytes | None = None) -> bytes:
    """An NS for `target` carrying our MAC. To the solicited-node group, or unicast to `dst_mac`
    (a reachability check of a known neighbour)."""
    if dst_mac is None:
        dst, dst_mac = solicited_node(target), multicast_mac(solicited_node(target))
    else:
        dst = target
    ip = IPv6(src, dst, IPPROTO_ICMPV6, ND_HOP_LIMIT)
    return Ethernet(dst_mac, src_mac, ETH_P_IPV6).encode() + build_ip6(ip, neighbor_solicitation(target, src_mac))


def parse_na(frame: bytes | memoryview) -> tuple[bytes, bytes, ICMPv6] | None:
    """(target, MAC, message) of a valid Neighbor Advertisement frame, else None. The MAC is the
    target link-layer option's, or the frame's source when the option is absent (allowed for
    answers to unicast solicitations)."""
    try:
        eth, off = decode_ethernet(frame)
        if eth.type != ETH_P_IPV6 or len(frame) - off < 64:
            return None
        if frame[off] >> 4 != 6 or frame[off + 6] != IPPROTO_ICMPV6 or frame[off + 7] != ND_HOP_LIMIT:
            return None
        m = decode_icmpv6(frame, off + 40, off + 40 + int.from_bytes(frame[off + 4: off + 6], "big"))
    except DecodeError:
        return None
    if m.type != NEIGHBOR_ADVERT or m.code != 0 or len(m.target) != 16 or m.target[0] == 0xFF or m.opt_bad:
        return None
    return m.target, m.lladdr(OPT_TARGET_LLADDR) or eth.src, m


def na_filter(address: str) -> list[bpf.Insn]:
    """Only ICMPv6 Neighbor Advertisements (no extension headers, as ND sends them) to `address`."""
    words = bpf._v6_words(address)
    lines: list[tuple] = [
        (bpf.LD_B_ABS, bpf.SKF_AD_OFF + bpf.SKF_AD_PKTTYPE),
        (bpf.JEQ_K, bpf.PACKET_OUTGOING, "drop", None),
        (bpf.LD_H_ABS, 12), (bpf.JEQ_K, ETH_P_IPV6, None, "drop"),
        (bpf.LD_B_ABS, 20), (bpf.JEQ_K, IPPROTO_ICMPV6, None, "drop"),
        (bpf.LD_B_ABS, 54), (bpf.JEQ_K, NEIGHBOR_ADVERT, None, "drop"),
    ]
    for j, w in enumerate(words):
        lines += [(bpf.LD_W_ABS, 38 + 4 * j), (bpf.JEQ_K, w, None, "drop")]
    lines += [(bpf.RET_K, 512), ("drop:",), (bpf.RET_K, 0)]
    return bpf.assemble(lines)


class Resolver6:
    """Resolves IPv6 neighbours on one interface for our source address `src`.

    `resolve()` may run for many targets at once; answers are cached for the resolver's life
    (a scan), as Link.neigh does for ARP."""

    def __init__(self, iface: str, src: str, mac: bytes | None = None, tracer: PacketTracer | None = None):
        self.iface = iface
        self.tracer = tracer  # --packet-trace: its NS (the NA is traced by the link's ring, which sees it too)
        self.src = ip6_str(ip6_bytes(src.split("%", 1)[0]))
        self.loopback = iface == "lo"
        self.mac = mac if mac is not None else (b"\0" * 6 if self.loopback else mac_bytes(route.iface_mac(iface)))
        self.neigh: dict[str, bytes] = {}
        self._waiters: dict[bytes, list[asyncio.Future]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.rx: socket.socket | None = None
        self.tx: socket.socket | None = None
        if not self.loopback:
            self.rx = afpacket.open_packet_socket(iface, na_filter(self.src))
            self.rx.setblocking(False)
            self.tx = afpacket.open_tx_socket(iface)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop is not None and self.rx is not None:
            try:
                self._loop.remove_reader(self.rx.fileno())
            except (ValueError, OSError):
                pass
            self._loop = None
        for s in (self.rx, self.tx):
            if s is not None:
                s.close()
        self.rx = self.tx = None

    def _on_readable(self) -> None:
        while self.rx is not None:
            try:
                fr = self.rx.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            na = parse_na(fr)
            if na is None:
                continue
            target, mac, _ = na
            self.neigh[ip6_str(target)] = mac
            for fut in self._waiters.pop(target, []):
                if not fut.done():
                    fut.set_result(mac)

    async def resolve(self, target: str, timeout: float = 1.0, tries: int = 3, use_kernel_cache: bool = True
                      ) -> bytes | None:
        """The MAC of on-link `target`: loopback, our cache, the kernel's cache, then NS/NA."""
        if self.loopback:
            return b"\0" * 6
        if self.rx is None or self.tx is None:
            raise ValueError("resolver is closed")
        addr = target.split("%", 1)[0]
        key = ip6_bytes(addr)
        name = ip6_str(key)
        if name in self.neigh:
            return self.neigh[name]
        if use_kernel_cache:
            known = route.neighbours6(self.iface)
            if name in known:
                self.neigh[name] = mac_bytes(known[name])
                return self.neigh[name]
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            loop.add_reader(self.rx.fileno(), self._on_readable)
        fut = loop.create_future()
        self._waiters.setdefault(key, []).append(fut)
        frame = ns_frame(self.mac, ip6_bytes(self.src), key)
        try:
            for _ in range(tries):
                try:
                    self.tx.send(frame)
                except OSError:
                    return None
                if self.tracer is not None:
                    self.tracer.sent(frame)
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), timeout)
                except TimeoutError:
                    continue
            return None
        finally:
            waiting = self._waiters.get(key, [])
            if fut in waiting:
                waiting.remove(fut)
            if not waiting:
                self._waiters.pop(key, None)


async def resolve6(link: Link, target: str, timeout: float = 1.0, tries: int = 3) -> bytes | None:
    """ND on a Link (engine.link): its interface and its first IPv6 address of the target's scope
    (else the interface's best source by RFC 6724); the answer is also put in link.neigh, where
    Link.resolve looks first."""
    neigh = link.neigh
    if target in neigh:
        return neigh[target]
    iface = link.iface
    dst = ipaddress.IPv6Address(target.split("%", 1)[0])
    ours = [a for a in link.addresses if ":" in a
            and ipaddress.IPv6Address(a.split("%", 1)[0]).is_link_local == dst.is_link_local]
    src = ours[0] if ours else route.table6().source(iface, dst)
    if src is None:
        return None
    with Resolver6(iface, src, link.mac if iface != "lo" else None, link.tracer) as r:
        mac = await r.resolve(target, timeout, tries)
    if mac is not None:
        neigh[target] = mac
    return mac
