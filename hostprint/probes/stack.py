"""Active stack fingerprinting probes (nmap's second generation) and their attributes.

The probe set and the attribute definitions are nmap's, as documented in the nmap book and
summarised with sources in ../shared/reference/stack-fingerprinting.md §2.2–2.3: six SYNs 100 ms
apart (SEQ/OPS/WIN/T1), ECN, T2–T7, U1 and two ICMP echoes (IE). Responses are captured with kernel
timestamps through a Link and turned into nmap's notation (`SEQ(SP=…%GCD=…)` …), so the result can
be matched against the user's nmap-os-db and against hostprint's own DB, and printed as an
nmap-style fingerprint. The code is ours; only the facts (probe shapes, attribute meanings) are
nmap's.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
import zlib
from typing import Any

from hostprint.engine import packets as P
from hostprint.engine import replies, route
from hostprint.engine.checksum import checksum
from hostprint.engine.cookie import Cookie
from hostprint.engine.link import Links
from hostprint.model import Twin
from hostprint.probes.rounds import TwoRounds
from hostprint.probes.sequence import SeqSample
from hostprint.probes.stack_result import SEQ_PROBES, Reply, StackResult  # noqa: F401 - re-exported
from hostprint.stackfacts import initial_ttl, ip_id_class, isn_stats, on_clock, uptime

_TS = (P.OPT_TS, (0xFFFFFFFF, 0))
T_OPTS = [(P.OPT_WS, 10), (P.OPT_NOP, None), (P.OPT_MSS, 265), _TS, (P.OPT_SACKOK, None)]
# name: (flags, window, DF, port kind)
T_PROBES = {
    "T2": (0, 128, True, "open"),
    "T3": (P.SYN | P.FIN | P.URG | P.PSH, 256, False, "open"),
    "T4": (P.ACK, 1024, True, "open"),
    "T5": (P.SYN, 31337, False, "closed"),
    "T6": (P.ACK, 32768, True, "closed"),
    "T7": (P.FIN | P.PSH | P.URG, 65535, False, "closed"),
}
LB_TWINS = 8  # extra copies of SEQ1 from other source ports: do identical probes meet one stack?
U1_ID = 0x1042
U1_PAYLOAD = b"C" * 300
PROBE_TTL = 64


def options_string(opts: list[P.TCPOption]) -> str:
    """nmap's O attribute: M<mss hex>, N, W<ws hex>, T<tsval!=0><tsecr!=0>, S (SACK permitted), L (EOL)."""
    out = []
    for k, val in opts:
        v: Any = val  # int for MSS/WS, (tsval, tsecr) for TS
        if k == P.OPT_MSS:
            out.append("M%X" % v)
        elif k == P.OPT_NOP:
            out.append("N")
        elif k == P.OPT_WS:
            out.append("W%X" % v)
        elif k == P.OPT_TS:
            out.append("T%d%d" % (int(v[0] != 0), int(v[1] != 0)))
        elif k == P.OPT_SACKOK:
            out.append("S")
        elif k == P.OPT_EOL:
            out.append("L")
    return "".join(out)


def flags_nmap(flags: int) -> str:
    """F attribute: set flags in nmap's order E U A P R S F."""
    order = [(P.ECE, "E"), (P.URG, "U"), (P.ACK, "A"), (P.PSH, "P"), (P.RST, "R"), (P.SYN, "S"), (P.FIN, "F")]
    return "".join(c for bit, c in order if flags & bit)


