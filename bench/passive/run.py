"""Passive fingerprinting benchmark (issue 6): hostprint vs `p0f -r` on one large lab capture.

  python3 bench/passive/run.py [--regen] [--connections N]

1. Capture (made once, cached under /tmp/hostprint-bench/passive/, never in the repo): a lab with
   nginx and six client namespaces with different sysctl personalities; each client opens many
   short HTTP connections (1-5 keep-alive requests each) with Python sockets, plus a few curl
   requests; tcpdump on the server's switch port writes the pcap. The capture must hold >= 1 M
   packets.
2. The same file through `p0f -r FILE -o LOG` and through `hostprint passive -r FILE -oJ OUT`
   (both write every observation): wall time, packets/s, peak RSS (wait4 rusage).
3. Agreement on SYN and SYN+ACK raw signatures (joined on direction and client address/port) and
   on OS labels (hostprint reading p0f.fp with --sigdb none --p0f-db, the same DB p0f uses).
4. Memory bound: a synthetic capture of 1 M distinct SYN flows from 131,072 addresses (written with
   our pcap writer) through hostprint: peak RSS must stay flat thanks to the flow/host caps.
Not a test: prints a table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
CACHE = Path("/tmp/hostprint-bench/passive")
SRV = "198.18.7.10"
CLIENTS = {
    "d64": ("198.18.7.20", {}),
    "t128": ("198.18.7.21", {"net.ipv4.ip_default_ttl": "128", "net.ipv4.tcp_timestamps": "2"}),
    "nots": ("198.18.7.22", {"net.ipv4.tcp_timestamps": "0"}),
    "nosack": ("198.18.7.23", {"net.ipv4.tcp_sack": "0", "net.ipv4.tcp_window_scaling": "0"}),
    "ts2": ("198.18.7.24", {"net.ipv4.tcp_timestamps": "2"}),
    "ecn": ("198.18.7.25", {"net.ipv4.tcp_ecn": "1"}),
}
CLIENT_PY = r"""
import random, socket, sys
dst, n, seed, ua = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rnd = random.Random(seed)
req = ("GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nAccept: */*\r\n\r\n" % (dst, ua)).encode()
for i in range(n):
    s = socket.create_connection((dst, 80))
    for j in range(rnd.choice((1, 1, 1, 2, 3, 5))):
        s.sendall(req)
        got = b""
        while b"</html>" not in got:
            d = s.recv(65536)
            if not d:
                break
            got += d
    s.close()
"""
UAS = ["bench-client/1.0", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Gecko/20100101 Firefox/120.0"]


def switch_port(lab, host: str) -> str:
    out = subprocess.run(["ip", "-n", lab.switch_ns, "-o", "link"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.rstrip().endswith(f"link-netns {lab.host(host).ns}"):
            return line.split(":")[1].strip().split("@")[0]
    raise SystemExit(f"no switch port for {host}")


def make_capture(path: Path, per_client: int) -> None:
    from hostprint.lab import HostSpec, Lab, LabSpec

    hosts = [HostSpec(name="srv", address=SRV, services=["nginx:80"])]
    hosts += [HostSpec(name=n, address=a, sysctls={**s, "net.ipv4.ip_local_port_range": "10000 65000"})
              for n, (a, s) in CLIENTS.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with Lab(LabSpec(name="pbench", hosts=hosts)) as lab:
        dump = lab.spawn(lab.switch_ns, ["tcpdump", "-i", switch_port(lab, "srv"), "-B", "131072", "-U", "-s", "0",
                                         "-w", str(tmp), "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert b"listening" in dump.stderr.readline()
        procs = []
        for i, n in enumerate(CLIENTS):
            procs.append(lab.spawn(n, [sys.executable, "-c", CLIENT_PY, SRV, str(per_client), str(i), UAS[i == 0]]))
        for n in CLIENTS:
            lab.exec(n, ["curl", "-s", "-o", "/dev/null", f"http://{SRV}/"])
        for p in procs:
            p.wait()
        time.sleep(1)
        dump.terminate()
        dump.wait()
        print("tcpdump:", dump.stderr.read().decode().strip().replace("\n", "; "), file=sys.stderr)
    tmp.rename(path)


def make_million_flows(path: Path, n: int = 1_000_000) -> None:
    """n SYNs, each a new flow (131,072 addresses x ports): the worst case for flow and host tables."""
    import struct

    from hostprint.engine.pcapfile import PcapWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    opts = bytes([2, 4, 5, 0xB4, 4, 2, 8, 10]) + b"\0" * 8 + bytes([1, 3, 3, 7])
    with PcapWriter(path.with_suffix(".part")) as w:
        for i in range(n):
            src = struct.pack("!I", 0xC6120000 + i % 0x20000)  # 131,072 addresses in 198.18.0.0/15
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 60, i & 0xFFFF, 0x4000, 64, 6, 0, src, b"\xc6\x12\x07\x0a")
            tcp = struct.pack("!HHIIBBHHH", 1024 + i // 0x20000, 80, i + 1, 0, 0xA0, 2, 64240, 0, 0) + opts
            w.write(i * 10_000, eth + ip + tcp)
    path.with_suffix(".part").rename(path)


def timed(argv: list[str], **kw) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in MiB, exit code) of one child.

    Peak RSS is the child's own VmHWM, polled from /proc every 20 ms: rusage maxrss would also
    count the parent's memory, which a vfork()ed child carries until it execs."""
    t = time.perf_counter()
    p = subprocess.Popen(argv, **kw)
    hwm = peak_rss_kib(p, 0.02)
    return time.perf_counter() - t, hwm // 1024, p.returncode


