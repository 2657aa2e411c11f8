"""Captures of real scanners and fingerprinters, made here in a lab (issue 18).

A lab with one target (`tgt`: nginx on 80, OpenSSH on 22, on 4001 a service no fingerprint DB
knows that says one line and closes (lab kind tcp-line: nmap -sV goes through its whole probe list
there in well under a second), ICMP errors not rate-limited), six
bystanders (`b1`..`b6`, for sweeps: a sweep needs 8 live hosts, as the kernel sends nothing to an
address ARP does not resolve) and a client (`cli`, for normal traffic). Each run is one real
tool from the scanner namespace (Debian's nmap, masscan and zmap; hostprint's own scan, -O,
--cron-os and amap mode with amap 5.4's shipped triggers), captured by tcpdump on the scanner's
switch port (it sees every probe and every answer); normal traffic (curl, a browser-like client
with six parallel keep-alive connections, SSH sessions) is captured on the target's port. Nothing
here crafts a packet: every byte in the captures was sent by the tool named in the file name.

`make(..., live={})` also watches every run with `hostprint passive -i` on the same switch port,
beside tcpdump (`Watch`): one run of each tool for the -r tests and the live ones.

Used by tests/test_passive_detect.py (made anew in each test run) and by bench/passive (the
mixed capture); as a script: `python3 tests/passive_tools.py DIR [RUN ...]` writes DIR/RUN.pcap.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TGT, B1, B2, CLI = "198.18.8.10", "198.18.8.11", "198.18.8.12", "198.18.8.20"
BYSTANDERS = [B1, B2, "198.18.8.13", "198.18.8.14", "198.18.8.15", "198.18.8.16"]  # 8 live hosts with tgt, cli
TGT_MAC = "02:68:70:08:00:0a"
LINE_PORT = 4001  # the target's tcp-line service: listed by no probe of nmap-service-probes
AMAP_DIR = Path(os.environ.get("HOSTPRINT_AMAP_DIR", str(ROOT.parent / "shared" / "datasets" / "amap-5.4")))
if not AMAP_DIR.exists():
    AMAP_DIR = Path("/work/shared/datasets/amap-5.4")
QUIET = {"net.ipv4.icmp_ratelimit": "0", "net.ipv4.icmp_msgs_per_sec": "100000"}

BROWSER_PY = r"""
import socket, sys, threading
dst = sys.argv[1]
def conn(i):
    s = socket.create_connection((dst, 80))
    for path in ("/", "/style.css", "/app.js", "/logo.png", "/favicon.ico")[i % 2:]:
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) "
                   "Gecko/20100101 Firefox/128.0\r\nAccept: */*\r\nAccept-Language: en-US\r\n"
                   "Connection: keep-alive\r\n\r\n" % (path, dst)).encode())
        got = b""
        while b"\r\n\r\n" not in got:
            d = s.recv(65536)
            if not d:
                break
            got += d
        head, _, body = got.partition(b"\r\n\r\n")
        n = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                n = int(line.split(b":")[1])
        while len(body) < n:
            d = s.recv(65536)
            if not d:
                break
            body += d
    s.close()
