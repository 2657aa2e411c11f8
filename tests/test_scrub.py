"""The scrubber's user-space rewrites (hostprint/scrub/normalise.py) on packets built and checked by
scapy (an independent codec), and its ruleset (`scrub --dry-run`). The live lab: test_scrub_lab.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT

scapy = pytest.importorskip("scapy.all")
from scapy.all import ICMP, IP, TCP, UDP, Raw  # noqa: E402

from hostprint.scrub.normalise import Norm, normalise  # noqa: E402

N = Norm(ttl=64, mss=1360, window=8192)


def _check(b: bytes) -> IP:
    p = IP(b)
    want = IP(bytes(p.__class__(b)))  # re-parse
    del want.chksum
    if want.haslayer(TCP):
        del want[TCP].chksum
    if want.haslayer(ICMP):
        del want[ICMP].chksum
    rebuilt = IP(bytes(want))
    assert rebuilt.chksum == p.chksum  # IP checksum right
    if p.haslayer(TCP):
        assert rebuilt[TCP].chksum == p[TCP].chksum
    if p.haslayer(ICMP):
        assert rebuilt[ICMP].chksum == p[ICMP].chksum
    return p


@pytest.mark.parametrize("opts, window", [
    ([("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)], 64240),  # Linux
    ([("MSS", 1460), ("NOP", None), ("WScale", 1)], 65535),  # lwIP
    ([("MSS", 1460)], 1024),  # already small
])
def test_synack_reduced_to_one_layout(opts, window):
    pkt = IP(src="198.19.0.11", dst="198.18.0.1", ttl=128, flags="DF", tos=0x10, id=7) / \
        TCP(sport=80, dport=40000, flags="SAE", window=window, options=opts, seq=1, ack=2)
    out = _check(normalise(bytes(pkt), N))
    t = out[TCP]
    assert t.options == [("MSS", 1360)]
    assert t.window == min(window, 8192)
    assert str(t.flags) == "SA"  # ECE gone
    assert out.ttl == 64 and out.tos == 0 and not out.flags.DF


def test_synproxy_window_zero_kept_and_rst_cleaned():
    sa = IP(src="198.19.0.11", dst="198.18.0.1") / TCP(flags="SA", window=0, options=[("MSS", 1460)])
    assert _check(normalise(bytes(sa), N))[TCP].window == 0
    rst = IP(src="198.19.0.21", dst="198.18.0.1", ttl=255) / TCP(flags="RA", window=0xFF7F) / Raw(b"echo")
    out = _check(normalise(bytes(rst), N))
    assert out[TCP].window == 0 and not out[TCP].payload and str(out[TCP].flags) == "RA" and out.ttl == 64


def test_icmp_quote_cut_to_8_bytes():
    probe = IP(src="198.18.0.1", dst="198.19.0.11") / UDP(sport=1, dport=2) / Raw(b"C" * 300)
    err = IP(src="198.19.0.11", dst="198.18.0.1", ttl=64) / ICMP(type=3, code=3) / Raw(bytes(probe))
    out = _check(normalise(bytes(err), N))
    assert len(bytes(out[ICMP].payload)) == 28 and out.len == 20 + 8 + 28


def test_other_packets_pass_unchanged():
    for p in (IP() / TCP(flags="A") / Raw(b"data"), IP() / ICMP(type=8), IP() / UDP()):
        assert normalise(bytes(p), N) is None


def test_dry_run_ruleset_and_bad_input():
    r = subprocess.run([sys.executable, "-m", "hostprint.cli", "scrub", "--dry-run", "--outside", "eth0", "--protect",
                        "198.19.0.0/16"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "synproxy mss 1360" in r.stdout and "ip ttl set 64" in r.stdout and "NFQUEUE" in r.stdout
    assert "ip saddr . ip daddr limit rate over 1/second burst 6 packets" in r.stdout
    bad = subprocess.run([sys.executable, "-m", "hostprint.cli", "scrub", "--dry-run", "--outside", "eth0", "--ttl", "0"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "TTL 0" in bad.stderr


# ---------------------------------------------------------------------------------- IPv6
def _check6(b: bytes):
    from scapy.all import ICMPv6DestUnreach, IPv6

    p = IPv6(b)
    want = IPv6(b)
    if want.haslayer(TCP):
        del want[TCP].chksum
    if want.haslayer(ICMPv6DestUnreach):
        del want[ICMPv6DestUnreach].cksum
    rebuilt = IPv6(bytes(want))
    if p.haslayer(TCP):
        assert rebuilt[TCP].chksum == p[TCP].chksum
    if p.haslayer(ICMPv6DestUnreach):
        assert rebuilt[ICMPv6DestUnreach].cksum == p[ICMPv6DestUnreach].cksum
    assert p.plen == len(b) - 40
    return p


def test_ipv6_synack_one_layout_hop_limit_flow_label():
    from scapy.all import IPv6

    sa = IPv6(src="2001:2::10", dst="2001:2::1", hlim=255, fl=0x8cfc9, tc=0x28) / TCP(
        flags="SA", window=64260, options=[("MSS", 1440), ("SAckOK", b""), ("Timestamp", (5, 1)), ("NOP", None),
                                           ("WScale", 7)])
    out = _check6(normalise(bytes(sa), Norm(ttl=99, mss=1360, window=8192)))
    assert out.hlim == 99 and out.fl == 0 and out.tc == 0
    assert out[TCP].options == [("MSS", 1360)] and out[TCP].window == 8192 and str(out[TCP].flags) == "SA"


def test_ipv6_icmp_error_quote_cut_and_extension_headers_pass():
    from scapy.all import ICMPv6DestUnreach, IPv6, IPv6ExtHdrDestOpt

    probe = IPv6(src="2001:2::1", dst="2001:2::10") / UDP(sport=1, dport=9) / Raw(b"x" * 600)
    err = IPv6(src="2001:2::10", dst="2001:2::1") / ICMPv6DestUnreach(code=4) / Raw(bytes(probe)[:1232])
    out = _check6(normalise(bytes(err), N))
    assert len(bytes(out[ICMPv6DestUnreach].payload)) == 48 and out.hlim == 64
    # TCP behind an extension header is not rewritten (nft and the host decide about those)
    assert normalise(bytes(IPv6() / IPv6ExtHdrDestOpt() / TCP(flags="SA")), N) is None
    assert normalise(bytes(IPv6() / TCP(flags="A") / Raw(b"data")), N) is None


def test_dry_run_ipv6_protect_and_queue_rules():
    def dry(*extra: str) -> str:
        r = subprocess.run([sys.executable, "-m", "hostprint.cli", "scrub", "--dry-run", "--outside", "eth0", *extra],
                           capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        return r.stdout

    both = dry("--protect", "198.19.0.0/16", "--protect", "2001:2:0:1::/64")
    assert 'ip6 daddr { 2001:2:0:1::/64 } tcp flags & (syn|ack|fin|rst) == syn reset tcp option timestamp' in both
    assert "ip6 hoplimit set 64" in both and "ip6 flowlabel set 0" in both and "@icmp6_errors" in both
    assert "ip6tables -t mangle -A" in both and "--icmpv6-type packet-too-big" in both
    assert "ip6tables -t raw -A" in both
    # SYNPROXY answers IPv4 SYNs only (rules.nft_ruleset says why): nothing of it matches IPv6
    syn_lines = [ln for ln in both.splitlines() if "synproxy mss" in ln or ln.strip().endswith("notrack")]
    assert syn_lines and all("ip daddr { 198.19.0.0/16 } meta nfproto ipv4" in ln for ln in syn_lines), syn_lines
    assert "synproxy mss" not in dry("--protect", "2001:2:0:1::/64")
    v4 = dry("--protect", "198.19.0.0/16")
    assert "ip6 daddr {" not in v4 and "ip6tables" not in v4  # IPv6 not protected: no inbound IPv6 rules
