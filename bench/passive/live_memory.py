"""Live passive: loss at 100 k pps and memory with a million flows (issue 18).

  python3 bench/passive/live_memory.py [N] [PPS] [--shape flows|clients|scan|portscan] [--senders K]
                                       [--quiet] [--runs R]     (root; default 1,000,000 at 100,000/s)

A lab of its own (one host; name "lv<pid>"): `hostprint passive -i p0` (detection on, -oJ to
/dev/null, every observation printed to a file; --quiet: not printed, the run's stats read from
an inventory in a temporary directory) listens on the scanner's switch port while the scanner
namespace sends N SYNs through hostprint's sendmmsg BatchSender (1,024 frames per call, fields
filled with numpy, paced per call at PPS, split over K processes), every SYN a new flow:
  flows    bench/passive/run.py's million-flow shape: 131,072 source addresses in 198.18.0.0/15
           x source ports, to 198.18.7.10:80, Linux options (MSS/SACK/TS/WS): the host table
           thrashes by design (more sources than max_hosts);
  clients  the same SYNs from 2,000 sources (they fit in the host table);
  scan     a masscan-like SYN scan (win 1024, MSS only) from one source over 65,536
           addresses x ports: the grouped SYN path; the detector sees one packet per target;
  portscan the same SYNs to every port of one host (nmap -p-), again and again: both grouped.
Peak RSS and CPU time of the passive process from /usr/bin/time (the 16 MiB ring it maps is part
of its RSS); packets read and the ring's drops (PACKET_STATISTICS) come from its summary. Load averages
before and after each run. Not a test: prints lines for bench/RESULTS.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


SENDER = r"""
import socket, sys, time
import numpy as np
from hostprint.engine.afpacket import BatchSender, open_tx_socket
n, pps, first, step, shape = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
B = 1024
tx = BatchSender(open_tx_socket("eth0"), frame_size=80, max_batch=B)
eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
if shape in ("scan", "portscan"):  # nmap/masscan-like: win 1024, MSS only, TTL 50, no DF
    ip = bytes([0x45, 0, 0, 44, 0, 0, 0, 0, 50, 6, 0, 0]) + bytes(4) + bytes([198, 18, 7, 10])
    tcp = bytes(4) + bytes(8) + bytes([0x60, 2]) + (1024).to_bytes(2, "big") + bytes(4) + bytes([2, 4, 5, 0xB4])
else:  # Linux client SYN: MSS, SACK, TS, WS
    ip = bytes([0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0]) + bytes(4) + bytes([198, 18, 7, 10])
    tcp = (bytes(4) + bytes(8) + bytes([0xA0, 2]) + (64240).to_bytes(2, "big") + bytes(4)
           + bytes([2, 4, 5, 0xB4, 4, 2, 8, 10]) + bytes(8) + bytes([1, 3, 3, 7]))
frame = eth + ip + tcp
tx.buf[:, :len(frame)] = np.frombuffer(frame, np.uint8)
nsrc = {"flows": 0x20000, "clients": 2000, "scan": 1, "portscan": 1}[shape]
def be(col, v, w):  # big-endian w-byte fields of rows from the values v
    for k in range(w):
        tx.buf[:len(v), col + k] = (v >> (8 * (w - 1 - k))) & 0xFF