class StackProbe(TwoRounds):
    result_type: type[StackResult] = StackResult  # stack6: IPv6's test order

    def __init__(self, addr: str, open_port: int | None, closed_port: int | None, closed_udp: int,
                 links: Links, wait: float = 1.0):
        self.addr = addr
        self.open_port = open_port
        self.closed_port = closed_port
        self.closed_udp = closed_udp
        self.links = links
        self.wait = wait
        self.cookie = Cookie()
        lo, hi = route.probe_port_range()
        self.sport = {name: lo + 128 + i for i, name in enumerate(
            ["SEQ1", "SEQ2", "SEQ3", "SEQ4", "SEQ5", "SEQ6", "ECN", "T2", "T3", "T4", "T5", "T6", "T7", "U1"]
            + [f"LB{i}" for i in range(1, LB_TWINS + 1)])}
        self.by_sport = {v: k for k, v in self.sport.items()}
        self.sent: dict[str, tuple[float, int, int, bytes]] = {}  # name -> (time, seq, ack, packet)
        self.replies: dict[str, Reply] = {}
        self.all_replies: dict[str, list[Reply]] = {}  # every answer, e.g. a SYN-ACK and its retransmission
        self.ts_rate: float | None = None  # Hz, set by _timestamp_attrs from one connection's clock
        if ":" not in addr:  # IPv6: probes/stack6.py sets its own
            self.dst = socket.inet_aton(addr)
            self.key = P.ip_to_int(addr)  # the address as the cookie reads it
            self.icmp_id = self.cookie(self.key, 0, 0, 55) & 0xFFFF

    # what an answer's IP header holds differs between the families (stack6: no IP ID, no DF)

    def _ip_id(self, rep: Reply) -> int | None:
        return rep.ip.id

    def _df(self, rep: Reply) -> str:
        return "Y" if rep.ip.df else "N"

    def _ip_attrs(self, rep: Reply, res: StackResult) -> dict[str, str]:
        """The IP header's attributes a TCP test starts with: DF, then T and TG."""
        return {"DF": self._df(rep), **self._ttl_attrs(rep.ip.ttl, res)}

    def _want(self) -> replies.Want:
        """TCP answers to our source ports, echo replies with our two ids, and the port
        unreachable quoting U1 (nmap's T tests check how a stack acknowledges, so the TCP answers
        are taken by our port, not by an ACK cookie)."""
        def ours(r: replies.Reply) -> bool:
            if r.proto == P.IPPROTO_TCP:
                return r.error is None and r.our_port in self.by_sport
            if r.proto == P.IPPROTO_ICMP:
                return r.error is None and r.icmp is not None and r.icmp.id in (self.icmp_id, (self.icmp_id + 1) & 0xFFFF)
            return r.error is not None and r.error.type == P.ICMP_UNREACH and r.our_port == self.sport["U1"]

        return replies.Want(peers=frozenset({self.dst}), icmp_types=frozenset({P.ICMP_ECHOREPLY}), valid=ours)

    def _on_reply(self, r: replies.Reply) -> None:
        if r.proto == P.IPPROTO_TCP:
            name = self.by_sport[r.our_port or 0]
        elif r.proto == P.IPPROTO_ICMP:
            name = "IE1" if r.icmp is not None and r.icmp.id == self.icmp_id else "IE2"
        else:
            name = "U1"
        self._keep(name, r)

    def _keep(self, name: str, r: replies.Reply) -> None:
        """The first answer to `name` is the one the tests read; every answer is kept too."""
        rep = Reply(r.ts, r.ip, r.l4, r.raw)
        self.replies.setdefault(name, rep)
        self.all_replies.setdefault(name, []).append(rep)

    def _rtts(self) -> list[float]:
        return [rep.ts - self.sent[n][0] for n, rep in self.replies.items() if n in self.sent]

    @property
    def rtt(self) -> float | None:
        """The slowest round trip among the answers (kernel receive time - our send time)."""
        rtts = self._rtts()
        return max(rtts) if rtts else None

    def _frame_again(self, name: str, link, mac) -> bytes:
        return link.eth(mac).encode() + self.sent[name][3]

    def _seq_ack(self, name: str, port: int, flags: int) -> tuple[int, int, int]:
        """Source port, sequence and acknowledgment numbers of TCP probe `name` (cookies, so an
        answer's numbers tell which probe it acknowledges)."""
        sport = self.sport[name]
        seq = self.cookie(self.key, port, sport)
        # T2-T7 carry an acknowledgment number even without the ACK flag (as nmap's do): stacks that
        # copy it into their RST show S=A, which a zero field would hide as S=Z
        ack = self.cookie(self.key, port, sport, 1) if flags & P.ACK or name in T_PROBES else 0
        return sport, seq, ack

    def _tcp(self, link, mac, name: str, port: int, flags: int, window: int, opts, df: bool,
             reserved: int = 0, urg: int = 0) -> None:
        sport, seq, ack = self._seq_ack(name, port, flags)
        ip = P.IPv4(socket.inet_aton(link.src), self.dst, ttl=PROBE_TTL, id=(seq >> 3) & 0xFFFF, df=df)
        frame = P.build_frame(link.eth(mac), ip, P.TCP(sport, port, seq, ack, flags, window, urg, opts, reserved=reserved))
        self.sent[name] = (time.time(), seq, ack, frame[14:])
        link.send(frame)

    def _seq(self, link, mac, i: int) -> None:
        name = f"SEQ{i}"
        if self.open_port is not None and name not in self.replies:
            win, opts = SEQ_PROBES[i - 1]
            self._tcp(link, mac, name, self.open_port, P.SYN, win, opts, False)

    def _ecn_t_u1(self, link, mac) -> None:
        if self.open_port is not None and "ECN" not in self.replies:
            self._tcp(link, mac, "ECN", self.open_port, P.SYN | P.ECE | P.CWR, 3,
                      [(P.OPT_WS, 10), (P.OPT_NOP, None), (P.OPT_MSS, 1460), (P.OPT_SACKOK, None),
                       (P.OPT_NOP, None), (P.OPT_NOP, None)], False, reserved=8, urg=0xF7F5)
        for name, (flags, win, df, kind) in T_PROBES.items():
            port = self.open_port if kind == "open" else self.closed_port
            if port is not None and name not in self.replies:
                opts = [(P.OPT_WS, 15)] + T_OPTS[1:] if name == "T7" else T_OPTS
                self._tcp(link, mac, name, port, flags, win, opts, df)
        if "U1" not in self.replies:
            self._send_u1(link, mac)

    def _send_u1(self, link, mac) -> None:
        ip = P.IPv4(socket.inet_aton(link.src), self.dst, P.IPPROTO_UDP, ttl=PROBE_TTL, id=U1_ID)
        frame = P.build_frame(link.eth(mac), ip, P.UDP(self.sport["U1"], self.closed_udp, U1_PAYLOAD))
        self.sent["U1"] = (time.time(), 0, 0, frame[14:])
        link.send(frame)

    def _ie(self, link, mac) -> None:
        for n, (df, tos, code, size, seq) in (("IE1", (True, 0, 9, 120, 295)), ("IE2", (False, 4, 0, 150, 296))):
            if n not in self.replies:
                # unrelated IP IDs: a stack that copies the request's ID (lwIP) must not
                # look like an incrementing II/SS generator because of our own probes
                ip = P.IPv4(socket.inet_aton(link.src), self.dst, P.IPPROTO_ICMP, ttl=PROBE_TTL, tos=tos, df=df,
                            id=self.cookie(self.key, 0, seq, 61) & 0xFFFF)
                icmp_id = self.icmp_id if n == "IE1" else (self.icmp_id + 1) & 0xFFFF
                frame = P.build_frame(link.eth(mac), ip, P.ICMP(P.ICMP_ECHO, code, icmp_id, seq, b"\0" * size))
                self.sent[n] = (time.time(), 0, 0, frame[14:])
                link.send(frame)

    async def _send_round(self, link, mac: bytes, attempt: int) -> None:
        # SEQ1, then ECN/T2-T7/U1 inside the first 100 ms gap (their answers come back while the
        # SEQ series goes on), SEQ2-SEQ6, the twins and the repeated SEQ1, and the echo requests
        # last: IE after the SEQ series is what the shared IP ID test (SS) compares.
        self._seq(link, mac, 1)
        self._ecn_t_u1(link, mac)
        for i in range(2, len(SEQ_PROBES) + 1):
            if attempt == 0 and self.open_port is not None:
                await asyncio.sleep(0.1)
            self._seq(link, mac, i)
        if attempt == 0 and self.open_port is not None:
            for i in range(1, LB_TWINS + 1):
                win, opts = SEQ_PROBES[0]
                self._tcp(link, mac, f"LB{i}", self.open_port, P.SYN, win, opts, False)
            # SEQ1 again on the same connection: its SYN-ACK is retransmitted with the same
            # timestamp offset, so the TS clock rate is measurable even on stacks that give
            # every connection its own random offset (Linux with tcp_timestamps=1)
            if "SEQ1" in self.sent:
                link.send(self._frame_again("SEQ1", link, mac))
        self._ie(link, mac)

    async def run(self) -> StackResult:
        res = self.result_type()
        if not await self._rounds(res.conditions):
            return res
        res.replies = dict(self.replies)
        self._attributes(res)
        res.twins = self._twins()
        res.ts_rate = self.ts_rate
        res.summary = self._summary(res)
        res.rtt = self.rtt
        res.sequence = [SeqSample(self.sent[n][0], r.ts, r.l4.seq, self._ip_id(r), r.l4.timestamps[0] if r.l4.timestamps else None)
                        for n in (f"SEQ{i}" for i in range(1, 7)) if (r := self.replies.get(n)) is not None
                        and isinstance(r.l4, P.TCP) and r.l4.flags & P.SYN and n in self.sent]
        return res

    # ------------------------------------------------------------------ attributes

    def _timestamp_attrs(self, syn: list[tuple[str, Reply]]) -> dict[str, str]:
        """TS (clock rate class, nmap's encoding) and TSO (ours: C = per-connection offsets, H = one
        host clock). nmap takes the rate across its six connections, which on a stack with random
        per-connection offsets (Linux tcp_timestamps=1, measured on 6.18) gives noise; we take it from
        one connection's SYN-ACK and its retransmission (kernel receive times), then ask whether the
        other connections' values sit on that clock."""
        if not syn:
            return {}
        stamps = [(r.ts, r.l4.timestamps) for _, r in syn]
        if any(ts is None for _, ts in stamps):
            return {"TS": "U"}
        if all(ts[0] == 0 for _, ts in stamps):
            return {"TS": "0"}
        rate = None
        again = [r for r in self.all_replies.get("SEQ1", []) if isinstance(r.l4, P.TCP) and r.l4.timestamps]
        if len(again) >= 2 and again[-1].ts - again[0].ts > 0.05:
            rate = ((again[-1].l4.timestamps[0] - again[0].l4.timestamps[0]) & 0xFFFFFFFF) / (again[-1].ts - again[0].ts)
            if rate > 1e5:  # a wrapped or unrelated value, not a clock
                rate = None
        self.ts_rate = rate
        out: dict[str, str] = {}
        if rate is not None and len(stamps) >= 2:
            t0, v0 = stamps[0][0], stamps[0][1][0]
            fits = all(on_clock(t0, v0, t, v, rate) for t, (v, _) in stamps[1:])
            out["TSO"] = "H" if fits else "C"
        if rate is None and len(stamps) >= 2:  # nmap's way: across the connections
            rates = [((b[1][0] - a[1][0]) & 0xFFFFFFFF) / max(b[0] - a[0], 1e-3) for a, b in zip(stamps, stamps[1:])]
            rate = sum(rates) / len(rates)
        if rate is not None:
            if 0 < rate < 5.66:
                out["TS"] = "1"
            elif 70 < rate < 150:
                out["TS"] = "7"
            elif 150 < rate < 350:
                out["TS"] = "8"
            elif rate > 0:
                out["TS"] = "%X" % round(math.log2(rate))
        return dict(sorted(out.items(), key=lambda kv: kv[0] != "TS"))

    def _summary(self, res: StackResult) -> dict:
        """The issue's attribute list in plain words, from the SYN-ACK to SEQ1 (p0f's field and quirk
        names, parsed by the passive module's reader) and the SEQ/U1 results."""
        from hostprint.engine.headers import parse_tcp

        out: dict = {}
        rep = self.replies.get("SEQ1")
        if rep is not None and rep.raw and isinstance(rep.l4, P.TCP) and rep.l4.flags & P.SYN:
            parsed = parse_tcp(rep.raw, 0, len(rep.raw), 4, True)
            if parsed is not None:
                o = parsed[0]
                init = initial_ttl(o.ttl)
                out.update({"initial_ttl": init, "ttl": o.ttl, "hops": (res.distance - 1) if res.distance else init - o.ttl,
                            "df": "df" in o.quirks, "window": o.win, "wscale": o.wscale, "mss": o.mss,
                            "options": ",".join(o.layout), "quirks": sorted(o.quirks - {"df"})})
        seq = res.tests.get("SEQ", {})
        names = {"Z": "all zero", "I": "incremental", "RI": "random increments", "BI": "broken incremental (x256)",
                 "RD": "random"}
        ids = {k: names.get(seq[a], f"constant {seq[a]}") for k, a in (("tcp", "TI"), ("closed_tcp", "CI"), ("icmp", "II")) if a in seq}
        if ids:
            out["ip_id"] = ids
        out.update(self._clock_summary(seq))
        rep = self.replies.get("SEQ1")
        if seq.get("TSO") == "H" and self.ts_rate and rep is not None and rep.l4.timestamps:
            # one host clock with no offset counts from boot (Linux with tcp_timestamps=2, the BSDs);
            # like p0f, the answer is modulo the counter's wrap (2^32 ticks: 49.7 days at 1 kHz)
            out["uptime_s"], out["uptime_wrap_days"] = uptime(rep.l4.timestamps[0], self.ts_rate)
        return out

    def _clock_summary(self, seq: dict[str, str]) -> dict:
        """The SEQ test's ISN statistics and timestamp clock in words."""
        out: dict = {}
        if "GCD" in seq:
            out["isn"] = {"gcd": int(seq["GCD"], 16), "rate_log2x8": int(seq.get("ISR", "0"), 16),
                          "predictability_log2x8": int(seq.get("SP", "0"), 16)}
        if self.ts_rate:
            out["ts_rate_hz"] = round(self.ts_rate, 1)
        if "TSO" in seq:
            out["ts_offsets"] = "per connection" if seq["TSO"] == "C" else "one host clock"
        return out

    def _twins(self) -> list[Twin]:
        """The answers to SEQ1 and its LB twins (identical probes from other source ports), each as the
        fields a stack decides: options, window, initial TTL, hops, DF, timestamp clock."""
        out = []
        for name in ["SEQ1"] + [f"LB{i}" for i in range(1, LB_TWINS + 1)]:
            rep = self.replies.get(name)
            if rep is None or not isinstance(rep.l4, P.TCP) or not rep.l4.flags & P.SYN:
                continue
            t = rep.l4
            init = initial_ttl(rep.ip.ttl)
            out.append(Twin(name, options_string(t.options), "%X" % t.window, "%X" % init, str(init - rep.ip.ttl),
                            self._df(rep), t.timestamps[0] if t.timestamps else None, rep.ts, self._ip_id(rep)))
        return out

    def _ttl_attrs(self, ttl: int, res: StackResult) -> dict[str, str]:
        """T (the TTL, or IPv6's hop limit, as it left the target) and TG (the initial one)."""
        d: dict[str, str] = {}
        if res.distance is not None:
            d["T"] = "%X" % (ttl + res.distance - 1)
        d["TG"] = "%X" % initial_ttl(ttl)
        return d

    def _tcp_test(self, name: str, res: StackResult, with_w_o: bool) -> dict[str, str]:
        rep = self.replies.get(name)
        if rep is None or not isinstance(rep.l4, P.TCP):
            return {"R": "N"}
        t: P.TCP = rep.l4
        _, seq, ack, _ = self.sent[name]
        d = {"R": "Y", **self._ip_attrs(rep, res)}
        if with_w_o:
            d["W"] = "%X" % t.window
        d["S"] = "Z" if t.seq == 0 else "A" if t.seq == ack else "A+" if t.seq == (ack + 1) & 0xFFFFFFFF else "O"
        d["A"] = "Z" if t.ack == 0 else "S" if t.ack == seq else "S+" if t.ack == (seq + 1) & 0xFFFFFFFF else "O"
        d["F"] = flags_nmap(t.flags)
        if with_w_o:
            d["O"] = options_string(t.options)
        d["RD"] = "%X" % zlib.crc32(t.payload) if (t.flags & P.RST and t.payload) else "0"
        q = ("R" if t.reserved else "") + ("U" if t.urg and not t.flags & P.URG else "")
        d["Q"] = q
        return d

    def _port_conditions(self, res: StackResult) -> None:
        if self.open_port is None:
            res.conditions.append("no open TCP port")
        if self.closed_port is None:
            res.conditions.append("no closed TCP port")

    def _syn_answers(self) -> list[tuple[str, Reply]]:
        """The SEQ probes answered with a SYN (the ISN, IP ID and timestamp tests read these)."""
        return [(n, self.replies[n]) for n in (f"SEQ{i}" for i in range(1, 7))
                if n in self.replies and isinstance(self.replies[n].l4, P.TCP) and self.replies[n].l4.flags & P.SYN]

    def _isn_attrs(self, syn: list[tuple[str, Reply]]) -> dict[str, str]:
        """SP, GCD and ISR of the SEQ test (at least four SYN-ACKs)."""
        seq_t: dict[str, str] = {}
        isn = isn_stats([r.l4.seq for _, r in syn], [self.sent[n][0] for n, _ in syn]) if len(syn) >= 4 else None
        if isn is not None:
            seq_t["SP"], seq_t["GCD"], seq_t["ISR"] = "%X" % isn.sp, "%X" % isn.gcd, "%X" % isn.isr
        return seq_t

    def _ecn_test(self, rep: Reply, res: StackResult) -> dict[str, str]:
        t = rep.l4
        ece, cwr = bool(t.flags & P.ECE), bool(t.flags & P.CWR)
        cc = "S" if ece and cwr else "Y" if ece else "N" if not cwr else "O"
        return {"R": "Y", **self._ip_attrs(rep, res), "W": "%X" % t.window, "O": options_string(t.options), "CC": cc,
                "Q": ("R" if t.reserved else "") + ("U" if t.urg and not t.flags & P.URG else "")}

    def _tcp_tests(self, res: StackResult) -> None:
        """OPS and WIN from the SYN-ACKs, ECN, T1 and T2-T7: the tests both families read alike."""
        tests = res.tests
        ops, win = {}, {}
        for i in range(1, 7):
            rep = self.replies.get(f"SEQ{i}")
            if rep is not None and isinstance(rep.l4, P.TCP) and rep.l4.flags & P.SYN:
                ops[f"O{i}"] = options_string(rep.l4.options)
                win[f"W{i}"] = "%X" % rep.l4.window
        if ops:
            tests["OPS"], tests["WIN"] = ops, win
        if self.open_port is not None:
            rep = self.replies.get("ECN")
            if rep is None or not isinstance(rep.l4, P.TCP):
                tests["ECN"] = {"R": "N"}
            else:
                tests["ECN"] = self._ecn_test(rep, res)
            tests["T1"] = self._tcp_test("SEQ1", res, with_w_o=False)
        for name, (_, _, _, kind) in T_PROBES.items():
            if (self.open_port if kind == "open" else self.closed_port) is not None:
                tests[name] = self._tcp_test(name, res, with_w_o=True)

    def _attributes(self, res: StackResult) -> None:
        tests = res.tests
        self._port_conditions(res)
        u1 = self.replies.get("U1")
        if u1 is not None:
            q = u1.l4.quoted_packet() if isinstance(u1.l4, P.ICMP) else None
            if q:
                res.distance = PROBE_TTL - q[0].ttl + 1
        else:
            res.conditions.append("no answer from a closed UDP port")
        # SEQ
        syn = self._syn_answers()
        seq_t = self._isn_attrs(syn)
        ti = ip_id_class([r.ip.id for _, r in syn])
        if ti:
            seq_t["TI"] = ti
        closed = [self.replies[n].ip.id for n in ("T5", "T6", "T7") if n in self.replies]
        ci = ip_id_class(closed)
        if ci:
            seq_t["CI"] = ci
        ie_ids = [self.replies[n].ip.id for n in ("IE1", "IE2") if n in self.replies]
        ii = ip_id_class(ie_ids)
        if ii:
            seq_t["II"] = ii
        if ti in ("I", "RI", "BI") and ii in ("I", "RI", "BI") and len(syn) >= 2 and ie_ids:
            tcp_ids = [r.ip.id for _, r in syn]
            step = ((tcp_ids[-1] - tcp_ids[0]) & 0xFFFF) / (len(tcp_ids) - 1)
            seq_t["SS"] = "S" if ((ie_ids[0] - tcp_ids[-1]) & 0xFFFF) < 3 * max(step, 1) + 10 else "O"
        ts_attrs = self._timestamp_attrs(syn)
        seq_t.update(ts_attrs)
        if seq_t:
            tests["SEQ"] = seq_t
        self._tcp_tests(res)
        # U1
        if u1 is None:
            tests["U1"] = {"R": "N"}
        else:
            icmp = u1.l4
            d = {"R": "Y", "DF": "Y" if u1.ip.df else "N", **self._ttl_attrs(u1.ip.ttl, res),
                 "IPL": "%X" % (u1.ip.total_length or 0), "UN": "%X" % icmp.unused}
            q = icmp.quoted_packet()
            sent = self.sent["U1"][3]
            if q:
                qip, rest = q
                d["RIPL"] = "G" if qip.total_length == len(sent) else "%X" % (qip.total_length or 0)
                d["RID"] = "G" if qip.id == U1_ID else "%X" % qip.id
                # valid for the header as quoted: a router on the way lowers the TTL and fixes the sum
                hdr = icmp.quoted[:len(icmp.quoted) - len(rest)]
                d["RIPCK"] = "Z" if qip.csum == 0 else "G" if checksum(hdr) == 0 else "I"
                if len(rest) >= 8:
                    ck = int.from_bytes(rest[6:8], "big")
                    d["RUCK"] = "G" if ck == int.from_bytes(sent[26:28], "big") else "%X" % ck
                data = rest[8:]
                d["RUD"] = "G" if not data or data == U1_PAYLOAD[:len(data)] else "I"
            tests["U1"] = d
        # IE
        e1, e2 = self.replies.get("IE1"), self.replies.get("IE2")
        if e1 is None or e2 is None:
            tests["IE"] = {"R": "N"}
        else:
            df1, df2 = e1.ip.df, e2.ip.df
            dfi = "N" if not df1 and not df2 else "S" if df1 and not df2 else "Y" if df1 and df2 else "O"
            c1, c2 = e1.l4.code, e2.l4.code
            cd = "Z" if c1 == 0 and c2 == 0 else "S" if (c1, c2) == (9, 0) else "%X" % c1 if c1 == c2 else "O"
            tests["IE"] = {"R": "Y", "DFI": dfi, **self._ttl_attrs(e1.ip.ttl, res), "CD": cd}
