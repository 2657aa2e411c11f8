"""A service's TLS, SSH and version-range facts as nmap NSE script results.

nmap tooling reads per-port facts from `<script id=… output=…>` elements (and their structured
`<table>`/`<elem>` children, nmap.dtd) and people read them as the "| id: …" lines under a port in
normal output. Where nmap has a script for the fact, its id and layout are used so tools that
parse nmap's output find them: `ssl-cert` (subject, issuer, key, signature algorithm, validity,
MD5/SHA-1 as nmap 7.93 prints them at -v, plus SHA-256 and the self-signed/expired flags),
`ssh-hostkey` (bits, MD5 hex, type; plus OpenSSH's SHA256 form) and `ssh2-enum-algos` (the
KEXINIT lists). Facts nmap has no script for get scripts of our own: `tls-fingerprint` (version,
cipher, ALPN, JA3S, JARM), `ssh-hassh` (HASSH server) and `version-range`.

Every format (XML, -oN/terminal, HTML) renders the same `Script` list, so they say the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

from hostprint.match.x509 import san_text
from hostprint.model import CertFacts, Service, SshFacts, TlsFacts, VersionRange


@dataclass
class Table:
    key: str | None
    items: Sequence[Item] = field(default_factory=list)


@dataclass
class Elem:
    key: str | None
    value: str


Item = Union[Table, Elem]


@dataclass
class Script:
    id: str
    output: str  # nmap's text (starts with "\n" when it is a list, as nmap's does)
    items: Sequence[Item] = field(default_factory=list)


# nmap's ssl-cert prints these four name fields first (stringify_name's NON_VERBOSE_FIELDS)
_NAME_FIRST = ("commonName", "organizationName", "stateOrProvinceName", "countryName")
_KEY_LABEL = {"ssh-ed25519": "ED25519", "ssh-rsa": "RSA", "ssh-dss": "DSA", "ssh-ed448": "ED448"}


def _name(attrs: list[list[str]], fallback: str | None) -> str:
    if not attrs:
        return fallback or ""
    first = [a for k in _NAME_FIRST for a in attrs if a[0] == k]
    rest = [a for a in attrs if a[0] not in _NAME_FIRST]
    return "/".join(f"{k}={v}" for k, v in first + rest)


def _date(iso: str | None) -> str:
    """nmap prints validity as 2026-12-04T22:46:57 (UTC, no offset)."""
    if not iso:
        return "MISSING"
    return iso.replace("+00:00", "")


def ssl_cert(c: CertFacts, *, pem: bool = False) -> Script:
    lines = [f"Subject: {_name(c.subject_attrs, c.subject)}"]
    if c.sans:
        lines.append(f"Subject Alternative Name: {san_text(c.sans)}")
    lines.append(f"Issuer: {_name(c.issuer_attrs, c.issuer)}")
    if c.key:
        lines.append(f"Public Key type: {c.key.lower()}")
    if c.key_bits:
        lines.append(f"Public Key bits: {c.key_bits}")
    if c.sig_alg:
        lines.append(f"Signature Algorithm: {c.sig_alg}")
    lines.append(f"Not valid before: {_date(c.not_before)}")
    lines.append(f"Not valid after:  {_date(c.not_after)}")
    flags = [w for w, on in (("self-signed", c.self_signed), ("expired", c.expired),
                             ("not yet valid", c.not_yet_valid)) if on]
    if flags:
        lines.append(f"Flags: {', '.join(flags)}")
    lines += [f"MD5:   {c.md5}", f"SHA-1: {c.sha1}", f"SHA-256: {c.sha256}"]
    if c.error:
        lines.append(f"Error: {c.error}")
    if pem and c.pem:
        lines += c.pem.rstrip("\n").splitlines()
    items: list[Item] = [Table("subject", [Elem(k, v) for k, v in c.subject_attrs]),
                         Table("issuer", [Elem(k, v) for k, v in c.issuer_attrs])]
    pub = [Elem("type", (c.key or "").lower())] + ([Elem("bits", str(c.key_bits))] if c.key_bits else [])
    if c.curve:
        pub.append(Elem("curve", c.curve))
    items.append(Table("pubkey", pub))
    if c.sans:
        items.append(Table("extensions", [Table(None, [Elem("name", "X509v3 Subject Alternative Name"),
                                                        Elem("value", san_text(c.sans))])]))
    if c.sig_alg:
        items.append(Elem("sig_algo", c.sig_alg))
    items.append(Table("validity", [Elem("notBefore", _date(c.not_before)), Elem("notAfter", _date(c.not_after))]))
    items += [Elem("md5", c.md5), Elem("sha1", c.sha1), Elem("sha256", c.sha256)]
    items += [Elem(k, "true") for k, on in (("self_signed", c.self_signed), ("expired", c.expired),
                                            ("not_yet_valid", c.not_yet_valid)) if on]
    if c.pem:
        items.append(Elem("pem", c.pem))
    return Script("ssl-cert", "\n".join(lines), items)


def tls_fingerprint(t: TlsFacts) -> Script | None:
    rows: list[tuple[str, str]] = []
    if t.version:
        rows.append(("version", t.version))
    if t.cipher:
        rows.append(("cipher", t.cipher + (f" ({t.bits} bits)" if t.bits else "")))
    if t.jarm is not None or t.ja3s is not None or t.alpn is not None:
        rows.append(("alpn", t.alpn or "none (offered h2, http/1.1)"))
    if t.ja3s:
        rows.append(("ja3s", t.ja3s + (f" ({t.ja3s_string})" if t.ja3s_string else "")))
    if t.jarm:
        rows.append(("jarm", t.jarm))
    if t.error:
        rows.append(("error", t.error))
    if not rows:
        return None
    label = {"version": "Version", "cipher": "Cipher", "alpn": "ALPN", "ja3s": "JA3S", "jarm": "JARM",
             "error": "Error"}
    items: list[Item] = [Elem(k, v) for k, v in rows if k not in ("cipher", "ja3s")]
    if t.cipher:
        items.insert(1 if t.version else 0, Elem("cipher", t.cipher))
    if t.ja3s:
        items.append(Elem("ja3s", t.ja3s))
        if t.ja3s_string:
            items.append(Elem("ja3s_string", t.ja3s_string))
    return Script("tls-fingerprint", "\n".join(f"{label[k]}: {v}" for k, v in rows), items)


def _key_label(kind: str) -> str:
    if kind.startswith("ecdsa-"):
        return "ECDSA"
    return _KEY_LABEL.get(kind, kind)


def ssh_hostkey(s: SshFacts) -> Script | None:
    if not s.host_keys:
        return None
    lines: list[str] = []
    tables: list[Item] = []
    for k in s.host_keys:
        bits = str(k.bits) if k.bits else "?"
        lines.append(f"  {bits} {k.md5} ({_key_label(k.type)})")
        lines.append(f"  {bits} {k.sha256} ({_key_label(k.type)})")
        tables.append(Table(None, [Elem("bits", bits), Elem("fingerprint", k.md5), Elem("type", k.type),
                                   Elem("key", k.key), Elem("sha256", k.sha256)]))
    return Script("ssh-hostkey", "\n" + "\n".join(lines), tables)


def ssh2_enum_algos(s: SshFacts) -> Script | None:
    if not s.kex:
        return None
    groups = [("kex_algorithms", s.kex), ("server_host_key_algorithms", s.host_key_algorithms),
              ("encryption_algorithms", s.ciphers), ("mac_algorithms", s.macs),
              ("compression_algorithms", s.compression)]
    lines: list[str] = []
    items: list[Item] = []
    for name, algs in groups:
        lines.append(f"  {name}: ({len(algs)})")
        lines += [f"      {a}" for a in algs]
        items.append(Table(name, [Elem(None, a) for a in algs]))
    return Script("ssh2-enum-algos", "\n" + "\n".join(lines), items)


def ssh_hassh(s: SshFacts, *, full: bool = True) -> Script | None:
    if not s.hassh:
        return None
    out = f"hasshServer: {s.hassh}" + (f"\nhasshServerAlgorithms: {s.hassh_string or ''}" if full else "")
    return Script("ssh-hassh", out, [Elem("hasshServer", s.hassh), Elem("hasshServerAlgorithms", s.hassh_string or "")])


def version_range(v: VersionRange, *, full: bool = True) -> Script:
    lines = [f"{v.product} {v.text} (inferred from behaviour, not from a banner)"]
    if v.conflict:
        lines.append(f"Conflict: {v.conflict}")
    if full:
        lines += [f"  {e.detail}" for e in v.evidence]
    else:  # the rules that bound it, by name (-v shows each with its observation and source)
        names = [e.detail.split(":", 1)[0] for e in v.evidence if e.method == "behaviour" and "-> no bound" not in e.detail]
        lines.append(f"  rules: {', '.join(names)}")
    items: list[Item] = [Elem("product", v.product), Elem("range", v.text)]
    if v.low:
        items.append(Elem("low", v.low))
    if v.high:
        items.append(Elem("high", v.high))
    if v.conflict:
        items.append(Elem("conflict", v.conflict))
    items.append(Table("evidence", [Elem(None, e.detail) for e in v.evidence]))
    return Script("version-range", "\n".join(lines), items)


def service_scripts(svc: Service | None, *, pem: bool = False, full: bool = True) -> list[Script]:
    """Every script result of one port's service, in a fixed order. `full=False` (normal output
    without -v) leaves out the KEXINIT lists and the HASSH string; XML always has everything."""
    if svc is None:
        return []
    out: list[Script | None] = []
    if svc.tls is not None:
        if svc.tls.cert is not None:
            out.append(ssl_cert(svc.tls.cert, pem=pem))
        out.append(tls_fingerprint(svc.tls))
    if svc.ssh is not None:
        out += [ssh_hostkey(svc.ssh), ssh2_enum_algos(svc.ssh) if full else None, ssh_hassh(svc.ssh, full=full)]
        if svc.ssh.error and not svc.ssh.kex:
            out.append(Script("ssh-hassh", f"Error: {svc.ssh.error}", [Elem("error", svc.ssh.error)]))
    if svc.version_range is not None:
        out.append(version_range(svc.version_range, full=full))
    return [s for s in out if s is not None]


def normal_lines(s: Script) -> list[str]:
    """nmap's normal-output form: '| id: first', '| more', '|_last'."""
    body = s.output.split("\n")
    # nmap leaves a space after "id:" when the output starts on the next line; our plain output
    # never ends a line in a space (report/normal.py), so it is dropped here
    lines = [f"{s.id}: {body[0]}".rstrip()] + [x.rstrip() for x in body[1:]]
    if len(lines) == 1:
        return [f"|_{lines[0]}"]
    return [f"| {x}" for x in lines[:-1]] + [f"|_{lines[-1]}"]