t0 = time.monotonic()
sent = 0
for a in range(first, n, B * step):  # this sender's packets: i = a .. a+B-1, every step-th batch
    i = np.arange(a, min(a + B, n), dtype=np.int64)
    be(18, i & 0xFFFF, 2)  # IP ID
    be(26, 0xC6120000 + i % nsrc, 4)  # sources in 198.18.0.0/15
    if shape == "scan":  # 65,536 targets in 198.19.0.0/16, then the next port
        be(30, 0xC6130000 + i % 65536, 4)
        be(34, np.full(len(i), 40000), 2)
        be(36, 1 + (i // 65536) % 65535, 2)
    elif shape == "portscan":  # every port of 198.18.7.10, then again from the next source port
        be(34, 40000 + (i // 65535) % 20000, 2)
        be(36, 1 + i % 65535, 2)
    else:  # to 198.18.7.10:80 from a new source port: every SYN a new flow
        be(34, 1024 + (i // nsrc) % 60000, 2)
        be(36, np.full(len(i), 80), 2)
    be(38, i + 1, 4)  # sequence number
    sent += tx.send_all(len(i), len(frame))
    ahead = t0 + sent / pps - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)
print(f"{sent} {time.monotonic() - t0:.2f} {time.process_time():.2f}")
"""


def main() -> None:
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", nargs="?", type=int, default=1_000_000)
    ap.add_argument("pps", nargs="?", type=float, default=100_000.0)
    ap.add_argument("--shape", choices=("flows", "clients", "scan", "portscan"), default="flows")
    ap.add_argument("--senders", type=int, default=1)
    ap.add_argument("--quiet", action="store_true", help="passive --quiet (stats read from an inventory)")
    ap.add_argument("--runs", type=int, default=1)
    a = ap.parse_args()
    for _ in range(a.runs):
        with tempfile.TemporaryDirectory() as tmp:
            once(a.n, a.pps, a.shape, a.senders, a.quiet, Path(tmp))


def once(n: int, pps: float, shape: str, senders: int, quiet: bool, tmp: Path) -> None:
    from hostprint.lab import HostSpec, Lab, LabSpec

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = (tmp / "out").open("w+")  # passive -i prints every observation: a pipe would fill and block it
    db = tmp / "inv.sqlite"
    load0 = os.getloadavg()[0]
    with Lab(LabSpec(name=f"lv{os.getpid() % 10000}", hosts=[HostSpec(name="tgt", address="198.18.7.10")])) as lab:
        # /usr/bin/time: the passive process's CPU time and peak RSS (wait4 from a C parent)
        argv = ["/usr/bin/time", "-o", str(tmp / "time"), "-f", "%U %S %M",
                sys.executable, "-m", "hostprint", "passive", "-i", "p0", "--timeout", str(int(n / pps) + 25),
                "-oJ", "/dev/null", *(["--quiet", "--db", str(db)] if quiet else ["--no-db"])]
        p = lab.spawn(lab.switch_ns, argv, stdout=log, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        time.sleep(3)
        print(f"passive -i p0 started (pid {p.pid}); sending {n:,} SYNs at {pps:,.0f}/s", file=sys.stderr, flush=True)
        k = senders
        snds = [subprocess.Popen(["ip", "netns", "exec", lab.scanner_ns, sys.executable, "-c", SENDER, str(n),
                                  str(pps / k), str(j * 1024), str(k), shape], stdout=subprocess.PIPE, text=True,
                                 cwd=ROOT, env=env)
                for j in range(k)]
        p.wait()
        got = [snd.communicate()[0].split() for snd in snds]
        load1 = os.getloadavg()[0]
        sent = (f"sent {sum(int(g[0]) for g in got):,} in {max(float(g[1]) for g in got):.1f} s "
                f"({k} sender{'s' if k > 1 else ''}, CPU {sum(float(g[2]) for g in got):.1f} s)")
        err = p.communicate()[1]
        log.seek(0)
        out = log.read()
    if quiet:
        from hostprint.report.inventory import Inventory

        with Inventory(db) as inv:
            st = inv.load_run(inv.runs()[0]["id"]).stats
        stats = (f"{st['packets']} packets, {st['syn']} SYN; ring: {st.get('ring_packets')} frames, "
                 f"{st.get('ring_drops')} dropped")
    else:
        ring = re.search(r"kernel ring: (\d+) frames, (\d+) dropped", out)
        head = re.search(r"(\d+) packets, (\d+) SYN", out)
        stats = (f"{head.group(0) if head else '?'}; "
                 f"ring: {ring.group(1) + ' frames, ' + ring.group(2) + ' dropped' if ring else '?'}")
    print(f"# live passive  {time.strftime('%Y-%m-%d %H:%M')}  load {load0:.1f}-{load1:.1f}  "
          f"command: python3 bench/passive/live_memory.py {n} {pps:.0f} --shape {shape} --senders {senders}"
          f"{' --quiet' if quiet else ''}", flush=True)
    user, system, hwm = (tmp / "time").read_text().split()[-3:]
    print(f"sender: {sent}; passive rc {p.returncode}; {stats}; peak RSS {int(hwm) / 1024:.0f} MiB; "
          f"passive CPU {float(user) + float(system):.1f} s", flush=True)
    if p.returncode:
        print(err[-500:])


if __name__ == "__main__":
    main()
