"""-sV on the daemons of issue 16 (real Debian daemons, one lab, one scan with the default DBs:
ours + the installed nmap-service-probes). These kinds were added to the lab after the protocol
detectors were frozen; the tests pin what hostprint now gets from them. Products are what the lab
starts; versions come from `dpkg-query -W`, never from constants here; a daemon that does not put
its version on the wire is tested for service and product only."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from test_app import upstream_version, version_ok

from conftest import hostprint, needs_root

ADDR = "198.18.0.31"

# port: (lab kind, service name, product regex or None, package whose version is on the wire or None)
TCP = {
    16667: ("ircd", "irc", r"^ngIRCd$", "ngircd"),
    19418: ("git", "git", None, None),
    13690: ("svn", "svn", r"svnserve", None),
    18090: ("haproxy", "http", r"^HAProxy", None),
    16081: ("varnish", "http", r"^Varnish", "varnish"),
    18082: ("apache", "http", r"^Apache httpd$", "apache2"),
    18444: ("apache-tls", "http", r"^Apache httpd$", "apache2"),
    18445: ("nginx-tls", "http", r"^nginx$", "nginx-light"),
    18446: ("tls13-only", "http", r"^nginx$", "nginx-light"),
    18447: ("tls12-only", "http", r"^nginx$", "nginx-light"),
    12223: ("ssh-kex", "ssh", r"^OpenSSH$", "openssh-server"),
    18083: ("lighttpd", "http", r"^lighttpd$", "lighttpd"),
    21300: ("beanstalkd", "beanstalkd", r"^beanstalkd$", "beanstalkd"),
    14222: ("nats", "nats", r"NATS", "nats-server"),
    11194: ("openvpn", "openvpn", r"^OpenVPN$", None),
    10088: ("kdc", "kerberos-sec", None, None),
    13478: ("turn", "stun", r"^coturn$", "coturn"),
    11080: ("socks", "socks5", None, None),
    12514: ("relp", "relp", r"^librelp$", "librelp0"),
    18001: ("gunicorn", "http", r"^Gunicorn$", None),
    18002: ("uvicorn", "http", r"^Uvicorn$", None),
    15060: ("sip", "sip", r"^Kamailio", "kamailio"),
    10502: ("modbus", "modbus", r"LABPLC", None),
    13389: ("rdp", "ms-wbt-server", r"^xrdp$", None),
    18084: ("caddy", "http", r"^Caddy", None),
    # PostgreSQL whatever its pg_hba method and SSL set-up; the version where trust lets us in
    15441: ("pg-trust", "postgresql", r"^PostgreSQL DB$", "postgresql-15"),
    15442: ("pg-md5", "postgresql", r"^PostgreSQL DB$", None),
    15443: ("pg-scram", "postgresql", r"^PostgreSQL DB$", None),
    15444: ("pg-reject", "postgresql", r"^PostgreSQL DB$", None),
    15445: ("pg-hostssl", "postgresql", r"^PostgreSQL DB$", None),
    15446: ("pg-ssl", "postgresql", r"^PostgreSQL DB$", "postgresql-15"),
}
UDP = {
    11812: ("radius", "radius"),
    15683: ("coap", "coap"),
    137: ("nmbd", "netbios-ns"),
    5353: ("mdns", "mdns"),
    13478: ("turn", "stun"),
    10088: ("kdc", "kerberos-sec"),
    15060: ("sip", "sip"),
}
TLS_PORTS = {18444, 18445, 18446, 18447}
# No XMPP daemon: prosody hangs at start-up now and then (see lab/services.py).


def _services() -> list[str]:
    return sorted({f"{k}:{p}" for p, (k, *_r) in TCP.items()} | {f"{k}:{p}" for p, (k, *_r) in UDP.items()})


@pytest.fixture(scope="module")
def lab2():
    needs_root()
    from hostprint.lab import HostSpec, Lab, LabSpec
    from hostprint.lab.daemoncheck import package_version
    from hostprint.lab.services import REGISTRY

    missing = sorted({p for k, *_r in [*TCP.values(), *UDP.values()] for p in REGISTRY[k].packages
                      if not package_version(p)})
    if missing:
        pytest.skip(f"lab daemons not installed (run scripts/setup.sh): {', '.join(missing)}")
    spec = LabSpec(name=f"a2{os.getpid() % 10000}", hosts=[HostSpec(name="w1", address=ADDR, services=_services())])
    with Lab(spec, daemon_timeout=90, strict=False) as lab:
        yield lab


@pytest.fixture(scope="module")
def sv2(lab2):
    tcp = ",".join(map(str, TCP))
    udp = ",".join(map(str, UDP))
    r = hostprint(lab2, "scan", ADDR, "-sS", "-sU", "-sV", "-p", f"T:{tcp},U:{udp}", "-n", "--no-db",
                  "--progress", "never", "-oJ", "-", timeout=300)
    host = json.loads(r.stdout.splitlines()[0])
    return {(p["port"], p["protocol"]): p for p in host["ports"]}


@pytest.mark.lab
@pytest.mark.parametrize("port", [pytest.param(p, marks=pytest.mark.daemons(f"{TCP[p][0]}:{p}"), id=f"{TCP[p][0]}:{p}")
                                  for p in sorted(TCP)])
def test_sv_names_new_tcp_daemon(sv2, port):
    _kind, name, product, pkg = TCP[port]
    svc = sv2[(port, "tcp")]["service"] or {}
    assert svc.get("name") == name, svc
    if product:
        assert re.search(product, svc.get("product") or ""), svc
    if pkg:
        assert version_ok((svc.get("version") or "").split()[0] or None, upstream_version(pkg)), (svc, upstream_version(pkg))
    if port in TLS_PORTS:
        assert svc.get("tunnel") == "ssl", svc


@pytest.mark.lab
@pytest.mark.parametrize("port", [pytest.param(p, marks=pytest.mark.daemons(f"{UDP[p][0]}:{p}"), id=f"{UDP[p][0]}:{p}")
                                  for p in sorted(UDP)])
def test_sv_names_new_udp_daemon(sv2, port):
    _kind, name = UDP[port]
    p = sv2[(port, "udp")]
    assert p["state"] == "open" and (p["service"] or {}).get("name") == name, p


@pytest.mark.lab
@pytest.mark.daemons("tls13-only:18446", "tls12-only:18447")
def test_sv_tls_version_of_single_version_servers(sv2):
    assert sv2[(18446, "tcp")]["service"]["tls"]["version"] == "TLSv1.3"
    assert sv2[(18447, "tcp")]["service"]["tls"]["version"] == "TLSv1.2"


def _sv(lab, *args: str) -> dict[int, dict]:
    r = hostprint(lab, "scan", ADDR, "-sT", "-Pn", "-sV", "-n", "--no-db", "--progress", "never", "-oJ", "-", *args,
                  timeout=120)
    return {p["port"]: p["service"] or {} for p in json.loads(r.stdout.splitlines()[0])["ports"]}


@pytest.mark.lab
@pytest.mark.daemons("kdc:10088")
def test_sv_reads_nmap_probe_file_by_default(lab2):
    """Without --sv-db the installed nmap-service-probes is used beside our DB: the KDC's product
    comes from an nmap line (our DB only knows Kerberos framing, RFC 4120)."""
    if not Path("/usr/share/nmap/nmap-service-probes").is_file():
        pytest.skip("nmap-service-probes not installed")
    both = _sv(lab2, "-p", "10088")
    own = _sv(lab2, "-p", "10088", "--sv-db", "hostprint")
    assert both[10088]["name"] == own[10088]["name"] == "kerberos-sec"
    assert re.search("Kerberos", both[10088].get("product") or "") and not own[10088].get("product")


@pytest.mark.lab
@pytest.mark.daemons("pg-md5:15442")
def test_sv_version_intensity(lab2):
    """nmap's rarity rule: at intensity 0 only probes whose `ports` list the port are sent; 15442
    is nobody's port, so PostgreSQL there is found at the default intensity only."""
    assert _sv(lab2, "-p", "15442")[15442]["name"] == "postgresql"
    assert _sv(lab2, "-p", "15442", "--version-intensity", "0")[15442].get("name") != "postgresql"
    r = hostprint(lab2, "scan", ADDR, "-sT", "-Pn", "-sV", "--version-intensity", "10", "-p", "15442", check=False)
    assert r.returncode == 2 and "--version-intensity" in r.stderr
