"""-O against stacks that are not the target's kernel: user-space relays (libslirp via slirp4netns,
pasta), lwIP in user space, iptables SYNPROXY in front of a Linux host, and Linux answering with
forced SYN cookies. Each runs the real CLI (`scan -sS -O --os-db hostprint`) and asserts that the
best stack match names the stack that really answered, plus the attributes that make it so (the
entries in hostprint/signatures/stack/userspace.txt were measured with these same labs).

Why the relays get their own namespaces (hostprint/lab/usernet.py): the scanner must sit behind the
relay's tap, where a rootless container sits, so that the relay, not the server's kernel, answers.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import pytest

from conftest import ROOT, needs_root, scan_json

pytestmark = pytest.mark.lab

PORTS = "80,81"  # 80 open, 81 closed on every target
LIN, CK, BEHIND = "198.18.0.10", "198.18.0.13", "198.19.0.10"
LWIP = "198.18.0.50"  # lwIP on a tap in host "lwh" (198.18.0.51), which proxy-ARPs and routes to it


def _scan_cli() -> list[str]:
    return [sys.executable, "-m", "hostprint", "scan", "-sS", "-O", "-p", PORTS, "--os-db", "hostprint",
            "-oJ", "-", "--no-db", "--progress", "never"]


def _relay_scan(u) -> dict:
    r = u.exec([*_scan_cli(), u.server_addr], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    (host,) = [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]
    return host


def _relay(kind: str, prefix: str, subnet: int):
    needs_root()
    from hostprint.lab.usernet import binary, usernet

    if binary(kind) is None:
        pytest.skip(f"needs Debian package {'slirp4netns' if kind == 'slirp4netns' else 'passt'}")
    with usernet(kind, f"{prefix}{os.getpid() % 10000}", subnet) as u:
        u.host = _relay_scan(u)
        yield u


@pytest.fixture(scope="module")
def slirp():
    yield from _relay("slirp4netns", "usl", 40)


@pytest.fixture(scope="module")
def pasta():
    yield from _relay("pasta", "ups", 42)


@pytest.fixture(scope="module")
def mlab():
    """Linux, Linux with tcp_syncookies=2, a Linux host behind an iptables SYNPROXY router, and lwIP
    on a tap (hostprint/lab/stacks.py: the same recipes as the timing tests and the benchmark)."""
    needs_root()
    import shutil

    from hostprint.lab import HostSpec, Lab, LabSpec
    from hostprint.lab.stacks import build_lwip, start_lwip, start_synproxy

    if not shutil.which("iptables"):
        pytest.skip("needs iptables (SYNPROXY target)")
    spec = LabSpec(name=f"su{os.getpid() % 10000}", hosts=[
        HostSpec(name="lin", address=LIN, services=["nginx:80"]),
        HostSpec(name="ck", address=CK, services=["nginx:80"], sysctls={"net.ipv4.tcp_syncookies": "2"}),
        HostSpec(name="r", address="198.18.0.2", router=True),
        HostSpec(name="b", address=BEHIND, segment=2, services=["nginx:80"]),
        HostSpec(name="lwh", address="198.18.0.51",
                 sysctls={"net.ipv4.ip_forward": "1", "net.ipv4.conf.eth0.proxy_arp": "1"}),
    ])
    with tempfile.TemporaryDirectory(prefix="hpt-lwip-") as tmp, Lab(spec) as lab:
        start_synproxy(lab, "r")
        binary = build_lwip(tmp)
        if binary:
            start_lwip(lab, binary, "lwh", LWIP)
        lab.lwip = LWIP if binary else None
        lab.hosts_json = scan_json(lab, "scan", "-sS", "-O", "-p", PORTS, "--os-db", "hostprint",
                                   LIN, CK, BEHIND, *([LWIP] if binary else []))
        yield lab


def _stack(host: dict) -> dict:
    return host["os"]["stack"]


def _best(host: dict) -> dict:
    m = _stack(host)["matches"]
    assert m, f"no stack match for {host['address']}:\n{_stack(host)['fingerprint']}"
    return m[0]


# ---- libslirp ---------------------------------------------------------------------------------

def test_slirp_is_named(slirp):
    best = _best(slirp.host)
    assert (best["family"], best["vendor"]) == ("libslirp", "libslirp"), best
    assert best["name"].startswith("libslirp") and best["db"] == "hostprint"


def test_slirp_attributes(slirp):
    """BSD-derived slirp: MSS only, SYN-ACK TTL 64 but RSTs 255, ISN steps of 64000."""
    t = _stack(slirp.host)["tests"]
    assert {t["OPS"][f"O{i}"] for i in range(1, 7)} == {"M5B4"}
    assert t["T1"]["TG"] == "40" and t["T2"]["TG"] == "FF" and t["T5"]["TG"] == "40"
    assert t["T1"]["DF"] == "N"
    assert int(t["SEQ"]["GCD"], 16) % 0xFA00 == 0, t["SEQ"]


# ---- pasta ------------------------------------------------------------------------------------

def test_pasta_is_named(pasta):
    best = _best(pasta.host)
    assert (best["family"], best["vendor"]) == ("pasta", "passt"), best


def test_pasta_attributes(pasta):
    """No stack of its own: MSS from the tap MTU, ignores segments of unknown flows, RST without ACK."""
    t = _stack(pasta.host)["tests"]
    assert t["OPS"]["O1"].startswith("MF000NW") and t["SEQ"]["TI"] == "Z"
    assert t["T2"] == {"R": "N"} and t["T4"] == {"R": "N"} and t["U1"] == {"R": "N"}
    assert t["T5"]["F"] == "R" and t["T5"]["W"] == "3908"


def test_relays_hide_the_server_kernel(slirp, pasta):
    """The server behind both relays is Linux; -O from inside must not say so."""
    for u in (slirp, pasta):
        assert _best(u.host)["family"] != "Linux", _stack(u.host)["matches"][:2]


def test_relay_labs_have_no_default_route(slirp, pasta):
    for u in (slirp, pasta):
        routes = u.routes()
        assert set(routes) == {u.server_ns, u.outer_ns, u.inner_ns}
        for ns, lines in routes.items():
            assert lines and not any(ln.startswith("default") for ln in lines), (ns, lines)
        assert any(ln.startswith(f"{u.server_addr.rsplit('.', 1)[0]}.0/24 via {u.gateway}") for ln in routes[u.inner_ns])


def test_relay_teardown_kills_and_deletes():
    needs_root()
    from hostprint.lab import state
    from hostprint.lab.usernet import binary, usernet

    if binary("slirp4netns") is None:
        pytest.skip("needs Debian package slirp4netns")
    with usernet("slirp4netns", f"ust{os.getpid() % 10000}", 44) as u:
        pids = [u.relay_pid, u.server_pid]
        names = [u.server_ns, u.outer_ns, u.inner_ns]
        assert all(p and os.path.exists(f"/proc/{p}") for p in pids)
    assert not set(names) & set(state.list_netns())
    for p in pids:
        assert state.proc_start_time(p) is None, f"pid {p} still running"


# ---- lwIP, SYNPROXY, SYN cookies ----------------------------------------------------------------

def test_lwip_is_named(mlab):
    if not mlab.lwip:
        pytest.skip("needs Debian liblwip-dev and a C compiler (lwIP test server)")
    h = mlab.hosts_json[mlab.lwip]
    best = _best(h)
    assert (best["family"], best["generation"]) == ("lwIP", "2.1"), best
    t = _stack(h)["tests"]
    assert t["T4"]["F"] == "AR" and t["T4"]["W"] == "FF7F"
    assert t["U1"]["IPL"] == "38" and t["OPS"]["O1"] == "M5B4NW1"


def test_synproxy_front_is_named(mlab):
    h = mlab.hosts_json[BEHIND]
    best = _best(h)
    assert (best["family"], best["device_type"]) == ("netfilter SYNPROXY", "proxy server"), best
    t = _stack(h)["tests"]
    assert {t["WIN"][f"W{i}"] for i in range(1, 7)} == {"0"}
    assert t["OPS"]["O4"] == "ST11NW7"  # no MSS in the SYN, none in the answer
    ports = {p["port"]: p["state"] for p in h["ports"]}
    assert ports == {80: "open", 81: "open"}  # the proxy answers every port


def test_forced_syncookies_still_linux(mlab):
    """tcp_syncookies=2: the SYN-ACK comes from the cookie path; without timestamps in the SYN (ECN
    probe) the window scale and SACK cannot be encoded, so they are dropped: ECN O=M5B4 and no ECN
    echo, while the same kernel without forced cookies answers ECN with WS and ECE."""
    ck, lin = mlab.hosts_json[CK], mlab.hosts_json[LIN]
    assert _best(ck)["family"] == "Linux" and _best(lin)["family"] == "Linux"
    e_ck, e_lin = _stack(ck)["tests"]["ECN"], _stack(lin)["tests"]["ECN"]
    assert (e_ck["O"], e_ck["CC"]) == ("M5B4", "N"), e_ck
    assert "W" in e_lin["O"] and e_lin["CC"] == "Y", e_lin
    assert _stack(ck)["tests"]["OPS"] == _stack(lin)["tests"]["OPS"]  # every SEQ probe carries a timestamp
