"""A minimal IPv6 lab for the engine tests, and the tasks those tests run inside it.

Three namespaces, addresses only from 2001:2::/48 (RFC 5180) and 198.18.0.0/15, no default route,
router advertisements and solicitations off, DAD off (so addresses are usable at once):

    A eth0 2001:2:0:1::1, 198.18.200.1  ---  R eth0 2001:2:0:1::2, 198.18.200.2   (on-link target)
                                             R eth1 2001:2:0:2::1  (MTU 1280)  ---  B eth0 2001:2:0:2::2
    A routes 2001:2:0:2::/64 via R; B routes 2001:2:0:1::/64 via R; R forwards.

R is the on-link target (TCP listener on 8080, ICMPv6 errors not rate-limited); B sits behind R so
that R's kernel produces Time Exceeded (hop limit 1) and Packet Too Big (1280-byte link). The
tests build probes with hostprint's codecs in the test process, a task run with `ip netns exec`
sends them through the engine (Link, ND, BPF) and returns every frame it saw, and the test decodes
them: the assertions and the decoder under test stay in the test process.

Run as a script, this module is the task runner: `python3 ipv6_lab.py TASK JSON` prints JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

A_V6, R_V6, R_V6_FAR, B_V6 = "2001:2:0:1::1", "2001:2:0:1::2", "2001:2:0:2::1", "2001:2:0:2::2"
A_V4, R_V4 = "198.18.200.1", "198.18.200.2"
A_MAC, R_MAC = "02:68:36:00:01:01", "02:68:36:00:01:02"
LISTEN_PORT = 8080

LISTENER = ("import socket, time\n"
            "s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('::', {LISTEN_PORT})); s.listen(64)\n"
            "print('ready', flush=True)\n"
            "while True:\n    time.sleep(3600)\n")

QUIET = {
    "net.ipv6.conf.all.accept_ra": "0", "net.ipv6.conf.default.accept_ra": "0",
    "net.ipv6.conf.all.router_solicitations": "0", "net.ipv6.conf.default.router_solicitations": "0",
    "net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0",
    "net.ipv6.conf.all.autoconf": "0", "net.ipv6.conf.default.autoconf": "0",
    "net.ipv6.icmp.ratelimit": "0",
}


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {(r.stderr or r.stdout).strip()}")
    return r


class V6Lab:
    """Builds the three namespaces; `close()` removes them and the processes it started."""

    def __init__(self, tag: str | None = None):
        tag = tag or f"{os.getpid() % 100000}"
        self.a, self.r, self.b = f"h6{tag}a", f"h6{tag}r", f"h6{tag}b"
        self.procs: list[subprocess.Popen] = []
        self.made: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        for ns in (self.a, self.r, self.b):
            _run(["ip", "netns", "add", ns])
            self.made.append(ns)
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            self.sysctl(ns, QUIET)
        self.sysctl(self.r, {"net.ipv6.conf.all.forwarding": "1", "net.ipv4.icmp_ratelimit": "0"})
        _run(["ip", "link", "add", "eth0", "netns", self.a, "address", A_MAC, "type", "veth",
              "peer", "eth0", "netns", self.r, "address", R_MAC])
        _run(["ip", "link", "add", "eth1", "netns", self.r, "type", "veth", "peer", "eth0", "netns", self.b])
        batch = {
            self.a: [f"addr add {A_V6}/64 dev eth0 nodad", f"addr add {A_V4}/24 dev eth0", "link set eth0 up",
                     f"route add 2001:2:0:2::/64 via {R_V6} dev eth0"],
            self.r: [f"addr add {R_V6}/64 dev eth0 nodad", f"addr add {R_V4}/24 dev eth0", "link set eth0 up",
                     "link set eth1 mtu 1280", f"addr add {R_V6_FAR}/64 dev eth1 nodad", "link set eth1 up"],
            self.b: ["link set eth0 mtu 1280", f"addr add {B_V6}/64 dev eth0 nodad", "link set eth0 up",
                     f"route add 2001:2:0:1::/64 via {R_V6_FAR} dev eth0"],
        }
        for ns, lines in batch.items():
            _run(["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n")
        for ns in (self.a, self.r, self.b):
            assert "default" not in _run(["ip", "-n", ns, "-6", "route"]).stdout
            assert "default" not in _run(["ip", "-n", ns, "-4", "route"]).stdout
        p = self.spawn(self.r, [sys.executable, "-c", LISTENER], stdout=subprocess.PIPE)
        assert p.stdout.readline().strip() == "ready"

    @staticmethod
    def sysctl(ns: str, values: dict[str, str]) -> None:
        _run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", *[f"{k}={v}" for k, v in values.items()]])

    def spawn(self, ns: str, argv: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": ROOT}, **kw)
        self.procs.append(p)
        return p

    def task(self, ns: str, name: str, spec: dict, timeout: float = 60) -> dict:
        """Run one task of this module inside `ns` (the worktree's hostprint) and return its JSON."""
        r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__), name, json.dumps(spec)],
                           capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                           timeout=timeout, check=False)
        if r.returncode != 0:
            raise AssertionError(f"task {name} in {ns} failed:\n{r.stderr}")
        return json.loads(r.stdout)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()  # ip netns exec execs its command: this is the process we started
                p.wait(timeout=10)
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self.made.clear()


