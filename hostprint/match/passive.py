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

from dataclasses import dataclass, field
from typing import Any

from hostprint.errors import UsageError

MAX_DIST = 35  # p0f config.h: a TTL more than this far below the initial TTL is out of range
QUIRK_ORDER = ("df", "id+", "id-", "ecn", "0+", "flow", "seq-", "ack+", "ack-", "uptr+", "urgf+",
               "pushf+", "ts1-", "ts2+", "opt+", "exws", "bad")
QUIRKS = frozenset(QUIRK_ORDER)
V4_ONLY = frozenset({"df", "id+", "id-", "0+"})
V6_ONLY = frozenset({"flow"})
FUZZY_MAY_VANISH = frozenset({"df", "id+"})
FUZZY_MAY_APPEAR = frozenset({"id-", "ecn"})
INITIAL_TTLS = (32, 64, 128, 255)

# Our confidence for each match outcome (specific > generic > fuzzy); not a p0f number.
CONFIDENCE = {(False, False): 0.9, (True, False): 0.7, (False, True): 0.5, (True, True): 0.4}


def guess_ittl(ttl: int) -> int:
    """Round an observed TTL up to the nearest common initial TTL (p0f guess_dist's rule)."""
    for t in INITIAL_TTLS:
        if ttl <= t:
            return t
    return 255


@dataclass(frozen=True)
class Label:
    generic: bool
    cls: str  # "unix", "win", "other", ... or "!" for applications
    name: str
    flavor: str
    source: str  # where the entry comes from (file:line plus its documented origin)

    @property
    def full(self) -> str:
        return f"{self.name} {self.flavor}".strip()


@dataclass
class TcpSigEntry:
    label: Label
    text: str
    ver: int | None  # None = '*'
    ittl: int
    bad_ttl: bool
    olen: int
    mss: int | None
    wtype: str  # "n" literal, "mod", "mss", "mtu", "*"
    wval: int
    wscale: int | None
    layout: tuple[str, ...]
    quirks: frozenset[str]
    pclass: int | None


@dataclass
class HttpSigEntry:
    label: Label
    text: str
    ver: int | None
    horder: list[tuple[str, bool, str | None]]  # (lower-case name, optional, value substring)
    habsent: frozenset[str]
    expsw: str
    sys: list[str] = field(default_factory=list)


@dataclass
class SignatureDB:
    syn: list[TcpSigEntry] = field(default_factory=list)
    synack: list[TcpSigEntry] = field(default_factory=list)
    http_request: list[HttpSigEntry] = field(default_factory=list)
    http_response: list[HttpSigEntry] = field(default_factory=list)
    mtu: dict[int, str] = field(default_factory=dict)
    ua_os: list[tuple[str, str]] = field(default_factory=list)  # (substring in User-Agent, OS name)
    sources: list[str] = field(default_factory=list)

    def extend(self, other: SignatureDB) -> None:
        self.syn += other.syn
        self.synack += other.synack
        self.http_request += other.http_request
        self.http_response += other.http_response
        for k, v in other.mtu.items():
            self.mtu.setdefault(k, v)
        self.ua_os += [u for u in other.ua_os if u not in self.ua_os]
        self.sources += other.sources


# --------------------------------------------------------------------------- grammar


