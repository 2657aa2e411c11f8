"""Live capture for passive observation: an AF_PACKET ring behind a kernel BPF filter.

Why a filter in the kernel (IPv4/IPv6 TCP with SYN or PSH, no later fragments): on a busy link
only a few percent of frames can carry a fingerprint, so the kernel drops the rest before they
are copied to us.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable

import numpy as np

from hostprint.engine import afpacket
from hostprint.engine import bpf as B
from hostprint.engine.pcapfile import LINKTYPE_ETHERNET, Batch


def live_filter(snaplen: int = 2048) -> list[B.Insn]:
    """Kernel BPF: IPv4 TCP (not a later fragment) or IPv6 TCP (no extension headers) whose flags
    have SYN or PSH: the only frames that can start a fingerprint or carry HTTP headers."""
    return B.assemble([
        (B.LD_H_ABS, 12),
        (B.JEQ_K, 0x0800, None, "v6"),
        (B.LD_B_ABS, 23),
        (B.JEQ_K, 6, None, "drop"),
        (B.LD_H_ABS, 20),
        (B.JSET_K, 0x1FFF, "drop", None),
        (B.LDX_B_MSH, 14),
        (B.LD_B_IND, 27),
        (B.JSET_K, 0x0A, "accept", "drop"),
        ("v6:",),
        (B.JEQ_K, 0x86DD, None, "drop"),
        (B.LD_B_ABS, 20),
        (B.JEQ_K, 6, None, "drop"),
        (B.LD_B_ABS, 67),
        (B.JSET_K, 0x0A, "accept", "drop"),
        ("accept:",),
        (B.RET_K, snaplen),
        ("drop:",),
        (B.RET_K, 0),
    ])


def probe_filter(snaplen: int = 2048) -> list[B.Insn]:
    """Kernel BPF for passive with probe detection: everything live_filter passes, plus what a
    probe can be: TCP with FIN or without ACK, bare ACKs without options (ACK/window scans), ACKs
    whose first option is a window scale (nmap's and hostprint's T4/T6: a window scale is only
    valid on a SYN, RFC 7323 2.2, so no established segment starts with one), UDP, ICMP and
    ICMPv6. Established bulk traffic (ACK segments with timestamps or SACK, no PSH) stays out."""
    return B.assemble([
        (B.LD_H_ABS, 12),
        (B.JEQ_K, 0x0800, None, "v6"),
        (B.LD_B_ABS, 23),
        (B.JEQ_K, 17, "accept", None),
        (B.JEQ_K, 1, "accept", None),
        (B.JEQ_K, 6, None, "drop"),
        (B.LD_H_ABS, 20),
        (B.JSET_K, 0x1FFF, "drop", None),
        (B.LDX_B_MSH, 14),
        (B.LD_B_IND, 27),
        (B.JSET_K, 0x0B, "accept", None),
        (B.JSET_K, 0x10, None, "accept"),
        (B.LD_B_IND, 26),
        (B.JEQ_K, 0x50, "accept", None),
        (B.JGE_K, 0x60, None, "drop"),
        (B.LD_B_IND, 34),  # the first option byte
        (B.JEQ_K, 3, "accept", "drop"),
        ("v6:",),
        (B.JEQ_K, 0x86DD, None, "drop"),
        (B.LD_B_ABS, 20),
        (B.JEQ_K, 17, "accept", None),
        (B.JEQ_K, 58, "accept", None),
        (B.JEQ_K, 6, None, "drop"),
        (B.LD_B_ABS, 67),
        (B.JSET_K, 0x0B, "accept", None),
        (B.JSET_K, 0x10, None, "accept"),
        (B.LD_B_ABS, 66),
        (B.JEQ_K, 0x50, "accept", None),
        (B.JGE_K, 0x60, None, "drop"),
        (B.LD_B_ABS, 74),
        (B.JEQ_K, 3, "accept", "drop"),
        ("accept:",),
        (B.RET_K, snaplen),
        ("drop:",),
        (B.RET_K, 0),
    ])


def live_capture(iface: str, on_batch: Callable[[Batch], None], *, stop: Callable[[], bool],
                 timeout: float | None = None, probes: bool = False, counters: dict[str, int] | None = None) -> None:
    """Hand the retired ring blocks to `on_batch` as pcapfile.Batch objects (the form `-r` reads
    files in, so PassiveAnalyzer.feed_batch works on live traffic with numpy too) until `stop()`
    says so or `timeout` seconds have passed. The caller checked root and the interface.

    Each block's bytes are copied once (the kernel reuses the ring once the block is handed
    back); starts are offsets into the copy, timestamps the kernel's receive times (ns). The
    blocks ready at one time, up to MERGE_BLOCKS, go as one batch: when the reader falls behind,
    its batches grow, and a batch's like packets (a scan's SYNs, one client's) are handled as
    groups; when it keeps up, each block goes alone, within RETIRE_MS of its first frame.
    probes=True: the wider filter probe detection needs (probe_filter). counters: "ring_packets"
    and "ring_drops" are added up from the ring's PACKET_STATISTICS (frames the filter passed, and
    those the kernel dropped because the ring was full)."""
    sock = afpacket.open_packet_socket(iface, probe_filter() if probes else live_filter())
    ring = afpacket.RxRing(sock, block_size=BLOCK_SIZE, block_nr=BLOCK_NR, retire_ms=RETIRE_MS)
    deadline = time.monotonic() + timeout if timeout else None
    batch = block_batch(ring)
    ready: list[Batch] = []

    def block(_u8: np.ndarray, starts: np.ndarray, lens: np.ndarray, ts: np.ndarray) -> None:
        ready.append(batch(starts, lens, ts))

    try:
        while True:
            wait = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
            select.select([ring.fileno()], [], [], wait)
            while True:
                ring.drain(block_handler=block, max_blocks=MERGE_BLOCKS)
                if not ready:
                    break
                b = merge(ready)
                ready.clear()
                try:
                    on_batch(b)
                except Exception:  # noqa: BLE001 - as RxRing.drain: a bad batch must never stop the capture
                    pass
                if stop():
                    break
            if counters is not None:
                pk, dr = ring.stats()
                counters["ring_packets"] = counters.get("ring_packets", 0) + pk
                counters["ring_drops"] = counters.get("ring_drops", 0) + dr
            if stop():
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        ring.close()
        sock.close()


#: the live ring: 16 blocks of 1 MiB (~6,500 SYNs each), a block handed over at the latest 20 ms
#: after its first frame; at most 4 blocks in one batch (a 4 MiB chunk, as -r reads)
BLOCK_SIZE, BLOCK_NR, RETIRE_MS, MERGE_BLOCKS = 1 << 20, 16, 20, 4


def merge(batches: list[Batch]) -> Batch:
    """Batches with explicit times (block_batch's) as one: buffers joined, starts shifted."""
    if len(batches) == 1:
        return batches[0]
    bases = np.cumsum([0] + [len(b.buf) for b in batches[:-1]])
    starts = np.concatenate([np.asarray(b.starts, np.int64) + base for b, base in zip(batches, bases)])
    lens = np.concatenate([np.asarray(b.lens, np.int64) for b in batches])
    return Batch.with_times(b"".join(b.buf for b in batches), starts, lens, batches[0].linktype,
                            np.concatenate([np.asarray(b.tsn, np.int64) for b in batches]))


def block_batch(ring: afpacket.RxRing, linktype: int = LINKTYPE_ETHERNET) -> Callable[..., Batch]:
    """(starts, lens, ts_ns) of one ring block (RxRing.drain's block_handler arrays) -> a Batch
    over a copy of the block's frames."""
    m = ring.map

    def batch(starts: np.ndarray, lens: np.ndarray, ts_ns: np.ndarray) -> Batch:
        lo = int(starts.min())
        hi = int((starts + lens).max())
        return Batch.with_times(m[lo:hi], starts - lo, lens, linktype, ts_ns)

    return batch
