"""Passive signatures and their matching: TCP SYN / SYN+ACK and HTTP headers, p0f v3's method.

Why p0f's rules and field grammar: they are documented (p0f docs/README §5, summarised in
../shared/reference/stack-fingerprinting.md §1), users know them, and the user's own p0f.fp can
then be read unchanged next to hostprint's DB. The model and code here are our own.

Matching (README §5 and the reference §1.5): candidates must have the same option layout (which
includes the EOL padding), IP option length, IP version (or '*'), MSS, window scale and payload
class (or wildcards) and a window that fits (literal, %N, mss*N, mtu*N, '*'). Quirks must be
equal, except that `df`/`id+` disappearing or `id-`/`ecn` appearing makes the match *fuzzy*, as
does a TTL out of range (above the signature's initial TTL or more than MAX_DIST below it).
Preference: first exact specific match, else first exact generic, else first fuzzy; userland
tools (class '!') never match fuzzily. Confidence is hostprint's own scale over those outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hostprint.engine.headers import TcpObservation
from hostprint.model import Evidence, OsBlock, OsMatch, to_json
from hostprint.signatures.passive_sigs import (  # noqa: F401 - the grammar's names, re-exported for matchers
    CONFIDENCE,
    FUZZY_MAY_APPEAR,
    FUZZY_MAY_VANISH,
    MAX_DIST,
    QUIRK_ORDER,
    QUIRKS,
    V4_ONLY,
    V6_ONLY,
    HttpSigEntry,
    Label,
    SignatureDB,
    TcpSigEntry,
    guess_ittl,
)

# --------------------------------------------------------------------------- observed signatures


def win_multiple(o: TcpObservation, peer_mss: int | None = None) -> tuple[int, bool]:
    """(N, is_mtu) when the window is N x MSS (or a related size), else (0, False).

    The order of candidate divisors follows the reference §1.3 (p0f detect_win_multi): MSS,
    MSS-12 with timestamps, 1460 and 1448 (MTU 1500 IPv4), IPv6 equivalents, then the MTU forms
    MSS+40, MSS+headers, 1500, and on SYN+ACKs the peer's MSS and MSS-12."""
    win, mss = o.win, o.mss or 0
    if not win or mss < 100:
        return 0, False
    cands: list[tuple[int, bool]] = [(mss, False)]
    if o.tsval is not None:
        cands.append((mss - 12, False))
    cands += [(1460, False), (1448, False)]
    if o.ver == 6:
        cands += [(1440, False), (1428, False)]
    cands += [(mss + 40, True), (mss + o.hdr_len, True)]
    if o.ver == 6:
        cands.append((mss + 60, True))
    cands.append((1500, True))
    if o.synack and peer_mss:
        cands += [(peer_mss, False), (peer_mss - 12, False)]
    for d, mtu in cands:
        if d > 0 and win % d == 0:
            return win // d, mtu
    return 0, False


def raw_signature(o: TcpObservation, peer_mss: int | None = None) -> str:
    """The observation in signature grammar, as p0f prints `raw_sig` (for comparison with p0f)."""
    ittl = guess_ittl(o.ttl)
    dist = ittl - o.ttl
    ttl = f"{o.ttl}+{dist}" if dist <= MAX_DIST else f"{o.ttl}+?"
    n, mtu = win_multiple(o, peer_mss)
    win = f"{'mtu' if mtu else 'mss'}*{n}" if n else str(o.win)
    scale = str(o.wscale or 0)  # p0f prints 0 when there is no window scale option
    mss = str(o.mss or 0)  # p0f keeps 0 for "no MSS option" and prints it (checked against p0f -r)
    quirks = ",".join(q for q in QUIRK_ORDER if q in o.quirks)
    return f"{o.ver}:{ttl}:{o.olen}:{mss}:{win},{scale}:{','.join(o.layout)}:{quirks}:{'+' if o.pclass else '0'}"


