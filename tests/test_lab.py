"""The lab itself must be trustworthy before anything is tested against it: real daemons answer,
stack personalities show on the wire, firewall/loss/delay do what they claim, teardown is total."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hostprint.errors import UsageError
from hostprint.lab import HostSpec, Lab, LabSpec, demo_spec
from hostprint.lab import state as S

REPO = Path(__file__).resolve().parents[1]

needs_lab = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("ping") is None,
    reason="needs root, iproute2 and ping (iputils-ping) to build network namespaces",
)


def _name(tag: str) -> str:
    # Unique per test process so parallel runs by different people never clean up each other.
    return f"{tag}{os.getpid() % 1000000}"


def main_spec() -> LabSpec:
    return LabSpec(
        name=_name("tl"),
        hosts=[
            HostSpec(name="web", address="198.18.0.10", services=["nginx:80", "ssh:22"]),
            HostSpec(name="db", address="198.18.0.20", services=["redis:6379", "ftp:21"],
                     sysctls={"net.ipv4.ip_default_ttl": "128", "net.ipv4.tcp_timestamps": "0"}),
            HostSpec(name="fw", address="198.18.0.30", services=["tcp-listen:1050", "nginx:8080"],
                     firewall=["tcp dport 1000-1099 drop", "icmp type echo-request drop"]),
            HostSpec(name="quiet", address="198.18.0.40", silent=True),
            HostSpec(name="multi", address="198.18.1.1",
                     extra_addresses=[f"198.18.1.{i}" for i in range(2, 18)],
                     firewall="ip daddr 198.18.1.5 icmp type echo-request drop"),
            HostSpec(name="slow", address="198.18.0.50", services=["tcp-listen:7000"], delay_relay=True),
            HostSpec(name="rtr", address="198.18.0.254", router=True),
            HostSpec(name="far", address="198.19.0.10", segment=2, services=["tcp-listen:22"]),
        ],
    )


@pytest.fixture(scope="module")
def lab():
    spec = main_spec()
    Lab.cleanup_stale(spec.name)
    with Lab(spec) as lb:  # tears down on every exit path, failing asserts included
        yield lb
    Lab.cleanup_stale(spec.name)


def ping(lab: Lab, addr: str, count: int = 1, interval: str = "0.2") -> subprocess.CompletedProcess[str]:
    return lab.exec("scan", ["ping", "-n", "-c", str(count), "-i", interval, "-W", "1", addr],
                    capture_output=True, text=True, timeout=30)


# A few lines of Python run inside the scanner namespace: connect, optionally send, print what
# came back (repr) or the error name. Keeps the test independent of nc/telnet availability.
_CLIENT = textwrap.dedent("""
    import socket, sys
    addr, port, send = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode().decode("unicode_escape").encode("latin1")
    s = socket.socket(); s.settimeout(float(sys.argv[4]))
    try:
        s.connect((addr, port))
        if send: s.sendall(send)
        print(repr(s.recv(200)))
    except Exception as e:
        print(type(e).__name__)
