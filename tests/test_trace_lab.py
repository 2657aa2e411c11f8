"""--packet-trace and -f on the wire (issue 14): the lines the engine prints against what tcpdump
captured on the lab link (read back with scapy, a decoder that is not ours), and fragmented SYN
scans against unfragmented ones and nmap -f.

One small dual-stack lab of its own: t1 (198.18.0.10, 2001:2::10) listens on 22 and 80, drops TCP
1000-1099; the capture runs on the scanner's switch port, so it sees every frame the scanner's
interface sent or received."""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from passive_tools import stop, tcpdump

from conftest import ROOT, needs_root

T1, T16 = "198.18.0.10", "2001:2::10"
US, US6 = "198.18.0.1", "2001:2::1"
PORTS = "22,23,80,1000,1001"
LINE = re.compile(r"^(SENT|RCVD) \((\d+\.\d{4})s\) (\S.*)$")


@pytest.fixture(scope="module")
def tlab():
    needs_root()
    from hostprint.lab import HostSpec, Lab, LabSpec

    spec = LabSpec(name=f"trace{os.getpid() % 10000}", ipv6=True, hosts=[
        HostSpec(name="t1", address=T1, address6=T16, services=["tcp-listen:22", "tcp-listen:80"],
                 firewall=["tcp dport 1000-1099 drop"],
                 sysctls={"net.ipv4.icmp_ratelimit": "0", "net.ipv4.icmp_msgs_per_sec": "100000"})])
    with Lab(spec, strict=False) as lab:
        yield lab


