"""The results every probe writes and every report reads.

One small set of typed records shared by the engine, the probes, the matchers and the reports, so
that a new technique adds fields here and every output format picks them up from `to_dict()`.
The JSON lines schema in the README is exactly `HostResult.to_dict()` plus the `scan` block.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Dict, List, Self, TypeVar, Union

# Port states and reasons use nmap's words so that nmap tooling reads our XML unchanged.
OPEN, CLOSED, FILTERED, UNFILTERED = "open", "closed", "filtered", "unfiltered"
OPEN_FILTERED, CLOSED_FILTERED = "open|filtered", "closed|filtered"

# A state seen on more than this many ports of a host is summarised as <extraports> (nmap's rule).
EXTRAPORTS_THRESHOLD = 25


#: Service keys left out of to_dict() when empty (older readers never saw them).
_SERVICE_OPTIONAL = ("fingerprint", "tls", "ssh", "version_range")


@dataclass
class Service:
    """What listens on a port (filled by the port table, banners or triggers)."""

    name: str | None = None
    tunnel: str | None = None
    product: str | None = None
    version: str | None = None
    extrainfo: str | None = None
    hostname: str | None = None
    ostype: str | None = None
    devicetype: str | None = None
    cpe: list[str] = field(default_factory=list)
    method: str = "port-table"  # "banner" | "trigger" | "port-table"
    confidence: float = 0.3
    banner: str | None = None
    #: -sV could not identify the service but it answered: nmap's SF fingerprint of the answers
    fingerprint: str | None = None
    #: a TLS port: the certificate, negotiated version/cipher/ALPN, JA3S and JARM (`TlsFacts`)
    tls: TlsFacts | None = None
    #: an SSH port: HASSH server, host keys, the KEXINIT algorithm lists (`SshFacts`)
    ssh: SshFacts | None = None
    #: a version the banner hides, inferred from behaviour as a range with its evidence
    version_range: VersionRange | None = None

    def __post_init__(self) -> None:
        # Stored services (inventory rows, -oJ files) carry these as dicts: read them once.
        if self.tls is not None and not isinstance(self.tls, TlsFacts):
            self.tls = TlsFacts.from_dict(self.tls)
        if self.ssh is not None and not isinstance(self.ssh, SshFacts):
            self.ssh = SshFacts.from_dict(self.ssh)
        if self.version_range is not None and not isinstance(self.version_range, VersionRange):
            self.version_range = VersionRange.from_dict(self.version_range)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in fields(self):
            name = f.name
            v = getattr(self, name)
            if name in _SERVICE_OPTIONAL:
                if v is None:
                    continue
                d[name] = v if isinstance(v, str) else v.to_dict()
            else:
                d[name] = list(v) if isinstance(v, list) else v
        return d

    @classmethod
    def from_dict(cls, d: object) -> Service | None:
        """A stored service (JSON keys of to_dict(); unknown keys from newer writers are dropped)."""
        if not isinstance(d, dict):
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class PortResult:
    port: int
    protocol: str  # "tcp" | "udp"
    state: str
    reason: str  # nmap's reason words: syn-ack, reset, no-response, port-unreach, ...
    reason_ttl: int | None = None
    service: Service | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "port": self.port,
            "protocol": self.protocol,
            "state": self.state,
            "reason": self.reason,
            "reason_ttl": self.reason_ttl,
            "service": self.service.to_dict() if self.service else None,
        }
        return d


@dataclass
class ExtraPorts:
    """Ports of one state folded into a count, as nmap's <extraports>."""

    state: str
    count: int
    reasons: dict[str, int] = field(default_factory=dict)  # reason -> count
    protocol: str | None = None  # "tcp" | "udp"

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "count": self.count, "reasons": dict(self.reasons), "protocol": self.protocol}


@dataclass
class Twin:
    """The answer to one of several identical SYNs sent from different source ports (-O's
    load-balancer check): the fields a stack decides, in nmap's notation."""

    probe: str
    options: str  # nmap's option string (O)
    window: str  # hex (W)
    ittl: str  # initial TTL, hex (TG)
    hops: str
    df: str  # Y | N
    ts: int | None  # TSval
    at: float  # kernel receive time, seconds
    ipid: int | None


# ------------------------------------------------------------------------------------------ OS evidence
#
# Every technique that says something about a host's OS or what sits in front of it writes one
# typed block into `HostResult.os` (an OsEvidence); the combined verdict reads the blocks
# generically (matches, an explicit "unknown"), and every report reads these records, never a
# loose dict. `to_dict()` gives the JSON-lines schema of the README; `from_dict()` reads it back
# (inventory rows of older versions, -oJ files), tolerating anything malformed: a stored blob that
# does not fit becomes an empty field, never an exception in a report.

#: JSON data: measured attributes a technique keeps beside its evidence (nmap-notation tests, a
#: passive host's HTTP facts); typed, but open in shape.
Json = Union[None, bool, int, float, str, List["Json"], Dict[str, "Json"]]
JsonDict = Dict[str, Json]


def _str(v: object) -> str | None:
    return v if isinstance(v, str) else None


def _num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _strs(v: object) -> list[str]:
    if isinstance(v, str):
        return [v]
    return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []


