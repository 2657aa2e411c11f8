"""Probe detection in `hostprint passive` (issue 18).

Unit part: the rules file (every rule and threshold with a source), the shape grammar, malformed
packets (random bytes never crash the parser or the detector), bad CLI input (one line, exit 2).
Lab part: captures made here of the real tools (tests/passive_tools.py: Debian's nmap, masscan
and zmap; hostprint's scan, -O, --cron-os and amap mode with amap 5.4's triggers from ../shared)
are read back with `hostprint passive -r`; each must raise a detection that names the tool, and
the normal traffic (web, a browser-like client, SSH, a closed port, ping) must raise nothing. The
same runs are watched live by `hostprint passive -i` beside tcpdump (passive_tools.Watch): the
live detections must be the same.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hostprint", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)


def _events(path: Path, out: Path) -> list[dict]:
    r = _cli("passive", "-r", str(path), "--no-db", "-oJ", str(out))
    assert r.returncode == 0, r.stderr
    return [d for d in map(json.loads, out.read_text().splitlines()) if d.get("type") == "event"]


# --------------------------------------------------------------------------- units


def test_rules_load_and_every_rule_has_a_source():
    from hostprint.match.probedetect import load_rules

    rules, th = load_rules()
    assert len(rules) >= 15
    for r in rules:
        assert r.sources and all(s.startswith(("documented:", "measured:")) for s in r.sources), r.name
        assert r.shapes, r.name
    assert set(th.sources) >= {"ports", "hosts", "os_probes", "triggers", "trigger_window", "zombie_probes"}
    tools = {r.tool for r in rules}
    assert tools >= {"nmap", "masscan", "zmap", "amap", "hostprint", "xprobe2"}


def test_bad_rules_are_refused(tmp_path):
    from hostprint.errors import UsageError
    from hostprint.match.probedetect import load_rules

    bad = {
        "no source": "Rule x\nTool nmap\nMethod tool-shape\nMatch proto=tcp\n",
        "bad key": "Rule x\nTool nmap\nMethod tool-shape\nMatch colour=blue\nSource measured: here\n",
        "bad tool": "Rule x\nTool nessus\nMethod tool-shape\nMatch proto=tcp\nSource measured: here\n",
        "no match": "Rule x\nTool nmap\nMethod tool-shape\nSource measured: here\n",
        "bad flags": "Rule x\nTool nmap\nMethod tool-shape\nMatch flags=Q\nSource measured: here\n",
        "odd opts digits": "Rule x\nTool nmap\nMethod tool-shape\nMatch opts=0x02?\nSource measured: here\n",
        "opts wildcard text": "Rule x\nTool nmap\nMethod tool-shape\nMatch opts=\"a?\"\nSource measured: here\n",
    }
    for why, text in bad.items():
        f = tmp_path / "r.txt"
        f.write_text(text)
        with pytest.raises(UsageError, match=r"r\.txt:\d+"):  # names the file and line
            load_rules(f)
            pytest.fail(f"accepted a rules file with {why}")


def test_shape_quoted_text_keeps_blanks():
    from hostprint.match.probedetect import parse_packet, parse_shape

    s = parse_shape('proto=tcp contains="Nmap Scripting Engine"')
    assert s.tests[1] == ("contains", b"Nmap Scripting Engine")
    # an IPv4 TCP packet carrying the text
    import struct

    payload = b"GET / HTTP/1.1\r\nUser-Agent: Mozilla/5.0 (compatible; Nmap Scripting Engine)\r\n\r\n"
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1, 1, 0x50, 0x18, 1024, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0, bytes([198, 18, 0, 1]),
                     bytes([198, 18, 0, 2])) + tcp
    p = parse_packet(ip, 0, len(ip), 0.0)
    assert p is not None and s.matches(p)
    assert not parse_shape('proto=tcp contains="Nmap Scripting Enginf"').matches(p)


def test_random_bytes_never_crash_the_detector():
    """Fuzz: random packets, and real-looking headers with random tails, through parse and feed."""
    import struct

    from hostprint.match.probedetect import detector, parse_packet

    rng = random.Random(18)
    seen = []
    d = detector(seen.append)
    parsed = 0
    for i in range(20000):
        n = rng.randrange(0, 120)
        buf = bytes(rng.randrange(256) for _ in range(n))
        if i % 2:  # a plausible IPv4 or IPv6 header in front, so the deeper parsers run
            proto = rng.choice([6, 17, 1, 58, 6, 6])
            if i % 4 == 1:
                buf = struct.pack("!BBHHHBBH4s4s", 0x45, 0, rng.randrange(0, 200), 0, rng.choice([0, 0x4000, 1]), 64,
                                  proto, 0, b"\xc6\x12\x00\x01", bytes([198, 18, 0, rng.randrange(256)])) + buf
            else:
                buf = (bytes([0x60, 0, 0, 0]) + struct.pack("!HBB", rng.randrange(0, 200), proto, 64)
                       + bytes(16) + bytes(15) + bytes([rng.randrange(256)]) + buf)
        p = parse_packet(buf, 0, len(buf), float(i))
        if p is not None:
            parsed += 1
            d.feed(p)
        # offsets past the end, and an end before the start
        assert parse_packet(buf, len(buf) + 5, len(buf), 0.0) is None
        assert parse_packet(buf, 0, -1, 0.0) is None
    d.finish()
    assert parsed > 5000


def test_thousands_of_scanners_keep_the_source_table_bounded():
    """10,000 sources each probing 20 ports: the table stays at MAX_SOURCES, and every detection
    gets exactly one final record (sent early for a source pushed out of the table)."""
    from hostprint.match import probedetect as PD

    seen = []
    d = PD.detector(seen.append)
    for i in range(10_000):
        src = (0xC6130000 + i).to_bytes(4, "big")
        for port in range(1, 21):
            d.feed(PD.Pkt(float(i), 4, src, b"\xc6\x12\x08\x0a", 6, 64, 1, False, 0, sport=40000, dport=port,
                          flags=PD.SYN, win=64240, seq=i * 100 + port))
        assert len(d.sources) <= PD.MAX_SOURCES
    d.finish()
    news = [e for e in seen if e.update == "new"]
    finals = [e for e in seen if e.update == "final"]
    assert len(news) == 10_000 and all(e.kind == "portscan" and e.ports == 15 for e in news)
    assert sorted(e.source for e in finals) == sorted(e.source for e in news)
    assert all(e.ports == 20 for e in finals)
    assert d.stats["sources_finished_early"] > 0


def test_detector_runs_inside_passive_on_a_hostile_capture(tmp_path):
    """The packet loop with detection on a capture of damaged and random frames: exit 0."""
    from hostprint.engine.pcapfile import PcapWriter

    rng = random.Random(7)
    f = tmp_path / "junk.pcap"
    with PcapWriter(f) as w:
        for i in range(3000):
            eth = bytes(12) + rng.choice([b"\x08\x00", b"\x86\xdd", b"\x81\x00"])
            w.write(i * 1000, eth + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 90))))
    r = _cli("passive", "-r", str(f), "--no-db", "--quiet")
    assert r.returncode == 0, r.stderr


def test_bad_probe_rules_path_is_one_line_exit_2(tmp_path):
    r = _cli("passive", "-r", str(tmp_path / "none.pcap"), "--no-db")
    assert r.returncode == 2
    from hostprint.engine.pcapfile import PcapWriter

    f = tmp_path / "empty.pcap"
    PcapWriter(f).close()
    r = _cli("passive", "-r", str(f), "--no-db", "--probe-rules", str(tmp_path / "nope.txt"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    bad = tmp_path / "bad.txt"
    bad.write_text("Rule x\nTool nmap\n")
    r = _cli("passive", "-r", str(f), "--no-db", "--probe-rules", str(bad))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "probes" not in r.stdout, r.stderr


# --------------------------------------------------------------------------- the lab


def _feed(det, packets: list[bytes], t0: float = 100.0) -> None:
    from hostprint.match.probedetect import parse_packet

    for i, b in enumerate(packets):
        pk = parse_packet(b, 0, len(b), t0 + i * 0.1)
        assert pk is not None
        det.feed(pk)


def _tcp(src: str, dst: str, sport: int, dport: int, flags: int, seq: int, ack: int = 0, ipid: int = 1,
         opts: list | None = None) -> bytes:
    from hostprint.engine import packets as P

    return P.build_ip(P.IPv4(P.ip_to_int(src).to_bytes(4, "big"), P.ip_to_int(dst).to_bytes(4, "big"), id=ipid),
                      P.TCP(sport, dport, seq, ack, flags, 1024, options=opts or []))


def test_xprobe2_icmp_set_is_named_and_pings_are_not():
    """xprobe2's probe set (crafted from its documented probes: passive_tools.xprobe2_packets) is
    an OS-fingerprinting detection naming xprobe2; ping, nmap -PP -PM style timestamp + mask
    requests and a DNS answer from port 53 are not."""
    import passive_tools as PT

    from hostprint.match.probedetect import detector

    evs: list = []
    det = detector(evs.append)
    _feed(det, PT.xprobe2_packets("198.18.3.1", "198.18.3.2"))
    det.finish()
    fin = [e for e in evs if e.update == "final" and e.kind == "os-fingerprint"]
    assert [(e.method, e.tool, e.source) for e in fin] == [("xprobe2-icmp", "xprobe2", "198.18.3.1")]
    assert set(fin[0].coverage.probes) == {"echo", "timestamp", "addrmask", "inforeq", "port-unreach"}
    assert {x.rule for x in fin[0].evidence} >= {"xprobe2-echo", "xprobe2-port-unreach"}

    from hostprint.engine import packets as P

    s, d = P.ip_to_int("198.18.3.1").to_bytes(4, "big"), P.ip_to_int("198.18.3.2").to_bytes(4, "big")
    evs.clear()
    det = detector(evs.append)
    _feed(det, [P.build_ip(P.IPv4(s, d, P.IPPROTO_ICMP, df=True), P.ICMP(8, 0, 7, i, b"x" * 56)) for i in range(3)]
          + [P.build_ip(P.IPv4(s, d, P.IPPROTO_ICMP), P.ICMP(t, 0, 9, 0)) for t in (13, 17)]
          + [P.build_ip(P.IPv4(s, d, P.IPPROTO_UDP, df=True), P.UDP(53, 40000, bytes(40)))])
    det.finish()
    assert not [e for e in evs if e.kind == "os-fingerprint"] and all(e.tool != "xprobe2" for e in evs)


def test_xprobe2_tcp_modules_are_named_and_kernel_syns_are_not():
    """xprobe2's TCP modules (crafted from its source: passive_tools.xprobe2_tcp_packets) are an
    OS-fingerprinting detection naming xprobe2, the -T port scan's SYNs count for xprobe2 too; a
    kernel's SYNs - Linux today, and an old Linux telnet client with the handshake probe's window,
    TOS and option layout but its own timestamp or window scale - match no xprobe2 rule."""
    import passive_tools as PT

    from hostprint.engine import packets as P
    from hostprint.match.probedetect import detector

    evs: list = []
    det = detector(evs.append)
    _feed(det, PT.xprobe2_tcp_packets("198.18.3.1", "198.18.3.2", seed=18))
    det.finish()
    fin = [e for e in evs if e.update == "final"]
    assert [(e.kind, e.method, e.tool, e.source) for e in fin] == [
        ("os-fingerprint", "xprobe2-tcp", "xprobe2", "198.18.3.1")]
    assert set(fin[0].coverage.probes) == {"ping", "ttl", "handshake", "rst"}
    assert {x.rule for x in fin[0].evidence} == {"xprobe2-tcp-ping", "xprobe2-tcp-ttl", "xprobe2-tcp-handshake",
                                                  "xprobe2-tcp-rst", "xprobe2-portscan"}

    s, d = P.ip_to_int("198.18.3.1").to_bytes(4, "big"), P.ip_to_int("198.18.3.2").to_bytes(4, "big")

    def syn(port: int, win: int, tos: int, ts: int, ws: int, ipid: int = 7) -> bytes:
        return P.build_ip(P.IPv4(s, d, ttl=64, id=ipid, tos=tos, df=True), P.TCP(40000 + port, port, 1, 0, P.SYN, win, options=[
            (P.OPT_MSS, 1460), (P.OPT_SACKOK, None), (P.OPT_TS, (ts, 0)), (P.OPT_NOP, None), (P.OPT_WS, ws)]))

    evs.clear()
    det = detector(evs.append)
    _feed(det, [syn(p, 64240, 0, 0x1234567 + p, 7) for p in range(1, 9)]  # Linux 6
          + [syn(p, 5840, 0x10, 0x100000 + p, 0) for p in range(9, 17)]  # Linux 2.4 telnet, up 3 h
          + [syn(p, 5840, 0x10, 5000 + p, 2) for p in range(17, 25)]
          + [syn(p, 0, 0, 5000 + p, 0, ipid=1) for p in range(25, 33)])
    det.finish()
    assert [(e.kind, e.method) for e in evs if e.update == "final"] == [("portscan", "syn")], evs
    assert all(e.tool != "xprobe2" and not [x for x in e.evidence if x.tool == "xprobe2"] for e in evs), evs


def test_xprobe2_grouped_path_equals_the_packet_path(tmp_path, monkeypatch):
    """A pcap of xprobe2's probes with a -T 1-100 scan (crafted, as above): passive's grouped path
    (the scan's SYNs as one group) gives the same detections as packet by packet, naming xprobe2."""
    import passive_tools as PT

    from hostprint.engine.pcapfile import PcapWriter
    from hostprint.match.probedetect import ProbeDetector

    f = tmp_path / "x.pcap"
    w = PcapWriter(f)
    eth = bytes.fromhex("02687008000a" "026870000001" "0800")
    pkts = PT.xprobe2_packets("198.18.3.1", "198.18.3.2") + PT.xprobe2_tcp_packets(
        "198.18.3.1", "198.18.3.2", scan=tuple(range(1, 101)), seed=18)
    for i, b in enumerate(pkts):
        w.write(1_700_000_000_000_000_000 + i * 1_000_000, eth + b)
    w.close()
    groups: list[int] = []
    real = ProbeDetector.feed_group
    monkeypatch.setattr(ProbeDetector, "feed_group", lambda self, p, dports, *a, **k: (
        groups.append(len(dports)), real(self, p, dports, *a, **k))[1])
    _l1, _h1, grouped = _run_api(f, 64)
    assert max(groups) >= 100, groups  # the scan's SYNs went as a group
    _l2, _h2, each = _run_api(f, 10**9)
    assert grouped == each
    got = sorted((e["kind"], e["method"], e["tool"]) for e in map(json.loads, grouped))
    assert got == [("os-fingerprint", "xprobe2-icmp", "xprobe2"), ("os-fingerprint", "xprobe2-tcp", "xprobe2"),
                   ("portscan", "syn", "xprobe2")], got


def test_idle_scan_zombie_readings_and_spoofed_syns():
    """SYN+ACKs to one port of a host that never connected (each a zombie reading) raise an
    idle-scan detection of the sender, reporting the SYNs sent with the zombie's address; a server
    answering a client's SYNs (the same flags) raises nothing."""
    from hostprint.match.probedetect import detector

    S, Z, T = "198.18.0.1", "198.18.0.51", "198.18.0.60"
    evs: list = []
    det = detector(evs.append)
    pk = []
    for i in range(6):  # reading, then SYNs "from" the zombie to a group of ports
        pk.append(_tcp(S, Z, 40000 + i, 80, 0x12, 1000 + 7919 * i, 5, ipid=40000 + i))
        pk += [_tcp(Z, T, 50000 + i, 20 + 4 * i + j, 0x02, 99 + j, opts=[(2, 1460)]) for j in range(4)]
    _feed(det, pk)
    det.finish()
    idle = [e for e in evs if e.kind == "idle-scan"]
    assert idle and idle[0].update == "new" and idle[0].source == S
    fin = [e for e in idle if e.update == "final"]
    assert len(fin) == 1 and fin[0].method == "zombie-ipid" and fin[0].packets == 6 and fin[0].targets == [Z]
    assert fin[0].tool == "hostprint"  # IP ID = source port, window 1024, no options: its readings
    assert f"24 SYNs with {Z}'s address as source to {T} (24 ports)" in fin[0].detail, fin[0].detail

    evs.clear()
    det = detector(evs.append)
    pk = []
    for i in range(8):  # a client's connections to a server's port 80, each answered
        pk.append(_tcp("198.18.0.20", "198.18.0.10", 80, 80, 0x02, 500 + i))
        pk.append(_tcp("198.18.0.10", "198.18.0.20", 80, 80, 0x12, 9000 + i, 501 + i))
    # a SYN scan from one source port, longer than the per-source connection table (4,096), then
    # open ports answering it again and again (a capture read twice): answers, not readings
    pk += [_tcp("198.18.0.30", "198.18.0.10", 55694, 1 + i, 0x02, 7) for i in range(5000)]
    pk += [_tcp("198.18.0.10", "198.18.0.30", 22 + i % 2, 55694, 0x12, 100 + i, 8) for i in range(10)]
    _feed(det, pk)
    det.finish()
    assert not [e for e in evs if e.kind == "idle-scan"]


def _sv_probes(port: int, intensity: int = 7) -> list[bytes]:
    """nmap -sV's TCP probe payloads for `port` in its order (ServiceNFO::nextProbe): the probes
    whose `ports` list the port, then the others of rarity <= intensity, each in file order - read
    from Debian's nmap-service-probes, not from probes.txt."""
    from hostprint.signatures import nmap_probes

    if nmap_probes.find() is None:
        pytest.skip("needs nmap's nmap-service-probes (Debian package nmap)")
    ts = [t for t in nmap_probes.load().triggers if t.proto == "tcp" and t.name != "NULL" and t.payload]
    listed = [t for t in ts if port in (t.ports or ())]
    return [t.payload for t in listed + [t for t in ts if t not in listed and t.rarity <= intensity]]


def _sv_connections(payloads: list[bytes], serial: bool = True, src: str = "198.18.3.1", port: int = 4001,
                    t0: float = 100.0) -> list:
    """Each payload the first of its own connection (SYN, then PSH+ACK with the payload), after a
    NULL probe's connection: one connection at a time (serial: nmap -sV) or every SYN first (many
    at once: amap, hostprint -sV)."""
    from hostprint.engine import packets as P
    from hostprint.match.probedetect import parse_packet

    s, d = P.ip_to_int(src).to_bytes(4, "big"), P.ip_to_int("198.18.3.2").to_bytes(4, "big")

    def pkt(sport: int, flags: int, data: bytes, ts: float):
        b = P.build_ip(P.IPv4(s, d, id=sport), P.TCP(sport, port, 1000, 0 if flags == P.SYN else 1, flags, 64240,
                                                      payload=data))
        return parse_packet(b, 0, len(b), ts)

    out = [pkt(40000, P.SYN, b"", t0)]
    for i, data in enumerate(payloads):
        t = t0 + 1 + i * 0.01
        out.append(pkt(40001 + i, P.SYN, b"", t if serial else t0 + 1))
        out.append(pkt(40001 + i, P.PSH | P.ACK, data, t + 0.001 if serial else t0 + 2 + i * 0.001))
    return sorted(out, key=lambda p: p.ts)


def test_nmap_sv_probe_order_names_nmap_and_other_orders_do_not():
    """First payloads of nmap -sV's probes (Debian's nmap-service-probes), one connection at a
    time in nmap's order, raise an app-fingerprint probe-order detection naming nmap: on a port no
    probe lists (29 probes), on port 80 (its own probes first, then the rest), at intensity 4; the
    same payloads shuffled, or all connections opened at once in nmap's order (as amap and hostprint
    -sV do), or intensity 3 (6 probes: under the rule's 8) raise none."""
    from hostprint.match.probedetect import detector

    def finals(pkts: list) -> list:
        evs: list = []
        det = detector(evs.append)
        for p in pkts:
            det.feed(p)
        det.finish()
        return [e for e in evs if e.update == "final" and e.method == "probe-order"]

    for port, intensity, n in ((4001, 7, 29), (80, 7, 24), (4001, 4, 10)):
        got = finals(_sv_connections(_sv_probes(port, intensity), port=port))
        assert [(e.kind, e.tool, e.source, e.hosts, e.ports) for e in got] == [
            ("app-fingerprint", "nmap", "198.18.3.1", 1, 1)], (port, got)
        assert got[0].packets == n and "nmap-sv-probe-order" in {x.rule for x in got[0].evidence}, (port, got)
    probes = _sv_probes(4001)
    for seed in range(20):
        shuffled = probes[:]
        random.Random(seed).shuffle(shuffled)
        assert not finals(_sv_connections(shuffled)), seed
    assert not finals(_sv_connections(probes, serial=False))
    assert not finals(_sv_connections(_sv_probes(4001, 3)))


@pytest.fixture(scope="module")
def labcaps(tmp_path_factory):
    """One lab for the module: every run made once, captured by tcpdump and watched live by
    `passive -i` (passive_tools.make; name -> capture, the runs, name -> Watch)."""
    from conftest import needs_root

    needs_root()
    import passive_tools as PT

    missing = PT.missing_tools()
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/setup.sh installs them)")
    if not PT.AMAP_DIR.exists():
        pytest.skip(f"amap 5.4's triggers not found at {PT.AMAP_DIR} (../shared/datasets/amap-5.4)")
    from hostprint.lab import Lab

    out = tmp_path_factory.mktemp("caps")
    # HOSTPRINT_TEST_LAB_PREFIX: engineers running this module side by side keep their labs apart
    name = f"{os.environ.get('HOSTPRINT_TEST_LAB_PREFIX', 'pd')}{os.getpid() % 10000}"
    with Lab(PT.lab_spec(name), strict=False) as lab:
        live: dict = {}  # every run is also watched by `passive -i` (passive_tools.Watch)
        yield lab, PT.make(lab, out, live=live), PT.runs(), live


