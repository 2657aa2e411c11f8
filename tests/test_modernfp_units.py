"""Modern fingerprints without a lab: certificate facts against `openssl x509`, JA3/JARM/HASSH
against the reference values their authors publish, the version-range rules and engine, the
typed records, the nmap XML (DTD-valid, read by python-libnmap), the inventory and the diff."""

from __future__ import annotations

import hashlib
import re
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostprint import model
from hostprint.errors import UsageError
from hostprint.match import tlsfp, versionrange
from hostprint.match.sshfp import SshError, hassh_string, host_key, parse_kexinit
from hostprint.match.x509 import cert_facts
from hostprint.probes import behaviour, tls_probes
from hostprint.signatures import version_rules

DTD = Path("/usr/share/nmap/nmap.dtd")


# ---------------------------------------------------------------------------- certificates

def _openssl(*args: str, inp: bytes | None = None) -> str:
    return subprocess.run(["openssl", *args], input=inp, capture_output=True, check=True).stdout.decode()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """Certificates made by openssl: self-signed RSA with SANs, an EC leaf signed by an RSA CA,
    an Ed25519 self-signed one."""
    d = tmp_path_factory.mktemp("certs")
    out = {}
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj",
             "/CN=unit.hostprint.test/O=hostprint, tests/C=DE", "-addext",
             "subjectAltName=DNS:unit.hostprint.test,DNS:*.unit.hostprint.test,IP:198.18.0.7,email:a@b.test",
             "-keyout", str(d / "rsa.key"), "-out", str(d / "rsa.pem"))
    out["rsa"] = d / "rsa.pem"
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(d / "ec.key"))
    _openssl("req", "-new", "-key", str(d / "ec.key"), "-subj", "/CN=leaf.hostprint.test", "-out", str(d / "ec.csr"))
    _openssl("x509", "-req", "-in", str(d / "ec.csr"), "-CA", str(d / "rsa.pem"), "-CAkey", str(d / "rsa.key"),
             "-days", "10", "-set_serial", "0x0abcdef", "-out", str(d / "ec.pem"))
    out["ec"] = d / "ec.pem"
    _openssl("req", "-x509", "-newkey", "ed25519", "-nodes", "-days", "5", "-subj", "/CN=ed.hostprint.test",
             "-keyout", str(d / "ed.key"), "-out", str(d / "ed.pem"))
    out["ed"] = d / "ed.pem"
    return out


def _der(pem: Path) -> bytes:
    return bytes.fromhex(subprocess.run(["openssl", "x509", "-in", str(pem), "-outform", "DER"], capture_output=True,
                                        check=True).stdout.hex())


def _when(text: str) -> datetime:
    return datetime.strptime(text.strip(), "%b %d %H:%M:%S %Y %Z").replace(tzinfo=timezone.utc)


@pytest.mark.parametrize("kind", ["rsa", "ec", "ed"])
def test_cert_facts_agree_with_openssl_x509(certs, kind):
    pem = certs[kind]
    f = cert_facts(_der(pem))
    assert f.error is None, f.error
    x = lambda *a: _openssl("x509", "-in", str(pem), "-noout", *a).strip()  # noqa: E731
    assert f.subject == x("-subject", "-nameopt", "RFC2253").split("=", 1)[1]
    assert f.issuer == x("-issuer", "-nameopt", "RFC2253").split("=", 1)[1]
    assert f.serial == x("-serial").split("=", 1)[1].lower().lstrip("0")
    for algo, got in (("-sha256", f.sha256), ("-sha1", f.sha1), ("-md5", f.md5)):
        assert got == x("-fingerprint", algo).split("=", 1)[1].replace(":", "").lower()
    assert datetime.fromisoformat(f.not_before) == _when(x("-startdate").split("=", 1)[1])
    assert datetime.fromisoformat(f.not_after) == _when(x("-enddate").split("=", 1)[1])
    text = x("-text")
    assert f.sig_alg == re.search(r"Signature Algorithm: (\S+)", text).group(1)
    bits = re.search(r"Public-Key: \((\d+) bit\)", text)
    assert f.key_bits == (int(bits.group(1)) if bits else 256)  # openssl prints no size for Ed25519
    assert f.key == {"rsa": "RSA", "ec": "EC", "ed": "Ed25519"}[kind]
    assert f.self_signed is (kind != "ec")
    assert f.pem.strip() == pem.read_text().strip()


