"""Build, drive and tear down a lab: namespaces on a bridge, real daemons, firewall, loss, delay.

Topology (segment 1 is one flat L2 198.18.0.0/16, no default route anywhere):

    hpl-<lab>-scan eth0 (198.18.0.1) --p0--+
    hpl-<lab>-<host> eth0 ---------- pN ---+ br0 in hpl-<lab>-sw
    hpl-<lab>-<host> eth0 -- [hpl-<lab>-<host>-dly: tohost <relay> tosw] -- pM --+
    router eth0 on br0, router eth1 on br1 (198.19.0.0/16) with segment-2 hosts behind it

Teardown is the design centre: every namespace and PID goes into the state file as soon as it
exists, so a crash halfway through `up()` (or a killed test run) leaves something `down()` /
`cleanup_stale()` can remove completely.
"""

from __future__ import annotations

import atexit
import dataclasses
import ipaddress
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from hostprint.errors import UsageError
from hostprint.lab import netns as N
from hostprint.lab import state as S
from hostprint.lab.daemoncheck import ServiceFailure, rejected_line, run_checker
from hostprint.lab.netns import LabError
from hostprint.lab.services import REGISTRY, ServiceContext, ServiceKind, helper_env, parse_service
from hostprint.lab.spec import SCANNER_ADDR, SCANNER_ADDR6, HostSpec, LabSpec

LOSS_TABLE = "hostprint_loss"
FW_TABLE = "hostprint_fw"

#: Every lab namespace, before its interfaces exist (the default.* values apply to them): no router
#: advertisements or solicitations, no SLAAC, no duplicate address detection (addresses are usable
#: at once and nothing the lab did not configure appears). IPv6 rule: 2001:2::/48, link-local and
#: ff02:: on lab links only, no default route.
IPV6_QUIET = {
    "net.ipv6.conf.all.accept_ra": "0", "net.ipv6.conf.default.accept_ra": "0",
    "net.ipv6.conf.all.router_solicitations": "0", "net.ipv6.conf.default.router_solicitations": "0",
    "net.ipv6.conf.all.autoconf": "0", "net.ipv6.conf.default.autoconf": "0",
    "net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0",
}


def ns_name(lab: str, part: str) -> str:
    return f"hpl-{lab}-{part}"


def _mac_for(address: str) -> str:
    """Locally administered MAC from the address's last three octets: stable across runs."""
    o = ipaddress.ip_address(address).packed
    return "02:68:70:%02x:%02x:%02x" % (o[1], o[2], o[3])


@dataclass
class HostHandle:
    name: str
    ns: str
    address: str
    addresses: list[str]
    mac: str
    spec: HostSpec
    #: The host's IPv6 address in a dual-stack lab (None: IPv4 only).
    address6: str | None = None
    #: Namespace of the delay relay in front of this host, if any.
    relay_ns: str | None = None
    relay_pid: dict[str, Any] | None = None
    daemons: list[dict[str, Any]] = field(default_factory=list)
    loss_pct: float = 0.0
    delay: dict[str, Any] | None = None


