"""nmap's everyday flags (issue 14), checked on the wire where they change packets: counters in an
nft table of the target's own namespace see what arrived (source port, TTL, fragments)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT, hostprint, scan_json

T1, T2 = "198.18.0.10", "198.18.0.11"

COUNT_TABLE = "hpcount"


def _count(lab, host: str, rules: list[str]):
    """An nft table of counters before defragmentation (prerouting, priority -450) on `host`."""
    body = "".join(f"  {r} counter\n" for r in rules)
    lab.exec(host, ["nft", "-f", "-"], input=f"table ip {COUNT_TABLE} {{\n chain pre {{\n  type filter hook "
                                             f"prerouting priority -450; policy accept;\n{body} }}\n}}\n",
             text=True, check=True)

    def read() -> list[int]:
        out = lab.exec(host, ["nft", "list", "table", "ip", COUNT_TABLE], capture_output=True, text=True).stdout
        return [int(x) for x in re.findall(r"counter packets (\d+)", out)]

    return read


def _uncount(lab, host: str) -> None:
    lab.exec(host, ["nft", "delete", "table", "ip", COUNT_TABLE], capture_output=True)


@pytest.mark.lab
def test_source_port_ttl_and_fragments_on_the_wire(scanlab):
    read = _count(scanlab, "t1", ["ip ttl 33 udp sport 5353", "ip ttl 33 ip frag-off & 0x1fff != 0",
                                  "tcp sport 5353 tcp flags syn ip ttl 40"])
    try:
        h = scan_json(scanlab, "scan", "-sU", "-p", "123,9999", "-g", "5353", "--ttl", "33", "-f", "-Pn", "-n", T1)[T1]
        assert {p["port"]: p["state"] for p in h["ports"]} == {123: "closed", 9999: "open"}
        h = scan_json(scanlab, "scan", "-sS", "-p", "22,23", "--source-port", "5353", "--ttl", "40", "-Pn", "-n", T1)[T1]
        assert {p["port"]: p["state"] for p in h["ports"]} == {22: "open", 23: "closed"}
        first_frag, later_frags, syns = read()
    finally:
        _uncount(scanlab, "t1")
    assert first_frag >= 2 and later_frags >= 2 and syns >= 2


@pytest.mark.lab
def test_interface_and_source_address(scanlab):
    h = scan_json(scanlab, "scan", "-sS", "-p", "22", "-e", "eth0", "-S", "198.18.0.1", "-Pn", "-n", T1)[T1]
    assert h["ports"][0]["state"] == "open"
    r = hostprint(scanlab, "scan", "-sS", "-p", "22", "-e", "nosuch0", T1, check=False)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["hostprint: bad -e 'nosuch0': no such interface"]


@pytest.mark.lab
def test_aggressive_packet_trace_and_stats(scanlab):
    r = hostprint(scanlab, "scan", "-A", "-p", "22,80", "-n", T1, "--no-db", "--progress", "never")
    out = r.stdout
    assert "OpenSSH" in out and ("OS details:" in out or "Aggressive OS guesses:" in out)
    assert "TCP Sequence Prediction:" in out and "TRACEROUTE (using port 22/tcp)" in out
    assert re.search(r"^1 +[0-9.]+ ms 198\.18\.0\.10$", out, re.M)
    r = hostprint(scanlab, "scan", "-sU", "-p", "123,9999", "-Pn", "-n", "--packet-trace", T1, "--no-db",
                  "--progress", "never")
    # the engine's tracer (engine/trace.py), nmap's words; tests/test_trace_lab.py checks the fields on the wire
    assert re.search(r"^SENT \([0-9.]+s\) UDP 198\.18\.0\.1:\d+ > 198\.18\.0\.10:9999 ttl=64 id=\d+ iplen=\d+ $",
                     r.stderr, re.M)
    assert re.search(r"^RCVD \([0-9.]+s\) UDP 198\.18\.0\.10:9999 > 198\.18\.0\.1:\d+ ttl=64 id=\d+ iplen=\d+ $",
                     r.stderr, re.M)
    assert re.search(r"^RCVD \([0-9.]+s\) ICMP \[198\.18\.0\.10 > 198\.18\.0\.1 Port 123 unreachable "
                     r"\(type=3/code=3\) \] IP \[ttl=64 id=\d+ iplen=\d+ \]$", r.stderr, re.M)
    r = hostprint(scanlab, "scan", "-sS", "-p-", "-Pn", "-n", "--stats-every", "100ms", T1, "--no-db",
                  "--progress", "never")
    assert re.search(r"^Stats: 0:00:0\d elapsed; \d+ hosts up, \d+ open ports", r.stderr, re.M)


@pytest.mark.lab
def test_host_timeout_keeps_what_is_known(scanlab):
    h = scan_json(scanlab, "scan", "-sS", "-sV", "-p", "22", "-Pn", "-n", "--host-timeout", "1ms", T1)[T1]
    assert any("--host-timeout 0.001s reached before" in w for w in h["warnings"])


@pytest.mark.lab
@pytest.mark.parametrize("fmt", ["oG", "oJ", "oX"])
def test_resume_scans_only_what_is_left(scanlab, tmp_path, fmt):
    out = tmp_path / f"scan.{fmt}"
    hostprint(scanlab, "scan", "-sS", "-p", "22,80", "-n", T1, T2, f"-{fmt}", str(out), "--no-db", "--progress", "never")
    full = out.read_text()
    # the interruption: T2's part never made it to the file
    if fmt == "oG":
        cut = "".join(ln for ln in full.splitlines(keepends=True) if T2 not in ln or ln.startswith("#"))
        cut = cut.rsplit("# hostprint done", 1)[0]
    elif fmt == "oJ":
        cut = "".join(ln for ln in full.splitlines(keepends=True) if f'"address": "{T2}"' not in ln)
    else:
        cut = full[:full.index(f'<address addr="{T2}"')].rsplit("<host", 1)[0]  # unterminated, as a kill leaves it
    out.write_text(cut)
    read = _count(scanlab, "t1", ["ip saddr 198.18.0.1 tcp flags syn"])
    try:
        r = hostprint(scanlab, "scan", "--resume", str(out), "--no-db", "--progress", "never")
        assert read() == [0]  # T1 was finished: not probed again
    finally:
        _uncount(scanlab, "t1")
    assert f"Nmap scan report for {T2}" in r.stdout and f"Nmap scan report for {T1}" not in r.stdout
    text = out.read_text()
    if fmt == "oG":
        assert f"Host: {T1} ()\tPorts: 22/open/tcp//ssh///, 80/open/tcp//http///" in text
        assert f"Host: {T2} ()\tStatus: Up" in text and text.splitlines()[-1].startswith("# hostprint done")
    elif fmt == "oJ":
        recs = {d["address"]: d for d in map(json.loads, text.splitlines())}
        assert set(recs) == {T1, T2} and {p["port"] for p in recs[T1]["ports"]} == {22, 80}
    else:
        hosts = [h.find("address").get("addr") for h in ET.fromstring(text).iter("host")]
        assert hosts == [T1, T2]


def test_flags_we_lack_are_one_line():
    for flag, words in (("-sC", "NSE scripts"), ("--script", "NSE scripts"),
                        ("-sY", "SCTP scans"), ("-D", "decoys")):
        r = subprocess.run([sys.executable, "-m", "hostprint", "scan", flag, "198.18.0.10"], capture_output=True,
                           text=True, cwd=ROOT, timeout=60)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (flag, r.stderr)
        assert r.stderr.startswith(f"hostprint: {flag}: ") and words in r.stderr


def test_a_million_addresses_need_yes_when_not_interactive():
    r = subprocess.run([sys.executable, "-m", "hostprint", "scan", "-sS", "10.0.0.0/8"], capture_output=True, text=True,
                       cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "hostprint: the targets name 16,777,216 addresses (over 1,048,576): add -y to scan them"]


@pytest.mark.lab
def test_service_scan_progress_moves_port_by_port(scanlab):
    """-sV's share of the Stats line grows as each port finishes: three quick daemons on T1 are done
    while T2's silent listener still holds its wait (it used to read 0 % until the phase ended)."""
    r = hostprint(scanlab, "scan", "-sS", "-sV", "-p", "22,80,6379,8080", "-Pn", "-n", "--sv-timeout", "3",
                  "--stats-every", "200ms", T1, T2, "--no-db", "--progress", "never")
    shares = [float(x) for x in re.findall(r"service scan: about ([0-9.]+)% done", r.stderr)]
    assert any(0 < x < 100 for x in shares), r.stderr[-1500:]