def test_cert_sans_and_nmap_names(certs):
    f = cert_facts(_der(certs["rsa"]))
    ext = _openssl("x509", "-in", str(certs["rsa"]), "-noout", "-ext", "subjectAltName")
    want = [s.strip().replace("IP Address:", "").replace("DNS:", "") for s in ext.splitlines()[1].split(",")]
    assert f.sans == want  # DNS names and addresses bare, other kinds with their prefix (email:…)
    assert ["commonName", "unit.hostprint.test"] in f.subject_attrs
    assert ["organizationName", "hostprint, tests"] in f.subject_attrs
    assert f.subject.startswith("C=DE,O=hostprint\\, tests,")  # RFC 4514 escaping of the comma
    ec = cert_facts(_der(certs["ec"]))
    assert ec.curve == "secp256r1" and ec.serial == "abcdef" and ec.issuer == f.subject


def test_cert_validity_flags_follow_the_scan_time(certs):
    der = _der(certs["ed"])
    f = cert_facts(der)
    na, nb = datetime.fromisoformat(f.not_after), datetime.fromisoformat(f.not_before)
    assert cert_facts(der, now=na + timedelta(seconds=1)).expired is True
    assert cert_facts(der, now=na - timedelta(seconds=1)).expired is False
    assert cert_facts(der, now=nb - timedelta(seconds=1)).not_yet_valid is True


def test_cert_garbage_keeps_fingerprints():
    for junk in (b"", b"\x30\x82\x05", b"\x30\x03\x02\x01\x00", bytes(range(256))):
        f = cert_facts(junk)
        assert f.sha256 == hashlib.sha256(junk).hexdigest() and f.error


# ---------------------------------------------------------------------------- JA3 / JA3S / JARM

def _client_hello(version: int, ciphers: list[int], exts: list[tuple[int, bytes]]) -> bytes:
    import struct

    body = struct.pack(">H", version) + bytes(32) + b"\x00" + struct.pack(">H", 2 * len(ciphers))
    body += b"".join(struct.pack(">H", c) for c in ciphers) + b"\x01\x00"
    if exts:
        e = b"".join(struct.pack(">HH", t, len(v)) + v for t, v in exts)
        body += struct.pack(">H", len(e)) + e
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def test_ja3_reproduces_the_published_examples():
    """salesforce/ja3 README: the two example strings and their MD5 (JA3 and JA3S share the
    formatting: decimal values, ',' between fields, '-' inside)."""
    hello = _client_hello(769, [47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4],
                          [(0, b""), (10, bytes.fromhex("0006001700180019")), (11, b"\x01\x00")])
    assert tlsfp.ja3(hello) == ("ada70206e40642a3e4461f35503241d5",
                                "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0")
    bare = _client_hello(769, [4, 5, 10, 9, 100, 98, 3, 6, 19, 18, 99], [])
    assert tlsfp.ja3(bare) == ("de350869b8c85de67a350c8d186f11e6", "769,4-5-10-9-100-98-3-6-19-18-99,,,")