def _dicts(v: object) -> list[dict[str, object]]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def to_json(v: object) -> Json:
    """A stored value as JSON data (anything else becomes its string form)."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (list, tuple)):
        return [to_json(x) for x in v]
    if isinstance(v, dict):
        return {str(k): to_json(x) for k, x in v.items()}
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("latin-1")
    if isinstance(v, (set, frozenset)):
        return [to_json(x) for x in sorted(v, key=repr)]
    return repr(v)


def _jdict(v: object) -> JsonDict:
    j = to_json(v) if isinstance(v, dict) else {}
    return j if isinstance(j, dict) else {}


def _extras(d: dict[Any, Any], known: Collection[str]) -> JsonDict:
    """The keys of a stored record that no typed field holds: kept in `data`, so what a newer
    writer (or a technique) added survives a read and a write."""
    return {str(k): to_json(v) for k, v in d.items() if k not in known}


def _with_extras(d: dict[str, Json], data: JsonDict) -> dict[str, Json]:
    """`d` with the extra keys of `data` added; a typed field wins over an extra of the same name."""
    for k, v in data.items():
        d.setdefault(k, v)
    return d


_Record = TypeVar("_Record")


def _many(from_dict: Callable[[object], _Record | None], v: object) -> list[_Record]:
    """The records of a stored list that read (`from_dict` gives None for malformed ones)."""
    return [x for x in (from_dict(y) for y in (v if isinstance(v, list) else [])) if x is not None]


# ------------------------------------------------------------------------------------------ service facts
#
# What -sV learns about a TLS or SSH port beyond nmap's service fields. JSON keys are stable (the
# README's `service.tls` / `service.ssh` / `service.version_range`); `from_dict` reads older and
# malformed shapes without raising.


def _pairs(v: object) -> list[list[str]]:
    return [[str(x[0]), str(x[1])] for x in v if isinstance(x, list) and len(x) == 2] if isinstance(v, list) else []


def _facts_dict(rec: Any, optional: tuple[str, ...] = ("error",)) -> dict[str, Json]:
    """Every field of a facts record in field order; the `optional` ones only when set (a clean
    read has no `error` key)."""
    d: dict[str, Json] = {}
    for f in fields(rec):
        v = getattr(rec, f.name)
        if v is None and f.name in optional:
            continue
        d[f.name] = _facts_json(v)
    return d


def _facts_json(v: object) -> Json:
    """A field as JSON: a nested record (the certificate, a host key) by its own to_dict."""
    if isinstance(v, (CertFacts, HostKey)):
        return v.to_dict()
    if isinstance(v, list):
        return [_facts_json(x) for x in v]
    return to_json(v)


@dataclass
class CertFacts:
    """A server certificate as read by `cryptography` (match/x509.py): nmap ssl-cert's fields plus
    SANs, validity flags and fingerprints. Names are RFC 4514 strings (most specific RDN first, as
    OpenSSL's `-nameopt RFC2253`); `subject_attrs`/`issuer_attrs` keep nmap's [name, value] pairs."""

    sha256: str = ""
    sha1: str = ""
    md5: str = ""
    subject: str | None = None
    issuer: str | None = None
    subject_attrs: list[list[str]] = field(default_factory=list)
    issuer_attrs: list[list[str]] = field(default_factory=list)
    sans: list[str] = field(default_factory=list)  # DNS names and addresses; other kinds as "email:…", "URI:…"
    not_before: str | None = None  # ISO 8601, UTC
    not_after: str | None = None
    serial: str | None = None  # lower-case hex, no leading zeros
    key: str | None = None  # RSA | EC | Ed25519 | Ed448 | DSA | the algorithm OID
    key_bits: int | None = None
    curve: str | None = None  # EC keys: the named curve (secp256r1 …)
    sig_alg: str | None = None  # OpenSSL's name: sha256WithRSAEncryption, ecdsa-with-SHA256 …
    self_signed: bool | None = None  # issuer == subject and the signature verifies with its own key
    expired: bool | None = None  # at scan time
    not_yet_valid: bool | None = None
    pem: str | None = None
    error: str | None = None  # unparsable: only the fingerprints are known

    def to_dict(self) -> dict[str, Json]:
        return _facts_dict(self)

    @classmethod
    def from_dict(cls, d: object) -> CertFacts | None:
        if not isinstance(d, dict):
            return None
        pairs = _pairs
        b = d.get("self_signed"), d.get("expired"), d.get("not_yet_valid")
        return cls(sha256=_str(d.get("sha256")) or "", sha1=_str(d.get("sha1")) or "", md5=_str(d.get("md5")) or "",
                   subject=_str(d.get("subject")), issuer=_str(d.get("issuer")),
                   subject_attrs=pairs(d.get("subject_attrs")), issuer_attrs=pairs(d.get("issuer_attrs")),
                   sans=_strs(d.get("sans")), not_before=_str(d.get("not_before")), not_after=_str(d.get("not_after")),
                   serial=_str(d.get("serial")), key=_str(d.get("key")), key_bits=_int(d.get("key_bits")),
                   curve=_str(d.get("curve")), sig_alg=_str(d.get("sig_alg")),
                   self_signed=b[0] if isinstance(b[0], bool) else None,
                   expired=b[1] if isinstance(b[1], bool) else None,
                   not_yet_valid=b[2] if isinstance(b[2], bool) else None,
                   pem=_str(d.get("pem")), error=_str(d.get("error")))


@dataclass
class TlsFacts:
    """A TLS port: the full handshake's version, cipher and ALPN (offering h2 and http/1.1), the
    leaf certificate, JA3S of the ServerHello to hostprint's fixed ClientHello and JARM (its ten
    ClientHellos). `error` says why a handshake failed; what was learnt before it stays."""

    version: str | None = None  # TLSv1.3 …
    cipher: str | None = None  # OpenSSL's name
    bits: int | None = None
    alpn: str | None = None  # the protocol the server chose
    cert: CertFacts | None = None
    ja3s: str | None = None
    ja3s_string: str | None = None  # "771,4865,43-51" before MD5
    jarm: str | None = None
    jarm_raw: str | None = None  # the ten answers before hashing (JARM's verbose form)
    error: str | None = None

    def to_dict(self) -> dict[str, Json]:
        return _facts_dict(self, optional=("error", "jarm_raw", "ja3s_string"))

    @classmethod
    def from_dict(cls, d: object) -> TlsFacts | None:
        if not isinstance(d, dict):
            return None
        return cls(version=_str(d.get("version")), cipher=_str(d.get("cipher")), bits=_int(d.get("bits")),
                   alpn=_str(d.get("alpn")), cert=CertFacts.from_dict(d.get("cert")), ja3s=_str(d.get("ja3s")),
                   ja3s_string=_str(d.get("ja3s_string")), jarm=_str(d.get("jarm")),
                   jarm_raw=_str(d.get("jarm_raw")), error=_str(d.get("error")))


@dataclass
class HostKey:
    """One SSH host key: its type, size and fingerprints (OpenSSH's SHA256:base64 and nmap's MD5 hex)."""

    type: str  # ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa …
    bits: int | None = None
    sha256: str = ""  # "SHA256:…" as ssh-keygen -l prints it
    md5: str = ""  # hex without colons, as nmap's ssh-hostkey prints it
    key: str = ""  # the public key blob, base64 (a known_hosts line's last field)

    def to_dict(self) -> dict[str, Json]:
        return {"type": self.type, "bits": self.bits, "sha256": self.sha256, "md5": self.md5, "key": self.key}

    @classmethod
    def from_dict(cls, d: object) -> HostKey | None:
        if not isinstance(d, dict) or not _str(d.get("type")):
            return None
        return cls(str(d["type"]), _int(d.get("bits")), _str(d.get("sha256")) or "", _str(d.get("md5")) or "",
                   _str(d.get("key")) or "")


@dataclass
class SshFacts:
    """An SSH port: the server's SSH_MSG_KEXINIT lists (RFC 4253 §7.1), HASSH server over them and
    the host key of every key type the server offers (one key exchange per type)."""

    hassh: str | None = None
    hassh_string: str | None = None  # kex;ciphers;macs;compression (server to client) before MD5
    kex: list[str] = field(default_factory=list)
    host_key_algorithms: list[str] = field(default_factory=list)
    ciphers: list[str] = field(default_factory=list)  # server to client
    macs: list[str] = field(default_factory=list)
    compression: list[str] = field(default_factory=list)
    ciphers_c2s: list[str] = field(default_factory=list)
    macs_c2s: list[str] = field(default_factory=list)
    host_keys: list[HostKey] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Json]:
        return _facts_dict(self)

    @classmethod
    def from_dict(cls, d: object) -> SshFacts | None:
        if not isinstance(d, dict):
            return None
        keys = [k for k in (HostKey.from_dict(x) for x in _dicts(d.get("host_keys"))) if k is not None]
        return cls(hassh=_str(d.get("hassh")), hassh_string=_str(d.get("hassh_string")), kex=_strs(d.get("kex")),
                   host_key_algorithms=_strs(d.get("host_key_algorithms")), ciphers=_strs(d.get("ciphers")),
                   macs=_strs(d.get("macs")), compression=_strs(d.get("compression")),
                   ciphers_c2s=_strs(d.get("ciphers_c2s")), macs_c2s=_strs(d.get("macs_c2s")), host_keys=keys,
                   error=_str(d.get("error")))


@dataclass
class VersionRange:
    """A version the service does not say, bounded by what it does: `low` <= version < `high`
    (either may be open). `text` is how reports print it ("2.3.x", ">= 8.5", "4.15 - 4.17").
    Each evidence line names the rule, what was seen and the upstream source it rests on."""

    product: str
    low: str | None = None
    high: str | None = None  # exclusive
    text: str = ""
    evidence: list[Evidence] = field(default_factory=list)
    #: the banner's version contradicts the behaviour (a faked or edited banner, or a backport)
    conflict: str | None = None

    def to_dict(self) -> dict[str, Json]:
        d: dict[str, Json] = {"product": self.product, "low": self.low, "high": self.high, "text": self.text,
                              "evidence": [e.to_dict() for e in self.evidence]}
        if self.conflict:
            d["conflict"] = self.conflict
        return d

    @classmethod
    def from_dict(cls, d: object) -> VersionRange | None:
        if not isinstance(d, dict) or not _str(d.get("product")):
            return None
        return cls(str(d["product"]), _str(d.get("low")), _str(d.get("high")), _str(d.get("text")) or "",
                   Evidence.many(d.get("evidence")), _str(d.get("conflict")))


@dataclass
class Evidence:
    """One observation behind a conclusion, in words: which technique saw what."""

    method: str
    detail: str

    def to_dict(self) -> dict[str, Json]:
        return {"method": self.method, "detail": self.detail}

    @classmethod
    def from_dict(cls, d: object) -> Evidence | None:
        if isinstance(d, dict):
            return cls(_str(d.get("method")) or "?", str(d.get("detail") if d.get("detail") is not None else ""))
        if isinstance(d, str):
            return cls("?", d)
        return None

    @classmethod
    def many(cls, v: object) -> list[Evidence]:
        items = v if isinstance(v, list) else [v] if isinstance(v, str) else []
        return [e for e in (cls.from_dict(x) for x in items) if e is not None]


@dataclass
class OsMatch:
    """One OS class a technique (or the combined verdict) names, with how sure it is and why."""

    name: str
    family: str | None = None
    vendor: str | None = None
    generation: str | None = None
    device_type: str | None = None
    confidence: float = 0.0
    cpe: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)  # the combined verdict: techniques that support it
    evidence: list[Evidence] = field(default_factory=list)
    distribution: str | None = None  # from banners (Debian 12)
    db: str | None = None  # which DB the class comes from (stack: hostprint, nmap, p0f …)
    accuracy: float | None = None  # the DB's own score before any penalty
    line: int | None = None  # where the class sits in its DB
    id: str | None = None  # the class id (timing classes)
    data: JsonDict = field(default_factory=dict)  # technique-specific facts (p0f raw_sig, probe …)

    def to_dict(self) -> dict[str, Json]:
        d: dict[str, Json] = {"name": self.name, "family": self.family, "vendor": self.vendor,
                              "generation": self.generation, "device_type": self.device_type,
                              "confidence": self.confidence, "cpe": list(self.cpe)}
        if self.methods:
            d["methods"] = list(self.methods)
        if self.distribution is not None:
            d["distribution"] = self.distribution
        for k in ("db", "accuracy", "line", "id"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        d["evidence"] = [e.to_dict() for e in self.evidence]
        return _with_extras(d, self.data)

    @classmethod
    def from_dict(cls, d: object) -> OsMatch | None:
        if not isinstance(d, dict):
            return None
        name = _str(d.get("name")) or _str(d.get("label"))
        if not name:
            return None
        known = {"name", "label", "family", "vendor", "generation", "device_type", "confidence", "cpe", "methods",
                 "evidence", "distribution", "db", "accuracy", "line", "id"}
        conf = _num(d.get("confidence"))
        return cls(name=name, family=_str(d.get("family")), vendor=_str(d.get("vendor")),
                   generation=_str(d.get("generation")), device_type=_str(d.get("device_type")),
                   confidence=min(max(conf, 0.0), 1.0) if conf is not None else 0.0, cpe=_strs(d.get("cpe")),
                   methods=_strs(d.get("methods")), evidence=Evidence.many(d.get("evidence")),
                   distribution=_str(d.get("distribution")), db=_str(d.get("db")), accuracy=_num(d.get("accuracy")),
                   line=_int(d.get("line")), id=_str(d.get("id")),
                   data=_extras(d, known))

    @classmethod
    def many(cls, v: object) -> list[OsMatch]:
        return _many(cls.from_dict, v)


@dataclass
class UnknownOs:
    """A technique's (or the verdict's) explicit "no class fits": the nearest class and how far.

    `distance` is one number (stack: informative-attribute distance, 0..1); `components` breaks a
    distance into parts where a technique has several (timing: header mismatches, schedule
    residual, missing packets)."""

    nearest: str | None = None
    family: str | None = None
    distance: float | None = None
    accuracy: float | None = None
    disagreements: list[str] = field(default_factory=list)
    components: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    evidence: list[Evidence] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # what the nearest class does not explain

    def to_dict(self) -> dict[str, Json]:
        d: dict[str, Json] = {"nearest": self.nearest}
        if self.family is not None:
            d["family"] = self.family
        # timing's distance has always been its component dict; keep that JSON shape
        d["distance"] = dict(self.components) if self.components and self.distance is None else self.distance
        if self.accuracy is not None:
            d["accuracy"] = self.accuracy
        if self.disagreements:
            d["disagreements"] = list(self.disagreements)
        if self.reason is not None:
            d["reason"] = self.reason
        if self.evidence:
            d["evidence"] = [e.to_dict() for e in self.evidence]
        if self.reasons:
            d["reasons"] = list(self.reasons)
        return d

    @classmethod
    def from_dict(cls, d: object) -> UnknownOs | None:
        if not isinstance(d, dict):
            return None
        dist = d.get("distance")
        comps = {str(k): float(v) for k, v in dist.items() if _num(v) is not None} if isinstance(dist, dict) else {}
        return cls(nearest=_str(d.get("nearest")), family=_str(d.get("family")), distance=_num(dist),
                   accuracy=_num(d.get("accuracy")), disagreements=_strs(d.get("disagreements")), components=comps,
                   reason=_str(d.get("reason")), evidence=Evidence.many(d.get("evidence")),
                   reasons=_strs(d.get("reasons")))


@dataclass
class ArchitectureFinding:
    """Something between us and the stack that answers: syn-relay, syn-cookie, nat, port-forward,
    load-balancer, … (kinds and their meaning: signatures/relays.txt)."""

    kind: str
    detail: str
    method: str | None = None  # the technique that found it
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Json]:
        d: dict[str, Json] = {"kind": self.kind, "detail": self.detail}
        if self.method:
            d["method"] = self.method
        if self.reasons:
            d["reasons"] = list(self.reasons)
        return d

    @classmethod
    def from_dict(cls, d: object) -> ArchitectureFinding | None:
        if not isinstance(d, dict) or not _str(d.get("kind")):
            return None
        return cls(str(d["kind"]), str(d.get("detail") or ""), _str(d.get("method")), _strs(d.get("reasons")))

    @classmethod
    def many(cls, v: object) -> list[ArchitectureFinding]:
        return _many(cls.from_dict, v)


@dataclass
class OsHint:
    """A distribution named by a service banner (package revision suffixes, "(Debian)" …)."""

    family: str
    distribution: str | None
    release: str | None
    evidence: str
    cpe: str | None = None
    source: str | None = None  # "22/tcp ssh banner"

    def to_dict(self) -> dict[str, Json]:
        return {"family": self.family, "distribution": self.distribution, "release": self.release,
                "evidence": self.evidence, "cpe": self.cpe, "source": self.source}

    @classmethod
    def from_dict(cls, d: object) -> OsHint | None:
        if not isinstance(d, dict) or not _str(d.get("family")):
            return None
        return cls(str(d["family"]), _str(d.get("distribution")), _str(d.get("release")),
                   str(d.get("evidence") or ""), _str(d.get("cpe")), _str(d.get("source")))


@dataclass
class OsBlock:
    """One technique's conclusion about a host: the classes it names (best first) or an explicit
    "unknown", plus the measured facts it keeps (`data`, JSON). The verdict reads only `method`,
    `matches` and `unknown`, so a new technique needs no verdict code."""

    method: str
    matches: list[OsMatch] = field(default_factory=list)
    unknown: UnknownOs | None = None
    data: JsonDict = field(default_factory=dict)

    #: keys this class stores in typed fields (everything else in a stored block goes to `data`)
    _typed: ClassVar[frozenset[str]] = frozenset({"matches", "unknown"})

    def to_dict(self) -> dict[str, Json]:
        d: dict[str, Json] = dict(self.data)
        d["matches"] = [m.to_dict() for m in self.matches]
        if self.unknown is not None:
            d["unknown"] = self.unknown.to_dict()
        d.update(self._fields_dict())
        return d

    def _fields_dict(self) -> dict[str, Json]:
        return {}

    @classmethod
    def from_dict(cls, method: str, d: object) -> Self:
        d = d if isinstance(d, dict) else {}
        block = cls(method=method, matches=OsMatch.many(d.get("matches")), unknown=UnknownOs.from_dict(d.get("unknown")),
                    data=_extras(d, cls._typed))
        block._read_fields(d)
        return block

    def _read_fields(self, d: dict[str, object]) -> None:
        pass

    #: the classes' confidences are one distribution (they add up): a family's share is their sum
    exclusive: ClassVar[bool] = False

    def notes(self) -> list[Evidence]:
        """What the technique says that scores nothing but a reader should see (why it named no
        class, which classes it could not tell apart)."""
        return []


@dataclass
class StackBlock(OsBlock):
    """-O: the probes' attributes in nmap's notation and in words, and the class matches per DB."""

    tests: dict[str, dict[str, str]] = field(default_factory=dict)
    fingerprint: str = ""
    first_gen: str = ""
    summary: JsonDict = field(default_factory=dict)
    conditions: list[str] = field(default_factory=list)
    distance: int | None = None

    _typed = OsBlock._typed | {"tests", "fingerprint", "first_gen", "summary", "conditions", "distance"}

    def _fields_dict(self) -> dict[str, Json]:
        return {"tests": {t: dict(a) for t, a in self.tests.items()}, "fingerprint": self.fingerprint,
                "first_gen": self.first_gen, "summary": dict(self.summary), "conditions": list(self.conditions),
                "distance": self.distance}

    def _read_fields(self, d: dict[str, object]) -> None:
        tests = d.get("tests")
        if isinstance(tests, dict):
            self.tests = {str(t): {str(k): str(v) for k, v in a.items()} for t, a in tests.items() if isinstance(a, dict)}
        self.fingerprint = _str(d.get("fingerprint")) or ""
        self.first_gen = _str(d.get("first_gen")) or ""
        self.summary = _jdict(d.get("summary"))
        self.conditions = _strs(d.get("conditions"))
        self.distance = _int(d.get("distance"))


@dataclass
class TimingTest:
    """One Cron-OS test on one port: packet instants (seconds after the first), the final RST."""

    test: str
    port: int | None = None
    rtt_us: float | None = None
    arrivals: list[float] = field(default_factory=list)
    rst: float | None = None
    signature: str | None = None
    status: str | None = None
    data: JsonDict = field(default_factory=dict)

    _keys: ClassVar[frozenset[str]] = frozenset({"test", "port", "rtt_us", "arrivals", "rst", "signature", "status"})

    def to_dict(self) -> dict[str, Json]:
        d: dict[str, Json] = {"test": self.test, "port": self.port, "rtt_us": self.rtt_us,
                              "arrivals": list(self.arrivals), "rst": self.rst, "signature": self.signature,
                              "status": self.status}
        return _with_extras(d, self.data)

    @classmethod
    def from_dict(cls, d: object) -> TimingTest | None:
        if not isinstance(d, dict):
            return None
        arr = d.get("arrivals")
        return cls(test=_str(d.get("test")) or "syn", port=_int(d.get("port")), rtt_us=_num(d.get("rtt_us")),
                   arrivals=[x for x in (_num(v) for v in arr) if x is not None] if isinstance(arr, list) else [],
                   rst=_num(d.get("rst")), signature=_str(d.get("signature")), status=_str(d.get("status")),
                   data=_extras(d, cls._keys))


@dataclass
class TimingBlock(OsBlock):
    """--cron-os / `timing`: retransmission schedules and the classes they fit."""

    db: str | None = None
    tests: list[TimingTest] = field(default_factory=list)
    outcome: str | None = None  # match | ambiguous | unknown | no-response …
    fitting: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    _typed = OsBlock._typed | {"db", "tests", "outcome", "fitting", "lines"}
    exclusive = True

    @property
    def censored_ambiguous(self) -> list[str]:
        """Classes the listen limit cannot separate (they differ only after it)."""
        return _strs(self.data.get("censored_ambiguous"))

    def notes(self) -> list[Evidence]:
        out = []
        g = self.data.get("generic")
        if self.outcome == "generic" and isinstance(g, dict):
            fits = _strs(g.get("consistent"))
            out.append(Evidence("timing", f"{g.get('reason') or 'an RFC default retransmission schedule'}"
                                          + (f" (fits {', '.join(fits[:4])})" if fits else "")))
        if self.censored_ambiguous:
            limit = self.data.get("listen_limit_s")
            out.append(Evidence("timing", f"listening {limit} s cannot separate {', '.join(self.censored_ambiguous)}"))
        return out

    def _fields_dict(self) -> dict[str, Json]:
        return {"db": self.db, "tests": [t.to_dict() for t in self.tests], "outcome": self.outcome,
                "fitting": list(self.fitting), "lines": list(self.lines)}

    def _read_fields(self, d: dict[str, object]) -> None:
        self.db = _str(d.get("db"))
        raw = d.get("tests")
        self.tests = [t for t in (TimingTest.from_dict(x) for x in (raw if isinstance(raw, list) else [])) if t is not None]
        self.outcome = _str(d.get("outcome"))
        self.fitting = _strs(d.get("fitting"))
        self.lines = _strs(d.get("lines"))


@dataclass
class BannerBlock(OsBlock):
    """-sV: distributions named by service banners (stored as the host's `hints`)."""

    hints: list[OsHint] = field(default_factory=list)


@dataclass
class EnumBlock(OsBlock):
    """-sV's enumeration (SNMP system group and interfaces, SMB/NTLM names and version, NTP mode 6
    variables, LDAP root DSE): what each service says about its host, keyed "161/udp snmp" with a
    "kind" and the facts, and the OS classes those statements name (banner-like evidence)."""

    services: dict[str, JsonDict] = field(default_factory=dict)

    _typed = OsBlock._typed | {"services"}

    def _fields_dict(self) -> dict[str, Json]:
        return {"services": {k: dict(v) for k, v in self.services.items()}}

    def _read_fields(self, d: dict[str, object]) -> None:
        svc = d.get("services")
        if isinstance(svc, dict):
            self.services = {str(k): _jdict(v) for k, v in svc.items() if isinstance(v, dict)}


#: The block class of each technique whose stored JSON has a shape of its own.
BLOCK_TYPES: dict[str, type[OsBlock]] = {"stack": StackBlock, "timing": TimingBlock, "enum": EnumBlock}
#: Top-level keys of the `os` object that are not technique blocks.
_OS_KEYS = frozenset({"matches", "unknown", "architecture", "conditions", "fingerprint", "hints", "discovery"})


@dataclass
class OsEvidence:
    """Everything known about one host's OS: each technique's block and the combined verdict."""

    matches: list[OsMatch] = field(default_factory=list)  # the combined verdict, best first
    unknown: UnknownOs | None = None  # the verdict's "no class fits" (then matches are empty)
    blocks: dict[str, OsBlock] = field(default_factory=dict)  # by technique: stack, timing, passive …
    architecture: list[ArchitectureFinding] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)
    fingerprint: str | None = None  # text for nmap XML <osfingerprint> / -oN (every technique's lines)
    discovery: JsonDict = field(default_factory=dict)  # what discovery replies revealed (ICMP timestamps …)
    extra: JsonDict = field(default_factory=dict)  # keys a newer writer stored: kept, not interpreted

    # -- typed access to the blocks the reports know -------------------------------------------
    @property
    def stack(self) -> StackBlock | None:
        b = self.blocks.get("stack")
        return b if isinstance(b, StackBlock) else None

    @property
    def timing(self) -> TimingBlock | None:
        b = self.blocks.get("timing")
        return b if isinstance(b, TimingBlock) else None

    @property
    def banner(self) -> BannerBlock | None:
        b = self.blocks.get("banner")
        return b if isinstance(b, BannerBlock) else None

    @property
    def hints(self) -> list[OsHint]:
        return self.banner.hints if self.banner else []

    def block(self, method: str) -> OsBlock | None:
        return self.blocks.get(method)

    def add(self, block: OsBlock, *, architecture: list[ArchitectureFinding] = (), fingerprint: str | None = None,  # type: ignore[assignment]
            conditions: list[str] = ()) -> None:  # type: ignore[assignment]
        """Record a technique's block (replacing an earlier one of the same technique), the
        architecture it found, and its lines for the text fingerprint."""
        self.blocks[block.method] = block
        self.architecture.extend(architecture)
        self.conditions.extend(c for c in conditions if c not in self.conditions)
        if fingerprint:
            self.fingerprint = (self.fingerprint + "\n" if self.fingerprint else "") + fingerprint

    def add_hint(self, hint: OsHint) -> None:
        banner = self.banner
        if banner is None:
            banner = BannerBlock("banner")
            self.blocks["banner"] = banner
        if hint not in banner.hints:
            banner.hints.append(hint)

    @property
    def empty(self) -> bool:
        return not (self.matches or self.unknown or self.blocks or self.architecture or self.conditions
                    or self.fingerprint or self.discovery or self.extra)

    def to_dict(self) -> dict[str, Json]:
        d: dict[str, Json] = dict(self.extra)
        if self.discovery:
            d["discovery"] = dict(self.discovery)
        for method, b in self.blocks.items():
            if isinstance(b, BannerBlock):
                if b.hints:
                    d["hints"] = [h.to_dict() for h in b.hints]
            else:
                d[method] = b.to_dict()
        if self.architecture or self.blocks:
            d["architecture"] = [a.to_dict() for a in self.architecture]
        if self.conditions:
            d["conditions"] = list(self.conditions)
        if self.fingerprint:
            d["fingerprint"] = self.fingerprint
        if self.matches:
            d["matches"] = [m.to_dict() for m in self.matches]
        if self.unknown is not None:
            d["unknown"] = self.unknown.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: object) -> OsEvidence:
        """Read an `os` object of any hostprint version (or anything else: what does not fit is
        dropped, never raised). Blocks are the keys whose value holds `matches`, `tests` or
        `unknown`; passive blocks written before the typed model (`os.passive.os`) become matches."""
        ev = cls()
        if not isinstance(d, dict):
            return ev
        ev.matches = OsMatch.many(d.get("matches"))
        ev.unknown = UnknownOs.from_dict(d.get("unknown"))
        ev.architecture = ArchitectureFinding.many(d.get("architecture"))
        ev.conditions = _strs(d.get("conditions"))
        ev.fingerprint = _str(d.get("fingerprint"))
        ev.discovery = _jdict(d.get("discovery"))
        for h in (d.get("hints") if isinstance(d.get("hints"), list) else []) or []:
            hint = OsHint.from_dict(h)
            if hint is not None:
                ev.add_hint(hint)
        for k, v in d.items():
            k = str(k)
            if k in _OS_KEYS:
                continue
            if isinstance(v, dict) and (k in BLOCK_TYPES or k == "passive" or {"matches", "tests", "unknown"} & set(v)):
                if k == "passive" and "matches" not in v and isinstance(v.get("os"), dict):
                    v = {**{kk: vv for kk, vv in v.items() if kk != "os"}, "matches": [v["os"]]}
                ev.blocks[k] = BLOCK_TYPES.get(k, OsBlock).from_dict(k, v)
            else:
                ev.extra[k] = to_json(v)
        return ev


