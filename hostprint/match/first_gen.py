"""nmap's first-generation fingerprint notation (nmap 2.x–4.1x), derived from our second-generation tests.

Why: the 1,684 prints of the last `nmap-os-fingerprints` (nmap commit 9efe18921, 2007; see
../shared/reference/stack-fingerprinting.md §2.1, §2.8), Phrack 54 and the honeyd/scapy tooling all
speak `TSeq(...)`, `T1(...)`–`T7(...)`, `PU(...)`. Showing a host in that notation lets a user read
old write-ups and databases against what hostprint measured, without sending a second probe set:
the 2nd-gen probes are close relatives of the 1st-gen ones (same flags, windows and ports for
T2–T7, same 328-byte UDP datagram for U1/PU), so most attributes translate. The attribute meanings
below are nmap 1st gen's (osscan.cc of nmap 3.x: get_fingerprint, fingerprint_iptcppacket,
fingerprint_portunreach); the code is ours.

What maps, and how:
  TSeq  Class from GCD/ISR/SP: C when GCD is 0 (constant ISN), 64K when GCD is a multiple of 64000,
        i800 for multiples of 800, TR when the ISNs move by more than 50,000,000 per probe, else TD
        (SI < 75) or RI. 1st gen compared each difference with 50,000,000 and took SI as the
        root-mean-square deviation of the GCD-divided differences; we only have the average rate
        (ISR) and the spread of rates (SP) over hostprint's 100 ms probe spacing, so TR uses the
        average difference and SI = 2^(SP/8) × 0.1 s (÷ GCD where SP was not divided by it).
        SI is therefore on our timing, not nmap 1st gen's (it sent the SYNs 5 ms + srtt apart, so
        its SI values for time-driven ISNs are smaller). gcd is GCD.
        IPID from TI (Z→Z, I→I, BI→BI, RI→RPI, RD→RD, constant→C); TS from TS
        (U→U, 0→0, 1→2HZ, 7→100HZ, A→1000HZ; 1st gen had no class for other rates, so TS is left
        out then). TSeq is left out when fewer than four SYN-ACKs came back, as 1st gen did.
  T1–T7 Resp, DF, W (T1: WIN.W1, the same SYN-ACK), ACK (S+→S++, S→S, Z/O→O), Flags (nmap's
        "B" bogus flag is 0x40, today's ECE: E→B; order BUAPRSF), Ops: M, N, W, T, L as in 1st gen
        (values dropped) and "E" after M when the MSS echoes the probe's: for T2–T7 the 2nd-gen
        probes carry MSS 265 like 1st gen's, for T1 (probe MSS 1460) an echo is judged from SEQ
        probes 2, 5 and 6 (MSS 1400, 536, 265) in OPS.
  PU    Resp, DF, IPLEN (U1.IPL), RIPTL (U1.RIPL; G is 148, our datagram's length like 1st gen's),
        RID (G→E, 0→0, else F), RIPCK (G→E, Z→0), UCK (RUCK: G→E, 0→0, else F), DAT (RUD: G→E,
        I→F). TOS comes from the ICMP probe's PU_TOS when that result is passed in.

What does not map (left out rather than guessed):
  TSeq Val (the constant ISN itself is not kept in the 2nd-gen tests).
  Ops "S": 1st-gen probes never offered SACK, so no letter exists; the SACK-permitted option is
        dropped, and a stack that fills that space with NOPs when SACK is not offered (Linux:
        MNNTNW) would have shown a different layout to a 1st-gen probe.
  PU RIPCK when the 2nd-gen value is I: U1 compares with the checksum we sent, 1st gen checked the
        quoted header's own consistency, so a recomputed checksum is "I" for one and "E" for the other.
  PU ULEN: U1 does not record the quoted UDP length. TOS without the ICMP probe result.
"""

from __future__ import annotations

import re

_OPT_TOKEN = re.compile(r"M([0-9A-F]+)|W[0-9A-F]+|T[01]{2}|N|S|L")
_IPID = {"Z": "Z", "I": "I", "BI": "BI", "RI": "RPI", "RD": "RD"}
_TS = {"U": "U", "0": "0", "1": "2HZ", "7": "100HZ", "A": "1000HZ"}
SEQ_SPACING = 0.1  # seconds between hostprint's SEQ SYNs (probes/stack.py)
T_PROBE_MSS = 265  # MSS in T2–T7 probes, 1st and 2nd gen alike
SEQ_PROBE_MSS = {"O2": 1400, "O5": 536, "O6": 265}  # SEQ probes whose replies show an MSS echo
TEST_ORDER = ("T1", "T2", "T3", "T4", "T5", "T6", "T7")


def _d(x: object) -> dict[str, str]:
    """Tests may come back from a stored report: anything that is not a dict counts as absent."""
    return x if isinstance(x, dict) else {}


def _hex(v: object) -> int | None:
    try:
        return int(v, 16) if isinstance(v, str) else None
    except ValueError:
        return None


def _mss(ops: object) -> int | None:
    m = _OPT_TOKEN.match(ops if isinstance(ops, str) else "")
    return int(m.group(1), 16) if m and m.group(1) else None