def test_ja3s_of_a_server_hello_and_grease_left_out():
    import struct

    exts = [(0x0A0A, b""), (43, b"\x03\x04"), (51, b"\x00\x1d\x00\x20" + bytes(32))]
    body = b"\x03\x03" + bytes(32) + b"\x00" + struct.pack(">H", 0x1301) + b"\x00"
    e = b"".join(struct.pack(">HH", t, len(v)) + v for t, v in exts)
    body += struct.pack(">H", len(e)) + e
    rec = b"\x16\x03\x03" + struct.pack(">H", 4 + len(body)) + b"\x02" + len(body).to_bytes(3, "big") + body
    sh = tlsfp.parse_server_hello(rec)
    assert sh is not None and sh.version == 0x0304
    assert tlsfp.ja3s(sh) == (hashlib.md5(b"771,4865,43-51").hexdigest(), "771,4865,43-51")
    assert tlsfp.parse_server_hello(rec[:30]) is None and tlsfp.parse_server_hello(b"\x15\x03\x03\x00\x02\x02\x28") is None


def test_jarm_hash_rules_from_the_definition():
    assert tlsfp.jarm_hash(",".join(["|||"] * 10)) == "0" * 62
    raw = ",".join(["c02f|0303|h2|ff01-0000-0001-0023-0010-0017"] + ["|||"] * 9)
    # c02f is the 41st cipher of JARM's sorted list (0x29), TLS 1.2 is "d", a refusal is "000"
    assert tlsfp.jarm_hash(raw).startswith("29d" + "000" * 9)
    assert tlsfp.jarm_hash(raw)[30:] == hashlib.sha256(b"h2ff01-0000-0001-0023-0010-0017").hexdigest()[:32]


def test_jarm_hash_equals_pyjarm_on_the_same_answers():
    """pyjarm (PyPI, a second implementation) hashes the same raw answers the same way."""
    hashing = pytest.importorskip("jarm.hashing.hashing")
    raws = [",".join(["|||"] * 10),
            ",".join(["c02f|0303|h2|ff01-0000-0001-0023-0010-0017", "|||", "1301|0303||002b-0033"] + ["|||"] * 7),
            ",".join(["c030|0303|http/1.1|0000-ff01-000b-0010"] * 5 + ["c014|0302||ff01-0000-000b"] + ["|||"] * 4)]
    for raw in raws:
        assert tlsfp.jarm_hash(raw) == hashing.Hasher.jarm(raw), raw


def test_jarm_hellos_follow_the_definition():
    p = tls_probes.JARM_PROBES
    assert len(p) == 10 and len(tls_probes.JARM_CIPHERS_ALL) == 69 and len(tls_probes.JARM_ALPN_ALL) == 8
    # the definition's re-orderings on a small list
    assert tls_probes.reorder([1, 2, 3, 4, 5], "MIDDLE_OUT") == [3, 4, 2, 5, 1]
    assert tls_probes.reorder([1, 2, 3, 4], "MIDDLE_OUT") == [3, 2, 4, 1]
    assert tls_probes.reorder([1, 2, 3, 4, 5], "BOTTOM_HALF") == [4, 5]
    assert tls_probes.reorder([1, 2, 3, 4, 5], "TOP_HALF") == [3, 2, 1]
    fixed = lambda n: bytes(n)  # noqa: E731
    for probe in p:
        hello = tls_probes.jarm_hello(probe, "198.18.0.1", rand=fixed, grease=lambda: 0x0A0A)
        j = tlsfp.ja3(hello)[1].split(",")
        assert j[0] == "771" if probe.version != "1.1" else j[0] == "770"
        assert ("43" in j[2].split("-")) == (probe.version == "1.3" or probe.supported_versions == "1.2")


# ---------------------------------------------------------------------------- HASSH, SSH keys