@dataclass
class HostResult:
    address: str
    status: str = "unknown"  # "up" | "down" | "unknown"
    reasons: list[str] = field(default_factory=list)  # which discovery methods saw it: echo-reply, reset ...
    hostname: str | None = None
    mac: str | None = None
    distance: int | None = None  # hops, from the reply TTL
    rtt_us: float | None = None  # smallest round trip seen, from kernel timestamps
    ports: list[PortResult] = field(default_factory=list)  # the "interesting" ports
    extraports: list[ExtraPorts] = field(default_factory=list)
    os: OsEvidence = field(default_factory=OsEvidence)  # every technique's OS evidence and the verdict
    sequence: dict[str, Any] = field(default_factory=dict)  # IP ID / ISN predictability report
    started: float | None = None
    finished: float | None = None
    #: every name of the host, nmap's <hostnames>: {"name": ..., "type": "user" | "PTR"}; `hostname`
    #: is the first of them
    hostnames: list[dict[str, str]] = field(default_factory=list)
    #: what the run could not do for this host, in words (a time budget that cut a UDP scan short …)
    warnings: list[str] = field(default_factory=list)
    #: --traceroute: the hops, nearest first: {"ttl", "address", "rtt_us", "hostname"}
    trace: list[dict[str, Any]] = field(default_factory=list)
    #: --dual-stack: the same machine's address of the other family and the evidence (issue 17):
    #: {"address", "family", "paired_by": [...], "open": ["22/tcp", ...], "reasons": [...]}
    addresses: list[dict[str, Any]] = field(default_factory=list)

    def add_hostname(self, name: str, kind: str) -> None:
        """Record a name (a user-typed one or a PTR answer) once; the first becomes `hostname`."""
        name = name.rstrip(".")
        if not name or any(h["name"].lower() == name.lower() and h["type"] == kind for h in self.hostnames):
            return
        self.hostnames.append({"name": name, "type": kind})
        if self.hostname is None:
            self.hostname = name

    def __post_init__(self) -> None:
        if not isinstance(self.os, OsEvidence):  # a stored `os` object (inventory, -oJ): read it once
            self.os = OsEvidence.from_dict(self.os)

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "status": self.status,
            "reasons": list(self.reasons),
            "hostname": self.hostname,
            "mac": self.mac,
            "distance": self.distance,
            "rtt_us": self.rtt_us,
            "ports": [p.to_dict() for p in self.ports],
            "extraports": [e.to_dict() for e in self.extraports],
            "os": self.os.to_dict(),
            "sequence": self.sequence,
            **({"hostnames": [dict(h) for h in self.hostnames]} if self.hostnames else {}),
            **({"warnings": list(self.warnings)} if self.warnings else {}),
            **({"trace": [dict(t) for t in self.trace]} if self.trace else {}),
            **({"addresses": [dict(a) for a in self.addresses]} if self.addresses else {}),
        }

    def set_ports(self, results: list[PortResult], threshold: int = EXTRAPORTS_THRESHOLD) -> None:
        """Store port results, folding any state seen on more than `threshold` ports into extraports.

        Open ports are never folded: they are what users scan for.
        """
        by_state: dict[tuple[str, str], list[PortResult]] = {}
        for r in results:
            by_state.setdefault((r.protocol, r.state), []).append(r)
        keep: list[PortResult] = []
        extra: list[ExtraPorts] = []
        for (proto, state), rs in by_state.items():
            if state != OPEN and len(rs) > threshold:
                reasons: dict[str, int] = {}
                for r in rs:
                    reasons[r.reason] = reasons.get(r.reason, 0) + 1
                extra.append(ExtraPorts(state, len(rs), reasons, proto))
            else:
                keep.extend(rs)
        keep.sort(key=lambda r: (r.protocol, r.port))
        extra.sort(key=lambda e: -e.count)
        self.ports = keep
        self.extraports = extra


