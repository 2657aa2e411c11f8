"""NFQUEUE from Python: ctypes on libnetfilter_queue (Debian package libnetfilter-queue1).

Why this binding. The candidates were PyPI's NetfilterQueue (oremanj/python-netfilterqueue, 1.1.0
of 2023-03, Cython), PyPI's fnfqueue (1.1.2, 2023-03) and ctypes on the C library itself. Debian 12
packages no Python binding for NFQUEUE (no python3-netfilterqueue in bookworm), and NetfilterQueue
1.1.0 is published as a source archive only (pip download gives NetfilterQueue-1.1.0.tar.gz, no
wheel), so installing it needs a C compiler and libnetfilter-queue-dev on every machine. The C
library is the one the netfilter project itself maintains (libnetfilter_queue 1.0.5 in bookworm,
with Debian's security support), it is what NetfilterQueue wraps anyway, and its API (nfq_open,
nfq_create_queue, nfq_set_verdict …) has been stable since 2008; ctypes needs nothing else. The
cost is one ctypes callback per packet (measured in bench/scrub: see bench/RESULTS.md).

The queue is set up fail-open (NFQA_CFG_F_FAIL_OPEN: a full queue accepts instead of dropping; the
iptables rules add --queue-bypass: no listener = accept), so a slow or dead worker degrades the
scrubbing, never the network.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import socket
import struct
from collections.abc import Callable
from typing import Any

NF_ACCEPT = 1
NFQNL_COPY_PACKET = 2
NFQA_CFG_F_FAIL_OPEN = 1
AF_INET = 2
AF_INET6 = 10
LIBRARY = "libnetfilter_queue.so.1"

_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


def missing() -> str | None:
    """Why the queue stage cannot run here (None: it can)."""
    try:
        ctypes.CDLL(LIBRARY)
    except OSError:
        return "the NFQUEUE stage needs Debian package libnetfilter-queue1"
    return None


def _lib() -> Any:
    lib = ctypes.CDLL(LIBRARY, use_errno=True)
    lib.nfq_open.restype = ctypes.c_void_p
    lib.nfq_close.argtypes = [ctypes.c_void_p]
    lib.nfq_bind_pf.argtypes = [ctypes.c_void_p, ctypes.c_uint16]
    lib.nfq_create_queue.restype = ctypes.c_void_p
    lib.nfq_create_queue.argtypes = [ctypes.c_void_p, ctypes.c_uint16, _CB, ctypes.c_void_p]
    lib.nfq_destroy_queue.argtypes = [ctypes.c_void_p]
    lib.nfq_set_mode.argtypes = [ctypes.c_void_p, ctypes.c_uint8, ctypes.c_uint32]
    lib.nfq_set_queue_maxlen.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.nfq_set_queue_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32]
    lib.nfq_fd.argtypes = [ctypes.c_void_p]
    lib.nfq_handle_packet.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    lib.nfq_get_msg_packet_hdr.restype = ctypes.POINTER(ctypes.c_uint8)
    lib.nfq_get_msg_packet_hdr.argtypes = [ctypes.c_void_p]
    lib.nfq_get_payload.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(ctypes.c_uint8))]
    lib.nfq_set_verdict.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_char_p]
    lib.nfq_nfnlh.restype = ctypes.c_void_p
    lib.nfq_nfnlh.argtypes = [ctypes.c_void_p]
    lib.nfnl_rcvbufsiz.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    return lib


class Queue:
    """One bound queue. `serve(stop)` hands every queued packet to `rewrite` (bytes -> bytes to
    send instead, or None to accept unchanged) until `stop()` is true (checked at least every
    `poll` seconds)."""

    def __init__(self, num: int, rewrite: Callable[[bytes], bytes | None], *, maxlen: int = 4096):
        self.lib = _lib()
        self.rewrite = rewrite
        self.stats = {"packets": 0, "rewritten": 0, "errors": 0, "enobufs": 0}
        self.h = self.lib.nfq_open()
        if not self.h:
            raise OSError(ctypes.get_errno(), "nfq_open failed (needs CAP_NET_ADMIN)")
        self.lib.nfq_bind_pf(self.h, AF_INET)  # a no-op since Linux 3.8 (one queue, every family), kept for older kernels
        self.lib.nfq_bind_pf(self.h, AF_INET6)
        self._cb = _CB(self._on_packet)  # kept referenced for the queue's lifetime
        self.qh = self.lib.nfq_create_queue(self.h, num, self._cb, None)
        if not self.qh:
            self.lib.nfq_close(self.h)
            raise OSError(ctypes.get_errno(), f"cannot bind NFQUEUE {num} (another listener has it?)")
        self.lib.nfq_set_mode(self.qh, NFQNL_COPY_PACKET, 0xFFFF)
        self.lib.nfq_set_queue_maxlen(self.qh, maxlen)
        self.lib.nfq_set_queue_flags(self.qh, NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_FAIL_OPEN)
        self.lib.nfnl_rcvbufsiz(self.lib.nfq_nfnlh(self.h), 4 << 20)
        self.sock = socket.socket(fileno=self.lib.nfq_fd(self.h))

    def _on_packet(self, qh: int, nfmsg: int, nfad: int, data: int) -> int:
        hdr = self.lib.nfq_get_msg_packet_hdr(nfad)
        pid = struct.unpack("!I", bytes(hdr[0:4]))[0]
        ptr = ctypes.POINTER(ctypes.c_uint8)()
        n = self.lib.nfq_get_payload(nfad, ctypes.byref(ptr))
        new = None
        self.stats["packets"] += 1
        if n > 0:
            try:
                new = self.rewrite(ctypes.string_at(ptr, n))
            except Exception:  # noqa: BLE001 - a packet we cannot parse passes as it is
                self.stats["errors"] += 1
        if new is None:
            self.lib.nfq_set_verdict(qh, pid, NF_ACCEPT, 0, None)
        else:
            self.stats["rewritten"] += 1
            self.lib.nfq_set_verdict(qh, pid, NF_ACCEPT, len(new), new)
        return 0

    def serve(self, stop: Callable[[], bool], poll: float = 0.2) -> None:
        buf = bytearray(256 * 1024)
        view = memoryview(buf)
        self.sock.settimeout(poll)
        cbuf = (ctypes.c_char * len(buf)).from_buffer(buf)
        while not stop():
            try:
                n = self.sock.recv_into(view)
            except socket.timeout:
                continue
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # the kernel's socket buffer overflowed: fail-open took them
                    self.stats["enobufs"] += 1
                    continue
                if e.errno == errno.EINTR:
                    continue
                raise
            self.lib.nfq_handle_packet(self.h, cbuf, n)

    def close(self) -> None:
        if self.qh:
            self.lib.nfq_destroy_queue(self.qh)
            self.qh = None
        if self.h:
            self.sock.detach()
            self.lib.nfq_close(self.h)
            self.h = None
