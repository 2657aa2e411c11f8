"""Version-range rules (signatures/version_ranges.txt): what a behaviour says about a version.

A product whose banner hides its version still behaves like the releases it belongs to: an
algorithm it offers exists only since some release, a message it sends was reworded in another.
Each rule is one such fact, in the paragraph format of signatures/records.py:

    Range RULE-ID
    Product REGEX            matched against the identified product (case-insensitive)
    Observe KIND             which behaviour probe's observation it reads (ssh-kexinit, smb2-negotiate,
                             ldap-rootdse, imap, pop3, pg-startup, ftp)
    When FIELD OP VALUE      one or more, all must hold; OP is one of
                               has      the field (a list) contains VALUE (case-insensitive)
                               lacks    the field does not contain VALUE
                               is       the field equals VALUE
                               matches  the field (a list: any element) matches the regex VALUE
    Gives >= LOW | < HIGH | >= LOW < HIGH | none
                             the versions the rule allows (HIGH exclusive); `none` records the
                             observation as evidence and bounds nothing (a feature that was
                             backported, say)
    Config any | default     `default`: holds only for the default configuration (shown as such)
    Note TEXT                optional, shown with the evidence
    Source documented: …     the upstream changelog, release notes or source the rule rests on

Rules give bounds only from what the software does, never from its absence alone when a
configuration can remove a feature (an algorithm the admin disabled says nothing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from hostprint.errors import UsageError
from hostprint.signatures.records import parse_records

OPS = ("has", "lacks", "is", "matches")
KINDS = ("ssh-kexinit", "smb2-negotiate", "ldap-rootdse", "imap", "pop3", "pg-startup", "ftp")
DB_PATH = Path(__file__).with_name("version_ranges.txt")


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str

    def text(self) -> str:
        return f"{self.field} {self.op} {self.value}"


@dataclass(frozen=True)
class RangeRule:
    id: str
    product: re.Pattern[str]
    observe: str
    when: tuple[Condition, ...]
    low: str | None
    high: str | None
    config: str = "any"
    note: str | None = None
    sources: tuple[str, ...] = ()
    where: str = ""

    @property
    def bounds(self) -> bool:
        return self.low is not None or self.high is not None

    def gives_text(self) -> str:
        if self.low and self.high:
            return f">= {self.low}, < {self.high}"
        if self.low:
            return f">= {self.low}"
        if self.high:
            return f"< {self.high}"
        return "no bound"


_VERSION = re.compile(r"^\d+(\.\d+)*$")


def _gives(text: str, where: str) -> tuple[str | None, str | None]:
    if text.strip() == "none":
        return None, None
    low = high = None
    toks = text.split()
    if len(toks) not in (2, 4) or len(toks) % 2:
        raise UsageError(f"{where}: Gives wants '>= X', '< Y', '>= X < Y' or 'none', not {text!r}")
    for op, v in zip(toks[::2], toks[1::2]):
        if not _VERSION.match(v):
            raise UsageError(f"{where}: {v!r} is not a version (digits and dots)")
        if op == ">=" and low is None:
            low = v
        elif op == "<" and high is None:
            high = v
        else:
            raise UsageError(f"{where}: Gives wants '>= X', '< Y', '>= X < Y' or 'none', not {text!r}")
    return low, high


def parse_rules(text: str, origin: str) -> list[RangeRule]:
    out = []
    for r in parse_records(text, origin, frozenset({"Range"}),
                           frozenset({"Product", "Observe", "When", "Gives", "Config", "Note"})):
        product, observe, gives = r.one("Product"), r.one("Observe"), r.one("Gives")
        if not product or not observe or gives is None:
            raise UsageError(f"{r.where}: Range {r.name!r} needs Product, Observe and Gives")
        if observe not in KINDS:
            raise UsageError(f"{r.where}: unknown observation {observe!r} (known: {', '.join(KINDS)})")
        conds = []
        for w in r.all("When"):
            parts = w.split(None, 2)
            if len(parts) != 3 or parts[1] not in OPS:
                raise UsageError(f"{r.where}: When wants 'FIELD {'|'.join(OPS)} VALUE', not {w!r}")
            if parts[1] == "matches":
                try:
                    re.compile(parts[2])
                except re.error as e:
                    raise UsageError(f"{r.where}: bad regex {parts[2]!r}: {e}") from None
            conds.append(Condition(parts[0], parts[1], parts[2]))
        if not conds:
            raise UsageError(f"{r.where}: Range {r.name!r} has no When line")
        config = r.one("Config", "any") or "any"
        if config not in ("any", "default"):
            raise UsageError(f"{r.where}: Config is 'any' or 'default', not {config!r}")
        try:
            rx = re.compile(product, re.I)
        except re.error as e:
            raise UsageError(f"{r.where}: bad Product regex {product!r}: {e}") from None
        low, high = _gives(gives, r.where)
        out.append(RangeRule(r.name, rx, observe, tuple(conds), low, high, config, r.one("Note"),
                             tuple(r.sources), r.where))
    return out


@lru_cache(maxsize=4)
def load(path: str | None = None) -> tuple[RangeRule, ...]:
    p = Path(path) if path else DB_PATH
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read version-range rules {p}: {e.strerror or e}") from None
    return tuple(parse_rules(text, p.name))
