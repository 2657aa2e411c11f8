"""Enumeration after -sV against real daemons: snmpd, Samba's smbd, slapd and chrony (issue 20),
side by side with nmap's scripts for the same facts (snmp-sysdescr, snmp-interfaces,
ldap-rootdse, smb2-security-mode, ntp-info). The facts reach the combined verdict as typed
evidence (os.enum): sysDescr names this machine's kernel."""

from __future__ import annotations

import os
import re

import pytest

from conftest import needs_root, scan_json
from hostprint.engine import ber
from hostprint.probes.enum_clients import _parse_vars, parse_ntlm_challenge

pytestmark = pytest.mark.lab

HOST = "198.18.0.95"
PORTS = ["-p", "T:389,445,U:123,161"]


@pytest.fixture(scope="module")
def enumlab():
    needs_root()
    from hostprint.lab import HostSpec, Lab, LabSpec

    spec = LabSpec(name=f"en{os.getpid() % 100000}", hosts=[
        HostSpec(name="svc", address=HOST, services=["snmp:161", "smb:445", "ntp:123", "ldap:389"])])
    with Lab(spec, strict=False) as lab:
        yield lab


@pytest.fixture(scope="module")
def scanned(enumlab):
    return scan_json(enumlab, "scan", "-sS", "-sU", "-sV", *PORTS, "-Pn", "-n", HOST)[HOST]