def test_hassh_reproduces_the_published_example():
    """salesforce/hassh README, Example 1: the Cyberduck 6.7.1 algorithm lists give
    8a8ae540028bf433cd68356c1b9e8d5b (the client hassh; hasshServer is the same function over the
    server's server-to-client lists)."""
    kex = ("curve25519-sha256@libssh.org,diffie-hellman-group-exchange-sha256,ecdh-sha2-nistp521,ecdh-sha2-nistp384,"
           "ecdh-sha2-nistp256,diffie-hellman-group-exchange-sha1,diffie-hellman-group1-sha1,"
           "diffie-hellman-group14-sha1,diffie-hellman-group14-sha256,diffie-hellman-group15-sha512,"
           "diffie-hellman-group16-sha512,diffie-hellman-group17-sha512,diffie-hellman-group18-sha512,"
           "diffie-hellman-group14-sha256@ssh.com,diffie-hellman-group15-sha256,diffie-hellman-group15-sha256@ssh.com,"
           "diffie-hellman-group15-sha384@ssh.com,diffie-hellman-group16-sha256,diffie-hellman-group16-sha384@ssh.com,"
           "diffie-hellman-group16-sha512@ssh.com,diffie-hellman-group18-sha512@ssh.com").split(",")
    enc = ("aes128-cbc,aes128-ctr,aes192-cbc,aes192-ctr,aes256-cbc,aes256-ctr,blowfish-cbc,blowfish-ctr,cast128-cbc,"
           "cast128-ctr,idea-cbc,idea-ctr,serpent128-cbc,serpent128-ctr,serpent192-cbc,serpent192-ctr,serpent256-cbc,"
           "serpent256-ctr,3des-cbc,3des-ctr,twofish128-cbc,twofish128-ctr,twofish192-cbc,twofish192-ctr,"
           "twofish256-cbc,twofish256-ctr,twofish-cbc,arcfour,arcfour128,arcfour256").split(",")
    mac = "hmac-sha1,hmac-sha1-96,hmac-md5,hmac-md5-96,hmac-sha2-256,hmac-sha2-512".split(",")
    comp = "zlib@openssh.com,zlib,none".split(",")
    assert hashlib.md5(hassh_string(kex, enc, mac, comp).encode()).hexdigest() == "8a8ae540028bf433cd68356c1b9e8d5b"


def test_kexinit_parser_and_host_key_blob():
    import struct

    lists = ["curve25519-sha256", "ssh-ed25519", "aes128-ctr", "aes256-ctr", "hmac-sha2-256", "hmac-sha2-512",
             "none", "none,zlib@openssh.com", "", ""]
    payload = bytes([20]) + bytes(16) + b"".join(struct.pack(">I", len(x)) + x.encode() for x in lists) + b"\0" * 5
    k = parse_kexinit(payload)
    f = k.facts()
    assert f.kex == ["curve25519-sha256"] and f.ciphers == ["aes256-ctr"] and f.compression == ["none", "zlib@openssh.com"]
    assert f.hassh == hashlib.md5(b"curve25519-sha256;aes256-ctr;hmac-sha2-512;none,zlib@openssh.com").hexdigest()
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + bytes(range(32))
    hk = host_key(blob)
    line = f"ssh-ed25519 {hk.key}\n"
    keygen = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=line, capture_output=True, text=True)
    assert keygen.returncode == 0 and hk.sha256 in keygen.stdout and hk.bits == 256
    with pytest.raises(ValueError):
        parse_kexinit(bytes([21]) + bytes(20))


# ---------------------------------------------------------------------------- version ranges

def test_version_rules_db_loads_and_every_rule_has_a_source():
    rules = version_rules.load()
    assert len(rules) >= 20
    assert all(r.sources for r in rules)
    assert {r.observe for r in rules} >= {"ssh-kexinit", "smb2-negotiate", "ldap-rootdse", "imap", "pg-startup"}


@pytest.mark.parametrize("text, message", [
    ("Range x\nProduct ^A\nObserve imap\nWhen capability has X\nGives >= 1.0\n", "Source"),
    ("Range x\nProduct ^A\nObserve imap\nWhen capability has X\nGives about 1\nSource documented: d\n", "Gives"),
    ("Range x\nProduct ^A\nObserve telnet\nWhen a has b\nGives >= 1\nSource documented: d\n", "observation"),
    ("Range x\nProduct ^A\nObserve imap\nWhen capability contains X\nGives >= 1\nSource documented: d\n", "When"),
])
def test_version_rules_refuse_malformed_entries(text, message):
    with pytest.raises(UsageError, match=message):
        version_rules.parse_rules(text, "t.txt")


