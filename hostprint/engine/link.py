"""One interface as the probes see it: a receive ring on the event loop and ways to send.

A `Link` owns the AF_PACKET receive socket (BPF: ARP + IPv4 to our addresses, never our own
outgoing copies), its TPACKET_V3 ring registered with `loop.add_reader`, a send-only packet socket
with a `BatchSender` for bulk probes, and ARP resolution of next hops. Probes subscribe handlers
that get (kernel time in ns, frame) for every frame; a handler validates its own replies from the
cookie, so several probes share one link without a per-probe table.

IPv6: a link serves both families. Its IPv6 addresses join the receive filter when the first IPv6
route needs the link (`add_addresses`: the BPF program is replaced on the open socket, so an
IPv4-only run keeps its IPv4-only program), `resolve` does Neighbor Discovery for IPv6 next hops
(engine/ndp.py), `source_for` picks the source of the destination's scope, and on loopback IPv6
goes out through an AF_INET6 raw socket (IPPROTO_RAW implies IPV6_HDRINCL).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from concurrent.futures import Executor

from hostprint.engine import afpacket, bpf, packets, replies, route
from hostprint.engine.packets import ARP, ETH_P_ARP, Ethernet
from hostprint.engine.trace import PacketTracer

Handler = Callable[[int, memoryview], None]


class Link:
    def __init__(self, iface: str, addresses: list[str], *, snaplen: int = 2048,
                 ring_blocks: int = 32, block_size: int = 1 << 20, frame_size: int = 128,
                 filter_addresses: bool = True, tracer: PacketTracer | None = None):
        self.iface = iface
        self.addresses = list(addresses)
        v4 = [a for a in self.addresses if ":" not in a]
        self.src = v4[0] if v4 else self.addresses[0]  # the IPv4 source (IPv4 probes use it as is)
        self._snaplen = snaplen
        self._filtered = filter_addresses
        self.mac = packets.mac_bytes(route.iface_mac(iface)) if iface != "lo" else b"\0" * 6
        self.loopback = iface == "lo"
        prog = bpf.receive_filter(self.addresses if filter_addresses else [], snaplen=snaplen)
        self.rx = afpacket.open_packet_socket(iface, prog)
        try:
            self.rx.setsockopt(socket.SOL_SOCKET, afpacket.SO_RCVBUFFORCE, 16 << 20)
        except OSError:
            pass
        self.ring = afpacket.RxRing(self.rx, block_size=block_size, block_nr=ring_blocks)
        self.tx = afpacket.open_tx_socket(iface)
        self.sender = afpacket.BatchSender(self.tx, frame_size=frame_size)
        self._pools: list = []
        self._senders: list[afpacket.BatchSender] | None = None
        self._frame_size = frame_size
        self.raw6: socket.socket | None = None
        if self.loopback:
            # The loopback device drops frames injected through a packet socket, so sends there
            # go through a raw IP socket (the kernel routes them to itself); receive is unchanged.
            self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.sender = afpacket.RawIPBatchSender(self.raw, frame_size=frame_size, sock6=self._raw6)
        self.handlers: list[Handler] = []
        self.block_handlers: list[afpacket.BlockHandler] = []
        self.listeners: list[tuple[replies.Want, replies.Handler]] = []
        self._dispatch: Handler | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.neigh: dict[str, bytes] = {}
        self._arp_waiters: dict[bytes, list[asyncio.Future]] = {}
        self.frames_seen = 0
        self.tracer = tracer
        if tracer is not None:  # --packet-trace: every frame sent (here and by the senders) and received
            self.sender.tracer = tracer
            tracer.ours = tracer.ours | {socket.inet_aton(a) for a in v4}

    # ------------------------------------------------------------------ lifecycle

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.loop.add_reader(self.ring.fileno(), self.poll)
        self.subscribe_blocks(self._on_arp_block)

    def close(self) -> None:
        if self.loop is not None:
            try:
                self.loop.remove_reader(self.ring.fileno())
            except (ValueError, OSError):
                pass
        for pool in self._pools:
            pool.shutdown(wait=True)
        for snd in self._senders or []:
            if snd is not self.sender:
                snd.sock.close()
        self.ring.close()
        self.rx.close()
        self.tx.close()
        if self.loopback:
            self.raw.close()
        if self.raw6 is not None:
            self.raw6.close()

    def __enter__(self) -> "Link":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ receive

    def subscribe(self, handler: Handler) -> Handler:
        self.handlers.append(handler)
        return handler

    def unsubscribe(self, handler: Handler) -> None:
        if handler in self.handlers:
            self.handlers.remove(handler)

    def listen(self, want: replies.Want, handler: replies.Handler) -> tuple[replies.Want, replies.Handler]:
        """Have `handler` called with every decoded, cookie-checked reply `want` accepts
        (engine/replies.py); returns the token for unlisten()."""
        token = (want, handler)
        self.listeners.append(token)
        if self._dispatch is None:
            self._dispatch = self.subscribe(replies.dispatch(self.listeners))
        return token

    def unlisten(self, token: tuple[replies.Want, replies.Handler]) -> None:
        if token in self.listeners:
            self.listeners.remove(token)
        if not self.listeners and self._dispatch is not None:
            self.unsubscribe(self._dispatch)
            self._dispatch = None

    def subscribe_blocks(self, handler: afpacket.BlockHandler) -> afpacket.BlockHandler:
        """Vectorised consumers (bulk scans) get whole ring blocks as numpy arrays."""
        self.block_handlers.append(handler)
        return handler

    def unsubscribe_blocks(self, handler: afpacket.BlockHandler) -> None:
        if handler in self.block_handlers:
            self.block_handlers.remove(handler)

    def poll(self) -> int:
        """Hand every frame the kernel has ready to every handler (called by the event loop)."""
        hs, bhs = self.handlers, self.block_handlers
        frame = None
        if len(hs) == 1:
            frame = hs[0]
        elif hs:
            def frame(ts: int, fr: memoryview) -> None:
                for h in hs:
                    try:
                        h(ts, fr)
                    except Exception:  # noqa: BLE001 - one bad frame or handler must not stop the others
                        pass
        block = None
        if len(bhs) == 1:
            block = bhs[0]
        elif bhs:
            def block(ring, starts, lens, ts) -> None:  # type: ignore[no-untyped-def]
                for h in bhs:
                    try:
                        h(ring, starts, lens, ts)
                    except Exception:  # noqa: BLE001
                        pass
        if self.tracer is not None:
            block = self._traced(block)
        n = self.ring.drain(frame, block)
        self.frames_seen += n
        return n

    def _traced(self, block: afpacket.BlockHandler | None) -> afpacket.BlockHandler:
        """The ring's block handler with --packet-trace's RCVD lines first (every frame once)."""
        tracer = self.tracer
        assert tracer is not None

        def traced(ring, starts, lens, ts) -> None:  # type: ignore[no-untyped-def]
            tracer.rcvd_block(ring, starts, lens)
            if block is not None:
                block(ring, starts, lens, ts)
        return traced

    async def settle(self, seconds: float) -> None:
        """Wait while still draining the ring (blocks are retired by the kernel every few ms)."""
        end = time.monotonic() + seconds
        while True:
            self.poll()
            left = end - time.monotonic()
            if left <= 0:
                break
            await asyncio.sleep(min(left, 0.005))
        self.poll()

    # ------------------------------------------------------------------ send

    def parallel_senders(self) -> list[tuple[afpacket.BatchSender, Executor]]:
        """(sender, single-thread executor) pairs for bulk scans: one thread per CPU, two buffers each.

        On veth and loopback the kernel does the receiving host's whole TCP work inside our
        sendmmsg call (softirq on the sending CPU): measured 3.7 µs per probe, nearly all of a
        scan's cost once replies are parsed vectorised. Sender threads pinned to different CPUs
        spread that work; ctypes drops the GIL during the call, so Python is not the limit."""
        if self._senders is None:
            import os
            from concurrent.futures import ThreadPoolExecutor

            cpus = sorted(os.sched_getaffinity(0))
            if self.loopback or len(cpus) < 2:
                self._pools = [ThreadPoolExecutor(1)]
                self._senders = [self.sender]
            else:
                self._pools = [ThreadPoolExecutor(1, initializer=os.sched_setaffinity, initargs=(0, {c})) for c in cpus[:2]]
                # Two buffers per thread: the next batch is crafted and queued while one is in the kernel.
                self._senders = [self.sender] + [
                    afpacket.BatchSender(afpacket.open_tx_socket(self.iface), frame_size=self._frame_size,
                                         max_batch=self.sender.max_batch)
                    for _ in range(2 * len(self._pools) - 1)]
                for snd in self._senders:
                    snd.tracer = self.tracer
        pools = self._pools
        return [(snd, pools[i % len(pools)]) for i, snd in enumerate(self._senders)]

    def _raw6(self) -> socket.socket:
        """The loopback's IPv6 raw socket, opened on first use."""
        if self.raw6 is None:
            self.raw6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
        return self.raw6

    def send(self, frame: bytes) -> None:
        if self.tracer is not None:
            self.tracer.sent(frame)
        if self.loopback:
            if frame[12:14] == b"\x86\xdd":
                self._raw6().sendto(frame[14:], (socket.inet_ntop(socket.AF_INET6, frame[38:54]), 0))
            else:
                self.raw.sendto(frame[14:], (socket.inet_ntoa(frame[30:34]), 0))
        else:
            self.tx.send(frame)

    # ------------------------------------------------------------------ IPv6

    @property
    def addresses6(self) -> list[str]:
        return [a for a in self.addresses if ":" in a]

    def add_addresses(self, addrs: list[str]) -> None:
        """Accept replies to these addresses too (the BPF program is replaced on the open socket)."""
        new = [a for a in addrs if a not in self.addresses]
        if not new:
            return
        self.addresses += new
        if self._filtered:
            bpf.attach(self.rx, bpf.receive_filter(self.addresses, snaplen=self._snaplen))

    def source_for(self, dst: str) -> str:
        """Our source address toward `dst`: the IPv4 source, or the IPv6 address of the
        destination's scope with the longest common prefix (RFC 6724 rules 2 and 8)."""
        if ":" not in dst:
            return self.src
        import ipaddress

        d = ipaddress.IPv6Address(dst.partition("%")[0])
        cands = [ipaddress.IPv6Address(a.partition("%")[0]) for a in self.addresses6]
        if not cands:
            raise ValueError(f"no IPv6 address on {self.iface} to reach {dst}")
        if d.is_loopback or self.loopback:
            return str(d) if any(c == d for c in cands) or self.loopback else str(cands[0])
        same = [c for c in cands if c.is_link_local == d.is_link_local] or cands
        return str(max(same, key=lambda c: 128 - (int(c) ^ int(d)).bit_length()))

    def eth(self, dst_mac: bytes, ethertype: int = packets.ETH_P_IP) -> Ethernet:
        return Ethernet(dst_mac, self.mac, ethertype)

    def frame(self, dst: str, mac: bytes, l4: object, proto: int, *, ttl: int = 64, ipid: int = 0, tos: int = 0,
              df: bool = False, flow: int = 0, ext: list | None = None) -> bytes:
        """A frame to `dst` of either family from our source of its scope: IPv4 with TTL, ID, TOS
        and DF; IPv6 with the hop limit (`ttl`), traffic class (`tos`), flow label and extension
        headers (IPv6 has no ID and no DF)."""
        if ":" in dst:
            from hostprint.engine.frames import build_frame6
            from hostprint.engine.ipv6 import IPv6, ip6_bytes

            ip6 = IPv6(ip6_bytes(self.source_for(dst)), ip6_bytes(dst.partition("%")[0]), proto, ttl, tos, flow,
                       list(ext or []))
            return build_frame6(self.eth(mac, packets.ETH_P_IPV6), ip6, l4)
        ip = packets.IPv4(socket.inet_aton(self.src), socket.inet_aton(dst), proto, ttl=ttl, id=ipid, tos=tos, df=df)
        return packets.build_frame(self.eth(mac), ip, l4)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ ARP

    def _on_arp_block(self, ring, starts, lens, ts) -> None:  # type: ignore[no-untyped-def]
        ok = lens >= 42
        if not ok.any():
            return
        st = starts[ok]
        arp = (ring[st + 12] == 0x08) & (ring[st + 13] == 0x06)
        for a, ln in zip(st[arp].tolist(), lens[ok][arp].tolist()):
            self._on_arp(0, memoryview(ring[a: a + ln]))

    def _on_arp(self, ts: int, fr: memoryview) -> None:
        if len(fr) < 42 or fr[12] != 0x08 or fr[13] != 0x06:
            return
        a = packets.decode_arp(fr, 14)
        if a.op != 2:
            return
        ip = socket.inet_ntoa(a.spa)
        self.neigh[ip] = a.sha
        for fut in self._arp_waiters.pop(a.spa, []):
            if not fut.done():
                fut.set_result(a.sha)

    def arp_request_frame(self, target: str, sender_ip: str | None = None) -> bytes:
        req = ARP(1, self.mac, socket.inet_aton(sender_ip or self.src), b"\0" * 6, socket.inet_aton(target))
        return Ethernet(b"\xff" * 6, self.mac, ETH_P_ARP).encode() + req.encode()

    async def resolve(self, ip: str, timeout: float = 1.0, tries: int = 3) -> bytes | None:
        """MAC of an on-link address: loopback, our cache, the kernel's cache, then ARP (IPv4)
        or Neighbor Discovery (IPv6)."""
        if self.loopback:
            return b"\0" * 6
        if ip in self.neigh:
            return self.neigh[ip]
        if ":" in ip:
            from hostprint.engine import ndp

            return await ndp.resolve6(self, ip, timeout, tries)
        known = route.neighbours(self.iface)
        if ip in known:
            self.neigh[ip] = packets.mac_bytes(known[ip])
            return self.neigh[ip]
        key = socket.inet_aton(ip)
        for _ in range(tries):
            fut = asyncio.get_running_loop().create_future()
            self._arp_waiters.setdefault(key, []).append(fut)
            self.send(self.arp_request_frame(ip))
            try:
                return await asyncio.wait_for(asyncio.shield(fut), timeout)
            except asyncio.TimeoutError:
                continue
        return None


