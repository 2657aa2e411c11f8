"""Who is fingerprinting this network: probe detection for `hostprint passive` (issue 18).

p0f names the hosts that talk; this names the hosts that *probe*: port scans and sweeps (SYN,
FIN/NULL/Xmas, ACK/window, UDP, ICMP echo/timestamp/mask), nmap's second-generation OS probe set,
application trigger sweeps (amap's triggers over parallel connections, its RPC trigger, nmap -sV's
probes, hostprint's own RPC calls), SYNs whose SYN+ACK is never answered (timing fingerprinting),
and it names the tool when the packets carry its marks (zmap's fixed IP ID, masscan's and nmap's
SYN shapes, hostprint's IP IDs derived from its sequence cookies ...).

Knowledge lives in signatures/knowledge/probes.txt (the records format: every rule with a Source
line). This module holds the mechanics only:

- `parse_packet` reads one IPv4/IPv6 packet into a `Pkt` (never raises on any bytes: a malformed
  packet gives None), `shape_matches` tests a rule's packet shape against it;
- `ProbeDetector.feed(pkt)` keeps per-source tables bounded by caps and calls `emit(ProbeEvent)`
  the moment a threshold is crossed or the attributed tool changes; `finish()` emits the final
  record of every detection (rate, coverage, evidence so far).

The passive analyzer hands it only packets that can be probes (a numpy mask over each batch in
probes/passive.py): TCP segments without ACK, bare ACKs without options or payload, small first
payloads, UDP, and ICMP echo/timestamp/mask requests; normal bulk traffic never reaches Python.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from hostprint.model import ProbeCoverage, ProbeEvent, ProbeEvidence

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
_FLAG_LETTERS = ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (ACK, "A"), (URG, "U"), (ECE, "E"), (CWR, "C"))
PAYLOAD_KEEP = 256  # bytes of payload a rule can look at

_IP4 = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_U16X2 = struct.Struct("!HH")


def flag_text(f: int) -> str:
    return "".join(c for b, c in _FLAG_LETTERS if f & b) or "-"


@dataclass(slots=True)
class Pkt:
    """The header fields probe rules read, from one packet."""

    ts: float
    ver: int
    src: bytes
    dst: bytes
    proto: int  # 6, 17, 1 or 58
    ttl: int
    ipid: int
    df: bool
    tos: int
    sport: int = 0
    dport: int = 0
    flags: int = 0
    win: int = 0
    seq: int = 0
    ack: int = 0
    urg: int = 0
    reserved: int = 0
    opts: bytes = b""
    payload: bytes = b""
    plen: int = 0  # full payload length (TCP/UDP data, ICMP data after the 8-byte header)
    itype: int = -1
    icode: int = -1


def parse_packet(buf: bytes, ip: int, end: int, ts: float) -> Pkt | None:
    """One IP packet starting at buf[ip] (ending at `end`), or None when it is not one we read."""
    try:
        return _parse(buf, ip, end, ts)
    except (IndexError, struct.error, ValueError):
        return None


def _parse(buf: bytes, ip: int, end: int, ts: float) -> Pkt | None:
    if end - ip < 20:
        return None
    v = buf[ip] >> 4
    if v == 4:
        vihl, tos, tot, ipid, frag, ttl, proto, _ck, src, dst = _IP4.unpack_from(buf, ip)
        ihl = (vihl & 15) << 2
        if ihl < 20 or frag & 0x1FFF or frag & 0x2000:  # fragments: not read
            return None
        l4 = ip + ihl
        pend = min(end, ip + tot) if tot >= ihl else end
        df = bool(frag & 0x4000)
    elif v == 6:
        if end - ip < 40:
            return None
        tos = ((buf[ip] & 15) << 4) | (buf[ip + 1] >> 4)
        plen_ip = _U16X2.unpack_from(buf, ip + 4)[0]
        proto, ttl = buf[ip + 6], buf[ip + 7]
        src, dst = bytes(buf[ip + 8: ip + 24]), bytes(buf[ip + 24: ip + 40])
        ipid, df = 0, True
        l4 = ip + 40
        pend = min(end, l4 + plen_ip)
    else:
        return None
    p = Pkt(ts, v, bytes(src), bytes(dst), proto, ttl, ipid, df, tos)
    if proto == 6:
        if pend - l4 < 20:
            return None
        p.sport, p.dport, p.seq, p.ack, off, p.flags, p.win, _c, p.urg = _TCP.unpack_from(buf, l4)
        thl = (off >> 4) << 2
        if thl < 20 or l4 + thl > pend:
            return None
        p.reserved = off & 15
        p.opts = bytes(buf[l4 + 20: l4 + thl])
        p.plen = pend - (l4 + thl)
        p.payload = bytes(buf[l4 + thl: min(pend, l4 + thl + PAYLOAD_KEEP)])
    elif proto == 17:
        if pend - l4 < 8:
            return None
        p.sport, p.dport = _U16X2.unpack_from(buf, l4)
        p.plen = pend - (l4 + 8)
        p.payload = bytes(buf[l4 + 8: min(pend, l4 + 8 + PAYLOAD_KEEP)])
    elif proto in (1, 58):
        if pend - l4 < 8:
            return None
        p.itype, p.icode = buf[l4], buf[l4 + 1]
        p.plen = pend - (l4 + 8)
        p.payload = bytes(buf[l4 + 8: min(pend, l4 + 8 + PAYLOAD_KEEP)])
    else:
        return None
    return p


_HTTP_METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ", b"CONNECT ")


def _payload_class(payload: bytes) -> bytes:
    """What a first payload speaks, coarsely: a client's HTTP requests with a Host header are one
    class (a browser's different paths are not different triggers); anything else by its first
    bytes (amap's triggers differ there: TLS, RDP, SMB, NetBIOS, SMTP, FTP, RPC ...)."""
    if payload.startswith(_HTTP_METHODS) and b"\r\nHost:" in payload[:PAYLOAD_KEEP]:
        return b"http-with-host"
    return payload[:6]


def addr_text(b: bytes) -> str:
    if len(b) == 4:
        return "%d.%d.%d.%d" % (b[0], b[1], b[2], b[3])
    import ipaddress

    return str(ipaddress.IPv6Address(b))


# --------------------------------------------------------------------------- rules (shapes)

_PROTO = {"tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58}
#: tests that read more than the header fields in the shape cache key (see ProbeDetector._rules_for)
_DYNAMIC_TESTS = frozenset({"seq_ipid", "ipid_xor", "ipid_sport", "payload", "prefix", "contains", "fill", "ack", "seq",
                            "dport"})
_PAYLOAD_TESTS = frozenset({"payload", "prefix", "contains", "fill"})


@dataclass
class Shape:
    """One packet shape: every test must hold. Tests are parsed from the rule's `Match` line."""

    text: str
    tests: list[tuple[str, Any]]

    def __post_init__(self) -> None:
        self.static = [(_TEST[k], v) for k, v in self.tests if k not in _DYNAMIC_TESTS]
        self.dynamic = [(_TEST[k], v) for k, v in self.tests if k in _DYNAMIC_TESTS]
        self.needs_payload = any(k in _PAYLOAD_TESTS for k, _v in self.tests)
        #: the first payload byte an exact or prefix test needs (None: any), for _rules_for's index
        self.lead: int | None = next((v[0] for k, v in self.tests if k in ("payload", "prefix") and v), None)

    def matches(self, p: Pkt) -> bool:
        for k, want in self.tests:
            if not _TEST[k](p, want):
                return False
        return True

    def static_ok(self, p: Pkt) -> bool:
        """The tests the shape cache key covers (and no payload test on an empty payload)."""
        if self.needs_payload and p.plen == 0:
            return False
        return all(t(p, v) for t, v in self.static)

    def dynamic_ok(self, p: Pkt) -> bool:
        return all(t(p, v) for t, v in self.dynamic)


def _flags_exact(p: Pkt, want: int) -> bool:
    return p.proto == 6 and (p.flags & 0xFF) == want


def _ttl_range(p: Pkt, want: tuple[int, int]) -> bool:
    return want[0] <= p.ttl <= want[1]


def _ipid_from_seq(p: Pkt, shift: int) -> bool:
    """hostprint's cookies: the IP ID is bits of the sequence (or, when SYN is off and ACK on,
    the acknowledgment) number."""
    c = p.seq if p.flags & SYN or not p.flags & ACK else p.ack
    return p.ver == 4 and p.ipid == (c >> shift) & 0xFFFF and c != 0


def _opts_match(p: Pkt, want: bytes | tuple[int, int, int]) -> bool:
    """The TCP option bytes, exactly; or (length, value, mask) when the rule's hex has `?` digits
    (a field the tool fills per packet, such as a timestamp)."""
    if p.proto != 6:
        return False
    if isinstance(want, bytes):
        return p.opts == want
    n, val, mask = want
    return len(p.opts) == n and int.from_bytes(p.opts, "big") & mask == val


def _opts_value(v: str) -> bytes | tuple[int, int, int]:
    if "?" not in v:
        return _bytes_value(v)
    digits = v[2:] if v.startswith("0x") else ""
    if not digits or len(digits) % 2 or not re.fullmatch(r"[0-9a-fA-F?]+", digits):
        raise ValueError(f"opts value {v!r}: 0xHEX with ? for any hex digit")
    mask = int("".join("0" if c == "?" else "f" for c in digits), 16)
    return len(digits) // 2, int(digits.replace("?", "0"), 16), mask


_TEST: dict[str, Callable[[Pkt, Any], bool]] = {
    "proto": lambda p, w: p.proto == w,
    "flags": _flags_exact,
    "win": lambda p, w: p.proto == 6 and p.win == w,
    "opts": _opts_match,
    "noopts": lambda p, w: p.proto == 6 and (p.opts == b"") == w,
    "ipid": lambda p, w: p.ver == 4 and p.ipid == w,
    "ttl": _ttl_range,
    "df": lambda p, w: p.df == w,
    "tos": lambda p, w: p.tos == w,
    "urg": lambda p, w: p.proto == 6 and p.urg == w,
    "reserved": lambda p, w: p.proto == 6 and p.reserved == w,
    "itype": lambda p, w: p.itype == w,
    "icode": lambda p, w: p.icode == w,
    "plen": lambda p, w: p.plen == w,
    "payload": lambda p, w: p.payload == w,
    "prefix": lambda p, w: p.payload.startswith(w),
    "contains": lambda p, w: w in p.payload,
    "fill": lambda p, w: p.plen > 0 and p.payload == bytes([w]) * len(p.payload),
    "seq_ipid": _ipid_from_seq,
    "ipid_xor": lambda p, w: p.ver == 4 and (p.ipid == (int.from_bytes(p.dst, "big") ^ p.dport ^ p.seq) & 0xFFFF) == w,
    "ipid_sport": lambda p, w: p.ver == 4 and (p.ipid == p.sport) == w,
    "ack": lambda p, w: p.proto == 6 and p.ack == w,
    "seq": lambda p, w: p.proto == 6 and p.seq == w,
    "dport": lambda p, w: p.dport == w,
}


def _bytes_value(v: str) -> bytes:
    if v.startswith("0x"):
        return bytes.fromhex(v[2:])
    if len(v) >= 2 and v[0] == v[-1] == '"':
        return v[1:-1].encode("latin-1").decode("unicode_escape").encode("latin-1")
    raise ValueError(f"bytes value {v!r}: 0xHEX or \"text\"")


def _flags_value(v: str) -> int:
    if v == "-":
        return 0
    out = 0
    for ch in v:
        bit = dict((c, b) for b, c in _FLAG_LETTERS).get(ch)
        if bit is None:
            raise ValueError(f"flag letter {ch!r} (one of FSRPAUEC)")
        out |= bit
    return out


def parse_shape(text: str) -> Shape:
    """`key=value` tests separated by blanks (a quoted value keeps its blanks)."""
    tests: list[tuple[str, Any]] = []
    toks = re.findall(r'(\S+?)(=)("(?:[^"\\]|\\.)*"|\S*)|(\S+)', text)
    for k, eq, v, bad in toks:
        tok = bad or f"{k}={v}"
        if bad or not eq or k not in _TEST:
            raise ValueError(f"test {tok!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(_TEST))}")
        val: Any
        if k == "proto":
            if v not in _PROTO:
                raise ValueError(f"proto {v!r}")
            val = _PROTO[v]
        elif k == "flags":
            val = _flags_value(v)
        elif k == "opts":
            val = _opts_value(v)
        elif k in ("payload", "prefix", "contains"):
            val = _bytes_value(v)
        elif k in ("df", "noopts"):
            if v not in ("0", "1"):
                raise ValueError(f"{k}={v}: 0 or 1")
            val = v == "1"
        elif k == "ttl":
            lo, _, hi = v.partition("-")
            val = (int(lo, 0), int(hi or lo, 0))
        else:
            val = int(v, 0)
        tests.append((k, val))
    if not tests:
        raise ValueError("empty Match line")
    return Shape(text, tests)


@dataclass
class Rule:
    """A packet shape that says something: which tool sends it, for which method, and why we know."""

    name: str
    tool: str  # nmap, masscan, zmap, amap, hostprint, any
    method: str  # tcp-syn, os-probe, app-trigger, ...
    shapes: list[Shape]
    weight: int  # how many distinct packets of this rule make the evidence count
    sources: list[str]
    probe: str | None = None  # os-probe rules: which probe of the set this is
    set: str | None = None  # os-probe rules: the probe set (nmap-os)
    note: str = ""

    def matches(self, p: Pkt) -> bool:
        return any(s.matches(p) for s in self.shapes)


@dataclass
class Thresholds:
    ports: int = 15  # distinct ports on one host -> port scan
    hosts: int = 8  # distinct hosts on one port / ICMP kind -> sweep
    os_probes: int = 4  # distinct probes of a tool's OS set on one host
    triggers: int = 4  # distinct first payloads to one port from one source (own connections)
    trigger_window: float = 60.0
    unanswered: int = 3  # SYN+ACK retransmissions of one handshake the prober never answered
    zombie_probes: int = 4  # SYN+ACKs without a handshake to one host's port: an idle-scan zombie read
    sources: dict[str, list[str]] = field(default_factory=dict)


# --------------------------------------------------------------------------- per-source state

MAX_SOURCES = 4096
MAX_TARGETS = 1024  # per source and method
MAX_PORTS = 65536 * 2
MAX_CONNS = 4096
#: open handshakes over all sources: 2,000 clients each opening connections would otherwise keep
#: 4,096 each (~200 bytes an entry: 1.6 GB); over this, those whose SYN is older than the median go
MAX_CONNS_TOTAL = 65536


@dataclass
class _Method:
    first: float
    last: float
    packets: int = 0
    targets: dict[bytes, set[int]] = field(default_factory=dict)
    targets_over: int = 0  # targets not tracked (over MAX_TARGETS)
    ports: set[int] = field(default_factory=set)
    event: ProbeEvent | None = None


@dataclass
class _Source:
    addr: str
    first: float
    last: float
    methods: dict[str, _Method] = field(default_factory=dict)
    rules: dict[str, int] = field(default_factory=dict)  # rule name -> matching packets
    os_probes: dict[tuple[str, bytes], set[str]] = field(default_factory=dict)  # (tool, dst) -> probe names
    triggers: dict[tuple[bytes, int], dict[bytes, float]] = field(default_factory=dict)  # (dst, port) -> payload -> ts
    # probe-order rules: (rule, dst, port) -> [last Match line seen, its time, probes in order, most in order]
    orders: dict[tuple[str, bytes, int], list[Any]] = field(default_factory=dict)
    conns: dict[tuple[bytes, int, int], float] = field(default_factory=dict)  # (dst, dport, sport) -> SYN ts
    tool: str = "unknown"
    events: list[ProbeEvent] = field(default_factory=list)


# method names for bare scan packets (TCP flags without ACK, the ACK probe, UDP, ICMP)
_TCP_METHOD = {SYN: "syn", FIN: "fin", 0: "null", FIN | PSH | URG: "xmas", ACK: "ack", FIN | ACK: "maimon"}
_ICMP_METHOD = {(1, 8): "icmp-echo", (1, 13): "icmp-timestamp", (1, 15): "icmp-info", (1, 17): "icmp-mask",
                (58, 128): "icmp-echo"}
_KIND_OF = {"syn": "portscan", "fin": "portscan", "null": "portscan", "xmas": "portscan", "ack": "portscan",
            "maimon": "portscan", "udp": "portscan"}
METHOD_TEXT = {"syn": "SYN", "fin": "FIN", "null": "NULL", "xmas": "Xmas", "ack": "ACK/window", "maimon": "Maimon",
               "udp": "UDP", "icmp-echo": "ICMP echo", "icmp-timestamp": "ICMP timestamp", "icmp-mask": "ICMP mask",
               "icmp-info": "ICMP information request"}



def _method_target(src: _Source, method: str, p: Pkt, packets: int,
                   first: float | None = None) -> tuple[_Method, set[int] | None]:
    """`method`'s record in `src` (created at the first packet; `first`: a group's first packet,
    since groups come in the order of their last), counted `packets` more up to p.ts, and the port
    set of target p.dst - None once MAX_TARGETS targets are held (counted as over)."""
    m = src.methods.get(method)
    if m is None:
        m = src.methods[method] = _Method(p.ts if first is None else first, p.ts)
    elif first is not None:
        m.first = min(m.first, first)
    m.last = max(m.last, p.ts)
    m.packets += packets
    ports = m.targets.get(p.dst)
    if ports is None:
        if len(m.targets) >= MAX_TARGETS:
            m.targets_over += 1
            return m, None
        ports = m.targets[p.dst] = set()
    return m, ports

#: a rule whose header tests passed: the shapes left to test per packet, and those by their first payload byte
_Cand = tuple[Rule, tuple[Shape, ...], "dict[int, tuple[Shape, ...]] | None"]


class ProbeDetector:
    """Feed it packets (`feed`); it calls `emit(event)` as detections happen."""

    def __init__(self, rules: list[Rule], thresholds: Thresholds, emit: Callable[[ProbeEvent], None] | None = None):
        self.rules = rules
        self.th = thresholds
        self.emit = emit
        self.sources: dict[bytes, _Source] = {}
        self.stats = {"packets": 0, "events": 0, "sources_dropped": 0, "sources_finished_early": 0, "conns_dropped": 0}
        # rules by protocol, so a packet is tested only against rules that can match it
        self._static: dict[int, list[Rule]] = {}
        self._dynamic: dict[int, list[Rule]] = {}
        self._marks: set[int] = set()  # IP ID values a cached rule tests
        for r in rules:
            protos = {v for s in r.shapes for k, v in s.tests if k == "proto"} or {6, 17, 1, 58}
            table = self._dynamic if _needs_packet(r) else self._static
            for pr in protos:
                table.setdefault(pr, []).append(r)
            self._marks |= {v for s in r.shapes for k, v in s.tests if k == "ipid"}
        self._idx = {r.name: r for r in rules}
        self._shape_cache: dict[tuple[Any, ...], tuple[tuple[Rule, ...], tuple[_Cand, ...]]] = {}
        self._retx: dict[tuple[bytes, int, bytes, int, int], list[Any]] = {}
        # (prober, zombie, zombie's port) -> [SYN+ACKs without a handshake, last sequence number]
        self._zombie_reads: dict[tuple[bytes, bytes, int], list[int]] = {}
        self._group_cache: dict[tuple[Any, ...], tuple[Rule, ...]] = {}
        self._conn_adds = 0  # handshakes added since the total was last checked

    # ---------------------------------------------------------------- packets

    def feed(self, p: Pkt) -> None:
        self.stats["packets"] += 1
        src = self.sources.get(p.src)
        if src is None:
            if len(self.sources) >= MAX_SOURCES:
                self._prune()
            src = self.sources[p.src] = _Source(addr_text(p.src), p.ts, p.ts)
        if p.ts > src.last:  # (a batch's groups of like packets were counted before its other packets)
            src.last = p.ts
        elif p.ts < src.first:
            src.first = p.ts
        matched = self._rules_for(p)
        recount = False
        for r in matched:
            if r.method == "probe-order":
                continue  # counts only in order (_order)
            n = src.rules[r.name] = src.rules.get(r.name, 0) + 1
            if n == r.weight or not n & (n - 1):  # the ranking can only change when a count crosses these
                recount = True
            if r.method == "os-probe" and r.probe and r.set:
                got = src.os_probes.setdefault((r.set, p.dst), set())
                if r.probe not in got:
                    got.add(r.probe)
                    if len(got) == self.th.os_probes:
                        self._event(src, "os-fingerprint", r.set, p,
                                    detail=f"OS detection probes of the {r.set} set")
        if recount:
            self._attribute(src, p)
        if p.proto == 6:
            self._tcp(src, p, matched)
        elif p.proto == 17:
            self._scan(src, "udp", p, p.dport)
        else:
            m = _ICMP_METHOD.get((p.proto, p.itype))
            if m is not None:
                self._scan(src, m, p, -1)
        for r in matched:
            if r.method in ("app-trigger", "rpc-trigger"):
                self._event(src, "app-fingerprint", r.method, p, detail=r.note or r.name, once_key=r.name)

    def _rules_for(self, p: Pkt) -> tuple[Rule, ...]:
        # Header tests repeat with the shape: the rules they pass are cached by the fields they
        # read; per-packet tests (sequence-derived IP IDs, payload bytes) run only for the shapes
        # whose header tests passed.
        mark = p.ipid if p.ipid in self._marks else -1
        key = (p.proto, p.flags, p.win, p.opts, p.ttl, p.df, p.tos, p.urg, p.reserved, p.itype, p.icode, mark, p.plen)
        hit = self._shape_cache.get(key)
        if hit is None:
            fixed = tuple(r for r in self._static.get(p.proto, ()) if r.matches(p))
            found: list[_Cand] = []
            for r in self._dynamic.get(p.proto, ()):
                shapes = tuple(s for s in r.shapes if s.static_ok(p))
                if shapes:
                    by: dict[int, tuple[Shape, ...]] | None = None
                    if len(shapes) > 2 and all(s.lead is not None for s in shapes):
                        by = {}  # many payload shapes (a probe list): only those whose first byte fits
                        for s in shapes:
                            by[s.lead or 0] = by.get(s.lead or 0, ()) + (s,)
                    found.append((r, shapes, by))
            hit = (fixed, tuple(found))
            if len(self._shape_cache) > 4096:
                self._shape_cache.clear()
            self._shape_cache[key] = hit
        fixed, cands = hit
        if not cands:
            return fixed
        lead = p.payload[0] if p.payload else -1
        return fixed + tuple(r for r, shapes, by in cands
                             if any(s.dynamic_ok(p) for s in (shapes if by is None else by.get(lead, ()))))

    def _tcp(self, src: _Source, p: Pkt, matched: tuple[Rule, ...]) -> None:
        f = p.flags & 0x3F
        if f & RST:
            return
        if f & (SYN | ACK) == SYN | ACK:
            self._zombie(src, p)
            self._synack(p)
            return
        if f & (SYN | ACK) == SYN:
            m = "syn" if f == SYN else ("xmas" if f & FIN else None)
            if len(src.conns) >= MAX_CONNS:  # the older half goes (a port scan's SYNs never get a payload)
                for k in list(src.conns)[: MAX_CONNS // 2]:
                    del src.conns[k]
            src.conns[(p.dst, p.dport, p.sport)] = p.ts
            self._conn_adds += 1
            if self._conn_adds >= MAX_CONNS_TOTAL // 4:
                self._trim_conns()
            if m is not None and p.plen == 0:
                self._scan(src, m, p, p.dport)
            return
        if not f & ACK:
            m = _TCP_METHOD.get(f & ~(ECE | CWR))
            if m is not None:
                self._scan(src, m, p, p.dport)
            return
        if f == ACK and p.plen == 0 and not p.opts:
            if (p.dst, p.dport, p.sport) not in src.conns:  # no handshake of ours: an ACK probe
                self._scan(src, "ack", p, p.dport)
            return
        if f == FIN | ACK and p.plen == 0 and (p.dst, p.dport, p.sport) not in src.conns and not p.opts:
            self._scan(src, "maimon", p, p.dport)
            return
        if p.plen > 0:
            self._payload(src, p, matched)

    def _synack(self, p: Pkt) -> None:
        """A SYN+ACK sent again and again with one ISN: the client never completed the handshake
        and never reset it. Timing fingerprinters (Cron-OS, hostprint --cron-os, Hershel) do this on
        purpose to count the server's retransmissions; the detection belongs to the client."""
        key = (p.src, p.sport, p.dst, p.dport, p.seq)
        st = self._retx.get(key)
        if st is None:
            if len(self._retx) > MAX_CONNS * 4:
                self._retx.clear()
            st = self._retx[key] = [p.ts, 0.0, 1]  # last time, last gap, SYN+ACKs in the series
            return
        gap = p.ts - st[0]
        # a retransmission backs off: every gap at least 1.5 times the one before (Linux 1, 2, 4 s;
        # RFC 6298 doubling); equal or shrinking gaps are copies or a new connection, not a series
        if gap < 0.5 or gap < 1.5 * st[1]:
            st[:] = [p.ts, 0.0, 1]
            return
        st[0], st[1] = p.ts, gap
        st[2] += 1
        n = st[2]
        if n == self.th.unanswered + 1:  # the first one plus `unanswered` retransmissions
            client = self.sources.get(p.dst)
            if client is None:
                if len(self.sources) >= MAX_SOURCES:
                    self._prune()
                client = self.sources[p.dst] = _Source(addr_text(p.dst), p.ts, p.ts)
            client.last = p.ts
            m = client.methods.get("unanswered-synack")
            if m is None:
                m = client.methods["unanswered-synack"] = _Method(p.ts, p.ts)
            m.packets += 1
            m.last = p.ts
            m.targets.setdefault(p.src, set()).add(p.sport)
            m.ports.add(p.sport)
            self._event(client, "timing-fingerprint", "unanswered-synack", p,
                        detail=f"handshake left open: {n} SYN+ACKs from port {p.sport}, never acknowledged or reset")

    def _zombie(self, src: _Source, p: Pkt) -> None:
        """SYN+ACKs to one port of one host that never opened a connection to the sender, again
        and again with new sequence numbers: an idle scan reading its zombie's IP ID (each draws a
        RST whose IP ID is the reading; nmap -sI, hostprint -sI). p0f sees none of it (no SYN). The
        scan itself is SYNs with the zombie's address as source, reported with the detection."""
        z = self.sources.get(p.dst)
        if z is not None:
            if (p.src, p.sport, p.dport) in z.conns:
                return  # the answer to a SYN we saw: a server
            syn = z.methods.get("syn")
            if syn is not None and p.sport in syn.targets.get(p.src, ()):
                return  # the answer to a SYN scan's probe (its connection may be gone from conns' cap)
        key = (p.src, p.dst, p.dport)
        st = self._zombie_reads.get(key)
        if st is None:
            if len(self._zombie_reads) > MAX_CONNS * 4:
                self._zombie_reads.clear()
            st = self._zombie_reads[key] = [0, -1]
        if p.seq == st[1]:
            return  # a retransmission (_synack's business), not a new reading
        st[0] += 1
        st[1] = p.seq
        m, ports = _method_target(src, "zombie-ipid", p, 1)
        if ports is None:
            return
        ports.add(p.dport)
        m.ports.add(p.dport)
        if st[0] >= self.th.zombie_probes and m.event is None:
            m.event = self._event(src, "idle-scan", "zombie-ipid", p,
                                  detail=f"reads the IP ID of zombie {addr_text(p.dst)}: {st[0]} SYN+ACKs to port "
                                         f"{p.dport} without a handshake")

    def _payload(self, src: _Source, p: Pkt, matched: tuple[Rule, ...]) -> None:
        """First payloads to one port of one host over separate connections: amap's behaviour."""
        key = (p.dst, p.dport)
        conn = (p.dst, p.dport, p.sport)
        if conn not in src.conns:
            return
        syn_ts = src.conns.pop(conn)  # first payload of this connection only
        for r in matched:
            if r.method == "probe-order":
                self._order(src, r, p, syn_ts)
        seen = src.triggers.get(key)
        if seen is None:
            if len(src.triggers) >= MAX_CONNS:
                return
            seen = src.triggers[key] = {}
        head = _payload_class(p.payload)
        if head in seen:
            return
        # old payloads leave the window
        for k in [k for k, t in seen.items() if p.ts - t > self.th.trigger_window]:
            del seen[k]
        seen[head] = p.ts
        if len(seen) == self.th.triggers:
            self._event(src, "app-fingerprint", "trigger-sweep", p,
                        detail=f"{len(seen)} different first payloads to port {p.dport}, one connection each")

    def _order(self, src: _Source, r: Rule, p: Pkt, syn_ts: float) -> None:
        """A probe-order rule: its Match lines are one tool's probes in the order it sends them, one
        connection at a time. A first payload that matches a later line than the last one seen to
        this port, on a connection opened after that probe was sent, extends the run; any other
        restarts it (a run, not the whole list: nmap sends the probes that list the port first).
        `Weight` probes in a run: an app-fingerprint detection (probe-order) naming the rule's tool."""
        idx = next(i for i, sh in enumerate(r.shapes) if sh.matches(p))
        key = (r.name, p.dst, p.dport)
        st = src.orders.get(key)
        if st is None:
            if len(src.orders) >= MAX_CONNS:
                return
            st = src.orders[key] = [-1, float("-inf"), 0, 0]
        if idx == st[0]:  # the same probe again (a retry): neither in order nor out of it
            st[1] = p.ts
            return
        st[2] = st[2] + 1 if idx > st[0] and syn_ts >= st[1] else 1
        st[0], st[1] = idx, p.ts
        if st[2] <= st[3]:
            return
        st[3] = st[2]
        if st[2] < r.weight or st[2] <= src.rules.get(r.name, 0):
            return
        src.rules[r.name] = st[2]
        self._attribute(src, p)
        if st[2] == r.weight:
            self._event(src, "app-fingerprint", "probe-order", p, once_key=f"probe-order:{r.name}",
                        detail=f"first payloads to port {p.dport} in {r.tool}'s probe order, one connection at a time")

    def _scan(self, src: _Source, method: str, p: Pkt, port: int, many: list[int] | None = None,
              first: float | None = None) -> None:
        """Count probes of one method from `src` to p.dst: one (port; -1 for ICMP) or `many` ports
        (a group of like packets, feed_group) seen from `first` to p.ts."""
        m, ports = _method_target(src, method, p, 1 if many is None else len(many), first)
        if ports is None:
            return
        if many is not None:
            ports.update(many)
            if len(m.ports) < MAX_PORTS:
                m.ports.update(many)
            port = many[-1]
        elif port >= 0:
            ports.add(port)
            if len(m.ports) < MAX_PORTS:
                m.ports.add(port)
        if m.event is not None:
            return
        if method.startswith("icmp"):
            if len(m.targets) >= self.th.hosts:
                m.event = self._event(src, "sweep", method, p, detail=f"{METHOD_TEXT[method]} sweep")
        elif len(ports) >= self.th.ports:
            m.event = self._event(src, "portscan", method, p, detail=f"{METHOD_TEXT[method]} scan")
        elif len(m.targets) >= self.th.hosts:
            hosts_on_port = sum(1 for s in m.targets.values() if port in s)
            if hosts_on_port >= self.th.hosts:
                m.event = self._event(src, "sweep", method, p, detail=f"{METHOD_TEXT[method]} sweep of port {port}")

    # ---------------------------------------------------------------- groups of like packets (the fast path)

    def group_marks(self) -> tuple[list[int], set[str]] | None:
        """What feed_group needs computed per packet, or None when the rules test header-only TCP
        packets in ways a group cannot stand for: the seq_ipid shifts the rules use, and the other
        per-packet test kinds (only ipid_xor is allowed)."""
        shifts: set[int] = set()
        kinds: set[str] = set()
        for r in self.rules:
            for sh in r.shapes:
                if sh.needs_payload or not _group_can_match(sh):
                    continue
                for k, v in sh.tests:
                    if k == "seq_ipid":
                        shifts.add(int(v))
                    elif k in _DYNAMIC_TESTS:
                        kinds.add(k)
        if kinds - {"ipid_xor"}:
            return None
        return sorted(shifts), kinds

    def feed_group(self, p: Pkt, dports: list[int], sports: list[int], first: float, marks: int | None = None) -> None:
        """Packets from one source to one host that share every header field a rule reads (and
        every per-packet mark: the caller grouped them by those), differing only in ports, sequence
        numbers and times: `p` is one of them (the last, with its time), the ports are all of
        theirs; `marks` (bit j: seq_ipid shift j of group_marks(), then ipid_xor) lets the rules
        found for one header and marks stand for the next group with the same. Header-only TCP probes without ACK, or bare ACKs (the numpy grouping in
        probes/passive.py); what feed() does for each, done once."""
        n = len(dports)
        self.stats["packets"] += n
        src = self.sources.get(p.src)
        if src is None:
            if len(self.sources) >= MAX_SOURCES:
                self._prune()
            src = self.sources[p.src] = _Source(addr_text(p.src), first, p.ts)
        src.first = min(src.first, first)
        src.last = max(src.last, p.ts)
        if marks is None:
            matched = self._rules_for(p)
        else:  # the per-packet tests' results came with the group: cache by header and marks
            gk = (p.proto, p.flags, p.win, p.opts, p.ttl, p.df, p.tos, p.urg, p.reserved, p.ipid in self._marks
                  and p.ipid, marks)
            cached = self._group_cache.get(gk)
            if cached is None:
                cached = self._rules_for(p)
                if len(self._group_cache) > 4096:
                    self._group_cache.clear()
                self._group_cache[gk] = cached
            matched = cached
        recount = False
        for r in matched:
            old = src.rules.get(r.name, 0)
            new = src.rules[r.name] = old + n
            if old < r.weight <= new or old.bit_length() != new.bit_length():
                recount = True
            if r.method == "os-probe" and r.probe and r.set:
                got = src.os_probes.setdefault((r.set, p.dst), set())
                if r.probe not in got:
                    got.add(r.probe)
                    if len(got) == self.th.os_probes:
                        self._event(src, "os-fingerprint", r.set, p, detail=f"OS detection probes of the {r.set} set")
        if recount:
            self._attribute(src, p)
        f = p.flags & 0x3F
        if f & (SYN | ACK) == SYN:
            conns = src.conns
            i = 0
            while i < n:  # what feed() does per SYN, in slices that cannot fill the table
                if len(conns) >= MAX_CONNS:
                    for k in list(conns)[: MAX_CONNS // 2]:
                        del conns[k]
                j = i + MAX_CONNS - len(conns)
                conns.update(zip(zip(repeat(p.dst), dports[i:j], sports[i:j]), repeat(p.ts)))
                i = j
            self._conn_adds += n
            if self._conn_adds >= MAX_CONNS_TOTAL // 4:
                self._trim_conns()
            m = "syn" if f == SYN else ("xmas" if f & FIN else None)
            if m is not None:
                self._scan(src, m, p, -1, dports, first)
        elif not f & ACK:
            m = _TCP_METHOD.get(f & ~(ECE | CWR))
            if m is not None:
                self._scan(src, m, p, -1, dports, first)
        elif f in (ACK, FIN | ACK) and not p.opts:
            keep = [dp for dp, sp in zip(dports, sports) if (p.dst, dp, sp) not in src.conns]
            if keep:
                self._scan(src, "ack" if f == ACK else "maimon", p, -1, keep, first)

    # ---------------------------------------------------------------- attribution and events

    def _attribute(self, src: _Source, p: Pkt) -> None:
        """The tool whose rules the source's packets match most (rules of tool 'any' say nothing)."""
        score: dict[str, int] = {}
        for name, n in src.rules.items():
            r = self._rule(name)
            if r is None or r.tool == "any" or n < r.weight:
                continue
            score[r.tool] = score.get(r.tool, 0) + n * (4 if r.method in ("tool-mark", "rpc-trigger") else 1)
        tool = max(score, key=lambda t: (score[t], t)) if score else "unknown"
        if tool != src.tool:
            src.tool = tool
            for ev in src.events:  # every open detection of this source now names the tool
                if ev.tool != tool:
                    ev.tool = tool
                    ev.evidence = self._evidence(src)
                    ev.update = "tool"
                    ev.ts = p.ts
                    self._send(ev)

    def _rule(self, name: str) -> Rule | None:
        return self._idx.get(name)

    def _evidence(self, src: _Source) -> list[ProbeEvidence]:
        out = []
        for name, n in sorted(src.rules.items(), key=lambda kv: (-kv[1], kv[0])):
            r = self._rule(name)
            if r is None:
                continue
            out.append(ProbeEvidence(name, r.tool, n, r.note or r.name, r.sources[0] if r.sources else None))
        return out[:12]

    def _event(self, src: _Source, kind: str, method: str, p: Pkt, detail: str,
               once_key: str | None = None) -> ProbeEvent:
        key = once_key or f"{kind}:{method}"
        for ev in src.events:
            if ev.key == key:
                return ev
        ev = ProbeEvent(kind=kind, method=method, source=src.addr, tool=src.tool, detail=detail,
                        first_seen=src.first, ts=p.ts, key=key)
        ev.evidence = self._evidence(src)
        self._fill(src, ev)
        src.events.append(ev)
        self._send(ev)
        return ev

    def _fill(self, src: _Source, ev: ProbeEvent) -> None:
        m = src.methods.get(ev.method)
        if m is not None:
            ev.packets = m.packets
            ev.hosts = len(m.targets) + m.targets_over
            ev.ports = len(m.ports)
            dur = m.last - m.first
            ev.duration = round(dur, 3)
            ev.rate = round(m.packets / dur, 1) if dur > 0 else None
            ev.targets = [addr_text(a) for a in list(m.targets)[:8]]
            per = [len(s) for s in m.targets.values()]
            ev.coverage = ProbeCoverage(ev.hosts, ev.ports, max(per) if per else 0)
            if ev.kind == "idle-scan":
                self._spoofed(ev, m)
        elif ev.kind == "os-fingerprint":
            got = {a: s for (t, a), s in src.os_probes.items() if t == ev.method}
            ev.targets = [addr_text(a) for a in list(got)[:8]]
            ev.hosts = len(got)
            names = sorted({n for s in got.values() for n in s})
            ev.coverage = ProbeCoverage(len(got), probes=names)
            ev.packets = sum(src.rules.get(r.name, 0) for r in self.rules if r.method == "os-probe" and r.set == ev.method)
        elif ev.method == "probe-order":
            name = ev.key.split(":", 1)[1]
            r = self._rule(name)
            runs = [(d, port, st[3]) for (n, d, port), st in src.orders.items() if n == name and r and st[3] >= r.weight]
            ev.targets = list(dict.fromkeys(addr_text(d) for d, _p, _n in runs))[:8]
            ev.hosts, ev.ports = len({d for d, _p, _n in runs}), len({(d, port) for d, port, _n in runs})
            ev.packets = sum(n for _d, _p, n in runs)  # probes in order, over every port that had a run
            ev.coverage = ProbeCoverage(ev.hosts, ev.ports)
        else:
            ev.packets = sum(src.rules.get(r.name, 0) for r in self.rules if r.method in ("app-trigger", "rpc-trigger"))
        ev.first_seen, ev.last_seen = src.first, src.last

    def _spoofed(self, ev: ProbeEvent, m: _Method) -> None:
        """An idle scan's probes carry its zombie's address as source: the SYNs seen "from" each
        zombie (its own portscan detection, if it crossed the threshold) are the scan itself."""
        parts = []
        me = next((k for k, v in self.sources.items() if v.addr == ev.source), None)
        for zaddr in list(m.targets)[:8]:
            z = self.sources.get(zaddr)
            syn = z.methods.get("syn") if z is not None else None
            if syn is not None:
                if me is not None and me in syn.targets:  # hostprint -sI's global-counter test does this
                    parts.append(f"this address is the target of the SYNs sent as {addr_text(zaddr)}: these "
                                 "SYN+ACKs are spoofed too (a test that the zombie's counter is global)")
                    continue
                to = ", ".join(addr_text(a) for a in list(syn.targets)[:4])
                parts.append(f"{syn.packets} SYNs with {addr_text(zaddr)}'s address as source to {to} "
                             f"({len(syn.ports)} ports)")
        base = ev.detail.split("; spoofed: ")[0]
        ev.detail = base + ("; spoofed: " + "; ".join(parts) if parts else "")

    def _send(self, ev: ProbeEvent) -> None:
        import copy

        self.stats["events"] += 1
        if self.emit is not None:
            self.emit(copy.deepcopy(ev))  # the detection goes on changing; what was said stays

    def _trim_conns(self) -> None:
        """Keep the open handshakes of all sources under MAX_CONNS_TOTAL: over it, every one whose
        SYN is older than the median goes (counted in stats["conns_dropped"])."""
        self._conn_adds = 0
        tables = [s.conns for s in self.sources.values() if s.conns]
        if sum(map(len, tables)) <= MAX_CONNS_TOTAL:
            return
        times = sorted(t for c in tables for t in c.values())
        cut = times[len(times) // 2]
        dropped = 0
        for c in tables:
            old = [k for k, t in c.items() if t < cut]
            for k in old:
                del c[k]
            dropped += len(old)
        self.stats["conns_dropped"] += dropped

    def _prune(self) -> None:
        """Keep the source table bounded: drop the least recently seen half of the sources that
        raised nothing; when those are too few (a capture with thousands of scanners), the least
        recently seen half of the others too, each after its detections' final records are sent
        (counted in stats["sources_finished_early"]; a source seen again starts afresh)."""
        quiet = sorted((s.last, k) for k, s in self.sources.items() if not s.events)
        drop = [k for _t, k in quiet[: len(quiet) // 2]]
        if len(drop) < len(self.sources) // 4:
            noisy = sorted((s.last, k) for k, s in self.sources.items() if s.events)
            for _t, k in noisy[: max(1, len(noisy) // 2)]:
                self._finish_source(self.sources[k])
                drop.append(k)
                self.stats["sources_finished_early"] += 1
        for k in drop:
            del self.sources[k]
            self.stats["sources_dropped"] += 1

    def _finish_source(self, src: _Source) -> list[ProbeEvent]:
        out = []
        for ev in src.events:
            ev.evidence = self._evidence(src)
            self._fill(src, ev)
            ev.tool = src.tool
            ev.update = "final"
            ev.ts = src.last
            out.append(ev)
            self._send(ev)
        return out

    def finish(self) -> list[ProbeEvent]:
        """The final record of every detection (counts, rate and coverage over the whole run)."""
        out = []
        for src in self.sources.values():
            out += self._finish_source(src)
        return out


def _group_can_match(sh: Shape) -> bool:
    """Whether a shape can match a packet of feed_group's groups (TCP without ACK, or a bare
    ACK / FIN+ACK): not UDP/ICMP shapes, not SYN+ACK shapes (their per-packet tests then cost the
    groups nothing)."""
    for k, v in sh.tests:
        if k == "proto" and v != 6:
            return False
        if k == "flags" and v & SYN and v & ACK:
            return False
    return True


def _needs_packet(r: Rule) -> bool:
    """Rules whose tests read per-packet values (payload, sequence numbers, ports) cannot be cached
    by the header shape."""
    return any(k in _DYNAMIC_TESTS for s in r.shapes for k, _v in s.tests)


# --------------------------------------------------------------------------- the rules file

RULE_KEYS = frozenset({"Tool", "Method", "Match", "Weight", "Fact", "Set", "Probe", "Value"})
TOOLS = frozenset({"nmap", "masscan", "zmap", "amap", "hostprint", "xprobe2", "any"})
METHODS = frozenset({"tool-shape", "tool-mark", "os-probe", "app-trigger", "rpc-trigger", "probe-order"})


def default_rules_path() -> Any:
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "signatures" / "knowledge" / "probes.txt"


def load_rules(path: Any = None) -> tuple[list[Rule], Thresholds]:
    """Rules and thresholds from probes.txt (UsageError naming file:line for a bad entry)."""
    from pathlib import Path

    from hostprint.errors import UsageError
    from hostprint.signatures.records import load_records

    p = Path(path) if path is not None else default_rules_path()
    recs = load_records(p, frozenset({"Rule", "Threshold"}), RULE_KEYS)
    rules: list[Rule] = []
    th = Thresholds()
    for rec in recs:
        if rec.kind == "Threshold":
            if not hasattr(th, rec.name) or rec.name == "sources":
                raise UsageError(f"{rec.where}: unknown threshold {rec.name!r}")
            try:
                v = float(rec.one("Value") or "")
            except ValueError:
                raise UsageError(f"{rec.where}: threshold {rec.name} needs a numeric Value") from None
            setattr(th, rec.name, v if rec.name == "trigger_window" else int(v))
            th.sources[rec.name] = rec.sources
            continue
        tool, method = rec.one("Tool"), rec.one("Method")
        if tool not in TOOLS or method not in METHODS:
            raise UsageError(f"{rec.where}: rule {rec.name}: Tool one of {sorted(TOOLS)}, Method one of {sorted(METHODS)}")
        if method == "os-probe" and not (rec.one("Set") and rec.one("Probe")):
            raise UsageError(f"{rec.where}: os-probe rule {rec.name} needs Set and Probe")
        try:
            shapes = [parse_shape(m) for m in rec.all("Match")]
            weight = int(rec.one("Weight") or "1")
        except ValueError as e:
            raise UsageError(f"{rec.where}: rule {rec.name}: {e}") from None
        if not shapes:
            raise UsageError(f"{rec.where}: rule {rec.name} has no Match line")
        rules.append(Rule(rec.name, tool, method, shapes, max(1, weight), rec.sources, probe=rec.one("Probe"),
                          set=rec.one("Set"), note=rec.one("Fact") or ""))
    return rules, th


def detector(emit: Callable[[ProbeEvent], None] | None = None, path: Any = None) -> ProbeDetector:
    rules, th = load_rules(path)
    return ProbeDetector(rules, th, emit)
