"""The `hostprint` command: a thin layer that builds the parser from the command modules.

Each module in hostprint/commands has `register(sub)` and `run(args)`. Errors the user can fix
(`UsageError`) become one line on stderr and exit code 2; SIGTERM becomes SystemExit so that every
`finally` (the RST guard, lab teardown) runs on the way out. `hostprint 198.18.0.1 -p 22` without a
subcommand means `hostprint scan …`, as nmap users would type it.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from typing import NoReturn

from hostprint import __version__
from hostprint.errors import UsageError

#: Subcommand names (a first word that is none of these means "scan"). `discover` is registered by
#: the scan module, which shares its flags.
COMMANDS = ["scan", "discover", "timing", "learn", "amap", "passive", "report", "diff", "history", "lab", "demo",
            "guard", "zombies", "scrub", "audit", "merge", "cluster"]
MODULES = [c for c in COMMANDS if c != "discover"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, like every other bad input
        raise UsageError(message)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (only=NAME) just that subcommand's: a run of `hostprint passive`
    does not import every other command's modules (measured: 0.2 s of start-up, most of it the
    timing classifier that `timing` imports)."""
    p = _Parser(prog="hostprint", description="Who is on the other end of this address.")
    p.add_argument("--version", action="version", version=f"hostprint {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in MODULES:
        if only is None or name == only:
            importlib.import_module(f"hostprint.commands.{name}").register(sub)
    return p


def _normalise(argv: list[str]) -> list[str]:
    from hostprint.commands.scan import normalise_ping

    return normalise_ping(argv)


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:  # a closed terminal: clean up as for SIGTERM
        signal.signal(signal.SIGHUP, _on_sigterm)
    try:
        if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version"):
            argv = ["scan", *argv]
        only = argv[0] if argv and argv[0] in MODULES and argv[0] != "scan" else None
        parser = build_parser(only)
        if argv[:1] == ["cluster"]:  # cluster scan: its own flags, the rest are the shards' scan flags
            args, rest = parser.parse_known_args(argv)
            args.scan_argv = rest
        else:
            args = parser.parse_args(argv if only else _normalise(argv))
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except UsageError as e:
        if e.exit_code > 128:  # errors.Interrupted: what was measured is saved, now leave
            _quiet_signals()
        print(f"hostprint: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        _quiet_signals()
        print("hostprint: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _quiet_signals() -> None:
    """On the way out (results written, guard removed): a further Ctrl-C or SIGTERM would only cut
    the atexit hooks short and print a traceback from inside them."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(s, signal.SIG_IGN)
        except (ValueError, OSError):
            pass


if __name__ == "__main__":
    raise SystemExit(main())
