"""xprobe2-style ICMP probe against real Linux stacks, and the nmap 1st-generation view.

The live expectations are what Linux (net/ipv4/icmp.c) does and what the session lab measured
(Linux 6.18, 2026-11-23):
  echo      icmp_echo() copies the request's ICMP header and changes only the type, so the odd code
            comes back; icmp_reply() sends with the request's TOS; the ICMP control socket does not
            set DF (IP_PMTUDISC_DONT), whatever the request carried.
  timestamp icmp_timestamp() answers with ms since midnight UT (net.ipv4.icmp_echo_ignore_all does
            not cover it; only a firewall does, as on t2).
  mask/info icmp_pointers[] hands ICMP_ADDRESS and ICMP_INFO_REQUEST to icmp_discard(): silence.
  errors    __icmp_send() uses RT_TOS(probe TOS) | IPTOS_PREC_INTERNETCONTROL (0xC0) and quotes as
            much of the datagram as fits in 576 bytes, unchanged.
"""

from __future__ import annotations

import json
import struct
import sys

import pytest

from conftest import ROOT, scan_json
from hostprint.engine import packets as P
from hostprint.match.first_gen import first_gen_tests, first_gen_view
from hostprint.probes import icmp_stack as I

T1, T2, T3, T5 = "198.18.0.10", "198.18.0.11", "198.18.0.12", "198.18.0.14"
CLOSED_UDP = 40125

PROBE_SCRIPT = """
import asyncio, json, sys
from hostprint.engine.link import Links
from hostprint.probes.icmp_stack import IcmpStackProbe
async def main(addrs):
    links = Links()
    try:
        out = {}
        for a in addrs:
            out[a] = (await IcmpStackProbe(a, links, int(sys.argv[1]), wait=0.5).run()).to_dict()
        print(json.dumps(out))
    finally:
        links.close()
asyncio.run(main(sys.argv[2:]))
"""

# StackResult.tests of `hostprint scan -sS -O -p 80,81 198.18.0.10 -oJ -` against the scanlab's t1
# (Linux 6.18, nginx on 80, 81 closed), captured 2026-11-23.
CAPTURED_T1 = {
    "SEQ": {"SP": "107", "GCD": "1", "ISR": "10C", "TI": "Z", "CI": "Z", "II": "I", "TS": "23"},
    "OPS": {"O1": "M5B4ST11NWA", "O2": "M5B4ST11NWA", "O3": "M5B4NNT11NWA", "O4": "M5B4ST11NWA",
            "O5": "M5B4ST11NWA", "O6": "M5B4ST11"},
    "WIN": {"W1": "FE88", "W2": "FE88", "W3": "FE88", "W4": "FE88", "W5": "FE88", "W6": "FE88"},
    "ECN": {"R": "Y", "DF": "Y", "T": "40", "TG": "40", "W": "FAF0", "O": "M5B4NNSNWA", "CC": "Y", "Q": ""},
    "T1": {"R": "Y", "DF": "Y", "T": "40", "TG": "40", "S": "O", "A": "S+", "F": "AS", "RD": "0", "Q": ""},
    "T2": {"R": "N"},
    "T3": {"R": "N"},
    "T4": {"R": "Y", "DF": "Y", "T": "40", "TG": "40", "W": "0", "S": "A", "A": "Z", "F": "R", "O": "", "RD": "0", "Q": ""},
    "T5": {"R": "Y", "DF": "Y", "T": "40", "TG": "40", "W": "0", "S": "Z", "A": "S+", "F": "AR", "O": "", "RD": "0", "Q": ""},
    "T6": {"R": "Y", "DF": "Y", "T": "40", "TG": "40", "W": "0", "S": "A", "A": "Z", "F": "R", "O": "", "RD": "0", "Q": ""},
    "T7": {"R": "Y", "DF": "Y", "T": "40", "TG": "40", "W": "0", "S": "Z", "A": "S+", "F": "AR", "O": "", "RD": "0", "Q": ""},
    "U1": {"R": "Y", "DF": "N", "T": "40", "TG": "40", "IPL": "164", "UN": "0", "RIPL": "G", "RID": "G",
           "RIPCK": "G", "RUCK": "G", "RUD": "G"},
    "IE": {"R": "Y", "DFI": "N", "T": "40", "TG": "40", "CD": "S"},
}

