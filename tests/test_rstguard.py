"""The RST guard on a real kernel: it must keep the target half-open, and it must go away on every
exit path (normal, exception, SIGTERM, and after kill -9 at the next start)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.lab

T1 = "198.18.0.10"

COUNT_SYNACKS = textwrap.dedent("""
    import asyncio, socket, sys
    from hostprint.engine import packets as P, route
    from hostprint.engine.link import Link
    from hostprint.engine.rstguard import RstGuard

    async def main(guarded):
        lo, hi = route.probe_port_range()
        link = Link("eth0", ["198.18.0.1"]); link.start()
        got = []
        link.subscribe(lambda ts, fr: got.append(P.decode_frame(bytes(fr))))
        mac = await link.resolve("198.18.0.10")
        guard = RstGuard(lo, hi)
        if guarded:
            guard.install(); guard.guard("198.18.0.10")
        try:
            sport = lo + (7 if guarded else 8)
            syn = P.TCP(sport, 80, 1000, 0, P.SYN, 1024, options=[(P.OPT_MSS, 1460)])
            link.send(P.build_frame(link.eth(mac), P.IPv4(socket.inet_aton("198.18.0.1"), socket.inet_aton("198.18.0.10")), syn))
            await link.settle(2.5)
        finally:
            guard.remove()
        n = sum(1 for p in got if p.tcp and p.tcp.dport == sport and p.tcp.flags & P.SYN and p.tcp.flags & P.ACK)
        print(n)
    asyncio.run(main(sys.argv[1] == "1"))
""")


def _tables(lab) -> str:
    return lab.exec(lab.scanner_ns, ["nft", "list", "tables"], capture_output=True, text=True).stdout


def test_guard_keeps_target_half_open(scanlab):
    """Unguarded, our kernel RSTs the SYN-ACK and the target never retransmits; guarded, the target
    retransmits after its 1 s initial RTO (Linux TCP_TIMEOUT_INIT)."""
    def run(g: str) -> int:
        return int(scanlab.exec(scanlab.scanner_ns, [sys.executable, "-c", COUNT_SYNACKS, g],
                                capture_output=True, text=True, check=True).stdout.strip())

    assert run("0") == 1
    assert run("1") >= 2
    assert "hostprint_" not in _tables(scanlab)


def test_stale_table_of_killed_run_is_removed_at_next_start(scanlab):
    killed = scanlab.exec(scanlab.scanner_ns, [sys.executable, "-c",
                          "import os, signal\nfrom hostprint.engine.rstguard import RstGuard\n"
                          "g = RstGuard(65000, 65010); g.install(); print(g.name, flush=True)\n"
                          "os.kill(os.getpid(), signal.SIGKILL)"], capture_output=True, text=True)
    name = killed.stdout.strip()
    assert killed.returncode == -9 and name.startswith("hostprint_")
    assert name in _tables(scanlab)
    scanlab.exec(scanlab.scanner_ns, [sys.executable, "-c",
                 "from hostprint.engine.rstguard import RstGuard\nwith RstGuard(65000, 65010): pass"], check=True)
    assert name not in _tables(scanlab)


def test_guard_removed_on_sigterm_and_exception(scanlab):
    code = ("import signal, time\nfrom hostprint.cli import _on_sigterm\nfrom hostprint.engine.rstguard import RstGuard\n"
            "signal.signal(signal.SIGTERM, _on_sigterm)\n"
            "with RstGuard(65000, 65010) as g:\n    print(g.name, flush=True)\n    time.sleep(30)\n")
    p = scanlab.spawn("scan", [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    name = p.stdout.readline().strip()
    assert name in _tables(scanlab)
    os.kill(p.pid, signal.SIGTERM)  # ip netns exec execs python, so this is the python process
    p.wait(timeout=10)
    assert name not in _tables(scanlab)
    r = scanlab.exec(scanlab.scanner_ns, [sys.executable, "-c",
                     "from hostprint.engine.rstguard import RstGuard\nwith RstGuard(65000, 65010) as g:\n"
                     "    print(g.name, flush=True)\n    raise RuntimeError('boom')"], capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout.strip() and r.stdout.strip() not in _tables(scanlab)