RULES = version_rules.parse_rules("""
Range low
Product ^Demo
Observe imap
When capability has NEWTHING
Gives >= 2.3
Source documented: demo

Range high
Product ^Demo
Observe imap
When capability has OLDTHING
Gives < 2.4
Source documented: demo

Range later
Product ^Demo
Observe imap
When capability has LATER
Gives >= 3.0
Source documented: demo

Range note
Product ^Demo
Observe imap
When id has name=Demo
Gives none
Note backported
Source documented: demo
""", "t.txt")


def test_range_is_the_intersection_and_printed_as_a_range():
    vr = versionrange.infer("Demo server", {"imap": {"capability": ["NEWTHING", "OLDTHING"], "id": []}}, rules=RULES)
    assert (vr.low, vr.high, vr.text) == ("2.3", "2.4", "2.3.x")
    assert versionrange.contains(vr, "2.3.19.1") and not versionrange.contains(vr, "2.4.0")
    vr = versionrange.infer("Demo server", {"imap": {"capability": ["NEWTHING"]}}, rules=RULES)
    assert vr.text == ">= 2.3" and vr.high is None
    assert versionrange.infer("Other", {"imap": {"capability": ["NEWTHING"]}}, rules=RULES) is None
    vr = versionrange.infer("Demo", {"imap": {"capability": [], "id": ["name=Demo"]}}, rules=RULES)
    assert vr.text == "unknown" and len(vr.evidence) == 1 and "backported" in vr.evidence[0].detail


def test_rules_that_exclude_each_other_are_a_conflict_not_a_range():
    vr = versionrange.infer("Demo", {"imap": {"capability": ["LATER", "OLDTHING"]}}, rules=RULES)
    assert vr.low is None and vr.high is None and vr.text == "inconsistent"
    assert "later" in vr.conflict and "high" in vr.conflict


def test_a_banner_outside_the_range_is_said():
    vr = versionrange.infer("Demo", {"imap": {"capability": ["LATER"]}}, "2.9.1", rules=RULES)
    assert vr.conflict and "2.9.1" in vr.conflict
    assert versionrange.infer("Demo", {"imap": {"capability": ["LATER"]}}, "3.1", rules=RULES).conflict is None


def test_version_key_reads_upstream_versions():
    assert versionrange.version_key("9.2p1") == (9, 2)
    assert versionrange.version_key("2.3.19.1") == (2, 3, 19, 1)
    assert versionrange.range_text("14", "15") == "14.x"
    assert versionrange.range_text("14", "17") == ">= 14, < 17"


# ---------------------------------------------------------------------------- records and reports

def _service_with_facts(cert_sha: str = "ab" * 32, jarm: str = "21d" * 10 + "0" * 32) -> model.Service:
    cert = model.CertFacts(sha256=cert_sha, sha1="cd" * 20, md5="ef" * 16, subject="CN=x", issuer="CN=x",
                           subject_attrs=[["commonName", "x"]], issuer_attrs=[["commonName", "x"]],
                           sans=["x.test", "198.18.0.9"], not_before="2026-01-01T00:00:00+00:00",
                           not_after="2027-01-01T00:00:00+00:00", key="RSA", key_bits=2048,
                           sig_alg="sha256WithRSAEncryption", self_signed=True, expired=False, not_yet_valid=False,
                           pem="-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")
    tls = model.TlsFacts(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", bits=256, alpn="http/1.1", cert=cert,
                         ja3s="f" * 32, ja3s_string="771,4865,43-51", jarm=jarm)
    return model.Service(name="http", tunnel="ssl", product="nginx", method="trigger", confidence=1.0, tls=tls)


