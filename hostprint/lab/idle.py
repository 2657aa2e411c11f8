"""The idle-scan lab the tests and bench/idlescan share: a zombie with one global IP ID counter
(lwIP in user space: ip4.c keeps `static u16_t ip_id` and increments it for every packet it
sends), a Linux host that is no zombie (its RSTs carry IP ID 0 and DF; other packets use
per-destination counters), a target with open, closed and filtered ports, and a host that makes
background traffic to the zombie on demand (UDP to a closed port: every ICMP port unreachable uses one ID).

    scanner 198.18.0.1 --+-- zh 198.18.0.50 (proxy ARP, routes to tap0) -- lwIP 198.18.0.51 :80
                         +-- lz 198.18.0.52 (Linux, listens on 80)
                         +-- tgt 198.18.0.60 (open OPEN_PORTS, drops FILTERED_PORTS, the rest closed)
                         +-- noise 198.18.0.70 (sends the zombie UDP when asked)
"""

from __future__ import annotations

import subprocess
from typing import Any

from hostprint.lab.spec import HostSpec, LabSpec

ZOMBIE_HOST, ZOMBIE, LINUX_ZOMBIE, TARGET, NOISE = "198.18.0.50", "198.18.0.51", "198.18.0.52", "198.18.0.60", "198.18.0.70"
OPEN_PORTS = (22, 80, 443, 3306, 8080)
FILTERED_PORTS = range(1000, 1011)


def idle_spec(name: str) -> LabSpec:
    return LabSpec(name=name, hosts=[
        # proxy_delay 0: the zombie's host answers ARP at once, as a real zombie's kernel would
        HostSpec(name="zh", address=ZOMBIE_HOST, sysctls={"net.ipv4.ip_forward": "1", "net.ipv4.conf.eth0.proxy_arp": "1",
                                                           "net.ipv4.neigh.eth0.proxy_delay": "0"}),
        HostSpec(name="lz", address=LINUX_ZOMBIE, services=["tcp-listen:80"]),
        HostSpec(name="tgt", address=TARGET, services=[f"tcp-listen:{p}" for p in OPEN_PORTS],
                 firewall=[f"tcp dport {FILTERED_PORTS.start}-{FILTERED_PORTS.stop - 1} drop"]),
        HostSpec(name="noise", address=NOISE),
    ])


def truth(ports: list[int]) -> dict[int, str]:
    """What an idle scan can tell about TARGET: open, or closed|filtered (it cannot tell those apart)."""
    return {p: "open" if p in OPEN_PORTS else "closed|filtered" for p in ports}


def start_zombie(lab: Any, tmpdir: str) -> str | None:
    """lwIP answering for ZOMBIE behind host zh; None when lwIP cannot be built here."""
    from hostprint.lab.stacks import build_lwip, start_lwip

    binary = build_lwip(tmpdir)
    if binary is None:
        return None
    start_lwip(lab, binary, "zh", ZOMBIE)
    lab.exec("zh", ["sysctl", "-qw", "net.ipv4.neigh.tap0.proxy_delay=0"], check=True)
    return ZOMBIE


#: background traffic: UDP datagrams to a closed port of the zombie, each answered with an ICMP
#: port unreachable that spends one IP ID (lwIP's echo replies reuse the request's header and ID,
#: so ping would not do)
_NOISE = ("import socket,sys,time\n"
          "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); gap=1/float(sys.argv[2]); t=time.monotonic()\n"
          "while True:\n"
          " s.sendto(b'x',(sys.argv[1],9)); t+=gap; time.sleep(max(0.0,t-time.monotonic()))\n")


def start_background(lab: Any, rate: float) -> subprocess.Popen[Any]:
    """Background traffic to the zombie: `rate` packets per second from host noise that each make
    it send one packet (one IP ID). Stop it with stop_background (by PID)."""
    import sys

    return lab.spawn("noise", [sys.executable, "-c", _NOISE, ZOMBIE, str(rate)],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_background(p: subprocess.Popen[Any]) -> None:
    import os
    import signal

    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)  # its own session (lab.spawn): ip netns exec and ping
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
