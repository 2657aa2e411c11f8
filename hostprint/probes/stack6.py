"""-O over IPv6: nmap's IPv6 probe set plus hostprint's own, turned into tests in a notation like
the IPv4 one, for hostprint's own IPv6 class DB (signatures/stack6/).

The probes (nmap's, from its FPEngine: ../shared/reference/round2-facts.md §1):
  S1-S6   the six SEQ SYNs of IPv4 -O, to an open port, 100 ms apart
  IE1     ICMPv6 echo request with code 9 (should be 0), 120 zero bytes, a hop-by-hop padding header
  IE2     echo request behind extension headers in the wrong order: HbH, DestOpts, Routing, HbH
  NS      neighbor solicitation (hop limit 255), on-link targets only
  U1      UDP to a closed port, 300 bytes of 0x43
  TECN    SYN with ECE+CWR and the urgent pointer set, to the open port
  T2-T7   as in IPv4
All carry nmap's flow label 0x12345. Ours on top: the eight load-balancer twins of SEQ1 and SEQ1
repeated on its own connection (the TCP timestamp clock, as for IPv4), and what a stack does with
flow labels, which differs between stacks (RFC 6437 leaves it open): zero, reflecting ours, one
constant label, one label per flow (the retransmitted SYN-ACK keeps it), or a new one per packet.

Tests (keys as in IPv4 where they mean the same; IPv6 has no IP ID and no DF):
  SEQ(SP GCD ISR TS TSO FL)   FL: Z zero, E reflects our 0x12345, C one label for every connection,
                              H one per connection (kept on the retransmitted SYN-ACK), R one per
                              connection and a new one on the retransmission (Linux re-hashes),
                              D differs per connection (no retransmission seen)
  OPS, WIN                    as IPv4
  ECN(R TG W O CC Q TC)       TC: traffic class of the reply (hex)
  T1-T7(R TG W S A F O RD Q FL)  FL here: Z, E or N (some other label)
  U1(R TG PL RPL RUCK RUD TC FL) PL: the error's payload length (hex); RPL: G when the quoted
                              packet's payload length is ours
  IE1(R TG TY CD PL FL)       TY: the answer's ICMPv6 type (81 = echo reply); CD: Z (code 0), S (our
                              9 echoed) or the hex code; PL: G when our 120 bytes come back
  IE2(R TG TY CD P)           the answer's ICMPv6 type and code (hex), P the parameter-problem pointer
  NS(R TG F O)                the NA's flags (R router, S solicited, O override), its option types
"""

from __future__ import annotations

import time
from typing import Any

from hostprint.engine import icmpv6 as I6
from hostprint.engine import ndp, replies
from hostprint.engine import packets as P
from hostprint.engine.ipv6 import IPPROTO_ICMPV6, DestOpts, HopByHop, IPv6, Routing, ip6_bytes
from hostprint.engine.link import Link, Links
from hostprint.probes.stack import U1_PAYLOAD, StackProbe
from hostprint.probes.stack_result import Reply, StackResult
from hostprint.stackfacts import initial_ttl

FLOW = 0x12345  # nmap's IPv6 probes' flow label
PROBE_HLIM = 64
IE_DATA = b"\0" * 120
TEST_ORDER6 = ("SEQ", "OPS", "WIN", "ECN", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "U1", "IE1", "IE2", "NS")


class Stack6Result(StackResult):
    """StackResult with IPv6's test order."""

    def fingerprint(self) -> str:
        return "\n".join(f"{t}({'%'.join(f'{k}={v}' for k, v in self.tests[t].items())})"
                         for t in TEST_ORDER6 if t in self.tests)


def _fl(label: int) -> str:
    return "Z" if label == 0 else "E" if label == FLOW else "N"


