"""Application signature DBs as data: triggers (what we send), response rules (what an answer
must look like and what to report), and the grammar pieces the three readers share (hostprint's
app_*.txt, amap's appdefs, nmap's nmap-service-probes). Matching answers against them is
match/app.py's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

#: Name of the empty trigger: what a server says before we say anything.
NULL = "NULL"

#: Field letters of nmap-style version templates -> Service attribute.
TEMPLATE_FIELDS = {"p": "product", "v": "version", "i": "extrainfo", "h": "hostname", "o": "ostype",
                   "d": "devicetype"}


@dataclass
class Trigger:
    """Bytes sent to provoke an answer."""

    name: str
    proto: str  # "tcp" | "udp" | "both"
    payload: bytes
    ports: frozenset[int] = frozenset()
    ssl_ports: frozenset[int] = frozenset()
    harmful: bool = False
    source: str = "hostprint"
    #: nmap's rarity (1-9): sent to a port outside `ports` only when rarity <= --version-intensity.
    rarity: int = 1
    #: nmap totalwaitms: how long to wait for this probe's answer (ms); None = the engine's default.
    wait_ms: int | None = None
    #: nmap fallback probes whose rules also apply to this probe's answers.
    fallback: tuple[str, ...] = ()
    #: UDP: the answer may come from another port of the target (TFTP's TID, RFC 1350 §4).
    any_port: bool = False
    #: nmap tcpwrappedms (NULL probe only): a close without data sooner than this is "tcpwrapped".
    tcpwrapped_ms: int | None = None
    #: nmap `no-payload`: a UDP probe nmap does not use as a -sU payload (kept for -sV).
    no_payload: bool = False
    #: Payload built per target by signatures/udp_payloads.BUILDERS[build] (LLMNR asks for the
    #: target's own reverse name); `payload` is then only a stand-in.
    build: str | None = None

    def payload_for(self, addr: str) -> bytes:
        if self.build is None:
            return self.payload
        from hostprint.signatures.udp_payloads import BUILDERS

        return BUILDERS[self.build](addr)

    def fits(self, proto: str) -> bool:
        return self.proto in ("both", proto)

    def probable(self, port: int, tls: bool) -> bool:
        """nmap's portIsProbable: the port is in `ports`, or in `sslports` inside a TLS tunnel."""
        if not tls:
            return port in self.ports
        return port in self.ssl_ports or (self.source != "nmap" and port in self.ports)


class LazyRegex:
    """A regex compiled on first use (nmap's file has ~12,000; a scan touches a few hundred).

    Pickles as its source, so a cached DB loads without compiling anything. A pattern Python's
    `re` cannot compile never matches and says why in `error`."""

    __slots__ = ("_rx", "error", "flags", "pattern")

    def __init__(self, pattern: bytes, flags: int):
        self.pattern = pattern
        self.flags = flags
        self._rx: re.Pattern[bytes] | None = None
        self.error: str | None = None

    def compiled(self) -> re.Pattern[bytes] | None:
        if self._rx is None and self.error is None:
            try:
                self._rx = compile_regex(self.pattern, self.flags)
            except ParseError as e:
                self.error = str(e)
        return self._rx

    def search(self, data: bytes) -> re.Match[bytes] | None:
        rx = self._rx or self.compiled()
        return rx.search(data) if rx is not None else None

    def __getstate__(self) -> tuple[bytes, int]:
        return self.pattern, self.flags

    def __setstate__(self, st: tuple[bytes, int]) -> None:
        self.pattern, self.flags = st
        self._rx = None
        self.error = None


