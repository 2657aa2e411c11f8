"""p0f v3's signature grammar and the DB records it reads into (hostprint's passive.txt and the
user's p0f.fp both use it): labels, TCP and HTTP signatures, the quirk names, the MTU table.

The grammar is p0f's documented one (p0f docs/README §5, summarised in
../shared/reference/stack-fingerprinting.md §1); the code is our own. Matching lives in
match/passive.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hostprint.errors import UsageError
from hostprint.stackfacts import initial_ttl

MAX_DIST = 35  # p0f config.h: a TTL more than this far below the initial TTL is out of range
QUIRK_ORDER = ("df", "id+", "id-", "ecn", "0+", "flow", "seq-", "ack+", "ack-", "uptr+", "urgf+",
               "pushf+", "ts1-", "ts2+", "opt+", "exws", "bad")
QUIRKS = frozenset(QUIRK_ORDER)
V4_ONLY = frozenset({"df", "id+", "id-", "0+"})
V6_ONLY = frozenset({"flow"})
FUZZY_MAY_VANISH = frozenset({"df", "id+"})
FUZZY_MAY_APPEAR = frozenset({"id-", "ecn"})

# Our confidence for each match outcome (specific > generic > fuzzy); not a p0f number.
CONFIDENCE = {(False, False): 0.9, (True, False): 0.7, (False, True): 0.5, (True, True): 0.4}


#: p0f guess_dist's rule: the nearest common initial TTL above the observed one
guess_ittl = initial_ttl


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
    out: list[str] = []
    cur: list[str] = []
    depth = 0
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