def parse_tcp_sig(text: str, label: Label, where: str) -> TcpSigEntry:
    """`ver:ittl:olen:mss:wsize,scale:olayout:quirks:pclass` (p0f README §5)."""
    parts = text.strip().split(":")
    if len(parts) != 8:
        raise UsageError(f"{where}: TCP signature {text!r}: expected 8 ':'-separated fields")
    ver_s, ittl_s, olen_s, mss_s, win_s, lay_s, q_s, pc_s = parts
    try:
        ver = None if ver_s == "*" else int(ver_s)
        if ver not in (None, 4, 6):
            raise ValueError
        bad_ttl = ittl_s.endswith("-")
        ittl_s = ittl_s.rstrip("-")
        if "+" in ittl_s:  # observed+distance form
            a, b = ittl_s.split("+", 1)
            ittl = int(a) + (0 if b == "?" else int(b))
        else:
            ittl = int(ittl_s)
        if not 1 <= ittl <= 255:
            raise ValueError
        olen = int(olen_s)
        mss = None if mss_s == "*" else int(mss_s)
        w_s, _, sc_s = win_s.partition(",")
        wscale = None if sc_s in ("*", "") else int(sc_s)
        if w_s == "*":
            wtype, wval = "*", 0
        elif w_s.startswith("mss*"):
            wtype, wval = "mss", int(w_s[4:])
        elif w_s.startswith("mtu*"):
            wtype, wval = "mtu", int(w_s[4:])
        elif w_s.startswith("%"):
            wtype, wval = "mod", int(w_s[1:])
            if wval <= 0:
                raise ValueError
        else:
            wtype, wval = "n", int(w_s)
        layout = tuple(x.strip() for x in lay_s.split(",") if x.strip())
        for item in layout:
            if item not in ("nop", "mss", "ws", "sok", "sack", "ts") and not (
                    item.startswith("eol+") and item[4:].isdigit()) and not (item.startswith("?") and item[1:].isdigit()):
                raise ValueError(f"option {item!r}")
        quirks = frozenset(x.strip() for x in q_s.split(",") if x.strip())
        if quirks - QUIRKS:
            raise ValueError(f"quirk {sorted(quirks - QUIRKS)[0]!r}")
        pclass = None if pc_s == "*" else (0 if pc_s == "0" else 1 if pc_s == "+" else int("x"))
    except ValueError as e:
        why = f" (bad {e})" if str(e) and not str(e).startswith("invalid literal") else ""
        raise UsageError(f"{where}: bad TCP signature {text!r}{why}") from None
    return TcpSigEntry(label, text.strip(), ver, ittl, bad_ttl, olen, mss, wtype, wval, wscale, layout, quirks, pclass)


def parse_http_sig(text: str, label: Label, where: str, sys: list[str] | None = None) -> HttpSigEntry:
    """`ver:horder:habsent:expsw`; in horder '?Name' is optional and 'Name=[substr]' checks a value."""
    parts = text.strip().split(":", 3)
    if len(parts) != 4:
        raise UsageError(f"{where}: HTTP signature {text!r}: expected 4 ':'-separated fields")
    ver_s, order_s, absent_s, expsw = parts
    if ver_s not in ("*", "0", "1"):
        raise UsageError(f"{where}: HTTP signature {text!r}: version {ver_s!r} is not 0, 1 or *")
    horder: list[tuple[str, bool, str | None]] = []
    for item in _split_headers(order_s):
        opt = item.startswith("?")
        item = item[1:] if opt else item
        name, eq, val = item.partition("=")
        if eq:
            if not (val.startswith("[") and val.endswith("]")):
                raise UsageError(f"{where}: HTTP signature {text!r}: value of {name!r} must be [..]")
            horder.append((name.strip().lower(), opt, val[1:-1]))
        else:
            horder.append((name.strip().lower(), opt, None))
    habsent = frozenset(x.strip().lower() for x in absent_s.split(",") if x.strip())
    return HttpSigEntry(label, text.strip(), None if ver_s == "*" else int(ver_s), horder, habsent, expsw, sys or [])


def _split_headers(s: str) -> list[str]:
    """Commas separate headers except inside a [value]."""
    out, cur, depth = [], [], 0
    for ch in s:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return [x for x in out if x]


# --------------------------------------------------------------------------- observed signatures


@dataclass(slots=True)
class TcpObservation:
    """One SYN or SYN+ACK as p0f describes it (fields named after its signature)."""

    ver: int
    ttl: int
    olen: int
    mss: int | None
    win: int
    wscale: int | None
    layout: tuple[str, ...]
    quirks: frozenset[str]
    pclass: int
    tos: int
    hdr_len: int  # IP + TCP header bytes (p0f's "actual size" for the mtu* window form)
    tsval: int | None
    tsecr: int | None
    synack: bool
    ipid: int = 0
    flow: int = 0

    def key(self, peer_mss: int | None) -> tuple:
        return (self.synack, self.ver, self.ttl, self.olen, self.mss, self.win, self.wscale, self.layout,
                self.quirks, self.pclass, self.hdr_len, peer_mss if self.synack else None)


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