def run(lab, *args: str) -> subprocess.CompletedProcess:
    r = lab.exec(lab.scanner_ns, [sys.executable, "-m", "hostprint", *args, "--no-db", "--progress", "never", "-n"],
                 capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def captured(lab, tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, list]:
    """Run hostprint with tcpdump on the scanner's switch port; the run and the captured frames."""
    import scapy.layers.inet6  # noqa: F401 - registers Ethernet and the IP layers for rdpcap
    import scapy.layers.l2  # noqa: F401
    from scapy.utils import rdpcap

    pcap = tmp_path / "link.pcap"
    dump = tcpdump(lab, "p0", pcap, "ip or ip6 or arp")
    try:
        r = run(lab, *args)
    finally:
        dropped = stop(dump)
    assert dropped == 0
    return r, list(rdpcap(str(pcap)))


def trace_lines(stderr: str) -> list[tuple[str, float, str]]:
    out = []
    for ln in stderr.splitlines():
        m = LINE.match(ln)
        if m:
            out.append((m[1], float(m[2]), m[3]))
    return out


# ------------------------------------------------------------------ what a line says, what a frame says
# Both sides reduce a packet to the same key: the line by regular expressions over nmap's format,
# the frame through scapy. A line that names a packet the link never carried, or a field that
# differs, has no partner.

TCP4 = re.compile(r"TCP (\S+):(\d+) > (\S+):(\d+) ([SFRPAUEC]*) ttl=(\d+) id=(\d+) iplen=(\d+)  seq=(\d+)"
                  r"(?: ack=(\d+))? win=(\d+) ?(?:<mss (\d+)>)?\s*$")
TCP6 = re.compile(r"TCP (\S+):(\d+) > (\S+):(\d+) ([SFRPAUEC]*) hopl=(\d+) flow=([0-9a-f]+) payloadlen=(\d+) seq=(\d+)"
                  r"(?: ack=(\d+))? win=(\d+) ?(?:<mss (\d+)>)?\s*$")
ICMP4 = re.compile(r"ICMP \[(\S+) > (\S+) [^(]*\(type=(\d+)/code=(\d+)\)(?: id=(\d+) seq=(\d+))?[^\]]*\] "
                   r"IP \[ttl=(\d+) id=(\d+) iplen=(\d+) \]$")
UDP4 = re.compile(r"UDP (\S+):(\d+) > (\S+):(\d+) ttl=(\d+) id=(\d+) iplen=(\d+) $")
UDP6 = re.compile(r"UDP (\S+):(\d+) > (\S+):(\d+) hopl=(\d+) flow=([0-9a-f]+) payloadlen=(\d+)$")
ICMP6 = re.compile(r"ICMPv6 \(58\) (\S+) > (\S+) \(type=(\d+)/code=(\d+)\) hopl=(\d+) flow=([0-9a-f]+) "
                   r"payloadlen=(\d+)(?: id=(\d+) seq=(\d+)| target=(\S+))?$")
ARPL = re.compile(r"ARP (?:who-has (\S+) tell (\S+)|reply (\S+) is-at (\S+))$")


def line_key(text: str) -> tuple | None:
    for name, rx in (("tcp4", TCP4), ("tcp6", TCP6), ("icmp4", ICMP4), ("udp4", UDP4), ("udp6", UDP6),
                     ("icmp6", ICMP6), ("arp", ARPL)):
        m = rx.match(text)
        if m:
            return (name, *(g if g is None else g.lower() for g in m.groups()))
    return None


def frame_key(p) -> tuple | None:
    k = _frame_key(p)
    return None if k is None else tuple(x if x is None else str(x).lower() for x in k)


def _frame_key(p) -> tuple | None:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import ARP

    def mss(t) -> str | None:
        return next((str(v) for k, v in t.options if k == "MSS"), None)

    if p.haslayer(ARP):
        a = p[ARP]
        if a.op == 1:
            return ("arp", a.pdst, a.psrc, None, None)
        return ("arp", None, None, a.psrc, a.hwsrc.lower())
    if p.haslayer(IP):
        ip = p[IP]
        if ip.flags.MF or ip.frag:
            return None  # fragments: their own test
        head = (str(ip.ttl), str(ip.id), str(ip.len))
        if ip.haslayer(TCP):
            t = ip[TCP]
            return ("tcp4", ip.src, str(t.sport), ip.dst, str(t.dport), str(t.flags), *head, str(t.seq),
                    str(t.ack) if t.flags.A else None, str(t.window), mss(t))
        if ip.haslayer(UDP):
            u = ip[UDP]
            return ("udp4", ip.src, str(u.sport), ip.dst, str(u.dport), *head)
        if ip.haslayer(ICMP):
            c = ip[ICMP]
            echo = c.type in (0, 8, 13, 14, 17, 18)
            return ("icmp4", ip.src, ip.dst, str(c.type), str(c.code), str(c.id) if echo else None,
                    str(c.seq) if echo else None, *head)
    if p.haslayer(IPv6):
        ip = p[IPv6]
        head = (str(ip.hlim), f"{ip.fl:x}", str(ip.plen))
        if ip.nh == 6:
            t = ip[TCP]
            return ("tcp6", ip.src, str(t.sport), ip.dst, str(t.dport), str(t.flags), *head, str(t.seq),
                    str(t.ack) if t.flags.A else None, str(t.window), mss(t))
        if ip.nh == 17:
            u = ip[UDP]
            return ("udp6", ip.src, str(u.sport), ip.dst, str(u.dport), *head)
        if ip.nh == 58:
            raw = bytes(ip.payload)
            extra: tuple = (None, None, None)
            if raw[0] in (128, 129):
                extra = (str(int.from_bytes(raw[4:6], "big")), str(int.from_bytes(raw[6:8], "big")), None)
            elif raw[0] in (135, 136):
                import ipaddress

                extra = (None, None, str(ipaddress.IPv6Address(raw[8:24])))
            return ("icmp6", ip.src, ip.dst, str(raw[0]), str(raw[1]), *head, *extra)
    return None


def ours(key: tuple) -> bool:
    """A frame between the scanner and t1 (the capture also holds the kernel's MLD and ND chatter)."""
    return any(a in key for a in (US, US6)) and any(a in key for a in (T1, T16))


def check_against_capture(lines: list[tuple[str, float, str]], frames: list) -> collections.Counter:
    """Every line names a frame of the capture (all fields equal), and every TCP/UDP/ICMP frame
    between the scanner and t1 has its line; returns the keys of the lines."""
    times = [t for _, t, _ in lines]
    assert times == sorted(times)
    keys = collections.Counter()
    for what, _t, text in lines:
        k = line_key(text)
        assert k is not None, f"not in nmap's format: {what} {text}"
        keys[k] += 1
    caught = collections.Counter(k for k in map(frame_key, frames) if k is not None)
    missing = keys - caught
    assert not missing, f"traced but not on the link: {list(missing)[:5]}"
    untraced = [k for k in caught - keys if k[0] in ("tcp4", "tcp6", "udp4", "udp6", "icmp4") and ours(k)]
    untraced += [k for k in caught - keys if k[0] == "icmp6" and ours(k) and k[3] in ("128", "129")]
    assert not untraced, f"on the link but not traced: {untraced[:5]}"
    return keys


@pytest.mark.lab
def test_syn_scan_trace_matches_the_link(tlab, tmp_path):
    r, frames = captured(tlab, tmp_path, "scan", "-sS", "-p", PORTS, "--packet-trace", "-Pn", T1, T16)
    lines = trace_lines(r.stderr)
    keys = check_against_capture(lines, frames)
    text = [t for _, _, t in lines]
    for addr, kind in ((T1, "tcp4"), (T16, "tcp6")):
        sent = {int(k[4]) for k in keys if k[0] == kind and k[3] == addr and k[5] == "s"}
        assert sent == {22, 23, 80, 1000, 1001}  # one SYN per port at least (1000/1001 twice: dropped)
        got = {(int(k[2]), k[5]) for k in keys if k[0] == kind and k[1] == addr}
        assert got == {(22, "sa"), (80, "sa"), (23, "ra")}
    assert sum(n for k, n in keys.items() if k[0] == "tcp4" and k[4] == "1000" and k[5] == "s") >= 2
    assert any(t.startswith(f"TCP {US}:") and t.endswith("win=1024 <mss 1460>") for t in text)
    states = {p: s for p, s in re.findall(r"^(\d+)/tcp\s+(\S+)", r.stdout, re.M)}
    assert states["22"] == "open" and states["23"] == "closed"


@pytest.mark.lab
def test_discovery_trace_matches_the_link(tlab, tmp_path):
    r, frames = captured(tlab, tmp_path, "discover", "-PE", "-PP", "-PM", "-PS443", "-PA80", "-PU", "-PR",
                         "--packet-trace", T1, T16)
    lines = trace_lines(r.stderr)
    keys = check_against_capture(lines, frames)
    kinds = collections.Counter()
    for k in keys:
        if k[0] == "icmp4":
            kinds[("icmp4", k[1] == US, k[3])] += 1
        elif k[0] == "icmp6":
            kinds[("icmp6", k[1] == US6, k[3])] += 1
        elif k[0] in ("tcp4", "tcp6"):
            kinds[(k[0], k[1] in (US, US6), k[5])] += 1
        elif k[0] in ("udp4", "udp6"):
            kinds[(k[0], True, k[4])] += 1
        elif k[0] == "arp":
            kinds[("arp", k[1] is not None)] += 1
    want = [("icmp4", True, "8"), ("icmp4", True, "13"), ("icmp4", True, "17"), ("icmp4", False, "0"),
            ("icmp4", False, "14"), ("icmp4", False, "3"), ("tcp4", True, "s"), ("tcp4", True, "a"),
            ("tcp4", False, "ra"), ("tcp4", False, "r"), ("udp4", True, "40125"), ("arp", True), ("arp", False),
            ("icmp6", True, "128"), ("icmp6", False, "129"), ("icmp6", True, "135"), ("icmp6", False, "136"),
            ("icmp6", False, "1"), ("tcp6", True, "s"), ("tcp6", True, "a"), ("udp6", True, "40125")]
    assert [w for w in want if not kinds[w]] == []
    assert "Nmap scan report for 198.18.0.10" in r.stdout and "Nmap scan report for 2001:2::10" in r.stdout


def _states(stdout: str) -> dict[int, str]:
    h = json.loads(stdout.splitlines()[0])
    return {p["port"]: p["state"] for p in h["ports"]}


@pytest.mark.lab
def test_fragmented_syn_scan_same_states_and_fragments_on_the_link(tlab, tmp_path):
    from scapy.layers.inet import IP, TCP

    plain = _states(run(tlab, "scan", "-sS", "-p", PORTS, "-Pn", T1, "-oJ", "-").stdout)
    assert plain == {22: "open", 80: "open", 23: "closed", 1000: "filtered", 1001: "filtered"}
    r, frames = captured(tlab, tmp_path, "scan", "-sS", "-f", "-p", PORTS, "-Pn", T1, "-oJ", "-")
    assert _states(r.stdout) == plain
    ips = [p[IP] for p in frames if p.haslayer(IP) and p[IP].src == US and p[IP].dst == T1 and p[IP].proto == 6]
    frags = [ip for ip in ips if ip.flags.MF or ip.frag]
    whole = [ip for ip in ips if not (ip.flags.MF or ip.frag)]
    assert all(ip[TCP].flags == "R" for ip in whole)  # only our resets of the open ports go out whole
    firsts = [ip for ip in frags if ip.frag == 0]
    assert len(firsts) >= 5 and all(ip.flags.MF for ip in firsts)
    assert all(ip.len - ip.ihl * 4 == 8 for ip in frags)  # 8-byte pieces: a 24-byte SYN is three
    by_id = collections.Counter(ip.id for ip in frags)
    assert {n % 3 for n in by_id.values()} == {0}  # whole trains (a retried probe keeps its IP ID)
    assert sorted({ip.frag for ip in frags}) == [0, 1, 2]
    # --mtu 16: pieces of 16 and 8 bytes, same states
    r, frames = captured(tlab, tmp_path, "scan", "-sS", "--mtu", "16", "-p", PORTS, "-Pn", T1, "-oJ", "-")
    assert _states(r.stdout) == plain
    sizes = {ip[IP].len - 20 for ip in frames if ip.haslayer(IP) and ip[IP].src == US and (ip[IP].flags.MF or ip[IP].frag)}
    assert sizes == {16, 8}


@pytest.mark.lab
def test_nmap_f_side_by_side(tlab):
    r = tlab.exec(tlab.scanner_ns, ["nmap", "-f", "-sS", "-n", "-Pn", "-p", PORTS, "-oX", "-", T1], capture_output=True,
                  text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    nmap = {int(p.get("portid")): p.find("state").get("state") for p in ET.fromstring(r.stdout).iter("port")}
    ours_f = _states(run(tlab, "scan", "-sS", "-f", "-p", PORTS, "-Pn", T1, "-oJ", "-").stdout)
    assert ours_f == nmap


@pytest.mark.lab
def test_fragmented_discovery_finds_the_host(tlab, tmp_path):
    from scapy.layers.inet import IP

    r, frames = captured(tlab, tmp_path, "discover", "-f", "-PS443", "-PA80", "-PP", T1, "-oJ", "-")
    h = json.loads(r.stdout.splitlines()[0])
    assert h["status"] == "up" and {"syn-reset", "ack-reset", "timestamp-reply"} <= set(h["reasons"])
    frag_protos = collections.Counter(p[IP].proto for p in frames if p.haslayer(IP) and p[IP].src == US
                                      and p[IP].flags.MF)
    assert frag_protos[6] >= 2 and frag_protos[1] >= 1  # TCP SYN/ACK and ICMP timestamp, cut


@pytest.mark.lab
def test_fragments_over_ipv6_tcp_are_refused_in_one_line(tlab):
    r = tlab.exec(tlab.scanner_ns, [sys.executable, "-m", "hostprint", "scan", "-sS", "-f", "-p", "22", T16],
                  capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "RFC 7112" in r.stderr