# What the first-gen view of CAPTURED_T1 must be, attribute by attribute from nmap 3.x's osscan.cc
# rules: ISNs that jump ~2^30 per probe are TR; TI=Z is IPID=Z; TS=23 (~2^35 Hz, Linux's random
# per-connection offsets) has no 1st-gen class; T1's SACK option has no 1st-gen letter; 2nd-gen
# A=Z (ack 0) is 1st-gen ACK=O; U1's G values are E, and RIPTL 148 is our 328-byte datagram.
CAPTURED_T1_FIRST_GEN = "\n".join([
    "TSeq(Class=TR%IPID=Z)",
    "T1(Resp=Y%DF=Y%W=FE88%ACK=S++%Flags=AS%Ops=MTNW)",
    "T2(Resp=N)",
    "T3(Resp=N)",
    "T4(Resp=Y%DF=Y%W=0%ACK=O%Flags=R%Ops=)",
    "T5(Resp=Y%DF=Y%W=0%ACK=S++%Flags=AR%Ops=)",
    "T6(Resp=Y%DF=Y%W=0%ACK=O%Flags=R%Ops=)",
    "T7(Resp=Y%DF=Y%W=0%ACK=S++%Flags=AR%Ops=)",
    "PU(Resp=Y%DF=N%IPLEN=164%RIPTL=148%RID=E%RIPCK=E%UCK=E%DAT=E)",
])


# --------------------------------------------------------------------------- live (real kernels)


