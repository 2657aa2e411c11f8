"""The lab cannot be left by accident (issue 14): `lab exec` runs a command in the scanner
namespace, `lab up` on a running lab reuses it without signalling anything in it, and a lab address
that would leave through a default route is refused before any packet."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import needs_root

pytestmark = pytest.mark.lab


def hp(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hostprint", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def kept_lab():
    """A demo lab kept by `hostprint lab up`, removed by `hostprint lab down` whatever happens."""
    needs_root()
    name = f"c{os.getpid() % 100000}"
    try:
        yield name
    finally:
        hp("lab", "down", "--name", name)


def _daemon_pids(name: str) -> dict[str, int]:
    st = json.loads(hp("lab", "status", "--name", name, "--json").stdout)
    return {f"{h}:{s['kind']}:{s['port']}": s["pid"] for h, v in st["hosts"].items() for s in v["services"]
            if s["alive"]}


def test_lab_up_twice_reuses_exec_runs_inside(kept_lab):
    up = hp("lab", "up", "--name", kept_lab)
    assert up.returncode == 0, up.stderr
    assert f"hostprint lab exec --name {kept_lab} --" in up.stdout
    before = _daemon_pids(kept_lab)
    assert before
    again = hp("lab", "up", "--name", kept_lab)
    assert again.returncode == 0 and "already up; reusing it" in again.stdout
    assert _daemon_pids(kept_lab) == before  # same daemons, still alive: nothing was killed or restarted
    r = hp("lab", "exec", "--name", kept_lab, "--", "ip", "-br", "-4", "addr", "show", "dev", "eth0")
    assert r.returncode == 0 and "198.18.0.1/16" in r.stdout
    r = hp("lab", "exec", "--name", kept_lab, "--", "ip", "route", "show", "default")
    assert r.returncode == 0 and r.stdout.strip() == ""  # no way out of the lab
    r = hp("lab", "exec", "--name", kept_lab, "--", sys.executable, "-m", "hostprint", "scan", "-sS", "-p", "80",
           "-n", "198.18.0.10", "--no-db", "--progress", "never")
    assert r.returncode == 0, r.stderr
    assert "Nmap scan report for 198.18.0.10" in r.stdout and "80/tcp open" in r.stdout
    r = hp("lab", "exec", "--name", kept_lab, "--ns", "web", "--", "ss", "-ltnH")
    assert ":80 " in r.stdout
    r = hp("lab", "exec", "--name", kept_lab, "--", "sh", "-c", "exit 7")
    assert r.returncode == 7  # the command's own exit code


def test_lab_exec_without_a_lab_is_one_line():
    needs_root()
    r = hp("lab", "exec", "--name", "nosuchlab9", "--", "true")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "hostprint: lab nosuchlab9 is not running (start it with: hostprint lab up --name nosuchlab9)"]


def test_lab_address_outside_the_lab_is_refused_before_any_packet():
    """From this (root) namespace 198.18.0.10 is not on-link: with a default route it would leave
    the machine; without one it has no route. Either way: refused, nothing sent, one line per
    target and one closing line."""
    needs_root()
    r = hp("scan", "-sS", "-p", "80", "-n", "198.18.0.10")
    assert r.returncode == 2, r.stdout
    assert "198.18.0.10" in r.stderr and ("default route" in r.stderr or "no route" in r.stderr)
    if "default route" in r.stderr:
        assert "hostprint lab exec" in r.stderr
    assert r.stdout == ""