ts = [threading.Thread(target=conn, args=(i,)) for i in range(6)]
[t.start() for t in ts]
[t.join() for t in ts]
"""


def hostprint(*args: str) -> list[str]:
    return [sys.executable, "-m", "hostprint", *args]


# name -> (where tcpdump listens: "scan" or "tgt", argv run in the scanner namespace (or a callable
# given the lab for normal traffic), the tool the detector must name or None for normal traffic)
def runs(lab_mac: str = TGT_MAC) -> dict[str, tuple[str, list[str] | Callable, str | None]]:
    nm = ["nmap", "-n", "-Pn", "--disable-arp-ping", "-e", "eth0"]
    return {
        "nmap-sS": ("scan", [*nm, "-sS", "-p", "1-1000", TGT], "nmap"),
        "nmap-full": ("scan", [*nm, "-sS", "-p-", "--max-rate", "5000", TGT], "nmap"),
        "nmap-sF": ("scan", [*nm, "-sF", "-p", "1-300", TGT], "nmap"),
        "nmap-sN": ("scan", [*nm, "-sN", "-p", "1-300", TGT], "nmap"),
        "nmap-sX": ("scan", [*nm, "-sX", "-p", "1-300", TGT], "nmap"),
        "nmap-sA": ("scan", [*nm, "-sA", "-p", "1-300", TGT], "nmap"),
        "nmap-sW": ("scan", [*nm, "-sW", "-p", "1-300", TGT], "nmap"),
        "nmap-sU": ("scan", [*nm, "-sU", "-p", "1-60", "--max-retries", "1", TGT], "nmap"),
        "nmap-ping": ("scan", ["nmap", "-n", "-sn", "-PE", "-PP", "-PM", "--disable-arp-ping", "-e", "eth0",
                               "198.18.8.8-21"], "nmap"),
        "nmap-sV": ("scan", [*nm, "-sV", "-p", f"22,80,{LINE_PORT}", TGT], "nmap"),
        "nmap-O": ("scan", [*nm, "-O", "-p", "22,80,81", TGT], "nmap"),
        "masscan": ("scan", ["masscan", "-p1-1000", TGT, "--rate", "2000", "--wait", "1", "-e", "eth0",
                             "--router-mac", lab_mac, "--adapter-ip", "198.18.0.1"], "masscan"),
        "zmap": ("scan", ["zmap", "-p", "80", "-i", "eth0", "-G", lab_mac, "-S", "198.18.0.1", "-r", "200",
                          "-c", "1", "-b", "/dev/null", "-o", "/dev/null", "198.18.8.0/28"], "zmap"),
        "hostprint-sS": ("scan", hostprint("scan", "-sS", "-p", "1-1000", TGT, "--no-db"), "hostprint"),
        "hostprint-O": ("scan", hostprint("scan", "-O", "-p", "22,80", TGT, "--no-db"), "hostprint"),
        "hostprint-cron": ("scan", hostprint("scan", "-sS", "-p", "80", "--cron-os", "s", "--cron-timeout", "8",
                                             TGT, "--no-db"), "hostprint"),
        "hostprint-amap": ("scan", hostprint("amap", "-D", str(AMAP_DIR), TGT, "22", "80", str(LINE_PORT)), "amap"),
        "hostprint-sV": ("scan", hostprint("scan", "-sV", "-p", str(LINE_PORT), TGT, "--no-db"), "hostprint"),
        "normal": ("tgt", normal_traffic, None),
    }


def normal_traffic(lab) -> None:
    """What a defender's network does all day: web requests, a browser's parallel keep-alive
    connections, SSH sessions (key exchange then a refused login), a connection to a closed port."""
    url = f"http://{TGT}/"
    for _ in range(3):
        lab.exec("cli", ["curl", "-s", "-o", "/dev/null", url], timeout=20)
        lab.exec("cli", [sys.executable, "-c", f"import urllib.request as u; u.urlopen('{url}').read()"], timeout=20)
    lab.exec("cli", [sys.executable, "-c", BROWSER_PY, TGT], timeout=30)
    for _ in range(2):
        lab.exec("cli", ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
                         "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", f"nobody@{TGT}", "true"],
                 capture_output=True, timeout=20)
    lab.exec("cli", ["curl", "-s", "-o", "/dev/null", f"http://{TGT}:81/"], timeout=20)  # closed: one RST
    lab.exec("cli", ["ping", "-c", "2", "-i", "0.2", TGT], capture_output=True, timeout=20)


def xprobe2_packets(src: str, dst: str, closed_udp: int = 33434) -> list[bytes]:
    """xprobe2's ICMP probe set as IPv4 packets, crafted with hostprint's engine from xprobe2's
    documented probes (Arkin & Yarochkin's Xprobe2 paper; the header values as its 0.3 modules
    set them): xprobe2 is not packaged for Debian, so these stand in for a capture of the tool.
    Echo request code 123 / TOS 6 / DF; timestamp, address mask and information requests; a UDP
    datagram from port 53 to a closed port, TTL 255, DF, carrying a DNS reply for
    www.securityfocus.com (bytes written here: header, question, one A answer)."""
    import random

    from hostprint.engine import packets as P

    s, d = P.ip_to_int(src).to_bytes(4, "big"), P.ip_to_int(dst).to_bytes(4, "big")
    name = b"\x03www\x0dsecurityfocus\x03com\x00"
    dns = (random.getrandbits(16).to_bytes(2, "big") + bytes([0x81, 0xB0]) + (1).to_bytes(2, "big") * 2 + bytes(4)
           + name + bytes([0, 1, 0, 1]) + name + bytes([0, 1, 0, 1]) + b"\xff\xff\x00\x00" + bytes([0, 4])
           + bytes([205, 206, 231, 10]))
    rid = random.getrandbits(16)
    return [
        P.build_ip(P.IPv4(s, d, P.IPPROTO_ICMP, id=rid, tos=6, df=True), P.ICMP(P.ICMP_ECHO, 123, rid, 256)),
        P.build_ip(P.IPv4(s, d, P.IPPROTO_ICMP, id=(rid + 1) & 0xFFFF), P.ICMP(13, 0, rid, 0)),
        P.build_ip(P.IPv4(s, d, P.IPPROTO_ICMP, id=(rid + 2) & 0xFFFF), P.ICMP(17, 0, rid, 0)),
        P.build_ip(P.IPv4(s, d, P.IPPROTO_ICMP, id=(rid + 3) & 0xFFFF), P.ICMP(15, 0, rid, 0)),
        P.build_ip(P.IPv4(s, d, P.IPPROTO_UDP, ttl=255, id=(rid + 4) & 0xFFFF, df=True), P.UDP(53, closed_udp, dns)),
    ]


def xprobe2_tcp_packets(src: str, dst: str, open_tcp: int = 80, closed_tcp: int = 65535,
                        scan: tuple[int, ...] = (22, 80, 81), seed: int | None = None) -> list[bytes]:
    """xprobe2 0.3's TCP modules as IPv4 packets, crafted from its source (the header values each
    module sets through USI++; the Sources of probes.txt's xprobe2-tcp-* rules), as a run with
    `-p tcp:OPEN:open -T SCAN` would send them: tcp_ping (SYN, no options, window 5840, TOS 0x10,
    DF, the acknowledgment field left random), ttl_calc (SYN, window 0, IP ID 1, seq 1, TTL 1 then
    2: one router between scanner and target in the lab), the -T port scan (SYN, window 5840, no
    DF, seq from SHA-1 over the addresses and ports), tcp_hshake (SYN, window 5840, TOS 0x10,
    options M1460,S,T(usec, 0),N,W0) and tcp_rst (two SYNs, window 6840, TOS 0x10, to the closed
    port: 65535 unless one is known). Random values as xprobe2's rand() gives them (below 2**31);
    `seed` makes them repeatable."""
    import hashlib
    import random

    from hostprint.engine import packets as P

    s, d = P.ip_to_int(src).to_bytes(4, "big"), P.ip_to_int(dst).to_bytes(4, "big")
    rng = random.Random(seed)

    def r31() -> int:
        return rng.getrandbits(31)

    def ip(**kw) -> P.IPv4:
        return P.IPv4(s, d, P.IPPROTO_TCP, **{"id": rng.getrandbits(16), **kw})

    def cookie(sport: int, dport: int) -> int:  # portscanner.cc: memcpy(&seq, SHA1(shainput)), then htonl
        dig = hashlib.sha1(s + d + sport.to_bytes(2, "little") + dport.to_bytes(2, "little")).digest()
        return int.from_bytes(dig[:4], "little")

    out = [P.build_ip(ip(tos=0x10, df=True),  # tcp_ping: th_ack = rand() in host order from TCP::TCP
                      P.TCP((r31() + 1024) & 0xFFFF, open_tcp, r31(), int.from_bytes(r31().to_bytes(4, "little"), "big"),
                            P.SYN, 5840))]
    for ttl in (1, 2):  # ttl_calc
        out.append(P.build_ip(ip(ttl=ttl, id=1, df=True), P.TCP(1 + r31() % 65535, open_tcp, 1, 0, P.SYN, 0)))
    for dport in scan:  # portscanner (-T)
        sport = (r31() + 1024) & 0xFFFF
        out.append(P.build_ip(ip(), P.TCP(sport, dport, cookie(sport, dport), 0, P.SYN, 5840)))
    usec = rng.randrange(1_000_000)
    out.append(P.build_ip(ip(tos=0x10, df=True), P.TCP(  # tcp_hshake
        r31() & 0xFFFF, open_tcp, r31(), 0, P.SYN, 5840,
        options=[(P.OPT_MSS, 1460), (P.OPT_SACKOK, None), (P.OPT_TS, (usec, 0)), (P.OPT_NOP, None), (P.OPT_WS, 0)])))
    for _ in range(2):  # tcp_rst
        out.append(P.build_ip(ip(tos=0x10, df=True), P.TCP(r31() & 0xFFFF, closed_tcp, r31(), 0, P.SYN, 6840)))
    return out


#: sends xprobe2_packets and xprobe2_tcp_packets (argv[1] -> argv[2], -T 1-100) from a raw socket (run in the
#: scanner's namespace)
XPROBE2_PY = """
import socket, sys, time
sys.path.insert(0, sys.argv[3])
sys.path.insert(0, sys.argv[3] + '/tests')
import passive_tools as PT
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
scan = tuple(range(1, 101))  # -T 1-100: enough SYNs of one shape for passive's grouped path (64)
for pkt in PT.xprobe2_packets(sys.argv[1], sys.argv[2]) + PT.xprobe2_tcp_packets(sys.argv[1], sys.argv[2], scan=scan):
    s.sendto(pkt, (sys.argv[2], 0))
    time.sleep(0.01)
