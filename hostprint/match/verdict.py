"""One OS verdict per host from every technique's evidence, read generically.

Each technique leaves a block in `host.os` (model.OsBlock): the classes it names, or an explicit
"unknown" with the nearest class. Banners add distribution hints. The verdict:

- groups claims by family and combines independent techniques with a noisy-or, each discounted by
  how much the technique is trusted in general (METHOD_TRUST; a technique this module has never
  heard of gets DEFAULT_TRUST, so a new technique needs no code here);
- keeps the most specific description of the best family (a class of a probing technique first),
  refined by a banner's distribution and release;
- does not average disagreement away. A stack that fits no class (the probes' "unknown", with its
  distance) is not overridden by a timing or passive claim: the host is "unknown, nearest …",
  with the other claims as evidence. Two probing techniques that each name a different family with
  confidence are evidence of a stack outside the DBs: "unknown" with both nearest classes.
  A technique's own "unknown" beside another's match lowers that match's confidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from hostprint.model import Evidence, OsEvidence, OsHint, OsMatch, UnknownOs
from hostprint.signatures.knowledge import calibrations, families

METHOD_TRUST = {"stack": 0.9, "timing": 0.85, "passive": 0.6, "banner": 0.7, "enum": 0.7}
DEFAULT_TRUST = 0.5
#: Techniques that probe (or watch) the stack itself; a banner speaks for one service only.
STACK_METHODS = ("stack", "timing", "passive")
#: Below this a technique's best class is too weak to count as a disagreeing claim.
CLAIM_FLOOR = 0.5
#: A match beside another technique's explicit "unknown" keeps this share of its confidence.
UNKNOWN_BESIDE_PENALTY = 0.85
#: The probing techniques whose "unknown" outweighs any other claim (they look at the whole stack).
DECISIVE_UNKNOWN = ("stack",)
#: Two techniques naming different families is disagreement only if both are probing ones.
DISAGREEING_METHODS = ("stack", "timing")


@dataclass
class _Claim:
    method: str
    match: OsMatch
    family: str
    hint: OsHint | None = None

    @property
    def confidence(self) -> float:
        return self.match.confidence


def _trust(method: str) -> float:
    return METHOD_TRUST.get(method, DEFAULT_TRUST)


def _probability(method: str, conf: float) -> float:
    """A technique's stand-alone chance of being right: its class confidence discounted by the
    technique's trust, then mapped through its measured calibration where there is one
    (signatures/knowledge/calibration.txt)."""
    raw = _trust(method) * conf
    cal = calibrations().get(method)
    return cal(raw) if cal is not None else raw


def _key(family: str) -> str:
    return family.strip().lower()


def _claims(ev: OsEvidence) -> list[_Claim]:
    """Each technique's classes, one claim per (technique, family): its best class of that family,
    or for a technique whose confidences are one distribution (timing's posterior) the family's
    summed share (three tied Linux classes at 0.3 are 0.9 for Linux). When a listen limit left
    classes it cannot separate, the technique vouches for the family only, not for a class name."""
    out = []
    for method, block in ev.blocks.items():
        if method == "banner":
            continue
        fams: dict[str, list[OsMatch]] = {}
        for m in block.matches:
            if m.family:
                fams.setdefault(_key(m.family), []).append(m)
        censored = bool(getattr(block, "censored_ambiguous", []))
        for ms in fams.values():
            best = max(ms, key=lambda m: m.confidence)
            if block.exclusive and len(ms) > 1:
                best = replace(best, confidence=min(1.0, sum(m.confidence for m in ms)))
            if censored:
                best = replace(best, name=best.family or best.name, generation=None)
            out.append(_Claim(method, best, best.family or ""))
    for h in ev.hints:
        what = " ".join(x for x in (h.distribution, h.release) if x) or h.family
        m = OsMatch(name=what, family=h.family, confidence=0.9 if h.release else 0.7, cpe=[h.cpe] if h.cpe else [],
                    evidence=[Evidence("banner", f"{h.source or 'banner'}: {h.evidence or what}")])
        out.append(_Claim("banner", m, h.family, h))
    return out


def _detail(c: _Claim) -> str:
    m = c.match
    if c.method == "banner" and m.evidence:
        return m.evidence[0].detail
    if m.evidence and m.evidence[0].detail:
        return f"{m.name}: {m.evidence[0].detail}"
    return f"{m.name} ({m.confidence:.0%})"


def _unknown_detail(method: str, u: UnknownOs) -> str:
    if u.distance is not None:
        how = f"distance {u.distance:g}"
    elif u.components:
        how = ", ".join(f"{k} {v:g}" for k, v in u.components.items())
    else:
        how = u.reason or "no class fits"
    why = f": {'; '.join(u.reasons[:3])}" if u.reasons else ""
    return f"no class fits; nearest {u.nearest or '?'} ({how}){why}"


def combine(ev: OsEvidence) -> tuple[list[OsMatch], UnknownOs | None]:
    """(combined matches best first, or an explicit unknown). Both empty without evidence."""
    claims = _claims(ev)
    unknowns = {m: b.unknown for m, b in ev.blocks.items() if b.unknown is not None and not b.matches}
    notes = [n for b in ev.blocks.values() for n in b.notes()]
    for method in DECISIVE_UNKNOWN:
        u = unknowns.get(method)
        if u is not None:
            verdict = _decisive_unknown(method, u, claims, unknowns)
            verdict.evidence += notes
            return [], verdict
    disagreement = _disagreement(claims)
    if disagreement is not None:
        disagreement.evidence += notes
        return [], disagreement
    if not claims:
        if notes:  # a technique measured something and said why it names no class
            return [], UnknownOs(reason="no technique names a class", evidence=notes)
        return [], None
    fams: dict[str, list[_Claim]] = {}
    for c in claims:
        fams.setdefault(_key(c.family), []).append(c)
    out = [_family_match(cs, unknowns) for cs in fams.values()]
    out.sort(key=lambda m: -m.confidence)
    out[0].evidence += notes
    return out, None


def _decisive_unknown(method: str, u: UnknownOs, claims: list[_Claim],
                      unknowns: Mapping[str, UnknownOs | None]) -> UnknownOs:
    evidence = [Evidence(method, _unknown_detail(method, u))]
    best: dict[str, _Claim] = {}
    for c in claims:
        if c.method != method and (c.method not in best or c.confidence > best[c.method].confidence):
            best[c.method] = c
    evidence += [Evidence(c.method, f"names {_detail(c)}, but the {method} probes fit no class")
                 for c in best.values()]
    evidence += [Evidence(m, _unknown_detail(m, other)) for m, other in unknowns.items()
                 if m != method and other is not None]
    return UnknownOs(nearest=u.nearest, family=u.family, distance=u.distance, accuracy=u.accuracy,
                     disagreements=list(u.disagreements), components=dict(u.components),
                     reason=f"the {method} probes fit no known class", evidence=evidence)


def _disagreement(claims: list[_Claim]) -> UnknownOs | None:
    """Two probing techniques whose best classes are of different families, both confident."""
    best: dict[str, _Claim] = {}
    for c in claims:
        if c.method in DISAGREEING_METHODS and (c.method not in best or c.confidence > best[c.method].confidence):
            best[c.method] = c
    strong = [c for c in best.values() if c.confidence >= CLAIM_FLOOR]
    if len({_key(c.family) for c in strong}) < 2:
        return None
    strong.sort(key=lambda c: -_trust(c.method) * c.confidence)
    lead = strong[0]
    parts = "; ".join(f"{c.method} names {c.match.name} ({c.confidence:.0%})" for c in strong)
    return UnknownOs(nearest=lead.match.name, family=lead.family,
                     reason=f"techniques disagree on the family ({parts}): a stack no DB describes",
                     evidence=[Evidence(c.method, _detail(c)) for c in strong])


def _family_match(cs: list[_Claim], unknowns: Mapping[str, UnknownOs | None]) -> OsMatch:
    best_by_method: dict[str, float] = {}
    for c in cs:
        best_by_method[c.method] = max(best_by_method.get(c.method, 0.0), c.confidence)
    miss = 1.0
    for method, conf in best_by_method.items():
        miss *= 1 - _probability(method, conf)
    conf = 1 - miss
    others_unknown = [m for m, u in unknowns.items() if u is not None and m not in best_by_method]
    if others_unknown:
        conf *= UNKNOWN_BESIDE_PENALTY ** len(others_unknown)
    # the most specific description: a probing technique's class first, then passive, then banners
    ranked = sorted(cs, key=lambda c: (c.method == "banner", c.method == "passive", -c.confidence))
    top = ranked[0]
    name = top.match.name
    hints = [c.hint for c in cs if c.hint is not None and c.hint.distribution]
    dist = None
    if hints:
        h = max(hints, key=lambda h: bool(h.release))
        dist = " ".join(x for x in (h.distribution, h.release) if x)
        if top.method != "banner":
            name = f"{name} ({dist})"
    chosen = [top] + [c for c in cs if c.method == "banner"]
    cpes = list(dict.fromkeys(x for c in chosen for x in c.match.cpe))
    shown: dict[str, int] = {}
    evidence = []
    for c in ranked:  # at most three per technique: the runner-up classes say how sure it is
        shown[c.method] = shown.get(c.method, 0) + 1
        if shown[c.method] <= 3:
            evidence.append(Evidence(c.method, _detail(c)))
    for m in others_unknown:
        u = unknowns[m]
        if u is not None:
            evidence.append(Evidence(m, _unknown_detail(m, u)))
    fam = families().get(top.family)
    return OsMatch(name=name, family=top.family, vendor=top.match.vendor or (fam.vendor if fam else None),
                   generation=top.match.generation,
                   device_type=top.match.device_type or (fam.device_type if fam and fam.device_type else None)
                   or "general purpose",
                   distribution=dist, confidence=round(conf, 3), cpe=cpes, methods=sorted(best_by_method),
                   evidence=evidence)


def apply(ev: OsEvidence) -> None:
    """Set the combined verdict (matches, or an explicit unknown) from the blocks present."""
    ev.matches, ev.unknown = combine(ev)
