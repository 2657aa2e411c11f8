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
from hostprint.signatures.app_records import (  # noqa: F401 - the DB's names, re-exported for the engine
    NULL,
    TEMPLATE_FIELDS,
    LazyRegex,
    ParseError,
    Rule,
    SignatureDB,
    Trigger,
    compile_regex,
    delimited,
    hex_bytes,
    parse_match_spec,
    parse_ports,
    unescape,
)
from hostprint.signatures.knowledge import distro_rules


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

    @property
    def read_version(self) -> bool:
        """The version was read from the answer ($n in the template), not written into the rule
        as a constant (nmap's "Samba smbd 4.6.2" line names 4.6.2 for every Samba 4 it meets)."""
        return "version" in self.fields and "$" in self.rule.templates.get("v", "")

    def score(self) -> tuple[int, ...]:
        """Prefer hard matches, then one naming a product, then specific rules over our catch-alls
        (the raw Server header), then a version, then our own DB (names the tests and users
        know), then the number of fields."""
        return (0 if self.soft else 1, "product" in self.fields, not self.rule.generic, self.read_version,
                self.rule.source == "hostprint", len(self.fields) + len(self.cpe))


#: nmap matches at most this much of an answer (it stops reading at 4 KiB without a match);
#: regexes with `.*` over 16 KiB answers cost 4x more for nothing.
NMAP_MATCH_BYTES = 8192


def match_answer(db: SignatureDB, data: bytes, trigger: str, proto: str, *, first: bool = False) -> list[Match]:
    """Every rule matching `data` received after `trigger` (amap: all ids, unless -1).

    nmap's lines keep nmap's semantics: in chain order, the first hard match ends the search
    (at most one soft match before it is kept)."""
    out: list[Match] = []
    n = len(data)
    nmap_soft = nmap_done = False
    head = data[:NMAP_MATCH_BYTES]
    for r in db.rules_for(trigger, proto):
        if n < r.min_len or (r.max_len is not None and n > r.max_len):
            continue
        nm = r.source == "nmap"
        if nm and (nmap_done or (r.soft and nmap_soft)):
            continue
        try:
            m = r.regex.search(head if nm else data)
        except RecursionError:  # pathological pattern from a foreign DB
            continue
        if m is None:
            continue
        out.append(_fill(r, m, trigger))
        if nm:
            nmap_soft = nmap_soft or r.soft
            nmap_done = not r.soft
        if first and not r.soft and not r.generic:
            break
    return out


def best(matches: Iterable[Match]) -> Match | None:
    ms = list(matches)
    return max(ms, key=lambda m: m.score()) if ms else None


def same_product(a: str | None, b: str | None) -> bool:
    """Two rules name the same product (case and 'httpd'/'smtpd' style suffixes aside)."""
    if not a or not b:
        return True
    x, y = a.lower(), b.lower()
    return x == y or x.startswith(y) or y.startswith(x) or x.split()[0] == y.split()[0]


def enrich(primary: Match, others: Iterable[Match]) -> Match:
    """The chosen match plus what other hard matches of the same service and product add
    (nmap's o/ d/ h/ and CPEs beside our product/version): fields only filled, never replaced."""
    fields = dict(primary.fields)
    cpe = list(primary.cpe)
    for m in others:
        if m is primary or m.soft or m.service.split("/")[-1] != primary.service.split("/")[-1]:
            continue
        if not same_product(fields.get("product"), m.fields.get("product")):
            continue
        if "version" in fields and "version" in m.fields and not (
                m.fields["version"].startswith(fields["version"]) or fields["version"].startswith(m.fields["version"])):
            continue
        for k in ("product", "version", "hostname", "ostype", "devicetype"):
            if k not in fields and k in m.fields and (k != "version" or m.read_version):
                fields[k] = m.fields[k]
        if "extrainfo" not in fields and "extrainfo" in m.fields:
            fields["extrainfo"] = m.fields["extrainfo"]
        for c in m.cpe:
            if c not in cpe and not any(x.startswith(c) for x in cpe):
                cpe.append(c)
    return Match(primary.service, primary.trigger, primary.rule, fields, cpe)


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