@dataclass
class ScanRun:
    """One invocation: what was asked, when, and every host it learned about."""

    args: list[str]
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started: float = field(default_factory=time.time)
    finished: float | None = None
    scan_types: list[str] = field(default_factory=list)  # e.g. ["syn", "udp"] (nmap XML <scaninfo>)
    ports_scanned: dict[str, list[int]] = field(default_factory=dict)  # protocol -> ports
    hosts: list[HostResult] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)  # probes sent, retransmissions, rate ...

    def scan_dict(self) -> dict[str, Any]:
        return {"id": self.id, "started": self.started, "finished": self.finished, "args": list(self.args)}

    def host_record(self, host: HostResult) -> dict[str, Any]:
        """One JSON-lines object: a host plus the `scan` block."""
        d = host.to_dict()
        d["scan"] = self.scan_dict()
        return d


# ------------------------------------------------------------------------------ audit (issue 19)
@dataclass
class MethodScore:
    """What one method tells an attacker about one host (`hostprint audit`). `bits` is the
    information about the OS over the method's class DB prior (hostprint/audit.py says how), 0 when
    the method names no OS; `facts` are the measured facts countermeasures apply to."""

    method: str
    learns: str
    bits: float = 0.0
    max_bits: float = 0.0
    facts: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Json]:
        return {"method": self.method, "learns": self.learns, "bits": round(self.bits, 2),
                "max_bits": round(self.max_bits, 2), "facts": list(self.facts), "details": list(self.details)}


