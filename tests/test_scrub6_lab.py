"""The scrubber over IPv6 on a real namespace (issue 19): `hostprint scrub up --host` in the demo
lab's web host (Linux 6.18, 2001:2::10), and router mode in front of two Linux hosts that answer
differently (dual-stack router lab: scrublab's rtr, lx1 and lx2 without lwIP and gVisor); answers
captured in the scanner namespace before, with and after the scrubber (hostprint/lab/scrub6probe.py).
The IPv4 router lab with four stacks: test_scrub_lab.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import needs_root

pytestmark = [pytest.mark.lab, pytest.mark.slow]
ADDR6 = "2001:2::10"
TTL = 99  # not Linux's 64, so that the rewrite shows


@pytest.fixture(scope="module")
def run():
    needs_root()
    from hostprint.lab import Lab, demo_spec
    from hostprint.lab.services import helper_env

    spec = demo_spec(f"a2v{os.getpid() % 1000}")
    spec.hosts = [h for h in spec.hosts if h.name == "web"]
    with Lab(spec, strict=False) as lab:
        web = lab.host("web").ns

        def probe() -> dict:
            r = lab.exec(lab.scanner_ns, [sys.executable, "-m", "hostprint.lab.scrub6probe", "eth0", ADDR6, "80", "9"],
                         capture_output=True, text=True, env=helper_env(), timeout=60)
            assert r.returncode == 0, r.stderr[-600:]
            return dict(json.loads(r.stdout))

        def http() -> str:
            code = ("import socket; s = socket.create_connection(('%s', 80), 5); s.sendall(b'HEAD / HTTP/1.0\\r\\n\\r\\n');"
                    " print(s.recv(12).decode())" % ADDR6)
            return str(lab.exec(lab.scanner_ns, [sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=30).stdout.strip())

        out = {"before": probe()}
        p = lab.spawn(web, [sys.executable, "-m", "hostprint.cli", "scrub", "up", "--host", "--ttl", str(TTL)],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=helper_env())
        try:
            out["ready"] = p.stdout.readline().strip() if p.stdout else ""
            out["with"] = probe()
            out["http_with"] = http()
            # a raw-socket SYN scan (nmap's kind of SYN): SYNPROXY would have answered none over IPv6
            r = lab.exec(lab.scanner_ns, [sys.executable, "-m", "hostprint.cli", "scan", "-sS", "-p", "80", "-Pn", "-n",
                                          "--no-db", "--progress", "never", "-oJ", "-", ADDR6],
                         capture_output=True, text=True, env=helper_env(), timeout=120)
            out["syn_scan"] = [p for ln in r.stdout.splitlines() if ln.startswith("{")
                               for p in json.loads(ln).get("ports", [])]
        finally:
            os.kill(p.pid, signal.SIGTERM)
            out["stderr"] = p.communicate(timeout=20)[1]
        out["left"] = (lab.exec(web, ["nft", "list", "ruleset"], capture_output=True, text=True).stdout
                       + lab.exec(web, ["ip6tables-save"], capture_output=True, text=True).stdout)
        out["after"] = probe()
        yield out


def test_linux_answers_differ_without_scrubber(run):
    b = run["before"]
    assert b["synack"]["options"] != [2] and b["synack"]["flow"] != 0, b  # SACK/TS/WS, a per-flow label
    assert b["icmp6"]["quoted"] > 48, b  # Linux quotes as much as fits in 1280 bytes


def test_scrubber_normalises_ipv6_answers(run):
    assert run["ready"].startswith("scrub: up"), run["ready"]
    w = run["with"]
    # the host's own SYN-ACK (SYNPROXY is IPv4 only), window lowered to the scrubber's 8192, MSS only
    assert w["synack"] == {"hlim": TTL, "flow": 0, "tc": 0, "window": 8192, "options": [2]}, w
    assert w["icmp6"] == {"hlim": TTL, "type": 1, "quoted": 48}, w
    assert run["http_with"].startswith("HTTP/1.1 200"), run["http_with"]
    assert "errors 0" in run["stderr"], run["stderr"]
    assert [(p["port"], p["state"]) for p in run["syn_scan"]] == [(80, "open")], run["syn_scan"]


def test_nothing_left_and_answers_back(run):
    assert "hpscrub_" not in run["left"] and "HPSC_" not in run["left"], run["left"]
    assert run["after"]["synack"]["options"] == run["before"]["synack"]["options"], run["after"]


@pytest.fixture(scope="module")
def router():
    needs_root()
    from hostprint.lab import Lab
    from hostprint.lab import scrublab as S
    from hostprint.lab.services import helper_env
    from hostprint.lab.spec import v6_for

    spec = S.spec(f"a2w{os.getpid() % 1000}", with_lwip=False, with_gvisor=False)
    spec.ipv6 = True
    with Lab(spec, strict=False) as lab:
        hosts = {n: v6_for(S.HOSTS[n][0]) for n in ("lx1", "lx2")}

        def probe(addr: str) -> dict:
            r = lab.exec(lab.scanner_ns, [sys.executable, "-m", "hostprint.lab.scrub6probe", "eth0", addr, "80", "9"],
                         capture_output=True, text=True, env=helper_env(), timeout=60)
            assert r.returncode == 0, r.stderr[-600:]
            return dict(json.loads(r.stdout))

        def os_scan() -> dict:
            r = lab.exec(lab.scanner_ns, [sys.executable, "-m", "hostprint.cli", "scan", "-sS", "-O", "-p", "80,81", "-Pn",
                                          "-n", "--no-db", "--progress", "never", "-oJ", "-", *hosts.values()],
                         capture_output=True, text=True, env=helper_env(), timeout=300)
            views = {}
            for ln in r.stdout.splitlines():
                if ln.startswith("{") and (d := json.loads(ln)).get("address"):
                    ms = d.get("os", {}).get("matches") or []
                    views[d["address"]] = {"os": ms[0]["name"] if ms else "unknown",
                                           "arch": [a.get("kind") for a in d.get("os", {}).get("architecture", [])]}
            return views

        out = {"hosts": hosts, "before": {n: probe(a) for n, a in hosts.items()}, "os_before": os_scan()}
        p = lab.spawn(S.ROUTER, [sys.executable, "-m", "hostprint.cli", "scrub", "up", "--outside", "eth0", "--protect",
                                 "198.19.0.0/16", "--protect", "2001:2:0:1::/64"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=helper_env())
        try:
            out["ready"] = p.stdout.readline().strip() if p.stdout else ""
            out["with"] = {n: probe(a) for n, a in hosts.items()}
            out["os_with"] = os_scan()
        finally:
            os.kill(p.pid, signal.SIGTERM)
            out["stderr"] = p.communicate(timeout=20)[1]
        out["left"] = (lab.exec(S.ROUTER, ["nft", "list", "ruleset"], capture_output=True, text=True).stdout
                       + lab.exec(S.ROUTER, ["ip6tables-save"], capture_output=True, text=True).stdout)
        yield out


def test_router_mode_ipv6_hosts_alike_behind_the_scrubber(router):
    b, w = router["before"], router["with"]
    # lx2 runs without timestamps, SACK and window scaling: its SYN-ACK differs from lx1's
    assert b["lx1"]["synack"]["options"] != b["lx2"]["synack"]["options"], b
    assert b["lx1"]["icmp6"]["quoted"] > 48, b
    assert router["ready"].startswith("scrub: up"), (router["ready"], router["stderr"][-400:])
    assert w["lx1"] == w["lx2"], w  # one view of both hosts
    assert w["lx1"]["synack"] == {"hlim": 64, "flow": 0, "tc": 0, "window": 8192, "options": [2]}, w
    assert w["lx1"]["icmp6"]["quoted"] == 48 and w["lx1"]["icmp6"]["hlim"] == 64, w
    assert "hpscrub_" not in router["left"] and "HPSC_" not in router["left"], router["left"]


def test_ipv6_os_detection_names_the_scrubber(router):
    # signatures/stack6/scrubber.txt: without the scrubber -O over IPv6 names Linux for both hosts,
    # with it the scrubber (and the architecture finding), never Linux
    assert set(router["os_before"]) == set(router["hosts"].values()), router["os_before"]
    for a, v in router["os_before"].items():
        assert "Linux" in v["os"] and "scrubber" not in v["arch"], (a, v)
    assert set(router["os_with"]) == set(router["hosts"].values()), router["os_with"]
    for a, v in router["os_with"].items():
        assert "scrubber" in v["os"] and "scrubber" in v["arch"], (a, v)
