"""The ClientHellos behind JA3S and JARM, crafted here (no TLS library sends them), and the
connections that send them.

JARM (salesforce/jarm, BSD-3; the definition is its reference implementation, jarm.py of November
2020, version 1.0) sends ten ClientHellos that differ in TLS version, cipher list and order,
GREASE, ALPN list and extension order, and hashes what the ServerHellos chose. The ten are
`JARM_PROBES` below, in the definition's order; `jarm_hello` builds one. Two details of the
definition are kept on purpose because every published JARM depends on them: the full ALPN list
has "spdy/3" and "h2" run together as one list entry (a missing comma in jarm.py, so the list has
eight entries and the re-orderings move the pair together), and the "TLS 1.1 middle out" probe
sends its ciphers in forward order.

JA3S (salesforce/ja3, BSD-3) is a function of a ServerHello, so of the ClientHello that asked:
hostprint always asks with the same `ja3s_hello` (TLS 1.3 and 1.2 ciphers and the extensions of an
ordinary client, no GREASE), so two JA3S from two hostprint runs, on any machine, compare.

Only what the server says in its first flight is read; the connection is then aborted.
"""

from __future__ import annotations

import asyncio
import os
import struct
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Callable, TypeVar

from hostprint.match.tlsfp import TIMEOUT, ServerHello, ja3s, jarm_answer, jarm_hash, parse_server_hello

GREASE = [0x0A0A + 0x1010 * i for i in range(16)]  # RFC 8701 §2

# jarm.py's two cipher lists, in its order ("ALL"; "NO1.3" is ALL without the TLS 1.3 suites).
JARM_CIPHERS_ALL = [
    0x0016, 0x0033, 0x0067, 0xC09E, 0xC0A2, 0x009E, 0x0039, 0x006B, 0xC09F, 0xC0A3, 0x009F, 0x0045, 0x00BE,
    0x0088, 0x00C4, 0x009A, 0xC008, 0xC009, 0xC023, 0xC0AC, 0xC0AE, 0xC02B, 0xC00A, 0xC024, 0xC0AD, 0xC0AF,
    0xC02C, 0xC072, 0xC073, 0xCCA9, 0x1302, 0x1301, 0xCC14, 0xC007, 0xC012, 0xC013, 0xC027, 0xC02F, 0xC014,
    0xC028, 0xC030, 0xC060, 0xC061, 0xC076, 0xC077, 0xCCA8, 0x1305, 0x1304, 0x1303, 0xCC13, 0xC011, 0x000A,
    0x002F, 0x003C, 0xC09C, 0xC0A0, 0x009C, 0x0035, 0x003D, 0xC09D, 0xC0A1, 0x009D, 0x0041, 0x00BA, 0x0084,
    0x00C0, 0x0007, 0x0004, 0x0005]
TLS13_SUITES = {0x1301, 0x1302, 0x1303, 0x1304, 0x1305}
JARM_CIPHERS_NO13 = [c for c in JARM_CIPHERS_ALL if c not in TLS13_SUITES]


def _alpn(*names: bytes) -> bytes:
    return b"".join(bytes([len(n)]) + n for n in names)


# ALPN lists as jarm.py has them: entries are already length-prefixed; the full list's sixth entry
# is "spdy/3" and "h2" together (see the module docstring).
JARM_ALPN_ALL = [_alpn(b"http/0.9"), _alpn(b"http/1.0"), _alpn(b"http/1.1"), _alpn(b"spdy/1"), _alpn(b"spdy/2"),
                 _alpn(b"spdy/3", b"h2"), _alpn(b"h2c"), _alpn(b"hq")]
JARM_ALPN_RARE = [_alpn(b"http/0.9"), _alpn(b"http/1.0"), _alpn(b"spdy/1"), _alpn(b"spdy/2"), _alpn(b"spdy/3"),
                  _alpn(b"h2c"), _alpn(b"hq")]


@dataclass(frozen=True)
class JarmProbe:
    version: str  # "1.1" | "1.2" | "1.3": the ClientHello's version
    ciphers: str  # "ALL" | "NO1.3"
    order: str  # cipher order: FORWARD | REVERSE | TOP_HALF | BOTTOM_HALF | MIDDLE_OUT
    grease: bool
    rare_alpn: bool
    supported_versions: str  # "1.2" | "1.3" | "none": the supported_versions extension's list
    ext_order: str  # FORWARD | REVERSE: order of the ALPN and supported_versions lists


JARM_PROBES = (
    JarmProbe("1.2", "ALL", "FORWARD", False, False, "1.2", "REVERSE"),
    JarmProbe("1.2", "ALL", "REVERSE", False, False, "1.2", "FORWARD"),
    JarmProbe("1.2", "ALL", "TOP_HALF", False, False, "none", "FORWARD"),
    JarmProbe("1.2", "ALL", "BOTTOM_HALF", False, True, "none", "FORWARD"),
    JarmProbe("1.2", "ALL", "MIDDLE_OUT", True, True, "none", "REVERSE"),
    JarmProbe("1.1", "ALL", "FORWARD", False, False, "none", "FORWARD"),
    JarmProbe("1.3", "ALL", "FORWARD", False, False, "1.3", "REVERSE"),
    JarmProbe("1.3", "ALL", "REVERSE", False, False, "1.3", "FORWARD"),
    JarmProbe("1.3", "NO1.3", "FORWARD", False, False, "1.3", "FORWARD"),
    JarmProbe("1.3", "ALL", "MIDDLE_OUT", True, False, "1.3", "REVERSE"),
)