@dataclass
class Countermeasure:
    """One entry of signatures/knowledge/countermeasures.txt that applies to what was measured."""

    name: str
    kind: str  # sysctl | scrubber | daemon
    setting: str
    hides: str
    cost: str
    because: list[str] = field(default_factory=list)  # the measured facts that made it apply
    sources: list[str] = field(default_factory=list)
    applied: str | None = None  # --apply: what was done (or why not)

    def to_dict(self) -> dict[str, Json]:
        d: dict[str, Json] = {"name": self.name, "kind": self.kind, "setting": self.setting, "hides": self.hides,
                              "cost": self.cost, "because": list(self.because), "sources": list(self.sources)}
        if self.applied is not None:
            d["applied"] = self.applied
        return d


@dataclass
class AuditReport:
    """`hostprint audit` for one host: per-method scores, exposures, countermeasures and, after
    --apply, the same methods measured again."""

    address: str
    methods: list[MethodScore] = field(default_factory=list)
    exposures: list[str] = field(default_factory=list)
    countermeasures: list[Countermeasure] = field(default_factory=list)
    after: list[MethodScore] = field(default_factory=list)
    after_exposures: list[str] = field(default_factory=list)

    @staticmethod
    def overall_of(methods: list[MethodScore]) -> float:
        """The most any one method tells about the OS (an attacker keeps the best method)."""
        return max((m.bits for m in methods), default=0.0)

    @property
    def overall(self) -> float:
        return self.overall_of(self.methods)

    def to_dict(self) -> dict[str, Json]:
        d: dict[str, Json] = {"type": "audit", "address": self.address, "overall_bits": round(self.overall, 2),
                              "methods": [m.to_dict() for m in self.methods], "exposures": list(self.exposures),
                              "countermeasures": [c.to_dict() for c in self.countermeasures]}
        if self.after:
            d["after"] = {"overall_bits": round(self.overall_of(self.after), 2),
                          "methods": [m.to_dict() for m in self.after], "exposures": list(self.after_exposures)}
        return d


