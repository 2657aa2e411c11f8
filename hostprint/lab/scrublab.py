"""The scrubber's lab (issue 19): four different stacks behind one router that runs `hostprint
scrub`, and the scanner in front of it.

    scanner 198.18.0.1 --- br0 --- rtr eth0 198.18.0.2 | rtr eth1 198.19.0.1 --- br1 ---+
        lx1   198.19.0.11  Linux, kernel defaults: nginx:80, ssh:22
        lx2   198.19.0.12  Linux "old style": TTL 128, no timestamps/SACK/window scaling: nginx:80
        lwip  198.19.0.21  lwIP 2.1 (Debian liblwip) in user space on a tap of lwh (198.19.0.20): port 80
        gv    198.19.0.30  gVisor (runsc) netstack: busybox httpd:80
Port 81 is closed everywhere. Tests and bench/scrub share this recipe.

The scrubber runs as its own process in the router's namespace (`hostprint scrub up`), started
and stopped by PID (`Scrubbed.start()` / `stop()`); a stop is SIGTERM, on which the scrubber removes
its rules itself, then `scrub down` checks that nothing is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from hostprint.lab.lab import Lab
from hostprint.lab.services import helper_env
from hostprint.lab.spec import HostSpec, LabSpec

OLD_STYLE = {"net.ipv4.ip_default_ttl": "128", "net.ipv4.tcp_timestamps": "0", "net.ipv4.tcp_sack": "0",
             "net.ipv4.tcp_window_scaling": "0"}
ROUTER = "rtr"
#: name -> (address, what it is)
HOSTS = {
    "lx1": ("198.19.0.11", "Linux, kernel defaults"),
    "lx2": ("198.19.0.12", "Linux, TTL 128, no timestamps/SACK/window scaling"),
    "lwip": ("198.19.0.21", "lwIP 2.1 (Debian liblwip), user space on a tap"),
    "gv": ("198.19.0.30", "gVisor (runsc) netstack"),
}


@dataclass
class ScrubLab:
    lab: Lab
    hosts: dict[str, str]  # name -> address of the stacks that run here
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why it could not run
    scrubber: subprocess.Popen[str] | None = None
    scrub_args: list[str] = field(default_factory=list)

    def scan(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        """argv in the scanner namespace, output captured as text."""
        return self.lab.exec(self.lab.scanner_ns, argv, capture_output=True, text=True, env=helper_env(), **kw)

    def start_scrubber(self, *extra: str) -> str:
        """`hostprint scrub up` on the router; returns its ready line."""
        assert self.scrubber is None
        argv = [sys.executable, "-m", "hostprint.cli", "scrub", "up", "--outside", "eth0", "--protect",
                "198.19.0.0/16", *extra]
        p = self.lab.spawn(ROUTER, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=helper_env())
        line = p.stdout.readline().strip() if p.stdout else ""
        if not line.startswith("scrub: up"):
            err = p.stderr.read() if p.stderr and p.poll() is not None else ""
            raise RuntimeError(f"scrubber did not start: {line!r} {err.strip()[-400:]}")
        self.scrubber, self.scrub_args = p, list(extra)
        return line

    def stop_scrubber(self) -> str:
        """SIGTERM to the scrubber (by PID); returns its stderr (the queue's counters)."""
        p, self.scrubber = self.scrubber, None
        if p is None:
            return ""
        os.kill(p.pid, signal.SIGTERM)
        try:
            _, err = p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        return err or ""

    def router_rules(self) -> str:
        """Every nft rule and iptables chain in the router (tests: nothing left after a stop)."""
        nft = self.lab.exec(ROUTER, ["nft", "list", "ruleset"], capture_output=True, text=True).stdout
        return nft


def spec(name: str, with_lwip: bool = True, with_gvisor: bool = True) -> LabSpec:
    hosts = [HostSpec(name=ROUTER, address="198.18.0.2", router=True),
             HostSpec(name="lx1", address=HOSTS["lx1"][0], segment=2, services=["nginx:80", "ssh:22"]),
             HostSpec(name="lx2", address=HOSTS["lx2"][0], segment=2, services=["nginx:80"], sysctls=dict(OLD_STYLE))]
    if with_lwip:
        hosts.append(HostSpec(name="lwh", address="198.19.0.20", segment=2,
                              sysctls={"net.ipv4.ip_forward": "1", "net.ipv4.conf.eth0.proxy_arp": "1"}))
    if with_gvisor:
        hosts.append(HostSpec(name="gv", address=HOSTS["gv"][0], segment=2))
    return LabSpec(name=name, hosts=hosts)


@contextmanager
def scrub_lab(name: str = "scl") -> Iterator[ScrubLab]:
    """The lab above, torn down on every exit path (scrubber by PID first, then runsc, then the lab)."""
    from hostprint.lab import gvisor
    from hostprint.lab.stacks import build_lwip, start_lwip

    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="hpt-scl-"))
        gv_missing = gvisor.missing()
        lab = stack.enter_context(Lab(spec(name, with_gvisor=gv_missing is None)))
        sl = ScrubLab(lab, {n: HOSTS[n][0] for n in ("lx1", "lx2")})
        stack.callback(sl.stop_scrubber)
        binary = build_lwip(tmp)
        if binary:
            start_lwip(lab, binary, "lwh", HOSTS["lwip"][0], gateway="198.19.0.20")
            sl.hosts["lwip"] = HOSTS["lwip"][0]
        else:
            sl.skipped["lwip"] = "needs Debian liblwip-dev and a C compiler"
        if gv_missing is None:
            try:
                sb = gvisor.start_gvisor(lab, "gv", tmp, ports=(80,))
                stack.callback(gvisor.stop_gvisor, sb)
                sl.hosts["gv"] = HOSTS["gv"][0]
            except RuntimeError as e:
                sl.skipped["gv"] = f"runsc did not start: {e}"
        else:
            sl.skipped["gv"] = gv_missing
        yield sl


