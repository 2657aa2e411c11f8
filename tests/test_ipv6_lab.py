"""IPv6 end to end (issue 17): every scan type and discovery method over IPv6 against hosts with known
truth, states equal to nmap -6's, -O over IPv6, -sV, --sequence, --traceroute, --cron-os, outputs,
the inventory and --dual-stack. One dual-stack lab for the whole module (2001:2::/48 only, no default
route, no router advertisements):

  t1  198.18.0.10  2001:2::10   nginx:80 ssh:22, UDP echo on 9999; drops TCP 1000-1099 and UDP 7777;
                                rejects TCP 1100 with ICMPv6 admin-prohibited; ICMPv6 errors not limited
  t2  198.18.0.11  2001:2::11   tcp-listen:8080; drops ICMP/ICMPv6 echo; ICMPv6 errors at Linux's
                                default limit (net.ipv6.icmp.ratelimit 1000 ms)
  t3  198.18.0.12  2001:2::12   silent: drops everything but Neighbor Discovery
  rtr 198.18.0.199 2001:2::199  router to segment 2 (2001:2:0:1::/64)
  t6  198.19.0.20  2001:2:0:1::20  behind the router: tcp-listen:80, tcp_timestamps=2 (one host clock)
  2001:2::15                    nobody
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT, expand, hostprint, needs_root, port_states, scan_json

pytestmark = pytest.mark.lab

T1, T2, T3, T6, NOBODY = "2001:2::10", "2001:2::11", "2001:2::12", "2001:2:0:1::20", "2001:2::15"
T1_V4, T6_V4 = "198.18.0.10", "198.19.0.20"
PORTS = "20-25,79-81,1000-1003,1100,6379"
PORT_LIST = [20, 21, 22, 23, 24, 25, 79, 80, 81, 1000, 1001, 1002, 1003, 1100, 6379]

UDP_ECHO6 = ("import socket\n"
             "s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n"
             "s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0); s.bind(('::',9999))\n"
             "while True:\n d,a=s.recvfrom(2048); s.sendto(b'echo:'+d,a)\n")


@pytest.fixture(scope="module")
def lab6():
    needs_root()
    from hostprint.lab import HostSpec, Lab, LabSpec

    quiet = {"net.ipv6.icmp.ratelimit": "0", "net.ipv4.icmp_ratelimit": "0"}
    spec = LabSpec(name=f"v{os.getpid() % 100000}", ipv6=True, hosts=[
        HostSpec(name="t1", address=T1_V4, services=["nginx:80", "ssh:22"], sysctls=quiet,
                 firewall=["tcp dport 1000-1099 drop", "udp dport 7777 drop",
                           "meta nfproto ipv6 tcp dport 1100 reject with icmpv6 type admin-prohibited"]),
        HostSpec(name="t2", address="198.18.0.11", services=["tcp-listen:8080"],
                 firewall=["icmp type echo-request drop", "icmpv6 type echo-request drop"]),
        HostSpec(name="t3", address="198.18.0.12", silent=True),
        HostSpec(name="rtr", address="198.18.0.199", router=True),
        HostSpec(name="t6", address=T6_V4, segment=2, services=["tcp-listen:80"],
                 sysctls={"net.ipv4.tcp_timestamps": "2"}),
    ])
    with Lab(spec, strict=False) as lab:
        lab.spawn("t1", [sys.executable, "-c", UDP_ECHO6], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield lab


def nmap6(lab, *args: str) -> ET.Element:
    r = lab.exec(lab.scanner_ns, ["nmap", "-6", "-n", "-oX", "-", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return ET.fromstring(r.stdout)


def nmap6_states(lab, *args: str, proto: str = "tcp") -> dict[int, str]:
    host = nmap6(lab, *args).find("host")
    listed = {int(p.get("portid")): p.find("state").get("state") for p in host.iter("port") if p.get("protocol") == proto}
    extra = list(host.iter("extraports"))
    return listed, [(e.get("state"), int(e.get("count"))) for e in extra]


def nmap_expand(listed: dict[int, str], extra: list, ports: list[int]) -> dict[int, str]:
    out = {}
    for p in ports:
        if p in listed:
            out[p] = listed[p]
        else:
            assert len(extra) == 1, (p, extra)
            out[p] = extra[0][0]
    return out


# ---------------------------------------------------------------------------- scans


@pytest.mark.parametrize("flag", ["-sS", "-sT", "-sA", "-sW", "-sF", "-sN", "-sX"])
def test_tcp_scan_states_equal_nmap_6(lab6, flag):
    ours = expand(scan_json(lab6, "scan", flag, "-p", PORTS, "-T4", "-Pn", T1)[T1], PORT_LIST)
    theirs = nmap_expand(*nmap6_states(lab6, flag, "-Pn", "-T4", "-p", PORTS, T1), PORT_LIST)
    assert ours == theirs, flag
    if flag == "-sS":
        assert {p for p, s in ours.items() if s == "open"} == {22, 80}
        assert ours[1000] == "filtered" and ours[23] == "closed" and ours[1100] == "filtered"


def test_syn_scan_reasons_over_ipv6(lab6):
    h = scan_json(lab6, "scan", "-sS", "-p", "22,23,1000,1100", "-Pn", "--reason", T1)[T1]
    reasons = {p["port"]: (p["state"], p["reason"], p["reason_ttl"]) for p in h["ports"]}
    assert reasons[22] == ("open", "syn-ack", 64) and reasons[23] == ("closed", "reset", 64)
    assert reasons[1000][:2] == ("filtered", "no-response")
    assert reasons[1100][:2] == ("filtered", "admin-prohibited")  # nmap's word for ICMPv6 unreach code 1


def test_full_syn_scan_over_ipv6_with_a_filtered_block(lab6):
    h = scan_json(lab6, "scan", "-sS", "-p-", "-T4", "-Pn", T1)[T1]
    assert {p for p, s in port_states(h).items() if s == "open"} == {22, 80}
    counts = {e["state"]: e["count"] for e in h["extraports"]}
    assert counts == {"closed": 65535 - 2 - 101, "filtered": 101}


def test_udp_scan_over_ipv6_equals_nmap_6(lab6):
    ours = port_states(scan_json(lab6, "scan", "-sU", "-p", "53,7777,9999,40125", "-Pn", T1)[T1], "udp")
    assert ours == {53: "closed", 7777: "open|filtered", 9999: "open", 40125: "closed"}
    listed, extra = nmap6_states(lab6, "-sU", "-Pn", "-p", "53,7777,9999,40125", T1, proto="udp")
    assert ours == nmap_expand(listed, extra, [53, 7777, 9999, 40125])


def test_udp_scan_waits_for_the_icmpv6_rate_limit(lab6):
    """t2 answers port unreachable at Linux's default IPv6 limit (a burst of 6, then 1 per second):
    silence is not open|filtered until the limiter had a token for it."""
    ports = "40000-40011"
    h = scan_json(lab6, "scan", "-sU", "-p", ports, "-Pn", T2)[T2]
    assert set(port_states(h, "udp").values()) | {e["state"] for e in h["extraports"]} == {"closed"}


def test_connect_scan_over_ipv6_needs_no_raw_socket(lab6):
    base = ["setpriv", "--bounding-set=-net_raw,-net_admin", sys.executable, "-m", "hostprint"]
    r = lab6.exec(lab6.scanner_ns, [*base, "scan", "-sT", "-Pn", "-p", "22,80,81", T1, "-oJ", "-", "--no-db"],
                  capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert port_states(json.loads(r.stdout.splitlines()[0])) == {22: "open", 80: "open", 81: "closed"}


def test_loopback_ipv6_raw_scans(lab6):
    """::1 goes through the IPv6 raw socket (loopback cannot take injected frames)."""
    p = lab6.spawn(lab6.scanner_ns, [sys.executable, "-m", "hostprint.lab.holdlistener", "--port", "5555", "--bind", "::"],
                   cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    try:
        import time

        for _ in range(50):
            if "5555" in lab6.exec(lab6.scanner_ns, ["ss", "-ltnH"], capture_output=True, text=True).stdout:
                break
            time.sleep(0.05)
        h = scan_json(lab6, "scan", "-sS", "-Pn", "-p", "5554-5556", "::1")["::1"]
        assert port_states(h) == {5554: "closed", 5555: "open", 5556: "closed"}
        h = scan_json(lab6, "scan", "-sU", "-Pn", "-p", "5554", "::1")["::1"]
        assert port_states(h, "udp") == {5554: "closed"}
    finally:
        p.kill()
        p.wait()


# ---------------------------------------------------------------------------- discovery


def test_discovery_methods_per_host_over_ipv6(lab6):
    hosts = scan_json(lab6, "discover", "-T4", T1, T2, T3, NOBODY, T6)
    r = {a: set(h["reasons"]) for a, h in hosts.items()}
    assert {"nd-response", "echo-reply", "syn-reset", "ack-reset", "port-unreach", "multicast-echo-reply"} <= r[T1]
    assert {"nd-response", "syn-reset", "ack-reset"} <= r[T2] and "echo-reply" not in r[T2]
    assert r[T3] == {"nd-response"}  # silent, but Neighbor Discovery answers (as ARP does for IPv4)
    assert hosts[NOBODY]["status"] == "down"
    assert "echo-reply" in r[T6] and "nd-response" not in r[T6]  # behind the router: no ND for it
    assert hosts[T1]["mac"] == lab6.host("t1").mac.lower()


@pytest.mark.parametrize("flag,reason", [("-PE", "echo-reply"), ("-PS22", "syn-ack"), ("-PA80", "ack-reset"),
                                         ("-PU", "port-unreach"), ("-PR", "nd-response"),
                                         ("-PB", "multicast-echo-reply")])
def test_single_discovery_method_over_ipv6(lab6, flag, reason):
    hosts = scan_json(lab6, "discover", flag, T1, T3)
    assert hosts[T1]["reasons"] == [reason]
    assert hosts[T3]["status"] == ("up" if flag == "-PR" else "down")


def test_discovery_agrees_with_nmap_6_sn(lab6):
    targets = [T1, T2, T3, NOBODY, T6]
    ours = {a for a, h in scan_json(lab6, "discover", *targets).items() if h["status"] == "up"}
    theirs = {h.find("address").get("addr") for h in nmap6(lab6, "-sn", *targets).iter("host")
              if h.find("status").get("state") == "up"}
    assert ours == theirs


def test_a_prefix_sweep_and_the_one_line_refusal_of_a_64(lab6):
    hosts = scan_json(lab6, "discover", "-PR", "2001:2::/120")
    assert len(hosts) == 256
    # 2001:2:: is the subnet-router anycast address (RFC 4291 §2.6.1): the router answers it, after a
    # random delay of up to a second (RFC 4861 §7.2.7), so it may or may not make the wait
    assert {a for a, h in hosts.items() if h["status"] == "up"} - {"2001:2::1", "2001:2::"} == {T1, T2, T3}
    r = hostprint(lab6, "discover", "2001:2::/64", check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "2^64 addresses" in r.stderr


# ---------------------------------------------------------------------------- fingerprinting


def test_os_detection_over_ipv6_names_linux(lab6):
    h = scan_json(lab6, "scan", "-sS", "-O", "-p", "22,23", "-Pn", T1)[T1]
    st = h["os"]["stack"]
    t = st["tests"]
    assert t["NS"] == {"R": "Y", "TG": "FF", "F": "SO", "O": "2"}  # a host's NA: solicited, override, TLLA
    assert t["IE2"]["TY"] == "4" and t["IE2"]["CD"] == "1"  # misordered extension headers: parameter problem
    assert t["IE1"]["CD"] == "S" and t["U1"]["RPL"] == "G" and t["T3"] == {"R": "N"}
    assert t["SEQ"]["TSO"] == "C" and t["SEQ"]["FL"] == "R"  # per-connection TS offsets, per-flow labels
    assert st["distance"] == 1 and st["conditions"] == []
    assert h["os"]["matches"][0]["name"] == "Linux 6.x" and h["os"]["matches"][0]["generation"] == "6.x"
    assert "stack6/linux.txt" in h["os"]["matches"][0]["evidence"][0]["detail"]


def test_os_detection_over_ipv6_behind_a_router(lab6):
    """Two hops away: no NS test (ND is on-link only), distance 2 from the quoted hop limit, the
    single TS clock of tcp_timestamps=2 (TSO=H)."""
    h = scan_json(lab6, "scan", "-sS", "-O", "-p", "80,81", "-Pn", T6)[T6]
    t = h["os"]["stack"]["tests"]
    assert "NS" not in t and t["SEQ"]["TSO"] == "H" and h["os"]["stack"]["distance"] == 2
    assert h["os"]["matches"][0]["family"] == "Linux"


def test_service_detection_sequence_and_traceroute_over_ipv6(lab6):
    h = scan_json(lab6, "scan", "-sS", "-sV", "-p", "22,80", "-Pn", "--sequence", T1)[T1]
    svc = {p["port"]: p["service"] for p in h["ports"]}
    assert svc[22]["product"] == "OpenSSH" and svc[80]["product"] == "nginx"
    seq = h["sequence"]
    assert seq["responses"] == 6 and "ip_id" not in seq and seq["isn"]["isr"] > 100
    h = scan_json(lab6, "scan", "-sS", "-p", "80", "-Pn", "--traceroute", T6)[T6]
    assert [hop["address"] for hop in h["trace"]] == ["2001:2::199", T6]


def test_udp_service_detection_over_ipv6(lab6):
    h = scan_json(lab6, "scan", "-sU", "-sV", "-p", "9999", "-Pn", T1)[T1]
    (p,) = [p for p in h["ports"] if p["port"] == 9999]
    assert p["state"] == "open" and "echo:" in p["service"]["fingerprint"]  # -sV's probes answered over IPv6


def test_timing_over_ipv6(lab6):
    r = hostprint(lab6, "timing", T1, "-p", "80", "--tests", "s", "--cron-timeout", "8", "-oJ", "-")
    rec = [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()][0]
    tests = rec["os"]["timing"]["tests"]
    assert tests[0]["status"] == "ok" and len(tests[0]["arrivals"]) >= 3  # SYN-ACK and retransmissions at 1, 3 s …


# ---------------------------------------------------------------------------- outputs and dual stack


def test_outputs_over_ipv6(lab6, tmp_path):
    base = tmp_path / "o"
    db = tmp_path / "inv.sqlite"
    hostprint(lab6, "scan", "-sS", "-p", "22,80,81", "-Pn", T1, T1_V4, "-oA", str(base), "--db", str(db),
              "--progress", "never")
    r = lab6.exec(lab6.scanner_ns, ["xmllint", "--noout", "--dtdvalid", "/usr/share/nmap/nmap.dtd", f"{base}.xml"],
                  capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    addrs = {(a.get("addr"), a.get("addrtype")) for a in ET.parse(f"{base}.xml").iter("address")}
    assert (T1, "ipv6") in addrs and (T1_V4, "ipv4") in addrs
    assert f"Host: {T1} ()\tPorts: 22/open/tcp//ssh///" in open(f"{base}.gnmap").read()
    assert f"Nmap scan report for {T1}" in open(f"{base}.nmap").read()
    from hostprint.report.inventory import Inventory

    with Inventory(db) as inv:
        run = inv.load_run("last")
    assert [h.address for h in run.hosts] == [T1, T1_V4]
    r = hostprint(lab6, "report", "--db", str(db), "-o", str(tmp_path / "r.html"))
    assert T1 in (tmp_path / "r.html").read_text()


def test_dual_stack_pairs_by_mac_and_by_timestamp_clock(lab6, tmp_path):
    """t1's two addresses share a MAC; t6 is behind the router (its MAC is the router's for both
    families, shared with nothing else here, but it is the *router's*), and tcp_timestamps=2 gives
    one host clock on both families. The lab's sshds share one host key, so keys pair nothing."""
    db = tmp_path / "inv.sqlite"
    r = hostprint(lab6, "scan", "-sS", "-O", "-p", "22,80,81", "--dual-stack", T1, T1_V4, T6, T6_V4, T3,
                  "198.18.0.12", "-oJ", "-", "--db", str(db), "--progress", "never")
    hosts = {d["address"]: d for d in map(json.loads, r.stdout.splitlines())}
    assert set(hosts) == {T1_V4, T6_V4, "198.18.0.12"}
    (a,) = hosts[T1_V4]["addresses"]
    assert a["address"] == T1 and a["family"] == "ipv6" and a["open"] == ["22/tcp", "80/tcp"]
    assert any(w.startswith("MAC ") for w in a["paired_by"])
    (b,) = hosts[T6_V4]["addresses"]
    assert b["address"] == T6 and any(w.startswith("TCP timestamp clock") for w in b["paired_by"])
    assert "dual stack: 198.18.0.10 and 2001:2::10 are one host" in r.stderr
    from hostprint.report.inventory import Inventory

    with Inventory(db) as inv:
        run = inv.load_run("last")
    assert {h.address: [x["address"] for x in h.addresses] for h in run.hosts}[T1_V4] == [T1]