@pytest.fixture(scope="module")
def probed(scanlab):
    r = scanlab.exec(scanlab.scanner_ns, [sys.executable, "-c", PROBE_SCRIPT, str(CLOSED_UDP), T1, T2, T3, T5],
                     capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _xi(probed, addr: str) -> dict[str, str]:
    return probed[addr]["tests"]["XI"]


@pytest.mark.lab
def test_linux_echo_and_timestamp(probed):
    xi = _xi(probed, T1)
    assert {k: xi[k] for k in ("ECHO_R", "ECHO_CODE", "ECHO_TOS", "ECHO_DF", "ECHO_TG")} == \
        {"ECHO_R": "Y", "ECHO_CODE": "E", "ECHO_TOS": "%X" % I.ECHO_TOS, "ECHO_DF": "N", "ECHO_TG": "40"}
    assert xi["ECHO_ID"] in ("O", "S")  # Linux picks its own ID (ip_select_ident), never 0 here
    assert {k: xi[k] for k in ("TS_R", "TS_ZERO", "TS_STD", "TS_ORIG", "TS_TG")} == \
        {"TS_R": "Y", "TS_ZERO": "N", "TS_STD": "Y", "TS_ORIG": "G", "TS_TG": "40"}


@pytest.mark.lab
def test_linux_ignores_address_mask_and_information_requests(probed):
    for addr in (T1, T5):
        xi = _xi(probed, addr)
        assert (xi["AM_R"], xi["INFO_R"]) == ("N", "N"), addr
        assert "AM_MASK" not in xi and "INFO_ID" not in xi


@pytest.mark.lab
def test_linux_port_unreachable_quoting(probed):
    xi = _xi(probed, T1)
    quoted = 8 + len(I.PU_PAYLOAD)
    assert {k: v for k, v in xi.items() if k.startswith("PU_") and k != "PU_ID"} == {
        "PU_R": "Y", "PU_CODE": "3", "PU_TOS": "C0", "PU_PREC": "C0", "PU_DF": "N", "PU_TG": "40",
        "PU_IPL": "%X" % (20 + 8 + 20 + quoted), "PU_QLEN": "%X" % quoted,
        "PU_RIPL": "G", "PU_RID": "G", "PU_RFLAGS": "G", "PU_RIPCK": "G", "PU_RUCK": "G", "PU_RULEN": "G",
        "PU_RUD": "G"}
    assert probed[T1]["distance"] == 1
    assert probed[T1]["conditions"] == []


@pytest.mark.lab
def test_filters_show_as_silence(probed):
    t2 = _xi(probed, T2)  # nft drops echo and timestamp requests; UDP still draws the kernel's error
    assert (t2["ECHO_R"], t2["TS_R"], t2["PU_R"], t2["PU_QLEN"]) == ("N", "N", "Y", "%X" % (8 + len(I.PU_PAYLOAD)))
    t5 = _xi(probed, T5)  # nft drops TCP and UDP, ICMP is answered
    assert (t5["ECHO_R"], t5["TS_R"], t5["PU_R"]) == ("Y", "Y", "N")
    assert "no port unreachable from the closed UDP port" in probed[T5]["conditions"]
    t3 = _xi(probed, T3)  # silent host
    assert t3 == {"ECHO_R": "N", "TS_R": "N", "AM_R": "N", "INFO_R": "N", "PU_R": "N"}
    assert probed[T3]["distance"] is None


@pytest.mark.lab
def test_first_gen_view_of_a_live_scan(scanlab, probed):
    """The real CLI's -O tests of t1, seen as nmap 1st gen would have printed a Linux box."""
    host = scan_json(scanlab, "-sS", "-O", "-p", "80,81", T1)[T1]
    lines = first_gen_view(host["os"]["stack"]["tests"], _xi(probed, T1)).splitlines()
    assert lines[0].startswith("TSeq(Class=TR")  # Linux ISNs are keyed hashes: ~2^30 apart
    assert lines[1].startswith("T1(Resp=Y%DF=Y%W=") and lines[1].endswith("%ACK=S++%Flags=AS%Ops=MTNW)")
    assert lines[2:] == ["T2(Resp=N)", "T3(Resp=N)", "T4(Resp=Y%DF=Y%W=0%ACK=O%Flags=R%Ops=)",
                         "T5(Resp=Y%DF=Y%W=0%ACK=S++%Flags=AR%Ops=)", "T6(Resp=Y%DF=Y%W=0%ACK=O%Flags=R%Ops=)",
                         "T7(Resp=Y%DF=Y%W=0%ACK=S++%Flags=AR%Ops=)",
                         "PU(Resp=Y%DF=N%TOS=C0%IPLEN=164%RIPTL=148%RID=E%RIPCK=E%UCK=E%DAT=E)"]


# --------------------------------------------------------------------------- attributes from crafted replies

SCANNER = "198.18.0.1"


def _probe() -> I.IcmpStackProbe:
    p = I.IcmpStackProbe(T1, links=None, closed_udp=CLOSED_UDP)  # type: ignore[arg-type]
    for name in I.PROBES:
        p.record(name, *p.build(name, bytes(map(int, SCANNER.split(".")))))
    return p


def _frame(ip: P.IPv4, icmp: P.ICMP) -> memoryview:
    return memoryview(P.build_frame(P.Ethernet(b"\x02" * 6, b"\x04" * 6), ip, icmp))


def _from_target(p: I.IcmpStackProbe, **kw) -> P.IPv4:
    return P.IPv4(p.dst, bytes(map(int, SCANNER.split("."))), P.IPPROTO_ICMP, **kw)


def _quote(p: I.IcmpStackProbe, name: str, n_after_header: int, ttl: int = 63) -> bytearray:
    pkt = bytearray(p.sent[name][1])
    pkt[8] = ttl  # the target saw it one hop later; the header checksum is stale until fixed
    return pkt[:20 + n_after_header]


def _fix_ip_checksum(hdr: bytearray) -> bytearray:
    from hostprint.engine.checksum import checksum

    hdr[10:12] = b"\0\0"
    hdr[10:12] = struct.pack("!H", checksum(bytes(hdr[:20])))
    return hdr


def test_bsd_style_quote_is_told_apart():
    """An old-BSD-like error (xprobe2.conf's AIX entries: 8 bytes quoted, UDP checksum zeroed, IP
    length and ID in host order, checksum not recomputed) gets the non-G values."""
    p = _probe()
    q = _quote(p, "PU", 8)
    ln, ident = struct.unpack_from("!HH", q, 2)
    struct.pack_into("<HH", q, 2, ln, ident)  # host byte order on a little-endian box
    struct.pack_into("!H", q, 26, 0)  # UDP checksum zeroed
    p.feed(0, _frame(_from_target(p, ttl=255, tos=0, df=True), P.ICMP(P.ICMP_UNREACH, 3, quoted=bytes(q))))
    res = I.IcmpStackResult()
    p.attributes(res)
    xi = res.tests["XI"]
    assert (xi["PU_QLEN"], xi["PU_RIPL"], xi["PU_RID"], xi["PU_RUCK"], xi["PU_RIPCK"]) == ("8", "F", "F", "Z", "I")
    assert (xi["PU_PREC"], xi["PU_DF"], xi["PU_TG"], xi["PU_RFLAGS"], xi["PU_RUD"]) == ("0", "Y", "FF", "G", "G")
    assert xi["PU_IPL"] == "%X" % (20 + 8 + 28) and res.distance == 2


def test_consistent_quote_after_a_router_is_good():
    p = _probe()
    q = _fix_ip_checksum(_quote(p, "PU", 8 + len(I.PU_PAYLOAD), ttl=60))
    q[-1] ^= 0xFF  # one payload byte altered
    p.feed(0, _frame(_from_target(p, ttl=60, tos=0xC0), P.ICMP(P.ICMP_UNREACH, 3, quoted=bytes(q))))
    res = I.IcmpStackResult()
    p.attributes(res)
    xi = res.tests["XI"]
    assert (xi["PU_RIPCK"], xi["PU_RUD"], xi["PU_QLEN"], res.distance) == ("G", "I", "6C", 5)


def test_errors_instead_of_replies_and_junk():
    p = _probe()
    ts_query = p.sent["TS"][1]
    reject = P.ICMP(P.ICMP_UNREACH, 13, quoted=ts_query[:28])  # nft "reject with icmp admin-prohibited"
    p.feed(0, _frame(_from_target(p), reject))
    # a mask reply with the wrong ICMP id, an echo reply from another host, and bytes that are no frame
    p.feed(0, _frame(_from_target(p), P.ICMP(P.ICMP_MASKREPLY, 0, (p.icmp_id["AM"] + 7) & 0xFFFF, 1)))
    other = P.IPv4(bytes([198, 18, 0, 99]), bytes(4), P.IPPROTO_ICMP)
    p.feed(0, _frame(other, P.ICMP(P.ICMP_ECHOREPLY, 0, p.icmp_id["ECHO"], 1)))
    for junk in (b"", b"\0" * 13, b"\xff" * 60, bytes(_frame(_from_target(p), P.ICMP(3, 3, quoted=b"\x45\0")))):
        p.feed(0, memoryview(junk))
    p.feed(0, _frame(_from_target(p), P.ICMP(P.ICMP_MASKREPLY, 0, p.icmp_id["AM"], 1, mask=b"\xff\xff\xff\0")))
    res = I.IcmpStackResult()
    p.attributes(res)
    xi = res.tests["XI"]
    assert (xi["TS_R"], xi["ECHO_R"], xi["AM_R"], xi["AM_MASK"], xi["PU_R"]) == ("U", "N", "Y", "FFFFFF00", "N")
    assert "TS query answered with ICMP type 3 code 13" in res.conditions


# --------------------------------------------------------------------------- first-gen view (unit)


def _with(**changes: dict[str, str]) -> dict[str, dict[str, str]]:
    t = json.loads(json.dumps(CAPTURED_T1))
    for test, attrs in changes.items():
        t[test].update(attrs)
    return t


def test_first_gen_view_of_captured_linux():
    assert first_gen_view(CAPTURED_T1) == CAPTURED_T1_FIRST_GEN
    assert "PU(Resp=Y%DF=N%TOS=C0%IPLEN" in first_gen_view(CAPTURED_T1, {"PU_TOS": "C0"})


@pytest.mark.parametrize("seq, want", [
    ({"GCD": "0", "ISR": "0", "SP": "0"}, {"Class": "C"}),
    ({"GCD": "FA00", "ISR": "90", "SP": "0"}, {"Class": "64K"}),  # 64000
    ({"GCD": "320", "ISR": "80", "SP": "0"}, {"Class": "i800"}),  # 800
    # ISR 0x98: 2^19 ISN/s, 52429 per 100 ms; SP 0x40: spread 256 ISN/s -> SI 26 on 100 ms = TD
    ({"GCD": "1", "ISR": "98", "SP": "40"}, {"Class": "TD", "gcd": "1", "SI": "1A"}),
    # SP 0x80: spread 65536/s -> SI 6554 = RI; GCD 2 was not divided out of SP, so SI halves
    ({"GCD": "2", "ISR": "A0", "SP": "80"}, {"Class": "RI", "gcd": "2", "SI": "CCD"}),
    ({"GCD": "1", "ISR": "E8", "SP": "80"}, {"Class": "TR"}),  # 2^29/s: > 50,000,000 per probe
])
def test_tseq_class(seq, want):
    got = first_gen_tests({"SEQ": seq})["TSeq"]
    assert got == want


@pytest.mark.parametrize("ti, ts, want", [
    ("RI", "1", {"IPID": "RPI", "TS": "2HZ"}), ("BI", "7", {"IPID": "BI", "TS": "100HZ"}),
    ("I", "A", {"IPID": "I", "TS": "1000HZ"}), ("RD", "U", {"IPID": "RD", "TS": "U"}),
    ("7F3A", "0", {"IPID": "C", "TS": "0"}), ("Z", "8", {"IPID": "Z"}),  # 200 Hz: no 1st-gen class
])
def test_tseq_ipid_and_timestamps(ti, ts, want):
    got = first_gen_tests({"SEQ": {"GCD": "1", "ISR": "E8", "SP": "0", "TI": ti, "TS": ts}})["TSeq"]
    assert {k: v for k, v in got.items() if k in ("IPID", "TS")} == want


def test_tseq_needs_four_syn_acks():
    assert "TSeq" not in first_gen_tests({"SEQ": {"TI": "Z", "TS": "U"}})


def test_tcp_tests_map_flags_ack_and_options():
    t = _with(T3={"R": "Y", "DF": "N", "W": "16A0", "A": "O", "F": "EAS", "O": "M109NNSNW7L"},
              T7={"A": "S"})
    g = first_gen_tests(t)
    assert g["T3"] == {"Resp": "Y", "DF": "N", "W": "16A0", "ACK": "O", "Flags": "BAS", "Ops": "MENNNWL"}
    assert g["T7"]["ACK"] == "S"
    # a stack that echoes the MSS shows it on SEQ probes 2, 5 and 6 (MSS 1400, 536, 265)
    echoing = _with(OPS={"O1": "M5B4NW0", "O2": "M578NW0", "O5": "M218NW0", "O6": "M109NW0"})
    assert first_gen_tests(echoing)["T1"]["Ops"] == "MENW"
    assert first_gen_tests(CAPTURED_T1)["T1"]["Ops"] == "MTNW"


def test_no_open_port_and_no_udp_answer():
    t = {k: v for k, v in CAPTURED_T1.items() if k not in ("SEQ", "OPS", "WIN", "ECN", "T1", "T2", "T3", "T4")}
    t["U1"] = {"R": "N"}
    assert first_gen_view(t).splitlines() == [
        "T5(Resp=Y%DF=Y%W=0%ACK=S++%Flags=AR%Ops=)", "T6(Resp=Y%DF=Y%W=0%ACK=O%Flags=R%Ops=)",
        "T7(Resp=Y%DF=Y%W=0%ACK=S++%Flags=AR%Ops=)", "PU(Resp=N)"]


def test_pu_values_that_do_not_map_are_left_out():
    pu = first_gen_tests(_with(U1={"RIPL": "134", "RID": "0", "RIPCK": "I", "RUCK": "4F2A", "RUD": "I"}))["PU"]
    assert pu == {"Resp": "Y", "DF": "N", "IPLEN": "164", "RIPTL": "134", "RID": "0", "UCK": "F", "DAT": "F"}


@pytest.mark.parametrize("bad", [None, [], {"SEQ": "x", "T1": 5}, {"SEQ": {"GCD": "zz", "ISR": 3, "SP": None}},
                                 {"T1": {"R": "Y", "A": None, "F": 7}, "OPS": {"O1": 9}}])
def test_malformed_tests_do_not_crash(bad):
    assert isinstance(first_gen_view(bad), str)
