"""OS classes from what enumerated services say about their host (probes/enum.py): each fact is
matched against the rules of signatures/enum_os.txt; every rule that matches names a class, with
the fact it read as evidence. The combined verdict weighs the block like any other technique's."""

from __future__ import annotations

from collections.abc import Mapping

from hostprint.model import Evidence, Json, OsMatch
from hostprint.signatures.enum_db import EnumRule, rules
from hostprint.signatures.knowledge import families


def _fill(template: str | None, groups: Mapping[str, str | None]) -> str | None:
    if template is None:
        return None
    return template.format(**{k: (v or "") for k, v in groups.items()})


def facts_of(services: Mapping[str, Mapping[str, Json]]) -> list[tuple[str, str, str]]:
    """(field, value, where) for every string fact: services are keyed "161/udp snmp" and hold
    {"kind": "snmp", …facts}; list values (LDAP attributes) give one fact per value."""
    out = []
    for where, facts in services.items():
        kind = facts.get("kind")
        if not isinstance(kind, str):
            continue
        for k, v in facts.items():
            for item in v if isinstance(v, list) else [v]:
                if isinstance(item, (str, int)) and not isinstance(item, bool):
                    out.append((f"{kind}.{k}", str(item), where))
    return out


def match(services: Mapping[str, Mapping[str, Json]], db: tuple[EnumRule, ...] | None = None) -> list[OsMatch]:
    """The classes the facts name, best first (one per rule that matched)."""
    fams = families()
    out: list[OsMatch] = []
    for rule in db if db is not None else rules():
        for fieldname, value, where in facts_of(services):
            if fieldname != rule.field:
                continue
            m = rule.pattern.search(value)
            if m is None:
                continue
            g = m.groupdict()
            fam = fams.get(rule.family)
            shown = value if len(value) <= 160 else value[:157] + "..."
            out.append(OsMatch(name=_fill(rule.label, g) or rule.family, family=rule.family,
                               vendor=fam.vendor if fam else None, generation=_fill(rule.generation, g),
                               device_type=fam.device_type if fam and fam.device_type else None,
                               confidence=rule.confidence, cpe=[c] if (c := _fill(rule.cpe, g)) else [],
                               evidence=[Evidence("enum", f"{where} {fieldname.split('.', 1)[1]}: {shown}")],
                               db="hostprint", data={"rule": rule.name, "rule_at": rule.where}))
            break
    out.sort(key=lambda m: -m.confidence)
    return out