def _ssh_service(key: str = "SHA256:abc") -> model.Service:
    ssh = model.SshFacts(hassh="a" * 32, hassh_string="k;c;m;none", kex=["curve25519-sha256"],
                         host_key_algorithms=["ssh-ed25519"], ciphers=["aes128-ctr"], macs=["hmac-sha2-256"],
                         compression=["none"], host_keys=[model.HostKey("ssh-ed25519", 256, key, "00" * 16, "AAAA")])
    vr = model.VersionRange("OpenSSH", "8.5", None, ">= 8.5", [model.Evidence("behaviour", "rule: x")])
    return model.Service(name="ssh", product="OpenSSH", method="banner", confidence=1.0, ssh=ssh, version_range=vr)


def test_service_records_round_trip_and_tolerate_junk():
    for svc in (_service_with_facts(), _ssh_service()):
        d = svc.to_dict()
        assert model.Service.from_dict(d) == svc
    assert "tls" not in model.Service(name="x").to_dict()  # no facts, no keys: older readers see the old shape
    junk = model.Service.from_dict({"name": "x", "tls": "nonsense", "ssh": [1], "version_range": {"low": 1},
                                    "unknown_key": 3})
    assert junk is not None and junk.tls is None and junk.ssh is None and junk.version_range is None
    old = model.Service.from_dict({"name": "https", "tls": {"version": "TLSv1.2", "cipher": "X", "bits": 128,
                                                            "cert": {"sha256": "aa", "subject": "CN=a", "sans": []}}})
    assert old.tls.cert.subject == "CN=a" and old.tls.jarm is None  # a 0.1 record (the DER reader's keys)


def _run(services: list[model.Service]) -> model.ScanRun:
    h = model.HostResult(address="198.18.0.9", status="up", reasons=["syn-ack"])
    h.ports = [model.PortResult(443 + i, "tcp", model.OPEN, "syn-ack", 64, s) for i, s in enumerate(services)]
    run = model.ScanRun(args=["hostprint", "-sV"], scan_types=["syn"], ports_scanned={"tcp": [443, 444]})
    run.hosts = [h]
    run.finished = run.started + 1
    return run


def test_nmap_xml_scripts_are_dtd_valid_and_read_by_libnmap(tmp_path):
    etree = pytest.importorskip("lxml.etree")
    from libnmap.parser import NmapParser

    from hostprint.report.nmapxml import to_xml

    path = tmp_path / "o.xml"
    path.write_text(to_xml(_run([_service_with_facts(), _ssh_service()])))
    if DTD.exists():
        dtd = etree.DTD(str(DTD))
        assert dtd.validate(etree.parse(str(path))), dtd.error_log.filter_from_errors()
    rep = NmapParser.parse_fromfile(str(path))
    by = {s.port: {x["id"]: x for x in s.scripts_results} for s in rep.hosts[0].services}
    assert set(by[443]) == {"ssl-cert", "tls-fingerprint"}
    assert set(by[444]) == {"ssh-hostkey", "ssh2-enum-algos", "ssh-hassh", "version-range"}
    assert "Subject: commonName=x" in by[443]["ssl-cert"]["output"]
    assert "SHA-256: " + "ab" * 32 in by[443]["ssl-cert"]["output"]
    assert by[443]["ssl-cert"]["elements"]["sha256"] == "ab" * 32
    assert "JARM: " + "21d" * 10 in by[443]["tls-fingerprint"]["output"]


def test_normal_output_shows_facts_under_their_port():
    from hostprint.report.normal import host_block

    run = _run([_service_with_facts(), _ssh_service()])
    lines = host_block(run, run.hosts[0], with_version=True, verbose=0)
    i = next(n for n, ln in enumerate(lines) if ln.startswith("443/tcp"))
    assert lines[i + 1].startswith("| ssl-cert: Subject: commonName=x")
    assert any(ln.startswith("|_JARM: ") for ln in lines)
    assert any(ln == "| ssh-hostkey:" for ln in lines)
    assert not any("ssh2-enum-algos" in ln for ln in lines)  # the KEXINIT lists only with -v
    assert any("OpenSSH >= 8.5" in ln for ln in lines)
    assert all(ln == ln.rstrip() for ln in lines)