def _nmap_script(lab, *args: str) -> str:
    r = lab.exec(lab.scanner_ns, ["nmap", "-Pn", "-n", *args, HOST], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.daemons("snmp")
def test_snmp_system_group_and_interfaces(enumlab, scanned):
    snmp = scanned["os"]["enum"]["services"]["161/udp snmp"]
    u = os.uname()
    assert snmp["sysDescr"] == f"{u.sysname} {u.nodename} {u.release} {u.version} {u.machine}"
    assert snmp["sysName"] == u.nodename and snmp["community"] == "public" and snmp["version"] == "2c"
    assert snmp["sysLocation"] == "hostprint lab" and snmp["sysContact"] == "lab@hostprint.test"
    assert isinstance(snmp["uptime_s"], int) and 0 <= snmp["uptime_s"] < 3600
    ifs = {i["descr"]: i for i in snmp["interfaces"]}
    assert set(ifs) == {"lo", "eth0"} and ifs["eth0"]["mac"] == enumlab.host("svc").mac and ifs["eth0"]["mtu"] == 1500
    out = _nmap_script(enumlab, "-sU", "-p", "161", "--script", "snmp-sysdescr,snmp-interfaces")
    assert snmp["sysDescr"] in out
    assert "eth0" in out and enumlab.host("svc").mac.upper() in out.upper().replace("-", ":")


@pytest.mark.daemons("snmp")
def test_snmp_community_is_the_users(enumlab):
    h = scan_json(enumlab, "scan", "-sU", "-sV", "-p", "161", "--snmp-community", "not-this-one", "-Pn", "-n", HOST)[HOST]
    assert "161/udp snmp" not in h["os"].get("enum", {}).get("services", {})
    h = scan_json(enumlab, "scan", "-sU", "-sV", "-p", "161", "--snmp-community", "nope", "--snmp-community", "public",
                  "-Pn", "-n", HOST)[HOST]
    assert h["os"]["enum"]["services"]["161/udp snmp"]["community"] == "public"


@pytest.mark.daemons("smb")
def test_smb_names_and_version_from_the_ntlm_challenge(enumlab, scanned):
    smb = scanned["os"]["enum"]["services"]["445/tcp smb"]
    assert smb["netbios_computer"] == "LABSMB" and smb["target_name"] == "LABSMB"
    assert smb["dns_computer"] == os.uname().nodename
    assert smb["dialect"] in ("2.1", "3.0", "3.0.2") and smb["signing_required"] is False
    assert smb["os_version"] == "6.1.0"  # Samba's NTLM version: no Windows build, so no Windows claim
    assert not [m for m in scanned["os"]["enum"]["matches"] if m["family"] == "Windows"]
    out = _nmap_script(enumlab, "-p", "445", "--script", "smb2-security-mode")
    assert "Message signing enabled but not required" in out


@pytest.mark.daemons("ldap")
def test_ldap_root_dse(enumlab, scanned):
    ldap = scanned["os"]["enum"]["services"]["389/tcp ldap"]
    assert ldap["namingContexts"] == ["dc=lab,dc=hostprint"] and ldap["supportedLDAPVersion"] == ["3"]
    assert "OpenLDAProotDSE" in ldap["objectClass"]
    out = _nmap_script(enumlab, "-p", "389", "--script", "ldap-rootdse")
    assert "namingContexts: dc=lab,dc=hostprint" in out and "supportedLDAPVersion: 3" in out


@pytest.mark.daemons("ntp")
def test_chrony_has_no_mode6(enumlab, scanned):
    """chrony does not implement NTP's control protocol (mode 6): no variables, no claim — and
    nmap's ntp-info gets none either (only the mode 3 receive time)."""
    ntp = next(p for p in scanned["ports"] if p["port"] == 123)
    assert ntp["state"] == "open" and ntp["service"]["name"] == "ntp"
    assert "123/udp ntp" not in scanned["os"]["enum"]["services"]
    out = _nmap_script(enumlab, "-sU", "-p", "123", "--script", "ntp-info")
    assert "receive time stamp" in out and "version:" not in out and "system:" not in out


@pytest.mark.daemons("snmp")
def test_sysdescr_names_the_kernel_in_the_verdict(enumlab, scanned):
    rel = os.uname().release
    major, minor = re.match(r"(\d+)\.(\d+)", rel).groups()
    best = scanned["os"]["matches"][0]
    assert best["family"] == "Linux" and best["methods"] == ["enum"] and best["generation"] == f"{major}.x"
    assert any(c.startswith(f"cpe:/o:linux:linux_kernel:{major}.{minor}") for c in best["cpe"])
    assert any("sysDescr" in e["detail"] for e in best["evidence"])
    h = scan_json(enumlab, "scan", "-sS", "-sU", "-sV", "-O", *PORTS, "-Pn", "-n", HOST)[HOST]
    both = h["os"]["matches"][0]
    assert both["family"] == "Linux" and both["methods"] == ["enum", "stack"]
    assert both["confidence"] > best["confidence"]


def test_parsers_on_spec_shaped_bytes():
    """The parts no lab daemon exercises (no mode-6 server beside chrony; no Windows server):
    RFC 9327's variable list and MS-NLMP's CHALLENGE with a Windows VERSION, built by the specs."""
    text = 'version="ntpd 4.2.8p15@1.3728-o", processor="x86_64",\r\nsystem="Linux/5.10.0-21-amd64", leap=0, stratum=2'
    assert _parse_vars(text) == {"version": "ntpd 4.2.8p15@1.3728-o", "processor": "x86_64",
                                 "system": "Linux/5.10.0-21-amd64", "leap": "0", "stratum": "2"}
    name = "CORP".encode("utf-16-le")
    info = b"\x02\x00" + len(name).to_bytes(2, "little") + name + b"\x00\x00\x00\x00"
    head = b"NTLMSSP\0\x02\0\0\0" + (len(name)).to_bytes(2, "little") * 2 + (56).to_bytes(4, "little")
    head += (0x02800215).to_bytes(4, "little") + bytes(16)
    head += len(info).to_bytes(2, "little") * 2 + (56 + len(name)).to_bytes(4, "little")
    head += bytes([10, 0]) + (17763).to_bytes(2, "little") + bytes(3) + bytes([15])
    got = parse_ntlm_challenge(b"junk" + head + name + info)
    assert got == {"target_name": "CORP", "os_version": "10.0.17763", "ntlm_revision": 15, "netbios_domain": "CORP"}
    from hostprint.match.enum import match

    [m] = match({"445/tcp smb": {"kind": "smb", "os_version": "10.0.17763"}})
    assert m.family == "Windows" and "build 17763" in m.name
    assert ber.decode(ber.oid("1.3.6.1.2.1.1.1.0"))[0].oid() == "1.3.6.1.2.1.1.1.0"