async def until_quiet(links: list[Link], wait: float | Callable[[], float], last_reply: Callable[[], float],
                      quiet: float | None = None, done: Callable[[], bool] | None = None) -> None:
    """Drain the links until `wait` seconds have passed and no reply has come for `quiet` seconds
    (default: `wait`). `wait` may be a callable, re-read each turn, for RTT timeouts that tighten
    as samples arrive. This is how every probe decides that silence means "no answer". `done`:
    every answer awaited is in (e.g. all ARP requests answered), so only the quiet time is left."""
    start = time.monotonic()
    while True:
        for link in links:
            link.poll()
        w = wait() if callable(wait) else wait
        q = w if quiet is None else min(quiet, w)
        now = time.monotonic()
        if (now - start >= w or (done is not None and done())) and now - max(last_reply(), start) >= q:
            break
        await asyncio.sleep(min(0.005, max(w / 4, 0.001)))


async def answers_settle(link: Link, limit: float, rtts: Callable[[], list[float]], factor: float = 8,
                         floor: float = 0.25) -> None:
    """Wait for late answers to a round of probes: `limit` while nothing has come back, else
    `factor` round trips of the slowest answer so far (at least `floor`, at most `limit`). A probe
    that does not know the RTT beforehand (-Pn) learns it from its own first answers."""
    def wait() -> float:
        r = rtts()
        return min(max(factor * max(r), floor), limit) if r else limit

    await until_quiet([link], wait, lambda: 0.0, quiet=0.0)


