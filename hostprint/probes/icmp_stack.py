"""xprobe2-style ICMP fingerprinting: what a stack does with ICMP queries and how it quotes errors.

nmap's -O asks the ICMP layer very little (two echoes and one port unreachable). xprobe2
(Arkin/Yarochkin/Kydyraliev, ~2005) built its whole matrix on ICMP, because these answers are set by
code paths vendors rarely touch: which obsolete query types still get a reply, whether the echo
reply copies the request's code and TOS, and how an ICMP error quotes the datagram that caused it.
This probe asks those questions in one round (five packets, one retransmission of what stayed
silent) and writes the answers as one test line, `XI(...)`, in hostprint's own compact notation.
The code is ours; the probe ideas and the meaning of the checks come from xprobe2's modules
(binarytrails/xprobe2: src/xpmodules/os_probe/icmp_echo_id, icmp_timestamp, icmp_addrmask,
icmp_inforeq, icmp_port_unreach; the keyword list in etc/xprobe2.conf) and the RFCs named below.

The probes (all from the scanner, TTL 64):
  echo     type 8 with code 0x5A (RFC 792 defines only code 0) and TOS 0x10, DF set, 56 data bytes.
  tstamp   type 13 (RFC 792), originate = our ms since midnight UT.
  amask    type 17 (RFC 950 address mask request; deprecated with type 15 by RFC 6918).
  info     type 15 (RFC 792 information request).
  pu       UDP to a closed port, DF set, a known IP ID and 100 bytes of 0x55: the port unreachable
           it draws (RFC 792 type 3 code 3) is checked the way xprobe2's icmp_port_unreach does.

Keys of the XI test. Numbers are hex, as in nmap's notation; "R" keys are Y (answered), N (silence)
or U (an ICMP error quoting the query came back instead, e.g. a firewall reject).
  ECHO_R      echo reply received.
  ECHO_CODE   code of the reply: Z = 0 (RFC 792: code 0), E = our 0x5A echoed back, else the value.
              xprobe2 "icmp_echo_code = [0, !0]".
  ECHO_TOS    TOS byte of the reply (we sent 0x10; RFC 1349 §5.1: a reply carries the request's TOS;
              xprobe2 "icmp_echo_tos_bits = [0, !0]").
  ECHO_DF     DF bit on the reply (Y/N); xprobe2 "icmp_echo_df_bit".
  ECHO_ID     IP ID of the reply: Z = 0, S = same as our request's ID, O = other (xprobe2 "[0, !0, SENT]").
  ECHO_TG     initial TTL of the reply guessed by rounding up to 32/64/128/255 (like nmap's TG;
              xprobe2's "<64"-style TTL keywords).
  TS_R, TS_ID, TS_TG    the same for the timestamp reply (type 14); xprobe2 module B.
  TS_ZERO     Y if both the receive and transmit timestamps are 0 (a stack that answers but keeps no
              clock), else N.
  TS_STD      Y if the receive timestamp is a standard value (RFC 792: ms since midnight UT, so
              < 86400000 and the high bit clear; the high bit flags non-standard time), else N.
  TS_ORIG     G if the originate timestamp came back unchanged (RFC 792 says it is copied), else I.
  AM_R, AM_ID, AM_TG, AM_MASK   address mask reply (type 18) and the mask it gave (RFC 950;
              RFC 1122 §3.2.2.9: a host MUST NOT answer unless it is an authoritative agent);
              xprobe2 module C.
  INFO_R, INFO_ID, INFO_TG      information reply (type 16); xprobe2 module D. RFC 1122 §3.2.2.7
              says hosts SHOULD NOT implement these messages.
  PU_R, PU_ID, PU_TG            the port unreachable (xprobe2 module E), its IP ID and initial TTL.
  PU_CODE     its ICMP code (3 = port unreachable; other codes mean a filter answered).
  PU_TOS      its TOS byte (our datagram had 0; RFC 1349 §5.1 gives errors the default TOS);
  PU_PREC     its precedence bits (TOS & 0xE0): RFC 1812 §4.3.2.5 says routers SHOULD send errors with
              precedence 6 (0xC0, "internetwork control"), which Linux does for hosts too; xprobe2
              "icmp_unreach_precedence_bits = 0xc0, 0, (hex num)".
  PU_DF       DF bit on the error itself (Y/N); xprobe2 "icmp_unreach_df_bit".
  PU_IPL      total length of the error (like nmap's U1.IPL): says how much was quoted.
  PU_QLEN     bytes quoted after the quoted IP header: 8 is RFC 792's minimum ("the first 64 bits of
              the original datagram's data"); RFC 1812 §4.3.2.3 asks routers to quote as much as fits
              in 576 bytes, RFC 1122 §3.2.2 lets hosts send more than 8. Our datagram carries 108
              UDP bytes, so 6C = all of it. xprobe2 "icmp_unreach_echoed_dtsize = [8, 64, >64]".
  PU_RIPL     quoted IP total length: G = as sent, else the value (BSD-derived stacks quoted it in
              host order or with the header length subtracted: xprobe2 "echoed_total_len [>20, OK, <20]").
  PU_RID      quoted IP ID: G = as sent, F = byte-swapped, else the value (xprobe2 "echoed_ip_id [OK, FLIPPED]").
  PU_RFLAGS   quoted flags/fragment field: G = as sent (DF), F = byte-swapped, else the value
              (xprobe2 "echoed_3bit_flags [OK, FLIPPED]"). Also shows whether DF was echoed.
  PU_RIPCK    quoted IP header checksum: G = valid for the quoted header as quoted (the TTL the host
              saw is in it), Z = zero, I = invalid (xprobe2 "echoed_ip_cksum [0, OK, BAD]",
              nmap 1st-gen PU.RIPCK).
  PU_RUCK     quoted UDP checksum: G = as sent, Z = zero, I = other (xprobe2 "echoed_udp_cksum").
  PU_RULEN    quoted UDP length: G = as sent, else the value (nmap 1st-gen PU.ULEN).
  PU_RUD      quoted payload: G = what we sent (or nothing quoted), I = altered (nmap U1.RUD).
The hop distance (from the TTL the quoted header says the target saw) goes to `distance`.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

from hostprint.engine import packets as P
from hostprint.engine import replies, route
from hostprint.engine.checksum import checksum
from hostprint.engine.cookie import Cookie
from hostprint.engine.link import Links
from hostprint.probes.rounds import TwoRounds
from hostprint.stackfacts import initial_ttl

PROBE_TTL = 64
ECHO_CODE = 0x5A
ECHO_TOS = 0x10
ECHO_DATA = bytes(range(0x20, 0x58))  # 56 bytes, like ping's default size
PU_PAYLOAD = b"\x55" * 100
QUERIES = {  # name: (request type, reply type)
    "ECHO": (P.ICMP_ECHO, P.ICMP_ECHOREPLY),
    "TS": (P.ICMP_TSTAMP, P.ICMP_TSTAMPREPLY),
    "AM": (P.ICMP_MASKREQ, P.ICMP_MASKREPLY),
    "INFO": (P.ICMP_INFO, P.ICMP_INFOREPLY),
}
PROBES = (*QUERIES, "PU")


def ms_since_midnight_ut(t: float | None = None) -> int:
    """RFC 792's timestamp unit."""
    return int(((time.time() if t is None else t) % 86400) * 1000)


