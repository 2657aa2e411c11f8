"""Hostile TCP services for the application scanner's robustness tests.

Why: a fingerprinter meets servers that never stop talking, answer with megabytes, accept and
never read, or speak garbage where TLS is expected; each mode here is one of those, small enough
to audit. Modes:
  endless   sends a banner line forever (as fast as the peer reads)
  big       answers any input (or after 0.2 s of silence) with 10 MB, then closes
  tarpit    accepts and never reads or writes (the receive window fills up)
  tlsgarbage answers anything with bytes that start like a TLS record but are not
  close     accepts and closes at once (tcpwrapped-style)
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


MODES = {"endless": _endless, "big": _big, "tarpit": _tarpit, "tlsgarbage": _tlsgarbage, "close": _close}


async def serve(mode: str, port: int) -> None:
    fn = MODES[mode]

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            await fn(r, w)
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            w.transport.abort()

    srv = await asyncio.start_server(handle, "0.0.0.0", port, reuse_address=True)
    async with srv:
        await srv.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=sorted(MODES), required=True)
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    asyncio.run(serve(a.mode, a.port))


if __name__ == "__main__":
    main()
