"""What -O's TCP probe sends in its SEQ series and what it brings back: shared by the probe
(probes/stack.py) and the views that read its answers (probes/stack_p0f.py, match/stack_report.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hostprint.engine import packets as P
from hostprint.model import Twin
from hostprint.probes.sequence import SeqSample

# (window, options) of the six SEQ probes; TS = (0xFFFFFFFF, 0)
_TS = (P.OPT_TS, (0xFFFFFFFF, 0))
SEQ_PROBES = [
    (1, [(P.OPT_WS, 10), (P.OPT_NOP, None), (P.OPT_MSS, 1460), _TS, (P.OPT_SACKOK, None)]),
    (63, [(P.OPT_MSS, 1400), (P.OPT_WS, 0), (P.OPT_SACKOK, None), _TS, (P.OPT_EOL, None)]),
    (4, [_TS, (P.OPT_NOP, None), (P.OPT_NOP, None), (P.OPT_WS, 5), (P.OPT_NOP, None), (P.OPT_MSS, 640)]),
    (4, [(P.OPT_SACKOK, None), _TS, (P.OPT_WS, 10), (P.OPT_EOL, None)]),
    (16, [(P.OPT_MSS, 536), (P.OPT_SACKOK, None), _TS, (P.OPT_WS, 10), (P.OPT_EOL, None)]),
    (512, [(P.OPT_MSS, 265), (P.OPT_SACKOK, None), _TS]),
]


@dataclass
class Reply:
    ts: float  # kernel receive time, seconds
    ip: Any  # P.IPv4, or ipv6.IPv6 for -O over IPv6 (probes/stack6.py)
    l4: Any  # P.TCP, P.UDP or P.ICMP: readers check which before using it
    raw: bytes = b""  # the IP packet as received (p0f-style parsing, quirks)


@dataclass
class StackResult:
    tests: dict[str, dict[str, str]] = field(default_factory=dict)
    replies: dict[str, Reply] = field(default_factory=dict)
    conditions: list[str] = field(default_factory=list)  # why test conditions are not ideal
    distance: int | None = None
    summary: dict = field(default_factory=dict)  # the attributes in words (TTL, window, options, quirks …)
    twins: list[Twin] = field(default_factory=list)  # answers to identical SYNs (load-balancer check)
    ts_rate: float | None = None  # Hz, from one connection's SYN-ACK retransmission
    rtt: float | None = None  # s, the slowest answer's round trip
    #: the SEQ probes' SYN-ACKs as a --sequence series (the same six SYNs, 100 ms apart)
    sequence: list[SeqSample] = field(default_factory=list)
    ports: dict[str, int | None] = field(default_factory=dict)  # open / closed / closed_udp probed

    def fingerprint(self) -> str:
        order = ("SEQ", "OPS", "WIN", "ECN", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "U1", "IE", "XI")
        return "\n".join(f"{t}({'%'.join(f'{k}={v}' for k, v in self.tests[t].items())})"
                         for t in order if t in self.tests)
