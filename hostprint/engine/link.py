"""One interface as the probes see it: a receive ring on the event loop and ways to send.

A `Link` owns the AF_PACKET receive socket (BPF: ARP + IPv4 to our addresses, never our own
outgoing copies), its TPACKET_V3 ring registered with `loop.add_reader`, a send-only packet socket
with a `BatchSender` for bulk probes, and ARP resolution of next hops. Probes subscribe handlers
that get (kernel time in ns, frame) for every frame; a handler validates its own replies from the
cookie, so several probes share one link without a per-probe table.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from concurrent.futures import Executor

from hostprint.engine import afpacket, bpf, packets, replies, route
from hostprint.engine.packets import ARP, ETH_P_ARP, Ethernet

Handler = Callable[[int, memoryview], None]


class Link:
    def __init__(self, iface: str, addresses: list[str], *, snaplen: int = 2048,
                 ring_blocks: int = 32, block_size: int = 1 << 20, frame_size: int = 128,
                 filter_addresses: bool = True):
        self.iface = iface
        self.addresses = list(addresses)
        self.src = self.addresses[0]
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
        if self.loopback:
            # The loopback device drops frames injected through a packet socket, so sends there
            # go through a raw IP socket (the kernel routes them to itself); receive is unchanged.
            self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.sender = afpacket.RawIPBatchSender(self.raw, frame_size=frame_size)
        self.handlers: list[Handler] = []
        self.block_handlers: list[afpacket.BlockHandler] = []
        self.listeners: list[tuple[replies.Want, replies.Handler]] = []
        self._dispatch: Handler | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.neigh: dict[str, bytes] = {}
        self._arp_waiters: dict[bytes, list[asyncio.Future]] = {}
        self.frames_seen = 0

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
        n = self.ring.drain(frame, block)
        self.frames_seen += n
        return n

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
        pools = self._pools
        return [(snd, pools[i % len(pools)]) for i, snd in enumerate(self._senders)]

    def send(self, frame: bytes) -> None:
        if self.loopback:
            self.raw.sendto(frame[14:], (socket.inet_ntoa(frame[30:34]), 0))
        else:
            self.tx.send(frame)

    def eth(self, dst_mac: bytes, ethertype: int = packets.ETH_P_IP) -> Ethernet:
        return Ethernet(dst_mac, self.mac, ethertype)

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
        """MAC of an on-link address: loopback, our cache, the kernel's cache, then ARP."""
        if self.loopback:
            return b"\0" * 6
        if ip in self.neigh:
            return self.neigh[ip]
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
                      quiet: float | None = None) -> None:
    """Drain the links until `wait` seconds have passed and no reply has come for `quiet` seconds
    (default: `wait`). `wait` may be a callable, re-read each turn, for RTT timeouts that tighten
    as samples arrive. This is how every probe decides that silence means "no answer"."""
    start = time.monotonic()
    while True:
        for link in links:
            link.poll()
        w = wait() if callable(wait) else wait
        q = w if quiet is None else min(quiet, w)
        now = time.monotonic()
        if now - start >= w and now - max(last_reply(), start) >= q:
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

    def __init__(self, **link_kwargs: object):
        self.by_iface: dict[str, Link] = {}
        self.kw = link_kwargs

    def for_route(self, r: route.Route) -> Link:
        iface = r.iface
        if iface not in self.by_iface:
            addrs = route.table().addrs.get(iface) or [r.src]
            if r.src not in addrs:
                addrs = [r.src, *addrs]
            else:
                addrs = [r.src] + [a for a in addrs if a != r.src]
            link = Link(iface, addrs, **self.kw)  # type: ignore[arg-type]
            link.start()
            self.by_iface[iface] = link
        return self.by_iface[iface]

    async def toward(self, addr: str) -> tuple[Link, bytes | None]:
        """The link a packet to `addr` leaves by, and the next hop's MAC (None: no ARP answer)."""
        r = route.table().lookup(addr)
        link = self.for_route(r)
        return link, await link.resolve(r.gateway or addr)

    def close(self) -> None:
        for link in self.by_iface.values():
            link.close()
        self.by_iface.clear()