"""


def lab_spec(name: str):
    from hostprint.lab import HostSpec, LabSpec

    return LabSpec(name=name, hosts=[
        HostSpec(name="tgt", address=TGT, services=["nginx:80", "ssh:22", f"tcp-line:{LINE_PORT}"], sysctls=QUIET, mac=TGT_MAC),
        *[HostSpec(name=f"b{i}", address=a, sysctls=QUIET) for i, a in enumerate(BYSTANDERS, 1)],
        HostSpec(name="cli", address=CLI),
    ])


def switch_port(lab, host: str) -> str:
    if host == "scan":
        return "p0"
    out = subprocess.run(["ip", "-n", lab.switch_ns, "-o", "link"], capture_output=True, text=True, check=True).stdout
    ns = lab.host(host).ns
    for line in out.splitlines():
        if line.rstrip().endswith(f"link-netns {ns}"):
            return line.split(":")[1].strip().split("@")[0]
    raise AssertionError(f"no switch port for {host}")


def tcpdump(lab, port: str, path: Path, expr: str = "ip or ip6") -> subprocess.Popen:
    """tcpdump on a switch port, returned once its socket listens (its first stderr line).

    Not --immediate-mode: libpcap then falls back to TPACKET_V2, whose ring slots are snaplen-sized
    when the interface has offloads (veth does), so -s 0 left ~250 slots in 64 MiB and a 1,000-SYN
    burst overflowed them (CI: "tcpdump dropped 28 packets" three times in a row). TPACKET_V3 packs
    packets into its blocks; a block is handed over at the latest after tcpdump's 1 s timeout, which
    `FLUSH` waits out before the capture is stopped."""
    p = lab.spawn(lab.switch_ns, ["tcpdump", "-i", port, "-B", "65536", "-U", "-s", "0", "-w", str(path),
                                  expr], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    line = p.stderr.readline()
    assert b"listening" in line, line
    return p


FLUSH = 1.6  # s: tcpdump's TPACKET_V3 block timeout is 1 s
MASSCAN_HANG = 60  # s: a bound on masscan's run (1,000 SYNs at 2,000/s and its --wait 1 take ~2.5 s)


def masscan(lab, argv: list[str]) -> subprocess.CompletedProcess:
    """masscan in the scanner namespace, ended (SIGKILL by PID) once its progress line says its
    --wait is over ("waiting -1-secs"): everything it sends, and the answers it waits for, are on
    the wire by then. masscan 1.3.2 counts on past its --wait before it exits (~6 s for this run,
    "waiting -2-secs") and sometimes never exits: its receive thread stays blocked in libpcap
    when no packet comes (seen in CI and here, 3 runs of 5; it cost the set-up its 20-s timeout).
    Exit 0 when ended so; its own exit code when it ends first."""
    import select

    p = lab.spawn("scan", argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err, end = b"", time.monotonic() + MASSCAN_HANG
    while p.poll() is None and not re.search(rb"waiting -\d+-secs", err):
        if time.monotonic() > end:
            p.kill()
            p.wait()
            raise AssertionError(f"masscan: no end of its --wait after {MASSCAN_HANG} s: {err[-300:]!r}")
        if select.select([p.stderr], [], [], 0.25)[0]:
            err += os.read(p.stderr.fileno(), 65536)  # progress lines end in \r, not \n
    rc = p.poll()
    if rc is None:
        p.kill()
    p.wait()
    out, rest = p.communicate()
    return subprocess.CompletedProcess(argv, rc or 0, out.decode(errors="replace"), (err + rest).decode(errors="replace"))


def stop(p: subprocess.Popen, flush: float = FLUSH) -> int:
    """Stop tcpdump once its last ring block is handed over (`FLUSH`); the number of packets the
    kernel dropped (0 for a complete capture)."""
    time.sleep(flush)
    p.terminate()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    m = re.search(rb"(\d+) packets? dropped by kernel", p.stderr.read() if p.stderr else b"")
    return int(m.group(1)) if m else -1


def missing_tools() -> list[str]:
    return [t for t in ("nmap", "masscan", "zmap", "tcpdump", "curl", "ssh", "nginx", "sshd")
            if not shutil.which(t) and not os.path.exists(f"/usr/sbin/{t}")]


class Dump:
    """tcpdump on one switch port kept running across runs (`make`): each run's frames are cut out
    of its file afterwards by time (`split`), so the FLUSH is waited out once, not once per run.
    `dropped()`: the kernel's drop count so far (tcpdump prints its statistics on SIGUSR1)."""

    def __init__(self, lab, port: str, path: Path):
        self.path = path
        self.p = tcpdump(lab, port, path)

    def dropped(self) -> int:
        import signal

        assert self.p.stderr is not None
        self.p.send_signal(signal.SIGUSR1)
        while line := self.p.stderr.readline():  # "tcpdump: N packets captured, ..., K packets dropped by kernel"
            m = re.search(rb"(\d+) packets? dropped by kernel", line)
            if m:
                return int(m.group(1))
        raise AssertionError(f"tcpdump on {self.path.name} ended: exit {self.p.wait()}")


