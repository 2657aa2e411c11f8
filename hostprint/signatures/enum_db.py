"""The rules that turn enumerated service facts into OS classes (signatures/enum_os.txt).

Each rule names one fact (`snmp.sysDescr`, `ntp.system`, `smb.os_version`, `ldap.<attribute>`), a
regex searched in it, and the class it names with {group} templates. Loaded once; a bad regex,
template or missing source is one UsageError naming file and line.
"""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass
from pathlib import Path

from hostprint.errors import UsageError
from hostprint.signatures.records import load_records

PATH = Path(__file__).with_name("enum_os.txt")
KEYS = frozenset({"Field", "Pattern", "Family", "Name", "Generation", "Cpe", "Confidence"})


@dataclass(frozen=True)
class EnumRule:
    name: str
    field: str
    pattern: re.Pattern[str]
    family: str
    label: str
    generation: str | None
    cpe: str | None
    confidence: float
    sources: tuple[str, ...]
    where: str


def _check_template(t: str | None, groups: set[str], where: str) -> None:
    if t is None:
        return
    for _lit, field, _spec, _conv in string.Formatter().parse(t):
        if field is not None and field not in groups:
            raise UsageError(f"{where}: template {t!r} names {{{field}}}, which the Pattern has no group for")


@functools.lru_cache(maxsize=4)
def rules(path: Path = PATH) -> tuple[EnumRule, ...]:
    out = []
    for r in load_records(path, frozenset({"Rule"}), KEYS):
        fieldname, pat, fam, label = r.one("Field"), r.one("Pattern"), r.one("Family"), r.one("Name")
        if not (fieldname and pat and fam and label):
            raise UsageError(f"{r.where}: Rule {r.name} needs Field, Pattern, Family and Name")
        try:
            rx = re.compile(pat)
        except re.error as e:
            raise UsageError(f"{r.where}: bad Pattern: {e}") from None
        groups = set(rx.groupindex)
        for t in (label, r.one("Generation"), r.one("Cpe")):
            _check_template(t, groups, r.where)
        try:
            conf = float(r.one("Confidence") or "0.7")
        except ValueError:
            raise UsageError(f"{r.where}: Confidence must be a number 0..1") from None
        out.append(EnumRule(r.name, fieldname, rx, fam, label, r.one("Generation"), r.one("Cpe"),
                            min(max(conf, 0.0), 1.0), tuple(r.sources), r.where))
    return tuple(out)