class Lab:
    """A running lab. Use as a context manager: teardown happens on every exit path."""

    def __init__(self, spec: LabSpec, *, daemon_timeout: float = 15.0, keep: bool = False, strict: bool = True):
        """keep=True: leave it running when this process exits (the CLI `lab up`).
        strict=False: a daemon that cannot start is recorded in `failures` (and reported by
        `need()`) instead of failing the whole lab, so the rest of the lab still runs."""
        self.spec = spec
        self.name = spec.name
        self.daemon_timeout = daemon_timeout
        self.keep = keep
        self.strict = strict
        self.failures: list[ServiceFailure] = []
        self.scanner_ns = ns_name(spec.name, "scan")
        self.switch_ns = ns_name(spec.name, "sw")
        self.scanner_addr = SCANNER_ADDR
        self.scanner_addr6: str | None = SCANNER_ADDR6 if spec.ipv6 else None
        self.scanner_iface = "eth0"
        self.scanner_mac = _mac_for(SCANNER_ADDR)
        self.tmpdir: Path | None = None
        self.hosts: dict[str, HostHandle] = {}
        self._namespaces: list[str] = []
        self._pids: list[dict[str, Any]] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._etc: list[str] = []  # /etc/netns/<ns> directories this lab made
        self._up = False

    # ---- context manager -------------------------------------------------------------------
    def __enter__(self) -> Lab:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # ---- public API ------------------------------------------------------------------------
    def host(self, name: str) -> HostHandle:
        try:
            return self.hosts[name]
        except KeyError:
            raise UsageError(f"no host {name!r} in lab {self.name}") from None

    def resolve_ns(self, ns: str) -> str:
        """Accept a namespace name, a host name, or 'scan'."""
        if ns in ("scan", "scanner"):
            return self.scanner_ns
        if ns in self.hosts:
            return self.hosts[ns].ns
        return ns

    def exec(self, ns: str, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        """subprocess.run inside a namespace of this lab."""
        return subprocess.run(["ip", "netns", "exec", self.resolve_ns(ns), *argv], **kw)

    def spawn(self, ns: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Popen inside a namespace; the process (and its session) is killed by PID on down()."""
        kw.setdefault("start_new_session", True)
        p = subprocess.Popen(["ip", "netns", "exec", self.resolve_ns(ns), *argv], **kw)
        self._procs.append(p)
        self._track(p.pid, f"spawn {' '.join(argv)[:60]}")
        return p

    def set_loss(self, name: str, percent: float) -> None:
        """Drop `percent` % of packets entering and leaving the host (each direction independently),
        with nft `numgen random`. ARP is untouched, so loss looks like IP-level loss."""
        h = self.host(name)
        if not 0 <= percent <= 100:
            raise UsageError(f"bad loss percent {percent!r} (0-100)")
        N.nft_delete_table(h.ns, "inet", LOSS_TABLE)
        h.loss_pct = float(percent)
        if percent > 0:
            thresh = int(round(percent * 10000))  # parts per million
            rule = "drop" if thresh >= 1_000_000 else f"numgen random mod 1000000 < {thresh} drop"
            N.nft_load(h.ns, _loss_ruleset(rule))
        self._write_state()

    def set_delay(self, name: str, mean_ms: float = 0.0, jitter_ms: float = 0.0, *,
                  dist: str = "exp", fifo: bool = True, direction: str = "both",
                  timeout: float = 3.0) -> None:
        """Delay each frame by mean_ms + a random jitter (dist 'exp': exponential with mean
        jitter_ms; 'uniform': uniform in [0, 2*jitter_ms]) in `direction` ('both', 'to_host',
        'from_host'). With 'both' a round trip gains at least 2*mean_ms. Returns once the relay
        has applied it."""
        h = self.host(name)
        if h.relay_ns is None or h.relay_pid is None or self.tmpdir is None:
            raise UsageError(f"host {name!r} has no delay relay (HostSpec(delay_relay=True))")
        if mean_ms < 0 or jitter_ms < 0:
            raise UsageError(f"bad delay {mean_ms!r}/{jitter_ms!r}: must be >= 0")
        if dist not in ("exp", "uniform"):
            raise UsageError(f"bad delay distribution {dist!r} (exp, uniform)")
        if direction not in ("both", "to_host", "from_host"):
            raise UsageError(f"bad delay direction {direction!r} (both, to_host, from_host)")
        from hostprint.lab.delayrelay import read_ack, write_control

        ctl = self.tmpdir / name / "delay.json"
        gen = write_control(ctl, mean_ms=mean_ms, jitter_ms=jitter_ms, dist=dist, fifo=fifo,
                            direction=direction)
        if not S.is_same_process(h.relay_pid):
            raise LabError(f"delay relay for {name} is not running (log {ctl.parent / 'relay.log'})")
        os.kill(int(h.relay_pid["pid"]), signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while read_ack(ctl) < gen:
            if time.monotonic() > deadline:
                raise LabError(f"delay relay for {name} did not apply settings (log {ctl.parent / 'relay.log'})")
            time.sleep(0.01)
        h.delay = {"mean_ms": mean_ms, "jitter_ms": jitter_ms, "dist": dist, "fifo": fifo,
                   "direction": direction}
        self._write_state()

    def status(self) -> dict[str, Any]:
        st = S.read_state(self.name)
        return status_from_state(st) if st else {"name": self.name, "running": False}

    @classmethod
    def cleanup_stale(cls, name: str) -> list[str]:
        """Remove whatever a previous lab of this name left: state file contents first, then any
        namespace with its prefix (covers a crash before the state file was written)."""
        problems: list[str] = []
        st = S.read_state(name)
        if st:
            problems += S.teardown(st)
        prefix = ns_name(name, "")
        leftovers = [ns for ns in S.list_netns() if ns.startswith(prefix)]
        etc = [str(p) for p in Path("/etc/netns").glob(prefix + "*")] if Path("/etc/netns").is_dir() else []
        if leftovers or etc:
            problems += S.teardown({"namespaces": leftovers, "pids": [], "etc_netns": etc})
        try:
            S.state_path(name).unlink()
        except FileNotFoundError:
            pass
        return problems

    @property
    def domain(self) -> str:
        """The lab's DNS zone: every host is <host>.<domain> (answered by a dns:53 host, if any)."""
        return f"{self.name}.hostprint.test"

    @classmethod
    def running(cls, name: str) -> dict[str, Any] | None:
        """The state of a lab of this name that is in use: kept (`lab up`) or owned by a live
        process, with its namespaces present. None: no such lab, or only remains to clean."""
        st = S.read_state(name)
        if not st or not st.get("namespaces"):
            return None
        existing = set(S.list_netns())
        if not all(ns in existing for ns in st["namespaces"]):
            return None
        owner = st.get("owner_pid")
        if owner == os.getpid():  # this process's own lab: it may rebuild it
            return None
        owner_alive = isinstance(owner, int) and S.proc_start_time(owner) is not None
        return st if st.get("keep") or owner_alive else None

    # ---- lifecycle ---------------------------------------------------------------------------
    def up(self) -> Lab:
        self.spec.validate()
        if os.geteuid() != 0:
            raise UsageError("the lab needs root (network namespaces)")
        if self.running(self.name) is not None:
            # Never tear down (SIGTERM/SIGKILL) a lab somebody is using.
            raise UsageError(f"lab {self.name} is already running; use it (hostprint lab exec --name {self.name} "
                             f"-- ...) or remove it first (hostprint lab down --name {self.name})")
        self.cleanup_stale(self.name)
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f"hostprint-lab-{self.name}-"))
        self.tmpdir.chmod(0o755)
        self._up = True
        if not self.keep:
            atexit.register(self.down)
        self._write_state()
        routers = [h for h in self.spec.hosts if h.router]
        self._build_switch(bool(routers))
        self._add_ns(self.scanner_ns)
        N.add_veth(self.scanner_ns, "eth0", self.switch_ns, "p0")
        self._attach_port("p0", "br0")
        N.ip_batch(self.scanner_ns, [
            f"link set eth0 address {_mac_for(SCANNER_ADDR)}",
            f"addr add {SCANNER_ADDR}/16 dev eth0",
            *([f"addr add {SCANNER_ADDR6}/64 dev eth0 nodad"] if self.scanner_addr6 else []),
            "link set eth0 up",
        ])
        for i, hs in enumerate(self.spec.hosts, start=1):
            self._build_host(i, hs)
        if routers:
            self._route_segments(routers[0])
        self._write_dns()
        self._write_state()
        self._start_services()
        self._write_state()
        return self

    def down(self) -> None:
        """Idempotent; never raises. Kills tracked PIDs, deletes namespaces, removes temp dir."""
        try:
            atexit.unregister(self.down)
        except Exception:  # noqa: BLE001
            pass
        if not self._up:
            return
        try:
            st = S.read_state(self.name) or {}
            st.setdefault("namespaces", [])
            st.setdefault("pids", [])
            # Our in-memory view may be newer than the file (crash between steps).
            st["namespaces"] = list(dict.fromkeys([*st["namespaces"], *self._namespaces]))
            seen = {r["pid"] for r in st["pids"]}
            st["pids"] = [*st["pids"], *[r for r in self._pids if r["pid"] not in seen]]
            st["tmpdir"] = st.get("tmpdir") or (str(self.tmpdir) if self.tmpdir else None)
            st["etc_netns"] = list(dict.fromkeys([*st.get("etc_netns", []), *self._etc]))
            S.teardown(st)
            for p in self._procs:
                try:
                    p.wait(timeout=0.5)
                except Exception:  # noqa: BLE001
                    pass
            try:
                S.state_path(self.name).unlink()
            except OSError:
                pass
        except Exception as e:  # noqa: BLE001 - never raise from down()
            print(f"hostprint lab {self.name}: teardown problem: {e}", file=sys.stderr)
        finally:
            self._up = False
            self._namespaces.clear()
            self._pids.clear()
            self._procs.clear()
            self._etc.clear()

    # ---- building blocks ---------------------------------------------------------------------
    def _add_ns(self, ns: str) -> None:
        self._namespaces.append(ns)
        self._write_state()
        N.add_netns(ns)
        if ns != self.switch_ns:
            N.sysctl(ns, IPV6_QUIET)

    def _build_switch(self, two_segments: bool) -> None:
        self._add_ns(self.switch_ns)
        # The switch has no addresses; IPv6 off keeps it from emitting its own traffic.
        N.sysctl(self.switch_ns, {"net.ipv6.conf.all.disable_ipv6": "1",
                                  "net.ipv6.conf.default.disable_ipv6": "1"})
        # A switch, not a firewall: when br_netfilter is in the kernel (it is here), every bridged
        # frame also went through the switch namespace's empty iptables/ip6tables/arptables hooks
        # (measured: br_nf_* among the top kernel symbols of a full-port scan). Off in this namespace
        # only (the sysctls are per namespace); nothing in the lab filters in the switch.
        bridge_nf = {f"net.bridge.bridge-nf-call-{t}": "0" for t in ("iptables", "ip6tables", "arptables")}
        if all(os.path.exists("/proc/sys/net/bridge/bridge-nf-call-" + t) for t in ("iptables", "ip6tables", "arptables")):
            N.sysctl(self.switch_ns, bridge_nf)
        for br in ["br0", "br1"] if two_segments else ["br0"]:
            N.ip_batch(self.switch_ns, [
                f"link add {br} type bridge stp_state 0 forward_delay 0 mcast_snooping 0",
                f"link set {br} up",
            ])

    def _attach_port(self, port: str, bridge: str) -> None:
        N.ip_batch(self.switch_ns, [f"link set {port} master {bridge}", f"link set {port} up"])

    def _build_host(self, idx: int, hs: HostSpec) -> None:
        ns = ns_name(self.name, hs.name)
        self._add_ns(ns)
        port = f"p{idx}"
        bridge = "br1" if hs.segment == 2 else "br0"
        relay_ns = None
        if hs.delay_relay:
            relay_ns = ns_name(self.name, f"{hs.name}-dly")
            self._add_ns(relay_ns)
            N.sysctl(relay_ns, {"net.ipv6.conf.all.disable_ipv6": "1",
                                "net.ipv6.conf.default.disable_ipv6": "1"})
            N.add_veth(ns, "eth0", relay_ns, "tohost")
            N.add_veth(relay_ns, "tosw", self.switch_ns, port)
            N.ip_batch(relay_ns, ["link set tohost promisc on", "link set tosw promisc on",
                                  "link set tohost up", "link set tosw up"])
        else:
            N.add_veth(ns, "eth0", self.switch_ns, port)
        self._attach_port(port, bridge)
        mac = hs.mac or _mac_for(hs.address)
        v6 = self.spec.v6(hs)
        addrs = [hs.address, *hs.extra_addresses] + ([v6] if v6 else [])
        lines = [f"link set eth0 address {mac}"]
        lines += [f"addr add {a}/64 dev eth0 nodad" if ":" in a else f"addr add {a}/16 dev eth0" for a in addrs]
        lines.append("link set eth0 up")
        if hs.router:
            N.add_veth(ns, "eth1", self.switch_ns, f"q{idx}")
            self._attach_port(f"q{idx}", "br1")
            lines += [f"link set eth1 address {_mac_for(hs.router_address2)}",
                      f"addr add {hs.router_address2}/16 dev eth1", "link set eth1 up"]
            if v6:
                lines.append(f"addr add {self.spec.v6_router2(hs)}/64 dev eth1 nodad")
        N.ip_batch(ns, lines)
        sysctls = dict(hs.sysctls)
        if hs.router:
            sysctls.setdefault("net.ipv4.ip_forward", "1")
            if v6:
                sysctls.setdefault("net.ipv6.conf.all.forwarding", "1")
        try:
            N.sysctl(ns, sysctls)
        except LabError as e:
            raise UsageError(f"host {hs.name}: sysctls {sysctls} rejected: {e}") from None
        fw = _firewall_ruleset(hs, ipv6=v6 is not None)
        if fw:
            try:
                N.nft_load(ns, fw)
            except LabError as e:
                raise UsageError(f"host {hs.name}: bad firewall rules: {e}") from None
        h = HostHandle(name=hs.name, ns=ns, address=hs.address, addresses=addrs,
                       mac=N.link_mac(ns, "eth0") or mac, spec=hs, relay_ns=relay_ns, address6=v6)
        self.hosts[hs.name] = h
        if relay_ns:
            self._start_relay(h)

    def _write_dns(self) -> None:
        """The lab's host table for its DNS server, and — when a host serves DNS on port 53 — the
        scanner namespace's resolv.conf pointing at it (`ip netns exec` mounts
        /etc/netns/<ns>/resolv.conf over /etc/resolv.conf), so names never leave the lab."""
        from hostprint.lab.services import LAB_HOSTS

        assert self.tmpdir is not None
        lines = [f"{SCANNER_ADDR} scan.{self.domain} scan"]
        if self.scanner_addr6:
            lines.append(f"{self.scanner_addr6} scan.{self.domain} scan")
        for hs in self.spec.hosts:
            v6 = self.spec.v6(hs)
            for a in [hs.address, *hs.extra_addresses, *([v6] if v6 else [])]:
                lines.append(f"{a} {hs.name}.{self.domain} {hs.name}")
        (self.tmpdir / LAB_HOSTS).write_text("\n".join(lines) + "\n")
        dns = next((hs for hs in self.spec.hosts if any(parse_service(t) == ("dns", 53) for t in hs.services)), None)
        if dns is None:
            return
        etc = Path("/etc/netns") / self.scanner_ns
        etc.mkdir(parents=True, exist_ok=True)
        self._etc.append(str(etc))
        self._write_state()
        (etc / "resolv.conf").write_text(f"nameserver {dns.address}\nsearch {self.domain}\noptions timeout:1 attempts:1\n")

    def _route_segments(self, router: HostSpec) -> None:
        from hostprint.lab.spec import SEGMENT1_V6, SEGMENT2_V6

        N.run(["ip", "-n", self.scanner_ns, "route", "add", "198.19.0.0/16", "via", router.address])
        v6 = self.spec.v6(router)
        if v6 and self.scanner_addr6:
            N.run(["ip", "-n", self.scanner_ns, "-6", "route", "add", str(SEGMENT2_V6), "via", v6])
        for hs in self.spec.hosts:
            if hs.segment == 2:
                N.run(["ip", "-n", self.hosts[hs.name].ns, "route", "add", "198.18.0.0/16",
                       "via", router.router_address2])
                if v6 and self.spec.v6(hs):
                    N.run(["ip", "-n", self.hosts[hs.name].ns, "-6", "route", "add", str(SEGMENT1_V6),
                           "via", self.spec.v6_router2(router)])

    def _start_relay(self, h: HostHandle) -> None:
        from hostprint.lab.delayrelay import read_ack, write_control

        assert self.tmpdir is not None and h.relay_ns is not None
        d = self.tmpdir / h.name
        d.mkdir(parents=True, exist_ok=True)
        ctl = d / "delay.json"
        write_control(ctl, mean_ms=0.0, jitter_ms=0.0, dist="exp", fifo=True, direction="both")
        log = open(d / "relay.log", "ab")
        p = subprocess.Popen(
            ["ip", "netns", "exec", h.relay_ns, sys.executable, "-m", "hostprint.lab.delayrelay",
             "--host-if", "tohost", "--switch-if", "tosw", "--control", str(ctl)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=helper_env())
        log.close()
        self._procs.append(p)
        h.relay_pid = self._track(p.pid, f"delayrelay {h.name}")
        deadline = time.monotonic() + self.daemon_timeout
        while read_ack(ctl) < 1:
            if p.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"delay relay for {h.name} did not start (log {d / 'relay.log'})")
            time.sleep(0.01)
        h.delay = {"mean_ms": 0.0, "jitter_ms": 0.0, "dist": "exp", "fifo": True, "direction": "both"}

    def _start_services(self) -> None:
        """Check every daemon's config with its own checker, start the daemons, wait until each
        listens. A daemon that fails any step is one ServiceFailure (daemon, package version,
        rejected line): fatal in a strict lab, recorded and skipped otherwise (`need()`)."""
        assert self.tmpdir is not None
        planned: list[tuple[HostHandle, ServiceKind, int, ServiceContext, list[str]]] = []
        for hs in self.spec.hosts:
            h = self.hosts[hs.name]
            for text in hs.services:
                kind_name, port = parse_service(text)
                kind = REGISTRY[kind_name]
                d = self.tmpdir / hs.name / f"{kind_name}-{port}"
                d.mkdir(parents=True, exist_ok=True)
                ctx = ServiceContext(kind=kind_name, port=port, host=hs.name, dir=d, lab_dir=self.tmpdir,
                                     ipv6=h.address6 is not None)
                try:
                    argv = kind.build(ctx)
                except (OSError, subprocess.SubprocessError, UsageError, LabError) as e:
                    self._fail(ServiceFailure(kind_name, port, hs.name, kind.packages, "set-up", str(e)))
                    continue
                planned.append((h, kind, port, ctx, argv))
        planned = self._check_configs(planned)
        waiting: list[tuple[HostHandle, ServiceKind, int, ServiceContext, subprocess.Popen[bytes], dict[str, Any]]] = []
        for h, kind, port, ctx, argv in planned:
            out = open(ctx.dir / "stdio.log", "ab")
            p = subprocess.Popen(["ip", "netns", "exec", h.ns, *argv], stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                 cwd=str(ctx.dir), env=helper_env())
            out.close()
            self._procs.append(p)
            rec = self._track(p.pid, f"{kind.name}:{port} on {h.name}")
            h.daemons.append({**rec, "kind": kind.name, "port": port, "log": str(ctx.log),
                              "stdio": str(ctx.dir / "stdio.log")})
            waiting.append((h, kind, port, ctx, p, rec))
        deadline = time.monotonic() + self.daemon_timeout
        while waiting:
            by_ns: dict[str, set[int]] = {}
            still = []
            for h, kind, port, ctx, p, rec in waiting:
                if p.poll() is not None:
                    self._fail(_runtime_failure(kind, port, h.name, ctx, f"exited with {p.returncode}", "start"))
                    continue
                if h.ns not in by_ns:
                    by_ns[h.ns] = N.listening_tcp_ports(h.ns)
                if port not in by_ns[h.ns]:
                    still.append((h, kind, port, ctx, p, rec))
            waiting = still
            if waiting:
                if time.monotonic() > deadline:
                    for h, kind, port, ctx, _p, rec in waiting:
                        S.kill_records([rec], grace=1.0)
                        self._fail(_runtime_failure(kind, port, h.name, ctx,
                                                    f"not listening after {self.daemon_timeout:.0f}s", "listen"))
                    break
                time.sleep(0.03)

    def _check_configs(self, planned: list[tuple[HostHandle, ServiceKind, int, ServiceContext, list[str]]]
                       ) -> list[tuple[HostHandle, ServiceKind, int, ServiceContext, list[str]]]:
        """Run the checkers side by side (each in the daemon's namespace); keep what passes."""
        from concurrent.futures import ThreadPoolExecutor

        def one(item: tuple[HostHandle, ServiceKind, int, ServiceContext, list[str]]) -> ServiceFailure | None:
            h, kind, port, ctx, argv = item
            if kind.check is None:
                return None
            return check_config(kind, ctx, argv, ns=h.ns)

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(one, planned))
        kept = []
        for item, failure in zip(planned, results):
            if failure is None:
                kept.append(item)
            else:
                self._fail(failure)
        return kept

    def _fail(self, failure: ServiceFailure) -> None:
        if self.strict:
            raise LabError(failure.message())
        self.failures.append(failure)
        print(f"hostprint lab {self.name}: {failure.message()}", file=sys.stderr, flush=True)

    def need(self, *selectors: str) -> None:
        """Raise DaemonUnavailable if a daemon the caller needs did not start. Selectors are a kind
        ('ipp'), kind:port ('ipp:10631') or kind:port@host; none means every daemon of the lab."""
        def wanted(f: ServiceFailure) -> bool:
            if not selectors:
                return True
            return any(sel in (f.kind, f"{f.kind}:{f.port}", f.key) for sel in selectors)

        bad = [f.message() for f in self.failures if wanted(f)]
        if bad:
            raise DaemonUnavailable("\n".join(bad))

    def _track(self, pid: int, what: str) -> dict[str, Any]:
        rec = S.pid_record(pid, what)
        self._pids.append(rec)
        self._write_state()
        return rec

    def _write_state(self) -> None:
        if not self._up:
            return
        S.write_state(self.name, {
            "name": self.name,
            "tmpdir": str(self.tmpdir) if self.tmpdir else None,
            "namespaces": self._namespaces,
            "pids": self._pids,
            "scanner": {"ns": self.scanner_ns, "address": self.scanner_addr, "iface": self.scanner_iface,
                        **({"address6": self.scanner_addr6} if self.scanner_addr6 else {})},
            "switch_ns": self.switch_ns,
            "hosts": {n: {"ns": h.ns, "address": h.address, "addresses": h.addresses, "mac": h.mac,
                          **({"address6": h.address6} if h.address6 else {}),
                          "relay_ns": h.relay_ns, "relay_pid": h.relay_pid, "daemons": h.daemons,
                          "loss_pct": h.loss_pct, "delay": h.delay,
                          "silent": h.spec.silent, "firewall": h.spec.firewall_lines(),
                          "sysctls": h.spec.sysctls}
                      for n, h in self.hosts.items()},
            "spec": dataclasses.asdict(self.spec),
            "created": time.time(),
            "owner_pid": os.getpid(),
            "keep": self.keep,
            "etc_netns": self._etc,
            "domain": self.domain,
        })


