"""Classic BPF programs for the receive socket, assembled here rather than by tcpdump at run time.

The filters hostprint needs are few and simple (ARP, plus IPv4 addressed to our source addresses,
never our own outgoing copies), so a dozen instructions written as data avoid a run-time dependency
on tcpdump/libpcap and let us check them in tests against `tcpdump -dd` output.
Filtering in the kernel matters: with 50 % unrelated traffic the same receiver lost 7 % of replies
without BPF and none with it (../shared/reference/packet-io.md §4).
"""

from __future__ import annotations

import ctypes
import socket
import struct

# Opcodes (linux/filter.h, linux/bpf_common.h)
LD_W_ABS, LD_H_ABS, LD_B_ABS = 0x20, 0x28, 0x30
LDX_B_MSH = 0xB1  # X = 4 * ([k] & 0xf): the IPv4 header length
LD_H_IND, LD_B_IND = 0x48, 0x50
JEQ_K, JGE_K, JSET_K, JGT_K = 0x15, 0x35, 0x45, 0x25
RET_K = 0x06

SKF_AD_OFF = -0x1000
SKF_AD_PKTTYPE = 4
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SO_LOCK_FILTER = 44

Insn = tuple[int, int, int, int]  # (code, jt, jf, k)


def _u32(k: int) -> int:
    return k & 0xFFFFFFFF


def assemble(lines: list[tuple]) -> list[Insn]:
    """Resolve symbolic jumps: a line is ("label:",) or (code, k) or (code, k, jt_label, jf_label)
    where a label of None means "next instruction"."""
    labels: dict[str, int] = {}
    insns: list[tuple] = []
    for ln in lines:
        if len(ln) == 1:
            labels[ln[0].rstrip(":")] = len(insns)
        else:
            insns.append(ln)
    out: list[Insn] = []
    for i, ln in enumerate(insns):
        code, k = ln[0], ln[1]
        jt = jf = 0
        if len(ln) == 4:
            jt = labels[ln[2]] - i - 1 if ln[2] else 0
            jf = labels[ln[3]] - i - 1 if ln[3] else 0
        out.append((code, jt, jf, _u32(k)))
    return out


def receive_filter(addresses: list[str], snaplen: int = 2048, arp: bool = True) -> list[Insn]:
    """Accept incoming ARP and incoming IPv4 whose destination is one of `addresses` (any IPv4
    destination when the list is empty).

    Our own transmitted frames (PACKET_OUTGOING, seen on loopback and by every AF_PACKET socket)
    are rejected in the kernel, so a probe is never mistaken for its reply.
    """
    addrs = [struct.unpack("!I", socket.inet_aton(a))[0] for a in addresses]
    lines: list[tuple] = [
        (LD_B_ABS, SKF_AD_OFF + SKF_AD_PKTTYPE),
        (JEQ_K, PACKET_OUTGOING, "drop", None),
        (LD_H_ABS, 12),
        (JEQ_K, 0x0806, "accept" if arp else "drop", None),
        (JEQ_K, 0x0800, None, "drop"),
    ]
    if addrs:
        lines.append((LD_W_ABS, 30))
        for i, a in enumerate(addrs):
            lines.append((JEQ_K, a, "accept", None if i < len(addrs) - 1 else "drop"))
    lines += [("accept:",), (RET_K, snaplen), ("drop:",), (RET_K, 0)]
    return assemble(lines)


def run(prog: list[Insn], frame: bytes, pkttype: int = 0) -> int:
    """A small interpreter for the instructions used above, for tests: returns the accept length."""
    a = x = 0
    pc = 0
    while pc < len(prog):
        code, jt, jf, k = prog[pc]
        pc += 1
        if code in (LD_W_ABS, LD_H_ABS, LD_B_ABS):
            if k == _u32(SKF_AD_OFF + SKF_AD_PKTTYPE):
                a = pkttype
                continue
            size = {LD_W_ABS: 4, LD_H_ABS: 2, LD_B_ABS: 1}[code]
            if k + size > len(frame):
                return 0
            a = int.from_bytes(frame[k: k + size], "big")
        elif code == LDX_B_MSH:
            x = 4 * (frame[k] & 0xF)
        elif code in (LD_H_IND, LD_B_IND):
            size = 2 if code == LD_H_IND else 1
            if x + k + size > len(frame):
                return 0
            a = int.from_bytes(frame[x + k: x + k + size], "big")
        elif code == JEQ_K:
            pc += jt if a == k else jf
        elif code == JGT_K:
            pc += jt if a > k else jf
        elif code == JGE_K:
            pc += jt if a >= k else jf
        elif code == JSET_K:
            pc += jt if a & k else jf
        elif code == RET_K:
            return min(k, len(frame))
        else:
            raise ValueError(f"opcode {code:#x} not supported by the test interpreter")
    return 0


def attach(sock: socket.socket, prog: list[Insn]) -> None:
    """Attach a classic BPF program to a socket (SO_ATTACH_FILTER)."""
    raw = b"".join(struct.pack("HBBI", c, jt, jf, k) for c, jt, jf, k in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HxxxxxxQ", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
