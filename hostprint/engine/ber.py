"""ASN.1 BER, as much as SNMP (RFC 3416) and LDAP (RFC 4511) messages need (ITU-T X.690).

Encoding builds definite-length TLVs from nested tuples; decoding walks a buffer into `Tlv`s and
never trusts a length (a short or overlong one is a BerError, never an exception of another kind).
"""

from __future__ import annotations

from dataclasses import dataclass

# universal tags
INTEGER, OCTET_STRING, NULL, OID, ENUMERATED, SEQUENCE, SET, BOOLEAN = 0x02, 0x04, 0x05, 0x06, 0x0A, 0x30, 0x31, 0x01


class BerError(ValueError):
    pass


def length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + length(len(value)) + value


def integer(v: int, tag: int = INTEGER) -> bytes:
    n = max(1, (v.bit_length() + 8) // 8)
    return tlv(tag, v.to_bytes(n, "big", signed=True))


def octets(v: bytes | str, tag: int = OCTET_STRING) -> bytes:
    return tlv(tag, v.encode() if isinstance(v, str) else v)


def null() -> bytes:
    return tlv(NULL, b"")


def boolean(v: bool) -> bytes:
    return tlv(BOOLEAN, b"\xff" if v else b"\x00")


def oid(dotted: str) -> bytes:
    parts = [int(x) for x in dotted.strip(".").split(".")]
    if len(parts) < 2:
        raise BerError(f"bad OID {dotted!r}")
    body = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        body += bytes(reversed(chunk))
    return tlv(OID, bytes(body))


def seq(*items: bytes, tag: int = SEQUENCE) -> bytes:
    return tlv(tag, b"".join(items))


@dataclass
class Tlv:
    tag: int
    value: bytes

    @property
    def constructed(self) -> bool:
        return bool(self.tag & 0x20)

    def children(self) -> list[Tlv]:
        return decode_all(self.value)

    def num(self) -> int:
        if not self.value:
            raise BerError("empty INTEGER")
        return int.from_bytes(self.value, "big", signed=self.tag == INTEGER or self.tag == ENUMERATED)

    def unum(self) -> int:
        return int.from_bytes(self.value, "big")

    def oid(self) -> str:
        v = self.value
        if not v:
            raise BerError("empty OID")
        out = [v[0] // 40 if v[0] < 80 else 2, v[0] % 40 if v[0] < 80 else v[0] - 80]
        n = 0
        for b in v[1:]:
            n = (n << 7) | (b & 0x7F)
            if not b & 0x80:
                out.append(n)
                n = 0
        return ".".join(map(str, out))

    def text(self) -> str:
        return self.value.decode("utf-8", "replace")


def decode(buf: bytes, off: int = 0) -> tuple[Tlv, int]:
    """One TLV at `off` and the offset after it."""
    if off + 2 > len(buf):
        raise BerError("short TLV")
    tag = buf[off]
    if tag & 0x1F == 0x1F:
        raise BerError("multi-byte tags are not used by SNMP or LDAP")
    n = buf[off + 1]
    off += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or off + k > len(buf):
            raise BerError("bad length")
        n = int.from_bytes(buf[off:off + k], "big")
        off += k
    if off + n > len(buf):
        raise BerError("length beyond the buffer")
    return Tlv(tag, bytes(buf[off:off + n])), off + n


def decode_all(buf: bytes) -> list[Tlv]:
    out = []
    off = 0
    while off < len(buf):
        t, off = decode(buf, off)
        out.append(t)
    return out
