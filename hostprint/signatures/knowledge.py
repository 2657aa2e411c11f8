"""Facts about OS families, relays and distributions, read from signatures/knowledge/*.txt.

They used to be tables in code (three family-to-vendor maps that disagreed on "ios", the relay
roles, the banner regexes); as data each fact carries its source and a user can see and extend
them. Loaded once per process.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from hostprint.errors import UsageError
from hostprint.signatures.records import load_records

DIR = Path(__file__).with_name("knowledge")


@dataclass(frozen=True)
class Family:
    name: str
    vendor: str
    device_type: str | None
    aliases: tuple[str, ...]


class Families:
    def __init__(self, families: list[Family]):
        self.by_name = {f.name: f for f in families}
        self.by_alias = {a: f for f in families for a in f.aliases}
        self._folded: dict[str, list[Family]] = {}
        for f in families:
            self._folded.setdefault(f.name.lower(), []).append(f)

    def get(self, name: str | None) -> Family | None:
        """Exact family name, else a lower-case alias, else a case-insensitive name when only one
        family has it (Cisco "IOS" and Apple "iOS" differ only in case)."""
        if not name:
            return None
        name = name.strip()
        if name in self.by_name:
            return self.by_name[name]
        low = name.lower()
        if low in self.by_alias:
            return self.by_alias[low]
        cands = self._folded.get(low, [])
        return cands[0] if len(cands) == 1 else None

    def vendor(self, name: str | None) -> str | None:
        f = self.get(name)
        return f.vendor if f else None


@functools.lru_cache(maxsize=1)
def families() -> Families:
    recs = load_records(DIR / "families.txt", frozenset({"Family"}), frozenset({"Vendor", "Alias", "Device"}))
    out = []
    for r in recs:
        vendor = r.one("Vendor")
        if not vendor:
            raise UsageError(f"{r.where}: Family {r.name!r} has no Vendor line")
        out.append(Family(r.name, vendor, r.one("Device"), tuple(a.lower() for a in r.all("Alias"))))
    return Families(out)


@dataclass(frozen=True)
class Relay:
    family: str
    kind: str  # architecture finding kind: syn-relay | nat
    answers: str


@functools.lru_cache(maxsize=1)
def relays() -> dict[str, Relay]:
    recs = load_records(DIR / "relays.txt", frozenset({"Relay"}), frozenset({"Kind", "Answers"}))
    out = {}
    for r in recs:
        kind, answers = r.one("Kind"), r.one("Answers")
        if not kind or not answers:
            raise UsageError(f"{r.where}: Relay {r.name!r} needs Kind and Answers lines")
        out[r.name] = Relay(r.name, kind, answers)
    return out


@dataclass(frozen=True)
class DistroRule:
    rule: str
    name: str
    family: str
    pattern: re.Pattern[str]
    release_group: int | None
    cpe: str | None

    def cpe_for(self, release: str | None) -> str | None:
        if not self.cpe:
            return None
        if "{release}" in self.cpe:
            return self.cpe.replace("{release}", release) if release else self.cpe.replace(":{release}", "")
        return self.cpe


@functools.lru_cache(maxsize=1)
def distro_rules() -> list[DistroRule]:
    recs = load_records(DIR / "distros.txt", frozenset({"Distro"}),
                        frozenset({"Name", "Family", "Pattern", "Release", "CPE"}))
    out = []
    for r in recs:
        name, family, pattern = r.one("Name"), r.one("Family"), r.one("Pattern")
        if not name or not family or not pattern:
            raise UsageError(f"{r.where}: Distro {r.name!r} needs Name, Family and Pattern lines")
        try:
            rx = re.compile(pattern)
        except re.error as e:
            raise UsageError(f"{r.where}: bad Pattern: {e}") from None
        rel = r.one("Release")
        if rel is not None and (not rel.isdigit() or int(rel) > rx.groups):
            raise UsageError(f"{r.where}: Release must name a group of the pattern (1..{rx.groups})")
        out.append(DistroRule(r.name, name, family, rx, int(rel) if rel else None, r.one("CPE")))
    return out


@dataclass(frozen=True)
class Calibration:
    """Raw stand-alone confidence -> the share right, piecewise linear between measured points."""

    technique: str
    points: tuple[tuple[float, float], ...]

    def __call__(self, raw: float) -> float:
        pts = self.points
        if not pts or raw < pts[0][0] or raw > pts[-1][0]:
            return raw
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            if x0 <= raw <= x1:
                return y0 + (y1 - y0) * (raw - x0) / (x1 - x0) if x1 > x0 else y1
        return pts[-1][1]


@functools.lru_cache(maxsize=1)
def calibrations() -> dict[str, Calibration]:
    recs = load_records(DIR / "calibration.txt", frozenset({"Calibration"}), frozenset({"Point"}))
    out = {}
    for r in recs:
        pts = []
        for p in r.all("Point"):
            try:
                raw, right = (float(x) for x in p.split())
            except ValueError:
                raise UsageError(f"{r.where}: Point needs two numbers, got {p!r}") from None
            pts.append((raw, right))
        pts.sort()
        if any(b[1] < a[1] for a, b in zip(pts, pts[1:])):
            raise UsageError(f"{r.where}: Calibration {r.name!r} must not fall as confidence rises")
        out[r.name] = Calibration(r.name, tuple(pts))
    return out
