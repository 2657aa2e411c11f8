"""Application signatures and how a response is matched against them.

One in-memory model serves three sources — hostprint's own DB (signatures/app_*.txt), amap's
appdefs files and nmap's nmap-service-probes — so the engine never cares where a trigger or a
response rule came from. Matching follows amap (every rule is tried against every response, a
rule may be restricted to some triggers, a length range and a transport) and extracts fields with
nmap-style templates (p/ v/ i/ h/ o/ d/ cpe:) because that is the only widely known way to say
"capture group 2 is the version".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

from hostprint.model import OsHint
from hostprint.signatures.knowledge import distro_rules

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
    rarity: int = 1
    #: nmap: how long to wait for this probe's answer (ms); None = the engine's default.
    wait_ms: int | None = None
    #: nmap fallback probes whose rules also apply to this probe's answers.
    fallback: tuple[str, ...] = ()
    #: UDP: the answer may come from another port of the target (TFTP's TID, RFC 1350 §4).
    any_port: bool = False

    def fits(self, proto: str) -> bool:
        return self.proto in ("both", proto)


@dataclass
class Rule:
    """A response rule: a regex over the received bytes plus what to report when it matches."""

    service: str
    regex: re.Pattern[bytes]
    triggers: frozenset[str] = frozenset()  # empty = any trigger
    proto: str = "both"
    min_len: int = 0
    max_len: int | None = None
    templates: dict[str, str] = field(default_factory=dict)  # p v i h o d -> template
    cpe: tuple[str, ...] = ()
    soft: bool = False  # nmap softmatch / amap's bare protocol ids: name only, keep probing
    source: str = "hostprint"
    line: int = 0

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
class Match:
    """One rule that matched one response, with its fields filled in."""

    service: str
    trigger: str
    rule: Rule
    fields: dict[str, str] = field(default_factory=dict)
    cpe: list[str] = field(default_factory=list)

    @property
    def soft(self) -> bool:
        return self.rule.soft

    def score(self) -> int:
        """Prefer hard matches, then the one telling the most (product, version ...)."""
        return (0 if self.soft else 100) + 10 * ("product" in self.fields) + 5 * ("version" in self.fields) + len(self.fields)


@dataclass
class SignatureDB:
    triggers: list[Trigger] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    #: RPC program numbers (amap appdefs.rpc): number -> name.
    rpc: dict[int, str] = field(default_factory=dict)
    #: Lines that could not be used, as "file:line: why" (regex dialect differences, bad syntax).
    skipped: list[str] = field(default_factory=list)

    def extend(self, other: SignatureDB) -> SignatureDB:
        self.triggers += other.triggers
        self.rules += other.rules
        self.rpc.update(other.rpc)
        self.skipped += other.skipped
        return self

    def trigger(self, name: str) -> list[Trigger]:
        return [t for t in self.triggers if t.name == name]

    def match(self, data: bytes, trigger: str, proto: str, *, first: bool = False) -> list[Match]:
        """Every rule matching `data` received after `trigger` (amap: all ids, unless -1)."""
        out: list[Match] = []
        n = len(data)
        fallbacks = {trigger}
        for t in self.triggers:
            if t.name == trigger:
                fallbacks.update(t.fallback)
        for r in self.rules:
            if not r.applies(fallbacks, proto, n):
                continue
            try:
                m = r.regex.search(data)
            except RecursionError:  # pathological pattern from a foreign DB
                continue
            if m is None:
                continue
            out.append(_fill(r, m, trigger))
            if first and not r.soft:
                break
        return out


def best(matches: Iterable[Match]) -> Match | None:
    ms = list(matches)
    return max(ms, key=lambda m: m.score()) if ms else None


# ---------------------------------------------------------------------------- templates


_TEMPLATE_VAR = re.compile(r"\$(\d)|\$P\((\d)\)|\$SUBST\((\d),\"([^\"]*)\",\"([^\"]*)\"\)|\$I\((\d),\"([<>])\"\)")


def _printable(b: bytes) -> str:
    return "".join(chr(c) for c in b if 32 <= c < 127)


def expand(template: str, m: re.Match[bytes]) -> str:
    """nmap's template language: $1..$9, $P(n) printable only, $SUBST(n,"a","b"), $I(n,">") integer."""

    def group(i: int) -> bytes:
        try:
            return m.group(i) or b""
        except IndexError:
            return b""

    def sub(v: re.Match[str]) -> str:
        if v.group(1):
            return group(int(v.group(1))).decode("latin-1")
        if v.group(2):
            return _printable(group(int(v.group(2))))
        if v.group(3):
            return group(int(v.group(3))).decode("latin-1").replace(v.group(4), v.group(5))
        g = group(int(v.group(6)))
        return str(int.from_bytes(g, "big" if v.group(7) == ">" else "little")) if g else ""

    return _TEMPLATE_VAR.sub(sub, template)


def _fill(r: Rule, m: re.Match[bytes], trigger: str) -> Match:
    fields: dict[str, str] = {}
    for k, t in r.templates.items():
        v = " ".join(expand(t, m).split())
        if v:
            fields[TEMPLATE_FIELDS[k]] = v
    cpe = [c for c in (" ".join(expand(c, m).split()) for c in r.cpe) if c]
    return Match(r.service, trigger, r, fields, cpe)


# ---------------------------------------------------------------------------- shared parsing


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


def os_hint(text: str) -> OsHint | None:
    """Distribution (and release, when the package suffix pins it) named by a banner; the rules
    and their sources are signatures/knowledge/distros.txt, tried in order."""
    for rule in distro_rules():
        m = rule.pattern.search(text)
        if m is None:
            continue
        release = m.group(rule.release_group) if rule.release_group else None
        return OsHint(rule.family, rule.name, release, m.group(0).lstrip("."), rule.cpe_for(release))
    return None
