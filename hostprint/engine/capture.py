"""Live capture for passive observation: an AF_PACKET ring behind a kernel BPF filter.

Why a filter in the kernel (IPv4/IPv6 TCP with SYN or PSH, no later fragments): on a busy link
only a few percent of frames can carry a fingerprint, so the kernel drops the rest before they
are copied to us.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable

from hostprint.engine import afpacket
from hostprint.engine import bpf as B


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


def live_capture(iface: str, on_frame: Callable[[float, bytes], None], *, stop: Callable[[], bool],
                 timeout: float | None = None, probes: bool = False, counters: dict[str, int] | None = None) -> None:
    """Hand every filtered frame (kernel receive time in seconds, bytes) to `on_frame` until
    `stop()` says so or `timeout` seconds have passed. The caller checked root and the interface.
    probes=True: the wider filter probe detection needs (probe_filter). counters: "ring_packets"
    and "ring_drops" are added up from the ring's PACKET_STATISTICS (frames the filter passed, and
    those the kernel dropped because the ring was full)."""
    sock = afpacket.open_packet_socket(iface, probe_filter() if probes else live_filter())
    ring = afpacket.RxRing(sock, block_size=1 << 20, block_nr=16, retire_ms=20)
    deadline = time.monotonic() + timeout if timeout else None

    def handler(ts_ns: int, frame: memoryview) -> None:
        on_frame(ts_ns / 1e9, bytes(frame))

    try:
        while True:
            wait = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
            select.select([ring.fileno()], [], [], wait)
            ring.drain(handler)
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