def test_inventory_keeps_the_typed_facts(tmp_path):
    from hostprint.report.inventory import Inventory

    run = _run([_service_with_facts(), _ssh_service()])
    with Inventory(tmp_path / "inv.sqlite") as inv:
        inv.record_run(run)
        back = inv.load_run(run.id)
    assert [p.service for p in back.hosts[0].ports] == [p.service for p in run.hosts[0].ports]


def test_diff_reports_a_changed_certificate_jarm_and_host_key():
    from hostprint.report.diff import diff_runs

    a = _run([_service_with_facts(), _ssh_service()])
    b = _run([_service_with_facts(cert_sha="99" * 32, jarm="07d" * 10 + "1" * 32), _ssh_service("SHA256:new")])
    d = diff_runs(a, b)
    assert {(f.port, f.what) for f in d.fingerprints} == {(443, "certificate"), (443, "JARM"),
                                                          (444, "host key ssh-ed25519")}
    assert d.counts()["fingerprints_changed"] == 3 and not d.services
    assert diff_runs(a, _run([_service_with_facts(), _ssh_service()])).empty
    # a run that did not measure the facts (an older hostprint) is no claim either way
    plain = _run([model.Service(name="http", tunnel="ssl", product="nginx"), model.Service(name="ssh")])
    assert not diff_runs(a, plain).fingerprints and not diff_runs(plain, a).fingerprints


# ---------------------------------------------------------------------------- hostile bytes

FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_SH = bytes.fromhex("160303005a0200005603035f") + bytes(31) + b"\x20" + bytes(32) + bytes.fromhex(
    "13010000 0e 002b00020304 0033000400 1d0000".replace(" ", ""))
_SEEDS = [_SH, tls_probes.ja3s_hello(None), behaviour.smb2_negotiate_request(), behaviour.rootdse_request(),
          b"E\x00\x00\x00\x24SFATAL\x00VFATAL\x00Mx\x00Fpostmaster.c\x00\x00", b"* OK [CAPABILITY IMAP4rev1] x\r\n"]
_CA = Path("/etc/ssl/certs/ISRG_Root_X1.pem")  # any real certificate (ca-certificates)
if _CA.exists():
    import ssl

    _SEEDS.append(ssl.PEM_cert_to_DER_cert(_CA.read_text()))


def _mutants(data: bytes, rnd: st.DataObject) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.draw(st.integers(0, 6))):
        if b:
            b[rnd.draw(st.integers(0, len(b) - 1))] = rnd.draw(st.integers(0, 255))
    return bytes(b[:rnd.draw(st.integers(0, len(b)))])


def _decode_all(data: bytes) -> None:
    """What a hostile server can send reaches these decoders: only their documented error may escape."""
    tlsfp.parse_server_hello(data)
    tlsfp.jarm_answer(data)
    try:
        tlsfp.ja3(data)
    except ValueError:
        pass
    for fn in (parse_kexinit, host_key):
        try:
            fn(data)
        except SshError:
            pass
    behaviour.parse_smb2_negotiate(data)
    behaviour.parse_rootdse(data)
    behaviour.parse_pg_error(data)
    behaviour.parse_imap(data)
    behaviour.parse_ftp(data)
    cert_facts(data)


def test_fuzz_seeds_are_real_messages():
    assert tlsfp.parse_server_hello(_SEEDS[0]).cipher == 0x1301
    assert tlsfp.ja3(_SEEDS[1])[0] == "d3f7fb583b35e8a4f03d79e1a6b409c6"  # the README's value
    assert behaviour.parse_pg_error(_SEEDS[4])["F"] == "postmaster.c"
    assert behaviour.parse_imap(_SEEDS[5])["capability"] == ["IMAP4rev1"]


@FUZZ
@given(st.binary(max_size=400))
def test_decoders_survive_random_bytes(data):
    _decode_all(data)


@FUZZ
@given(st.sampled_from(_SEEDS), st.data())
def test_decoders_survive_mutated_real_messages(seed, rnd):
    _decode_all(_mutants(seed, rnd))
