"""The -O report rules on recorded results (no lab): a match needs a TCP answer, a load-balanced
address marks and discounts the match, a relay class becomes architecture."""

from __future__ import annotations

from hostprint.match.stack import load_matchers
from hostprint.match.stack_report import stack_report
from hostprint.model import Twin
from hostprint.probes.stack import StackResult
from hostprint.signatures.nmap_os_db import parse_test_line

# hostprint scan -sS -O -p 80,81 against the lab's Linux 6.18.44 with default sysctls (2026-11-23)
LINUX_618 = """SEQ(SP=108%GCD=1%ISR=10C%TI=Z%CI=Z%II=I%TS=A%TSO=C)
OPS(O1=M5B4ST11NWA%O2=M5B4ST11NWA%O3=M5B4NNT11NWA%O4=M5B4ST11NWA%O5=M5B4ST11NWA%O6=M5B4ST11)
WIN(W1=FE88%W2=FE88%W3=FE88%W4=FE88%W5=FE88%W6=FE88)
ECN(R=Y%DF=Y%T=40%TG=40%W=FAF0%O=M5B4NNSNWA%CC=Y%Q=)
T1(R=Y%DF=Y%T=40%TG=40%S=O%A=S+%F=AS%RD=0%Q=)
T2(R=N)
T3(R=N)
T4(R=Y%DF=Y%T=40%TG=40%W=0%S=A%A=Z%F=R%O=%RD=0%Q=)
T5(R=Y%DF=Y%T=40%TG=40%W=0%S=Z%A=S+%F=AR%O=%RD=0%Q=)
T6(R=Y%DF=Y%T=40%TG=40%W=0%S=A%A=Z%F=R%O=%RD=0%Q=)
T7(R=Y%DF=Y%T=40%TG=40%W=0%S=Z%A=S+%F=AR%O=%RD=0%Q=)
U1(R=Y%DF=N%T=40%TG=40%IPL=164%UN=0%RIPL=G%RID=G%RIPCK=G%RUCK=G%RUD=G)
IE(R=Y%DFI=N%T=40%TG=40%CD=S)"""


def _res(text: str, twins=None) -> StackResult:
    return StackResult(tests=dict(parse_test_line(ln) for ln in text.splitlines()), distance=1,
                       twins=twins or [], ts_rate=1000.0)


def _twin(i: int, opts: str) -> Twin:
    return Twin(f"LB{i}", opts, "FE88", "40", "0", "Y", None, 0.6 + i / 1000, 0)


def test_linux_618_is_6x_with_fingerprint_and_first_gen_view():
    stack, found = stack_report(_res(LINUX_618), None, load_matchers("hostprint"))
    assert stack.matches[0].name == "Linux 6.x" and stack.matches[0].db == "hostprint"
    assert stack.unknown is None and found == [] and stack.conditions == []
    assert stack.fingerprint.startswith("SEQ(") and stack.first_gen.startswith("TSeq(")


def test_silence_gives_no_match():
    quiet = "\n".join(f"{t}(R=N)" for t in ("ECN", "T1", "T2", "T3", "T4", "T5", "T6", "T7", "U1", "IE"))
    stack, _ = stack_report(_res(quiet), None, load_matchers("hostprint"))
    assert stack.matches == [] and any("too little evidence" in c for c in stack.conditions)


def test_two_stacks_behind_one_address_discount_the_match():
    one, _ = stack_report(_res(LINUX_618), None, load_matchers("hostprint"))
    twins = [_twin(i, "M5B4ST11NWA" if i % 2 else "M5B4") for i in range(9)]
    lb, found = stack_report(_res(LINUX_618, twins), None, load_matchers("hostprint"))
    assert [f.kind for f in found] == ["load-balancer"]
    assert any("more than one stack" in c for c in lb.conditions)
    assert lb.matches[0].confidence < one.matches[0].confidence
