"""Shared fixtures: one scan lab per test session (real kernels and daemons in namespaces).

The lab's hosts and what they should answer are the ground truth of the scan tests:
  t1 198.18.0.10  nginx:80 ssh:22 redis:6379, UDP echo on 9999; drops TCP 1000-1099 and UDP 7777;
                  answers broadcast echo; ICMP errors not rate-limited
  t2 198.18.0.11  tcp-listen:8080; drops ICMP echo and timestamp requests (answers TCP/UDP only)
  t3 198.18.0.12  silent (drops everything; answers ARP)
  t4 198.18.0.13  tcp-listen 22/80/443; drops TCP 1000-1099 (loss is injected here by one test)
  t5 198.18.0.14  drops TCP and UDP (answers ICMP only)
  198.18.0.15     no host
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")

UDP_ECHO = ("import socket\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('0.0.0.0',9999))\n"
            "while True:\n d,a=s.recvfrom(2048); s.sendto(b'echo:'+d,a)\n")


def bare_tcp_scan(sorted_addr, sorted_tidx):
    """A TcpScan with only what its bulk receiver reads: one state row of one port, every port a
    probe port, a fixed cookie key, no guard and no RTT yet (the IPv4 targets: `sorted_addr`)."""
    import numpy as np

    from hostprint.engine.cookie import Cookie, FastCookie
    from hostprint.engine.rate import template
    from hostprint.probes.tcpscan import KINDS, ScanStats, TcpScan

    s = TcpScan.__new__(TcpScan)
    s.kind, s.stats, s.timing = KINDS["syn"], ScanStats(), template(4)
    s.sport_lo, s.sport_hi = 0, 65535
    s.pos = np.zeros(65536, np.int64)
    s.pos_list = [0] * 65536
    s.cookie = FastCookie(Cookie(5))
    s.sorted_addr, s.sorted_tidx = sorted_addr, sorted_tidx
    s.hkeys = np.array([1], np.uint64)
    s.state = np.zeros((1, 1), np.uint8)
    s.ttl_m = np.zeros((1, 1), np.uint8)
    s.by_addr, s.states, s.guard = {}, [], None
    s.srtt, s.rttvar, s.sent_at_ns, s.last_reply = None, 0.0, 0, 0.0
    return s


def feed_block(scan, batch: list[bytes]) -> None:
    """`batch` as one ring block (with the slack a ring block has after it) to the bulk receiver."""
    import numpy as np

    ring = np.frombuffer(b"".join(batch) + bytes(64), np.uint8)
    starts = np.cumsum([0] + [len(b) for b in batch[:-1]]).astype(np.int64)
    lens = np.array([len(b) for b in batch], np.int64)
    scan._on_block(ring, starts, lens, np.zeros(len(batch), np.int64))


def usage_error(fn, *args, **kw) -> str:
    """The message of the UsageError `fn(*args, **kw)` must raise; it must be one line."""
    from hostprint.errors import UsageError

    with pytest.raises(UsageError) as exc:
        fn(*args, **kw)
    msg = str(exc.value)
    assert "\n" not in msg and "\r" not in msg
    return msg


def parsed_or_one_line_error(parse, *args, **kw):
    """`parse(*args, **kw)`, or None when it refused the input with a UsageError of one line: the
    only refusal junk input may meet (no traceback, no multi-line message)."""
    from hostprint.errors import UsageError

    try:
        return parse(*args, **kw)
    except UsageError as e:
        assert "\n" not in str(e)
        return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """A lab test whose daemons did not start fails with the lab's message (daemon, package
    version, rejected config line) before its body runs; other tests of the module still run.
    `@pytest.mark.daemons(...)` names what a test needs; without it, a test needs every daemon of
    every lab fixture it uses."""
    from hostprint.lab import Lab

    marker = item.get_closest_marker("daemons")
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, Lab):
            value.need(*(marker.args if marker else ()))
    yield


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to build network namespaces")
    if not shutil.which("nft"):
        pytest.skip("needs nftables (run scripts/setup.sh)")


def scan_lab_spec(name: str):
    from hostprint.lab import HostSpec, LabSpec

    quiet_icmp = {"net.ipv4.icmp_ratelimit": "0", "net.ipv4.icmp_msgs_per_sec": "100000"}
    return LabSpec(name=name, hosts=[
        HostSpec(name="t1", address="198.18.0.10", services=["nginx:80", "ssh:22", "redis:6379"],
                 firewall=["tcp dport 1000-1099 drop", "udp dport 7777 drop"],
                 sysctls={**quiet_icmp, "net.ipv4.icmp_echo_ignore_broadcasts": "0"}),
        HostSpec(name="t2", address="198.18.0.11", services=["tcp-listen:8080"],
                 firewall=["icmp type echo-request drop", "icmp type timestamp-request drop"], sysctls=quiet_icmp),
        HostSpec(name="t3", address="198.18.0.12", silent=True),
        HostSpec(name="t4", address="198.18.0.13", services=["tcp-listen:22", "tcp-listen:80", "tcp-listen:443"],
                 firewall=["tcp dport 1000-1099 drop"], sysctls=quiet_icmp),
        HostSpec(name="t5", address="198.18.0.14", firewall=["meta l4proto { tcp, udp } drop"]),
    ])


@pytest.fixture(scope="session")
def scanlab():
    needs_root()
    from hostprint.lab import Lab

    with Lab(scan_lab_spec(f"s{os.getpid() % 100000}"), strict=False) as lab:
        lab.spawn("t1", [sys.executable, "-c", UDP_ECHO], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield lab


def hostprint(lab, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real CLI inside the lab's scanner namespace."""
    argv = [sys.executable, "-m", "hostprint", *args]
    r = lab.exec(lab.scanner_ns, argv, capture_output=True, text=True, timeout=timeout,
                 env={**os.environ, "HOSTPRINT_DB": os.environ.get("HOSTPRINT_DB", "/tmp/hostprint-test.sqlite")})
    if check and r.returncode != 0:
        raise AssertionError(f"hostprint {' '.join(args)} -> {r.returncode}\n{r.stderr}\n{r.stdout[-2000:]}")
    return r


def scan_json(lab, *args: str) -> dict[str, dict]:
    """Hosts from `hostprint … -oJ -`, by address."""
    r = hostprint(lab, *args, "-oJ", "-", "--no-db", "--progress", "never")
    return {d["address"]: d for d in map(json.loads, r.stdout.splitlines()) if d}


def port_states(host: dict, proto: str = "tcp") -> dict[int, str]:
    return {p["port"]: p["state"] for p in host["ports"] if p["protocol"] == proto}


def expand(host: dict, ports: list[int], proto: str = "tcp") -> dict[int, str]:
    """Every scanned port's state: listed ports, the rest from the one extraports state."""
    listed = port_states(host, proto)
    extra = [e for e in host["extraports"] if e.get("protocol") in (proto, None)]
    out = {}
    for p in ports:
        if p in listed:
            out[p] = listed[p]
        else:
            assert len(extra) == 1, f"port {p} unlisted and extraports ambiguous: {extra}"
            out[p] = extra[0]["state"]
    return out
