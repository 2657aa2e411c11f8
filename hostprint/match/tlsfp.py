"""JA3S and JARM from a server's answers (pure functions; probes/tls_probes.py sends the hellos).

JA3S (salesforce/ja3 README, "JA3S"): the ServerHello's SSLVersion, Cipher and the list of its
extension types, as decimal numbers joined "," between fields and "-" inside the list, MD5 hashed.
SSLVersion is the ServerHello's version field (771 for TLS 1.2 and 1.3 alike: TLS 1.3 names
itself in supported_versions, which JA3S sees as extension 43). GREASE values (RFC 8701) are left
out as JA3 leaves them out.

JARM (salesforce/jarm, jarm.py 1.0): each of ten ServerHellos becomes "cipher|version|alpn|
extensions" read at fixed offsets from the first 1,484 bytes ("|||" for an alert, a refused or
failed connection, or anything that is not a ServerHello); the fuzzy hash is, per answer, the
cipher's 1-based position in JARM's sorted cipher list as two hex digits and one letter for the
version ("a" SSL 3.0 … "d" TLS 1.2 and 1.3; "0" none), then the first 32 hex digits of SHA-256 over
the concatenated ALPN and extension strings. Ten refusals give 62 zeros; a time-out on any probe
makes the whole JARM zeros. The offset arithmetic and its error cases (a ServerHello without
extensions, truncated answers) follow the definition so that our JARM equals everyone's.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

TIMEOUT = "TIMEOUT"
GREASE = frozenset(0x0A0A + 0x1010 * i for i in range(16))
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")  # RFC 8446 §4.1.3

# JARM's cipher list for the fuzzy hash (jarm.py `cipher_bytes`): a cipher's 1-based index here.
JARM_HASH_CIPHERS = [
    0x0004, 0x0005, 0x0007, 0x000A, 0x0016, 0x002F, 0x0033, 0x0035, 0x0039, 0x003C, 0x003D, 0x0041, 0x0045,
    0x0067, 0x006B, 0x0084, 0x0088, 0x009A, 0x009C, 0x009D, 0x009E, 0x009F, 0x00BA, 0x00BE, 0x00C0, 0x00C4,
    0xC007, 0xC008, 0xC009, 0xC00A, 0xC011, 0xC012, 0xC013, 0xC014, 0xC023, 0xC024, 0xC027, 0xC028, 0xC02B,
    0xC02C, 0xC02F, 0xC030, 0xC060, 0xC061, 0xC072, 0xC073, 0xC076, 0xC077, 0xC09C, 0xC09D, 0xC09E, 0xC09F,
    0xC0A0, 0xC0A1, 0xC0A2, 0xC0A3, 0xC0AC, 0xC0AD, 0xC0AE, 0xC0AF, 0xCC13, 0xCC14, 0xCCA8, 0xCCA9, 0x1301,
    0x1302, 0x1303, 0x1304, 0x1305]
_CIPHER_INDEX = {f"{c:04x}": i + 1 for i, c in enumerate(JARM_HASH_CIPHERS)}

TLS_VERSIONS = {0x0300: "SSLv3", 0x0301: "TLSv1", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}


@dataclass
class ServerHello:
    """A parsed ServerHello (RFC 8446 §4.1.3; RFC 5246 §7.4.1.3)."""

    legacy_version: int
    random: bytes
    session_id: bytes
    cipher: int
    compression: int
    extensions: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def retry_request(self) -> bool:
        """A HelloRetryRequest (TLS 1.3's "send another key share"), which has ServerHello's shape."""
        return self.random == HRR_RANDOM

    @property
    def version(self) -> int:
        """The negotiated version: supported_versions when present (TLS 1.3), else the version field."""
        for t, body in self.extensions:
            if t == 43 and len(body) == 2:
                return int(struct.unpack(">H", body)[0])
        return self.legacy_version

    @property
    def alpn(self) -> str | None:
        """The chosen protocol (TLS <= 1.2 only: TLS 1.3 sends it encrypted)."""
        for t, body in self.extensions:
            if t == 16 and len(body) >= 3:
                return body[3:3 + body[2]].decode("ascii", errors="replace")
        return None


def _handshake_bytes(data: bytes) -> bytes:
    """The handshake-protocol bytes of the leading handshake records (RFC 8446 §5.1)."""
    out = b""
    i = 0
    while i + 5 <= len(data) and data[i] == 0x16:
        n = int.from_bytes(data[i + 3:i + 5], "big")
        out += data[i + 5:i + 5 + n]
        if i + 5 + n > len(data):
            break
        i += 5 + n
    return out


def parse_server_hello(data: bytes) -> ServerHello | None:
    """The first handshake message if it is a complete ServerHello, else None."""
    hs = _handshake_bytes(data)
    if len(hs) < 4 or hs[0] != 2:
        return None
    n = int.from_bytes(hs[1:4], "big")
    body = hs[4:4 + n]
    if len(body) < n or n < 38:
        return None
    try:
        ver = int.from_bytes(body[0:2], "big")
        rnd = body[2:34]
        sl = body[34]
        sid = body[35:35 + sl]
        p = 35 + sl
        cipher = int.from_bytes(body[p:p + 2], "big")
        comp = body[p + 2]
        p += 3
        exts: list[tuple[int, bytes]] = []
        if p + 2 <= len(body):
            total = int.from_bytes(body[p:p + 2], "big")
            p += 2
            end = min(len(body), p + total)
            while p + 4 <= end:
                t, ln = struct.unpack(">HH", body[p:p + 4])
                exts.append((t, body[p + 4:p + 4 + ln]))
                p += 4 + ln
    except IndexError:
        return None
    return ServerHello(ver, rnd, sid, cipher, comp, exts)


def ja3s_string(sh: ServerHello) -> str:
    exts = "-".join(str(t) for t, _ in sh.extensions if t not in GREASE)
    return f"{sh.legacy_version},{sh.cipher},{exts}"


def ja3s(sh: ServerHello) -> tuple[str, str]:
    """(JA3S, the string it hashes)."""
    s = ja3s_string(sh)
    return hashlib.md5(s.encode()).hexdigest(), s


def ja3(client_hello: bytes) -> tuple[str, str]:
    """(JA3, its string) of a ClientHello record (salesforce/ja3 README: SSLVersion, Cipher,
    SSLExtension, EllipticCurve, EllipticCurvePointFormat; GREASE left out). hostprint uses it to
    say which client its JA3S answers (tests check it against the README's published examples)."""
    try:
        return _ja3(client_hello)
    except (IndexError, struct.error):
        raise ValueError("truncated ClientHello") from None


def _ja3(client_hello: bytes) -> tuple[str, str]:
    hs = _handshake_bytes(client_hello)
    if len(hs) < 4 or hs[0] != 1:
        raise ValueError("not a ClientHello")
    b = hs[4:4 + int.from_bytes(hs[1:4], "big")]
    ver = int.from_bytes(b[0:2], "big")
    p = 34 + 1 + b[34]
    n = int.from_bytes(b[p:p + 2], "big")
    ciphers = [int.from_bytes(b[i:i + 2], "big") for i in range(p + 2, p + 2 + n, 2)]
    p += 2 + n
    p += 1 + b[p]
    exts: list[int] = []
    curves: list[int] = []
    formats: list[int] = []
    if p + 2 <= len(b):
        end = p + 2 + int.from_bytes(b[p:p + 2], "big")
        p += 2
        while p + 4 <= end:
            t, ln = struct.unpack(">HH", b[p:p + 4])
            body = b[p + 4:p + 4 + ln]
            if t not in GREASE:
                exts.append(t)
            if t == 10 and len(body) >= 2:
                curves = [int.from_bytes(body[i:i + 2], "big") for i in range(2, 2 + int.from_bytes(body[:2], "big"), 2)]
            if t == 11 and body:
                formats = list(body[1:1 + body[0]])
            p += 4 + ln
    fields = [str(ver), "-".join(str(c) for c in ciphers if c not in GREASE), "-".join(map(str, exts)),
              "-".join(str(c) for c in curves if c not in GREASE), "-".join(map(str, formats))]
    s = ",".join(fields)
    return hashlib.md5(s.encode()).hexdigest(), s


def _int16(b: bytes) -> int:
    """jarm.py reads lengths with int(hex, 16): an empty slice is an error there, not 0."""
    if not b:
        raise ValueError("short answer")
    return int.from_bytes(b, "big")


def _jarm_extensions(data: bytes, sid: int) -> str:
    """'alpn|ext-ext-…' of one ServerHello at jarm.py's offsets; '|||' where it gives up."""
    try:
        if data[sid + 47] == 11:  # no extensions: the next record's Certificate message is here
            return "|||"
    except IndexError:
        return "|||"
    if data[sid + 50:sid + 53] == b"\x0e\xac\x0b" or data[82:85] == b"\x0f\xf0\x0b":
        return "|||"
    count = 49 + sid
    length = _int16(data[sid + 47:sid + 49])
    maximum = length + count - 1
    types: list[bytes] = []
    values: list[bytes | None] = []
    while count < maximum:
        types.append(data[count:count + 2])
        n = _int16(data[count + 2:count + 4])
        if n == 0:
            count += 4
            values.append(None)
        else:
            values.append(data[count + 4:count + 4 + n])
            count += n + 4
    alpn = ""
    for t, v in zip(types, values):
        if t == b"\x00\x10":
            if v is None:
                raise ValueError("empty ALPN extension")
            alpn = v[3:].decode()  # raises on non-UTF-8, as jarm.py does
            break
    return alpn + "|" + "-".join(t.hex() for t in types)


def jarm_answer(data: bytes | None) -> str:
    """One probe's 'cipher|version|alpn|extensions' (jarm.py `read_packet`)."""
    if not data:
        return "|||"
    try:
        if data[0] == 21:
            return "|||"
        if data[0] == 22 and data[5] == 2:
            sid = data[43]
            cipher = data[sid + 44:sid + 46].hex()
            version = data[9:11].hex()
            return f"{cipher}|{version}|{_jarm_extensions(data, sid)}"
        return "|||"
    except (IndexError, ValueError):
        return "|||"


def _cipher_byte(c: str) -> str:
    if not c:
        return "00"
    return f"{_CIPHER_INDEX.get(c, len(JARM_HASH_CIPHERS) + 1):02x}"


def _version_byte(v: str) -> str:
    if not v:
        return "0"
    d = v[3:4]
    return "abcdef"[int(d)] if d.isdigit() and int(d) < 6 else "0"


def jarm_hash(raw: str) -> str:
    """The 62-character JARM of ten answers joined by ','."""
    answers = raw.split(",")
    if all(a == "|||" for a in answers):
        return "0" * 62
    fuzzy = ""
    tail = ""
    for a in answers:
        parts = a.split("|")
        parts += [""] * (4 - len(parts))
        fuzzy += _cipher_byte(parts[0]) + _version_byte(parts[1])
        tail += parts[2] + parts[3]
    return fuzzy + hashlib.sha256(tail.encode()).hexdigest()[:32]
