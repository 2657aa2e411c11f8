"""`hostprint audit` scoring and countermeasures on a captured scan of the demo lab's web and db
hosts (tests/data/audit_demo_scan.jsonl: `hostprint scan -sS -sV -O --os-db hostprint,p0f --sequence` of 198.18.0.10 and
198.18.0.20, Linux 6.18 namespaces, 2026-12-04). The lab test is tests/test_audit_lab.py."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from hostprint import audit
from hostprint.report.inventory import host_from_dict

DATA = Path(__file__).parent / "data" / "audit_demo_scan.jsonl"


@pytest.fixture(scope="module")
def hosts():
    return {h.address: h for h in (host_from_dict(json.loads(ln)) for ln in DATA.read_text().splitlines() if ln)}


def _m(methods, name):
    return next(m for m in methods if m.method.startswith(name))


def test_bits_over_the_class_prior(hosts):
    n = audit.stack_classes()
    assert 10 < n < 200  # relays and scrubbers are not counted
    web, _ = audit.score(hosts["198.18.0.10"])
    db, _ = audit.score(hosts["198.18.0.20"])
    # web: Linux 6.x, Linux 4.x - 6.x (both 100 %) and Linux 2.6 - 3.x (98.9 %) fit: 3 classes tie
    assert _m(web, "stack").bits == pytest.approx(math.log2(n / 3), abs=0.01)
    # db: 95.9 % with Linux 2.6 - 3.x within 0.02: two classes, lowered by the confidence
    assert _m(db, "stack").bits == pytest.approx(0.959 * math.log2(n / 2), abs=0.01)
    # the ssh banner names Debian 12: the whole prior
    assert _m(web, "banners").bits == pytest.approx(math.log2(n))
    assert _m(db, "banners").bits == 0
    # p0f.fp 3.09b has no label for Linux 6.18's SYN+ACKs: the method is shown with its raw signature, 0 bits
    if audit.p0f_labels():
        p0f = _m(db, "passive")
        assert p0f.bits == 0 and p0f.details == ["raw_sig 4:128+0:0:1460:mss*44,0:mss:df:0"], p0f


def test_facts_and_countermeasures_follow_the_measurement(hosts):
    web, web_exp = audit.score(hosts["198.18.0.10"])
    db, db_exp = audit.score(hosts["198.18.0.20"])
    wf = {f for m in web for f in m.facts}
    df = {f for m in db for f in m.facts}
    assert {"option-timestamp", "option-window-scale", "option-sack", "ttl-64", "stack-os", "distro:OpenSSH"} <= wf
    assert "ttl-128" in df and "option-timestamp" not in df and "option-sack" not in df  # db's sysctls
    web_cm = {c.name for c in audit.recommend(web)}
    db_cm = {c.name for c in audit.recommend(db)}
    assert {"tcp_timestamps off", "OpenSSH DebianBanner no", "nginx server_tokens off"} <= web_cm
    assert "ip_default_ttl 64" in db_cm and "tcp_timestamps off" not in db_cm and "vsftpd banner" in db_cm
    assert any("vsftpd 3.0.3" in e for e in db_exp) and any("nginx 1.22.1" in e for e in web_exp)


def test_countermeasure_db_has_sources_and_applicable_settings():
    cms = audit.countermeasures()
    assert len(cms) >= 8
    for c in cms:
        assert c.sources and c.cost and c.hides
    assert {c.kind for c in cms} == {"sysctl", "scrubber", "daemon"}


def test_overall_is_the_best_method(hosts):
    from hostprint.model import AuditReport

    methods, exp = audit.score(hosts["198.18.0.10"])
    rep = AuditReport("198.18.0.10", methods, exp, audit.recommend(methods))
    assert rep.overall == max(m.bits for m in methods)
    d = rep.to_dict()
    assert d["type"] == "audit" and d["countermeasures"] and "after" not in d
    assert "hides:" in audit.render(rep)


@pytest.mark.parametrize("argv, msg", [
    (["-p", "70000", "198.18.0.1"], "-p"),
    (["--apply", "no-such-ns-hp", "198.18.0.1"], "no such network namespace"),
    (["--apply", "../x", "198.18.0.1"], "not a network namespace name"),
    (["--keep-applied", "198.18.0.1"], "--keep-applied needs --apply"),
])
def test_bad_input_is_one_line_and_exit_2(argv, msg):
    r = subprocess.run([sys.executable, "-m", "hostprint.cli", "audit", *argv], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and msg in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert "only for hosts you own" not in r.stderr  # refused before the scan (and any packet)


def test_services_on_unexpected_ports():
    from hostprint.model import HostResult, PortResult, Service

    h = HostResult("198.18.0.30", "up", ports=[
        PortResult(2222, "tcp", "open", "syn-ack", 64, Service("ssh", product="OpenSSH", method="banner", confidence=1.0)),
        PortResult(8080, "tcp", "open", "syn-ack", 64, Service("http", product="nginx", method="trigger", confidence=1.0)),
        PortResult(22, "tcp", "open", "syn-ack", 64, Service("ssh", product="OpenSSH", method="banner", confidence=1.0)),
        PortResult(3000, "tcp", "open", "syn-ack", 64, Service("ppp", method="port-table")),
    ])
    moved = audit.unexpected_ports(h)
    assert len(moved) == 1 and moved[0].startswith("ssh on 2222/tcp"), moved


HANDSHAKES = Path(__file__).parent / "data" / "audit_web_handshakes.jsonl"  # -sS -sV -p 22,80,443 of web, 2026-12-05


def _web_sv():
    return host_from_dict(json.loads(HANDSHAKES.read_text().splitlines()[0]))


def test_handshake_method_names_releases_from_the_kexinit():
    from hostprint.match.versionrange import contains

    h = _web_sv()
    ssh = next(p.service for p in h.ports if p.port == 22)
    assert ssh.ssh is not None and ssh.ssh.kex and ssh.version_range is not None
    methods, exposures = audit.score(h)
    hs = _m(methods, "tls/ssh")
    pk = audit.packaged()
    fit = {x.release for x in pk if x.product == "^OpenSSH" and contains(ssh.version_range, x.version)}
    n = len({x.release for x in pk})
    assert 0 < len(fit) < n
    assert hs.bits == pytest.approx(math.log2(n / len(fit)))
    assert "Debian 12" in hs.learns and "Debian 10" not in hs.learns, hs.learns
    keys = [e for e in exposures if e.startswith("identifier: 22/tcp ssh host key")]
    assert len(keys) == len(ssh.ssh.host_keys) >= 1
    # the banner's version is not read: a lying banner changes nothing in this method
    ssh.version = "7.9p1"
    assert _m(audit.score(h)[0], "tls/ssh").bits == pytest.approx(hs.bits)


def test_a_bare_banner_version_still_names_its_release():
    """DebianBanner no leaves "OpenSSH_9.2p1": the releases that ship 9.2p1 are what the banner says."""
    h = _web_sv()
    assert h.os.banner is not None
    h.os.banner.hints.clear()  # as with DebianBanner no: no package revision
    ban = _m(audit.score(h)[0], "banners")
    pk = audit.packaged()
    # OpenSSH 9.2p1 and nginx 1.22.1 (the captured banners): the releases that ship both
    both = ({x.release for x in pk if x.product == "^OpenSSH" and x.version == "9.2p1"}
            & {x.release for x in pk if x.product == "^nginx$" and x.version == "1.22.1"})
    assert both
    assert ban.bits == pytest.approx(math.log2(len({x.release for x in pk}) / len(both)))
    assert {"version-release:OpenSSH", "version-release:nginx"} <= set(ban.facts)
    assert all(r in ban.learns for r in both) and "nginx 1.22.1" in ban.learns, ban.learns


def test_packaged_db_has_sources():
    pk = audit.packaged()
    assert len(pk) >= 5 and len({x.name for x in pk}) == len(pk)


def test_handshake_method_tls_identifiers_and_fingerprints():
    """-sS -sV -p 22,8445 of a lab web host with nginx-tls:8445 (2026-12-05): the certificate is an
    identifier naming what its subject and SANs name; JA3S and JARM are shown as details."""
    h = host_from_dict(json.loads((Path(__file__).parent / "data" / "audit_web_tls.jsonl").read_text().splitlines()[0]))
    tls = next(p.service.tls for p in h.ports if p.service and p.service.tls)
    assert tls.cert is not None and tls.ja3s and tls.jarm
    methods, exposures = audit.score(h)
    hs = _m(methods, "tls/ssh")
    cert = [e for e in exposures if "TLS certificate" in e]
    assert len(cert) == 1 and tls.cert.sha256[:16] in cert[0], exposures
    assert all(x in cert[0] for x in tls.cert.sans), cert
    assert any(tls.ja3s in d for d in hs.details) and any(tls.jarm in d for d in hs.details), hs.details
    assert "identifiers of the host" in hs.learns  # the certificate and the SSH host keys
