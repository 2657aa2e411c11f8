"""What an IPv6 host's answers look like on the wire, for the scrubber's IPv6 lab test
(tests/test_scrub6_lab.py): run in a lab namespace as `python3 -m hostprint.lab.scrub6probe IFACE
ADDR TCP_PORT UDP_PORT`, it lets the kernel open one TCP connection (so the SYN-ACK is the target's
answer to an ordinary SYN) and sends one UDP datagram to a closed port, captures both answers with
an AF_PACKET socket and prints one JSON object: the SYN-ACK's hop limit, flow label, traffic class,
window and option kinds; the ICMPv6 error's hop limit, type and how many bytes it quotes.

A capture rather than hostprint's probes because the fields wanted here (flow label, the quote's
length) are exactly what the scrubber rewrites, and the kernel's own SYN shows the host's default
answer, not an answer to nmap's odd probes.
"""

from __future__ import annotations

import json
import socket
import sys
import time

ETH_P_ALL = 0x0003


def capture(iface: str, addr: str, tcp_port: int, udp_port: int, wait: float = 1.0) -> dict[str, object]:
    from hostprint.engine.frames import decode_frame_any
    from hostprint.engine.icmpv6 import ICMPv6
    from hostprint.engine.ipv6 import IPv6
    from hostprint.engine.packets import TCP

    target = socket.inet_pton(socket.AF_INET6, addr)
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    raw.bind((iface, 0))
    raw.settimeout(0.1)
    out: dict[str, object] = {}
    try:
        try:
            with socket.create_connection((addr, tcp_port), timeout=3):
                pass
        except OSError as e:
            out["connect_error"] = str(e)
        u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        u.sendto(b"x" * 600, (addr, udp_port))  # a long datagram: Linux quotes all of it
        u.close()
        end = time.monotonic() + wait
        while time.monotonic() < end and not ("synack" in out and "icmp6" in out):
            try:
                buf = raw.recv(65535)
            except TimeoutError:
                continue
            try:
                p = decode_frame_any(buf)
            except Exception:  # noqa: BLE001 - any other frame on the link
                continue
            ip = p.ip
            if not isinstance(ip, IPv6) or ip.src != target:
                continue
            if isinstance(p.l4, TCP) and p.l4.flags & 0x12 == 0x12 and "synack" not in out:
                out["synack"] = {"hlim": ip.hlim, "flow": ip.flow, "tc": ip.tc, "window": p.l4.window,
                                 "options": [int(o[0]) for o in p.l4.options]}
            elif isinstance(p.l4, ICMPv6) and p.l4.type in (1, 2, 3, 4) and "icmp6" not in out:
                out["icmp6"] = {"hlim": ip.hlim, "type": p.l4.type, "quoted": len(p.l4.quoted)}
    finally:
        raw.close()
    return out


def main(argv: list[str]) -> int:
    iface, addr, tport, uport = argv[0], argv[1], int(argv[2]), int(argv[3])
    print(json.dumps(capture(iface, addr, tport, uport)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
