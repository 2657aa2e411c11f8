"""A version range from behaviour: the intersection of every rule of signatures/version_ranges.txt
that holds for what the behaviour probes observed.

Observations are plain data by kind (`{"ssh-kexinit": {"kex": [...], ...}, "pg-startup": {"F":
"postmaster.c", ...}}`); a rule holds when all its conditions do. The range is reported as a
range ("2.3.x", ">= 8.5", ">= 14, < 17"), never a point; rules that exclude each other are a
conflict (a backport, a patched build or a wrong rule) and give no range. A version the banner
states is checked against the range and a contradiction is said, not hidden.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from hostprint.model import Evidence, VersionRange
from hostprint.signatures.version_rules import Condition, RangeRule, load

Observations = Mapping[str, Mapping[str, object]]


def version_key(v: str) -> tuple[int, ...]:
    """'9.2p1' -> (9, 2); '2.3.19.1' -> (2, 3, 19, 1); the leading dotted number only."""
    m = re.match(r"\d+(?:\.\d+)*", v.strip())
    return tuple(int(x) for x in m.group().split(".")) if m else ()


def _cmp(a: str, b: str) -> int:
    ka, kb = version_key(a), version_key(b)
    n = max(len(ka), len(kb))
    ka, kb = ka + (0,) * (n - len(ka)), kb + (0,) * (n - len(kb))
    return (ka > kb) - (ka < kb)


def _values(v: object) -> list[str]:
    if v is None:
        return []
    if isinstance(v, (list, tuple, set)):
        return [str(x) for x in v]
    return [str(v)]


def holds(c: Condition, obs: Mapping[str, object]) -> bool:
    vals = _values(obs.get(c.field))
    low = [x.lower() for x in vals]
    if c.op == "has":
        return c.value.lower() in low
    if c.op == "lacks":
        return c.field in obs and c.value.lower() not in low
    if c.op == "is":
        return len(vals) == 1 and vals[0].lower() == c.value.lower()
    if c.op == "matches":
        rx = re.compile(c.value, re.I)
        return any(rx.search(x) for x in vals)
    return False


_NTLM_WINDOWS = re.compile(r"\bWindows (\d+\.\d+) build (\d+)\b")


def stated_version(product: str | None, version: str | None, extrainfo: str | None) -> str | None:
    """The version a banner states, to check the range against. A Windows SMB server states none in
    its product, but its NTLMSSP CHALLENGE names the OS version and build (MS-NLMP §2.2.2.10), which
    the match keeps in extrainfo ("NTLMSSP Windows 10.0 build 17763"): that is "10.0.17763"."""
    if version or not product or not product.lower().startswith("microsoft windows"):
        return version
    m = _NTLM_WINDOWS.search(extrainfo or "")
    return f"{m.group(1)}.{m.group(2)}" if m else None


def rules_for(product: str | None, rules: Sequence[RangeRule] | None = None) -> list[RangeRule]:
    if not product:
        return []
    return [r for r in (rules if rules is not None else load()) if r.product.search(product)]


def kinds_for(product: str | None) -> set[str]:
    """The observations the rules of this product read (which behaviour probes are worth sending)."""
    return {r.observe for r in rules_for(product)}


def range_text(low: str | None, high: str | None) -> str:
    """'2.3.x' when the range is exactly one minor series, else '>= low, < high' / '>= low' / '< high'."""
    if low and high:
        kl, kh = version_key(low), version_key(high)
        if len(kl) == 2 and len(kh) == 2 and kl[0] == kh[0] and kh[1] == kl[1] + 1:
            return f"{low}.x"
        if len(kl) == 1 and len(kh) == 1 and kh[0] == kl[0] + 1:
            return f"{low}.x"
        return f">= {low}, < {high}"
    if low:
        return f">= {low}"
    if high:
        return f"< {high}"
    return "unknown"


def _evidence(r: RangeRule, obs: Mapping[str, object]) -> Evidence:
    seen = "; ".join(f"{c.text()}" for c in r.when)
    cfg = " (default configuration)" if r.config == "default" else ""
    note = f" [{r.note}]" if r.note else ""
    src = "; ".join(s.removeprefix("documented: ").removeprefix("measured: ") for s in r.sources)
    return Evidence("behaviour", f"{r.id}: {r.observe} {seen} -> {r.gives_text()}{cfg}{note} (source: {src})")


def infer(product: str | None, observations: Observations, banner_version: str | None = None,
          rules: Sequence[RangeRule] | None = None) -> VersionRange | None:
    """The range the observations allow, or None when no rule of the product applies."""
    matched = [r for r in rules_for(product, rules)
               if r.observe in observations and all(holds(c, observations[r.observe]) for c in r.when)]
    if not matched or product is None:
        return None
    low: str | None = None
    high: str | None = None
    for r in matched:
        if r.low and (low is None or _cmp(r.low, low) > 0):
            low = r.low
        if r.high and (high is None or _cmp(r.high, high) < 0):
            high = r.high
    vr = VersionRange(product=product, evidence=[_evidence(r, observations[r.observe]) for r in matched])
    if low and high and _cmp(low, high) >= 0:
        lows = [r.id for r in matched if r.low and _cmp(r.low, high) >= 0]
        highs = [r.id for r in matched if r.high and _cmp(r.high, low) <= 0]
        vr.conflict = (f"rules disagree: {', '.join(lows)} say >= {low} but {', '.join(highs)} say < {high} "
                       "(a backport, a patched build or a wrong rule)")
        vr.text = "inconsistent"
        return vr
    if not (low or high):  # only evidence rules held
        vr.text = "unknown"
        return vr
    vr.low, vr.high, vr.text = low, high, range_text(low, high)
    if banner_version and version_key(banner_version):
        if (low and _cmp(banner_version, low) < 0) or (high and _cmp(banner_version, high) >= 0):
            vr.conflict = f"the banner says {banner_version}, the behaviour says {vr.text}"
    return vr


def contains(vr: VersionRange, version: str) -> bool:
    """Whether `version` lies in the range (tests and reports)."""
    if vr.low and _cmp(version, vr.low) < 0:
        return False
    if vr.high and _cmp(version, vr.high) >= 0:
        return False
    return bool(vr.low or vr.high)