def test_passive_labels_a_linux_ipv6_syn(lab6, tmp_path):
    """Our own IPv6 passive signatures (flow label quirk, IPv6 window), on the lab's traffic."""
    cap = tmp_path / "c.pcap"
    dump = lab6.spawn(lab6.scanner_ns, ["tcpdump", "--immediate-mode", "-U", "-ni", "eth0", "-w", str(cap),
                                        "ip6 and tcp port 80"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import time

    assert b"listening on" in dump.stderr.readline()  # capture is running before the connection
    lab6.exec(lab6.scanner_ns, [sys.executable, "-c", f"import socket; socket.create_connection(({T1!r}, 80)).close()"],
              check=True)
    for _ in range(100):  # until the SYN, SYN+ACK and the rest are on disk
        if cap.exists() and cap.stat().st_size > 300:
            break
        time.sleep(0.05)
    dump.terminate()
    dump.wait()
    r = hostprint(lab6, "passive", "-r", str(cap), "-oJ", "-", "--no-db")
    recs = [json.loads(ln) for ln in r.stdout.splitlines()]
    syn = next(o for o in recs if o.get("kind") == "syn")
    assert syn["raw"]["ver"] == 6 and "flow" in syn["raw"]["quirks"]
    assert syn["os"]["name"] == "Linux 6.x" and syn["os"]["signature"].startswith("6:64:0:*:mss*45")
    import shutil

    if shutil.which("p0f"):  # p0f reads the same IPv6 signature (and has no label for it: "???")
        out = subprocess.run(["p0f", "-r", str(cap)], capture_output=True, text=True, timeout=60).stdout
        sigs = [ln.split("=", 1)[1].strip() for ln in out.splitlines() if "raw_sig" in ln]
        assert syn["raw"]["sig"] == sigs[0]
