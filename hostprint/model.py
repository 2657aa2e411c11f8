"""The results every probe writes and every report reads.

One small set of typed records shared by the engine, the probes, the matchers and the reports, so
that a new technique adds fields here and every output format picks them up from `to_dict()`.
The JSON lines schema in the README is exactly `HostResult.to_dict()` plus the `scan` block.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Dict, List, Self, Union

# Port states and reasons use nmap's words so that nmap tooling reads our XML unchanged.
OPEN, CLOSED, FILTERED, UNFILTERED = "open", "closed", "filtered", "unfiltered"
OPEN_FILTERED, CLOSED_FILTERED = "open|filtered", "closed|filtered"

# A state seen on more than this many ports of a host is summarised as <extraports> (nmap's rule).
EXTRAPORTS_THRESHOLD = 25


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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d.get("fingerprint") is None:
            d.pop("fingerprint", None)
        return d


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
        for k, v in self.data.items():
            d.setdefault(k, v)
        return d

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
                   data={str(k): to_json(v) for k, v in d.items() if k not in known})

    @classmethod
    def many(cls, v: object) -> list[OsMatch]:
        return [m for m in (cls.from_dict(x) for x in (v if isinstance(v, list) else [])) if m is not None]


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
        return [a for a in (cls.from_dict(x) for x in (v if isinstance(v, list) else [])) if a is not None]


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
                    data={str(k): to_json(v) for k, v in d.items() if k not in cls._typed})
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
        for k, v in self.data.items():
            d.setdefault(k, v)
        return d

    @classmethod
    def from_dict(cls, d: object) -> TimingTest | None:
        if not isinstance(d, dict):
            return None
        arr = d.get("arrivals")
        return cls(test=_str(d.get("test")) or "syn", port=_int(d.get("port")), rtt_us=_num(d.get("rtt_us")),
                   arrivals=[x for x in (_num(v) for v in arr) if x is not None] if isinstance(arr, list) else [],
                   rst=_num(d.get("rst")), signature=_str(d.get("signature")), status=_str(d.get("status")),
                   data={str(k): to_json(v) for k, v in d.items() if k not in cls._keys})


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


#: The block class of each technique whose stored JSON has a shape of its own.
BLOCK_TYPES: dict[str, type[OsBlock]] = {"stack": StackBlock, "timing": TimingBlock}
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


@dataclass
class ProbeEvent:
    """Someone probing the network, seen by `passive` (issue 18): one detection of one source.

    kind: portscan | sweep | os-fingerprint | app-fingerprint | timing-fingerprint;
    method: syn, fin, null, xmas, ack, maimon, udp, icmp-echo, icmp-timestamp, icmp-mask,
    nmap-os, hostprint-os, trigger-sweep, app-trigger, rpc-trigger, unanswered-synack;
    tool: nmap | masscan | zmap | amap | hostprint | unknown, with `evidence` (rule, packets, fact,
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
    coverage: dict[str, Any] = field(default_factory=dict)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    key: str = ""  # the detection's identity within its source (not written)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        del d["key"]
        return {"type": "event", **d}
