"""Idle scan (-sI) and zombie rating against real stacks, side by side with nmap -sI (issue 20).

The lab (hostprint/lab/idle.py): lwIP in user space is the zombie (one global IP ID counter),
a Linux host is not (RSTs with IP ID 0; per-destination counters otherwise), the target has
open ports, closed ones and a dropped range. Spoofed packets exist only inside these namespaces.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import xml.etree.ElementTree as ET

import pytest

from conftest import hostprint, needs_root, scan_json
from hostprint.lab import idle
from hostprint.lab.idle import LINUX_ZOMBIE, OPEN_PORTS, TARGET, ZOMBIE, truth

pytestmark = pytest.mark.lab

PORTS = "1-1100,3306,8080"
PORT_LIST = list(range(1, 1101)) + [3306, 8080]


@pytest.fixture(scope="module")
def idlelab():
    needs_root()
    from hostprint.lab import Lab

    with tempfile.TemporaryDirectory(prefix="hpt-idle-") as tmp, Lab(idle.idle_spec(f"id{os.getpid() % 100000}")) as lab:
        lab.zombie = idle.start_zombie(lab, tmp)
        yield lab


def _need_lwip(lab) -> None:
    if not lab.zombie:
        pytest.skip("needs Debian liblwip-dev and a C compiler (the lwIP zombie)")


def states(host: dict, ports: list[int]) -> dict[int, str]:
    listed = {p["port"]: p["state"] for p in host["ports"] if p["protocol"] == "tcp"}
    extra = [e for e in host["extraports"] if e.get("protocol") in ("tcp", None)]
    rest = extra[0]["state"] if extra else None
    return {p: listed.get(p, rest) for p in ports}


def test_zombies_rates_lwip_usable_and_linux_refused(idlelab):
    _need_lwip(idlelab)
    r = hostprint(idlelab, "zombies", ZOMBIE, LINUX_ZOMBIE, TARGET, "-oJ", "-")
    rated = {d["address"]: d for d in map(json.loads, r.stdout.splitlines())}
    lw, lx, tg = rated[ZOMBIE], rated[LINUX_ZOMBIE], rated[TARGET]
    assert lw["usable"] and lw["ip_id_class"] == "I" and lw["global_counter"] is True and lw["activity"] == "idle"
    steps = [(b - a) & 0xFFFF for a, b in zip(lw["ip_ids"], lw["ip_ids"][1:])]
    assert steps == [1] * 5
    assert not lx["usable"] and lx["ip_id_class"] == "Z" and "All zeros" in lx["reason"]
    assert set(lx["ip_ids"]) == {0}
    # the target has nothing on port 80's neighbour … it answers RSTs with ID 0 too: Linux again
    assert not tg["usable"] and tg["ip_id_class"] == "Z"
    table = hostprint(idlelab, "zombies", ZOMBIE, LINUX_ZOMBIE).stdout
    assert re.search(rf"^{re.escape(ZOMBIE)}\s+80\s+Incremental\s+yes\s+idle \(0\.0/s\)\s+usable$", table, re.M)
    assert re.search(rf"^{re.escape(LINUX_ZOMBIE)}\s+80\s+All zeros\s+-\s+\S+.*refused: IP ID sequence is All zeros",
                     table, re.M)


def test_idle_scan_finds_the_truth_like_nmap(idlelab):
    _need_lwip(idlelab)
    h = scan_json(idlelab, "scan", "-sI", ZOMBIE, "-Pn", "-n", "-p", PORTS, TARGET)[TARGET]
    ours = states(h, PORT_LIST)
    assert ours == truth(PORT_LIST), {p: s for p, s in ours.items() if s != truth(PORT_LIST)[p]}
    reasons = {p["port"]: p["reason"] for p in h["ports"]}
    assert all(reasons[p] == "ipid-change" for p in OPEN_PORTS)
    assert [e["reasons"] for e in h["extraports"]] == [{"no-ipid-change": len(PORT_LIST) - len(OPEN_PORTS)}]
    r = idlelab.exec(idlelab.scanner_ns, ["nmap", "-sI", ZOMBIE, "-Pn", "-n", "-p", PORTS, "-oX", "-", TARGET],
                     capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    host = ET.fromstring(r.stdout).find("host")
    n_open = {int(p.get("portid")) for p in host.iter("port") if p.find("state").get("state") == "open"}
    assert n_open == set(OPEN_PORTS) == {p for p, s in ours.items() if s == "open"}


def test_idle_scan_never_sends_from_the_scanner_to_the_target(idlelab):
    """Every IP packet the target receives during the scan comes from the zombie's address (the
    spoofed SYNs) — none from the scanner's (ARP aside, which is not IP)."""
    _need_lwip(idlelab)
    rules = ("table inet hpt_idle {\n chain in {\n  type filter hook input priority -300; policy accept;\n"
             "  ip saddr 198.18.0.1 counter\n  ip saddr " + ZOMBIE + " counter\n }\n}\n")
    idlelab.exec("tgt", ["nft", "-f", "-"], input=rules, text=True, check=True)
    try:
        h = scan_json(idlelab, "scan", "-sI", f"{ZOMBIE}:80", "-Pn", "-n", "-p", "20-25,80,443", TARGET)[TARGET]
        out = idlelab.exec("tgt", ["nft", "-j", "list", "table", "inet", "hpt_idle"], capture_output=True, text=True,
                           check=True).stdout
    finally:
        idlelab.exec("tgt", ["nft", "delete", "table", "inet", "hpt_idle"], check=False)
    counters = [x["rule"]["expr"][-1]["counter"]["packets"] for x in json.loads(out)["nftables"] if "rule" in x]
    assert counters[0] == 0 and counters[1] >= 8
    assert {p["port"] for p in h["ports"] if p["state"] == "open"} == {22, 80, 443}