@pytest.fixture(scope="module")
def captures(labcaps):
    return labcaps[1], labcaps[2]


@pytest.fixture(scope="module")
def offline(captures, tmp_path_factory):
    """Each capture read once with `passive -r`: name -> its events."""
    caps, _runs = captures
    d = tmp_path_factory.mktemp("read")
    return {name: _events(path, d / f"{name}.jsonl") for name, path in caps.items()}


SCANNER = "198.18.0.1"
#: run -> (kind, method) one of its detections must have, -r and live alike
METHODS = {"nmap-sS": ("portscan", "syn"), "nmap-sF": ("portscan", "fin"), "nmap-sN": ("portscan", "null"),
           "nmap-sX": ("portscan", "xmas"), "nmap-sA": ("portscan", "ack"), "nmap-sU": ("portscan", "udp"),
           "nmap-ping": ("sweep", "icmp-echo"), "nmap-O": ("os-fingerprint", "nmap-os"),
           "masscan": ("portscan", "syn"), "zmap": ("sweep", "syn"), "hostprint-O": ("os-fingerprint", "nmap-os"),
           "hostprint-cron": ("timing-fingerprint", "unanswered-synack"),
           "hostprint-amap": ("app-fingerprint", "trigger-sweep"), "nmap-sV": ("app-fingerprint", "app-trigger"),
           "hostprint-sV": ("app-fingerprint", "trigger-sweep")}
