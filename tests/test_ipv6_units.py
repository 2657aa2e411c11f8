"""IPv6 end to end without a lab (issue 17): reply validation of IPv6 frames, the IPv6 class DB and its
unknown rule, --dual-stack pairing, the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from hostprint.engine import icmpv6 as I6
from hostprint.engine import packets as P
from hostprint.engine import replies as R
from hostprint.engine.cookie import Cookie
from hostprint.engine.frames import build_frame6, build_ip6
from hostprint.engine.ipv6 import IPPROTO_ICMPV6, IPv6, ip6_bytes

US, THEM, ROUTER = ip6_bytes("2001:2::1"), ip6_bytes("2001:2::10"), ip6_bytes("2001:2::199")
ETH = P.Ethernet(b"\x02" * 6, b"\x04" * 6, P.ETH_P_IPV6)


def frame6(src: bytes, dst: bytes, l4, proto: int, hlim: int = 64) -> bytes:
    return build_frame6(ETH, IPv6(src, dst, proto, hlim), l4)


def udp_probe(sport: int, dport: int) -> bytes:
    return build_ip6(IPv6(US, THEM, P.IPPROTO_UDP, 64), P.UDP(sport, dport, b"C" * 20))


@pytest.mark.parametrize("code,reason,port", [(4, "port-unreach", True), (1, "admin-prohibited", False),
                                              (0, "no-route", False), (3, "host-unreach", False),
                                              (5, "admin-prohibited", False), (6, "reject-route", False),
                                              (7, "dest-unreach", False)])
def test_an_icmpv6_unreachable_answers_the_probe_it_quotes(code, reason, port):
    err = I6.error(I6.DST_UNREACH, code, udp_probe(61000, 53))
    r = R.decode_reply(123, frame6(ROUTER if code != 4 else THEM, US, err, IPPROTO_ICMPV6))
    assert r is not None and r.family == 6 and r.peer == THEM and r.address == "2001:2::10"
    assert (r.proto, r.our_port, r.their_port) == (P.IPPROTO_UDP, 61000, 53)
    assert r.dest_unreach and r.port_unreach == port and r.unreach_reason == reason and not r.time_exceeded
    assert R.Want(frozenset({THEM}), frozenset({P.IPPROTO_UDP}), (60000, 65535)).accepts(r)
    assert not R.Want(frozenset({THEM}), frozenset({P.IPPROTO_UDP}), (60000, 65535), errors=False).accepts(r)


def test_icmpv4_reasons_are_unchanged():
    q = P.build_ip(P.IPv4(b"\xc6\x12\0\1", b"\xc6\x12\0\x0a", P.IPPROTO_UDP), P.UDP(61000, 53, b""))
    fr = P.build_frame(P.Ethernet(b"\x02" * 6, b"\x04" * 6), P.IPv4(b"\xc6\x12\0\x0a", b"\xc6\x12\0\1", P.IPPROTO_ICMP),
                       P.ICMP(P.ICMP_UNREACH, 13, quoted=q))
    r = R.decode_reply(0, fr)
    assert r is not None and r.family == 4 and r.unreach_reason == "admin-prohibited" and not r.port_unreach


def test_echo_replies_and_nas_over_ipv6():
    c = Cookie(key=7)
    i, s = R.icmp_ident(c, THEM, 1)
    r = R.decode_reply(0, frame6(THEM, US, I6.ICMPv6(I6.ECHO_REPLY, 0, i, s), IPPROTO_ICMPV6))
    w = R.Want(frozenset({THEM}), frozenset({IPPROTO_ICMPV6}), errors=False, icmp_types=frozenset({I6.ECHO_REPLY}),
               valid=R.ident_is_cookie(c, 1))
    assert r is not None and r.icmp6 is not None and r.icmp is None and w.accepts(r)
    forged = R.decode_reply(0, frame6(THEM, US, I6.ICMPv6(I6.ECHO_REPLY, 0, i, s ^ 1), IPPROTO_ICMPV6))
    assert forged is not None and not w.accepts(forged)
    na = R.decode_reply(0, frame6(THEM, US, I6.neighbor_advertisement(THEM, b"\x02" * 6), IPPROTO_ICMPV6, 255))
    assert na is not None and na.icmp6 is not None and na.icmp6.type == I6.NEIGHBOR_ADVERT
    assert not w.accepts(na)


def test_tcp_cookies_over_ipv6_use_the_keyed_fold_and_ipv4_values_are_unchanged():
    c = Cookie(key=0x1234)
    v4 = socket_bytes("198.18.0.10")
    assert R.addr_key(c, v4) == int.from_bytes(v4, "big")  # the IPv4 value as before issue 17
    assert R.addr_key(c, THEM) == c.fold6(THEM) and R.addr_key(c, "2001:2::10") == c.fold6(THEM)
    seq = c(R.addr_key(c, THEM), 22, 61000, 4)
    synack = R.decode_reply(0, frame6(THEM, US, P.TCP(22, 61000, 99, (seq + 1) & 0xFFFFFFFF, P.SYN | P.ACK, 100),
                                      P.IPPROTO_TCP))
    assert synack is not None and R.acks_cookie(c, 4)(synack) and not R.acks_cookie(c, 5)(synack)


def socket_bytes(a: str) -> bytes:
    import socket

    return socket.inet_aton(a)


# ---------------------------------------------------------------------------- the IPv6 class DB

LINUX6 = ("SEQ(SP=F8%GCD=1%ISR=10C%TS=A%TSO=C%FL=R)\n"
          "OPS(O1=M5A0ST11NWA%O2=M5A0ST11NWA%O3=M5A0NNT11NWA%O4=M5A0ST11NWA%O5=M5A0ST11NWA%O6=M5A0ST11)\n"
          "WIN(W1=FB04%W2=FB04%W3=FB04%W4=FB04%W5=FB04%W6=FB04)\n"
          "ECN(R=Y%T=40%TG=40%W=FD20%O=M5A0NNSNWA%CC=Y%Q=%TC=0)\nT1(R=Y%T=40%TG=40%S=O%A=S+%F=AS%RD=0%Q=)\n"
          "T2(R=N)\nT3(R=N)\nT4(R=Y%T=40%TG=40%W=0%S=A%A=Z%F=R%O=%RD=0%Q=%FL=N)\n"
          "T5(R=Y%T=40%TG=40%W=0%S=Z%A=S+%F=AR%O=%RD=0%Q=%FL=N)\nT6(R=Y%T=40%TG=40%W=0%S=A%A=Z%F=R%O=%RD=0%Q=%FL=N)\n"
          "T7(R=Y%T=40%TG=40%W=0%S=Z%A=S+%F=AR%O=%RD=0%Q=%FL=N)\n"
          "U1(R=Y%T=40%TG=40%PL=164%RPL=G%RUCK=G%RUD=G%TC=0%FL=N)\nIE1(R=Y%T=40%TG=40%TY=81%CD=S%PL=G%FL=N)\n"
          "IE2(R=Y%T=40%TG=40%TY=4%CD=1%P=38)\nNS(R=Y%TG=FF%F=SO%O=2)")
GVISOR6 = ("SEQ(SP=105%GCD=6%ISR=10D%TS=A%TSO=H%FL=Z)\n"
           "OPS(O1=M5A0ST11NW7%O2=M5A0ST11NW7%O3=M5A0NNT11NW7%O4=M5A0ST11NW7%O5=M5A0ST11NW7%O6=M5A0ST11)\n"
           "WIN(W1=7080%W2=7080%W3=7080%W4=7080%W5=7080%W6=7080)\n"
           "ECN(R=Y%T=40%TG=40%W=7080%O=M5A0NNSNW7%CC=N%Q=%TC=0)\nT1(R=Y%T=40%TG=40%S=O%A=S+%F=AS%RD=0%Q=)\n"
           "T2(R=N)\nT3(R=Y%T=40%TG=40%W=7080%S=O%A=S+%F=AS%O=M5A0ST11NW7%RD=0%Q=%FL=Z)\n"
           "T4(R=Y%T=40%TG=40%W=0%S=A%A=Z%F=R%O=%RD=0%Q=%FL=Z)\nT5(R=Y%T=40%TG=40%W=0%S=Z%A=S+%F=AR%O=%RD=0%Q=%FL=Z)\n"
           "T6(R=Y%T=40%TG=40%W=0%S=A%A=Z%F=R%O=%RD=0%Q=%FL=Z)\nT7(R=Y%T=40%TG=40%W=0%S=Z%A=S+%F=AR%O=%RD=0%Q=%FL=Z)\n"
           "U1(R=Y%T=40%TG=40%PL=164%RPL=G%RUCK=G%RUD=G%TC=0%FL=Z)\nIE1(R=Y%T=40%TG=40%TY=81%CD=S%PL=G%FL=Z)\n"
           "IE2(R=Y%T=40%TG=40%TY=4%CD=1%P=38)\nNS(R=Y%TG=FF%F=SO%O=2)")


def observed(fp: str) -> dict[str, dict[str, str]]:
    from hostprint.signatures.nmap_os_db import parse_test_line

    out = {}
    for line in fp.splitlines():
        t = parse_test_line(line)
        assert t is not None, line
        out[t[0]] = t[1]
    return out


def test_the_ipv6_db_names_what_was_measured():
    from hostprint.match.stack import classify, load_matchers6

    m = load_matchers6()
    v = classify(observed(LINUX6), m)
    assert v.unknown is None and v.matches[0].name == "Linux 6.x" and v.matches[0].generation == "6.x"
    v = classify(observed(GVISOR6), m)
    assert v.unknown is None and v.matches[0].family == "gVisor"


def test_a_stack_outside_the_ipv6_db_is_unknown_with_the_nearest_class():
    """gVisor against a DB without its class: the same unknown rule as IPv4 (nearest class, distance,
    the attributes that disagree), not a wrong name."""
    from hostprint.match.stack import StackMatcher, classify
    from hostprint.signatures import stack_db
    from hostprint.signatures.nmap_os_db import OsDb

    db = stack_db.load(stack_db.DB6_DIR)
    linux_only = OsDb(db.points, [fp for fp in db.prints if fp.classes[0].family == "Linux"], "t")
    v = classify(observed(GVISOR6), [("hostprint", StackMatcher(linux_only))])
    assert v.matches == [] and v.unknown is not None and v.unknown.nearest == "Linux 6.x"
    assert any(d.startswith("T3.R=Y") for d in v.unknown.disagreements)


def test_the_ipv6_db_refuses_ipv4_only_tests(tmp_path):
    from hostprint.errors import UsageError
    from hostprint.signatures import stack_db

    with pytest.raises(UsageError, match="unknown test 'IE'"):
        stack_db.parse("Stack X\nClass a | b | c | d\nSource measured: here\nIE(R=Y)\n", "t", tests=stack_db.TESTS6)


# ---------------------------------------------------------------------------- --dual-stack


def host(addr: str, mac: str | None = None, clock: tuple[float, int, float] | None = None, cert: str | None = None):
    from hostprint import model

    h = model.HostResult(addr, "up", mac=mac)
    if clock is not None:
        h.os.add(model.StackBlock("stack", data={"ts_clock": {"at": clock[0], "tsval": clock[1], "hz": clock[2]}}))
    if cert is not None:
        svc = model.Service(name="https")
        svc.tls = model.TlsFacts(cert=model.CertFacts(sha256=cert))
        h.ports.append(model.PortResult(443, "tcp", "open", "syn-ack", 64, svc))
    return h


def test_pairing_by_mac_and_not_by_a_routers_mac():
    from hostprint.match.dualstack import find_pairs

    hosts = [host("198.18.0.10", "02:aa"), host("2001:2::10", "02:AA"),
             host("198.19.0.1", "02:rr"), host("198.19.0.2", "02:rr"), host("2001:2:0:1::1", "02:rr")]
    pairs = find_pairs(hosts)
    assert [(p.v4, p.v6, p.by) for p in pairs] == [("198.18.0.10", "2001:2::10", ["MAC 02:aa"])]


def test_pairing_by_timestamp_clock_and_keys():
    from hostprint.match.dualstack import find_pairs, merge

    hosts = [host("198.19.0.20", clock=(100.0, 5_000_000, 1000.0)), host("2001:2:0:1::20", clock=(103.5, 5_003_501, 1000.0)),
             host("198.19.0.30", clock=(100.0, 9_000_000, 1000.0)), host("2001:2:0:1::31", clock=(100.0, 1_000, 1000.0)),
             host("198.19.0.40"), host("2001:2:0:1::40"), host("198.19.0.50"), host("2001:2:0:1::50"),
             host("198.19.0.60", cert="ab" * 32), host("2001:2:0:1::60", cert="ab" * 32)]
    keys = {"198.19.0.40": "ssh-ed25519 AAAAone", "2001:2:0:1::40": "ssh-ed25519 AAAAone",
            "198.19.0.50": "ssh-ed25519 AAAAshared", "2001:2:0:1::50": "ssh-ed25519 AAAAshared",
            "198.19.0.30": "ssh-ed25519 AAAAshared"}  # one key on three addresses pairs nothing
    pairs = {p.v4: (p.v6, p.by[0].split(" ")[0]) for p in find_pairs(hosts, keys)}
    assert pairs == {"198.19.0.20": ("2001:2:0:1::20", "TCP"), "198.19.0.40": ("2001:2:0:1::40", "SSH"),
                     "198.19.0.60": ("2001:2:0:1::60", "TLS")}
    merged = merge(hosts, find_pairs(hosts, keys))
    assert len(merged) == len(hosts) - 3
    first = next(h for h in merged if h.address == "198.19.0.60")
    assert first.addresses[0]["address"] == "2001:2:0:1::60" and first.addresses[0]["open"] == ["443/tcp"]
    assert json.loads(json.dumps(first.to_dict()))["addresses"][0]["family"] == "ipv6"


def test_different_macs_veto_a_pairing():
    from hostprint.match.dualstack import find_pairs

    hosts = [host("198.18.0.10", "02:aa", cert="cd" * 32), host("2001:2::10", "02:bb", cert="cd" * 32)]
    assert find_pairs(hosts) == []


# ---------------------------------------------------------------------------- command line


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hostprint", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, env={"HOSTPRINT_NO_DNS": "1", "PATH": "/usr/bin:/bin"})


def test_list_scan_of_a_mixed_list_sends_nothing():
    r = cli("scan", "-sL", "-n", "2001:2::/126", "198.18.0.1", "[2001:2::10]", "-oJ", "-", "--no-db")
    assert r.returncode == 0, r.stderr
    assert [json.loads(ln)["address"] for ln in r.stdout.splitlines()] == [
        "2001:2::", "2001:2::1", "2001:2::2", "2001:2::3", "198.18.0.1", "2001:2::10"]


def test_a_64_is_one_line_and_exit_2():
    r = cli("scan", "-sL", "-n", "2001:2::/64")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("hostprint: target spec '2001:2::/64' is an IPv6 /64: 2^64 addresses")


def test_dash_6_is_a_flag_and_negative_numbers_still_parse():
    r = cli("scan", "-6", "-sL", "-n", "2001:2::10", "--max-retries", "1", "-oJ", "-", "--no-db")
    assert r.returncode == 0, r.stderr
    r = cli("scan", "--min-rate", "-5", "-sL", "-n", "2001:2::10")
    assert r.returncode == 2 and "--min-rate" in r.stderr


# ---------------------------------------------------------------------------- the bulk receive path

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

RST6 = frame6(THEM, US, P.TCP(22, 61000, 0, 5, P.RST | P.ACK, 0), P.IPPROTO_TCP)
UNREACH6 = frame6(THEM, US, I6.error(I6.DST_UNREACH, 1, build_ip6(IPv6(US, THEM, P.IPPROTO_TCP, 64),
                                                                  P.TCP(61000, 22, 4, 0, P.SYN, 1024))), IPPROTO_ICMPV6)
frames6 = st.one_of(
    st.binary(max_size=160).map(lambda b: b"\x02" * 12 + b"\x86\xdd" + b),
    *[st.builds(lambda b, i, v: b[:i] + bytes([v]) + b[i + 1:], st.just(base), st.integers(12, len(base) - 1),
                st.integers(0, 255)) for base in (RST6, UNREACH6)],
    *[st.builds(lambda b, n: b[:n], st.just(base), st.integers(0, len(base))) for base in (RST6, UNREACH6)],
)


@settings(max_examples=300, deadline=None)
@given(st.lists(frames6, min_size=1, max_size=20))
def test_the_ipv6_block_receiver_never_raises(batch):
    """tcpscan's IPv6 bulk path (tcpscan6: extension-chain walk, Addr6Index, cookies, ICMPv6 errors) on
    truncated, mutated and garbage IPv6 frames: skipped, never read out of bounds, nothing escapes."""
    import numpy as np

    from conftest import bare_tcp_scan, feed_block
    from hostprint.engine.cookie import halves
    from hostprint.engine.ipv6_blocks import Addr6Index
    from hostprint.probes.tcpscan import TargetState

    s = bare_tcp_scan(np.zeros(0, np.uint64), np.zeros(0, np.int64))
    st6 = TargetState("2001:2::10", 0, None, b"", 1, s.state[0], s.ttl_m[0], family=6, raw=THEM)  # type: ignore[arg-type]
    s.by_addr, s.states, s.guard, s.on_open = {}, [st6], None, None
    s.by_addr6, s.v6_tidx = {THEM: st6}, np.array([0], np.int64)
    s.idx6 = Addr6Index(*halves([THEM]))
    feed_block(s, batch)
