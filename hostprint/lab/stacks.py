"""Lab stacks that are not a namespace's own kernel answering for itself: an iptables SYNPROXY
router in front of the hosts behind it, and lwIP running in user space on a tap device.

Tests (timing, -O) and benchmarks share these recipes, so what a test asserts and what a
benchmark measures is the same stack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

LWIP_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lwip_server.c")

# On the router: untracked SYNs coming in on eth0 go to SYNPROXY, which answers them itself with the
# options given here and opens the connection to the real host only after the client's ACK.
SYNPROXY_RULES = [
    ["iptables", "-t", "raw", "-A", "PREROUTING", "-i", "eth0", "-p", "tcp", "--syn", "-j", "CT", "--notrack"],
    ["iptables", "-A", "FORWARD", "-i", "eth0", "-p", "tcp", "-m", "conntrack", "--ctstate", "INVALID,UNTRACKED",
     "-j", "SYNPROXY", "--sack-perm", "--timestamp", "--wscale", "7", "--mss", "1460"],
    ["iptables", "-A", "FORWARD", "-i", "eth0", "-p", "tcp", "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"],
    ["sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0"],
]


def start_synproxy(lab: Any, router: str, dest: str | None = None) -> None:
    """SYNPROXY on `router` for everything it forwards, or only for SYNs to `dest`."""
    for argv in SYNPROXY_RULES:
        if dest and ("SYNPROXY" in argv or "--notrack" in argv):
            j = argv.index("-j")
            argv = [*argv[:j], "-d", dest, *argv[j:]]
        lab.exec(router, argv, check=True, capture_output=True)


def build_lwip(tmpdir: str) -> str | None:
    """Compile the lwIP server against Debian's liblwip-dev; None when that (or /dev/net/tun) is missing."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc or not os.path.exists("/usr/include/lwip/lwip/api.h") or not os.path.exists("/dev/net/tun"):
        return None
    out = os.path.join(tmpdir, "lwip_server")
    subprocess.run([cc, LWIP_SRC, "-I/usr/include/lwip", "-llwip", "-lpthread", "-o", out], check=True)
    return out


def start_lwip(lab: Any, binary: str, host: str, address: str, port: int = 80, mtu: int | None = None,
               gateway: str | None = None) -> None:
    """lwIP answers for `address` on a tap in `host`'s namespace, which proxy-ARPs and routes to it
    (the host needs ip_forward=1 and proxy_arp=1 on eth0). `mtu`: lwIP's netif MTU (LWIP_MTU).
    `gateway`: lwIP's next hop for peers outside its /16 (the host's own address, for an lwIP
    behind a router: the host answers ARP for it on the tap and forwards)."""
    ns = lab.host(host).ns
    for argv in (["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"], ["ip", "link", "set", "tap0", "up"],
                 ["ip", "route", "add", f"{address}/32", "dev", "tap0"],
                 ["sysctl", "-qw", "net.ipv4.conf.tap0.proxy_arp=1"]):
        lab.exec(ns, argv, check=True, capture_output=True)
    env = {**os.environ, "PRECONFIGURED_TAPIF": "tap0", **({"LWIP_MTU": str(mtu)} if mtu else {})}
    p = lab.spawn(ns, [binary, address, str(port), *([gateway] if gateway else [])], env=env,
                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = p.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"lwip_server did not start: {line!r}")