# --------------------------------------------------------------------------- tasks (run inside A or R)


def task_exchange(spec: dict) -> dict:
    """Open a Link on `iface` with our addresses, resolve `next_hop` by ND, send each probe (IPv6
    packets without Ethernet, hex) and return every frame received until `expect` non-ND frames
    came or `timeout` passed, plus the MAC that ND found."""
    import asyncio

    from hostprint.engine import ndp
    from hostprint.engine.link import Link
    from hostprint.engine.rstguard import RstGuard

    async def main() -> dict:
        link = Link(spec["iface"], spec["addresses"])
        link.start()
        got: list[tuple[int, bytes]] = []
        link.subscribe(lambda ts, fr: got.append((ts, bytes(fr))))
        guard = None
        try:
            if spec.get("guard"):
                guard = RstGuard(*spec["guard"], ifaces=[spec["iface"]])
                guard.install()
                guard.guard(*spec["guard_addrs"])
            mac = await ndp.resolve6(link, spec["next_hop"], timeout=1.0, tries=5)
            if mac is None:
                return {"mac": None, "frames": [], "ts": []}
            for probe in spec["probes"]:
                link.send(link.eth(mac, 0x86DD).encode() + bytes.fromhex(probe))
            deadline = time.monotonic() + spec.get("timeout", 5.0)
            while time.monotonic() < deadline:
                link.poll()
                replies = [f for _, f in got if not _is_nd(f)]
                if len(replies) >= spec.get("expect", 1) and not spec.get("full_wait"):
                    break
                await asyncio.sleep(0.01)
            link.poll()
            return {"mac": mac.hex(), "frames": [f.hex() for _, f in got], "ts": [t for t, _ in got]}
        finally:
            if guard is not None:
                guard.remove()
            link.close()

    return asyncio.run(main())


def _is_nd(fr: bytes) -> bool:
    return len(fr) > 54 and fr[12:14] == b"\x86\xdd" and fr[20] == 58 and fr[54] in (133, 134, 135, 136, 137)


def task_bpf_listen(spec: dict) -> dict:
    """Attach the program named in `spec` to a packet socket on eth0, say 'ready', and return the
    markers (last 8 bytes) of the frames that pass, until the frame ending in b'END-MARK' comes."""
    import select

    from hostprint.engine import afpacket, bpf

    progs = {
        "v6": lambda: bpf.receive_filter6(spec["addresses"]),
        "any": lambda: bpf.receive_filter_any(spec["addresses"]),
        "mixed_list": lambda: bpf.receive_filter(spec["addresses"]),
        "v4": lambda: bpf.receive_filter(spec["addresses"]),
    }
    s = afpacket.open_packet_socket("eth0", progs[spec["program"]]())
    s.setblocking(False)
    print("ready", flush=True)
    passed: list[str] = []
    deadline = time.monotonic() + spec.get("timeout", 20)
    while time.monotonic() < deadline:
        r, _, _ = select.select([s], [], [], 0.2)
        if not r:
            continue
        try:
            fr = s.recv(4096)
        except OSError:
            continue
        passed.append(fr[-8:].decode("latin-1"))
        if fr.endswith(b"END-MARK"):
            break
    s.close()
    return {"passed": passed}


def task_send_frames(spec: dict) -> dict:
    """Send raw Ethernet frames (hex) on `iface`, in order, with a short gap."""
    from hostprint.engine import afpacket

    s = afpacket.open_tx_socket(spec["iface"])
    for fr in spec["frames"]:
        s.send(bytes.fromhex(fr))
        time.sleep(0.02)
    s.close()
    return {"sent": len(spec["frames"])}


def task_routes(spec: dict) -> dict:
    import socket

    from hostprint.engine import route

    out = {}
    for dst in spec["targets"]:
        try:
            r = route.table6().lookup(dst)
            out[dst] = [r.iface, r.src, r.gateway, r.local]
        except Exception as e:  # noqa: BLE001 - reported to the test, which asserts on it
            out[dst] = ["error", str(e)]
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)  # the kernel's own choice (connect sends nothing)
    s.connect((spec["targets"][0], 9))
    out["kernel_source"] = s.getsockname()[0]
    s.close()
    out["neighbours"] = route.neighbours6(spec.get("iface", "eth0"))
    return out


TASKS = {"exchange": task_exchange, "bpf_listen": task_bpf_listen, "send_frames": task_send_frames,
         "routes": task_routes}

if __name__ == "__main__":
    print(json.dumps(TASKS[sys.argv[1]](json.loads(sys.argv[2]))), flush=True)
