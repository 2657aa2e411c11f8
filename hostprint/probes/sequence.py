"""IP ID and TCP ISN predictability (nmap's "TCP Sequence Prediction" / "IP ID Sequence Generation").

Six SYNs to one open port, 100 ms apart (nmap's SEQ probe spacing), and the SYN-ACKs' ISNs, IP
IDs and TCP timestamps, each stamped by the kernel on arrival. The classes follow nmap's
documented definitions (nmap book, "TCP/IP Fingerprinting Methods Supported by Nmap": GCD, ISR,
SP, TI/II classes Z, RD, RI, BI, I, and TS rate); the numbers here are our own computation, used
later by the stack fingerprint issue.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from hostprint.engine import packets as P
from hostprint.engine import route
from hostprint.engine.cookie import Cookie
from hostprint.engine.link import Links
from hostprint.engine.replies import Reply, Want, acks_cookie, addr_bytes, addr_key
from hostprint.model import OPEN, HostResult, Json
from hostprint.probes.base import Session, Technique
from hostprint.probes.options import ScanOptions
from hostprint.stackfacts import CLOCK_MAX_HZ, ip_id_class, ip_id_words, isn_stats, nominal_hz, uptime


@dataclass(frozen=True)
class SeqSample:
    """One SYN-ACK of the series: when our SYN left, when the answer arrived (kernel time), its
    ISN, IP ID and TCP timestamp value."""

    sent: float
    received: float
    isn: int
    ip_id: int | None  # None over IPv6 (no IP ID outside fragments)
    tsval: int | None


async def probe_sequence(addr: str, port: int, links: Links, probes: int = 6, spacing: float = 0.1) -> list[SeqSample]:
    """Six SYNs to one open port, 100 ms apart (nmap's SEQ spacing); the SYN-ACKs in probe order."""
    link, mac = await links.toward(addr)
    if mac is None:
        return []
    cookie = Cookie()
    lo, hi = route.probe_port_range()
    got: dict[int, tuple[int, int, int | None, tuple[int, int] | None]] = {}
    sent: dict[int, float] = {}
    dst_int = addr_key(cookie, addr)

    def on_reply(r: Reply) -> None:
        t = r.tcp
        if t is not None and t.flags & P.SYN and t.flags & P.ACK:
            got.setdefault(r.our_port or 0, (r.ts_ns, t.seq, r.ip.id if isinstance(r.ip, P.IPv4) else None,
                                             t.timestamps))

    token = link.listen(Want(peers=frozenset({addr_bytes(addr)}), protos=frozenset({P.IPPROTO_TCP}),
                             our_ports=(lo, hi), errors=False, valid=acks_cookie(cookie)), on_reply)
    try:
        for i in range(probes):
            sport = lo + i
            tcp = P.TCP(sport, port, cookie(dst_int, port, sport), 0, P.SYN, 1024,
                        options=[(P.OPT_WS, 10), (P.OPT_NOP, None), (P.OPT_MSS, 1460),
                                 (P.OPT_TS, (0xFFFFFFFF, 0)), (P.OPT_SACKOK, None)])
            sent[sport] = time.time()
            link.send(link.frame(addr, mac, tcp, P.IPPROTO_TCP, ipid=i + 1))
            await asyncio.sleep(spacing)
        await link.settle(0.3)
    finally:
        link.unlisten(token)
    return [SeqSample(sent[k], ts / 1e9, isn, ipid, tss[0] if tss else None)
            for k, (ts, isn, ipid, tss) in sorted(got.items())]


def sequence_report(samples: list[SeqSample]) -> dict[str, Json]:
    """The predictability report (JSON: isn, ip_id, tcp_ts, and nmap's XML shapes) of a SYN-ACK
    series, from --sequence's own probes or from -O's SEQ probes (the same six SYNs)."""
    if len(samples) < 2:
        return {"responses": len(samples)}
    times = [s.received for s in samples]
    t0 = times[0]
    isns = [s.isn for s in samples]
    ids = [s.ip_id for s in samples if s.ip_id is not None]
    stats = isn_stats(isns, [s.sent for s in samples])
    assert stats is not None
    cls = ip_id_class(ids) if len(ids) == len(samples) else None
    out: dict[str, Json] = {"responses": len(samples),
                            "isn": {"gcd": stats.gcd, "isr": stats.isr, "sp": stats.sp, "rate_per_s": stats.rate_per_s,
                                    "values": list(isns), "times": [round(t - t0, 6) for t in times]}}
    if len(ids) == len(samples):  # IPv6 has no IP ID to report
        out["ip_id"] = {"class": cls or "unknown", "values": list(ids)}
    tss = [s.tsval for s in samples if s.tsval is not None]
    ts_block: dict[str, Json] = {}
    if len(tss) >= 2 and len(tss) == len(samples):
        steps = [(b - a) & 0xFFFFFFFF for a, b in zip(tss, tss[1:])]
        hz = sum(steps) / max(times[-1] - times[0], 1e-6)
        ts_block = {"values": list(tss), "times": [round(t - t0, 6) for t in times]}
        if any(st >= 1 << 31 for st in steps) or hz > CLOCK_MAX_HZ:
            # Linux >= 4.10 adds a random offset per connection (RFC 7323 §5.4): no shared clock.
            ts_block = {"hz": None, "clock": "per-connection offsets", **ts_block}
        else:
            ts_block = {"hz": round(hz, 1), "clock": "shared", **ts_block}
            nominal = nominal_hz(hz)
            if nominal:
                ts_block["uptime_s"], _wrap = uptime(tss[-1], nominal)
                ts_block["nominal_hz"] = nominal
        out["tcp_ts"] = ts_block
    # The same facts in nmap's XML shapes (<tcpsequence>, <ipidsequence>, <tcptssequence>).
    out["tcpsequence"] = {"index": stats.sp, "difficulty": _difficulty(stats.sp),
                          "values": ",".join("%X" % v for v in isns)}
    if "ip_id" in out:
        out["ipidsequence"] = {"class": ip_id_words(cls), "values": ",".join("%X" % v for v in ids)}
    if ts_block:
        hz_v = ts_block.get("hz")
        tcls = "other" if not isinstance(hz_v, (int, float)) else f"{ts_block.get('nominal_hz') or round(hz_v)}HZ"
        out["tcptssequence"] = {"class": tcls, "values": ",".join("%X" % t for t in tss)}
    out["measured_at"] = time.time()
    return out


def _difficulty(sp: int) -> str:
    """nmap's category words for a sequence-predictability index, so nmap tooling shows familiar
    labels. The thresholds are as remembered from nmap's output and NOT checked against its source
    [unverified]; the number itself (our own SP computation) is what hostprint relies on."""
    if sp < 3:
        return "Trivial joke"
    if sp < 6:
        return "Easy"
    if sp < 11:
        return "Medium"
    if sp < 12:
        return "Formidable"
    if sp < 16:
        return "Worthy challenge"
    return "Good luck!"


class SequenceTechnique(Technique[dict[str, Json]]):
    """--sequence through the contract of probes/base.py. With -O the stack probe sends the same
    six SYNs and reports the sequence itself (probes/stack.py), so this one stands down."""

    name = "sequence"
    phase = 30
    label = "sequence"

    @classmethod
    def create(cls, options: ScanOptions) -> list[SequenceTechnique]:
        return [cls()] if options.sequence and not options.os_detect else []

    async def probe(self, hosts: Sequence[HostResult], session: Session) -> dict[str, dict[str, Json]]:
        out: dict[str, dict[str, Json]] = {}
        self._settled = out  # a stop keeps the hosts finished so far (base.Technique.partial)
        for h in hosts:
            open_ports = [p.port for p in h.ports if p.state == OPEN and p.protocol == "tcp"]
            if open_ports:
                out[h.address] = sequence_report(await probe_sequence(h.address, open_ports[0], session.links))
        return out

    def record(self, host: HostResult, result: dict[str, Json]) -> None:
        host.sequence = result