#: run -> the tool its probe-order detection must name (nmap -sV's probes one connection at a time, in
#: nmap-service-probes' order, to the target's tcp-line port); no other run may raise one
PROBE_ORDER = {"nmap-sV": "nmap"}


def _misnamed(name: str, tool: str, evs: list[dict]) -> list[str]:
    """What is wrong with one tool run's events: no final detection of the scanner, another tool
    named, the expected kind/method missing, a detection without evidence and its sources."""
    finals = [e for e in evs if e["update"] == "final" and e["source"] == SCANNER]
    tools = {e["tool"] for e in finals}
    wrong = [] if finals and tools == {tool} else [f"{name}: expected {tool}, got {sorted(tools) or 'no detection'}"]
    if name in METHODS and not any((e["kind"], e["method"]) == METHODS[name] for e in evs):
        kind, method = METHODS[name]
        wrong.append(f"{name}: no {kind}/{method} in {sorted({(e['kind'], e['method']) for e in evs})}")
    order = {e["tool"] for e in finals if e["method"] == "probe-order"}
    if order != ({PROBE_ORDER[name]} if name in PROBE_ORDER else set()):
        wrong.append(f"{name}: probe-order detections naming {sorted(order)}, expected {PROBE_ORDER.get(name)}")
    wrong += [f"{name}: no evidence or source in {e}" for e in finals  # every detection says why
              if not e["evidence"] or not all(x["source"] for x in e["evidence"])]
    return wrong