""")


def talk(lab: Lab, addr: str, port: int, send: str = "", timeout: float = 2.0) -> str:
    r = lab.exec("scan", [sys.executable, "-c", _CLIENT, addr, str(port), send, str(timeout)],
                 capture_output=True, text=True, timeout=timeout + 10)
    return r.stdout.strip()


def reply_ttl(out: str) -> int | None:
    m = re.search(r"ttl=(\d+)", out)
    return int(m.group(1)) if m else None


def test_spec_validation_names_bad_token():
    with pytest.raises(UsageError, match="Bad"):
        LabSpec("Bad", []).validate()
    with pytest.raises(UsageError, match="10.0.0.1"):
        LabSpec("x", [HostSpec("a", "10.0.0.1")]).validate()
    with pytest.raises(UsageError, match="gopher"):
        LabSpec("x", [HostSpec("a", "198.18.0.2", services=["gopher:70"])]).validate()
    with pytest.raises(UsageError, match="'x1'"):
        LabSpec("x", [HostSpec("a", "198.18.0.2", services=["nginx:x1"])]).validate()
    with pytest.raises(UsageError, match="scan"):
        LabSpec("x", [HostSpec("scan", "198.18.0.2")]).validate()
    with pytest.raises(UsageError, match="198.18.0.1"):
        LabSpec("x", [HostSpec("a", "198.18.0.1")]).validate()  # the scanner's address
    with pytest.raises(UsageError, match="router"):
        LabSpec("x", [HostSpec("a", "198.19.0.2", segment=2)]).validate()
    with pytest.raises(UsageError, match="port 80 used twice"):
        LabSpec("x", [HostSpec("a", "198.18.0.2", services=["nginx:80", "ssh:80"])]).validate()
    demo_spec().validate()


@pytest.mark.lab
@needs_lab
class TestRunningLab:
    def test_namespaces_exist(self, lab: Lab):
        names = set(S.list_netns())
        for ns in [lab.scanner_ns, lab.switch_ns, *(h.ns for h in lab.hosts.values())]:
            assert ns in names
        assert lab.host("slow").relay_ns in names
        assert lab.scanner_ns == f"hpl-{lab.name}-scan" and lab.scanner_addr == "198.18.0.1"
        # No default route anywhere (rule 1).
        for ns in names:
            if ns.startswith(f"hpl-{lab.name}-"):
                r = lab.exec(ns, ["ip", "route", "show", "default"], capture_output=True, text=True)
                assert r.stdout.strip() == ""

    def test_ping_and_ttl_personality(self, lab: Lab):
        web = ping(lab, "198.18.0.10")
        assert web.returncode == 0, web.stdout + web.stderr
        assert reply_ttl(web.stdout) == 64
        db = ping(lab, "198.18.0.20")
        assert db.returncode == 0 and reply_ttl(db.stdout) == 128

    def test_sysctl_set_only_in_its_namespace(self, lab: Lab):
        r = lab.exec("db", ["sysctl", "-n", "net.ipv4.tcp_timestamps"], capture_output=True, text=True)
        assert r.stdout.strip() == "0"
        r = lab.exec("web", ["sysctl", "-n", "net.ipv4.tcp_timestamps"], capture_output=True, text=True)
        assert r.stdout.strip() == "1"

    def test_nginx_http(self, lab: Lab):
        out = talk(lab, "198.18.0.10", 80, "GET / HTTP/1.0\\r\\n\\r\\n")
        assert out.startswith("b'HTTP/1.1 200 OK") and "nginx" in out

    def test_ssh_banner(self, lab: Lab):
        assert talk(lab, "198.18.0.10", 22).startswith("b'SSH-2.0-OpenSSH_")

    def test_redis_ping(self, lab: Lab):
        assert talk(lab, "198.18.0.20", 6379, "PING\\r\\n") == "b'+PONG\\r\\n'"

    def test_ftp_banner(self, lab: Lab):
        assert talk(lab, "198.18.0.20", 21).startswith("b'220")

    def test_closed_port_refused(self, lab: Lab):
        assert talk(lab, "198.18.0.10", 81) == "ConnectionRefusedError"

    def test_firewall_makes_port_and_echo_silent(self, lab: Lab):
        # The listener is running (seen by ss inside fw) but the drop rule hides it.
        assert talk(lab, "198.18.0.30", 1050, timeout=0.5) == "TimeoutError"
        assert talk(lab, "198.18.0.30", 8080, "GET / HTTP/1.0\\r\\n\\r\\n").startswith("b'HTTP/1.1 200")
        assert ping(lab, "198.18.0.30").returncode != 0

    def test_silent_host(self, lab: Lab):
        assert ping(lab, "198.18.0.40").returncode != 0
        assert talk(lab, "198.18.0.40", 80, timeout=0.5) == "TimeoutError"

    def test_multi_address_host_with_per_address_rule(self, lab: Lab):
        h = lab.host("multi")
        assert len(h.addresses) == 17
        assert ping(lab, "198.18.1.17").returncode == 0
        assert ping(lab, "198.18.1.5").returncode != 0

    def test_loss(self, lab: Lab):
        try:
            lab.set_loss("web", 100)
            assert ping(lab, "198.18.0.10").returncode != 0
            assert talk(lab, "198.18.0.10", 80, timeout=0.5) == "TimeoutError"
        finally:
            lab.set_loss("web", 0)
        assert ping(lab, "198.18.0.10").returncode == 0

    def test_partial_loss_loses_some_not_all(self, lab: Lab):
        try:
            lab.set_loss("web", 50)
            r = ping(lab, "198.18.0.10", count=60, interval="0.002")
            m = re.search(r"(\d+) received", r.stdout)
            assert m is not None
            # Each echo survives with p = 0.5 * 0.5; P(0 or 60 of 60) is astronomically small.
            assert 0 < int(m.group(1)) < 60
        finally:
            lab.set_loss("web", 0)

    def test_delay_relay(self, lab: Lab):
        assert ping(lab, "198.18.0.50").returncode == 0  # forwards at delay 0, ARP included
        try:
            lab.set_delay("slow", mean_ms=40, jitter_ms=5)
            r = ping(lab, "198.18.0.50", count=3, interval="0.05")
            rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", r.stdout)]
            assert len(rtts) == 3, r.stdout
            assert min(rtts) >= 80.0  # 40 ms each way; jitter only adds
            assert talk(lab, "198.18.0.50", 7000, timeout=0.5) == "TimeoutError"  # open, holds
        finally:
            lab.set_delay("slow", 0)
        with pytest.raises(UsageError):
            lab.set_delay("web", 10)

    def test_routed_segment(self, lab: Lab):
        r = ping(lab, "198.19.0.10")
        assert r.returncode == 0 and reply_ttl(r.stdout) == 63  # one router hop
        assert talk(lab, "198.19.0.10", 22, timeout=0.5) == "TimeoutError"  # connected, silent

    def test_status(self, lab: Lab):
        st = lab.status()
        assert st["running"]
        svcs = {(s["kind"], s["port"]): s for s in st["hosts"]["db"]["services"]}
        assert svcs[("redis", 6379)]["alive"] and svcs[("redis", 6379)]["listening"]


def _pids_and_ns(lab: Lab) -> tuple[list[dict], list[str]]:
    st = S.read_state(lab.name)
    assert st is not None
    return list(st["pids"]), list(st["namespaces"])


@pytest.mark.lab
@needs_lab
def test_down_leaves_nothing():
    spec = LabSpec(_name("td"), [HostSpec("web", "198.18.0.10", services=["nginx:80", "tcp-listen:9"],
                                          delay_relay=True)])
    lab = Lab(spec)
    try:
        lab.up()
        pids, nss = _pids_and_ns(lab)
        tmp = lab.tmpdir
        assert pids and nss and tmp is not None and tmp.exists()
        extra = lab.spawn("scan", ["sleep", "60"])
        assert extra.poll() is None
    finally:
        lab.down()
    lab.down()  # idempotent
    left = set(S.list_netns())
    assert not [ns for ns in nss if ns in left]
    assert not [r for r in pids if S.is_same_process(r)]
    assert extra.poll() is not None
    assert not tmp.exists()
    assert S.read_state(spec.name) is None


@pytest.mark.lab
@needs_lab
def test_stale_lab_from_dead_process_is_cleaned():
    name = _name("ts")
    code = (f"from hostprint.lab import Lab, LabSpec, HostSpec\n"
            f"Lab(LabSpec({name!r}, [HostSpec('web', '198.18.0.10', services=['redis:6379'])]), keep=True).up()\n")
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
        st = S.read_state(name)
        assert st is not None
        assert any(S.is_same_process(r) for r in st["pids"])  # redis outlived its creator
        # A namespace with the lab's prefix but missing from the state file is removed too.
        subprocess.run(["ip", "netns", "add", f"hpl-{name}-junk"], check=True)
    finally:
        Lab.cleanup_stale(name)
    assert not [ns for ns in S.list_netns() if ns.startswith(f"hpl-{name}-")]
    assert not [r for r in st["pids"] if S.is_same_process(r)]
    assert S.read_state(name) is None


@pytest.mark.lab
@needs_lab
def test_up_replaces_stale_lab_of_same_name():
    name = _name("tr")
    spec = LabSpec(name, [HostSpec("web", "198.18.0.10")])
    first = Lab(spec, keep=True)
    try:
        first.up()
        with Lab(spec) as second:  # must not fail on "namespace exists"
            assert ping(second, "198.18.0.10").returncode == 0
    finally:
        first.down()
        Lab.cleanup_stale(name)


@pytest.mark.lab
@needs_lab
def test_cli_up_status_down():
    from hostprint.commands import lab as labcmd

    name = _name("tc")
    ap = argparse.ArgumentParser()
    labcmd.register(ap.add_subparsers())
    try:
        args = ap.parse_args(["lab", "up", "--name", name])
        assert args.func(args) == 0
        args = ap.parse_args(["lab", "status", "--name", name])
        assert args.func(args) == 0
    finally:
        args = ap.parse_args(["lab", "down", "--name", name])
        assert args.func(args) == 0
    args = ap.parse_args(["lab", "status", "--name", name])
    assert args.func(args) == 1
    with pytest.raises(UsageError, match="BAD"):
        args = ap.parse_args(["lab", "up", "--name", "BAD"])
        args.func(args)


@pytest.mark.lab
@needs_lab
def test_failing_daemon_names_itself_and_lab_is_torn_down(monkeypatch):
    from hostprint.lab import LabError
    from hostprint.lab import services as svc

    def broken(ctx):  # a real process that exits at once, like a daemon with a bad config
        return ["sh", "-c", "echo cannot-bind >&2; exit 3"]

    monkeypatch.setitem(svc.REGISTRY, "broken", svc.ServiceKind("broken", 5000, broken))
    name = _name("tf")
    with pytest.raises(LabError, match=r"broken:5000 on web .*exited with 3.*cannot-bind.*stdio.log"):
        with Lab(LabSpec(name, [HostSpec("web", "198.18.0.10", services=["redis:6379", "broken:5000"])])):
            pass
    assert not [ns for ns in S.list_netns() if ns.startswith(f"hpl-{name}-")]
    assert S.read_state(name) is None


@pytest.mark.lab
@needs_lab
def test_interrupt_inside_with_tears_down():
    name = _name("ti")
    with pytest.raises(KeyboardInterrupt):
        with Lab(LabSpec(name, [HostSpec("web", "198.18.0.10", services=["tcp-listen:80"])])) as lab:
            pids, _ = _pids_and_ns(lab)
            raise KeyboardInterrupt
    assert not [ns for ns in S.list_netns() if ns.startswith(f"hpl-{name}-")]
    assert not [r for r in pids if S.is_same_process(r)]
