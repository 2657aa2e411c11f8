"""Passive speed with probe detection on (issue 18): `hostprint passive -r` vs `p0f -r`, end to end
(interpreter start-up and imports included), on captures of real tools made in the lab.

  python3 bench/passive/probes.py [DIR]

1. Captures (made once under DIR, default /tmp/hostprint-bench/probes/, never in the repo):
   tests/passive_tools.py's `normal` (web, browser-like client, SSH) and `nmap-full` (nmap -sS -p-
   against the target: 65,535 SYNs and their answers) runs, in a lab of their own.
2. `mixed.pcap` = both, about 131 k packets; `mixed10.pcap` = the same packets ten times over, with
   the timestamps moved on each time (1.3 M packets; real packets, repeated).
3. Each file through `p0f -r FILE -o LOG` and `hostprint passive -r FILE -oJ OUT --no-db` (probe
   detection on, the default; also --no-detect, and without a bytecode cache), 5 interleaved runs
   each: best wall time, packets/s, peak RSS (/usr/bin/time), and the medians with their ratio.
Not a test: prints a table for bench/RESULTS.md.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def captures(d: Path) -> dict[str, Path]:
    want = {n: d / f"{n}.pcap" for n in ("normal", "nmap-full")}
    if all(p.exists() for p in want.values()):
        return want
    import passive_tools as PT

    from hostprint.lab import Lab

    with Lab(PT.lab_spec(f"pb{os.getpid() % 10000}"), strict=False) as lab:
        return PT.make(lab, d, list(want))


def merge(parts: list[Path], out: Path, times: int = 1) -> int:
    from hostprint.engine.pcapfile import PcapWriter, iter_packets

    n = 0
    shift = 0
    with PcapWriter(out) as w:
        for _ in range(times):
            last = 0
            for p in parts:
                for ts, _lt, b in iter_packets(p):
                    w.write(ts + shift, b)
                    last = max(last, ts + shift)
                    n += 1
            shift = last - (next(iter_packets(parts[0]))[0]) + 1_000_000_000
    return n


PYC = Path("/tmp/hostprint-bench/pycache")


def timed(argv: list[str], pyc: bool = True) -> tuple[float, float, int, int]:
    """Wall time, CPU time (user+sys), peak RSS (MiB) and exit code of one run, measured by
    /usr/bin/time (its child's RSS is the tool's own: a child forked from this Python would carry
    this process's high-water mark). pyc=True: Python may keep compiled bytecode (under /tmp, as an
    installed package has it); this machine's environment sets PYTHONDONTWRITEBYTECODE=1, which
    makes every run compile hostprint's sources again."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if pyc:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYC)
    r = subprocess.run(["/usr/bin/time", "-f", "@@ %e %U %S %M %x", *argv], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    tail = [x for x in r.stderr.splitlines() if x.startswith("@@ ")][-1].split()
    wall, user, sys_, rss, rc = float(tail[1]), float(tail[2]), float(tail[3]), int(tail[4]), int(tail[5])
    return wall, user + sys_, rss // 1024, rc


def main() -> None:
    d = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/hostprint-bench/probes")
    d.mkdir(parents=True, exist_ok=True)
    caps = captures(d)
    files = {}
    for name, times in (("mixed", 1), ("mixed10", 10)):
        f = d / f"{name}.pcap"
        n = merge([caps["normal"], caps["nmap-full"]], f, times) if not f.exists() else None
        if n is None:
            from hostprint.engine.pcapfile import read_batches

            n = sum(len(b.starts) for b in read_batches(f))
        files[name] = (f, n)
    import numpy

    print(f"# load average {os.getloadavg()[0]:.1f} at start")
    print(f"# passive probe-detection benchmark  {time.strftime('%Y-%m-%d')}  {platform.machine()}  python "
          f"{platform.python_version()}  numpy {numpy.__version__}  cpus {os.cpu_count()}")
    hp = [sys.executable, "-m", "hostprint", "passive", "--no-db", "--quiet", "-oJ", str(d / "out.jsonl"), "-r"]
    timed([*hp, str(caps["normal"])])  # compiles the bytecode once
    for name, (f, n) in files.items():
        runs: dict[str, list[tuple[float, float, int, int]]] = {"p0f": [], "hostprint": [], "hostprint no-pyc": [],
                                                         "hostprint --no-detect": []}
        for _ in range(5):
            log = d / "p0f.log"
            log.unlink(missing_ok=True)
            runs["p0f"].append(timed(["p0f", "-r", str(f), "-o", str(log)]))
            runs["hostprint --no-detect"].append(timed([*hp, str(f), "--no-detect"]))
            runs["hostprint no-pyc"].append(timed([*hp, str(f)], pyc=False))
            runs["hostprint"].append(timed([*hp, str(f)]))
        print(f"# {f.name}: {n:,} packets, {f.stat().st_size / 2**20:.0f} MiB; best of 5 interleaved runs")
        best, cpu = {}, {}
        for tool, rs in runs.items():
            w, c, rss, rc = min(rs)
            best[tool], cpu[tool] = w, min(x[1] for x in rs)
            print(f"{tool:<22} {w:6.2f} s wall {n / w:>11,.0f} pkt/s  cpu {cpu[tool]:5.2f} s  {rss:4d} MiB  rc {rc}  "
                  f"(all wall: {', '.join(f'{x[0]:.2f}' for x in rs)} s)")
        med = {tool: statistics.median(x[0] for x in rs) for tool, rs in runs.items()}
        print(f"# medians (wall): {', '.join(f'{t} {v:.2f} s' for t, v in med.items())}; hostprint speed / p0f speed "
              f"{med['p0f'] / med['hostprint']:.2f}x (--no-detect {med['p0f'] / med['hostprint --no-detect']:.2f}x); "
              f"load average now {os.getloadavg()[0]:.1f}")
        print(f"# hostprint speed / p0f speed (end to end, start-up included): wall {best['p0f'] / best['hostprint']:.2f}x,"
              f" cpu {cpu['p0f'] / cpu['hostprint']:.2f}x; without a bytecode cache: wall "
              f"{best['p0f'] / best['hostprint no-pyc']:.2f}x, cpu {cpu['p0f'] / cpu['hostprint no-pyc']:.2f}x")
        ev = sum(1 for line in (d / "out.jsonl").read_text().splitlines() if '"type": "event"' in line)
        print(f"# hostprint events written: {ev}")


if __name__ == "__main__":
    main()