@dataclass
class ProbeEvidence:
    """One rule of signatures/knowledge/probes.txt that fired for a source: the fact it tests, the
    tool it points to and where that fact comes from."""

    rule: str
    tool: str
    packets: int
    fact: str
    source: str | None = None


@dataclass
class ProbeCoverage:
    """How much of the network a detection touched: hosts and ports (scans, sweeps) or the probe
    names seen (OS fingerprinting)."""

    hosts: int = 0
    ports: int | None = None
    ports_per_host_max: int | None = None
    probes: list[str] | None = None

    def to_dict(self) -> dict[str, Json]:
        d: dict[str, Json] = {"hosts": self.hosts}
        if self.ports is not None:
            d["ports"] = self.ports
        if self.ports_per_host_max is not None:
            d["ports_per_host_max"] = self.ports_per_host_max
        if self.probes is not None:
            d["probes"] = list(self.probes)
        return d


@dataclass
class ProbeEvent:
    """Someone probing the network, seen by `passive` (issue 18): one detection of one source.

    kind: portscan | sweep | os-fingerprint | app-fingerprint | timing-fingerprint | idle-scan;
    method: syn, fin, null, xmas, ack, maimon, udp, icmp-echo, icmp-timestamp, icmp-info, icmp-mask,
    nmap-os, xprobe2-icmp, xprobe2-tcp, trigger-sweep, app-trigger, rpc-trigger, probe-order, unanswered-synack,
    zombie-ipid;
    tool: nmap | masscan | zmap | amap | hostprint | xprobe2 | unknown, with `evidence` (rule, packets, fact,
    source of the fact). The same detection is written again when its tool becomes known
    (update "tool") and at the end of the run with its final counts (update "final")."""

    kind: str
    method: str
    source: str
    tool: str = "unknown"
    detail: str = ""
    first_seen: float = 0.0
    last_seen: float = 0.0
    ts: float = 0.0  # capture time of the packet that raised (or updated) the event
    update: str = "new"  # new | tool | final
    packets: int = 0
    hosts: int = 0
    ports: int = 0
    duration: float | None = None
    rate: float | None = None  # probes per second over the detection
    targets: list[str] = field(default_factory=list)  # the first few
    coverage: ProbeCoverage | None = None
    evidence: list[ProbeEvidence] = field(default_factory=list)
    key: str = ""  # the detection's identity within its source (not written)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["key"]
        d["coverage"] = self.coverage.to_dict() if self.coverage is not None else {}
        return {"type": "event", **d}