def _loss_ruleset(rule: str) -> str:
    # Priority -300 (raw): before conntrack and before the host's own firewall table, so a lost
    # packet is lost for everything. prerouting also covers packets a router forwards.
    return (f"table inet {LOSS_TABLE} {{\n"
            f" chain pre {{\n  type filter hook prerouting priority -300; policy accept;\n  {rule}\n }}\n"
            f" chain out {{\n  type filter hook output priority -300; policy accept;\n  {rule}\n }}\n"
            "}\n")


def _firewall_ruleset(hs: HostSpec, ipv6: bool = False) -> str:
    inp = hs.firewall_lines()
    if hs.silent:
        # IPv4's ARP is not in the inet family, so a silent host still answers it; its IPv6
        # analogue, Neighbor Discovery, is ICMPv6 and must be let through by hand.
        nd = ["icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept"] if ipv6 else []
        inp = [*inp, *nd, "drop"]
    out = hs.firewall_output_lines()
    if not inp and not out:
        return ""
    body = "".join(f"  {ln}\n" for ln in inp)
    obody = "".join(f"  {ln}\n" for ln in out)
    return (f"table inet {FW_TABLE} {{\n"
            f" chain input {{\n  type filter hook input priority 0; policy accept;\n{body} }}\n"
            f" chain output {{\n  type filter hook output priority 0; policy accept;\n{obody} }}\n"
            "}\n")


