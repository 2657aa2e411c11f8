"""Live passive memory with a million flows (issue 18, item "bounded memory with 1 M flows").

  python3 bench/passive/live_memory.py [N] [PPS]     (root; default 1,000,000 SYNs at 50,000/s)

A lab of its own (one host; name "p3m<pid>"): `hostprint passive -i p0` (detection on, -oJ to
/dev/null) listens on the scanner's switch port while the scanner namespace sends N SYNs through an
AF_PACKET socket, each a new flow: bench/passive/run.py's million-flow shape (131,072 source
addresses in 198.18.0.0/15 x source ports, to 198.18.7.10:80, MSS/SACK/TS/WS options), paced at
PPS. Peak RSS is the passive process's own VmHWM polled from /proc; the packets it read and the
ring's drops come from its summary. Not a test: prints lines for bench/RESULTS.md.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import peak_rss_kib  # noqa: E402 - bench/passive/run.py, beside this file

SENDER = r"""
import socket, struct, sys, time
n, pps = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
opts = bytes([2, 4, 5, 0xB4, 4, 2, 8, 10]) + b"\0" * 8 + bytes([1, 3, 3, 7])
t0 = time.monotonic()
for i in range(n):
    src = struct.pack("!I", 0xC6120000 + i % 0x20000)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 60, i & 0xFFFF, 0x4000, 64, 6, 0, src, b"\xc6\x12\x07\x0a")
    tcp = struct.pack("!HHIIBBHHH", 1024 + i // 0x20000, 80, i + 1, 0, 0xA0, 2, 64240, 0, 0) + opts
    s.send(eth + ip + tcp)
    if i % 1000 == 999:
        ahead = t0 + (i + 1) / pps - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
print(f"sent {n} in {time.monotonic() - t0:.1f} s")
"""


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    pps = float(sys.argv[2]) if len(sys.argv) > 2 else 50_000.0
    import tempfile

    from hostprint.lab import HostSpec, Lab, LabSpec

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = tempfile.TemporaryFile("w+")  # passive -i prints every observation: a pipe would fill and block it
    with Lab(LabSpec(name=f"p3m{os.getpid() % 10000}", hosts=[HostSpec(name="tgt", address="198.18.7.10")])) as lab:
        p = lab.spawn(lab.switch_ns, [sys.executable, "-m", "hostprint", "passive", "-i", "p0", "--timeout",
                                      str(int(n / pps) + 25), "--no-db", "-oJ", "/dev/null"],
                      stdout=log, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        time.sleep(3)
        print(f"passive -i p0 started (pid {p.pid}); sending {n:,} SYNs at {pps:,.0f}/s", file=sys.stderr, flush=True)
        snd = subprocess.Popen(["ip", "netns", "exec", lab.scanner_ns, sys.executable, "-c", SENDER, str(n), str(pps)],
                               stdout=subprocess.PIPE, text=True)
        hwm = peak_rss_kib(p, 0.05)
        sent = snd.communicate()[0].strip()
        err = p.communicate()[1]
        log.seek(0)
        out = log.read()
    ring = re.search(r"kernel ring: (\d+) frames, (\d+) dropped", out)
    head = re.search(r"(\d+) packets, (\d+) SYN", out)
    print(f"# live passive memory  {time.strftime('%Y-%m-%d %H:%M')}  load {os.getloadavg()[0]:.1f}  "
          f"command: python3 bench/passive/live_memory.py {n} {pps:.0f}")
    print(f"sender: {sent}; passive rc {p.returncode}; {head.group(0) if head else '?'}; "
          f"ring: {ring.group(1) + ' frames, ' + ring.group(2) + ' dropped' if ring else '?'}; "
          f"peak RSS {hwm / 1024:.0f} MiB")
    if p.returncode:
        print(err[-500:])


if __name__ == "__main__":
    main()
