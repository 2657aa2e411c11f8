"""Benchmark (not a test): `hostprint scan -sV` vs `nmap -sV` on the same lab, in one run.

Two lab hosts run real Debian daemons on non-standard ports (hostprint/lab/services.py): z1 the
kinds the lab had when our rules were written ("old"), z2 the kinds added in issue 16 after the
protocol detectors were frozen ("new": held out). Three runs scan the same TCP and UDP ports
from the lab's scanner namespace: hostprint with its own DB only (`--sv-db hostprint`), hostprint
with its default DBs (ours + the installed nmap-service-probes) and `nmap -sV`. The report lists
per port what each said, scores service / product / version against what the lab runs
(versions from `dpkg-query -W`), and the wall time of each run, old and new hosts separately.

    sudo python3 bench/services/run.py [--out bench/services/last_run.md] [--skip-nmap] [--set old|new|both]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

ADDRS = {"old": "198.18.0.40", "new": "198.18.0.41"}

# port -> (lab kind, accepted service names, product regex (None: no product exposed), package for
#          the version or None when the daemon does not reveal its version on the wire)
TCP = {
    2222: ("ssh", {"ssh"}, r"openssh", "openssh-server"),
    8081: ("nginx", {"http"}, r"nginx", "nginx-light"),
    2121: ("ftp", {"ftp"}, r"vsftpd", "vsftpd"),
    7379: ("redis", {"redis"}, r"redis", "redis-server"),
    21211: ("memcached", {"memcached"}, r"memcache", "memcached"),
    5353: ("dns", {"domain"}, r"dnsmasq", "dnsmasq-base"),
    13306: ("mysql", {"mysql"}, r"mariadb|mysql", "mariadb-server"),
    10025: ("smtp", {"smtp"}, r"exim", "exim4-daemon-light"),
    13128: ("squid", {"http-proxy", "http"}, r"squid", "squid"),
    10631: ("ipp", {"ipp", "http"}, r"cups", "cups-daemon"),
    10143: ("imap", {"imap"}, r"dovecot", None),
    10110: ("pop3", {"pop3"}, r"dovecot", None),
    15432: ("postgresql", {"postgresql"}, r"postgres", None),
    10389: ("ldap", {"ldap"}, r"openldap", None),
    11883: ("mqtt", {"mqtt"}, r"mosquitto", "mosquitto"),
    10873: ("rsync", {"rsync"}, None, None),
    14369: ("epmd", {"epmd"}, r"erlang|epmd", None),
    10023: ("telnet", {"telnet"}, None, None),
    7443: ("tls-redis", {"ssl/redis"}, r"redis", "redis-server"),
    9443: ("tls-http", {"ssl/http", "ssl/https", "https"}, r"nginx", "nginx-light"),
    12379: ("etcd", {"etcd"}, r"etcd", "etcd-server"),
    6005: ("x11", {"X11"}, None, None),
    25672: ("erlang", {"erlang-dist", "erlang"}, r"erlang", None),
    15900: ("vnc", {"vnc"}, None, None),
    10445: ("smb", {"microsoft-ds", "netbios-ssn"}, r"samba", None),  # Samba does not send its version over SMB2
    111: ("rpcbind", {"rpcbind"}, None, None),
    5556: ("tcp-close", {"tcpwrapped"}, None, None),
    5555: ("tcp-listen", set(), None, None),  # silent: nothing to find; costs time
}
UDP = {
    111: ("rpcbind", {"rpcbind"}, None, None),
    10161: ("snmp", {"snmp"}, r"net-snmp", None),
    10123: ("ntp", {"ntp"}, None, None),
    10069: ("tftp", {"tftp"}, None, None),
    5353: ("dns", {"domain"}, r"dnsmasq", "dnsmasq-base"),
}


# Held-out kinds (issue 16). Every daemon is scored on its real product and package version,
# whether or not it reveals them: the count says how much of what runs the tools could name.
NEW_TCP = {
    16667: ("ircd", {"irc"}, r"ngircd", "ngircd"),
    19418: ("git", {"git"}, r"git", "git"),
    13690: ("svn", {"svn", "svnserve"}, r"svn|subversion", "subversion"),
    18090: ("haproxy", {"http", "http-proxy"}, r"haproxy", "haproxy"),
    16081: ("varnish", {"http", "http-proxy"}, r"varnish", "varnish"),
    18082: ("apache", {"http"}, r"apache", "apache2"),
    18444: ("apache-tls", {"ssl/http", "ssl/https", "https"}, r"apache", "apache2"),
    18445: ("nginx-tls", {"ssl/http", "ssl/https", "https"}, r"nginx", "nginx-light"),
    18446: ("tls13-only", {"ssl/http", "ssl/https", "https"}, r"nginx", "nginx-light"),
    18447: ("tls12-only", {"ssl/http", "ssl/https", "https"}, r"nginx", "nginx-light"),
    12223: ("ssh-kex", {"ssh"}, r"openssh", "openssh-server"),
    18083: ("lighttpd", {"http"}, r"lighttpd", "lighttpd"),
    21300: ("beanstalkd", {"beanstalkd"}, r"beanstalk", "beanstalkd"),
    14222: ("nats", {"nats"}, r"nats", "nats-server"),
    11194: ("openvpn", {"openvpn"}, r"openvpn", "openvpn"),
    10088: ("kdc", {"kerberos-sec", "kerberos"}, r"kerberos|mit", "krb5-kdc"),
    13478: ("turn", {"stun", "turn"}, r"coturn", "coturn"),
    11080: ("socks", {"socks5", "socks4", "socks"}, r"dante", "dante-server"),
    12514: ("relp", {"relp"}, r"rsyslog|librelp", "librelp0"),
    18001: ("gunicorn", {"http"}, r"gunicorn", "gunicorn"),
    18002: ("uvicorn", {"http"}, r"uvicorn", "python3-uvicorn"),
    15060: ("sip", {"sip"}, r"kamailio", "kamailio"),
    10502: ("modbus", {"modbus", "mbap"}, r"pymodbus|hostprint lab|labplc", None),
    13389: ("rdp", {"ms-wbt-server", "rdp"}, r"xrdp", "xrdp"),
    18084: ("caddy", {"http"}, r"caddy", "caddy"),
    **{p: (k, {"postgresql"}, r"postgres", "postgresql-15") for p, k in (
        (15441, "pg-trust"), (15442, "pg-md5"), (15443, "pg-scram"), (15444, "pg-reject"), (15445, "pg-hostssl"),
        (15446, "pg-ssl"))},
}
NEW_UDP = {
    10500: ("ike", {"isakmp", "ike"}, r"strongswan", "strongswan-charon"),
    11812: ("radius", {"radius"}, r"freeradius", "freeradius"),
    15683: ("coap", {"coap"}, r"libcoap", "libcoap3-bin"),
    137: ("nmbd", {"netbios-ns"}, r"samba|nmbd", "samba"),
    5353: ("mdns", {"mdns", "zeroconf"}, r"avahi", "avahi-daemon"),
    13478: ("turn", {"stun", "turn"}, r"coturn", "coturn"),
    10088: ("kdc", {"kerberos-sec", "kerberos"}, r"kerberos|mit", "krb5-kdc"),
    15060: ("sip", {"sip"}, r"kamailio", "kamailio"),
}
SETS = {"old": (TCP, UDP), "new": (NEW_TCP, NEW_UDP)}


def upstream(pkg: str) -> str:
    v = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True).stdout.strip()
    v = v.split(":", 1)[-1]
    return v.rsplit("-", 1)[0] if "-" in v else v


def version_ok(reported: str | None, up: str) -> bool:
    """The upstream version appears as a token (nmap: '5.5.5-10.11.19-MariaDB…'), or the server
    revealed only leading components of it (CUPS: '2.4' for 2.4.2)."""
    if not reported:
        return False
    if re.search(r"(?<![\w.])" + re.escape(up) + r"(?![\w])", reported):
        return True
    first = reported.split()[0]
    return up.startswith(first + ".")


def hostprint_scan(lab, addr: str, tcp: str, udp: str, *extra: str) -> tuple[dict, float]:
    t = time.monotonic()
    r = lab.exec(lab.scanner_ns, [sys.executable, "-m", "hostprint", "scan", addr, "-sS", "-sU", "-sV", "-n",
                                  "-p", f"T:{tcp},U:{udp}", "--no-db", "--progress", "never", "-oJ", "-", *extra],
                 capture_output=True, text=True, timeout=900, cwd=str(ROOT))
    dt = time.monotonic() - t
    if r.returncode:
        raise SystemExit(f"hostprint failed: {r.stderr}")
    host = json.loads(r.stdout.splitlines()[0])
    out = {}
    for p in host["ports"]:
        s = p["service"] or {}
        name = s.get("name") if s.get("method") != "port-table" else None
        if name and s.get("tunnel"):
            name = f"{s['tunnel']}/{name}"
        out[(p["port"], p["protocol"])] = (name, s.get("product"), s.get("version"), p["state"])
    return out, dt


def nmap_scan(lab, addr: str, tcp: str, udp: str) -> tuple[dict, float]:
    t = time.monotonic()
    r = lab.exec(lab.scanner_ns, ["nmap", "-n", "-Pn", "-sS", "-sU", "-sV", "-p", f"T:{tcp},U:{udp}", addr,
                                  "-oX", "-"], capture_output=True, text=True, timeout=1800)
    dt = time.monotonic() - t
    out = {}
    root = ET.fromstring(r.stdout)
    for p in root.iter("port"):
        st = p.find("state").get("state")
        s = p.find("service")
        name = prod = ver = None
        if s is not None and s.get("method") == "probed":
            name = s.get("name")
            if s.get("tunnel"):
                name = f"{s.get('tunnel')}/{name}"
            prod, ver = s.get("product"), s.get("version")
        out[(int(p.get("portid")), p.get("protocol"))] = (name, prod, ver, st)
    return out, dt


def score(res: dict, key, spec) -> tuple[bool, bool | None, bool | None]:
    _kind, names, prod_rx, pkg = spec
    name, prod, ver, _st = res.get(key, (None, None, None, None))
    s_ok = (name in names) if names else True
    p_ok = None if prod_rx is None else bool(prod and re.search(prod_rx, prod, re.I))
    v_ok = None if pkg is None else version_ok(ver, upstream(pkg))
    return s_ok, p_ok, v_ok


RUNS = (("own", "hostprint -sV --sv-db hostprint"), ("default", "hostprint -sV (ours + nmap-service-probes)"),
        ("nmap", "nmap -sV (default intensity)"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "bench" / "services" / "last_run.md"))
    ap.add_argument("--skip-nmap", action="store_true")
    ap.add_argument("--set", choices=("old", "new", "both"), default="both")
    ap.add_argument("--only", metavar="KIND,…", help="only these lab kinds (e.g. a re-run of daemons that failed)")
    a = ap.parse_args()
    if a.only:
        keep = set(a.only.split(","))
        for name, (tt, ut) in list(SETS.items()):
            SETS[name] = ({p: v for p, v in tt.items() if v[0] in keep}, {p: v for p, v in ut.items() if v[0] in keep})
    if os.geteuid() != 0:
        raise SystemExit("needs root (lab namespaces)")
    from hostprint.lab import HostSpec, Lab, LabSpec

    sets = ["old", "new"] if a.set == "both" else [a.set]
    sets = [n for n in sets if SETS[n][0] or SETS[n][1]]
    out_lines: list[str] = ["## Services run " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "",
                            "Command: `python3 bench/services/run.py" + (f" --set {a.set}" if a.set != "both" else "")
                            + (" --skip-nmap" if a.skip_nmap else "") + (f" --only {a.only}" if a.only else "") + "`", ""]
    for name in sets:  # one lab per host: the two sets' daemons never compete at start-up
        tcp_t, udp_t = SETS[name]
        addr = ADDRS[name]
        svcs = sorted({f"{k}:{p}" for p, (k, *_r) in tcp_t.items()} | {f"{k}:{p}" for p, (k, *_r) in udp_t.items()})
        spec = LabSpec(name=f"bsv{os.getpid() % 1000}{name[0]}", hosts=[HostSpec(name=f"z{name}", address=addr, services=svcs)])
        with Lab(spec, daemon_timeout=90, strict=False) as lab:
            for f in lab.failures:
                out_lines.append(f"- lab daemon failed: {f.message()}")
            time.sleep(1.0)  # let slow starters (squid, cupsd) finish their own initialisation
            tcp = ",".join(map(str, tcp_t))
            udp = ",".join(map(str, udp_t))
            res = {"own": hostprint_scan(lab, addr, tcp, udp, "--sv-db", "hostprint"),
                   "default": hostprint_scan(lab, addr, tcp, udp)}
            if not a.skip_nmap:
                res["nmap"] = nmap_scan(lab, addr, tcp, udp)
            out_lines += report(name, tcp_t, udp_t, res)
    text = "\n".join(out_lines) + "\n"
    Path(a.out).write_text(text)
    print(text)
    return 0


def report(name: str, tcp_t: dict, udp_t: dict, res: dict) -> list[str]:
    runs = [r for r in RUNS if r[0] in res]
    tot = {k: [0, 0, 0] for k, _ in runs}
    den = [0, 0, 0]
    rows = []
    for proto, table in (("tcp", tcp_t), ("udp", udp_t)):
        for port, spec_ in table.items():
            key = (port, proto)
            scores = {k: score(res[k][0], key, spec_) for k, _ in runs}
            if spec_[1]:
                for i in range(3):
                    if scores[runs[0][0]][i] is not None:
                        den[i] += 1
                        for k, _ in runs:
                            tot[k][i] += bool(scores[k][i])
            rows.append((key, spec_, {k: (res[k][0].get(key), scores[k] if spec_[1] else ()) for k, _ in runs}))

    def cell(r, s) -> str:
        if r is None:
            return "–"
        nm, prod, ver, st = r
        marks = "".join("" if x is None else ("✔" if x else "✘") for x in (s or ()))
        return f"{nm or '?'} / {prod or ''} / {ver or ''} ({st}) {marks}"

    title = {"old": "kinds the lab had (z1)", "new": "kinds added after the detectors were frozen (z2, held out)"}[name]
    lines = [f"### {name}: {title}", "",
             f"- ports: {len(rows)} ({len(tcp_t)} TCP, {len(udp_t)} UDP); scored: {den[0]} services, {den[1]} products, "
             f"{den[2]} versions"]
    for k, label in runs:
        t = res[k][1]
        lines.append(f"- {label}: {t:.1f} s wall; services {tot[k][0]}/{den[0]}, products {tot[k][1]}/{den[1]}, "
                     f"versions {tot[k][2]}/{den[2]}")
    if "nmap" in res and res["nmap"][1]:
        for k, label in runs[:2]:
            lines.append(f"- time ratio {k}/nmap: {res[k][1] / res['nmap'][1]:.3f}")
    lines += ["", "| port | lab daemon | " + " | ".join(label for _k, label in runs) + " |",
              "|---|---|" + "---|" * len(runs)]
    for key, spec_, per in rows:
        lines.append(f"| {key[0]}/{key[1]} | {spec_[0]} | " + " | ".join(cell(*per[k]) for k, _ in runs) + " |")
    return lines + [""]


if __name__ == "__main__":
    sys.exit(main())