class DaemonUnavailable(AssertionError):
    """A daemon a test needs did not start; the message says which, from which package, and why.
    An AssertionError, so a test that needs the daemon fails (not errors) with that message."""


def check_config(kind: ServiceKind, ctx: ServiceContext, argv: list[str], *, ns: str | None = None
                 ) -> ServiceFailure | None:
    """Run the kind's config checker (in namespace `ns` if given); None when it accepts."""
    assert kind.check is not None
    checker = kind.check(ctx, argv)
    code, out = run_checker(["ip", "netns", "exec", ns, *checker] if ns else checker)
    failed = code != 0 or bool(kind.check_fails_on and re.search(kind.check_fails_on, out))
    if not failed:
        return None
    configs = [ctx.dir / kind.config] if kind.config else []
    line, complaint = rejected_line(out, configs)
    prog = os.path.basename(checker[0]) + (" " + checker[1] if len(checker) > 1 and checker[1].startswith("-") else "")
    return ServiceFailure(kind.name, ctx.port, ctx.host, kind.packages, f"config check ({prog})",
                          complaint or f"exit {code}", line)


def _runtime_failure(kind: ServiceKind, port: int, host: str, ctx: ServiceContext, what: str,
                     stage: str) -> ServiceFailure:
    text = ""
    for p in (ctx.log, ctx.dir / "stdio.log"):
        try:
            text += p.read_text(errors="replace")[-4000:] + "\n"
        except OSError:
            pass
    line, complaint = rejected_line(text, [ctx.dir / kind.config] if kind.config else [])
    detail = what + (f": {complaint}" if complaint else "")
    return ServiceFailure(kind.name, port, host, kind.packages, stage, detail, line,
                          log=f"{ctx.log}, {ctx.dir / 'stdio.log'}")