def test_refuses_a_linux_zombie_with_the_reason(idlelab):
    r = hostprint(idlelab, "scan", "-sI", LINUX_ZOMBIE, "-Pn", "-n", "-p", "22,80", TARGET, check=False)
    assert r.returncode == 2
    [line] = r.stderr.strip().splitlines()[-1:]
    assert f"-sI {LINUX_ZOMBIE}:80: not a usable zombie: IP ID sequence is All zeros (Z)" in line
    nm = idlelab.exec(idlelab.scanner_ns, ["nmap", "-sI", LINUX_ZOMBIE, "-Pn", "-n", "-p", "22,80", TARGET],
                      capture_output=True, text=True, timeout=120)
    assert "All zeros" in nm.stdout + nm.stderr  # nmap refuses it for the same reason


def test_background_traffic_on_the_zombie(idlelab):
    """The zombie answers 20 datagrams a second meanwhile (ICMP port unreachables, one IP ID each):
    readings move by more than the open ports, and the two-votes rule keeps the answer right."""
    _need_lwip(idlelab)
    bg = idle.start_background(idlelab, 20)
    try:
        h = scan_json(idlelab, "scan", "-sI", ZOMBIE, "-Pn", "-n", "-p", "1-300,443,3306,8080", TARGET)[TARGET]
        plist = list(range(1, 301)) + [443, 3306, 8080]
        rated = json.loads(hostprint(idlelab, "zombies", ZOMBIE, "--readings", "20", "-oJ", "-").stdout)
    finally:
        idle.stop_background(bg)
    assert rated["activity"] == "busy" and 15 <= rated["background_per_s"] <= 25, rated
    assert states(h, plist) == truth(plist)


def test_outputs_and_flags(idlelab, tmp_path):
    _need_lwip(idlelab)
    base = tmp_path / "idle"
    r = hostprint(idlelab, "scan", "-sI", ZOMBIE, "-Pn", "-n", "--reason", "-p", "20-25,80", TARGET,
                  "-oA", str(base), "--no-db")
    assert f"Idle scan of {TARGET} using zombie {ZOMBIE}:80: incremental IP ID" in r.stderr
    assert re.search(r"7 ports in \d+ zombie readings and \d+ spoofed SYNs", r.stderr)
    xml = ET.parse(f"{base}.xml").getroot()
    assert xml.find("scaninfo") is None  # nmap writes none for -sI either
    assert "Host: 198.18.0.60 ()\tPorts: 20/closed|filtered/tcp//ftp-data///" in open(f"{base}.gnmap").read()
    rows = [ln.split() for ln in open(f"{base}.nmap")]
    assert ["80/tcp", "open", "http", "ipid-change"] in rows and ["21/tcp", "closed|filtered", "ftp", "no-ipid-change"] in rows
    for bad, why in (("198.18.0.51:0", "zombie port must be 1-65535"), ("198.18.0.50-51", "one host, not 2")):
        rr = hostprint(idlelab, "scan", "-sI", bad, "-Pn", "-p", "80", TARGET, check=False)
        assert rr.returncode == 2 and why in rr.stderr
