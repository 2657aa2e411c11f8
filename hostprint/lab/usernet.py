"""Labs where a user-space network stack answers the scanner: libslirp (slirp4netns) and pasta (passt).

Rootless containers reach the network through these programs: the container namespace has a tap
device, and the program on the other side of the tap terminates the container's TCP itself and
opens ordinary sockets in the namespace where it runs. So a scan from inside the container meets
slirp's or pasta's stack, not the target's, and -O should say so. Measuring that needs the real
programs (Debian `slirp4netns`, `passt`), wired like this:

    inner ns (scanner)  tap0 198.18.<n+1>.100 --tap--> slirp4netns / pasta process in the outer ns
    outer ns            eth0 198.18.<n>.2 ---veth--- srv ns eth0 198.18.<n>.1 (listener on one TCP port)

The server sits one veth hop away from the relay rather than on an address of the outer namespace
itself, as it does for a real container: the relay's sockets then cross a 1500-byte Ethernet path
and refusals come from another kernel, not over loopback. (Measured: both relays gave the same TCP
answers either way, so this is realism, not a fix.)

Addresses are configured by hand (never `--configure` / `--config-net`): those would install a
default route in the inner namespace, and the lab must never have one (brief rule 1). The inner
namespace gets exactly one route, to the server's /24 via the relay's gateway address.

Every namespace and PID is written to a state file before it is used (hostprint.lab.state), so
`stop()` — and `Lab.cleanup_stale(name)` after a crash — removes everything, by PID.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from hostprint.lab import netns as N
from hostprint.lab import state as S
from hostprint.lab.lab import Lab
from hostprint.lab.netns import LabError
from hostprint.lab.services import helper_env

KINDS = ("slirp4netns", "pasta")
# systemd's default (50-default.conf) on Debian hosts: every group may open ICMP datagram ("ping")
# sockets. Both relays answer the guest's echo requests through such sockets, so with the kernel's
# own default ("1 0", nobody may) a lab would show a relay that never answers ping, which is not
# what a rootless container on a stock Debian host shows.
PING_GROUP_RANGE = "0 2147483647"


def binary(kind: str) -> str | None:
    """Path of the relay program, None when its Debian package is not installed."""
    return shutil.which("slirp4netns" if kind == "slirp4netns" else "pasta")


@dataclass
class UserNet:
    """A running user-space-network lab (see the module docstring for the wiring)."""

    kind: str
    name: str
    subnet: int  # third octet of the server's /24; the tap side uses subnet + 1
    port: int
    server_ns: str
    outer_ns: str
    inner_ns: str
    server_addr: str
    outer_addr: str
    inner_addr: str
    gateway: str
    relay_pid: int | None = None
    server_pid: int | None = None
    _namespaces: list[str] = field(default_factory=list)
    _pids: list[dict[str, Any]] = field(default_factory=list)
    _procs: list[subprocess.Popen[Any]] = field(default_factory=list)
    _logs: dict[int, str] = field(default_factory=dict)  # pid -> stderr log (a pipe nobody drains could block a relay)
    _tmpdir: str | None = None

    def exec(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        """subprocess.run in the inner namespace, where the scanner sees only the relay's tap."""
        return subprocess.run(["ip", "netns", "exec", self.inner_ns, *argv], **kw)

    def routes(self) -> dict[str, list[str]]:
        """`ip route` of every namespace of this lab (tests assert that none has a default route)."""
        return {ns: N.run(["ip", "-n", ns, "route", "show"]).stdout.splitlines() for ns in self._namespaces}

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> UserNet:
        if self.kind not in KINDS:
            raise LabError(f"unknown user-space network {self.kind!r} (one of {', '.join(KINDS)})")
        if os.geteuid() != 0:
            raise LabError("user-space network labs need root (network namespaces)")
        exe = binary(self.kind)
        if exe is None:
            raise LabError(f"{self.kind} is not installed (Debian package "
                           f"{'slirp4netns' if self.kind == 'slirp4netns' else 'passt'})")
        Lab.cleanup_stale(self.name)  # same state file and hpl-<name>- prefix as a Lab
        # the "hostprint-lab-" prefix lets state.teardown() remove it, also after a crash
        self._tmpdir = tempfile.mkdtemp(prefix=f"hostprint-lab-{self.name}-")
        for ns in (self.server_ns, self.outer_ns, self.inner_ns):
            self._namespaces.append(ns)
            self._save()
            N.add_netns(ns)
            N.sysctl(ns, {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"})
        N.sysctl(self.outer_ns, {"net.ipv4.ping_group_range": PING_GROUP_RANGE})
        N.add_veth(self.server_ns, "eth0", self.outer_ns, "eth0")
        N.ip_batch(self.server_ns, [f"addr add {self.server_addr}/24 dev eth0", "link set eth0 up"])
        N.ip_batch(self.outer_ns, [f"addr add {self.outer_addr}/24 dev eth0", "link set eth0 up"])
        # The relay opens one real connection to the server per probe SYN (-O sends ~17 within a
        # second and never completes them), so the server must accept at once and hold them: the
        # lab's hold listener (listen backlog 128, select loop) does; a server that stalls its accept
        # queue makes the relay answer later probes with RSTs, which is the server's print, not the relay's.
        self.server_pid = self._spawn(self.server_ns, [sys.executable, "-m", "hostprint.lab.holdlistener",
                                                       "--port", str(self.port), "--bind", self.server_addr],
                                      "hold listener").pid
        self._wait(lambda: self.port in N.listening_tcp_ports(self.server_ns), "hold listener listening")
        self.relay_pid = self._spawn(self.outer_ns, self._relay_argv(exe), self.kind).pid
        self._wait(lambda: _has_link(self.inner_ns, "tap0"), f"{self.kind} tap0 in {self.inner_ns}")
        N.ip_batch(self.inner_ns, [f"addr add {self.inner_addr}/24 dev tap0", "link set tap0 up",
                                   f"route add {self.server_addr.rsplit('.', 1)[0]}.0/24 via {self.gateway}"])
        return self

    def _relay_argv(self, exe: str) -> list[str]:
        if self.kind == "slirp4netns":
            # --cidr puts slirp's virtual network (gateway .2) in the lab's range; no --configure
            # (default route); no DNS forwarder and no host-loopback alias (nothing to leak to).
            return [exe, "--netns-type=path", f"--cidr={self.inner_addr.rsplit('.', 1)[0]}.0/24",
                    "--disable-dns", "--disable-host-loopback", f"/run/netns/{self.inner_ns}", "tap0"]
        # pasta: -f keeps the PID ours (it forks by default); --runas 0 because, started as root,
        # it otherwise drops to "nobody" and then cannot join the named namespace; -i names the
        # template interface since the outer namespace has no default route to derive one from;
        # no port forwarding in either direction and no DHCP/NDP/RA/DNS, addresses are set by hand.
        return [exe, "-f", "-q", "--runas", "0", "--netns", self.inner_ns, "-I", "tap0", "-i", "eth0", "-4",
                "-a", self.inner_addr, "-n", "24", "-g", self.gateway, "-D", "none",
                "-t", "none", "-u", "none", "-T", "none", "-U", "none",
                "--no-dhcp", "--no-ndp", "--no-dhcpv6", "--no-ra"]

    def stop(self) -> None:
        """Idempotent and never raises: kill our PIDs, delete our namespaces, drop the state file."""
        st = {"namespaces": list(self._namespaces), "pids": list(self._pids), "tmpdir": self._tmpdir}
        problems = S.teardown(st)
        for p in self._procs:
            try:
                p.wait(timeout=1)
            except Exception:  # noqa: BLE001 - teardown goes on
                pass
        try:
            S.state_path(self.name).unlink()
        except OSError:
            pass
        self._namespaces.clear()
        self._pids.clear()
        self._procs.clear()
        self._logs.clear()
        self._tmpdir = None
        if problems:
            print(f"hostprint usernet {self.name}: teardown problems: {problems}", file=sys.stderr)

    # ---- helpers ----------------------------------------------------------------------------------
    def _spawn(self, ns: str, argv: list[str], what: str) -> subprocess.Popen[Any]:
        # `ip netns exec` execs the command, so the PID is the program's own; its own session makes
        # the process group exactly the program and its children for the kill.
        assert self._tmpdir is not None
        log = os.path.join(self._tmpdir, f"{what.replace(' ', '-')}.log")
        with open(log, "ab") as err:
            p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=err, start_new_session=True, env=helper_env())
        self._procs.append(p)
        self._logs[p.pid] = log
        self._pids.append(S.pid_record(p.pid, what))
        self._save()
        return p

    def _wait(self, ready: Any, what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p for p in self._procs if p.poll() is not None]
            if dead:
                with open(self._logs[dead[0].pid], "rb") as f:
                    err = f.read().decode(errors="replace")
                raise LabError(f"waiting for {what}: {str(dead[0].args)[:80]} exited "
                               f"{dead[0].returncode}: {err.strip()[-300:]}")
            if time.monotonic() > deadline:
                raise LabError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def _save(self) -> None:
        S.write_state(self.name, {"namespaces": self._namespaces, "pids": self._pids, "tmpdir": self._tmpdir})


def _has_link(ns: str, dev: str) -> bool:
    return N.run(["ip", "-n", ns, "link", "show", dev], check=False).returncode == 0


@contextmanager
def usernet(kind: str, name: str, subnet: int, port: int = 80) -> Iterator[UserNet]:
    """A running lab of `kind` ("slirp4netns" or "pasta"), torn down on every exit path.

    name: 1-12 chars [a-z0-9], unique per test module (namespaces hpl-<name>-srv/-out/-in).
    subnet: third octet of the server's 198.18.<subnet>.0/24 (0-253); the tap side uses subnet + 1.
    """
    if not re.fullmatch(r"[a-z0-9]{1,12}", name):
        raise LabError(f"bad usernet lab name {name!r}: 1-12 chars [a-z0-9]")
    if not 0 <= subnet < 254:
        raise LabError(f"bad subnet {subnet}: third octet 0-253")
    net, tap = f"198.18.{subnet}", f"198.18.{subnet + 1}"
    # slirp's virtual gateway is .2 of its --cidr; pasta answers ARP for any address on the tap, so
    # the same .2 serves both and the inner namespace looks the same for either relay.
    u = UserNet(kind=kind, name=name, subnet=subnet, port=port,
                server_ns=f"hpl-{name}-srv", outer_ns=f"hpl-{name}-out", inner_ns=f"hpl-{name}-in",
                server_addr=f"{net}.1", outer_addr=f"{net}.2", inner_addr=f"{tap}.100", gateway=f"{tap}.2")
    try:
        yield u.start()
    finally:
        u.stop()
