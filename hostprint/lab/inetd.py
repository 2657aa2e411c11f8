"""A minimal inetd for lab daemons that only run inetd-style (telnetd): accept, fork, exec.

Why not openbsd-inetd: its config lives in /etc and it runs as a system service; the lab needs
one private listener per daemon, in the foreground, tracked by PID.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket


def serve(port: int, argv: list[str]) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(64)
    while True:
        try:
            c, _ = ls.accept()
        except OSError:
            continue
        if os.fork() == 0:
            ls.close()
            os.dup2(c.fileno(), 0)
            os.dup2(c.fileno(), 1)
            os.dup2(c.fileno(), 2)
            c.close()
            try:
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        c.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("argv", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    argv = a.argv[1:] if a.argv and a.argv[0] == "--" else a.argv
    serve(a.port, argv)


if __name__ == "__main__":
    main()
