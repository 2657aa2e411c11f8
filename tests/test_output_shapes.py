"""What a person sees, every subcommand (issue 14): piped output is plain (no escape codes, never
wrapped at a console width, no padding), the scan report is nmap's text; on a real terminal (tmux)
the same report comes with colours, live progress, -v's "Discovered open port" lines, and
`history` never cuts a run ID or start time.

Piped runs use COLUMNS=40 on purpose: anything still laid out by a console width would wrap there.
The tmux server is our own (`-L <name>`), killed by its socket name at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.lab

T1 = "198.18.0.10"
ESC = re.compile(r"\x1b\[")


def plain(text: str) -> list[str]:
    """The lines of piped output, checked for the plain-output rules."""
    assert not ESC.search(text), "escape codes in piped output"
    lines = text.splitlines()
    padded = [ln for ln in lines if ln != ln.rstrip()]
    assert not padded, f"padded lines: {padded[:3]}"
    return lines


def run(lab, *args: str, check: bool = True, db: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "40", "LINES": "20"}
    if db is not None:
        env["HOSTPRINT_DB"] = str(db)
    argv = [sys.executable, "-m", "hostprint", *args]
    r = lab.exec(lab.scanner_ns, argv, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    if check:
        assert r.returncode == 0, (args, r.stderr)
    return r


@pytest.fixture(scope="module")
def inv(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shapes") / "inv.sqlite"


def test_scan_piped_is_nmap_text_and_never_wrapped(scanlab, inv):
    r = run(scanlab, "scan", "-sS", "-sV", "-p", "22,80,81", "-n", T1, db=inv)
    lines = plain(r.stdout)
    assert lines[0] == f"Nmap scan report for {T1}"
    assert lines[1].startswith("Host is up (") and lines[1].endswith("s latency).")
    row = next(ln for ln in lines if ln.startswith("22/tcp"))
    assert row.split()[:3] == ["22/tcp", "open", "ssh"] and "OpenSSH" in row and "(protocol 2.0" in row
    assert len(row) > 40  # one line although COLUMNS=40: not wrapped
    assert "81/tcp closed hosts2-ns" in re.sub(" +", " ", "\n".join(lines))
    assert "Network Distance: 1 hop" in lines
    assert lines[-1].startswith("hostprint done: 1 IP address (1 host up) scanned in ")
    assert r.stderr == ""  # no progress bars when stderr is not a terminal


def test_scan_reason_and_down_hosts_only_with_v(scanlab, inv, tmp_path):
    out = tmp_path / "s.nmap"
    r = run(scanlab, "scan", "-sS", "-p", "22", "-n", "-PE", "--reason", T1, "198.18.0.15", "-oN", str(out), db=inv)
    lines = plain(r.stdout)
    assert "PORT   STATE SERVICE REASON" in lines and "22/tcp open  ssh     syn-ack ttl 64" in lines
    assert not any("198.18.0.15" in ln for ln in lines)  # down: counted, not listed (nmap without -v)
    assert lines[-1].startswith("hostprint done: 2 IP addresses (1 host up)")
    assert "Nmap scan report for 198.18.0.15" not in out.read_text()
    r = run(scanlab, "scan", "-sS", "-p", "22", "-n", "-PE", "-v", T1, "198.18.0.15", "-oN", str(out), db=inv)
    assert "Nmap scan report for 198.18.0.15 [host down]" in plain(r.stdout)
    assert "Discovered open port 22/tcp on 198.18.0.10" in r.stdout
    assert "Nmap scan report for 198.18.0.15 [host down]" in out.read_text()


def test_discover_piped(scanlab, inv):
    lines = plain(run(scanlab, "discover", "-n", "198.18.0.10-12", db=inv).stdout)
    assert [ln for ln in lines if ln.startswith("Nmap scan report for")] == [
        "Nmap scan report for 198.18.0.10", "Nmap scan report for 198.18.0.11", "Nmap scan report for 198.18.0.12"]
    assert lines[-1].startswith("hostprint done: 3 IP addresses (3 hosts up)")


def test_grepable_to_dev_stdout(scanlab, inv):
    lines = plain(run(scanlab, "scan", "-sS", "-p", "22,80", "-n", T1, "-oG", "/dev/stdout", db=inv).stdout)
    assert lines[0].startswith("# hostprint ") and lines[-1].startswith("# hostprint done at")
    assert f"Host: {T1} ()\tPorts: 22/open/tcp//ssh///, 80/open/tcp//http///" in lines


def test_amap_piped(scanlab):
    lines = plain(run(scanlab, "amap", T1, "22", "6379").stdout)
    assert f"Protocol on {T1}:22/tcp matches ssh" in " ".join(lines) or any("matches ssh" in ln for ln in lines)
    assert lines[-1].startswith("hostprint amap finished: 2 ports in ")


def test_timing_piped(scanlab):
    lines = plain(run(scanlab, "timing", T1, "-p", "80", "--tests", "s", "--cron-timeout", "4").stdout)
    assert lines[0] == f"Timing report for {T1}"
    assert lines[1].startswith("Remote OS guesses: ")


def test_learn_piped(scanlab, tmp_path):
    out = tmp_path / "timing.txt"
    r = run(scanlab, "learn", T1, "-p", "80", "--label", "Linux lab", "--tests", "s", "--cron-timeout", "4",
            "--repeat", "1", "--timing-db-out", str(out))
    plain(r.stdout)
    plain(r.stderr)
    assert out.exists() and "Linux lab" in out.read_text()


def test_passive_piped(tmp_path):
    from hostprint.engine import packets as P
    from hostprint.engine import pcapfile as PF

    opts = P.encode_tcp_options([(P.OPT_MSS, 1460), (P.OPT_SACKOK, None), (P.OPT_TS, (12345, 0)), (P.OPT_NOP, None),
                                 (P.OPT_WS, 7)])
    f = tmp_path / "c.pcap"
    with PF.PcapWriter(f) as w:
        for i in range(3):
            ip = P.IPv4(src=bytes([198, 18, 9, 1]), dst=bytes([198, 18, 9, 2]), ttl=64, df=True, id=1234)
            tcp = struct.pack("!HHIIBBHHH", 40000 + i, 80, 1000, 0, (20 + len(opts)) // 4 << 4, P.SYN, 64240, 0, 0) + opts
            ip.total_length = 20 + len(tcp)
            w.write(1_700_000_000_000_000_000 + i, P.Ethernet(b"\x02" * 6, b"\x04" * 6).encode() + ip.encode(len(tcp)) + tcp)
    env = {**os.environ, "COLUMNS": "40"}
    r = subprocess.run([sys.executable, "-m", "hostprint", "passive", "-r", str(f), "--no-db"], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = plain(r.stdout)
    host = next(ln for ln in lines if "198.18.9.1" in ln)
    assert re.search(r"\(\d+%\)", host) and "1 hop" in host or "hops" in host or "unknown" in host
    assert not re.search(r"\(\d\.\d\)", host)  # confidence in percent, not 0.9


def test_history_report_diff_piped(scanlab, inv, tmp_path):
    run(scanlab, "scan", "-sS", "-p", "22,80", "-n", T1, "--exclude-ports", "23", db=inv)
    run(scanlab, "scan", "-sS", "-p", "22,80", "-n", T1, "198.18.0.11", "--max-retries", "1", db=inv)
    lines = plain(run(scanlab, "history", db=inv).stdout)
    assert lines[1].split()[:3] == ["ID", "STARTED", "DURATION"]
    ids = [ln.split()[0] for ln in lines[2:]]
    assert all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids)  # whole, never cut
    assert any(ln.endswith("--max-retries 1") for ln in lines)  # ARGS whole at the end of its line
    assert all(re.match(r"[0-9a-f]{12} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", ln) for ln in lines[2:])
    html = tmp_path / "r.html"
    plain(run(scanlab, "report", "-o", str(html), db=inv).stdout)
    assert html.exists()
    d = run(scanlab, "diff", ids[1], ids[0], db=inv)
    dl = plain(d.stdout)
    assert dl[0] == f"Changes from run {ids[1]} to run {ids[0]}"
    assert "ADDRESS\tCHANGE\tSTATUS IN OTHER RUN\tOPEN PORTS\tOS" in dl
    assert any(ln.startswith("198.18.0.11\tappeared\t") for ln in dl)


def test_lab_status_piped(scanlab):
    r = subprocess.run([sys.executable, "-m", "hostprint", "lab", "status", "--name", scanlab.name],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    lines = plain(r.stdout)
    assert lines[0].startswith(f"lab {scanlab.name}: running")


# ---------------------------------------------------------------------------- a real terminal


@pytest.fixture
def tmux(tmp_path):
    if not shutil.which("tmux"):
        pytest.skip("tmux not installed")
    sock = f"hpt{os.getpid()}"

    def cmd(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True, timeout=30)

    yield cmd
    cmd("kill-server")


def _until(tmux, pane: str, needle: str, timeout: float = 120) -> str:
    end = time.monotonic() + timeout
    text = ""
    while time.monotonic() < end:
        text = tmux("capture-pane", "-p", "-e", "-J", "-S", "-200", "-t", pane).stdout
        if needle in text:
            return text
        time.sleep(0.3)
    raise AssertionError(f"{needle!r} never appeared:\n{text}")


def test_terminal_shows_colours_progress_and_discovered_ports(scanlab, tmux, inv):
    """A real terminal (tmux, 100x40): the report in colour, the progress bars on stderr, -v's lines."""
    py = sys.executable
    shell = (f"cd {ROOT} && HOSTPRINT_DB={inv} ip netns exec {scanlab.scanner_ns} {py} -m hostprint scan -sS -sV "
             f"-p 22,80,6379 -v -n {T1}; echo __DONE__; sleep 300")
    assert tmux("new-session", "-d", "-s", "t", "-x", "100", "-y", "40", shell).returncode == 0
    text = _until(tmux, "t", "__DONE__")
    flat = ESC.sub("", re.sub(r"\x1b\[[0-9;]*m", "", text))
    assert "Discovered open port 22/tcp on 198.18.0.10" in flat
    assert "syn scan" in flat and "100%" in flat  # the progress bar ran and finished
    assert "Nmap scan report for 198.18.0.10" in flat and "hostprint done: 1 IP address (1 host up)" in flat
    assert re.search(r"\x1b\[[0-9;]*m", text)  # colours
    port_line = next(ln for ln in text.splitlines() if "22/tcp" in ln and "ssh" in ln)
    assert "\x1b[" in port_line  # the state is coloured


def test_terminal_history_keeps_ids_and_times(scanlab, tmux, inv):
    """80 columns and a long command line: ARGS is cut, ID and STARTED never."""
    run(scanlab, "scan", "-sS", "-p", "22," + ",".join(str(p) for p in range(1000, 1060)), "-n", T1, db=inv)
    shell = f"cd {ROOT} && HOSTPRINT_DB={inv} {sys.executable} -m hostprint history; echo __DONE__; sleep 300"
    assert tmux("new-session", "-d", "-s", "h", "-x", "80", "-y", "40", shell).returncode == 0
    text = ESC.sub("", re.sub(r"\x1b\[[0-9;]*m", "", _until(tmux, "h", "__DONE__")))
    rows = [ln for ln in text.splitlines() if re.search(r"[0-9a-f]{12}", ln)]
    assert rows and all(re.search(r"[0-9a-f]{12}\s+\S*\s*\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", ln) for ln in rows), rows
    assert any("…" in ln for ln in rows)  # the long ARGS gave way