class Stack6Probe(StackProbe):
    result_type = Stack6Result

    def __init__(self, addr: str, open_port: int | None, closed_port: int | None, closed_udp: int,
                 links: Links, wait: float = 1.0, onlink: bool = True):
        super().__init__(addr, open_port, closed_port, closed_udp, links, wait)
        self.dst = ip6_bytes(addr.partition("%")[0])
        self.key = replies.addr_key(self.cookie, self.dst)
        self.icmp_id = self.cookie(self.key, 0, 0, 55) & 0xFFFF
        self.onlink = onlink

    def _ip_id(self, rep: Reply) -> int | None:
        return None  # IPv6 has no IP ID

    def _df(self, rep: Reply) -> str:
        return ""  # nor a DF bit

    def _ip_attrs(self, rep: Reply, res: StackResult) -> dict[str, str]:
        return self._ttl_attrs(rep.ip.ttl, res)

    # ------------------------------------------------------------------ replies

    def _want(self) -> replies.Want:
        ids = (self.icmp_id, (self.icmp_id + 1) & 0xFFFF)

        def ours(r: replies.Reply) -> bool:
            if r.proto == P.IPPROTO_TCP:
                return r.error is None and r.our_port in self.by_sport
            if r.proto == IPPROTO_ICMPV6:
                if r.error is not None:  # IE1/IE2 answered with an error quoting them
                    q = r.quoted_icmp
                    return q is not None and q[0] == I6.ECHO_REQUEST and q[1] in ids
                m = r.icmp6
                if m is None:
                    return False
                if m.type == I6.NEIGHBOR_ADVERT:
                    return m.target == self.dst
                return m.id in ids
            return r.error is not None and r.dest_unreach and r.our_port == self.sport["U1"]

        return replies.Want(peers=None, protos=frozenset({P.IPPROTO_TCP, P.IPPROTO_UDP, IPPROTO_ICMPV6}),
                            icmp_types=frozenset({I6.ECHO_REPLY, I6.NEIGHBOR_ADVERT}), valid=ours)

    def _on_reply(self, r: replies.Reply) -> None:
        if r.ip.src != self.dst:
            return  # not from the target (a router's error on the way, or another host's NA)
        if r.proto == P.IPPROTO_TCP:
            name = self.by_sport[r.our_port or 0]
        elif r.proto == IPPROTO_ICMPV6:
            m = r.icmp6
            if m is not None and m.type == I6.NEIGHBOR_ADVERT:
                name = "NS"
            else:
                q = r.quoted_icmp
                ident = q[1] if q is not None else (m.id if m is not None else -1)
                name = "IE1" if ident == self.icmp_id else "IE2"
        else:
            name = "U1"
        self._keep(name, r)

    # ------------------------------------------------------------------ probes

    def _send6(self, link: Link, mac: bytes, name: str, l4: Any, proto: int, ext: list | None = None,
               hlim: int = PROBE_HLIM, seq: int = 0, ack: int = 0, dst_mac: bytes | None = None,
               dst: bytes | None = None) -> None:
        from hostprint.engine.frames import build_frame6

        src = ip6_bytes(link.source_for(self.addr))
        ip = IPv6(src, dst or self.dst, proto, hlim, 0, FLOW, list(ext or []))
        frame = build_frame6(link.eth(dst_mac or mac, P.ETH_P_IPV6), ip, l4)
        self.sent[name] = (time.time(), seq, ack, frame[14:])
        link.send(frame)

    def _tcp(self, link, mac, name: str, port: int, flags: int, window: int, opts, df: bool,  # type: ignore[no-untyped-def]
             reserved: int = 0, urg: int = 0) -> None:
        sport, seq, ack = self._seq_ack(name, port, flags)
        self._send6(link, mac, name, P.TCP(sport, port, seq, ack, flags, window, urg, opts, reserved=reserved),
                    P.IPPROTO_TCP, seq=seq, ack=ack)

    def _frame_again(self, name: str, link, mac) -> bytes:  # type: ignore[no-untyped-def]
        return link.eth(mac, P.ETH_P_IPV6).encode() + self.sent[name][3]

    def _send_u1(self, link, mac) -> None:  # type: ignore[no-untyped-def]
        self._send6(link, mac, "U1", P.UDP(self.sport["U1"], self.closed_udp, U1_PAYLOAD), P.IPPROTO_UDP)

    def _ie(self, link, mac) -> None:  # type: ignore[no-untyped-def]
        pad = [(1, b"\0" * 4)]  # one PadN: the header's 8 bytes
        if "IE1" not in self.replies:
            self._send6(link, mac, "IE1", I6.echo_request(self.icmp_id, 295, IE_DATA, code=9), IPPROTO_ICMPV6,
                        ext=[HopByHop(pad)])
        if "IE2" not in self.replies:
            bad_order = [HopByHop(pad), DestOpts(pad), Routing(0, 0), HopByHop(pad)]
            self._send6(link, mac, "IE2", I6.echo_request((self.icmp_id + 1) & 0xFFFF, 296, b""), IPPROTO_ICMPV6,
                        ext=bad_order)
        if self.onlink and "NS" not in self.replies:
            group = ndp.solicited_node(self.dst)
            self._send6(link, mac, "NS", I6.neighbor_solicitation(self.dst, link.mac), IPPROTO_ICMPV6,
                        hlim=ndp.ND_HOP_LIMIT, dst=group, dst_mac=ndp.multicast_mac(group))

    # ------------------------------------------------------------------ attributes

    def _flow_class(self, syn: list[tuple[str, Reply]]) -> str | None:
        labels = [r.ip.flow for _, r in syn]
        if not labels:
            return None
        if all(x == 0 for x in labels):
            return "Z"
        if all(x == FLOW for x in labels):
            return "E"
        if len(labels) >= 2 and len(set(labels)) == 1:
            return "C"
        again = [r.ip.flow for r in self.all_replies.get("SEQ1", [])]
        if len(again) >= 2:
            return "H" if len(set(again)) == 1 else "R"
        return "D"

    def _tcp_test(self, name: str, res: StackResult, with_w_o: bool) -> dict[str, str]:
        d = super()._tcp_test(name, res, with_w_o)
        if d["R"] == "Y" and name != "SEQ1":
            d["FL"] = _fl(self.replies[name].ip.flow)
        return d

    def _ecn_test(self, rep: Reply, res: StackResult) -> dict[str, str]:
        return {**super()._ecn_test(rep, res), "TC": "%X" % rep.ip.tc}

    def _attributes(self, res: StackResult) -> None:
        tests = res.tests
        self._port_conditions(res)
        u1 = self.replies.get("U1")
        q = u1.l4.quoted_packet() if u1 is not None and isinstance(u1.l4, I6.ICMPv6) else None
        if q is not None and isinstance(q[0], IPv6):
            res.distance = PROBE_HLIM - q[0].hlim + 1
        elif u1 is None:
            res.conditions.append("no answer from a closed UDP port")
        syn = self._syn_answers()
        seq_t = self._isn_attrs(syn)
        seq_t.update(self._timestamp_attrs(syn))
        fl = self._flow_class(syn)
        if fl:
            seq_t["FL"] = fl
        if seq_t:
            tests["SEQ"] = seq_t
        self._tcp_tests(res)
        tests["U1"] = self._u1(u1, q, res)
        tests["IE1"] = self._ie1(res)
        tests["IE2"] = self._ie2(res)
        if self.onlink:
            tests["NS"] = self._ns(res)

    def _u1(self, u1: Reply | None, q: Any, res: StackResult) -> dict[str, str]:
        if u1 is None or not isinstance(u1.l4, I6.ICMPv6):
            return {"R": "N"}
        d = {"R": "Y", **self._ttl_attrs(u1.ip.ttl, res), "PL": "%X" % (u1.ip.plen or 0)}
        if q is not None and isinstance(q[0], IPv6):
            qip, rest = q
            d["RPL"] = "G" if qip.plen == 8 + len(U1_PAYLOAD) else "%X" % (qip.plen or 0)
            if len(rest) >= 8:
                sent = self.sent["U1"][3]
                ck = int.from_bytes(rest[6:8], "big")
                d["RUCK"] = "G" if ck == int.from_bytes(sent[46:48], "big") else "%X" % ck
            data = rest[8:]
            d["RUD"] = "G" if not data or data == U1_PAYLOAD[:len(data)] else "I"
        d["TC"] = "%X" % u1.ip.tc
        d["FL"] = _fl(u1.ip.flow)
        return d

    def _ie1(self, res: StackResult) -> dict[str, str]:
        rep = self.replies.get("IE1")
        if rep is None or not isinstance(rep.l4, I6.ICMPv6):
            return {"R": "N"}
        m = rep.l4
        d = {"R": "Y", **self._ttl_attrs(rep.ip.ttl, res)}
        d["TY"] = "%X" % m.type
        if m.type == I6.ECHO_REPLY:
            d["CD"] = "Z" if m.code == 0 else "S" if m.code == 9 else "%X" % m.code
            d["PL"] = "G" if m.data == IE_DATA else "%X" % len(m.data)
        else:
            d["CD"] = "%X" % m.code
        d["FL"] = _fl(rep.ip.flow)
        return d

    def _ie2(self, res: StackResult) -> dict[str, str]:
        rep = self.replies.get("IE2")
        if rep is None or not isinstance(rep.l4, I6.ICMPv6):
            return {"R": "N"}
        m = rep.l4
        d = {"R": "Y", **self._ttl_attrs(rep.ip.ttl, res), "TY": "%X" % m.type, "CD": "%X" % m.code}
        if m.type == I6.PARAM_PROBLEM:
            d["P"] = "%X" % m.pointer
        return d

    def _ns(self, res: StackResult) -> dict[str, str]:
        rep = self.replies.get("NS")
        if rep is None or not isinstance(rep.l4, I6.ICMPv6):
            return {"R": "N"}
        m = rep.l4
        flags = ("R" if m.router else "") + ("S" if m.solicited else "") + ("O" if m.override else "")
        return {"R": "Y", "TG": "%X" % initial_ttl(rep.ip.hlim), "F": flags,
                "O": "".join("%X" % t for t, _ in m.options)}

    def _summary(self, res: StackResult) -> dict:  # type: ignore[type-arg]
        out: dict = {}  # type: ignore[type-arg]
        rep = self.replies.get("SEQ1")
        if rep is not None and isinstance(rep.l4, P.TCP) and rep.l4.flags & P.SYN:
            t = rep.l4
            init = initial_ttl(rep.ip.hlim)
            out.update({"initial_hop_limit": init, "hop_limit": rep.ip.hlim,
                        "hops": (res.distance - 1) if res.distance else init - rep.ip.hlim,
                        "window": t.window, "wscale": t.wscale, "mss": t.mss,
                        "options": P.options_layout(t.options)})
        seq = res.tests.get("SEQ", {})
        words = {"Z": "zero", "E": "reflects ours", "C": "one constant label", "H": "one per flow (hash)",
                 "R": "one per flow, new on a retransmission", "D": "differs per connection"}
        if "FL" in seq:
            out["flow_label"] = words.get(seq["FL"], seq["FL"])
        out.update(self._clock_summary(seq))
        return out


async def probe6(addr: str, open_port: int | None, closed: int | None, closed_udp: int, links: Links,
                 wait: float) -> StackResult:
    """Run the IPv6 probe set against one host (NS only when it is on-link)."""
    from hostprint.engine import route

    r = route.lookup_any(addr)
    p = Stack6Probe(addr, open_port, closed, closed_udp, links, wait=wait, onlink=r.gateway is None and not r.local)
    return await p.run()