def swap16(v: int) -> int:
    return ((v & 0xFF) << 8) | (v >> 8)


def _id_class(reply_id: int, sent_id: int) -> str:
    return "Z" if reply_id == 0 else "S" if reply_id == sent_id else "O"


def _same_or(value: int, sent: int, *, swapped: bool = False) -> str:
    if value == sent:
        return "G"
    if swapped and value == swap16(sent):
        return "F"
    return "%X" % value


@dataclass
class IcmpReply:
    ts: float  # kernel receive time, seconds
    ip: P.IPv4
    icmp: P.ICMP


@dataclass
class IcmpStackResult:
    tests: dict[str, dict[str, str]] = field(default_factory=dict)
    replies: dict[str, IcmpReply] = field(default_factory=dict)
    errors: dict[str, IcmpReply] = field(default_factory=dict)  # ICMP errors quoting a query
    conditions: list[str] = field(default_factory=list)
    distance: int | None = None

    def fingerprint(self) -> str:
        return "\n".join(f"{t}({'%'.join(f'{k}={v}' for k, v in a.items())})" for t, a in self.tests.items())

    def to_dict(self) -> dict:
        return {"tests": self.tests, "fingerprint": self.fingerprint(), "conditions": self.conditions,
                "distance": self.distance}


class IcmpStackProbe(TwoRounds):
    def __init__(self, addr: str, links: Links, closed_udp: int, wait: float = 1.0):
        self.addr = addr
        self.links = links
        self.closed_udp = closed_udp
        self.wait = wait
        self.dst = socket.inet_aton(addr)
        cookie = Cookie()
        salt = cookie(P.ip_to_int(addr), closed_udp, 0, 77)
        self.icmp_id = {name: (salt + i) & 0xFFFF for i, name in enumerate(QUERIES)}
        self.by_id = {(QUERIES[n][1], v): n for n, v in self.icmp_id.items()}
        self.by_query = {(QUERIES[n][0], v): n for n, v in self.icmp_id.items()}
        # IP IDs whose byte swap differs from themselves, so "flipped" is recognisable
        self.ip_id = {}
        for i, name in enumerate(PROBES):
            v = ((salt >> 8) + 0x111 * (i + 1)) & 0xFFFF or 0x1234
            self.ip_id[name] = v if swap16(v) != v else v ^ 1
        lo, _ = route.probe_port_range()
        self.sport = lo + 160  # next to StackProbe's block (lo+128..lo+141)
        self.sent: dict[str, tuple[float, bytes, P.ICMP | None]] = {}  # name -> (time, IP packet, ICMP)
        self.replies: dict[str, IcmpReply] = {}
        self.errors: dict[str, IcmpReply] = {}

    # ------------------------------------------------------------------ receive

    def _want(self) -> replies.Want:
        """Replies to our four queries (by type and id), the port unreachable quoting our UDP
        datagram, and any ICMP error quoting one of our queries."""
        def ours(r: replies.Reply) -> bool:
            if r.error is None:
                return r.icmp is not None and (r.icmp.type, r.icmp.id) in self.by_id
            if r.proto == P.IPPROTO_UDP:
                return (r.our_port, r.their_port) == (self.sport, self.closed_udp)
            return r.quoted_icmp in self.by_query

        return replies.Want(peers=frozenset({self.dst}), protos=frozenset({P.IPPROTO_ICMP, P.IPPROTO_UDP}),
                            icmp_types=frozenset(t for _, t in QUERIES.values()), valid=ours)

    def _on_reply(self, r: replies.Reply) -> None:
        m = r.error or r.icmp
        assert m is not None
        if r.ip.src != self.dst or not isinstance(m, P.ICMP) or not isinstance(r.ip, P.IPv4):
            return  # an error from a router on the way, not from the target (or not IPv4 at all)
        rep = IcmpReply(r.ts, r.ip, m)
        if r.error is None:
            self.replies.setdefault(self.by_id[(m.type, m.id)], rep)
        elif r.proto == P.IPPROTO_UDP:
            (self.replies if m.type == P.ICMP_UNREACH else self.errors).setdefault("PU", rep)
        elif r.quoted_icmp is not None:
            self.errors.setdefault(self.by_query[r.quoted_icmp], rep)

    # ------------------------------------------------------------------ send

    def build(self, name: str, src: bytes) -> tuple[P.IPv4, P.UDP | P.ICMP]:
        """The probe `name` from source address `src` (4 bytes)."""
        if name == "PU":
            ip = P.IPv4(src, self.dst, P.IPPROTO_UDP, ttl=PROBE_TTL, id=self.ip_id[name], df=True)
            return ip, P.UDP(self.sport, self.closed_udp, PU_PAYLOAD)
        tos, df, code = (ECHO_TOS, True, ECHO_CODE) if name == "ECHO" else (0, False, 0)
        ip = P.IPv4(src, self.dst, P.IPPROTO_ICMP, ttl=PROBE_TTL, id=self.ip_id[name], tos=tos, df=df)
        icmp = P.ICMP(QUERIES[name][0], code, self.icmp_id[name], 1)
        if name == "ECHO":
            icmp.data = ECHO_DATA
        elif name == "TS":
            icmp.orig = ms_since_midnight_ut()
        return ip, icmp

    def record(self, name: str, ip: P.IPv4, l4: P.UDP | P.ICMP) -> bytes:
        """Remember what was sent (the attributes compare with it); returns the IP packet."""
        pkt = P.build_ip(ip, l4)
        self.sent[name] = (time.time(), pkt, l4 if isinstance(l4, P.ICMP) else None)
        return pkt

    def _send(self, link, mac: bytes, name: str) -> None:
        ip, l4 = self.build(name, socket.inet_aton(link.src))
        link.send(link.eth(mac).encode() + self.record(name, ip, l4))

    def _rtts(self) -> list[float]:
        got = {**self.errors, **self.replies}
        return [rep.ts - self.sent[n][0] for n, rep in got.items() if n in self.sent]

    async def _send_round(self, link, mac: bytes, attempt: int) -> None:
        for name in PROBES:
            if name not in self.replies and name not in self.errors:
                self._send(link, mac, name)

    def _complete(self) -> bool:
        return all(n in self.replies or n in self.errors for n in PROBES)

    async def run(self) -> IcmpStackResult:
        res = IcmpStackResult()
        if not await self._rounds(res.conditions):
            return res
        res.replies, res.errors = dict(self.replies), dict(self.errors)
        self.attributes(res)
        return res

    # ------------------------------------------------------------------ attributes

    def attributes(self, res: IcmpStackResult) -> None:
        """Fill res.tests["XI"] from the replies; kept apart from run() so captured replies can be
        re-read without a network."""
        xi: dict[str, str] = {}
        for name in QUERIES:
            rep = self.replies.get(name)
            if rep is None:
                xi[f"{name}_R"] = "U" if name in self.errors else "N"
                if name in self.errors:
                    e = self.errors[name].icmp
                    res.conditions.append(f"{name} query answered with ICMP type {e.type} code {e.code}")
                continue
            xi[f"{name}_R"] = "Y"
            m = rep.icmp
            if name == "ECHO":
                xi["ECHO_CODE"] = "Z" if m.code == 0 else "E" if m.code == ECHO_CODE else "%X" % m.code
                xi["ECHO_TOS"] = "%X" % rep.ip.tos
                xi["ECHO_DF"] = "Y" if rep.ip.df else "N"
            xi[f"{name}_ID"] = _id_class(rep.ip.id, self.ip_id[name])
            xi[f"{name}_TG"] = "%X" % initial_ttl(rep.ip.ttl)
            if name == "TS":
                sent = self.sent["TS"][2]
                xi["TS_ZERO"] = "Y" if m.recv == 0 and m.xmit == 0 else "N"
                xi["TS_STD"] = "Y" if m.recv < 86_400_000 and not m.recv & 0x80000000 else "N"
                xi["TS_ORIG"] = "G" if sent is not None and m.orig == sent.orig else "I"
            elif name == "AM":
                xi["AM_MASK"] = m.mask.hex().upper()
        self._port_unreach(res, xi)
        res.tests["XI"] = xi

    def _port_unreach(self, res: IcmpStackResult, xi: dict[str, str]) -> None:
        rep = self.replies.get("PU")
        if rep is None:
            xi["PU_R"] = "U" if "PU" in self.errors else "N"
            if "PU" in self.errors:
                e = self.errors["PU"].icmp
                res.conditions.append(f"UDP probe answered with ICMP type {e.type} code {e.code}")
            else:
                res.conditions.append("no port unreachable from the closed UDP port")
            return
        m, ip = rep.icmp, rep.ip
        sent = self.sent["PU"][1]
        s_len, s_id, s_ff = struct.unpack_from("!HHH", sent, 2)
        s_ulen, s_uck = struct.unpack_from("!HH", sent, 24)
        xi.update({"PU_R": "Y", "PU_CODE": "%X" % m.code, "PU_TOS": "%X" % ip.tos, "PU_PREC": "%X" % (ip.tos & 0xE0),
                   "PU_DF": "Y" if ip.df else "N", "PU_ID": _id_class(ip.id, self.ip_id["PU"]),
                   "PU_TG": "%X" % initial_ttl(ip.ttl), "PU_IPL": "%X" % (ip.total_length or 0)})
        raw = m.quoted
        if len(raw) < 20 or raw[0] >> 4 != 4:
            res.conditions.append("port unreachable quotes no IPv4 header")
            return
        ihl = (raw[0] & 0xF) * 4
        if len(raw) < ihl:
            res.conditions.append("port unreachable quotes a truncated IPv4 header")
            return
        q_len, q_id, q_ff, q_ttl, _, q_ck = struct.unpack_from("!HHHBBH", raw, 2)
        rest = raw[ihl:]
        xi["PU_QLEN"] = "%X" % len(rest)
        xi["PU_RIPL"] = _same_or(q_len, s_len, swapped=True)
        xi["PU_RID"] = _same_or(q_id, s_id, swapped=True)
        xi["PU_RFLAGS"] = _same_or(q_ff, s_ff, swapped=True)
        hdr = raw[:10] + b"\0\0" + raw[12:ihl]  # checked as quoted: routers on the way changed TTL and checksum
        xi["PU_RIPCK"] = "Z" if q_ck == 0 else "G" if checksum(hdr) == q_ck else "I"
        if len(rest) >= 8:
            q_ulen, q_uck = struct.unpack_from("!HH", rest, 4)
            xi["PU_RUCK"] = "Z" if q_uck == 0 else "G" if q_uck == s_uck else "I"
            xi["PU_RULEN"] = _same_or(q_ulen, s_ulen)
            data = rest[8:]
            xi["PU_RUD"] = "G" if data == PU_PAYLOAD[:len(data)] else "I"
        res.distance = PROBE_TTL - q_ttl + 1
