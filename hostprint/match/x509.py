"""Just enough DER to read a server certificate's subject, issuer, validity and SANs.

Why our own: the TLS facts in a service report need four fields, and the stdlib's ssl module
only decodes certificates it has verified (we never verify: we identify). A few dozen lines of
DER (ITU-T X.690) over the RFC 5280 Certificate layout avoid a dependency on `cryptography`.
Malformed input raises DerError and never anything else.
"""

from __future__ import annotations

import hashlib
import ipaddress
from datetime import datetime, timezone
from typing import Any


class DerError(ValueError):
    pass


# RFC 4514 §3 short names (and RFC 5280 Appendix A attribute OIDs)
ATTR_NAMES = {"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O",
              "2.5.4.11": "OU", "2.5.4.9": "STREET", "0.9.2342.19200300.100.1.25": "DC",
              "0.9.2342.19200300.100.1.1": "UID", "1.2.840.113549.1.9.1": "emailAddress",
              "2.5.4.5": "serialNumber"}
OID_SAN = "2.5.29.17"
KEY_ALGS = {"1.2.840.113549.1.1.1": "RSA", "1.2.840.10045.2.1": "EC", "1.3.101.112": "Ed25519",
            "1.3.101.113": "Ed448", "1.2.840.10040.4.1": "DSA"}


def _tlv(b: bytes, i: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the element at b[i]."""
    if i + 2 > len(b):
        raise DerError("truncated")
    tag = b[i]
    n = b[i + 1]
    j = i + 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or j + k > len(b):
            raise DerError("bad length")
        n = int.from_bytes(b[j:j + k], "big")
        j += k
    if j + n > len(b):
        raise DerError("element runs past the end")
    return tag, j, j + n


def _children(b: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    i = start
    while i < end:
        t, s, e = _tlv(b, i)
        out.append((t, s, e))
        i = e
    return out


def _oid(v: bytes) -> str:
    if not v:
        raise DerError("empty OID")
    parts = [v[0] // 40, v[0] % 40]
    n = 0
    for c in v[1:]:
        n = (n << 7) | (c & 0x7F)
        if not c & 0x80:
            parts.append(n)
            n = 0
    return ".".join(map(str, parts))


def _name(b: bytes, s: int, e: int) -> str:
    """RDNSequence -> RFC 4514 string (last RDN first)."""
    rdns = []
    for _t, rs, re_ in _children(b, s, e):  # SET
        avas = []
        for _t2, as_, ae in _children(b, rs, re_):  # SEQUENCE {oid, value}
            kids = _children(b, as_, ae)
            if len(kids) != 2:
                raise DerError("bad AttributeTypeAndValue")
            oid = _oid(b[kids[0][1]:kids[0][2]])
            val = b[kids[1][1]:kids[1][2]]
            text = val.decode("utf-16-be" if kids[1][0] == 0x1E else "utf-8", errors="replace")
            text = text.replace("\\", "\\\\").replace(",", "\\,").replace("+", "\\+")
            avas.append(f"{ATTR_NAMES.get(oid, oid)}={text}")
        rdns.append("+".join(avas))
    return ",".join(reversed(rdns))


def _time(tag: int, v: bytes) -> str:
    s = v.decode("ascii", errors="replace")
    fmt = "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ"
    try:
        return datetime.strptime(s, fmt).replace(tzinfo=timezone.utc).isoformat()
    except ValueError:
        raise DerError(f"bad time {s!r}") from None


def parse(der: bytes) -> dict[str, Any]:
    _t, cs, ce = _tlv(der, 0)
    tbs_t, ts, te = _children(der, cs, ce)[0]
    f = _children(der, ts, te)
    if f and f[0][0] == 0xA0:  # [0] version
        f = f[1:]
    if len(f) < 6:
        raise DerError("short TBSCertificate")
    serial, _sig, issuer, validity, subject, spki = f[:6]
    nb, na = _children(der, validity[1], validity[2])[:2]
    alg = _children(der, *_children(der, spki[1], spki[2])[0][1:])[0]
    out: dict[str, Any] = {
        "subject": _name(der, subject[1], subject[2]),
        "issuer": _name(der, issuer[1], issuer[2]),
        "not_before": _time(nb[0], der[nb[1]:nb[2]]),
        "not_after": _time(na[0], der[na[1]:na[2]]),
        "serial": der[serial[1]:serial[2]].hex().lstrip("0") or "0",
        "key": KEY_ALGS.get(_oid(der[alg[1]:alg[2]]), _oid(der[alg[1]:alg[2]])),
        "sans": [],
    }
    out["self_signed"] = der[subject[1]:subject[2]] == der[issuer[1]:issuer[2]]
    for t, s, e in f[6:]:
        if t != 0xA3:  # [3] extensions
            continue
        for _t, xs, xe in _children(der, *_children(der, s, e)[0][1:]):
            kids = _children(der, xs, xe)
            if _oid(der[kids[0][1]:kids[0][2]]) != OID_SAN:
                continue
            octets = kids[-1]
            _gt, gs, ge = _tlv(der, octets[1])
            for gt, vs, ve in _children(der, gs, ge):
                if gt == 0x82:  # dNSName
                    out["sans"].append(der[vs:ve].decode("ascii", errors="replace"))
                elif gt == 0x87:  # iPAddress
                    try:
                        out["sans"].append(str(ipaddress.ip_address(der[vs:ve])))
                    except ValueError:
                        pass
    return out


def cert_facts(der: bytes) -> dict[str, Any]:
    """Fingerprints always; the parsed fields when the DER is readable (never raises)."""
    facts: dict[str, Any] = {"sha256": hashlib.sha256(der).hexdigest(), "sha1": hashlib.sha1(der).hexdigest()}
    try:
        facts.update(parse(der))
    except (DerError, IndexError, ValueError) as e:
        facts["error"] = f"unparsable certificate: {e}"
    return facts