@dataclass
class TcpMatch:
    label: Label
    entry: TcpSigEntry
    generic: bool
    fuzzy: bool
    distance: int

    def os_dict(self, full: bool = True) -> dict[str, Any]:
        """full=False: the entry is named by file:line only (per-observation records stay short;
        the host summary carries the entry's documented origin)."""
        return {"name": self.label.full, "family": self.label.name, "class": self.label.cls,
                "confidence": CONFIDENCE[(self.generic, self.fuzzy)], "generic": self.generic,
                "fuzzy": self.fuzzy, "signature": self.entry.text,
                "source": self.label.source if full else self.label.source.split(" (", 1)[0]}


@dataclass
class HttpMatch:
    label: Label
    entry: HttpSigEntry
    dishonest: bool  # the claimed software (User-Agent / Server) does not contain the expected string


class PassiveMatcher:
    """Bucketed by (role, option layout) since the layout must match exactly."""

    def __init__(self, db: SignatureDB):
        self.db = db
        self._buckets: dict[tuple[bool, tuple[str, ...]], list[TcpSigEntry]] = {}
        # headers whose values some HTTP signature checks (part of the HTTP match cache key)
        self.http_value_headers = tuple(sorted({n for e in db.http_request + db.http_response
                                                for n, _, v in e.horder if v is not None}))
        for synack, entries in ((False, db.syn), (True, db.synack)):
            for e in entries:
                self._buckets.setdefault((synack, e.layout), []).append(e)

    def match_tcp(self, o: TcpObservation, peer_mss: int | None = None) -> TcpMatch | None:
        cands = self._buckets.get((o.synack, o.layout))
        if not cands:
            return None
        multi, use_mtu = win_multiple(o, peer_mss)
        generic: TcpSigEntry | None = None
        fuzzy: TcpSigEntry | None = None
        ignore = V6_ONLY if o.ver == 4 else V4_ONLY
        oq = o.quirks - ignore
        for e in cands:
            is_fuzzy = False
            if e.ver is not None and e.ver != o.ver:
                continue
            if e.olen != o.olen:
                continue
            eq = e.quirks - ignore
            if eq != oq:
                if (eq - oq) - FUZZY_MAY_VANISH or (oq - eq) - FUZZY_MAY_APPEAR:
                    continue
                is_fuzzy = True
            if e.bad_ttl:
                if e.ittl < o.ttl:
                    continue
            elif e.ittl < o.ttl or e.ittl - o.ttl > MAX_DIST:
                is_fuzzy = True
            if e.mss is not None and e.mss != (o.mss or 0):  # p0f: no MSS option = 0
                continue
            if e.wscale is not None and e.wscale != (o.wscale or 0):  # no WS option = scale 0
                continue
            if e.pclass is not None and e.pclass != o.pclass:
                continue
            wt = e.wtype
            if wt == "n":
                if e.wval != o.win:
                    continue
            elif wt == "mod":
                if o.win % e.wval:
                    continue
            elif wt == "mss":
                if use_mtu or multi != e.wval:
                    continue
            elif wt == "mtu":
                if not use_mtu or multi != e.wval:
                    continue
            if not is_fuzzy:
                if not e.label.generic:
                    return self._result(e, o, False, False)
                if generic is None:
                    generic = e
            elif fuzzy is None and e.label.cls != "!":
                fuzzy = e
        if generic is not None:
            return self._result(generic, o, True, False)
        if fuzzy is not None:
            return self._result(fuzzy, o, fuzzy.label.generic, True)
        return None

    @staticmethod
    def _result(e: TcpSigEntry, o: TcpObservation, generic: bool, fuzzy: bool) -> TcpMatch:
        d = e.ittl - o.ttl
        if d < 0 or d > MAX_DIST:
            d = guess_ittl(o.ttl) - o.ttl
        return TcpMatch(e.label, e, generic, fuzzy, d)

    def link(self, mtu: int) -> str | None:
        return self.db.mtu.get(mtu)

    def match_http(self, request: bool, version: int, headers: list[tuple[str, str]], software: str) -> HttpMatch | None:
        entries = self.db.http_request if request else self.db.http_response
        names = [n.lower() for n, _ in headers]
        present = set(names)
        values = {n.lower(): v for n, v in headers}
        best: HttpMatch | None = None
        for e in entries:
            if e.ver is not None and e.ver != version:
                continue
            if e.habsent & present:
                continue
            if not _order_fits(e.horder, names, values):
                continue
            m = HttpMatch(e.label, e, bool(e.expsw) and e.expsw not in software)
            if not e.label.generic:
                return m
            if best is None:
                best = m
        return best

    def ua_os(self, user_agent: str) -> str | None:
        for token, osname in self.db.ua_os:
            if token in user_agent:
                return osname
        return None