@pytest.mark.lab
def test_every_tool_is_detected_and_named(captures, offline):
    _caps, runs = captures
    wrong = [w for name, evs in offline.items() if runs[name][2] for w in _misnamed(name, runs[name][2], evs)]
    assert not wrong, wrong
    scan = [e for e in offline["nmap-sS"] if e["update"] == "final"][0]
    assert scan["ports"] == 1000 and scan["hosts"] == 1 and scan["rate"] and scan["rate"] > 0


@pytest.mark.lab
def test_normal_traffic_raises_nothing_and_mixed_capture_false_positives(captures, tmp_path):
    """Normal traffic alone: no event. All captures merged into one directory read: every event's
    source is the scanner (198.18.0.1); an event naming a normal client is a false positive."""
    caps, _runs = captures
    assert _events(caps["normal"], tmp_path / "n.jsonl") == []
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name, p in caps.items():
        (mixed / p.name).symlink_to(p)
    evs = _events(mixed, tmp_path / "m.jsonl")
    finals = [e for e in evs if e["update"] == "final"]
    fp = [e for e in finals if e["source"] != "198.18.0.1"]
    print(f"mixed capture: {len(finals)} detections, {len(fp)} false positives")
    assert finals and not fp, fp


def _run_api(path: Path, group_min: int) -> tuple[list[str], str, list[str]]:
    import asyncio

    from hostprint.engine.rate import template
    from hostprint.match.passive import PassiveMatcher
    from hostprint.match.probedetect import detector
    from hostprint.probes.base import Session
    from hostprint.probes.passive import PassiveTechnique
    from hostprint.signatures.passive_db import resolve_db

    lines: list[str] = []
    evs: list[dict] = []
    t = PassiveTechnique(PassiveMatcher(resolve_db("builtin", None)), files=[path], write=lines.append)
    t.analyzer.group_min = group_min
    t.analyzer.detector = detector(lambda e: evs.append(e.to_dict()))
    hosts = asyncio.run(t.probe([], Session(template("3"))))
    finals = sorted(json.dumps({k: v for k, v in e.items() if k != "ts"}, sort_keys=True)
                    for e in evs if e["update"] == "final")
    # the grouped path writes a stretch of SYNs' lines in one call: compare line by line
    return sorted("".join(lines).splitlines()), json.dumps(hosts, sort_keys=True, default=str), finals


