"""What -O reports for one host, from the two probes' results: the stack block (tests in nmap's
notation, fingerprint, first-generation view, attributes in words, matches per DB or "unknown"),
the architecture findings the probes revealed, and the test conditions.

Kept apart from the CLI so the rules (no match from silence alone, a load-balanced address lowers
the match's confidence, relay classes become architecture) are one function a test can call on
recorded results.
"""

from __future__ import annotations

from typing import Any

from hostprint.match import architecture
from hostprint.match.first_gen import first_gen_view
from hostprint.match.stack import StackMatcher, classify
from hostprint.model import ArchitectureFinding, Json, OsMatch, StackBlock

LOAD_BALANCED_PENALTY = 0.8  # the SEQ probes met more than one stack


def stack_report(res: Any, icmp: Any, matchers: list[tuple[str, StackMatcher]],
                 p0f: tuple[list[OsMatch], dict[str, str]] | None = None,
                 ports: dict[str, int | None] | None = None, ipv6: bool = False
                 ) -> tuple[StackBlock, list[ArchitectureFinding]]:
    """(the stack block, architecture findings) for a StackResult and an IcmpStackResult, plus
    the p0f.fp labels of its SYN+ACKs and their raw signatures when --os-db p0f asked for them
    (probes/stack_p0f.py); the block's `conditions` say why test conditions were not ideal."""
    if icmp is not None and icmp.tests.get("XI"):  # classes that describe ICMP behaviour score it too
        res.tests["XI"] = icmp.tests["XI"]
    first_gen = "" if ipv6 else first_gen_view(res.tests, icmp.tests.get("XI") if icmp is not None else None)
    block = StackBlock("stack", tests=res.tests, fingerprint=res.fingerprint(), distance=res.distance,
                       first_gen=first_gen, summary=dict(res.summary or {}))
    data: dict[str, Json] = {"ports": dict(ports or {})}
    if ipv6:
        data["family"] = "ipv6"
    if res.ts_rate:
        data["ts_rate_hz"] = round(res.ts_rate, 1)
        first = next((t for t in res.twins if t.ts is not None), None)
        if res.tests.get("SEQ", {}).get("TSO") == "H" and first is not None:  # one host clock: --dual-stack pairs by it
            data["ts_clock"] = {"at": round(first.at, 6), "tsval": first.ts, "hz": round(res.ts_rate, 3)}
    if icmp is not None:
        data["icmp"] = icmp.to_dict()
    tcp_answered = any(attrs.get("R", "Y") == "Y" for t, attrs in res.tests.items() if t.startswith(("T", "SEQ", "ECN")))
    if tcp_answered:
        verdict = classify(res.tests, matchers, ideal=not res.conditions)
        block.matches, block.unknown = verdict.matches, verdict.unknown
        if p0f is not None:
            block.matches += p0f[0]
            block.matches.sort(key=lambda m: -m.confidence)
            data["p0f_raw"] = dict(p0f[1])  # shows why a stack gets no p0f label
    else:  # only silence to compare: every print whose lines say "no response" would score 100 %
        res.conditions.append("no TCP answer to any probe: too little evidence for a stack match")
    found = architecture.from_twins(res.twins, res.ts_rate) + architecture.from_stack_class(
        block.matches[0] if block.matches else None)
    if any(f.kind == "load-balancer" for f in found):
        res.conditions.append("answers came from more than one stack (load balancer): the stack match mixes them")
        for m in block.matches:
            m.confidence = round(m.confidence * LOAD_BALANCED_PENALTY, 3)
    block.conditions = list(res.conditions)
    block.data = data
    return block, found