def status_from_state(st: dict[str, Any]) -> dict[str, Any]:
    """What is actually running, checked against the kernel, not just what the file claims."""
    existing = set(S.list_netns())
    hosts = {}
    for name, h in st.get("hosts", {}).items():
        listening = N.listening_tcp_ports(h["ns"]) if h["ns"] in existing else set()
        hosts[name] = {
            "ns": h["ns"], "address": h["address"], "addresses": len(h.get("addresses", [])),
            **({"address6": h["address6"]} if h.get("address6") else {}),
            "mac": h.get("mac"), "ns_exists": h["ns"] in existing,
            "services": [{"kind": d["kind"], "port": d["port"], "pid": d["pid"],
                          "alive": S.is_same_process(d), "listening": d["port"] in listening}
                         for d in h.get("daemons", [])],
            "loss_pct": h.get("loss_pct", 0.0), "delay": h.get("delay"),
            "silent": h.get("silent", False), "firewall": h.get("firewall", []),
            "sysctls": h.get("sysctls", {}),
        }
    return {
        "name": st.get("name"),
        "kept": bool(st.get("keep")),
        "domain": st.get("domain"),
        "running": all(ns in existing for ns in st.get("namespaces", [])) and bool(st.get("namespaces")),
        "scanner": st.get("scanner"),
        "namespaces": {ns: ns in existing for ns in st.get("namespaces", [])},
        "tmpdir": st.get("tmpdir"),
        "hosts": hosts,
    }


def lab_status(name: str) -> dict[str, Any] | None:
    st = S.read_state(name)
    return status_from_state(st) if st else None

