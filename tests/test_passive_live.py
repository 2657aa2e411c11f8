"""Live passive capture in batches (issue 18): every retired TPACKET_V3 block goes to
PassiveAnalyzer.feed_batch as one pcapfile.Batch, as `-r` reads a file.

The lab test runs `hostprint passive -i` on the scanner's switch port while tcpdump captures the
same port (nanosecond timestamps), sends real traffic through it (curl and urllib requests to
nginx, a hostprint SYN scan whose SYNs take the grouped path) and checks that the live run wrote
exactly what `passive -r` writes from tcpdump's file: every observation with its timestamp, every
host record, every probe detection. The unit tests check the Batch with explicit timestamps and
the exact -c on the same kind of batches.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostprint.engine import packets as P
from hostprint.engine import pcapfile as PF
from hostprint.match.passive import PassiveMatcher
from hostprint.probes.passive import PassiveAnalyzer, PassiveTechnique
from hostprint.signatures.passive_db import resolve_db

ROOT = Path(__file__).resolve().parent.parent
TGT = "198.18.5.10"


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _frames(n: int) -> list[tuple[int, bytes]]:
    """A scan's SYNs (grouped path: one source, no options beyond MSS) mixed with Linux-like
    client SYNs (one at a time), and SYN+ACKs answering some of them; ns timestamps."""
    from test_passive import LINUX_OPTS, syn_frame

    t = 1_700_000_000_123_456_789
    out = []
    for i in range(n):
        out.append((t + i * 1_003, syn_frame([(P.OPT_MSS, 1460)], ttl=45, df=False, win=1024, src="198.18.5.1",
                                             dst=TGT, sport=50000, dport=1 + i, seq=i)))
        if i % 7 == 3:
            out.append((t + i * 1_003 + 17, syn_frame(LINUX_OPTS, src=f"198.18.5.{20 + i % 9}", dst=TGT,
                                                      sport=40000 + i, dport=80)))
        if i % 11 == 5:
            out.append((t + i * 1_003 + 29, syn_frame(LINUX_OPTS, flags=P.SYN | P.ACK, ack=i + 1, src=TGT,
                                                      dst="198.18.5.1", sport=1 + i, dport=50000)))
    return out


def _run(batches: list[PF.Batch], count: int | None = None) -> tuple[list[str], PassiveAnalyzer]:
    lines: list[str] = []
    tech = PassiveTechnique(PassiveMatcher(resolve_db("builtin", None)), count=count, write=lines.append)
    for b in batches:
        tech._feed_live(b)
    return "".join(lines).splitlines(), tech.analyzer


def _live_batches(frames: list[tuple[int, bytes]], size: int) -> list[PF.Batch]:
    """Frames cut into blocks as the ring hands them over: one buffer per block (with a gap of
    header bytes before each frame, as in the ring), explicit ns timestamps."""
    out = []
    for k in range(0, len(frames), size):
        buf, starts, lens = b"", [], []
        for _, f in frames[k:k + size]:
            buf += b"\xee" * 66
            starts.append(len(buf))
            lens.append(len(f))
            buf += f
        out.append(PF.Batch.with_times(buf, starts, lens, PF.LINKTYPE_ETHERNET,
                                       __import__("numpy").array([t for t, _ in frames[k:k + size]], "int64")))
    return out


def test_batch_with_times_reads_like_the_file(tmp_path):
    """The same frames as a pcapng file (ns timestamps) and as ring-like blocks with explicit timestamps give the same lines, flow table,
    hosts and counters; parts of a batch keep their timestamps."""
    frames = _frames(400)
    f = tmp_path / "scan.pcapng"
    with PF.PcapngWriter(f, tsresol=9) as w:
        for t, fr in frames:
            w.write(t, fr)
    file_lines, fa = _run(list(PF.read_batches(f)))
    for size in (len(frames), 150, 1):
        live_lines, la = _run(_live_batches(frames, size))
        if size == len(frames):  # one block = the file's one chunk: the same order too
            assert live_lines == file_lines and list(la.flows.items()) == list(fa.flows.items())
        # other cuts: a batch's grouped SYNs are written before its other packets
        assert sorted(live_lines) == sorted(file_lines) and len(file_lines) > 450
        assert sorted(la.flows.items()) == sorted(fa.flows.items())
        assert la.stats == fa.stats
        assert json.dumps(la.summaries(), default=str) == json.dumps(fa.summaries(), default=str)
    # blocks ready together go as one batch (engine/capture.merge): the same as one block
    from hostprint.engine.capture import merge

    merged_lines, ma = _run([merge(_live_batches(frames, 150))])
    assert merged_lines == file_lines and list(ma.flows.items()) == list(fa.flows.items())
    b = _live_batches(frames, len(frames))[0]
    p = b.part(100, 130)
    assert [p.ts_ns(i) for i in range(30)] == [t for t, _ in frames[100:130]]
    assert p.ts_seconds([0, 29]) == [frames[100][0] / 1e9, frames[129][0] / 1e9]
    assert [p.buf[s:s + n] for s, n in zip(p.starts, p.lens)] == [fr for _, fr in frames[100:130]]


@pytest.mark.parametrize("count", [1, 7, 64, 300])
def test_live_count_stops_at_exactly_count_observations(count):
    """-c COUNT with batches: exactly COUNT observations, and the packets read are the fewest
    that make them: reading just those packets, without -c, gives the same lines (a packet makes
    at most one observation, so the block is fed in parts no longer than what is still wanted)."""
    frames = _frames(400)
    for size in (len(frames), 100):
        got, an = _run(_live_batches(frames, size), count)
        k = an.stats["packets"]
        assert an.observations == count == len(got) and k < len(frames)
        upto, _ = _run(_live_batches(frames[:k], size))
        assert sorted(got) == sorted(upto)
        fewer, _ = _run(_live_batches(frames[:k - 1], size))
        assert len(fewer) == count - 1


# --------------------------------------------------------------------------- the lab


def _order(d: dict) -> tuple[str, str]:
    """Records sorted by what they say apart from times and rates, then by everything."""
    def shape(x):
        if isinstance(x, float):
            return "f"
        if isinstance(x, dict):
            return {k: shape(v) for k, v in x.items()}
        if isinstance(x, list):
            return [shape(v) for v in x]
        return x

    return json.dumps(shape(d), sort_keys=True), json.dumps(d, sort_keys=True)


def _same(a, b) -> bool:
    """Equal, floats up to the two capture sockets' clocks: the kernel stamps a frame once when
    it is received (a packet socket's send), but for frames of the kernel's own TCP (curl) each
    socket reads the clock itself (measured: the ring 0.2-2 µs before tcpdump). Times (> 1e6 s)
    within 0.1 ms; what is computed from them (durations, rates, rounded) within 0.2 %."""
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            return False
        if abs(b) > 1e6:
            return abs(a - b) <= 1e-4
        return abs(a - b) <= 2e-3 + 2e-3 * abs(b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _hp(*args: str) -> list[str]:
    return [sys.executable, "-m", "hostprint", *args]


@pytest.mark.lab
def test_live_batches_equal_reading_a_capture_of_the_same_traffic(tmp_path):
    """Two live runs side by side on the same port: --quiet (nothing printed: the grouped SYN
    path) and printing every observation (one packet at a time in feed_batch); both must write
    what -r writes from tcpdump's capture, and report the ring's frames with 0 dropped."""
    if os.geteuid() != 0:
        pytest.skip("needs root to build network namespaces")
    import passive_tools as PT

    from hostprint.lab import HostSpec, Lab, LabSpec

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    pcap = tmp_path / "same.pcap"
    lives = {"quiet": tmp_path / "quiet.jsonl", "printing": tmp_path / "printing.jsonl"}
    spec = LabSpec(name=f"lv{os.getpid() % 10000}", hosts=[HostSpec(name="tgt", address=TGT, services=["nginx:80"])])
    with Lab(spec) as lab:
        for _attempt in range(3):
            dump = lab.spawn(lab.switch_ns, ["tcpdump", "-i", "p0", "-B", "65536", "-U", "-s", "0",
                                             "--time-stamp-precision", "nano", "-w", str(pcap), "ip or ip6"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            assert b"listening" in dump.stderr.readline()
            # stdout to a file: a pipe nobody reads during the run fills and stops the printing run
            terms = {k: (tmp_path / f"{k}.out").open("w+") for k in lives}
            procs = {k: lab.spawn(lab.switch_ns, _hp("passive", "-i", "p0", "--no-db", "-oJ", str(f),
                                                     *(["--quiet"] if k == "quiet" else [])),
                                  stdout=terms[k], stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
                     for k, f in lives.items()}
            outs = {}
            try:
                for p in procs.values():
                    while p.poll() is None and not PT.packet_socket_open(p.pid):
                        time.sleep(0.05)
                time.sleep(0.3)  # the ring is mapped right after the socket opens
                url = f"http://{TGT}/"
                for _ in range(3):
                    lab.exec("scan", ["curl", "-s", "-o", "/dev/null", url], check=True, timeout=20)
                lab.exec("scan", [sys.executable, "-c", f"import urllib.request as u; u.urlopen('{url}').read()"],
                         check=True, timeout=20)
                # ~100 SYNs per 20-ms block: the grouped SYN path and the detector's group path
                lab.exec("scan", _hp("scan", "-sS", "-p", "1-1500", "--max-rate", "5000", TGT, "--no-db"),
                         check=True, timeout=60, cwd=ROOT, env=env, capture_output=True)
                lab.exec("scan", ["curl", "-s", "-o", "/dev/null", url], check=True, timeout=20)
            finally:
                dropped = PT.stop(dump)  # waits out tcpdump's last block (FLUSH); ours is 20 ms
                for k, p in procs.items():
                    p.send_signal(signal.SIGINT)
                    err = p.communicate(timeout=60)[1]
                    terms[k].seek(0)
                    outs[k] = (terms[k].read(), err)
                    terms[k].close()
            for k, p in procs.items():
                assert p.returncode == 130, outs[k][1]
            if dropped == 0:
                break
        assert dropped == 0, "tcpdump dropped packets three times"
    r = subprocess.run(_hp("passive", "-r", str(pcap), "--no-db", "-oJ", "-"), capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    theirs = [json.loads(x) for x in r.stdout.splitlines()]
    for k, f in lives.items():
        _compare(_lines(f), [json.loads(json.dumps(d)) for d in theirs])
    table = outs["printing"][0]
    assert table.count(" -> 198.18.5.10:") >= 1500, table[-2000:]  # the observation lines
    m = re.search(r"kernel ring: (\d+) frames, (\d+) dropped", table)
    assert m and int(m.group(1)) >= 3000 and m.group(2) == "0", table[-2000:]


def _compare(mine: list[dict], theirs: list[dict]) -> None:
    kinds = [d.get("kind") for d in mine if d["type"] == "observation"]
    assert kinds.count("syn") >= 1500 and kinds.count("http-request") >= 4 and kinds.count("syn+ack") >= 5
    events = [d for d in mine if d["type"] == "event"]
    assert any(e["kind"] == "portscan" and e["tool"] == "hostprint" for e in events), events
    for d in mine + theirs:
        if d["type"] == "host":
            d.pop("scan", None)  # the run: its arguments and times
            # first_seen/last_seen stay: -r does a 4 MiB chunk's grouped SYNs (the scan) before its
            # curl SYNs sent earlier, a 20-ms block holds no such mix, and both must say the earliest

    # a detection's "new" and "tool" updates say what was seen when they were made: after a
    # 20-ms block live, after the whole 4 MiB chunk from the file; the "final" ones must agree
    def early(ds: list[dict]) -> list[tuple]:
        return sorted((d["update"], d["source"], d["kind"], d["method"]) for d in ds
                      if d["type"] == "event" and d["update"] != "final")

    assert early(mine) == early(theirs) and early(mine)
    mine = [d for d in mine if d["type"] != "event" or d["update"] == "final"]
    theirs = [d for d in theirs if d["type"] != "event" or d["update"] == "final"]
    # a batch's grouped SYNs are written before its other packets, and a file chunk holds many
    # ring blocks: the same records, in another order
    mine.sort(key=_order)
    theirs.sort(key=_order)
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs):
        assert _same(a, b), (a, b)
    # the scan's SYNs come from a packet socket: the kernel stamps them once, both taps read that
    syn_ts = {(d["port"], d["peer_port"]): d["ts"] for d in theirs if d.get("kind") == "syn" and d["raw"]["win"] == 1024}
    assert sum(syn_ts.get((d["port"], d["peer_port"])) == d["ts"] for d in mine if d.get("kind") == "syn") >= 1500


# --------------------------------------------------------------------------- memory with 1 M flows


@pytest.mark.parametrize("grouped", [False, True])
def test_detector_handshakes_are_bounded_over_all_sources(monkeypatch, grouped):
    """Many clients each opening connections (bench/passive/live_memory.py --shape clients: 284 MiB
    at 1 M SYNs before): the open handshakes of all sources together stay under MAX_CONNS_TOTAL
    (here 1,000), the oldest go first, each source's newest stays."""
    from hostprint.match import probedetect as PD

    monkeypatch.setattr(PD, "MAX_CONNS_TOTAL", 1000)
    d = PD.detector(None)
    t = 0.0
    for rnd in range(40):
        for i in range(100):
            src = (0xC6120000 + i).to_bytes(4, "big")
            t += 0.001
            p = PD.Pkt(t, 4, src, b"\xc6\x12\x07\x0a", 6, 64, 1, True, 0, sport=1024 + rnd * 2, dport=80,
                       flags=PD.SYN, win=64240, seq=rnd, opts=b"\x02\x04\x05\xb4")
            if grouped:
                d.feed_group(p, [80, 80], [1024 + rnd * 2, 1025 + rnd * 2], t)
            else:
                d.feed(p)
        total = sum(len(s.conns) for s in d.sources.values())
        assert total <= 1000 + 1000 // 4 * (2 if grouped else 1), (rnd, total)
    assert d.stats["conns_dropped"] > 0
    for s in d.sources.values():
        assert (b"\xc6\x12\x07\x0a", 80, 1024 + 39 * 2) in s.conns
        assert min(s.conns.values()) > t / 2
