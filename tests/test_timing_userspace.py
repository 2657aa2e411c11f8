"""Live timing tests against the user-space relays libslirp (slirp4netns) and pasta (passt).

The scanner sits in the relay's inner namespace, behind its tap, where a rootless container sits
(hostprint/lab/usernet.py), so the relay's own TCP answers our SYN. Both labs run at once and each
listens at most 25 s (`--cron-timeout 25`): pasta's schedule (one SYN-ACK, a RST 10 s later) fits
inside; libslirp's (SYN-ACKs 6 s and 12 s apart, RST at 75 s) does not, so its observation is cut by
the listen limit and must still name libslirp (right-censoring), without waiting 75 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, needs_root

pytestmark = pytest.mark.lab

LIMIT = "25"


def _argv(addr: str) -> list[str]:
    return [sys.executable, "-m", "hostprint", "timing", addr, "-p", "80", "--tests", "sl",
            "--cron-timeout", LIMIT, "-oJ", "-"]


@pytest.fixture(scope="module")
def relays():
    """{kind: host JSON} for slirp4netns and pasta, measured side by side."""
    needs_root()
    from contextlib import ExitStack

    from hostprint.lab.usernet import binary, usernet

    kinds = [k for k in ("slirp4netns", "pasta") if binary(k)]
    if not kinds:
        pytest.skip("needs Debian packages slirp4netns and passt")
    with ExitStack() as stack:
        labs = {k: stack.enter_context(usernet(k, f"tu{k[0]}{os.getpid() % 10000}", 80 + 2 * i))
                for i, k in enumerate(kinds)}
        procs = {k: subprocess.Popen(["ip", "netns", "exec", u.inner_ns, *_argv(u.server_addr)], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for k, u in labs.items()}
        out = {}
        for k, p in procs.items():
            so, se = p.communicate(timeout=180)
            assert p.returncode == 0, se[-2000:]
            (out[k],) = [json.loads(x) for x in so.splitlines() if x.strip()]
        yield out


def _relay(relays, kind: str) -> dict:
    if kind not in relays:
        pytest.skip(f"needs {kind}")
    return relays[kind]


def _test(host: dict, name: str) -> dict:
    (t,) = [t for t in host["os"]["timing"]["tests"] if t["test"] == name]
    return t


def test_slirp_named_from_a_censored_schedule(relays):
    h = _relay(relays, "slirp4netns")
    tm = h["os"]["timing"]
    s = _test(h, "syn")
    # SYN-ACKs at 0, ~6, ~18 s; the next (~30 s) and the RST (~75 s) come after the limit
    assert len(s["arrivals"]) == 3 and s["rst"] is None, s
    g = np.diff(s["arrivals"])
    assert 5.4 <= g[0] <= 6.6 and 11.4 <= g[1] <= 12.6, g
    assert s["stopped"] == "timeout"
    assert s["synack"]["ttl"] == 64 and s["synack"]["options"] == "M"
    assert tm["outcome"] == "match", tm["lines"]
    assert tm["matches"][0]["id"] == "libslirp"
    assert tm["listen_limit_s"] is not None and 24 <= tm["listen_limit_s"] <= 27
    assert any(ln.startswith("  Listen limit 25 s") for ln in tm["lines"]), tm["lines"]
    la = _test(h, "lastack")  # FIN, then 1.5, 3, 6, 12 s (slow-timer ticks, 12-s cap)
    lg = np.diff(la["arrivals"])
    assert len(la["arrivals"]) >= 4 and 0.9 <= lg[0] <= 2.1 and 2.4 <= lg[1] <= 3.6, la
    assert h["os"]["architecture"] == []


def test_pasta_named_by_its_rst(relays):
    h = _relay(relays, "pasta")
    tm = h["os"]["timing"]
    s = _test(h, "syn")
    assert len(s["arrivals"]) == 1 and s["rst"] is not None, s
    assert 9.8 <= s["rst"] - s["arrivals"][0] <= 10.5
    assert s["stopped"] == "rst" and s["synack"]["ttl"] == 255
    assert tm["outcome"] == "match", tm["lines"]
    assert tm["matches"][0]["id"] == "pasta"
    # one SYN-ACK and a RST: neither a SYN cookie nor a SYN proxy answer
    assert not {m["id"] for m in tm["matches"][:1]} & {"syn-cookie", "syn-proxy"}
    assert h["os"]["architecture"] == []
    assert len(_test(h, "lastack")["arrivals"]) == 1  # pasta sends its FIN once