def tseq(seq: dict[str, str]) -> dict[str, str] | None:
    gcd, isr, sp = _hex(seq.get("GCD")), _hex(seq.get("ISR")), _hex(seq.get("SP"))
    if gcd is None or isr is None or sp is None:
        return None
    out: dict[str, str] = {}
    if gcd == 0:
        out["Class"] = "C"
    elif gcd % 64000 == 0:
        out["Class"] = "64K"
    elif gcd % 800 == 0:
        out["Class"] = "i800"
    elif isr and 2 ** (isr / 8) * SEQ_SPACING > 50_000_000:
        out["Class"] = "TR"
    else:
        div = gcd if gcd > 9 else 1  # SP's rates were divided by the GCD only above 9
        si = 0 if sp == 0 else round(2 ** (sp / 8) * SEQ_SPACING * div / gcd)
        out["Class"] = "TD" if si < 75 else "RI"
        out["gcd"] = "%X" % gcd
        out["SI"] = "%X" % si
    ti = seq.get("TI")
    if ti in _IPID:
        out["IPID"] = _IPID[ti]
    elif ti and _hex(ti) is not None:
        out["IPID"] = "C"
    if seq.get("TS") in _TS:
        out["TS"] = _TS[seq["TS"]]
    return out


def ops(o: str, echo: bool) -> str:
    out = []
    for m in _OPT_TOKEN.finditer(o):
        tok = m.group(0)
        if tok[0] == "M":
            out.append("ME" if echo else "M")
        elif tok == "L":
            out.append("L")
            break  # 1st gen stopped reading at end-of-list
        elif tok != "S":
            out.append(tok[0])
    return "".join(out)


def _t1_echoes_mss(ops_test: dict[str, str]) -> bool:
    seen = [(_mss(ops_test.get(k)), mss) for k, mss in SEQ_PROBE_MSS.items() if _mss(ops_test.get(k)) is not None]
    return bool(seen) and all(got == sent for got, sent in seen)


def t_test(name: str, t: dict[str, str], tests: dict[str, dict[str, str]]) -> dict[str, str]:
    if t.get("R") != "Y":
        return {"Resp": "N"}
    out = {"Resp": "Y", "DF": str(t.get("DF", "N"))}
    w = tests.get("WIN", {}).get("W1") if name == "T1" else t.get("W")
    if isinstance(w, str):
        out["W"] = w
    out["ACK"] = {"S+": "S++", "S": "S"}.get(str(t.get("A")), "O")
    out["Flags"] = str(t.get("F", "")).replace("E", "B")
    o = tests.get("OPS", {}).get("O1") if name == "T1" else t.get("O")
    if isinstance(o, str):
        echo = _t1_echoes_mss(tests.get("OPS", {})) if name == "T1" else _mss(o) == T_PROBE_MSS
        out["Ops"] = ops(o, echo)
    return out


def pu_test(u1: dict[str, str], icmp: dict[str, str] | None) -> dict[str, str]:
    if u1.get("R") != "Y":
        return {"Resp": "N"}
    u1 = {k: str(v) for k, v in u1.items()}
    out = {"Resp": "Y", "DF": u1.get("DF", "N")}
    if icmp and icmp.get("PU_TOS"):
        out["TOS"] = icmp["PU_TOS"]
    if "IPL" in u1:
        out["IPLEN"] = u1["IPL"]
    if "RIPL" in u1:
        out["RIPTL"] = "148" if u1["RIPL"] == "G" else u1["RIPL"]
    if "RID" in u1:
        out["RID"] = {"G": "E", "0": "0"}.get(u1["RID"], "F")
    if u1.get("RIPCK") in ("G", "Z"):
        out["RIPCK"] = "E" if u1["RIPCK"] == "G" else "0"
    if "RUCK" in u1:
        out["UCK"] = {"G": "E", "0": "0"}.get(u1["RUCK"], "F")
    if "RUD" in u1:
        out["DAT"] = "E" if u1["RUD"] == "G" else "F"
    return out


def first_gen_tests(tests: dict[str, dict[str, str]], icmp: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    tests = {k: _d(v) for k, v in _d(tests).items()}
    out: dict[str, dict[str, str]] = {}
    ts = tseq(tests.get("SEQ", {}))
    if ts:
        out["TSeq"] = ts
    for name in TEST_ORDER:
        if name in tests:
            out[name] = t_test(name, tests[name], tests)
    if "U1" in tests:
        out["PU"] = pu_test(tests["U1"], _d(icmp))
    return out


def first_gen_view(tests: dict[str, dict[str, str]], icmp: dict[str, str] | None = None) -> str:
    """`tests` = StackResult.tests; `icmp` = the XI test of IcmpStackProbe (optional, adds PU.TOS).
    One line per test, nmap's `Name(attr=value%...)` layout."""
    return "\n".join(f"{n}({'%'.join(f'{k}={v}' for k, v in a.items())})" for n, a in first_gen_tests(tests, icmp).items())
