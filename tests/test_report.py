"""Output formats and the SQLite inventory, checked by the tools that consume them: nmap's DTD via
xmllint, python-libnmap, nmap's XSL via xsltproc, and real nmap output on loopback for layout."""

from __future__ import annotations

import argparse
import io
import json
import shutil
import socket
import sqlite3
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostprint.errors import UsageError
from hostprint.model import ExtraPorts, HostResult, PortResult, ScanRun, Service
from hostprint.report import check_output_paths, emit_outputs
from hostprint.report.grepable import format_grepable
from hostprint.report.inventory import SCHEMA_VERSION, Inventory, default_path
from hostprint.report.jsonl import JsonlWriter
from hostprint.report.nmapxml import to_xml
from hostprint.report.normal import format_normal

DTD = Path("/usr/share/nmap/nmap.dtd")
XSL = Path("/usr/share/nmap/nmap.xsl")

@pytest.fixture(autouse=True)
def _private_inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach the user's real ~/.local/share inventory through a default path."""
    monkeypatch.setenv("HOSTPRINT_DB", str(tmp_path / "default-inventory.sqlite"))


OS_BLOCK = {
    "matches": [
        {
            "name": "Linux 5.15 - 6.1",
            "family": "Linux",
            "vendor": "Linux",
            "generation": "5.X",
            "device_type": "general purpose",
            "confidence": 0.97,
            "evidence": ["ttl 64", "window 64240", "options MSS,SACK,TS,NOP,WS"],
            "cpe": "cpe:/o:linux:linux_kernel:5",
        },
        {"name": "Linux 4.19", "family": "Linux", "confidence": 0.81},  # vendor, generation, type missing
    ],
    "fingerprint": "SCAN(V=1%D=1/1)\nT1(R=Y%DF=Y%T=40)",
}


def _ssh() -> Service:
    return Service(
        name="ssh",
        product="OpenSSH",
        version="9.2p1 Debian 2+deb12u3",
        extrainfo="protocol 2.0",
        ostype="Linux",
        cpe=["cpe:/a:openbsd:openssh:9.2p1", "cpe:/o:linux:linux_kernel"],
        method="banner",
        confidence=1.0,
        banner="SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n\x00<&>\"",
    )


def _https() -> Service:
    return Service(
        name="http",
        tunnel="ssl",
        product="nginx",
        version="1.22.1",
        hostname="web.lab",
        cpe=["cpe:/a:igor_sysoev:nginx:1.22.1"],
        method="trigger",
        confidence=0.9,
    )


@pytest.fixture
def run() -> ScanRun:
    """Three hosts up (one with 65,000 closed ports folded, one with everything filtered but one
    port) and one down host; services with an ssl tunnel and cpes; an OS match."""
    web = HostResult(
        address="198.18.0.2",
        status="up",
        reasons=["echo-reply", "reset"],
        hostname="web.lab",
        mac="02:00:c6:12:00:02",
        distance=1,
        rtt_us=312.5,
        os=OS_BLOCK,
        sequence={"tcpsequence": {"index": 260, "difficulty": "Good luck!", "values": "A1,B2"}},
        started=1_700_000_001.25,
        finished=1_700_000_009.75,
    )
    web.ports = [
        PortResult(22, "tcp", "open", "syn-ack", 64, _ssh()),
        PortResult(80, "tcp", "open", "syn-ack", 64, Service(name="http")),
        PortResult(113, "tcp", "closed", "reset", 64),
        PortResult(443, "tcp", "open", "syn-ack", 64, _https()),
        PortResult(8443, "tcp", "filtered", "no-response", None),
        PortResult(53, "udp", "open", "udp-response", 64, Service(name="domain", method="port-table")),
        PortResult(161, "udp", "open|filtered", "no-response", None, Service(name="snmp")),
    ]
    web.extraports = [ExtraPorts("closed", 65_000, {"reset": 65_000}), ExtraPorts("filtered", 529, {"no-response": 529})]

    ftp = HostResult(address="198.18.0.3", status="up", reasons=["syn-ack"], rtt_us=80.0, distance=1)
    ftp.ports = [
        PortResult(
            21, "tcp", "open", "syn-ack", 63,
            Service(name="ftp", product="vsftpd", version="3.0.3", ostype="Unix", cpe=["cpe:/a:vsftpd:vsftpd:3.0.3"],
                    method="banner", confidence=1.0, banner="220 (vsFTPd 3.0.3)"),
        )
    ]
    ftp.extraports = [ExtraPorts("filtered", 65_534, {"no-response": 65_000, "admin-prohibited": 534})]

    bare = HostResult(address="198.18.0.5", status="up", reasons=["arp-response"])
    bare.ports = [PortResult(7, "tcp", "closed", "reset", 64)]

    down = HostResult(address="198.18.0.4", status="down")
    return ScanRun(
        args=["scan", "-sS", "-sU", "-p", "T:1-65535,U:53,161", "--os", "198.18.0.0/29", "web.lab"],
        id="a1b2c3d4e5f6",
        started=1_700_000_000.0,
        finished=1_700_000_012.5,
        scan_types=["syn", "udp", "synack"],
        ports_scanned={"tcp": list(range(1, 65536)), "udp": [53, 161]},
        hosts=[web, ftp, bare, down],
        stats={"probes_sent": 131_074, "hosts_total": 8, "verbose": 1},
    )


