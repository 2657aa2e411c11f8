"""A server certificate's facts, read with `cryptography` (pyca/cryptography's X.509 parser).

Why `cryptography`: key sizes, curve names, signature algorithms and extensions are what the
report needs, and a hand-written DER reader grows a bug per field; pyca's parser is the one the
Python ecosystem keeps correct. We never verify a chain (we identify, we do not trust): the
certificate is read as the server sent it. Malformed input never raises: the fingerprints are
always there, the rest is filled as far as it parses and `error` says what did not.

Output keys are those of the old DER reader (subject, issuer, not_before, not_after, serial, key,
sans, self_signed, sha256, sha1) plus nmap ssl-cert's (md5, key bits, signature algorithm, pem)
and the validity flags; see `model.CertFacts`.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from datetime import datetime, timezone
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from hostprint.model import CertFacts

# RFC 4514 §3 short names (OpenSSL's RFC2253 output adds the others it knows)
SHORT = {NameOID.COMMON_NAME: "CN", NameOID.COUNTRY_NAME: "C", NameOID.LOCALITY_NAME: "L",
         NameOID.STATE_OR_PROVINCE_NAME: "ST", NameOID.ORGANIZATION_NAME: "O",
         NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.STREET_ADDRESS: "STREET",
         NameOID.DOMAIN_COMPONENT: "DC", NameOID.USER_ID: "UID", NameOID.EMAIL_ADDRESS: "emailAddress",
         NameOID.SERIAL_NUMBER: "serialNumber"}


# Where pyca's signature algorithm names differ from OpenSSL's (what nmap's ssl-cert and
# `openssl x509 -text` print)
OPENSSL_SIG_NAMES = {"ed25519": "ED25519", "ed448": "ED448", "RSASSA-PSS": "rsassaPss", "dsa-with-sha1": "dsaWithSHA1",
                     "dsa-with-sha224": "dsa_with_SHA224", "dsa-with-sha256": "dsa_with_SHA256"}


def _escape(v: str) -> str:
    """RFC 4514 §2.4 escaping of an attribute value."""
    out = []
    for i, c in enumerate(v):
        if c in ',+"\\<>;' or (c == "#" and i == 0) or (c == " " and i in (0, len(v) - 1)):
            out.append("\\" + c)
        elif c == "\0":
            out.append("\\00")
        else:
            out.append(c)
    return "".join(out)


def _value(v: str | bytes) -> str:
    return v if isinstance(v, str) else v.decode("utf-8", errors="replace")


def name_string(name: x509.Name) -> str:
    """RFC 4514 string, last RDN first (as `openssl x509 -nameopt RFC2253` prints it)."""
    rdns = []
    for rdn in name.rdns:
        rdns.append("+".join(f"{SHORT.get(a.oid, a.oid.dotted_string)}={_escape(_value(a.value))}" for a in rdn))
    return ",".join(reversed(rdns))


def name_attrs(name: x509.Name) -> list[list[str]]:
    """[long name, value] in certificate order; nmap's ssl-cert keys (commonName, organizationName …;
    an unknown attribute is its dotted OID, as nmap prints it)."""
    out = []
    for a in name:
        long_name = a.oid._name if a.oid._name != "Unknown OID" else a.oid.dotted_string
        out.append([long_name, _value(a.value)])
    return out


def _key(cert: x509.Certificate) -> tuple[str | None, int | None, str | None]:
    """(type, bits, curve) of the subject public key."""
    try:
        k = cert.public_key()
    except (ValueError, TypeError) as e:  # an algorithm this cryptography build does not know
        oid = cert.public_key_algorithm_oid.dotted_string if hasattr(cert, "public_key_algorithm_oid") else None
        return oid or f"unknown ({e})", None, None
    if isinstance(k, rsa.RSAPublicKey):
        return "RSA", k.key_size, None
    if isinstance(k, ec.EllipticCurvePublicKey):
        return "EC", k.curve.key_size, k.curve.name
    if isinstance(k, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, None
    if isinstance(k, ed448.Ed448PublicKey):
        return "Ed448", 456, None
    if isinstance(k, dsa.DSAPublicKey):
        return "DSA", k.key_size, None
    return type(k).__name__, None, None


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out: list[str] = []
    for g in ext:
        if isinstance(g, x509.DNSName):
            out.append(g.value)
        elif isinstance(g, x509.IPAddress):
            out.append(str(g.value))
        elif isinstance(g, x509.RFC822Name):
            out.append(f"email:{g.value}")
        elif isinstance(g, x509.UniformResourceIdentifier):
            out.append(f"URI:{g.value}")
        elif isinstance(g, x509.DirectoryName):
            out.append(f"DirName:{name_string(g.value)}")
    return out


def _self_signed(cert: x509.Certificate) -> bool:
    """Issuer equals subject and the signature verifies with the certificate's own key."""
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except Exception:  # noqa: BLE001 - any failure (bad signature, unsupported key) means "not shown"
        return False
    return True


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


def cert_facts(der: bytes, now: datetime | None = None) -> CertFacts:
    """Fingerprints always; every field that parses; `error` for what did not (never raises)."""
    f = CertFacts(sha256=hashlib.sha256(der).hexdigest(), sha1=hashlib.sha1(der).hexdigest(),
                  md5=hashlib.md5(der).hexdigest())
    f.pem = "-----BEGIN CERTIFICATE-----\n" + "\n".join(
        base64.b64encode(der).decode()[i:i + 64] for i in range(0, len(base64.b64encode(der)), 64)) \
        + "\n-----END CERTIFICATE-----\n"
    try:
        cert = x509.load_der_x509_certificate(der)
    except Exception as e:  # noqa: BLE001 - ValueError, and InvalidVersion which is not one: never raise
        f.error = f"unparsable certificate: {e}"
        return f
    errors: list[str] = []

    def part(what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - one bad field must not hide the others
            errors.append(f"{what}: {e}")

    def names() -> None:
        f.subject, f.issuer = name_string(cert.subject), name_string(cert.issuer)
        f.subject_attrs, f.issuer_attrs = name_attrs(cert.subject), name_attrs(cert.issuer)

    def validity() -> None:
        nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
        f.not_before, f.not_after = _iso(nb), _iso(na)
        t = now or datetime.now(timezone.utc)
        f.expired, f.not_yet_valid = t > na, t < nb

    def key() -> None:
        f.key, f.key_bits, f.curve = _key(cert)

    def sig() -> None:
        oid = cert.signature_algorithm_oid
        name = oid._name if oid._name != "Unknown OID" else oid.dotted_string
        f.sig_alg = OPENSSL_SIG_NAMES.get(name, name)

    def sans() -> None:
        f.sans = _sans(cert)

    def serial() -> None:
        f.serial = format(cert.serial_number, "x")

    def self_signed() -> None:
        f.self_signed = _self_signed(cert)

    for what, fn in (("names", names), ("validity", validity), ("key", key), ("signature algorithm", sig),
                     ("subjectAltName", sans), ("serial", serial), ("self-signed check", self_signed)):
        part(what, fn)
    if errors:
        f.error = "; ".join(errors)
    return f


def san_text(sans: list[str]) -> str:
    """nmap ssl-cert's "Subject Alternative Name" line: DNS:a, IP Address:b."""
    out = []
    for s in sans:
        if ":" in s and s.split(":", 1)[0] in ("email", "URI", "DirName"):
            out.append(s)
            continue
        try:
            ipaddress.ip_address(s)
            out.append(f"IP Address:{s}")
        except ValueError:
            out.append(f"DNS:{s}")
    return ", ".join(out)