@pytest.mark.lab
def test_grouped_paths_equal_the_packet_by_packet_path(captures):
    """The fast paths (a scan's SYNs and header-only probes handled as groups of like packets) give
    the same observations, host records and final detections as one packet at a time."""
    caps, _runs = captures
    for name in ("nmap-sS", "nmap-full", "masscan", "hostprint-sS", "nmap-O", "nmap-sA", "normal"):
        fast, slow = _run_api(caps[name], 64), _run_api(caps[name], 10**9)
        assert fast[0] == slow[0], f"{name}: observations differ"
        assert fast[1] == slow[1], f"{name}: host records differ"
        assert fast[2] == slow[2], f"{name}: detections differ"


@pytest.mark.lab
def test_live_passive_detects_and_names_every_tool_as_it_runs(labcaps, offline):
    """Every run of the set-up was watched by `passive -i` on the same switch port as tcpdump
    (passive_tools.Watch): each tool's run is detected and named from the ring, with the same
    expectations as the -r test, and a PROBE line naming the scanner was on the terminal before
    the stop (streamed as it scanned); the normal traffic raises no event. Ctrl-C (SIGINT by PID,
    once the capture loop waits for frames) ends each capture: -oJ and the table are kept, exit
    130 (README: Ctrl-C), and the ring's own count says no frame was dropped. The live detections
    of each run equal those `passive -r` finds in tcpdump's capture of the same traffic, probe
    counts included (nmap's T4/T6 too: ACKs with options, which the live filter once left out).
    Prints the live false-positive rate (detections of any source but the scanner, over all runs)."""
    _lab, caps, runs, live = labcaps
    assert set(live) == set(caps)
    wrong, differ, finals = [], [], []
    for name, w in live.items():
        tool = runs[name][2]
        assert not w.late, f"{name}: passive -i was not {' or '.join(w.late)} within {w.WAIT:g} s"
        assert w.rc == 130 and "interrupted (SIGINT)" in w.err, (name, w.rc, w.err[-600:])
        assert w.ring and w.ring[0] > 0, (name, w.table[-600:])  # "kernel ring: N frames, M dropped"
        if w.ring[1]:
            wrong.append(f"{name}: the ring dropped {w.ring[1]} of {w.ring[0]} frames in each of {w.tries} tries")
        evs = w.events()
        finals += [e for e in evs if e["update"] == "final"]
        if tool is None:
            if evs:
                wrong.append(f"{name}: normal traffic raised {[(e['source'], e['kind'], e['tool']) for e in evs]}")
            continue
        wrong += _misnamed(name, tool, evs)
        if f"PROBE {SCANNER}" not in w.streamed or f"tool {tool}" not in w.table:
            wrong.append(f"{name}: no PROBE line streamed before the stop, or none naming {tool}")
        seen, read = (sorted((_shape(e), e["packets"]) for e in x if e["update"] == "final")
                      for x in (evs, offline[name]))
        if seen != read:
            differ.append(f"{name}: live {seen} but -r {read}")
    fp = [e for e in finals if e["source"] != SCANNER]
    print(f"live: {len(finals)} detections in {len(live)} runs, {len(fp)} false positives "
          f"({len(fp) / max(1, len(finals)):.0%}); ring frames {sum(w.ring[0] for w in live.values())}, "
          f"captures made again for drops: {sum(w.tries - 1 for w in live.values())}")
    assert not wrong, wrong
    assert not differ, differ
    assert finals and not fp, fp


