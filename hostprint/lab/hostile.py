"""Hostile TCP services for the application scanner's robustness tests.

Why: a fingerprinter meets servers that never stop talking, answer with megabytes, accept and
never read, or speak garbage where TLS is expected; each mode here is one of those, small enough
to audit. Modes:
  endless   sends a banner line forever (as fast as the peer reads)
  big       answers any input (or after 0.2 s of silence) with 10 MB, then closes
  tarpit    accepts and never reads or writes (the receive window fills up)
  tlsgarbage answers anything with bytes that start like a TLS record but are not
  close     accepts and closes at once (tcpwrapped-style)
  line      says one line no fingerprint DB knows, reads the client's first bytes (or waits 0.3 s
            for them), then closes: a service nmap -sV cannot name, which it goes through quickly
  drip      sends a banner a few bytes at a time, forever: --drip-bytes every --drip-interval seconds
            (default 64 bytes every 0.25 s; never quiet long enough for a reader's idle timer to end
            the read, and far below any byte cap for minutes)
One process can serve one mode on several ports (--port 9001,9002 or --port 9001-9032).
"""

from __future__ import annotations

import argparse
import asyncio
import os

BIG = 10 * 1024 * 1024


async def _endless(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    line = b"220 hostile endless banner " + b"x" * 100 + b"\r\n"
    while True:
        w.write(line * 64)
        await w.drain()


async def _big(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    try:
        await asyncio.wait_for(r.read(1), 0.2)
    except asyncio.TimeoutError:
        pass
    chunk = os.urandom(65536)
    for _ in range(BIG // len(chunk)):
        w.write(chunk)
        await w.drain()


async def _tarpit(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.transport.pause_reading()  # type: ignore[attr-defined]  # a socket transport reads too
    await asyncio.sleep(3600)


async def _tlsgarbage(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await r.read(1)
    # content type 22, version 3.3, length 0x4000, then noise: a parser that trusts it must cope
    w.write(b"\x16\x03\x03\x40\x00\x02" + os.urandom(300))
    await w.drain()
    await asyncio.sleep(30)


async def _close(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    pass


async def _line(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    w.write(b"svorder lab 7f3c\r\n")
    await w.drain()
    try:
        await asyncio.wait_for(r.read(4096), 0.3)
    except (asyncio.TimeoutError, TimeoutError):
        pass


DRIP = {"bytes": 64, "interval": 0.25}


async def _drip(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    text = b"220 hostile drip banner, one slow piece at a time " + b"." * 200 + b"\r\n"
    n, pause = int(DRIP["bytes"]), float(DRIP["interval"])
    i = 0
    while True:
        piece = bytes(text[(i + k) % len(text)] for k in range(n))
        i += n
        w.write(piece)
        await w.drain()
        await asyncio.sleep(pause)


MODES = {"endless": _endless, "big": _big, "tarpit": _tarpit, "tlsgarbage": _tlsgarbage, "close": _close,
         "drip": _drip, "line": _line}


def parse_ports(spec: str) -> list[int]:
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


async def serve(mode: str, port: int | list[int], host: str = "0.0.0.0") -> None:
    fn = MODES[mode]

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            await fn(r, w)
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            w.transport.abort()

    ports = [port] if isinstance(port, int) else port
    servers = [await asyncio.start_server(handle, host, p, reuse_address=True) for p in ports]
    await asyncio.gather(*(srv.serve_forever() for srv in servers))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=sorted(MODES), required=True)
    ap.add_argument("--port", required=True, help="a port, or several: 9001,9002 or 9001-9032")
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--drip-bytes", type=int, default=64)
    ap.add_argument("--drip-interval", type=float, default=0.25)
    a = ap.parse_args()
    DRIP.update(bytes=a.drip_bytes, interval=a.drip_interval)
    asyncio.run(serve(a.mode, parse_ports(a.port), a.host))


if __name__ == "__main__":
    main()