@dataclass(eq=False)
class Rule:
    """A response rule: a regex over the received bytes plus what to report when it matches."""

    service: str
    regex: Any  # re.Pattern[bytes] or LazyRegex (both have .search and .pattern)
    triggers: frozenset[str] = frozenset()  # empty = any trigger
    proto: str = "both"
    min_len: int = 0
    max_len: int | None = None
    templates: dict[str, str] = field(default_factory=dict)  # p v i h o d -> template
    cpe: tuple[str, ...] = ()
    soft: bool = False  # nmap softmatch / amap's bare protocol ids: name only, keep probing
    source: str = "hostprint"
    line: int = 0
    #: A catch-all of our own DB (the raw Server header as product …): ranked below specific rules.
    generic: bool = False

    def applies(self, triggers: set[str], proto: str, n: int) -> bool:
        """`triggers`: the trigger that got the response plus its fallbacks (nmap)."""
        if self.proto not in ("both", proto):
            return False
        if self.triggers and not (self.triggers & triggers):
            return False
        if n < self.min_len or (self.max_len is not None and n > self.max_len):
            return False
        return True


@dataclass
class SignatureDB:
    triggers: list[Trigger] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    #: RPC program numbers (amap appdefs.rpc): number -> name.
    rpc: dict[int, str] = field(default_factory=dict)
    #: Lines that could not be used, as "file:line: why" (regex dialect differences, bad syntax).
    skipped: list[str] = field(default_factory=list)
    #: Ports never probed unless asked (nmap's `Exclude`, printers): {(proto, port)}.
    exclude: set[tuple[str, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._index: dict[tuple[str, str], list[Rule]] = {}
        self._possible: dict[str, frozenset[str]] = {}
        self._by_name: dict[str, list[Trigger]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("triggers", "rules", "rpc", "skipped", "exclude")}

    def __setstate__(self, st: dict[str, Any]) -> None:
        self.__dict__.update(st)
        self.__post_init__()

    def _changed(self) -> None:
        self.__post_init__()

    def extend(self, other: SignatureDB) -> SignatureDB:
        self.triggers += other.triggers
        self.rules += other.rules
        self.rpc.update(other.rpc)
        self.skipped += other.skipped
        self.exclude |= other.exclude
        self._changed()
        return self

    def trigger(self, name: str) -> list[Trigger]:
        if self._by_name is None:
            by: dict[str, list[Trigger]] = {}
            for t in self.triggers:
                by.setdefault(t.name, []).append(t)
            self._by_name = by
        return self._by_name.get(name, [])

    def rules_for(self, trigger: str, proto: str) -> list[Rule]:
        """The rules that may judge an answer to `trigger`, in the order they are tried: rules
        without a trigger restriction and our/amap rules in file order; nmap's probe's own lines,
        then its fallbacks' lines in `fallback` order (nmap's chain: self, fallbacks…, NULL)."""
        key = (trigger, proto)
        got = self._index.get(key)
        if got is not None:
            return got
        chain = [trigger]
        for t in self.trigger(trigger):
            if t.fits(proto):
                chain += [f for f in t.fallback if f not in chain]
        names = set(chain)
        out: list[Rule] = []
        nmap: dict[str, list[Rule]] = {}
        for r in self.rules:
            if r.proto not in ("both", proto):
                continue
            if r.triggers and not (r.triggers & names):
                continue
            if r.source == "nmap" and r.triggers:
                nmap.setdefault(next(iter(r.triggers)), []).append(r)
            else:
                out.append(r)
        for name in chain:
            out += nmap.get(name, [])
        self._index[key] = out
        return out

    def possible(self, trigger: str) -> frozenset[str]:
        """nmap's serviceIsPossible: the services a trigger's own rules can hard-match (rules
        without a trigger restriction count for every trigger)."""
        got = self._possible.get(trigger)
        if got is None:
            got = frozenset(r.service for r in self.rules
                            if not r.soft and (not r.triggers or trigger in r.triggers))
            self._possible[trigger] = got
        return got

    def versioned(self, trigger: str) -> frozenset[str]:
        """Services this trigger's own rules (those naming it) can report with a version read
        from the answer: the probes still worth sending once a product without version is known."""
        key = "\0v" + trigger
        got = self._possible.get(key)
        if got is None:
            got = frozenset(r.service.removeprefix("ssl/") for r in self.rules
                            if not r.soft and trigger in r.triggers and "$" in r.templates.get("v", ""))
            self._possible[key] = got
        return got


class ParseError(ValueError):
    pass


_ESCAPES = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t", "0": "\0", "a": "\a", "f": "\f", "v": "\v"}


def unescape(s: str) -> bytes:
    """C-style escapes (\\n \\r \\t \\0 \\xHH \\\\ and escaped delimiters) to bytes."""
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out += c.encode("latin-1")
            i += 1
            continue
        if i + 1 >= len(s):
            raise ParseError("trailing backslash")
        e = s[i + 1]
        if e == "x":
            h = s[i + 2:i + 4]
            if len(h) != 2 or any(ch not in "0123456789abcdefABCDEF" for ch in h):
                raise ParseError(f"bad \\x escape near {s[i:i + 4]!r}")
            out.append(int(h, 16))
            i += 4
            continue
        out += _ESCAPES.get(e, e).encode("latin-1")
        i += 2
    return bytes(out)


def hex_bytes(s: str) -> bytes:
    """'0x16 03 01' or '0x160301' -> bytes."""
    h = "".join(s[2:].split()) if s.lower().startswith("0x") else "".join(s.split())
    try:
        return bytes.fromhex(h)
    except ValueError:
        raise ParseError(f"bad hex string {s[:40]!r}") from None


def delimited(s: str, i: int) -> tuple[str, int]:
    """s[i] is a delimiter: return the text up to the next unescaped-by-design same delimiter.

    nmap's rule: the delimiter simply ends the field (choose one absent from the text), so no
    escape handling is done here.
    """
    d = s[i]
    j = s.find(d, i + 1)
    if j < 0:
        raise ParseError(f"unterminated {d}…{d} field")
    return s[i + 1:j], j + 1


def parse_match_spec(text: str) -> tuple[bytes, str, dict[str, str], list[str]]:
    """`m|regex|si p/x/ v/$1/ cpe:/a:x:y:$1/` -> (regex bytes, flags, templates, cpes)."""
    text = text.strip()
    if not text.startswith("m") or len(text) < 3:
        raise ParseError("match pattern must start with m<delim>")
    pat, i = delimited(text, 1)
    flags = ""
    while i < len(text) and text[i] in "is":
        flags += text[i]
        i += 1
    templates: dict[str, str] = {}
    cpes: list[str] = []
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        if text.startswith("cpe:", i):
            v, i = delimited(text, i + 4)
            if i < len(text) and text[i] == "a":  # nmap's "auto-extend" marker
                i += 1
            cpes.append("cpe:/" + v if not v.startswith("/") else "cpe:" + v)
            continue
        k = text[i]
        if k in TEMPLATE_FIELDS and i + 1 < len(text):
            v, i = delimited(text, i + 1)
            templates[k] = v
            continue
        raise ParseError(f"unknown field at {text[i:i + 12]!r}")
    return pat.encode("latin-1"), flags, templates, cpes


def compile_regex(pat: bytes, flags: int) -> re.Pattern[bytes]:
    """Compile a PCRE-ish pattern with Python's re, translating the few spellings re lacks."""
    p = pat
    # PCRE allows \Z meaning "end or before final newline"; Python's \Z is absolute end.
    p = p.replace(rb"\Z", rb"(?=\n?\Z)")
    try:
        return re.compile(p, flags)
    except re.error as e:
        raise ParseError(f"regex: {e}") from None
    except (OverflowError, RecursionError) as e:
        raise ParseError(f"regex: {e}") from None


def parse_ports(spec: str) -> frozenset[int]:
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ParseError(f"bad port {part!r}") from None
        if not (0 <= a <= b <= 65535):
            raise ParseError(f"bad port range {part!r}")
        out.update(range(a, b + 1))
    return frozenset(out)


# ---------------------------------------------------------------------------- OS hints
