"""A capture built to fill every per-host cap of the passive analyzer (probes/passive_hosts.py).

Each host of 198.18.0.0/15 sends, as a client, SYNs with distinct signatures (a window no other host uses, TTL,
option layout, random timestamps: a new timestamp-clock candidate each) and HTTP requests with distinct
long User-Agents on those connections; as a server it answers SYN+ACKs from many ports (distinct
signatures and timestamps) and HTTP responses with distinct long Server headers. No real traffic
looks like this; a hostile sender can. Used by tests/test_reliability.py (a few thousand hosts) and
bench/passive/hostile_memory.py (60,000 hosts).
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

ETH = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
BASE = 0xC6120000  # 198.18.0.0
CLIENTS = [BASE + 0x10000 + i for i in range(16)]  # 198.19.0.x: the peers that connect to our servers

#: per host: client SYNs, SYN+ACK answers, HTTP requests, HTTP responses
SYNS, SYNACKS, REQUESTS, RESPONSES = 40, 80, 20, 20


def _ip(src: int, dst: int, ttl: int, payload_len: int) -> bytes:
    return struct.pack("!BBHHHBBHII", 0x45, 0, 20 + payload_len, 1, 0x4000, ttl, 6, 0, src, dst)


def _tcp(sport: int, dport: int, seq: int, ack: int, flags: int, win: int, opts: bytes, payload: bytes = b"") -> bytes:
    doff = (20 + len(opts)) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, win, 0, 0) + opts + payload


def _opts(rng: random.Random, k: int) -> bytes:
    """40 bytes at most; the layout varies with k (so does the raw signature)."""
    mss = struct.pack("!BBH", 2, 4, 1200 + k)
    ts = struct.pack("!BBII", 8, 10, rng.getrandbits(32), 0)
    ws = struct.pack("!BBB", 3, 3, k % 15)
    layouts = [mss + b"\x04\x02" + ts + b"\x01" + ws, mss + b"\x01\x01" + ts + b"\x01" + ws + b"\x00",
               mss + b"\x01" + ws + b"\x04\x02" + ts, mss + ts + b"\x01\x01\x04\x02" + ws + b"\x00"]
    o = layouts[k % len(layouts)]
    return o + b"\x00" * (-len(o) % 4)


def _frame(src: int, dst: int, ttl: int, tcp: bytes) -> bytes:
    return ETH + _ip(src, dst, ttl, len(tcp)) + tcp


def write_capture(path: Path, hosts: int, seed: int = 13) -> int:
    """Classic pcap (µs), one host after another; returns the packet count."""
    rng = random.Random(seed)
    n = 0
    t = 1_700_000_000.0
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))

        def put(frame: bytes) -> None:
            nonlocal n, t
            t += 0.0001
            sec = int(t)
            f.write(struct.pack("<IIII", sec, int((t - sec) * 1e6), len(frame), len(frame)) + frame)
            n += 1

        for h in range(hosts):
            addr = BASE + 1 + h
            server = BASE + 0x8000 + (h % 1024)
            for k in range(SYNS):  # client SYNs (new signature each), then HTTP on the first REQUESTS
                sport = 1024 + k
                ttl = 64 - (k % 20) if k % 2 else 128 - (k % 20)
                put(_frame(addr, server, ttl, _tcp(sport, 80, 1000, 0, 0x02, 1000 + (h * 41 + k) % 60000, _opts(rng, k))))
                if k < REQUESTS:
                    ua = f"Mozilla/5.0 (hostile {h} {k}; {'Windows NT 10.0' if k % 2 else 'Linux x86_64'}) " + "x" * 200
                    req = f"GET / HTTP/1.1\r\nHost: h{h}\r\nUser-Agent: {ua}\r\nAccept: */*\r\n\r\n".encode()
                    put(_frame(addr, server, ttl, _tcp(sport, 80, 1001, 1, 0x18, 502, b"", req)))
            for k in range(SYNACKS):  # answers from many server ports, distinct windows and clocks
                peer = CLIENTS[k % len(CLIENTS)]
                put(_frame(addr, peer, 64, _tcp(2000 + k, 40000 + k, 5000, 1001, 0x12, 2000 + (h * 83 + k) % 60000, _opts(rng, k))))
            for k in range(RESPONSES):  # a client's SYN to us, then our HTTP response with a long Server
                peer = CLIENTS[k % len(CLIENTS)]
                cport = 50000 + k
                put(_frame(peer, addr, 64, _tcp(cport, 8080, 7000, 0, 0x02, 64240, _opts(rng, 3))))
                body = (f"HTTP/1.1 200 OK\r\nServer: hostile-server/{h}.{k} " + "y" * 200 +
                        "\r\nContent-Length: 0\r\n\r\n").encode()
                put(_frame(addr, peer, 64, _tcp(8080, cport, 9000, 7001, 0x18, 502, b"", body)))
    return n