class Links:
    """The links a set of targets needs, opened once per interface."""

    def __init__(self, tracer: PacketTracer | None = None, **link_kwargs: object):
        self.by_iface: dict[str, Link] = {}
        self.tracer = tracer
        self.kw = link_kwargs

    def for_route(self, r: route.Route) -> Link:
        iface = r.iface
        v6 = ":" in r.src
        if iface not in self.by_iface:
            addrs = list(route.table().addrs.get(iface) or [])
            if not v6:
                addrs = [r.src] + [a for a in addrs if a != r.src]
            else:  # IPv4 addresses first (link.src), then ours of the route's family, its source first
                addrs += [r.src] + [a for a in route.table6().addrs.get(iface, []) if a != r.src]
            link = Link(iface, addrs, tracer=self.tracer, **self.kw)  # type: ignore[arg-type]
            link.start()
            self.by_iface[iface] = link
        link = self.by_iface[iface]
        if v6 and r.src not in link.addresses:
            link.add_addresses([r.src] + list(route.table6().addrs.get(iface, [])))
        return link

    async def toward(self, addr: str) -> tuple[Link, bytes | None]:
        """The link a packet to `addr` leaves by, and the next hop's MAC (None: no ARP/ND answer)."""
        r = route.lookup_any(addr)
        link = self.for_route(r)
        return link, await link.resolve(r.gateway or addr)

    def close(self) -> None:
        for link in self.by_iface.values():
            link.close()
        self.by_iface.clear()
