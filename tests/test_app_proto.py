"""Protocol-level detectors of our application DB (issue 16) on answers built here from each
protocol's specification ("spec-built bytes", no daemon): each checks that the framing rule names
the protocol and that product/version rules read what the spec says is there. The same detectors
meet real Debian daemons in tests/test_app_lab2.py where one runs here."""

from __future__ import annotations

import struct

import pytest

from hostprint.match.app import NULL, best, enrich, match_answer
from hostprint.signatures import app_db


@pytest.fixture(scope="module")
def db():
    d = app_db.load()
    assert d.skipped == []
    return d


def judge(db, data: bytes, trigger: str = NULL, proto: str = "tcp"):
    ms = match_answer(db, data, trigger, proto)
    hard = [m for m in ms if not m.soft]
    b = best(hard or ms)
    return enrich(b, ms) if b is not None else None


def _attr(t: int, v: bytes) -> bytes:
    return struct.pack(">HH", t, len(v)) + v + b"\0" * (-len(v) % 4)


# (test id, trigger, proto, answer built from the spec, service, expected fields)
CASES = [
    # MS-RDPBCGR §2.2.1.2.1: TPKT, X.224 CC, RDP_NEG_RSP flags 0x1f, selected PROTOCOL_HYBRID (2)
    ("rdp-windows", "rdp", "tcp", b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x02\x1f\x08\x00\x02\x00\x00\x00",
     "ms-wbt-server", {"product": "Microsoft Terminal Services", "ostype": "Windows"}),
    # the same framing from a server that selects TLS (1) with no flags: RDP, no product claimed
    ("rdp-any", "rdp", "tcp", b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x02\x00\x08\x00\x01\x00\x00\x00",
     "ms-wbt-server", {"product": None, "extrainfo": "RDP; selected protocol 1"}),
    ("vnc", NULL, "tcp", b"RFB 003.008\n", "vnc", {"extrainfo": "protocol 003.008"}),
    # RFC 2812 §5.1 numerics after registration
    ("irc-ngircd", "irc", "tcp", b":irc.lab NOTICE * :*** Looking up your hostname\r\n:irc.lab 001 hp :Welcome\r\n"
     b":irc.lab 002 hp :Your host is irc.lab, running version ngircd-26.1 (x86_64/pc/linux-gnu)\r\n",
     "irc", {"product": "ngIRCd", "version": "26.1", "hostname": "irc.lab"}),
    ("irc-generic", "irc", "tcp", b":x.y 002 hp :Your host is x.y, running version solanum-1.0-dev\r\n",
     "irc", {"product": "solanum", "version": "1.0-dev"}),
    ("irc-refusal", "irc", "tcp", b"ERROR :Closing link: (hp@198.18.0.1) [Registration timeout]\r\n", "irc", {}),
    # RFC 6120 §4.7
    ("xmpp", "xmpp", "tcp", b"<?xml version='1.0'?><stream:stream xmlns:stream=\"http://etherx.jabber.org/streams\" "
     b"xml:lang='en' id='x' version='1.0' from='hp' xmlns='jabber:client'>", "xmpp", {}),
    ("sip-kamailio", "sip", "udp", b"SIP/2.0 200 OK\r\nVia: x\r\nServer: kamailio (5.6.3 (x86_64/linux))\r\n\r\n", "sip",
     {"product": "Kamailio SIP proxy", "version": "5.6.3"}),
    # gitprotocol-pack: ERR pkt-line; ref advertisement with agent capability
    ("git-err", "git", "tcp", b"0048ERR access denied or repository not exported: /hostprint.git", "git",
     {"product": "git daemon"}),
    ("git-refs", "git", "tcp", b"00d1" + b"a" * 40 + b" HEAD\0multi_ack thin-pack side-band agent=git/2.39.5\n0000", "git",
     {"product": "git daemon", "version": "2.39.5"}),
    ("svn", NULL, "tcp", b"( success ( 2 2 ( ) ( edit-pipeline svndiff1 accepts-svndiff2 absent-entries depth ) ) ) ",
     "svn", {"product": "Subversion svnserve", "extrainfo": "protocol 2-2"}),
    ("nats", NULL, "tcp", b'INFO {"server_id":"NABC","server_name":"x","version":"2.9.10","proto":1,"go":"go1.19.8",'
     b'"host":"0.0.0.0","port":4222}\r\n', "nats", {"product": "NATS server", "version": "2.9.10", "extrainfo": "go 1.19.8"}),
    ("beanstalkd", "beanstalkd", "tcp", b"OK 900\r\n---\ncurrent-jobs-urgent: 0\npid: 7\nversion: 1.12\nrusage-utime: 0\n",
     "beanstalkd", {"product": "beanstalkd", "version": "1.12"}),
    ("beanstalkd-err", "help", "tcp", b"UNKNOWN_COMMAND\r\n", "beanstalkd", {}),
    ("stomp", "stomp", "tcp", b"CONNECTED\nversion:1.2\nserver:ActiveMQ/5.17.2\nheart-beat:0,0\n\n\0", "stomp",
     {"product": "Apache ActiveMQ", "version": "5.17.2"}),
    ("zookeeper-4lw", "zookeeper", "tcp", b"srvr is not executed because it is not in the whitelist.\n", "zookeeper",
     {"product": "Zookeeper"}),
    ("consul", "consul", "tcp", b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"Config": {"Datacenter": "dc1",'
     b' "NodeName": "n", "Revision": "x", "Server": true, "Version": "1.15.2"}}', "consul",
     {"product": "HashiCorp Consul", "version": "1.15.2"}),
    # OpenVPN P_CONTROL_HARD_RESET_SERVER_V2 acking our packet 0, over TCP (2-byte length)
    ("openvpn", "openvpn", "tcp", struct.pack(">H", 26) + b"\x40SRVSESS1\x01\x00\x00\x00\x00hprphprp\x00\x00\x00\x00", "openvpn",
     {"product": "OpenVPN"}),
    ("openvpn-udp", "openvpn", "udp", b"\x40SRVSESS1\x01\x00\x00\x00\x00hprphprp\x00\x00\x00\x00", "openvpn", {}),
    # RFC 7296 §3.1: our SPI, responder SPI, next payload Notify (41), v2.0, IKE_SA_INIT, Response
    ("ikev2", "ike", "udp", b"hprphprp" + b"\0" * 8 + b"\x29\x20\x22\x20" + b"\0\0\0\0\0\0\0\x24" + b"\0\0\0\x08\0\0\0\x0e",
     "isakmp", {"extrainfo": "IKEv2"}),
    ("ikev1", "ike", "udp", b"hprphprp" + b"\0" * 8 + b"\x0b\x10\x05\x00" + b"\0" * 8, "isakmp", {"extrainfo": "IKEv1"}),
    ("radius", "radius", "udp", b"\x03\x68\x00\x14" + b"A" * 16, "radius", {}),
    ("tacacs", "tacacs", "tcp", b"\xc0\x01\x02\x00hprp\x00\x00\x00\x06" + b"\x01\x00\x00\x00\x00\x00", "tacacs+", {}),
    # RFC 4120 §5.9.1 KRB-ERROR over TCP
    ("kerberos-tcp", "kerberos", "tcp", b"\x00\x00\x00\x20\x7e\x1e\x30\x1c\xa0\x03\x02\x01\x05\xa1\x03\x02\x01\x1e" + b"\0" * 20,
     "kerberos-sec", {}),
    # RFC 8489: success with SOFTWARE (0x8022)
    ("stun-coturn", "stun", "udp", b"\x01\x01\x00\x20\x21\x12\xa4\x42hprphprphprp" + _attr(0x8022, b"Coturn-4.6.1 'Gorst'"),
     "stun", {"product": "coturn", "version": "4.6.1"}),
    ("stun", "stun", "tcp", b"\x01\x01\x00\x00\x21\x12\xa4\x42hprphprphprp", "stun", {}),
    ("mdns", "mdns", "udp", b"hp\x84\x00\x00\x01\x00\x01\x00\x00\x00\x00\x09_services\x07_dns-sd\x04_udp\x05local\x00"
     b"\x00\x0c\x00\x01\xc0\x0c\x00\x0c\x00\x01\x00\x00\x00\x0a\x00\x02\xc0\x0c", "mdns", {}),
    ("ssdp-miniupnpd", "ssdp", "udp", b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: upnp:rootdevice\r\n"
     b"USN: uuid:x::upnp:rootdevice\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\n\r\n", "upnp",
     {"product": "MiniUPnP", "version": "2.3.1"}),
    ("llmnr", "llmnr", "udp", b"hp\x84\x00\x00\x01\x00\x01\x00\x00\x00\x00", "llmnr", {}),
    ("relp", "relp", "tcp", b"1 rsp 92 200 OK\nrelp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\n"
     b"commands=syslog\n", "relp", {"product": "librelp", "version": "1.11.0"}),
    ("socks5", "socks5", "tcp", b"\x05\x00", "socks5", {"extrainfo": "method 0"}),
    ("socks4", "socks4", "tcp", b"\x00\x5b\x00\x00\x00\x00\x00\x00", "socks4", {}),
    # Modbus 43/14 answer: MEI 0x0e, read code 1, conformity 1, more 0, next 0, 3 objects
    ("modbus", "modbus", "tcp", b"hp\x00\x00\x00\x1e\x00\x2b\x0e\x01\x01\x00\x00\x03\x00\x06Vendor\x01\x04PLC1\x02\x04v1.2",
     "modbus", {"product": "Vendor PLC1", "version": "v1.2"}),
    ("modbus-exc", "modbus", "tcp", b"hp\x00\x00\x00\x03\x00\xab\x01", "modbus", {}),
    ("bacnet", "bacnet", "udp", b"\x81\x0a\x00\x18\x01\x00\x30\x68\x0c\x0c\x02\x00\x00\x01\x19\x79\x3e\x75\x08\x00ACME Co\x3f",
     "bacnet", {"product": "ACME Co"}),
    ("s7", "s7", "tcp", b"\x03\x00\x00\x16\x11\xd0\x00\x01\x00\x00\x00\xc0\x01\x0a\xc1\x02\x01\x00\xc2\x02\x01\x02"
     b"\x03\x00\x00\x1b\x02\xf0\x80\x32\x03\x00\x00\x68\x70\x00\x08\x00\x00\x00\x00\xf0\x00\x00\x01\x00\x01\x00\xf0",
     "iso-tsap", {"product": "Siemens S7 PLC"}),
    ("rtsp-live555", "rtsp", "tcp", b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nServer: LIVE555 Streaming Media v2022.10.01\r\n\r\n",
     "rtsp", {"product": "LIVE555 Streaming Media", "version": "2022.10.01"}),
    ("coap", "coap", "udp", b"\x60\x45hp\xc1\x28\xff</>;title=\"General Info\";ct=0", "coap", {}),
    ("coap-rst", "coap", "udp", b"\x70\x00hp", "coap", {}),
    # RFC 9000 §17.2.1: Version Negotiation listing v1 and a reserved version
    ("quic", "quic", "udp", b"\x80\x00\x00\x00\x00\x00\x08hprphprp\x0a\x1a\x2a\x3a\x00\x00\x00\x01", "quic",
     {"extrainfo": "QUIC v1"}),
    # PostgreSQL: the SSLRequest trigger on servers with SSL off (N + trust: AuthenticationOk,
    # ParameterStatus), SSL on (S + 08P01), and md5
    ("pg-trust", "postgresql-ssl", "tcp", b"NR\x00\x00\x00\x08\x00\x00\x00\x00S\x00\x00\x00\x1aapplication_name\x00\x00"
     b"S\x00\x00\x00\x2aserver_version\x0015.14 (Debian 15.14-0+deb12u1)\x00", "postgresql",
     {"product": "PostgreSQL DB", "version": "15.14", "extrainfo": "Debian 15.14-0+deb12u1"}),
    ("pg-ssl-on", "postgresql-ssl", "tcp", b"SE\x00\x00\x00\x70SFATAL\x00VFATAL\x00C08P01\x00Mreceived unencrypted data "
     b"after SSL request\x00", "postgresql", {"product": "PostgreSQL DB"}),
    ("pg-md5", "postgresql-ssl", "tcp", b"NR\x00\x00\x00\x0c\x00\x00\x00\x05abcd", "postgresql", {"product": "PostgreSQL DB"}),
    ("pg-localised", "postgresql", "tcp", b"E\x00\x00\x00\x60SSCHWERWIEGEND\x00VFATAL\x00C28000\x00Mkein pg_hba.conf-Eintrag\x00",
     "postgresql", {"product": "PostgreSQL DB"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_detector_on_spec_built_answer(db, case):
    _id, trig, proto, data, service, fields = case
    m = judge(db, data, trig, proto)
    assert m is not None and not m.soft, (service, m)
    assert m.service == service, (m.service, m.fields)
    for k, v in fields.items():
        assert m.fields.get(k) == v, (k, m.fields)


# HTTP Server headers parsed into product / version / extrainfo (as nmap does), and front ends
# recognised from headers or their built-in error pages (texts from each product's source).
HTTP = [
    ("Server: SimpleHTTP/0.6 Python/3.11.2", "", ("SimpleHTTPServer", "0.6", "Python 3.11.2")),
    ("Server: BaseHTTP/0.6 Python/3.11.2", "", ("BaseHTTPServer", "0.6", "Python 3.11.2")),
    ("Server: Apache/2.4.57 (Debian)", "", ("Apache httpd", "2.4.57", "Debian")),
    ("Server: nginx/1.22.1", "", ("nginx", "1.22.1", None)),
    ("Server: lighttpd/1.4.69", "", ("lighttpd", "1.4.69", None)),
    ("Server: gunicorn", "", ("Gunicorn", None, None)),
    ("server: uvicorn", "", ("Uvicorn", None, None)),
    ("Server: Werkzeug/2.2.2 Python/3.11.2", "", ("Werkzeug httpd", "2.2.2", "Python 3.11.2")),
    ("Server: Jetty(9.4.50.v20221201)", "", ("Jetty", "9.4.50.v20221201", None)),
    ("Server: Apache-Coyote/1.1", "", ("Apache Tomcat", None, "Coyote JSP engine 1.1")),
    ("Server: Caddy", "", ("Caddy httpd", None, None)),
    ("server: envoy", "", ("Envoy proxy", None, None)),
    ("Server: Foo-Bar/3.2.1 (Linux) extra/1", "", ("Foo-Bar", "3.2.1", "Linux extra/1")),
    ("Via: 1.1 cache1 (Varnish/7.1)", "", ("Varnish http accelerator", "7.1", None)),
    ("Content-Type: text/html", "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this "
     "request.\n</body></html>\n", ("HAProxy http proxy", None, None)),
    ("Content-Type: text/html", "<html><body><h3>Apache Tomcat/10.1.6</h3></body></html>", ("Apache Tomcat", "10.1.6", None)),
    ("Content-Type: text/html", "<hr/><a href=\"https://eclipse.org/jetty\">Powered by Jetty:// 9.4.57.v20241219</a>",
     ("Jetty", "9.4.57.v20241219", None)),
    ("X-Varnish: 32770", "<p>Varnish cache server</p>", ("Varnish http accelerator", None, None)),
]


@pytest.mark.parametrize("header,body,want", HTTP, ids=[h[0][:30] for h in HTTP])
def test_http_server_forms(db, header, body, want):
    data = f"HTTP/1.1 503 Service Unavailable\r\nDate: x\r\n{header}\r\n\r\n{body}".encode()
    m = judge(db, data, "http")
    got = (m.fields.get("product"), m.fields.get("version"), m.fields.get("extrainfo"))
    assert (m.service, got) == ("http", want), m.fields


def test_plaintext_answers_that_say_tls_expected(db):
    """nginx's 497 page, Apache mod_ssl's text, Go's text and TLS records all say "ssl" (the
    engine's TLS pass follows); a plain 400 does not."""
    from hostprint.probes.app import _service_name, _tls_said

    nginx = (b"HTTP/1.1 400 Bad Request\r\nServer: nginx/1.22.1\r\n\r\n<html>\r\n<head><title>400 The plain HTTP request "
             b"was sent to HTTPS port</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>The "
             b"plain HTTP request was sent to HTTPS port</center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n")
    apache = (b"HTTP/1.1 400 Bad Request\r\nServer: Apache/2.4.62 (Debian)\r\n\r\n<p>Your browser sent a request that this "
              b"server could not understand.<br />\nReason: You're speaking plain HTTP to an SSL-enabled server port.<br />\n"
              b" Instead use the HTTPS scheme to access this URL, please.<br />\n</p>\n<hr>\n<address>Apache/2.4.62 (Debian) "
              b"Server at x Port 8444</address>\n")
    go = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
    for data, product in ((nginx, "nginx"), (apache, "Apache httpd"), (go, "Golang net/http server")):
        ms = match_answer(db, data, "http", "tcp")
        said = [m for m in ms if _tls_said(m)]
        assert said and said[0].fields["product"] == product and _service_name(said[0]) == "http"
    for data in (b"\x15\x03\x01\x00\x02\x02\x46", b"\x16\x03\x03\x00\x5a\x02\x00\x00\x56\x03\x03"):
        assert any(m.service == "ssl" for m in match_answer(db, data, "redis", "tcp"))
    plain = b"HTTP/1.1 400 Bad Request\r\nServer: nginx/1.22.1\r\n\r\n<title>400 Bad Request</title>"
    assert not [m for m in match_answer(db, plain, "http", "tcp") if _tls_said(m)]


def test_port_hints_are_not_lab_ports(db):
    """Port hints come from IANA or the daemon's documented default: none of the lab's own ports."""
    lab_only = {8081, 10161, 1161, 7000, 5300, 81}
    for t in db.triggers:
        assert not (t.ports & lab_only), (t.name, sorted(t.ports & lab_only))


def test_every_new_trigger_is_answered_by_a_rule_of_its_own(db):
    """A trigger whose answers no rule can judge would be noise on the wire."""
    for t in db.triggers:
        assert db.possible(t.name), t.name