# -- nmap XML ----------------------------------------------------------------------------------


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (Debian: libxml2-utils / xsltproc / nmap)")
    return path


def _need_dtd() -> None:
    if not DTD.exists():
        pytest.skip(f"{DTD} missing (Debian package nmap-common)")


def test_xml_is_valid_against_nmap_dtd(run: ScanRun, tmp_path: Path) -> None:
    _need_dtd()
    xmllint = _need("xmllint")
    out = tmp_path / "scan.xml"
    out.write_text(to_xml(run), encoding="utf-8")
    r = subprocess.run([xmllint, "--noout", "--dtdvalid", str(DTD), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_xmllint_rejects_an_invalid_document(run: ScanRun, tmp_path: Path) -> None:
    """The validation above can fail: the DTD check catches a wrong scanner attribute."""
    _need_dtd()
    xmllint = _need("xmllint")
    bad = tmp_path / "bad.xml"
    bad.write_text(to_xml(run).replace('scanner="nmap"', 'scanner="hostprint"'))
    r = subprocess.run([xmllint, "--noout", "--dtdvalid", str(DTD), str(bad)], capture_output=True, text=True)
    assert r.returncode != 0


def test_xml_content(run: ScanRun) -> None:
    root = ET.fromstring(to_xml(run).encode())
    assert root.get("args", "").startswith("hostprint scan -sS")
    infos = [(s.get("type"), s.get("protocol"), s.get("scanflags"), s.get("numservices"), s.get("services"))
             for s in root.findall("scaninfo")]
    assert infos == [
        ("syn", "tcp", None, "65535", "1-65535"),
        ("udp", "udp", None, "2", "53,161"),
        ("ack", "tcp", "SYNACK", "65535", "1-65535"),
    ]
    assert root.find("verbose").get("level") == "1"
    hosts = root.findall("host")
    assert [h.find("address").get("addr") for h in hosts] == ["198.18.0.2", "198.18.0.3", "198.18.0.5", "198.18.0.4"]
    web = hosts[0]
    assert [c.tag for c in web] == ["status", "address", "address", "hostnames", "ports", "os", "distance",
                                    "tcpsequence", "times"]
    assert web.get("starttime") == "1700000001" and web.get("endtime") == "1700000009"
    assert web.findall("address")[1].attrib == {"addr": "02:00:C6:12:00:02", "addrtype": "mac"}
    assert web.find("hostnames/hostname").attrib == {"name": "web.lab", "type": "user"}  # named on the command line
    extras = web.findall("ports/extraports")
    assert [(e.get("state"), e.get("count")) for e in extras] == [("closed", "65000"), ("filtered", "529")]
    assert extras[0].find("extrareasons").attrib == {"reason": "reset", "count": "65000", "proto": "tcp"}
    ssh = web.find("ports/port[@portid='22']")
    assert ssh.find("state").attrib == {"state": "open", "reason": "syn-ack", "reason_ttl": "64"}
    svc = ssh.find("service")
    assert svc.get("product") == "OpenSSH" and svc.get("method") == "probed" and svc.get("conf") == "10"
    assert [c.text for c in svc.findall("cpe")] == _ssh().cpe
    script = ssh.find("script")
    assert script.get("id") == "banner"
    assert script.get("output").startswith("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n\\x00<&>\"")
    https = web.find("ports/port[@portid='443']/service")
    assert https.get("tunnel") == "ssl" and https.get("hostname") == "web.lab" and https.get("method") == "probed"
    assert web.find("ports/port[@portid='80']/service").attrib == {"name": "http", "method": "table", "conf": "3"}
    assert web.find("ports/port[@portid='113']/service") is None
    matches = web.findall("os/osmatch")
    assert [(m.get("name"), m.get("accuracy")) for m in matches] == [("Linux 5.15 - 6.1", "97"), ("Linux 4.19", "81")]
    cls = matches[0].find("osclass")
    assert cls.attrib == {"type": "general purpose", "vendor": "Linux", "osfamily": "Linux", "osgen": "5.X",
                          "accuracy": "97"}
    assert cls.find("cpe").text == "cpe:/o:linux:linux_kernel:5"
    assert web.find("os/osfingerprint").get("fingerprint") == OS_BLOCK["fingerprint"]  # newline survives
    assert web.find("times").attrib == {"srtt": "312", "rttvar": "156", "to": "100000"}
    down = hosts[3]
    assert [c.tag for c in down] == ["status", "address"]
    assert down.find("status").attrib == {"state": "down", "reason": "no-response", "reason_ttl": "0"}
    fin = root.find("runstats/finished")
    assert fin.get("elapsed") == "12.50" and fin.get("exit") == "success"
    assert "4 IP addresses" not in fin.get("summary") and "8 IP addresses (3 hosts up)" in fin.get("summary")
    assert root.find("runstats/hosts").attrib == {"up": "3", "down": "5", "total": "8"}


def test_discovery_only_run_has_no_scaninfo_and_unknown_types_are_noted() -> None:
    h = HostResult("198.18.0.9", "up", ["echo-reply"])
    root = ET.fromstring(to_xml(ScanRun(args=["discover"], scan_types=["ping"], hosts=[h])).encode())
    assert root.findall("scaninfo") == [] and [c.tag for c in root.find("host")] == ["status", "address", "hostnames"]
    text = to_xml(ScanRun(args=[], scan_types=["sctp-weird"], ports_scanned={"tcp": [1]}))
    assert "<!-- scan type sctp-weird has no nmap scaninfo equivalent -->" in text and "<scaninfo" not in text


def test_libnmap_reads_hosts_ports_services(run: ScanRun, tmp_path: Path) -> None:
    from libnmap.parser import NmapParser

    out = tmp_path / "scan.xml"
    out.write_text(to_xml(run), encoding="utf-8")
    rep = NmapParser.parse_fromfile(str(out))
    assert rep.commandline.startswith("hostprint ")
    assert rep.scan_type == "ack"  # libnmap keeps the last <scaninfo>: the SYN|ACK scan
    assert (rep.hosts_up, rep.hosts_total) == (3, 8)
    assert rep.elapsed == 12.5
    by_addr = {h.address: h for h in rep.hosts}
    assert set(by_addr) == {"198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5"}
    web = by_addr["198.18.0.2"]
    assert web.is_up() and web.status == "up" and web.mac == "02:00:C6:12:00:02"
    assert web.hostnames == ["web.lab"]
    assert web.distance == 1
    assert sorted(web.get_ports()) == sorted((p.port, p.protocol) for p in run.hosts[0].ports)
    assert sorted(web.get_open_ports()) == [(22, "tcp"), (53, "udp"), (80, "tcp"), (443, "tcp")]
    ssh = web.get_service(22, "tcp")
    assert ssh.service == "ssh" and ssh.reason == "syn-ack" and ssh.reason_ttl == "64"
    assert ssh.banner == "product: OpenSSH version: 9.2p1 Debian 2+deb12u3 extrainfo: protocol 2.0 ostype: Linux"
    assert [c.cpestring for c in ssh.cpelist] == _ssh().cpe
    assert web.get_service(443, "tcp").tunnel == "ssl"
    assert web.get_service(161, "udp").state == "open|filtered"
    # libnmap keeps only the last <extraports> and nests its attributes (same for real nmap XML)
    assert web.extraports_state["state"] == {"state": "filtered", "count": "529"}
    assert web.extraports_reasons == [{"reason": "no-response", "count": "529", "proto": "tcp"}]
    assert [(m.name, m.accuracy) for m in web.os_match_probabilities()] == [("Linux 5.15 - 6.1", 97), ("Linux 4.19", 81)]
    assert web.os_fingerprint == OS_BLOCK["fingerprint"]
    assert not by_addr["198.18.0.4"].is_up()
    ftp = by_addr["198.18.0.3"]
    assert ftp.get_service(21, "tcp").banner.startswith("product: vsftpd version: 3.0.3")


def test_nmap_xsl_renders_the_report(run: ScanRun, tmp_path: Path) -> None:
    xsltproc = _need("xsltproc")
    if not XSL.exists():
        pytest.skip(f"{XSL} missing (Debian package nmap-common)")
    out = tmp_path / "scan.xml"
    out.write_text(to_xml(run), encoding="utf-8")
    r = subprocess.run([xsltproc, str(XSL), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    html = r.stdout
    for needle in ("198.18.0.2", "198.18.0.3", "OpenSSH", "nginx", "Linux 5.15 - 6.1", "hostprint scan"):
        assert needle in html, needle


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_text, product=_text, banner=_text, hostname=_text, fp=_text, args=st.lists(_text, max_size=4))
def test_xml_stays_dtd_valid_for_any_text(name: str, product: str, banner: str, hostname: str, fp: str,
                                          args: list[str]) -> None:
    """Banners and names come off the wire: control bytes, quotes and markup must not break the XML."""
    _need_dtd()
    from lxml import etree

    dtd = etree.DTD(str(DTD))
    h = HostResult("198.18.0.9", "up", [name], hostname=hostname or None,
                   os={"matches": [{"name": product or "x", "vendor": name, "confidence": 0.5}], "fingerprint": fp})
    h.ports = [PortResult(1, "tcp", "open", name or "syn-ack", None,
                          Service(name=name, product=product, extrainfo=banner, cpe=[banner], banner=banner))]
    r = ScanRun(args=args, scan_types=["connect"], ports_scanned={"tcp": [1]}, hosts=[h])
    doc = etree.fromstring(to_xml(r).encode())
    assert dtd.validate(doc), dtd.error_log.filter_from_errors()


# -- comparison with real nmap on loopback -------------------------------------------------------


@pytest.fixture
def loopback_listeners():
    """Two listening TCP sockets on 127.0.0.1 (closed when the test ends, pass or fail)."""
    socks = []
    try:
        for _ in range(2):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(8)
            socks.append(s)
        yield sorted(s.getsockname()[1] for s in socks)
    finally:
        for s in socks:
            s.close()


def _run_from_nmap_xml(root: ET.Element) -> ScanRun:
    """The facts of an nmap XML document as a hostprint ScanRun (to render them our way)."""
    h_el = root.find("host")
    host = HostResult(
        address=h_el.find("address").get("addr"),
        status=h_el.find("status").get("state"),
        reasons=[h_el.find("status").get("reason")],
        hostname=(h_el.find("hostnames/hostname").get("name") if h_el.find("hostnames/hostname") is not None else None),
        rtt_us=float(h_el.find("times").get("srtt")),
        started=float(h_el.get("starttime")),
        finished=float(h_el.get("endtime")),
    )
    for e in h_el.findall("ports/extraports"):
        host.extraports.append(ExtraPorts(e.get("state"), int(e.get("count")),
                                          {r.get("reason"): int(r.get("count")) for r in e.findall("extrareasons")}))
    for p in h_el.findall("ports/port"):
        s = p.find("state")
        svc = p.find("service")
        host.ports.append(PortResult(
            int(p.get("portid")), p.get("protocol"), s.get("state"), s.get("reason"), int(s.get("reason_ttl")),
            Service(name=svc.get("name"), method="port-table", confidence=int(svc.get("conf")) / 10) if svc is not None
            else None,
        ))
    si = root.find("scaninfo")
    ports = []
    for part in si.get("services").split(","):
        lo, _, hi = part.partition("-")
        ports.extend(range(int(lo), int(hi or lo) + 1))
    return ScanRun(args=root.get("args").split()[1:], started=float(root.get("start")),
                   finished=float(root.find("runstats/finished").get("time")), scan_types=[si.get("type")],
                   ports_scanned={"tcp": ports}, hosts=[host])


def _shape(el: ET.Element) -> list[tuple[str, set[str]]]:
    return [(e.tag, set(e.attrib)) for e in el.iter()]


@pytest.mark.parametrize("case", ["mixed", "all-closed"])
def test_layout_matches_real_nmap_on_loopback(loopback_listeners: list[int], tmp_path: Path, case: str) -> None:
    """Render nmap's own findings with hostprint and compare element order, attributes and the
    grepable / normal lines against what nmap printed. Loopback only (-n: no DNS packets)."""
    nmap = _need("nmap")
    lo, hi = loopback_listeners
    # > 25 closed ports so that nmap folds them into <extraports>
    spec = f"{max(1, lo - 40)}-{lo + 3},{hi}" if case == "mixed" else f"{max(1, lo - 40)}-{lo - 1}"
    r = subprocess.run([nmap, "-n", "-sT", "-p", spec, "-oX", str(tmp_path / "n.xml"), "-oG", str(tmp_path / "n.gnmap"),
                        "-oN", str(tmp_path / "n.nmap"), "127.0.0.1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    nroot = ET.parse(tmp_path / "n.xml").getroot()
    hp = _run_from_nmap_xml(nroot)
    assert hp.hosts[0].extraports, "nmap should have folded the closed ports"
    if case == "mixed":
        assert sum(p.state == "open" for p in hp.hosts[0].ports) >= 2
    oroot = ET.fromstring(to_xml(hp).encode())
    n_host, o_host = nroot.find("host"), oroot.find("host")
    n_shape, o_shape = _shape(n_host), _shape(o_host)
    assert [t for t, _ in o_shape] == [t for t, _ in n_shape]
    for (tag, ours), (_, theirs) in zip(o_shape, n_shape):
        assert ours <= theirs | {"proto"}, tag
    assert [c.tag for c in oroot] == [c.tag for c in nroot]

    theirs_g = [ln for ln in (tmp_path / "n.gnmap").read_text().splitlines() if ln.startswith("Host:")]
    ours_g = [ln for ln in format_grepable(hp).splitlines() if ln.startswith("Host:")]
    assert ours_g == theirs_g

    def body(text: str) -> list[str]:
        lines = text.splitlines()
        start = next(i for i, ln in enumerate(lines) if ln.startswith(("All ", "Not shown", "PORT")))
        return [ln for ln in lines[start:] if ln and not ln.startswith("#")]

    assert body(format_normal(hp)) == body((tmp_path / "n.nmap").read_text())


# -- grepable and normal ---------------------------------------------------------------------------


def _parse_gnmap(text: str) -> dict[str, dict[str, str]]:
    """A minimal .gnmap reader in the way scripts read it: tab-separated 'Key: value' fields."""
    out: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        addr = fields[0].split()[1]
        for f in fields[1:]:
            key, _, val = f.partition(": ")
            out.setdefault(addr, {})[key] = val
    return out


def test_grepable(run: ScanRun) -> None:
    text = format_grepable(run)
    lines = text.splitlines()
    assert lines[0].startswith("# hostprint 0.1.0 scan initiated ") and "as: hostprint scan -sS" in lines[0]
    assert lines[-1].startswith("# hostprint done at ") and lines[-1].endswith(
        "-- 8 IP addresses (3 hosts up) scanned in 12.50 seconds")
    assert "Host: 198.18.0.2 (web.lab)\tStatus: Up" in lines
    assert "Host: 198.18.0.4 ()\tStatus: Down" in lines
    g = _parse_gnmap(text)
    entries = [e.split("/") for e in g["198.18.0.2"]["Ports"].split(", ")]
    assert all(len(e) == 8 for e in entries)
    by_port = {(int(e[0]), e[2]): e for e in entries}
    assert by_port[(22, "tcp")] == ["22", "open", "tcp", "", "ssh", "", "OpenSSH 9.2p1 Debian 2+deb12u3 (protocol 2.0)", ""]
    assert by_port[(443, "tcp")][4] == "ssl|http"
    assert by_port[(113, "tcp")][4] == ""
    assert by_port[(161, "udp")][1] == "open|filtered"
    assert g["198.18.0.2"]["Ignored State"] == "closed (65000)"
    assert g["198.18.0.2"]["OS"] == "Linux 5.15 - 6.1"
    assert g["198.18.0.3"]["Ignored State"] == "filtered (65534)"


def test_grepable_separators_in_versions_do_not_split_fields() -> None:
    h = HostResult("198.18.0.9", "up")
    h.ports = [PortResult(80, "tcp", "open", "syn-ack", 64, Service(name="http", product="A/B, C", version="1\t2"))]
    g = _parse_gnmap(format_grepable(ScanRun(args=[], hosts=[h])))
    entries = g["198.18.0.9"]["Ports"].split(", ")
    assert len(entries) == 1 and entries[0].split("/")[6] == "A|B; C 1 2"


def test_normal(run: ScanRun) -> None:
    text = format_normal(run)
    lines = text.splitlines()
    assert lines[0].startswith("# hostprint 0.1.0 scan initiated ")
    i = lines.index("Nmap scan report for web.lab (198.18.0.2)")
    assert lines[i + 1] == "Host is up (0.00031s latency)."
    assert lines[i + 2] == "Not shown: 65000 closed tcp ports (reset), 529 filtered tcp ports (no-response)"
    assert lines[i + 3] == "PORT     STATE         SERVICE  VERSION"
    assert lines[i + 4] == "22/tcp   open          ssh      OpenSSH 9.2p1 Debian 2+deb12u3 (protocol 2.0)"
    assert "443/tcp  open          ssl/http nginx 1.22.1" in lines
    assert "113/tcp  closed        unknown" in lines
    assert "161/udp  open|filtered snmp" in lines
    assert "MAC Address: 02:00:C6:12:00:02 (Unknown)" in lines
    assert "Device type: general purpose" in lines
    assert "Running: Linux 5.X" in lines
    assert "OS details: Linux 5.15 - 6.1" in lines
    assert "Network Distance: 1 hop" in lines
    assert "Service Info: Host: web.lab; OS: Linux; CPE: cpe:/o:linux:linux_kernel" in lines
    assert ("Not shown: 65534 filtered tcp ports (65000 no-response, 534 admin-prohibited)") in lines
    assert "Nmap scan report for 198.18.0.4 [host down]" in lines  # the fixture's run was -v
    assert lines[-1].endswith("-- 8 IP addresses (3 hosts up) scanned in 12.50 seconds")
    assert format_normal(run, file_comments=False).splitlines()[-1] == (
        "hostprint done: 8 IP addresses (3 hosts up) scanned in 12.50 seconds")


def test_normal_guesses_below_details_confidence() -> None:
    h = HostResult("198.18.0.9", "up", os={"matches": [{"name": "FreeBSD 13", "confidence": 0.6},
                                                       {"name": "FreeBSD 12", "confidence": 0.55}]})
    text = format_normal(ScanRun(args=[], hosts=[h]))
    assert "Aggressive OS guesses: FreeBSD 13 (60%), FreeBSD 12 (55%)" in text
    assert "OS details" not in text
    assert "1 IP address (1 host up)" in text


# -- JSON lines ------------------------------------------------------------------------------------


def test_jsonl_streams_one_object_per_host(run: ScanRun, tmp_path: Path) -> None:
    out = tmp_path / "scan.jsonl"
    w = JsonlWriter(out)
    w.write_host(run, run.hosts[0])
    # flushed: readable before the writer is closed
    first = out.read_text().splitlines()
    assert len(first) == 1 and json.loads(first[0]) == json.loads(json.dumps(run.host_record(run.hosts[0])))
    for h in run.hosts[1:]:
        w.write_host(run, h)
    w.close()
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["address"] for r in recs] == [h.address for h in run.hosts]
    assert all(r["scan"]["id"] == run.id for r in recs)
    assert recs[0]["ports"][0]["service"]["cpe"] == _ssh().cpe


def test_jsonl_survives_odd_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h = HostResult("198.18.0.9", "up", rtt_us=float("nan"),
                   os={"raw": b"\x00\xff", "set": {3, 1}, "nested": {"inf": float("inf")}})
    with JsonlWriter("-") as w:
        w.write_host(ScanRun(args=[]), h)
    rec = json.loads(capsys.readouterr().out)
    assert rec["rtt_us"] is None and rec["os"] == {"raw": "\x00\xff", "set": [1, 3], "nested": {"inf": None}}


# -- inventory -----------------------------------------------------------------------------------


def test_inventory_round_trip(run: ScanRun, tmp_path: Path) -> None:
    db = tmp_path / "inv.sqlite"
    with Inventory(db) as inv:
        inv.record_run(run)
    with Inventory(db) as inv:
        back = inv.load_run(run.id)
    assert back == run
    assert isinstance(back.hosts[0].ports[0].service, Service)
    assert back.hosts[0].ports[0].service.cpe == _ssh().cpe
    assert to_xml(back) == to_xml(run)


def test_inventory_keeps_unsorted_port_lists(tmp_path: Path) -> None:
    r = ScanRun(args=["x"], ports_scanned={"tcp": [443, 22, 80], "udp": []})
    with Inventory(tmp_path / "i.sqlite") as inv:
        inv.record_run(r)
        assert inv.load_run(r.id).ports_scanned == r.ports_scanned


def test_inventory_record_is_idempotent_and_keeps_observations(run: ScanRun, tmp_path: Path) -> None:
    with Inventory(tmp_path / "inv.sqlite") as inv:
        inv.record_run(run)
        inv.add_observation(run.id, "198.18.0.2", "synack-timing", {"t": [0.0, 1.01, 3.02]})
        run.hosts[1].ports.append(PortResult(2121, "tcp", "open", "syn-ack", 63))
        inv.record_run(run)
        listed = inv.runs()
        assert len(listed) == 1
        assert listed[0]["open_ports"] == 6 and listed[0]["hosts_up"] == 3 and listed[0]["hosts_total"] == 8
        assert inv.load_run(run.id) == run
        obs = inv.observations(run.id, kind="synack-timing")
        assert [o["data"] for o in obs] == [{"t": [0.0, 1.01, 3.02]}]


def test_inventory_runs_and_resolve(tmp_path: Path) -> None:
    with Inventory(tmp_path / "inv.sqlite") as inv:
        r1 = ScanRun(args=["a"], id="aaaa11110000", started=100.0, finished=110.0)
        r2 = ScanRun(args=["b"], id="aaaa22220000", started=200.0, finished=None)
        r3 = ScanRun(args=["c"], id="bbbb33330000", started=300.0, finished=301.0)
        for r in (r1, r2, r3):
            inv.record_run(r)
        assert [r["id"] for r in inv.runs()] == [r3.id, r2.id, r1.id]
        assert [r["id"] for r in inv.runs(limit=2)] == [r3.id, r2.id]
        assert inv.runs(limit=1)[0]["args"] == ["c"]
        assert inv.resolve_run("last") == r3.id
        assert inv.resolve_run("-1") == r3.id
        assert inv.resolve_run("-3") == r1.id
        assert inv.resolve_run("bb") == r3.id
        assert inv.resolve_run("aaaa2") == r2.id
        with pytest.raises(UsageError, match="aaaa.*ambiguous"):
            inv.resolve_run("aaaa")
        with pytest.raises(UsageError, match="zzzz"):
            inv.load_run("zzzz")
        with pytest.raises(UsageError, match="-4"):
            inv.resolve_run("-4")


def test_inventory_env_and_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTPRINT_DB", str(tmp_path / "deep" / "dir" / "env.sqlite"))
    with Inventory() as inv:
        assert inv.path == tmp_path / "deep" / "dir" / "env.sqlite"
        inv.record_run(ScanRun(args=[]))
    assert (tmp_path / "deep" / "dir" / "env.sqlite").is_file()
    monkeypatch.delenv("HOSTPRINT_DB")
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_path() == tmp_path / "home" / ".local" / "share" / "hostprint" / "inventory.sqlite"


def test_corrupt_inventory_is_reported_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "inv.sqlite"
    junk = b"this is not sqlite\x00" * 300
    db.write_bytes(junk)
    with pytest.raises(UsageError, match=str(db)):
        Inventory(db).record_run(ScanRun(args=[]))
    assert db.read_bytes() == junk


def test_foreign_sqlite_file_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "other.sqlite"
    c = sqlite3.connect(db)
    c.execute("CREATE TABLE notes (x)")
    c.execute("INSERT INTO notes VALUES ('keep me')")
    c.commit()
    c.close()
    before = db.read_bytes()
    with pytest.raises(UsageError, match="not a hostprint inventory"):
        Inventory(db)
    assert db.read_bytes() == before


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "inv.sqlite"
    Inventory(db).close()
    c = sqlite3.connect(db)
    c.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    c.commit()
    c.close()
    with pytest.raises(UsageError, match="schema version"):
        Inventory(db)


def test_locked_inventory_names_path_and_keeps_data(run: ScanRun, tmp_path: Path) -> None:
    db = tmp_path / "inv.sqlite"
    with Inventory(db) as inv:
        inv.record_run(run)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(UsageError, match=f"{db}.*locked"):
            inv2 = Inventory(db, timeout=0.05)
            inv2.record_run(ScanRun(args=["other"]))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Inventory(db) as inv:
        assert [r["id"] for r in inv.runs()] == [run.id]


def test_directory_as_inventory_path(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=str(tmp_path)):
        Inventory(tmp_path)


# -- emit_outputs ----------------------------------------------------------------------------------


def test_emit_outputs_writes_every_format(run: ScanRun, tmp_path: Path) -> None:
    paths = {k: tmp_path / f"out.{k}" for k in ("oJ", "oX", "oG", "oN")}
    db = tmp_path / "inv.sqlite"
    written = emit_outputs(run, **{k: str(v) for k, v in paths.items()}, db=db)
    assert set(written) == {str(p) for p in paths.values()} | {str(db)}
    assert len(paths["oJ"].read_text().splitlines()) == len(run.hosts)
    assert paths["oX"].read_text() == to_xml(run)
    assert paths["oG"].read_text() == format_grepable(run)
    assert paths["oN"].read_text() == format_normal(run)
    with Inventory(db) as inv:
        assert inv.load_run(run.id) == run


def test_emit_outputs_without_record_touches_no_db(run: ScanRun, tmp_path: Path) -> None:
    db = tmp_path / "inv.sqlite"
    emit_outputs(run, oG=str(tmp_path / "g"), db=db, record=False)
    assert not db.exists()


@pytest.mark.parametrize("opt", ["oJ", "oX", "oG", "oN"])
def test_unwritable_output_path_names_the_path(run: ScanRun, tmp_path: Path, opt: str) -> None:
    bad = tmp_path / "no-such-dir" / "out"
    with pytest.raises(UsageError, match=str(bad)):
        emit_outputs(run, **{opt: str(bad)}, record=False)
    with pytest.raises(UsageError, match=str(tmp_path)):
        emit_outputs(run, **{opt: str(tmp_path)}, record=False)  # a directory
    with pytest.raises(UsageError, match=f"{opt}.*{bad}"):
        check_output_paths(**{opt: str(bad)})
    check_output_paths(**{opt: str(tmp_path / "fine")})
    assert not (tmp_path / "fine").exists()


# -- terminal ------------------------------------------------------------------------------------


def test_print_run_tables(run: ScanRun) -> None:
    from rich.console import Console

    from hostprint.report.terminal import print_run

    buf = io.StringIO()
    print_run(run, Console(file=buf, width=40, color_system=None), reason=True)
    text = buf.getvalue()
    # not a terminal: exactly the -oN text without its '#' lines: never wrapped at the console width
    assert text == format_normal(run, file_comments=False, reason=True)
    assert "Nmap scan report for web.lab (198.18.0.2)" in text
    assert "Network Distance: 1 hop" in text and "0.00031s latency" in text
    assert "Not shown: 65000 closed tcp ports (reset)" in text
    row = next(ln for ln in text.splitlines() if ln.lstrip().startswith("22/tcp"))
    assert row.split()[:5] == ["22/tcp", "open", "ssh", "syn-ack", "ttl"] and "OpenSSH 9.2p1" in row
    assert "OS details: Linux 5.15 - 6.1" in text
    assert "Nmap scan report for 198.18.0.4 [host down]" in text
    assert not any(ln != ln.rstrip() for ln in text.splitlines())  # no padding
    assert "hostprint done: 8 IP addresses (3 hosts up)" in text


def test_progress_disabled_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    from hostprint.report.terminal import ScanProgress

    with ScanProgress(enabled=False) as p:
        t = p.phase("syn scan", 1000)
        for _ in range(10):
            p.advance(t, 100)
        p.update_counts(hosts_up=3, ports_open=9)
        p.finish(t)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_progress_auto_is_off_when_stderr_is_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from hostprint.report.terminal import ScanProgress

    with ScanProgress() as p:  # pytest captures stderr: not a terminal
        p.advance(p.phase("discovery", 5), 5)
    assert not p.enabled and capsys.readouterr().err == ""


def test_progress_enabled_draws_phases_and_counts() -> None:
    from rich.console import Console

    from hostprint.report.terminal import ScanProgress

    buf = io.StringIO()
    with ScanProgress(enabled=True, console=Console(file=buf, force_terminal=True, width=160)) as p:
        t = p.phase("syn scan", 200)
        p.advance(t, 50)
        p.update_counts(hosts_up=2, ports_open=7)
        p.advance(t, 150)
    text = buf.getvalue()
    assert "syn scan" in text and "200/200" in text and "2 up, 7 open" in text


def test_progress_leaves_piped_stdout_alone(capsys: pytest.CaptureFixture[str]) -> None:
    """JSON lines streamed to a piped stdout during the scan must stay on stdout."""
    from rich.console import Console

    from hostprint.report.terminal import ScanProgress

    buf = io.StringIO()
    with ScanProgress(enabled=True, console=Console(file=buf, force_terminal=True)) as p:
        p.phase("syn scan", 10)
        print('{"address": "198.18.0.2"}')
    assert capsys.readouterr().out == '{"address": "198.18.0.2"}\n'
    assert "198.18.0.2" not in buf.getvalue()


# -- history command -----------------------------------------------------------------------------


def _history(argv: list[str]) -> int:
    from hostprint.commands import history

    parser = argparse.ArgumentParser(prog="hostprint")
    history.register(parser.add_subparsers())
    args = parser.parse_args(["history", *argv])
    return args.func(args)


def test_history_lists_runs(run: ScanRun, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    db = tmp_path / "inv.sqlite"
    older = ScanRun(args=["/usr/bin/hostprint", "scan", "198.18.1.1"], id="0ld0ld0ld0ld", started=run.started - 3600,
                    finished=run.started - 3590)
    with Inventory(db) as inv:
        inv.record_run(older)
        inv.record_run(run)
    assert _history(["--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert run.id in out and older.id in out and "12.5s" in out and "3/8" in out
    assert out.index(run.id) < out.index(older.id)
    assert any(ln.endswith(" scan 198.18.1.1") for ln in out.splitlines()) and "/usr/bin/hostprint" not in out
    # not a terminal: nothing cut or padded, the whole ARGS last
    assert all(ln == ln.rstrip() for ln in out.splitlines()) and "…" not in out
    assert f"{run.id} " in out and "web.lab" in out
    assert _history(["--db", str(db), "-n", "1", "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1 and rows[0]["id"] == run.id and rows[0]["open_ports"] == 5
    assert _history(["--db", str(db), "last"]) == 0
    assert "OpenSSH" in capsys.readouterr().out
    assert _history(["--db", str(db), "0ld", "--json"]) == 0
    assert capsys.readouterr().out.strip() == ""  # that run had no hosts


def test_history_errors_and_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.sqlite"
    assert _history(["--db", str(missing)]) == 0
    assert "no runs recorded" in capsys.readouterr().out
    assert not missing.exists()
    with pytest.raises(UsageError, match="'x'"):
        _history(["--db", str(missing), "-n", "x"])
    with pytest.raises(UsageError, match=str(missing)):
        _history(["--db", str(missing), "last"])
    db = tmp_path / "inv.sqlite"
    Inventory(db).record_run(ScanRun(args=[], id="cafe00000000"))
    with pytest.raises(UsageError, match="beef"):
        _history(["--db", str(db), "beef"])
