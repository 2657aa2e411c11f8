"""Classic BPF programs for the receive socket, assembled here rather than by tcpdump at run time.

The filters hostprint needs are few and simple (ARP, plus IPv4 and/or IPv6 addressed to our
source addresses, never our own outgoing copies), so a dozen instructions written as data avoid a run-time dependency
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
            if not (0 <= jt <= 255 and 0 <= jf <= 255):
                raise ValueError(f"BPF jump at instruction {i} spans {max(jt, jf)} (classic BPF allows 255): "
                                 "too many addresses for one filter")
        out.append((code, jt, jf, _u32(k)))
    return out


def receive_filter(addresses: list[str], snaplen: int = 2048, arp: bool = True) -> list[Insn]:
    """Accept incoming ARP and incoming IPv4 whose destination is one of `addresses` (any IPv4
    destination when the list is empty). A list that holds IPv6 addresses gets
    `receive_filter_any`, so a link given both families filters both.

    Our own transmitted frames (PACKET_OUTGOING, seen on loopback and by every AF_PACKET socket)
    are rejected in the kernel, so a probe is never mistaken for its reply.
    """
    if any(":" in a for a in addresses):
        return receive_filter_any(addresses, snaplen=snaplen, arp=arp)
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


def _v6_words(addr: str) -> tuple[int, int, int, int]:
    return struct.unpack("!IIII", socket.inet_pton(socket.AF_INET6, addr.split("%", 1)[0]))


def _family_lines(tag: str, addresses: list[str], v6: bool, any_address: bool, snaplen: int) -> list[tuple]:
    """One family's section, entered with the ethertype already checked. Every address block ends
    in its own accept, so all jumps stay short whatever the number of addresses (classic BPF jumps
    reach 255 instructions)."""
    lines: list[tuple] = [(f"{tag}:",)]
    if any_address:
        return lines + [(RET_K, snaplen)]
    if not v6:
        if addresses:
            lines.append((LD_W_ABS, 30))
            for a in addresses:
                lines.append((JEQ_K, struct.unpack("!I", socket.inet_aton(a))[0], f"{tag}_ok", None))
        return lines + [(RET_K, 0), (f"{tag}_ok:",), (RET_K, snaplen)]
    for i, a in enumerate(addresses):
        miss = f"{tag}_{i + 1}"
        lines.append((f"{tag}_{i}:",))
        for j, w in enumerate(_v6_words(a)):
            lines += [(LD_W_ABS, 38 + 4 * j), (JEQ_K, w, None, miss)]
        lines.append((RET_K, snaplen))
    return lines + [(f"{tag}_{len(addresses)}:",), (RET_K, 0)]


def receive_filter6(addresses: list[str], snaplen: int = 2048) -> list[Insn]:
    """Accept incoming IPv6 whose destination is one of `addresses` (any IPv6 destination when
    the list is empty); nothing else. Neighbor Advertisements answering our solicitations are
    unicast to our address, so they pass like any other reply."""
    return receive_filter_any(addresses, snaplen=snaplen, arp=False, any_address=not addresses, families=(6,))


def receive_filter_any(addresses: list[str], snaplen: int = 2048, arp: bool = True, any_address: bool = False,
                       families: tuple[int, ...] = (4, 6)) -> list[Insn]:
    """One program for both families: ARP (if `arp`), IPv4 to our IPv4 addresses and IPv6 to our
    IPv6 addresses, never our own outgoing copies. A family with no address in the list is
    dropped, unless `any_address`, which accepts every destination of the allowed `families`."""
    v4 = [a for a in addresses if ":" not in a]
    v6 = [a for a in addresses if ":" in a]
    want4 = 4 in families and (any_address or bool(v4))
    want6 = 6 in families and (any_address or bool(v6))
    lines: list[tuple] = [
        (LD_B_ABS, SKF_AD_OFF + SKF_AD_PKTTYPE),
        (JEQ_K, PACKET_OUTGOING, "drop", None),
        (LD_H_ABS, 12),
        (JEQ_K, 0x0806, "accept" if arp else "drop", None),
        (JEQ_K, 0x0800, "v4" if want4 else "drop", None),
        (JEQ_K, 0x86DD, "v6" if want6 else "drop", "drop"),
        ("drop:",), (RET_K, 0), ("accept:",), (RET_K, snaplen),
    ]
    if want4:
        lines += _family_lines("v4", v4, False, any_address, snaplen)
    if want6:
        lines += _family_lines("v6", v6, True, any_address, snaplen)
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
