"""An open TCP port with nothing behind it: accept, say nothing, hold the connection.

Exists so tests can tell "open but silent" (tcpwrapped-like, service detection must time out
gracefully) from "closed" and "filtered" without a real protocol in the way.
"""

from __future__ import annotations

import argparse
import selectors
import socket


def serve(port: int, bind: str = "0.0.0.0") -> None:
    sel = selectors.DefaultSelector()
    ls = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if ":" in bind:  # "::" listens on both families
        ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.bind((bind, port))
    ls.listen(128)
    sel.register(ls, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if s is ls:
                try:
                    c, _addr = ls.accept()
                except OSError:
                    continue
                sel.register(c, selectors.EVENT_READ)
            else:
                # Read and discard; close only when the peer closes.
                try:
                    data = s.recv(4096)  # type: ignore[union-attr]
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(s)
                    s.close()  # type: ignore[union-attr]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--bind", default="0.0.0.0")
    a = ap.parse_args()
    serve(a.port, a.bind)


if __name__ == "__main__":
    main()