# ---------------------------------------------------------------------------------- measuring
# Every method's view of every host, in the same words, so "which methods still tell the hosts
# apart" is a count of distinct views (tests/test_scrub_lab.py and bench/scrub/compare.py).

def _json_lines(text: str) -> list[dict[str, Any]]:
    import json

    return [json.loads(ln) for ln in text.splitlines() if ln.strip().startswith("{")]


def hostprint_stack(sl: ScrubLab, addrs: list[str]) -> dict[str, dict[str, Any]]:
    """hostprint -O (its own classes, nmap-os-db and p0f.fp): per address the best class or
    "unknown", the architecture findings and the nmap-notation fingerprint (without T=, which is
    the hop count)."""
    import re

    r = sl.scan([sys.executable, "-m", "hostprint.cli", "scan", "-sS", "-O", "--os-db", "hostprint", "-p", "80,81",
                 "-Pn", "-n", "--no-db", "--progress", "never", "-oJ", "-", *addrs], timeout=600)
    out = {}
    for h in _json_lines(r.stdout):
        st = h.get("os", {}).get("stack", {})
        ours = [m for m in st.get("matches", []) if m.get("db") == "hostprint"]
        verdict = h.get("os", {}).get("matches") or []
        fp = re.sub(r"%T=[0-9A-F]+", "", st.get("fingerprint", ""))
        out[h["address"]] = {
            "class": ours[0]["name"] if ours else f"unknown (nearest {(st.get('unknown') or {}).get('nearest')})",
            "accuracy": ours[0].get("accuracy") if ours else None,
            "verdict": verdict[0]["name"] if verdict else "unknown",
            "architecture": [a["kind"] + ": " + a["detail"] for a in h.get("os", {}).get("architecture", [])],
            "fingerprint": fp,
            "view": ours[0]["name"] if ours else "unknown",
        }
    return out


def nmap_os(sl: ScrubLab, addrs: list[str]) -> dict[str, dict[str, Any]]:
    """nmap -O --osscan-guess -d: per address its answer and its fingerprint. The view is the
    fingerprint without what changes from probe to probe on one stack or names the target: the SCAN
    line, T= (hop count), SP/ISR (ISN rate estimates of a random generator), a GCD of 1-6 (six random
    ISNs are all even one time in 64: nmap-os-db writes GCD=1-6 for random generators) and a hex RID
    (the IP ID of a quoted probe, random once the scrubber rewrites IDs)."""
    import re

    r = sl.scan(["nmap", "-O", "--osscan-guess", "-n", "-Pn", "-d", "-p", "80,81", *addrs], timeout=900)
    out = {}
    for part in re.split(r"^Nmap scan report for ", r.stdout, flags=re.M)[1:]:
        addr = part.split()[0]
        m = re.search(r"^(OS details|Aggressive OS guesses|No exact OS matches)[^\n]*", part, re.M)
        fp_lines: list[str] = []
        lines = part.splitlines()
        for i, ln in enumerate(lines):  # "TCP/IP fingerprint:" then OS:-prefixed or plain test lines
            if ln.startswith("TCP/IP fingerprint:"):
                for nxt in lines[i + 1:]:
                    if not nxt.strip():
                        break
                    fp_lines.append(nxt[3:] if nxt.startswith("OS:") else nxt)
                break
        fp = "".join(fp_lines)
        fp = re.sub(r"SCAN\([^)]*\)", "", fp)
        fp = re.sub(r"%T=[0-9A-F]+|%RID=[0-9A-F]+|SP=[0-9A-F]+%|%ISR=[0-9A-F]+", "", fp)
        fp = re.sub(r"GCD=[1-6](?=[%)])", "GCD=1-6", fp)  # nmap-os-db's own range for random ISNs
        out[addr] = {"answer": m.group(0) if m else "no answer", "fingerprint": fp,
                     "view": fp or (m.group(0) if m else "")}
    return out


