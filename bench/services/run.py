"""Benchmark (not a test): `hostprint scan -sV` vs `nmap -sV` on the same lab, in one run.

A lab host runs real Debian daemons on non-standard ports (hostprint/lab/services.py). Both tools
scan the same TCP and UDP ports from the lab's scanner namespace; the report lists per port what
each said, scores service / product / version against what the lab installed (versions from
`dpkg-query -W`), and the wall time of each tool.

    sudo python3 bench/services/run.py [--out bench/services/last_run.md] [--skip-nmap]
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

ADDR = "198.18.0.40"

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


AMAP_DIR = ROOT.parent / "shared" / "datasets" / "amap-5.4"


def hostprint_scan(lab, tcp: str, udp: str, *extra: str) -> tuple[dict, float]:
    t = time.monotonic()
    r = lab.exec(lab.scanner_ns, [sys.executable, "-m", "hostprint", "scan", ADDR, "-sS", "-sU", "-sV", "-n",
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


def nmap_scan(lab, tcp: str, udp: str) -> tuple[dict, float]:
    t = time.monotonic()
    r = lab.exec(lab.scanner_ns, ["nmap", "-n", "-Pn", "-sS", "-sU", "-sV", "-p", f"T:{tcp},U:{udp}", ADDR,
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "bench" / "services" / "last_run.md"))
    ap.add_argument("--skip-nmap", action="store_true")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (lab namespaces)")
    from hostprint.lab import HostSpec, Lab, LabSpec

    services = sorted({f"{k}:{p}" for p, (k, *_r) in TCP.items()} | {f"{k}:{p}" for p, (k, *_r) in UDP.items()})
    tcp = ",".join(map(str, TCP))
    udp = ",".join(map(str, UDP))
    spec = LabSpec(name=f"bsv{os.getpid() % 1000}", hosts=[HostSpec(name="z1", address=ADDR, services=services)])
    with Lab(spec, daemon_timeout=60) as lab:
        time.sleep(1.0)  # let slow starters (squid, cupsd) finish their own initialisation
        hp, hp_t = hostprint_scan(lab, tcp, udp)
        am, am_t = hostprint_scan(lab, tcp, udp, "--sv-db", f"amap={AMAP_DIR}") if AMAP_DIR.is_dir() else ({}, 0.0)
        nm, nm_t = ({}, 0.0) if a.skip_nmap else nmap_scan(lab, tcp, udp)
    rows = []
    tot = {"hostprint": [0, 0, 0], "nmap": [0, 0, 0], "amapdb": [0, 0, 0]}
    den = [0, 0, 0]
    for proto, table in (("tcp", TCP), ("udp", UDP)):
        for port, spec_ in table.items():
            key = (port, proto)
            if not spec_[1]:
                rows.append((key, spec_, hp.get(key), (), nm.get(key), (), am.get(key), ()))
                continue
            sh = score(hp, key, spec_)
            sn = score(nm, key, spec_)
            sa = score(am, key, spec_)
            for i in range(3):
                if sh[i] is not None:
                    den[i] += 1
                    tot["hostprint"][i] += bool(sh[i])
                    tot["nmap"][i] += bool(sn[i])
                    tot["amapdb"][i] += bool(sa[i])
            rows.append((key, spec_, hp.get(key), sh, nm.get(key), sn, am.get(key), sa))

    def cell(r, s) -> str:
        if r is None:
            return "–"
        name, prod, ver, st = r
        marks = "".join("" if x is None else ("✔" if x else "✘") for x in (s or ()))
        return f"{name or '?'} / {prod or ''} / {ver or ''} ({st}) {marks}"

    lines = ["| port | lab daemon | hostprint: service / product / version | nmap -sV | hostprint engine + amap 5.4 DB |",
             "|---|---|---|---|---|"]
    for key, spec_, h, sh, n, sn, m, sa in rows:
        lines.append(f"| {key[0]}/{key[1]} | {spec_[0]} | {cell(h, sh)} | {cell(n, sn)} | {cell(m, sa)} |")
    summary = [
        f"ports: {len(rows)} ({len(TCP)} TCP, {len(UDP)} UDP) on one lab host; scored: {den[0]} services, "
        f"{den[1]} products, {den[2]} versions (the silent listener is timed, not scored)",
        f"hostprint -sS -sU -sV: {hp_t:.1f} s wall; services {tot['hostprint'][0]}/{den[0]}, products "
        f"{tot['hostprint'][1]}/{den[1]}, versions {tot['hostprint'][2]}/{den[2]}",
    ]
    if not a.skip_nmap:
        summary.append(f"nmap -sS -sU -sV (default intensity): {nm_t:.1f} s wall; services {tot['nmap'][0]}/{den[0]}, "
                       f"products {tot['nmap'][1]}/{den[1]}, versions {tot['nmap'][2]}/{den[2]}")
        summary.append(f"time ratio hostprint/nmap: {hp_t / nm_t:.3f}" if nm_t else "")
    if am_t:
        summary.append(f"hostprint -sV --sv-db amap (amap 5.4's files, names only): {am_t:.1f} s wall; services "
                       f"{tot['amapdb'][0]}/{den[0]}, products {tot['amapdb'][1]}/{den[1]}, versions {tot['amapdb'][2]}/{den[2]}")
    text = "\n".join(["## Services run " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "",
                      *[f"- {s}" for s in summary if s], "", *lines, ""])
    Path(a.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
