"""The scrubber's lab (issue 19): four different stacks behind one router that runs `hostprint
scrub`, and the scanner in front of it.

    scanner 198.18.0.1 --- br0 --- rtr eth0 198.18.0.2 | rtr eth1 198.19.0.1 --- br1 ---+
        lx1   198.19.0.11  Linux, kernel defaults: nginx:80, ssh:22
        lx2   198.19.0.12  Linux "old style": TTL 128, no timestamps/SACK/window scaling: nginx:80
        lwip  198.19.0.21  lwIP 2.1 (Debian liblwip) in user space on a tap of lwh (198.19.0.20): port 80
        gv    198.19.0.30  gVisor (runsc) netstack: busybox httpd:80
Port 81 is closed everywhere. Tests and bench/scrub share this recipe.

The scrubber runs as its own process in the router's namespace (`hostprint scrub up`), started
and stopped by PID (`Scrubbed.start()` / `stop()`); a stop is SIGTERM, on which the scrubber removes
its rules itself, then `scrub down` checks that nothing is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from hostprint.lab.lab import Lab
from hostprint.lab.services import helper_env
from hostprint.lab.spec import HostSpec, LabSpec

OLD_STYLE = {"net.ipv4.ip_default_ttl": "128", "net.ipv4.tcp_timestamps": "0", "net.ipv4.tcp_sack": "0",
             "net.ipv4.tcp_window_scaling": "0"}
ROUTER = "rtr"
#: name -> (address, what it is)
HOSTS = {
    "lx1": ("198.19.0.11", "Linux, kernel defaults"),
    "lx2": ("198.19.0.12", "Linux, TTL 128, no timestamps/SACK/window scaling"),
    "lwip": ("198.19.0.21", "lwIP 2.1 (Debian liblwip), user space on a tap"),
    "gv": ("198.19.0.30", "gVisor (runsc) netstack"),
}


@dataclass
class ScrubLab:
    lab: Lab
    hosts: dict[str, str]  # name -> address of the stacks that run here
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why it could not run
    scrubber: subprocess.Popen[str] | None = None
    scrub_args: list[str] = field(default_factory=list)

    def scan(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        """argv in the scanner namespace, output captured as text."""
        return self.lab.exec(self.lab.scanner_ns, argv, capture_output=True, text=True, env=helper_env(), **kw)

    def start_scrubber(self, *extra: str) -> str:
        """`hostprint scrub up` on the router; returns its ready line."""
        assert self.scrubber is None
        argv = [sys.executable, "-m", "hostprint.cli", "scrub", "up", "--outside", "eth0", "--protect",
                "198.19.0.0/16", *extra]
        p = self.lab.spawn(ROUTER, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=helper_env())
        line = p.stdout.readline().strip() if p.stdout else ""
        if not line.startswith("scrub: up"):
            err = p.stderr.read() if p.stderr and p.poll() is not None else ""
            raise RuntimeError(f"scrubber did not start: {line!r} {err.strip()[-400:]}")
        self.scrubber, self.scrub_args = p, list(extra)
        return line

    def stop_scrubber(self) -> str:
        """SIGTERM to the scrubber (by PID); returns its stderr (the queue's counters)."""
        p, self.scrubber = self.scrubber, None
        if p is None:
            return ""
        os.kill(p.pid, signal.SIGTERM)
        try:
            _, err = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        return err or ""

    def router_rules(self) -> str:
        """Every nft rule and iptables chain in the router (tests: nothing left after a stop)."""
        nft = self.lab.exec(ROUTER, ["nft", "list", "ruleset"], capture_output=True, text=True).stdout
        return nft


def spec(name: str, with_lwip: bool = True, with_gvisor: bool = True) -> LabSpec:
    hosts = [HostSpec(name=ROUTER, address="198.18.0.2", router=True),
             HostSpec(name="lx1", address=HOSTS["lx1"][0], segment=2, services=["nginx:80", "ssh:22"]),
             HostSpec(name="lx2", address=HOSTS["lx2"][0], segment=2, services=["nginx:80"], sysctls=dict(OLD_STYLE))]
    if with_lwip:
        hosts.append(HostSpec(name="lwh", address="198.19.0.20", segment=2,
                              sysctls={"net.ipv4.ip_forward": "1", "net.ipv4.conf.eth0.proxy_arp": "1"}))
    if with_gvisor:
        hosts.append(HostSpec(name="gv", address=HOSTS["gv"][0], segment=2))
    return LabSpec(name=name, hosts=hosts)


@contextmanager
def scrub_lab(name: str = "scl") -> Iterator[ScrubLab]:
    """The lab above, torn down on every exit path (scrubber by PID first, then runsc, then the lab)."""
    from hostprint.lab import gvisor
    from hostprint.lab.stacks import build_lwip, start_lwip

    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="hpt-scl-"))
        gv_missing = gvisor.missing()
        lab = stack.enter_context(Lab(spec(name, with_gvisor=gv_missing is None)))
        sl = ScrubLab(lab, {n: HOSTS[n][0] for n in ("lx1", "lx2")})
        stack.callback(sl.stop_scrubber)
        binary = build_lwip(tmp)
        if binary:
            start_lwip(lab, binary, "lwh", HOSTS["lwip"][0], gateway="198.19.0.20")
            sl.hosts["lwip"] = HOSTS["lwip"][0]
        else:
            sl.skipped["lwip"] = "needs Debian liblwip-dev and a C compiler"
        if gv_missing is None:
            try:
                sb = gvisor.start_gvisor(lab, "gv", tmp, ports=(80,))
                stack.callback(gvisor.stop_gvisor, sb)
                sl.hosts["gv"] = HOSTS["gv"][0]
            except RuntimeError as e:
                sl.skipped["gv"] = f"runsc did not start: {e}"
        else:
            sl.skipped["gv"] = gv_missing
        yield sl
