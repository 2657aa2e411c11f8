"""One OS verdict per host from every kind of evidence hostprint has.

Inputs (each optional, written by its probe into `host.os`):
- `stack.matches`: stack-probe matches (-O), each with name/family/vendor/generation/confidence;
- `timing.matches`: retransmission-timing matches (--cron-os), name/family/confidence;
- `passive.matches`: passive fingerprints of the host's own traffic;
- `hints`: distribution hints from service banners (-sV), e.g. Debian 12 from `+deb12u3`.

Families are combined with a noisy-or over independent methods, each discounted by how much we
trust that method in general (a stack match on a DB of thousands of prints is strong; a banner can
be forged and only speaks for one service). The best class of the best family keeps its name and
generation; a banner's distribution and release refine it without changing the family. Every
piece of evidence is kept in the match's `evidence` list, so a reader can see which test said what.
"""

from __future__ import annotations

from typing import Any

METHOD_TRUST = {"stack": 0.9, "timing": 0.85, "passive": 0.6, "banner": 0.7}


def _family(name: str | None) -> str:
    return (name or "").strip().lower()


def combine(os_: dict[str, Any]) -> list[dict[str, Any]]:
    """Combined matches, best first: {name, family, vendor, generation, device_type, confidence,
    evidence[], cpe[]}. Empty when there is no evidence."""
    cands: list[dict[str, Any]] = []
    for method, block in (("stack", os_.get("stack")), ("timing", os_.get("timing")), ("passive", os_.get("passive"))):
        if not isinstance(block, dict):
            continue
        for m in block.get("matches") or []:
            if not m.get("family"):
                continue
            cands.append({"method": method, "family": m["family"], "name": m.get("name") or m["family"],
                          "vendor": m.get("vendor"), "generation": m.get("generation"),
                          "device_type": m.get("device_type"), "confidence": float(m.get("confidence") or 0),
                          "cpe": m.get("cpe") or [], "detail": _detail(method, m)})
    for h in os_.get("hints") or []:
        if h.get("family"):
            what = " ".join(x for x in (h.get("distribution"), h.get("release")) if x) or h["family"]
            cands.append({"method": "banner", "family": h["family"], "name": what, "vendor": None, "generation": None,
                          "device_type": None, "confidence": 0.9 if h.get("release") else 0.7,
                          "cpe": [h["cpe"]] if h.get("cpe") else [], "hint": h,
                          "detail": f"{h.get('source', 'banner')}: {h.get('evidence', what)}"})
    if not cands:
        return []
    fams: dict[str, list[dict[str, Any]]] = {}
    for c in cands:
        fams.setdefault(_family(c["family"]), []).append(c)
    out = []
    for fam, cs in fams.items():
        best_by_method: dict[str, float] = {}
        for c in cs:
            best_by_method[c["method"]] = max(best_by_method.get(c["method"], 0.0), c["confidence"])
        miss = 1.0
        for method, conf in best_by_method.items():
            miss *= 1 - METHOD_TRUST.get(method, 0.5) * conf
        conf = 1 - miss
        # the most specific description: stack or timing classes first, then passive, then banners
        ranked = sorted(cs, key=lambda c: (c["method"] == "banner", c["method"] == "passive", -c["confidence"]))
        top = ranked[0]
        name = top["name"]
        hints = [c["hint"] for c in cs if c["method"] == "banner" and c["hint"].get("distribution")]
        dist = None
        if hints:
            h = max(hints, key=lambda h: bool(h.get("release")))
            dist = " ".join(x for x in (h.get("distribution"), h.get("release")) if x)
            if top["method"] != "banner":
                name = f"{name} ({dist})"
        chosen = [top] + [c for c in cs if c["method"] == "banner"]
        cpes = list(dict.fromkeys(x for c in chosen for x in (c["cpe"] if isinstance(c["cpe"], list) else [c["cpe"]])))
        shown: dict[str, int] = {}
        evidence = []
        for c in ranked:  # at most three per method: the runner-up classes say how sure the method is
            shown[c["method"]] = shown.get(c["method"], 0) + 1
            if shown[c["method"]] <= 3:
                evidence.append({"method": c["method"], "detail": c["detail"]})
        out.append({"name": name, "family": top["family"], "vendor": top["vendor"] or _vendor(top["family"]),
                    "generation": top["generation"], "device_type": top["device_type"] or "general purpose",
                    "distribution": dist, "confidence": round(conf, 3), "cpe": cpes,
                    "methods": sorted(best_by_method),
                    "evidence": evidence})
    out.sort(key=lambda m: -m["confidence"])
    return out


def _detail(method: str, m: dict[str, Any]) -> str:
    ev = m.get("evidence")
    if isinstance(ev, list) and ev and isinstance(ev[0], dict) and ev[0].get("detail"):
        return f"{m.get('name')}: {ev[0]['detail']}"
    return f"{m.get('name')} ({float(m.get('confidence') or 0):.0%})"


def _vendor(family: str) -> str | None:
    return {"linux": "Linux", "windows": "Microsoft", "freebsd": "FreeBSD", "openbsd": "OpenBSD",
            "netbsd": "NetBSD", "macos": "Apple", "mac os x": "Apple", "os x": "Apple", "ios": "Cisco",
            "solaris": "Oracle", "junos": "Juniper", "vxworks": "Wind River", "gvisor": "Google"}.get(_family(family))


def apply(host: Any) -> None:
    """Set host.os["matches"] to the combined verdict (when there is any evidence)."""
    matches = combine(host.os)
    if matches:
        host.os["matches"] = matches
