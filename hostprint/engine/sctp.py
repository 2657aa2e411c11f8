"""SCTP common header and INIT chunk (RFC 9260, which obsoletes RFC 4960), with the CRC32c
checksum SCTP uses instead of the Internet checksum (RFC 9260 appendix A; RFC 3309).

Only what the IP protocol scan needs: an INIT to a port (a stack that speaks SCTP answers it,
with INIT-ACK from a listener or ABORT from a closed port) and reading the common header of the
answer (ports and verification tag: the tag of an ABORT that answers an INIT is the INIT's
Initiate Tag, RFC 9260 section 8.4 rule 3 / 8.5.1).
"""

from __future__ import annotations

import struct

INIT, INIT_ACK, ABORT = 1, 2, 6

_POLY = 0x82F63B78  # Castagnoli, reflected


def _table() -> list[int]:
    out = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        out.append(c)
    return out


_TABLE = _table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC32c of `data` (crc32c(b"123456789") == 0xE3069283, RFC 3720 B.4's check value)."""
    c = crc ^ 0xFFFFFFFF
    t = _TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def packet(sport: int, dport: int, vtag: int, chunks: bytes) -> bytes:
    """Common header + chunks with the checksum filled in (sent in the byte order the CRC is
    computed, i.e. the little-endian image of the value, as every stack writes it)."""
    body = struct.pack("!HHII", sport, dport, vtag, 0) + chunks
    return body[:8] + struct.pack("<I", crc32c(body)) + body[12:]


def init_chunk(initiate_tag: int, tsn: int, a_rwnd: int = 32768, out_streams: int = 10, in_streams: int = 2048) -> bytes:
    """An INIT chunk without parameters (nmap's -sO and -sY values: a_rwnd 32768, 10 outbound
    and 2048 inbound streams)."""
    return struct.pack("!BBHIIHHI", INIT, 0, 20, initiate_tag, a_rwnd, out_streams, in_streams, tsn)


def header(data: bytes) -> tuple[int, int, int, int] | None:
    """(source port, destination port, verification tag, first chunk type) or None when short."""
    if len(data) < 13:
        return None
    sport, dport, vtag = struct.unpack_from("!HHI", data)
    return sport, dport, vtag, data[12]


def checksum_ok(data: bytes) -> bool:
    if len(data) < 12:
        return False
    zeroed = data[:8] + b"\0\0\0\0" + data[12:]
    return struct.unpack_from("<I", data, 8)[0] == crc32c(zeroed)
