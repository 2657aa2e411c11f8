"""-sU against kernels with their default ICMP rate limits (issue 14).

Linux answers a closed UDP port with an ICMP port unreachable, but limits those per destination
(net.ipv4.icmp_ratelimit = 1000 ms after a burst of 6) and host-wide (icmp_msgs_per_sec,
icmp_msgs_burst): a scan that takes silence at face value calls most closed ports open|filtered.
These hosts keep every default; the truth is what listens (and what the firewall drops or rejects).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import hostprint, needs_root, scan_json

pytestmark = pytest.mark.lab

TOP20 = [53, 67, 68, 69, 123, 135, 137, 138, 139, 161, 162, 445, 500, 514, 520, 631, 1434, 1900, 4500, 49152]
QUIET, SERVED, LIMITED = "198.18.0.70", "198.18.0.71", "198.18.0.72"

UDP_ECHO_161 = ("import socket\n"
                "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('0.0.0.0',161))\n"
                "while True:\n d,a=s.recvfrom(2048); s.sendto(b'echo:'+d,a)\n")

#: what each host should show for the top 20 UDP ports
TRUTH = {
    QUIET: {p: "closed" for p in TOP20},  # nothing listens
    SERVED: {**{p: "closed" for p in TOP20}, 53: "open", 161: "open", 500: "open|filtered", 137: "filtered"},
}


@pytest.fixture(scope="module")
def udplab():
    needs_root()
    from hostprint.lab import HostSpec, Lab, LabSpec

    spec = LabSpec(name=f"u{os.getpid() % 100000}", hosts=[
        HostSpec(name="quiet", address=QUIET),
        HostSpec(name="served", address=SERVED, services=["dns:53"],
                 firewall=["udp dport 500 drop", "udp dport 137 reject with icmp type admin-prohibited"]),
        HostSpec(name="limited", address=LIMITED),
    ])
    with Lab(spec) as lab:
        lab.spawn("served", [sys.executable, "-c", UDP_ECHO_161], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield lab


def _sysctl(lab, host: str, key: str) -> str:
    return lab.exec(host, ["sysctl", "-n", key], capture_output=True, text=True, check=True).stdout.strip()


def _states(h: dict) -> dict[int, str]:
    return {p["port"]: p["state"] for p in h["ports"] if p["protocol"] == "udp"}


@pytest.mark.daemons("dns")
def test_top20_true_states_under_default_icmp_limits(udplab):
    for host in ("quiet", "served"):  # the kernel's defaults, nothing relaxed
        assert _sysctl(udplab, host, "net.ipv4.icmp_ratelimit") == "1000"
        assert _sysctl(udplab, host, "net.ipv4.icmp_msgs_burst") == "50"
    hosts = scan_json(udplab, "scan", "-sU", "--top-ports", "20", "-Pn", "-n", QUIET, SERVED)
    for addr, truth in TRUTH.items():
        got = _states(hosts[addr])
        assert got == truth, (addr, {p: (got.get(p), s) for p, s in truth.items() if got.get(p) != s})
        assert "warnings" not in hosts[addr]
    reasons = {p["port"]: p["reason"] for p in hosts[SERVED]["ports"]}
    assert reasons[53] == "udp-response" and reasons[137] == "admin-prohibited" and reasons[500] == "no-response"
    assert all(p["reason"] == "port-unreach" for p in hosts[QUIET]["ports"])


@pytest.mark.daemons("dns")
def test_back_to_back_scan_still_right(udplab):
    """Run right after another scan, the bucket starts empty (no burst at all): still the truth."""
    first = scan_json(udplab, "scan", "-sU", "-p", "123,161,500", "-Pn", "-n", SERVED)[SERVED]
    assert _states(first) == {123: "closed", 161: "open", 500: "open|filtered"}
    again = scan_json(udplab, "scan", "-sU", "--top-ports", "20", "-Pn", "-n", SERVED)[SERVED]
    assert _states(again) == TRUTH[SERVED]


def test_time_budget_says_what_it_left_unconfirmed(udplab):
    """--host-timeout shorter than the limiter needs: the ports it could not confirm are
    open|filtered and the host says so (JSON, -oN), naming the measured limit."""
    h = scan_json(udplab, "scan", "-sU", "--top-ports", "20", "-Pn", "-n", "--host-timeout", "3s", LIMITED)[LIMITED]
    st = _states(h)
    unconfirmed = [p for p, s in st.items() if s == "open|filtered"]
    assert set(st) == set(TOP20) and set(st.values()) <= {"closed", "open|filtered"}
    assert unconfirmed  # 20 closed ports at one answer per second after a burst of 6 need > 3 s
    [warning] = h["warnings"]
    assert warning.startswith(f"{len(unconfirmed)} UDP ports not confirmed within --host-timeout 3s")
    assert "ICMP port-unreachable limit" in warning and "open|filtered" in warning
    r = hostprint(udplab, "scan", "-sU", "-p", "1000-1030", "-Pn", "-n", "--host-timeout", "1s", LIMITED,
                  "--no-db", "--progress", "never")
    assert "Warning: " in r.stdout and "not confirmed within --host-timeout 1s" in r.stdout