def capture(lab, name: str, dump: Dump, spec: tuple, tries: int = 3,
            watch: Path | None = None) -> tuple[subprocess.CompletedProcess | None, Watch | None, tuple[float, float]]:
    """Run one tool (or the normal traffic) while `dump` (tcpdump on its switch port) listens, and
    with `watch` (a JSONL path) also `hostprint passive -i` on that port (`Watch`). Returns the
    tool's result, the watch and the run's window (start, end; time.time()) in the dump. A run the
    kernel dropped packets of (tcpdump's count, or the live ring's) is made again (a busy machine:
    other labs, test runs), at most `tries` times in all; the last try's live drops are kept in
    the watch (`ring`) for the live tests to report, not raised here."""
    where, argv, tool = spec
    for attempt in range(tries):
        start, before = time.time(), dump.dropped()
        live = Watch(lab, switch_port(lab, where), watch) if watch else None
        try:
            if live is not None:
                live.wait_ready()
            if callable(argv):
                argv(lab)
                r = None
            elif tool == "masscan":
                r = masscan(lab, argv)
            else:
                r = lab.exec("scan", argv, capture_output=True, text=True, timeout=240, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        finally:
            time.sleep(SETTLE)
            if live is not None:
                live.stop()
        end = live.stopped_at if live is not None else time.time()
        dropped = dump.dropped() - before
        if dropped:
            if attempt == tries - 1:
                raise CaptureDropped(f"{name}: tcpdump dropped {dropped} packets: the capture is incomplete")
            continue
        if live is not None:
            live.tries = attempt + 1
        if live is None or not (live.ring and live.ring[1]) or attempt == tries - 1:
            return r, live, (start, end)
    raise AssertionError("unreachable")


#: s after a tool is done before its run's window ends: the last frames reach both rings (passive's
#: hands a block over after 20 ms, engine/capture.py); tcpdump's FLUSH is waited out once, in `make`
SETTLE = 0.25


class CaptureDropped(AssertionError):
    pass


def split(whole: Path, windows: dict[Path, tuple[float, float]]) -> None:
    """Write each window's frames (start <= kernel timestamp < end) of the capture WHOLE to its
    own file; frames between windows (a late answer after a run) go nowhere."""
    import bisect

    from hostprint.engine.pcapfile import PcapWriter, iter_packets

    order = sorted(windows.items(), key=lambda kv: kv[1])
    starts = [int(w[0] * 1e9) for _p, w in order]
    outs = [PcapWriter(p) for p, _w in order]
    try:
        for ts, _lt, frame in iter_packets(whole):
            k = bisect.bisect_right(starts, ts) - 1
            if k >= 0 and ts < order[k][1][1] * 1e9:
                outs[k].write(ts, frame)
    finally:
        for w in outs:
            w.close()


class Watch:
    """`hostprint passive -i PORT --no-db -oJ JSONL` in the lab's switch namespace, beside tcpdump:
    the same frames, read live. Its terminal output goes to files next to JSONL (a pipe nobody reads
    while the tool runs would stall its capture loop). Started on construction; `wait_ready` returns
    once its ring is mapped; `stop` sends Ctrl-C (SIGINT by PID; `ip netns exec` execs) once it has
    read every frame the ring handed over, and keeps what it printed: `streamed` (before the stop),
    `table` (all of stdout), `err`, `rc` (130 after Ctrl-C), `ring` (frames, dropped) from its
    "kernel ring: N frames, M dropped". Nothing here raises: a watch that never got ready or never
    caught up (`late`, for the live test to report) must not cost the -r tests their captures."""

    WAIT = 30.0  # s: a bound on start-up and on reading what the ring holds, never reached when it works

    def __init__(self, lab, port: str, jsonl: Path):
        self.jsonl = jsonl
        self.stdout, self.stderr = jsonl.with_suffix(".out"), jsonl.with_suffix(".err")
        with self.stdout.open("w") as o, self.stderr.open("w") as e:
            self.p = lab.spawn(lab.switch_ns, [*hostprint("passive", "-i", port, "--no-db", "-oJ", str(jsonl))],
                               stdout=o, stderr=e, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.rc: int | None = None
        self.streamed = self.table = self.err = ""
        self.ring: tuple[int, int] | None = None
        self.tries = 1  # captures made for this run (one more for each with drops)
        self.stopped_at = 0.0  # time.time() of the stop: the end of the run's window
        self.late: list[str] = []  # what it was not within WAIT: "capturing", "done reading its ring"

    def _until(self, ready: Callable[[int], bool], what: str) -> None:
        end = time.monotonic() + self.WAIT
        while self.p.poll() is None and not ready(self.p.pid):
            if time.monotonic() > end:
                self.late.append(what)
                return
            time.sleep(0.02)

    def wait_ready(self) -> None:
        """Its ring is mapped, or (a reader that maps none) its packet socket is open and it waits
        for frames."""
        waiting = WaitingForFrames()
        self._until(lambda pid: packet_ring_mapped(pid) or (packet_socket_open(pid) and waiting(pid)), "capturing")

    def stop(self) -> None:
        import signal

        self._until(WaitingForFrames(), "done reading its ring")
        self.streamed = self.stdout.read_text()
        self.stopped_at = time.time()
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        try:
            self.rc = self.p.wait(self.WAIT)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.rc = self.p.wait()
        self.table, self.err = self.stdout.read_text(), self.stderr.read_text()
        m = re.search(r"kernel ring: (\d+) frames, (\d+) dropped", self.table)
        self.ring = (int(m.group(1)), int(m.group(2))) if m else None

    def events(self) -> list[dict]:
        import json

        if not self.jsonl.exists():
            return []
        return [d for d in map(json.loads, self.jsonl.read_text().splitlines()) if d.get("type") == "event"]


def make(lab, outdir: Path, names: list[str] | None = None,
         live: dict[str, Watch] | None = None) -> dict[str, Path]:
    """Every run (or those in `names`) captured to OUTDIR/NAME.pcap: one tcpdump per switch port
    for all runs (`Dump`), stopped once after the FLUSH, its file cut into the runs' windows. With
    `live` (a dict), each run is also watched by `passive -i` (`Watch`, its -oJ in
    OUTDIR/NAME.live.jsonl) and live[NAME] is its watch: one run of each tool serves both the -r
    and the live tests; a run's window ends when its watch is stopped, so both see the same frames."""
    import tempfile

    outdir.mkdir(parents=True, exist_ok=True)
    got: dict[str, Path] = {}
    dumps: dict[str, Dump] = {}
    windows: dict[str, dict[Path, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="pt-dump-") as tmp:
        try:
            for name, spec in runs().items():
                if names and name not in names:
                    continue
                port = switch_port(lab, spec[0])
                if port not in dumps:
                    dumps[port] = Dump(lab, port, Path(tmp) / f"{port}.pcap")
                r, watch, window = capture(lab, name, dumps[port], spec,
                                           watch=outdir / f"{name}.live.jsonl" if live is not None else None)
                if r is not None and r.returncode != 0:
                    raise AssertionError(f"{name}: exit {r.returncode}: {r.stderr[-600:]}")
                got[name] = outdir / f"{name}.pcap"
                windows.setdefault(port, {})[got[name]] = window
                if live is not None and watch is not None:
                    live[name] = watch
        finally:
            time.sleep(FLUSH)
            for d in dumps.values():
                stop(d.p, flush=0)
        for port, w in windows.items():
            split(dumps[port].path, w)
    return got


if __name__ == "__main__":
    from hostprint.lab import Lab

    d = Path(sys.argv[1])
    with Lab(lab_spec(f"pt{os.getpid() % 10000}")) as lab:
        for k, v in make(lab, d, sys.argv[2:] or None).items():
            print(k, v, v.stat().st_size)


def packet_socket_open(pid: int) -> bool:
    """The process holds an AF_PACKET socket (one of its socket inodes is in its namespace's
    /proc/net/packet): a live capture is up."""
    return bool(_packet_inodes(pid))


def packet_ring_mapped(pid: int) -> bool:
    """The process has mapped the ring of its AF_PACKET socket (the socket in its /proc/PID/maps):
    frames reach the ring from the moment PACKET_RX_RING is set, just before the mapping."""
    inodes = _packet_inodes(pid)
    try:
        maps = Path(f"/proc/{pid}/maps").read_text() if inodes else ""
    except OSError:
        return False
    return any(f"socket:[{i}]" in maps for i in inodes)


def _packet_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        rows = Path(f"/proc/{pid}/net/packet").read_text().splitlines()[1:]
    except OSError:  # the process is gone
        return set()
    return {r.split()[-1] for r in rows} & inodes


class WaitingForFrames:
    """Called with a PID, again and again: True once the process waits for frames, i.e. it has
    read every block its ring handed over. Exact for a loop that sleeps in select/poll (its main
    thread's /proc/PID/wchan; a ready block wakes it at once): passive -i's today. For a reader
    that waits some other way (a batching loop that sleeps between batches), once it sleeps and
    its CPU time has not moved over `QUIET` consecutive calls (a reader with frames left to parse
    keeps running)."""

    QUIET = 5  # calls, 20 ms apart in Watch._until: a clock tick of CPU is 10 ms

    def __init__(self) -> None:
        self.cpu: list[int] = []

    def __call__(self, pid: int) -> bool:
        try:
            wchan = Path(f"/proc/{pid}/wchan").read_text()
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return False
        if stat[0] != "S":  # running, or blocked on a disk write
            self.cpu.clear()
            return False
        if "poll" in wchan or "select" in wchan:
            return True
        self.cpu = [*self.cpu[-(self.QUIET - 1):], int(stat[11]) + int(stat[12])]  # utime + stime
        return len(self.cpu) == self.QUIET and len(set(self.cpu)) == 1
