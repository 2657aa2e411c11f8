"""Reverse DNS (PTR) for the hosts a scan finds, as nmap does by default (-n: never, -R: every target).

Asynchronous and bounded: queries go out while the probes run, at most `parallel` in flight, each
waited for `timeout` seconds and retried once on the next server, and `finish()` never waits longer
than the slowest outstanding query. Servers come from --dns-servers or the nameserver lines of
/etc/resolv.conf (`ip netns exec` puts a namespace's own /etc/netns/NS/resolv.conf there, which is
how the lab's scanner uses the lab's DNS server); /etc/hosts is read first, as nmap does.

A server that cannot be reached (no route: ENETUNREACH at connect, or an ICMP port unreachable)
is dropped at once, so a machine without DNS costs nothing. Loopback addresses are never sent to a
server. The client is RFC 1035 §4 (header, question, answers with name compression) over UDP.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from hostprint.errors import UsageError

PTR, CLASS_IN = 12, 1


def ptr_name(addr: str) -> str:
    """'198.18.0.10' -> '10.0.18.198.in-addr.arpa' (RFC 1035 §3.5); an IPv6 address -> its
    nibbles under ip6.arpa (RFC 3596 §2.5)."""
    if ":" in addr:
        import ipaddress

        return ipaddress.IPv6Address(addr.partition("%")[0]).reverse_pointer
    return ".".join(reversed(addr.split("."))) + ".in-addr.arpa"


def encode_query(qid: int, name: str, qtype: int = PTR) -> bytes:
    """A recursive query (RD set) for one name (RFC 1035 §4.1.1, §4.1.2)."""
    q = b"".join(bytes([len(p)]) + p.encode("ascii") for p in name.rstrip(".").split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, CLASS_IN)


def _read_name(msg: bytes, off: int) -> tuple[str, int]:
    """A possibly compressed domain name at `off`; returns (name, offset after it)."""
    labels: list[str] = []
    end = None
    hops = 0
    while True:
        if off >= len(msg):
            raise ValueError("name runs past the message")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(msg) or hops > 32:
                raise ValueError("bad compression pointer")
            if end is None:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            hops += 1
            continue
        if n == 0:
            off += 1
            break
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", errors="replace"))
        off += 1 + n
    return ".".join(labels), end if end is not None else off


def decode_ptr_answer(msg: bytes, qid: int, name: str) -> tuple[bool, str | None]:
    """(is an answer to our query, the PTR name or None). Answers to another id or question are
    not ours (False); NXDOMAIN and empty answers are ours with no name."""
    if len(msg) < 12:
        return False, None
    rid, flags, qd, an, _ns, _ar = struct.unpack_from("!HHHHHH", msg)
    if rid != qid or not flags & 0x8000 or qd != 1:
        return False, None
    try:
        qname, off = _read_name(msg, 12)
        if qname.lower().rstrip(".") != name.lower():
            return False, None
        off += 4
        if flags & 0x000F:  # rcode: NXDOMAIN, SERVFAIL …
            return True, None
        for _ in range(an):
            _rname, off = _read_name(msg, off)
            rtype, _rclass, _ttl, rdlen = struct.unpack_from("!HHIH", msg, off)
            off += 10
            if rtype == PTR:
                target, _ = _read_name(msg, off)
                return True, target.rstrip(".") or None
            off += rdlen
    except (ValueError, struct.error):
        return True, None
    return True, None


def system_servers(path: str = "/etc/resolv.conf") -> list[str]:
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    try:
                        if ipaddress.ip_address(parts[1]).version == 4:
                            out.append(parts[1])
                    except ValueError:
                        continue
    except OSError:
        pass
    return out


def etc_hosts(path: str = "/etc/hosts") -> dict[str, str]:
    """address -> first name, from /etc/hosts (nmap consults it before DNS)."""
    out: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split("#", 1)[0].split()
                if len(parts) >= 2 and parts[0] not in out:
                    out[parts[0]] = parts[1]
    except OSError:
        pass
    return out


def parse_servers(text: str) -> list[str]:
    """--dns-servers: comma-separated IPv4 addresses (one line naming a bad one)."""
    out = []
    for s in text.split(","):
        s = s.strip()
        try:
            if ipaddress.ip_address(s).version != 4:
                raise ValueError
        except ValueError:
            raise UsageError(f"bad --dns-servers entry '{s}': not an IPv4 address") from None
        out.append(s)
    return out


class _Server(asyncio.DatagramProtocol):
    def __init__(self, owner: ReverseDns, addr: str):
        self.owner, self.addr = owner, addr
        self.transport: asyncio.DatagramTransport | None = None
        self.dead = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.owner._answer(self, data)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable on the connected socket
        self.owner._server_dead(self)


@dataclass
class _Query:
    addr: str
    name: str
    qid: int
    tries: int = 0
    future: asyncio.Future[str | None] | None = None
    servers_tried: list[str] = field(default_factory=list)


class ReverseDns:
    """PTR lookups beside the probes (probes/runner.Names): `start(addresses)` queues them,
    `await finish(addresses)` returns the names found for those addresses."""

    def __init__(self, servers: list[str] | None = None, *, timeout: float = 1.0, parallel: int = 64,
                 hosts_file: str = "/etc/hosts"):
        self.servers = list(servers) if servers is not None else system_servers()
        self.timeout = timeout
        self.parallel = parallel
        self.hosts = etc_hosts(hosts_file)
        self.names: dict[str, str | None] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._conns: list[_Server] = []
        self._pending: dict[tuple[int, int], _Query] = {}  # (server index, qid) -> query
        self._sem: asyncio.Semaphore | None = None
        self._opened = False
        self._open_lock: asyncio.Lock | None = None
        self.queries_sent = 0

    async def _open(self) -> None:
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if not self._opened:
                await self._connect()
                self._opened = True

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        for s in self.servers:
            proto = _Server(self, s)

            def factory(p: _Server = proto) -> _Server:
                return p

            try:
                await loop.create_datagram_endpoint(factory, remote_addr=(s, 53),
                                                    family=socket.AF_INET6 if ":" in s else socket.AF_INET)
            except OSError:  # no route to the server: nothing to ask
                continue
            self._conns.append(proto)

    def start(self, addresses: Iterable[str]) -> None:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.parallel)
        for a in addresses:
            if a in self.tasks or a in self.names:
                continue
            if a in self.hosts:
                self.names[a] = self.hosts[a]
                continue
            if _loopback(a):
                self.names[a] = None
                continue
            self.tasks[a] = asyncio.ensure_future(self._lookup(a))

    async def finish(self, addresses: Iterable[str]) -> dict[str, str]:
        want = list(addresses)
        tasks = [self.tasks[a] for a in want if a in self.tasks]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        return {a: n for a in want if (n := self.names.get(a))}

    async def _lookup(self, addr: str) -> None:
        assert self._sem is not None
        async with self._sem:
            await self._open()
            name = ptr_name(addr)
            q = _Query(addr, name, random.getrandbits(16))
            result: str | None = None
            for attempt in range(2 * max(len(self._conns), 1)):
                live = [c for c in self._conns if not c.dead]
                if not live:
                    break
                conn = live[attempt % len(live)]
                idx = self._conns.index(conn)
                q.qid = random.getrandbits(16)
                while (idx, q.qid) in self._pending:
                    q.qid = random.getrandbits(16)
                q.future = asyncio.get_running_loop().create_future()
                self._pending[(idx, q.qid)] = q
                try:
                    assert conn.transport is not None
                    conn.transport.sendto(encode_query(q.qid, name))
                    self.queries_sent += 1
                    result = await asyncio.wait_for(asyncio.shield(q.future), self.timeout)
                    break
                except (asyncio.TimeoutError, OSError, _ServerGone):
                    continue
                finally:
                    self._pending.pop((idx, q.qid), None)
            self.names[addr] = result

    def _answer(self, conn: _Server, data: bytes) -> None:
        if len(data) < 2:
            return
        idx = self._conns.index(conn)
        q = self._pending.get((idx, struct.unpack_from("!H", data)[0]))
        if q is None or q.future is None or q.future.done():
            return
        ours, name = decode_ptr_answer(data, q.qid, q.name)
        if ours:
            q.future.set_result(name)

    def _server_dead(self, conn: _Server) -> None:
        conn.dead = True
        idx = self._conns.index(conn)
        for (i, _qid), q in list(self._pending.items()):
            if i == idx and q.future is not None and not q.future.done():
                q.future.set_exception(_ServerGone())

    def close(self) -> None:
        for c in self._conns:
            if c.transport is not None:
                c.transport.close()


class _ServerGone(Exception):
    pass


def _loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return True


def resolve_names(addresses: list[str], servers: list[str] | None = None) -> dict[str, str]:
    """PTR names of `addresses` in one call (-sL, which sends nothing else)."""
    async def go() -> dict[str, str]:
        r = ReverseDns(servers)
        r.start(addresses)
        try:
            return await r.finish(addresses)
        finally:
            r.close()

    return asyncio.run(go())


def env_disabled() -> bool:
    """HOSTPRINT_NO_DNS=1 turns reverse DNS off everywhere (as -n would)."""
    return os.environ.get("HOSTPRINT_NO_DNS", "") not in ("", "0")
