"""Errors that end a run with one clear line and exit code 2 (rule: never a traceback for bad input)."""


class UsageError(Exception):
    """Bad user input: a target spec, port spec, option or file. The message names the bad token."""

    exit_code = 2


class NeedsRoot(UsageError):
    """A raw-socket feature was asked for without root or CAP_NET_RAW."""

    def __init__(self, what: str):
        super().__init__(f"needs root or CAP_NET_RAW: {what}")


def have_raw_sockets() -> bool:
    """True when this process may open raw sockets (root or CAP_NET_RAW)."""
    import socket

    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
        return True
    except (PermissionError, OSError):
        return False