# Headers a client or server adds depending on context (RFC 9110 §§ 8, 10-13: content, conditional,
# range, authentication headers; cookies): their presence does not break a header-order match.
_CONTEXT_HEADERS = frozenset({
    "cookie", "set-cookie", "referer", "origin", "authorization", "proxy-authorization", "content-length",
    "content-type", "content-encoding", "content-language", "content-range", "cache-control", "pragma",
    "if-modified-since", "if-none-match", "if-match", "if-range", "if-unmodified-since", "range",
    "expires", "etag", "last-modified", "upgrade-insecure-requests", "x-requested-with", "age", "via",
    "location", "vary",
})


def _order_fits(horder: list[tuple[str, bool, str | None]], names: list[str], values: dict[str, str]) -> bool:
    """Signature headers appear in the signature's order (optional ones may be missing, values
    contain the [substring]); other headers are allowed only if they are context headers."""
    sig_names = {n for n, _, _ in horder}
    seq = [n for n in names if n in sig_names]
    if any(n not in sig_names and n not in _CONTEXT_HEADERS for n in names):
        return False
    i = 0
    for name, optional, val in horder:
        if i < len(seq) and seq[i] == name:
            if val is not None and val not in values.get(name, ""):
                return False
            i += 1
        elif not optional:
            return False
    return i == len(seq)


def passive_block(summary: dict[str, Any]) -> OsBlock:
    """A passively seen host's evidence block (technique "passive"): the most frequent TCP match
    of its own traffic as the class it names, and what else the traffic revealed (HTTP software,
    NAT signs, uptime from the TCP timestamp clock, link MTU, claims that contradict the stack)."""
    from hostprint.signatures.knowledge import families

    best = summary.get("os")
    matches = []
    if isinstance(best, dict) and best.get("name"):
        fam = families().get(best.get("family"))
        how = ("generic" if best.get("generic") else "exact") + (", fuzzy" if best.get("fuzzy") else "")
        seen = summary.get("observations") or {}
        n = sum(v for v in seen.values() if isinstance(v, int)) if isinstance(seen, dict) else 0
        matches.append(OsMatch(
            name=str(best["name"]), family=fam.name if fam else best.get("family"), vendor=fam.vendor if fam else None,
            device_type=fam.device_type if fam and fam.device_type else None,
            confidence=float(best.get("confidence") or 0), db="p0f" if "p0f" in str(best.get("source")) else "hostprint",
            evidence=[Evidence("passive", f"{best.get('signature')} ({how}; {best.get('source')}; "
                                          f"{n} packets seen)")],
            data={k: to_json(best.get(k)) for k in ("class", "generic", "fuzzy", "signature", "source")}))
    keep = ("first_seen", "last_seen", "observations", "labels", "mtu", "link", "initial_ttls", "signatures",
            "uptime", "timestamps", "http", "dishonest", "nat")
    return OsBlock("passive", matches=matches, data={k: to_json(summary.get(k)) for k in keep})