T = TypeVar("T")


def reorder(items: list[T], how: str) -> list[T]:
    """jarm.py's list re-orderings (its `cipher_mung`)."""
    n = len(items)
    if how == "FORWARD":
        return list(items)
    if how == "REVERSE":
        return list(items)[::-1]
    if how == "BOTTOM_HALF":
        return list(items)[n // 2 + 1:] if n % 2 else list(items)[n // 2:]
    if how == "TOP_HALF":  # the upper half, reversed; an odd list starts with its middle element
        return ([items[n // 2]] if n % 2 else []) + reorder(reorder(items, "REVERSE"), "BOTTOM_HALF")
    if how == "MIDDLE_OUT":  # from the middle outwards, the later element of each pair first
        m = n // 2
        out = [items[m]] if n % 2 else []
        for i in range(1, m + 1):
            out += [items[m + i], items[m - i]] if n % 2 else [items[m - 1 + i], items[m - i]]
        return out
    raise ValueError(f"unknown order {how!r}")


def _ext(kind: int, body: bytes) -> bytes:
    return struct.pack(">HH", kind, len(body)) + body


def _sni(host: str) -> bytes:
    name = host.encode("idna") if any(c.isalpha() for c in host) and not host.isascii() else host.encode()
    entry = b"\x00" + struct.pack(">H", len(name)) + name
    return _ext(0x0000, struct.pack(">H", len(entry)) + entry)


def _hello(record_version: int, client_version: int, ciphers: list[int], extensions: bytes,
           rand: Callable[[int], bytes]) -> bytes:
    body = struct.pack(">H", client_version) + rand(32) + b"\x20" + rand(32)
    body += struct.pack(">H", 2 * len(ciphers)) + b"".join(struct.pack(">H", c) for c in ciphers)
    body += b"\x01\x00"  # one compression method: null
    body += struct.pack(">H", len(extensions)) + extensions
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16" + struct.pack(">HH", record_version, len(hs)) + hs


def jarm_hello(p: JarmProbe, host: str, rand: Callable[[int], bytes] = os.urandom,
               grease: Callable[[], int] | None = None) -> bytes:
    """One of JARM's ClientHellos for `host` (its SNI; jarm.py sends the target as given, an
    address too)."""
    pick = grease or (lambda: GREASE[rand(1)[0] % 16])
    ciphers = JARM_CIPHERS_ALL if p.ciphers == "ALL" else JARM_CIPHERS_NO13
    ciphers = reorder(ciphers, p.order)
    if p.grease:
        ciphers = [pick(), *ciphers]
    ext = b""
    if p.grease:
        ext += struct.pack(">H", pick()) + b"\x00\x00"
    ext += _sni(host)
    ext += _ext(0x0017, b"")  # extended_master_secret
    ext += _ext(0x0001, b"\x01")  # max_fragment_length 2^9
    ext += _ext(0xFF01, b"\x00")  # renegotiation_info
    ext += _ext(0x000A, bytes.fromhex("0008001d001700180019"))  # supported_groups: x25519, P-256, P-384, P-521
    ext += _ext(0x000B, b"\x01\x00")  # ec_point_formats: uncompressed
    ext += _ext(0x0023, b"")  # session_ticket
    alpns = reorder(JARM_ALPN_RARE if p.rare_alpn else JARM_ALPN_ALL, p.ext_order)
    names = b"".join(alpns)
    ext += _ext(0x0010, struct.pack(">H", len(names)) + names)
    ext += _ext(0x000D, bytes.fromhex("0012" "0403" "0804" "0401" "0503" "0805" "0501" "0806" "0601" "0201"))
    share = (struct.pack(">H", pick()) + b"\x00\x01\x00" if p.grease else b"") + b"\x00\x1d\x00\x20" + rand(32)
    ext += _ext(0x0033, struct.pack(">H", len(share)) + share)
    ext += _ext(0x002D, b"\x01\x01")  # psk_key_exchange_modes: psk_dhe_ke
    if p.version == "1.3" or p.supported_versions == "1.2":
        vers = [0x0301, 0x0302, 0x0303] + ([0x0304] if p.supported_versions == "1.3" else [])
        vers = reorder(vers, p.ext_order)
        vb = (struct.pack(">H", pick()) if p.grease else b"") + b"".join(struct.pack(">H", v) for v in vers)
        ext += _ext(0x002B, bytes([len(vb)]) + vb)
    record, client = {"1.1": (0x0302, 0x0302), "1.2": (0x0303, 0x0303), "1.3": (0x0301, 0x0303)}[p.version]
    return _hello(record, client, ciphers, ext, rand)


# hostprint's own ClientHello for JA3S: what an ordinary TLS 1.3/1.2 client offers, fixed.
JA3S_CIPHERS = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC009, 0xC013, 0xC00A,
                0xC014, 0x009C, 0x009D, 0x002F, 0x0035]


def ja3s_hello(host: str | None, rand: Callable[[int], bytes] = os.urandom) -> bytes:
    """The ClientHello whose ServerHello JA3S hashes. SNI only for a host name (RFC 6066 §3: no
    literal addresses)."""
    ext = _sni(host) if host else b""
    ext += _ext(0x0017, b"")  # extended_master_secret
    ext += _ext(0xFF01, b"\x00")  # renegotiation_info
    ext += _ext(0x000A, bytes.fromhex("0006001d00170018"))  # x25519, P-256, P-384
    ext += _ext(0x000B, b"\x01\x00")
    ext += _ext(0x0023, b"")
    ext += _ext(0x0010, struct.pack(">H", 12) + _alpn(b"h2", b"http/1.1"))
    ext += _ext(0x0005, b"\x01\x00\x00\x00\x00")  # status_request (OCSP)
    sigalgs = [0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0201]
    ext += _ext(0x000D, struct.pack(">H", 2 * len(sigalgs)) + b"".join(struct.pack(">H", a) for a in sigalgs))
    ext += _ext(0x0033, bytes.fromhex("0024001d0020") + rand(32))
    ext += _ext(0x002D, b"\x01\x01")
    ext += _ext(0x002B, b"\x04\x03\x04\x03\x03")  # TLS 1.3, TLS 1.2
    return _hello(0x0301, 0x0303, JA3S_CIPHERS, ext, rand)


# ---------------------------------------------------------------------------- connections

JARM_READ = 1484  # jarm.py reads one recv(1484): what it hashes is in those bytes


async def first_flight(addr: str, port: int, hello: bytes, timeout: float, cap: int = 16384,
                       whole_hello: bool = True) -> bytes | str | None:
    """Send `hello`, read the server's first flight: until the first handshake message (the
    ServerHello) is complete (`whole_hello`) or the first record is, `cap` bytes, EOF or quiet.
    Returns the bytes, TIMEOUT when nothing came in `timeout`, None when the connection failed."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(addr, port), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        return TIMEOUT
    except OSError:
        return None
    try:
        writer.write(hello)
        await asyncio.wait_for(writer.drain(), timeout)
        buf = b""
        wait = timeout
        while len(buf) < cap:
            try:
                chunk = await asyncio.wait_for(reader.read(cap - len(buf)), wait)
            except (asyncio.TimeoutError, TimeoutError):
                return buf if buf else TIMEOUT
            if not chunk:
                break
            buf += chunk
            if _complete(buf, whole_hello):
                break
            wait = min(wait, 1.0)
        return buf
    except (ConnectionError, OSError):
        return None
    except (asyncio.TimeoutError, TimeoutError):
        return TIMEOUT
    finally:
        writer.transport.abort()


def _complete(buf: bytes, whole_hello: bool) -> bool:
    if len(buf) < 5:
        return False
    if buf[0] != 0x16:  # an alert or anything else: one record is all there is to read
        return len(buf) >= 5 + int.from_bytes(buf[3:5], "big")
    if not whole_hello:
        return len(buf) >= 5 + int.from_bytes(buf[3:5], "big")
    return parse_server_hello(buf) is not None


async def jarm(addr: str, port: int, host: str | None, timeout: float,
               sem: AbstractAsyncContextManager[object] | None = None) -> tuple[str, str]:
    """(JARM, the ten raw answers joined by ','). Any probe that times out makes the whole JARM
    zero, as in the definition."""
    async def one(p: JarmProbe) -> bytes | str | None:
        if sem is None:
            return await first_flight(addr, port, jarm_hello(p, host or addr), timeout, JARM_READ, False)
        async with sem:
            return await first_flight(addr, port, jarm_hello(p, host or addr), timeout, JARM_READ, False)

    answers = await asyncio.gather(*(one(p) for p in JARM_PROBES))
    if any(a == TIMEOUT for a in answers):
        raw = ",".join(["|||"] * len(JARM_PROBES))
    else:
        raw = ",".join(jarm_answer(a if isinstance(a, bytes) else None) for a in answers)
    return jarm_hash(raw), raw


async def ja3s_of(addr: str, port: int, host: str | None, timeout: float) -> tuple[ServerHello | None, str | None]:
    """The server's answer to `ja3s_hello`: (parsed ServerHello, why not)."""
    got = await first_flight(addr, port, ja3s_hello(host), timeout)
    if got == TIMEOUT:
        return None, "no ServerHello (timeout)"
    if not isinstance(got, bytes) or not got:
        return None, "connection failed"
    sh = parse_server_hello(got)
    if sh is None:
        return None, "alert" if got[:1] == b"\x15" else "no ServerHello"
    return sh, None


__all__ = ["JARM_PROBES", "JarmProbe", "ja3s", "ja3s_hello", "ja3s_of", "jarm", "jarm_hello", "reorder"]