def capture_replies(sl: ScrubLab, addrs: list[str], pcap: str) -> None:
    """Two HTTP requests to each host (curl) while tcpdump writes the scanner's traffic to `pcap`."""
    import time

    td = sl.lab.spawn(sl.lab.scanner_ns, ["tcpdump", "-i", "eth0", "--immediate-mode", "-U", "-s", "256", "-w", pcap, "tcp"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    for a in addrs:
        for _ in range(2):
            sl.scan(["curl", "-s", "-m", "5", "-o", "/dev/null", f"http://{a}/"])
    time.sleep(0.5)
    os.kill(td.pid, signal.SIGTERM)
    td.wait(timeout=10)


def p0f_view(sl: ScrubLab, pcap: str) -> dict[str, dict[str, Any]]:
    """p0f -r on the capture: per server address its label and raw SYN+ACK signature."""
    import re

    log = pcap + ".p0f.log"
    if os.path.exists(log):
        os.unlink(log)
    subprocess.run(["p0f", "-r", pcap, "-o", log], capture_output=True, text=True, timeout=120)
    out: dict[str, dict[str, Any]] = {}
    with open(log) as f:
        for ln in f:
            if "mod=syn+ack" not in ln:
                continue
            srv = re.search(r"srv=([0-9.]+)/", ln)
            osm = re.search(r"\|os=([^|]*)", ln)
            raw = re.search(r"raw_sig=([^|\n]*)", ln)
            if srv:
                out[srv.group(1)] = {"label": osm.group(1) if osm else "?", "raw_sig": raw.group(1) if raw else "",
                                     "view": (osm.group(1) if osm else "?") + " " + (raw.group(1) if raw else "")}
    return out


def hostprint_passive(sl: ScrubLab, pcap: str) -> dict[str, dict[str, Any]]:
    """hostprint passive -r on the capture: per server its best class and SYN+ACK signature."""
    r = subprocess.run([sys.executable, "-m", "hostprint.cli", "passive", "-r", pcap, "--no-db", "-oJ", "-"],
                       capture_output=True, text=True, timeout=120, env=helper_env())
    out: dict[str, dict[str, Any]] = {}
    sigs: dict[str, str] = {}
    for d in _json_lines(r.stdout):
        if d.get("type") == "host":
            ms = d.get("os", {}).get("passive", {}).get("matches") or []
            out[d["address"]] = {"label": ms[0]["name"] if ms else "unknown"}
        elif "syn" in str(d.get("type", "")) and "ack" in str(d.get("type", "")):
            sigs.setdefault(str(d.get("src") or d.get("address") or ""), str(d.get("raw_sig") or d.get("signature") or ""))
    for a, v in out.items():
        v["raw_sig"] = sigs.get(a, "")
        v["view"] = v["label"] + " " + v["raw_sig"]
    return out


def hostprint_timing(sl: ScrubLab, addrs: list[str], tests: str = "s", timeout: float = 40.0) -> dict[str, dict[str, Any]]:
    """--cron-os: per address the retransmission schedule (rounded to 0.5 s), the final RST and the class."""
    r = sl.scan([sys.executable, "-m", "hostprint.cli", "scan", "-sS", "-Pn", "-n", "-p", "80", "--cron-os", tests,
                 "--cron-timeout", str(timeout), "--no-db", "--progress", "never", "-oJ", "-", *addrs], timeout=900)
    out = {}
    for h in _json_lines(r.stdout):
        tb = h.get("os", {}).get("timing", {})
        sched = []
        for t in tb.get("tests", []):
            arr = [round(x * 2) / 2 for x in t.get("arrivals", [])]
            sched.append(f"{t.get('test')}: {arr}" + (f" RST {round(t['rst'] * 2) / 2}" if t.get("rst") is not None else ""))
        ms = tb.get("matches") or []
        out[h["address"]] = {"outcome": tb.get("outcome"), "class": ms[0]["name"] if ms else tb.get("outcome"),
                             "schedule": "; ".join(sched), "view": "; ".join(sched)}
    return out


def distinct(views: dict[str, dict[str, Any]], hosts: list[str]) -> int:
    """How many different views the method has of `hosts` (1 = it cannot tell them apart; a host
    it saw nothing of counts as the view "nothing")."""
    return len({str((views.get(a) or {}).get("view", "nothing")) for a in hosts})


def measure(sl: ScrubLab, tmp: str, tag: str, timing: bool = False, timing_tests: str = "s",
            timing_only: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """Every method's views of every host of the lab, as now (with or without the scrubber)."""
    addrs = list(sl.hosts.values())
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if timing_only:
        out[f"hostprint --cron-os {timing_tests}"] = hostprint_timing(sl, addrs, timing_tests)
        return out
    out["nmap -O"] = nmap_os(sl, addrs)
    out["hostprint -O"] = hostprint_stack(sl, addrs)
    pcap = os.path.join(tmp, f"{tag}.pcap")
    capture_replies(sl, addrs, pcap)
    out["p0f"] = p0f_view(sl, pcap)
    out["hostprint passive"] = hostprint_passive(sl, pcap)
    if timing:
        out[f"hostprint --cron-os {timing_tests}"] = hostprint_timing(sl, addrs, timing_tests)
    return out


# ---------------------------------------------------------------------------------- sessions
SSH_PORT = 2222


def start_login_sshd(sl: ScrubLab, tmp: str, host: str = "lx1") -> str:
    """A second sshd on `host` (port 2222) that lets root in with a key made here (the lab's own sshd
    takes no logins); returns the client key's path."""
    key, hkey = os.path.join(tmp, "client_key"), os.path.join(tmp, "host_key")
    for k in (key, hkey):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hostprint-scrublab", "-f", k],
                       check=True, capture_output=True)
    auth = os.path.join(tmp, "authorized_keys")
    with open(key + ".pub") as f, open(auth, "w") as g:
        g.write(f.read())
    conf = os.path.join(tmp, "sshd_login_config")
    with open(conf, "w") as f:
        f.write("\n".join([f"Port {SSH_PORT}", "ListenAddress 0.0.0.0", f"HostKey {hkey}", "PidFile none", "UsePAM no",
                           "PermitRootLogin prohibit-password", "PasswordAuthentication no",
                           "KbdInteractiveAuthentication no", f"AuthorizedKeysFile {auth}", "StrictModes no",
                           "LogLevel ERROR", ""]))
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    sl.lab.spawn(host, ["/usr/sbin/sshd", "-D", "-e", "-f", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return key


def ssh_session(sl: ScrubLab, key: str, addr: str, payload: bytes) -> subprocess.CompletedProcess[bytes]:
    """Log in, send `payload` through the session and read back its SHA-256 computed on the host."""
    return sl.lab.exec(sl.lab.scanner_ns,
                       ["ssh", "-i", key, "-p", str(SSH_PORT), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                        "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
                        f"root@{addr}", "sha256sum"], input=payload, capture_output=True, timeout=60)


def http_status(sl: ScrubLab, addr: str) -> str:
    """curl's status code for GET / (000: no HTTP answer)."""
    return sl.scan(["curl", "-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", f"http://{addr}/"]).stdout.strip()


_BURST = r"""
import asyncio, sys, time
host, n, par = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok = fail = 0
async def one():
    global ok, fail
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, 80), 5)
        w.write(b"HEAD / HTTP/1.0\r\nHost: x\r\n\r\n"); await w.drain()
        data = await asyncio.wait_for(r.read(200), 5)
        w.close()
        ok += data.startswith(b"HTTP/")
    except Exception:
        fail += 1
async def main():
    sem = asyncio.Semaphore(par)
    async def lim():
        async with sem:
            await one()
    t = time.monotonic()
    await asyncio.gather(*(lim() for _ in range(n)))
    print(ok, fail, time.monotonic() - t)
asyncio.run(main())
"""


def connection_burst(sl: ScrubLab, addr: str, n: int, parallel: int = 64) -> tuple[int, int, float]:
    """n HTTP HEAD requests to addr:80 from the scanner, `parallel` at a time, each on a connection of
    its own: (answered, failed, seconds). Thousands of them reuse the client's source ports."""
    r = sl.scan([sys.executable, "-c", _BURST, addr, str(n), str(parallel)], timeout=600)
    ok, fail, dt = r.stdout.split()
    return int(ok), int(fail), float(dt)
