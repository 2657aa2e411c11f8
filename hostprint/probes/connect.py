"""connect() scan (-sT): the kernel does the handshake, so it needs no privileges.

Open = the connection completed (syn-ack), closed = refused (conn-refused), filtered = timed out
(no-response) or an ICMP error surfaced as EHOSTUNREACH/ENETUNREACH (host-unreach). Many
connections are in flight at once, bounded by a semaphore sized from the timing template.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time

from hostprint import model
from hostprint.engine.rate import Timing
from hostprint.model import Json
from hostprint.probes.base import PortListScan, Session


def _sockaddr(addr: str, port: int) -> tuple:
    """(host, port) for IPv4; for IPv6 a zone (fe80::1%eth0) becomes the scope id."""
    if ":" not in addr:
        return addr, port
    host, _, zone = addr.partition("%")
    return host, port, 0, socket.if_nametoindex(zone) if zone else 0


class ConnectScan:
    def __init__(self, targets: list[str], ports: list[int], timing: Timing, *, parallel: int | None = None):
        self.targets = targets
        self.ports = sorted(set(ports))
        self.timing = timing
        self.parallel = parallel or (1 if timing.scan_delay else 1024)
        self.result: dict[tuple[str, int], tuple[str, str]] = {}
        self.rtt: dict[str, float] = {}
        self.attempts = 0

    async def _one(self, sem: asyncio.Semaphore, addr: str, port: int, timeout: float) -> None:
        async with sem:
            if self.timing.scan_delay:
                await asyncio.sleep(self.timing.scan_delay)
            loop = asyncio.get_running_loop()
            s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            # RST on close (SO_LINGER 0): no TIME_WAIT pile-up over thousands of ports.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            self.attempts += 1
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(loop.sock_connect(s, _sockaddr(addr, port)), timeout)
                self.result[(addr, port)] = (model.OPEN, "syn-ack")
                rtt = time.monotonic() - t0
                self.rtt[addr] = min(self.rtt.get(addr, rtt), rtt)
            except asyncio.TimeoutError:
                self.result.setdefault((addr, port), (model.FILTERED, "no-response"))
            except ConnectionRefusedError:
                self.result[(addr, port)] = (model.CLOSED, "conn-refused")
                rtt = time.monotonic() - t0
                self.rtt[addr] = min(self.rtt.get(addr, rtt), rtt)
            except OSError as e:
                if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) or (e.errno == errno.EACCES and ":" in addr):
                    # IPv6 EACCES: an ICMPv6 administratively-prohibited error (Linux icmpv6_err_convert)
                    self.result[(addr, port)] = (model.FILTERED, "host-unreach")
                elif e.errno == errno.EADDRNOTAVAIL:  # out of local ports: retry later
                    self.result.pop((addr, port), None)
                else:
                    self.result[(addr, port)] = (model.FILTERED, "error")
            finally:
                s.close()

    async def run(self) -> dict[tuple[str, int], tuple[str, str]]:
        sem = asyncio.Semaphore(self.parallel)
        timeout = self.timing.initial_rtt
        todo = [(a, p) for p in self.ports for a in self.targets]
        for attempt in range(2):  # one retransmission of silent ports, as nmap's connect scan
            await asyncio.gather(*(self._one(sem, a, p, timeout) for a, p in todo))
            todo = [(a, p) for a, p in todo if self.result.get((a, p), (None,))[0] in (None, model.FILTERED)
                    and self.result.get((a, p), (None, ""))[1] != "host-unreach"]
            if not todo:
                break
            if self.rtt:
                timeout = min(max(4 * max(self.rtt.values()), self.timing.min_rtt), self.timing.max_rtt)
        return self.result

    def results(self, addr: str) -> list[model.PortResult]:
        return [model.PortResult(p, "tcp", *self.result.get((addr, p), (model.FILTERED, "no-response")))
                for p in self.ports]

    def answered(self, addr: str) -> list[model.PortResult]:
        """The ports an answer decided so far (connected, refused, unreachable): a scan stopped
        half-way has not called the silent ones filtered yet."""
        return [model.PortResult(p, "tcp", *r) for p in self.ports
                if (r := self.result.get((addr, p))) is not None and r[1] != "no-response"]


class ConnectPortScan(PortListScan):
    """-sT through the contract of probes/base.py: needs no raw sockets."""

    name = "connect"
    needs_raw = False
    label = "connect scan"
    protocol, kind = "tcp", "connect"

    _scan: ConnectScan | None = None  # the scan in progress (partial() reads it)

    async def scan(self, addrs: list[str], session: Session) -> tuple[dict[str, list[model.PortResult]], dict[str, Json]]:
        cs = self._scan = ConnectScan(addrs, self.ports, session.timing)
        await cs.run()
        return {a: cs.results(a) for a in addrs}, {"attempts": cs.attempts}

    def partial(self) -> dict[str, list[model.PortResult]]:
        cs = self._scan
        return {} if cs is None else {a: cs.answered(a) for a in cs.targets}
