"""What -O reports for one host, from the two probes' results: the os.stack block (tests in nmap's
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

LOAD_BALANCED_PENALTY = 0.8  # the SEQ probes met more than one stack


def stack_report(res: Any, icmp: Any, matchers: list[tuple[str, StackMatcher]], p0f_db: Any = None,
                 ports: dict | None = None) -> tuple[dict, list[dict[str, str]], list[str]]:
    """(os.stack, architecture findings, conditions) for a StackResult and an IcmpStackResult."""
    if icmp is not None and icmp.tests.get("XI"):  # classes that describe ICMP behaviour score it too
        res.tests["XI"] = icmp.tests["XI"]
    stack: dict = {"tests": res.tests, "fingerprint": res.fingerprint(), "conditions": res.conditions,
                   "distance": res.distance, "ports": ports or {}}
    if res.ts_rate:
        stack["ts_rate_hz"] = round(res.ts_rate, 1)
    if res.summary:
        stack["summary"] = res.summary
    if icmp is not None:
        stack["icmp"] = icmp.to_dict()
    stack["first_gen"] = first_gen_view(res.tests, icmp.tests.get("XI") if icmp is not None else None)
    tcp_answered = any(attrs.get("R", "Y") == "Y" for t, attrs in res.tests.items() if t.startswith(("T", "SEQ", "ECN")))
    stack["matches"] = []
    if tcp_answered:
        verdict = classify(res.tests, matchers, ideal=not res.conditions)
        stack["matches"] = verdict["matches"]
        if verdict["unknown"]:
            stack["unknown"] = verdict["unknown"]
        if p0f_db is not None:
            from hostprint.match.stack_p0f import p0f_matches, raw_signatures

            stack["matches"] += p0f_matches(res, p0f_db)
            stack["matches"].sort(key=lambda d: -d["confidence"])
            stack["p0f_raw"] = raw_signatures(res)  # shows why a stack gets no p0f label
    else:  # only silence to compare: every print whose lines say "no response" would score 100 %
        res.conditions.append("no TCP answer to any probe: too little evidence for a stack match")
    found = architecture.from_twins(res.twins, res.ts_rate) + architecture.from_stack_class(
        (stack["matches"] or [None])[0])
    if any(f["kind"] == "load-balancer" for f in found):
        res.conditions.append("answers came from more than one stack (load balancer): the stack match mixes them")
        for m in stack["matches"]:
            m["confidence"] = round(m["confidence"] * LOAD_BALANCED_PENALTY, 3)
    return stack, found, res.conditions