def peak_rss_kib(p: subprocess.Popen, every: float) -> int:
    """The child's VmHWM (KiB), polled from /proc every `every` s until it exits."""
    hwm = 0
    status = Path(f"/proc/{p.pid}/status")
    while p.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm = max(hwm, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(every)
    return hwm


def hostprint_argv(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from hostprint.cli import COMMANDS, main\n"
            "'passive' in COMMANDS or COMMANDS.append('passive')\nsys.exit(main())", "passive", *args]


def parse_p0f(log: Path) -> dict[tuple[str, str], dict[str, str]]:
    out = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            f = dict(kv.split("=", 1) for kv in line.split("] ", 1)[1].split("|") if "=" in kv)
        except IndexError:
            continue
        if f.get("mod") in ("syn", "syn+ack"):
            out[(f["mod"], f["cli"])] = f
    return out


def parse_ours(path: Path) -> dict[tuple[str, str], dict]:
    out = {}
    with open(path) as fp:
        for line in fp:
            if '"kind": "syn' not in line:
                continue
            d = json.loads(line)
            cli = f"{d['address']}/{d['port']}" if d["kind"] == "syn" else f"{d['peer']}/{d['peer_port']}"
            out[(d["kind"], cli)] = d
    return out


def count_packets(path: Path) -> int:
    from hostprint.engine.pcapfile import read_batches

    return sum(len(b.starts) for b in read_batches(path))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--regen", action="store_true")
    ap.add_argument("--connections", type=int, default=17000, help="per client namespace")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each tool (best is reported)")
    ap.add_argument("--cache", default=str(CACHE), help="where the captures are kept (default %(default)s)")
    ap.add_argument("--flows", type=int, default=1_000_000, help="SYN flows in the memory-bound capture")
    a = ap.parse_args()
    cache = Path(a.cache)
    if os.geteuid() != 0 or not shutil.which("p0f") and not os.path.exists("/usr/sbin/p0f"):
        raise SystemExit("needs root (lab namespaces) and p0f")
    cap = cache / "lab-http.pcap"
    if a.regen or not cap.exists():
        t = time.time()
        make_capture(cap, a.connections)
        print(f"# capture made in {time.time() - t:.0f}s", file=sys.stderr)
    npk = count_packets(cap)
    work = cache / "out"
    work.mkdir(parents=True, exist_ok=True)
    p0f = shutil.which("p0f") or "/usr/sbin/p0f"
    tools = [
        ("p0f -r -o LOG", [p0f, "-r", str(cap), "-o", str(work / "p0f.log")]),
        ("hostprint -oJ", hostprint_argv("-r", str(cap), "-oJ", str(work / "hp.jsonl"), "--no-db", "--quiet")),
        ("hostprint (no -oJ)", hostprint_argv("-r", str(cap), "--no-db", "--quiet")),
        ("hostprint --p0f-db -oJ", hostprint_argv("-r", str(cap), "-oJ", str(work / "hp-p0fdb.jsonl"), "--no-db",
                                                  "--quiet", "--sigdb", "none", "--p0f-db")),
    ]
    runs: dict[str, list] = {name: [] for name, _ in tools}
    for _ in range(a.repeat):  # interleaved, so that load from other work hits every tool alike
        for name, argv in tools:
            if argv[0] == p0f:
                (work / "p0f.log").unlink(missing_ok=True)  # p0f refuses to append to an old log
            runs[name].append(timed(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT))
    rows = []
    best = {}
    for name, rs in runs.items():
        assert all(r[2] == 0 for r in rs), (name, rs)
        wall = min(r[0] for r in rs)
        best[name] = wall
        rows.append(f"{name:<26} {wall:8.2f} s {npk / wall:>12,.0f} pkt/s {max(r[1] for r in rs):>8} MiB"
                    f"   (all runs: {', '.join(f'{r[0]:.2f}' for r in rs)} s)")
    # memory bound on many distinct flows (before this process reads the big outputs)
    mf = cache / f"flows-{a.flows}.pcap"
    if not mf.exists():
        make_million_flows(mf, a.flows)
    (work / "p0f-flows.log").unlink(missing_ok=True)
    mf_hp = timed(hostprint_argv("-r", str(mf), "--no-db", "--quiet", "-oJ", str(work / "flows.jsonl")),
                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    mf_p0f = timed([p0f, "-r", str(mf), "-o", str(work / "p0f-flows.log")], stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)
    theirs = parse_p0f(work / "p0f.log")
    ours = parse_ours(work / "hp.jsonl")
    ours_p0fdb = parse_ours(work / "hp-p0fdb.jsonl")
    both = set(theirs) & set(ours)
    same_sig = sum(1 for k in both if theirs[k]["raw_sig"] == ours[k]["raw"]["sig"])
    lab_both = [k for k in set(theirs) & set(ours_p0fdb)]
    same_label = sum(1 for k in lab_both if (theirs[k]["os"] if theirs[k]["os"] != "???" else None)
                     == (ours_p0fdb[k]["os"] or {}).get("name"))
    labelled = sum(1 for k in lab_both if theirs[k]["os"] != "???")
    import numpy

    print(f"# passive benchmark  {time.strftime('%Y-%m-%d')}  {platform.machine()}  python {platform.python_version()}"
          f"  numpy {numpy.__version__}  cpus {os.cpu_count()}")
    print(f"# capture {cap} : {npk:,} packets, {cap.stat().st_size / 2**20:.0f} MiB; best of {a.repeat} runs each")
    print(f"{'tool':<26} {'wall':>10} {'rate':>16} {'peak RSS':>12}")
    for r in rows:
        print(r)
    print(f"# speed ratio hostprint -oJ / p0f: {best['p0f -r -o LOG'] / best['hostprint -oJ']:.2f}x")
    print(f"# SYN/SYN+ACK records: p0f {len(theirs):,}, hostprint {len(ours):,}, both {len(both):,}; "
          f"identical raw signatures {same_sig:,} ({100 * same_sig / max(1, len(both)):.2f} %)")
    print(f"# OS labels with p0f.fp: p0f labelled {labelled:,} of {len(lab_both):,}; same label (or both none) "
          f"{same_label:,} ({100 * same_label / max(1, len(lab_both)):.2f} %)")
    print(f"# {a.flows:,} distinct SYN flows from up to 131,072 addresses ({mf.stat().st_size / 2**20:.0f} MiB): "
          f"hostprint {mf_hp[0]:.1f} s, peak RSS {mf_hp[1]} MiB (rc {mf_hp[2]}); "
          f"p0f {mf_p0f[0]:.1f} s, {mf_p0f[1]} MiB (rc {mf_p0f[2]})")
    diffs = [k for k in both if theirs[k]["raw_sig"] != ours[k]["raw"]["sig"]][:5]
    for k in diffs:
        print(f"# differs {k}: p0f {theirs[k]['raw_sig']}  hostprint {ours[k]['raw']['sig']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
