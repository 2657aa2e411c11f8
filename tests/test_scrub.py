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