def _shape(e: dict) -> tuple:
    """A final detection as live and -r must agree on it: who, what, which tool, how many hosts
    and ports, which probes of a set (nmap's T4/T6 too: engine/capture.probe_filter passes ACKs
    whose first option is a window scale)."""
    probes = set((e.get("coverage") or {}).get("probes") or [])
    return e["source"], e["kind"], e["method"], e["tool"], e["hosts"], e["ports"], sorted(probes)


@pytest.mark.lab
def test_idle_scan_zombie_sampling_is_detected(tmp_path):
    """hostprint -sI and nmap -sI through the idle lab's lwIP zombie (hostprint/lab/idle.py; one
    global IP ID counter), each captured on the scanner's switch port and read with `passive -r`:
    the scanner is reported as an idle scan reading zombie 198.18.0.51, with the SYNs it sent with
    the zombie's address to the target (p0f sees no SYN of the scanner's at all); hostprint's
    readings name hostprint."""
    import tempfile

    from conftest import needs_root

    needs_root()
    import passive_tools as PT

    from hostprint.lab import Lab, idle

    cap = tmp_path / "idle.pcap"
    with tempfile.TemporaryDirectory(prefix="p3-idle-") as tmp, \
            Lab(idle.idle_spec(f"p3i{os.getpid() % 10000}")) as lab:
        if not idle.start_zombie(lab, tmp):
            pytest.skip("needs Debian liblwip-dev and a C compiler (the lwIP zombie)")
        nmap_cap = tmp_path / "nmap-idle.pcap"
        got = []
        for path, argv in ((cap, [sys.executable, "-m", "hostprint", "scan", "-sI", idle.ZOMBIE, "-Pn", "-n", "-p",
                                  "20-25,80,443", idle.TARGET, "--no-db"]),
                           (nmap_cap, ["nmap", "-sI", idle.ZOMBIE, "-Pn", "-n", "-p", "20-25,80,443", idle.TARGET])):
            dump = PT.tcpdump(lab, "p0", path)
            try:
                r = lab.exec("scan", argv, capture_output=True, text=True, timeout=120, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
            finally:
                got.append((r.returncode, r.stderr[-300:], PT.stop(dump)))
    assert [(rc, dropped) for rc, _err, dropped in got] == [(0, 0), (0, 0)], got
    for path, tool in ((cap, "hostprint"), (nmap_cap, "nmap")):  # nmap: Debian's nmap 7.93
        evs = _events(path, tmp_path / f"{tool}.jsonl")
        fin = {e["source"]: e for e in evs if e["update"] == "final" and e["kind"] == "idle-scan"}
        e = fin.pop("198.18.0.1")
        assert (e["method"], e["tool"], e["targets"]) == ("zombie-ipid", tool, [idle.ZOMBIE]), e
        assert e["packets"] >= 4 and f"address as source to {idle.TARGET} (8 ports)" in e["detail"], e
        # both tools test that the zombie's counter is global with SYN+ACKs "from" the target
        assert set(fin) <= {idle.TARGET}, fin
        for e in fin.values():
            assert e["tool"] == tool and "spoofed too" in e["detail"], e


@pytest.mark.lab
def test_xprobe2_probe_set_is_detected_from_a_capture(tmp_path):
    """xprobe2's ICMP probe set and its TCP modules sent on a lab link and captured by tcpdump.
    xprobe2 itself is not packaged here: its probes are crafted with hostprint's engine from its
    documentation and source (passive_tools.xprobe2_packets, xprobe2_tcp_packets) and sent from
    the scanner's namespace through a raw socket; the target answers them as its kernel does.
    `passive -r` names xprobe2 for both sets, the five ICMP and four TCP probes, and for its -T
    port scan (100 SYNs: passive's grouped path)."""
    from conftest import needs_root

    needs_root()
    import passive_tools as PT

    from hostprint.lab import HostSpec, Lab, LabSpec

    cap = tmp_path / "xprobe2.pcap"
    tgt = "198.18.8.10"
    with Lab(LabSpec(name=f"xt{os.getpid() % 10000}", hosts=[HostSpec(name="tgt", address=tgt)])) as lab:
        dump = PT.tcpdump(lab, "p0", cap)
        try:
            lab.exec("scan", [sys.executable, "-c", PT.XPROBE2_PY, "198.18.0.1", tgt, str(ROOT)], check=True,
                     timeout=30)
        finally:
            dropped = PT.stop(dump)
    assert dropped == 0
    evs = _events(cap, tmp_path / "x.jsonl")
    fin = [e for e in evs if e["update"] == "final" and e["kind"] == "os-fingerprint"]
    assert sorted((e["source"], e["method"], e["tool"]) for e in fin) == [
        ("198.18.0.1", "xprobe2-icmp", "xprobe2"), ("198.18.0.1", "xprobe2-tcp", "xprobe2")], evs
    probes = {e["method"]: set(e["coverage"]["probes"]) for e in fin}
    assert probes == {"xprobe2-icmp": {"echo", "timestamp", "addrmask", "inforeq", "port-unreach"},
                      "xprobe2-tcp": {"ping", "ttl", "handshake", "rst"}}, evs
    scans = [e for e in evs if e["update"] == "final" and e["kind"] == "portscan"]  # -T 1-100, grouped path
    assert [(e["method"], e["tool"], e["ports"]) for e in scans] == [("syn", "xprobe2", 101)], evs  # + tcp_rst's 65535
    assert "xprobe2-portscan" in {x["rule"] for x in scans[0]["evidence"]}
