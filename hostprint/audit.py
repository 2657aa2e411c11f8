"""`hostprint audit`: what an attacker learns about hosts you own, per method, what to change, and
(--apply on a lab network namespace) the same measurement again after the change (issue 19).

Measuring. One `hostprint scan -sS -sV -O --os-db hostprint,p0f --sequence` run (plus `--cron-os s` with --timing), as a
subprocess so the audit sees exactly what a scan shows; its JSON lines are read back into
`model.HostResult`.

Scoring: bits of information about the OS over a uniform prior on the method's class DB. A method
that names class c with confidence p while k classes of its DB fit as well (within 0.02) yields
p * log2(N / k) bits, N being the DB's classes that name an OS (relays and scrubbers excluded:
naming the scrubber tells nothing about the host). Why bits rather than the best class's confidence:
a confident "Linux 2.6 - 6.x" tells less than a confident "lwIP 2.1", and the confidence alone
cannot show that; bits also add up across methods in the reader's head. A banner that names the
distribution release pins the OS beyond every stack class: it counts log2(N) (the whole prior).
The overall score is the most any one method yields (an attacker keeps the best one).
Version leaks, IP ID/ISN predictability and uptime are exposures: listed, counted, not bits.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from hostprint.errors import UsageError
from hostprint.model import AuditReport, Countermeasure, HostResult, MethodScore, OsMatch

KNOWLEDGE = Path(__file__).parent / "signatures" / "knowledge" / "countermeasures.txt"
PACKAGED = Path(__file__).parent / "signatures" / "knowledge" / "packaged.txt"
TIE = 0.02
#: nmap's ISN difficulty words below "Good luck!" (nmap's osscan2.cc seqidx2difficultystr)
PREDICTABLE_ISN = ("Trivial joke", "Easy", "Medium", "Formidable", "Worthy challenge")
#: nmap-style IP ID classes that count up (idle scan, traffic counting)
INCREMENTAL_IPID = {"I", "BI", "RI", "Incremental", "Broken little-endian incremental", "Random positive increments"}


# ---------------------------------------------------------------------------------- knowledge
@dataclass(frozen=True)
class DaemonEdit:
    """How `--apply` changes one daemon's configuration (countermeasures.txt's Program/Config/
    Insert/Line/Check lines): one line inserted, checked by the daemon itself, SIGHUP to reload."""

    program: str
    config_flag: str
    insert: str  # "top" or "after REGEX"
    line: str
    check: tuple[str, ...]


@dataclass(frozen=True)
class Measure:
    name: str
    when: tuple[str, ...]
    kind: str
    setting: str
    hides: str
    cost: str
    sources: tuple[str, ...]
    edit: DaemonEdit | None = None


@lru_cache(maxsize=1)
def countermeasures() -> list[Measure]:
    from hostprint.signatures.records import load_records

    out = []
    edit_keys = ("Program", "Config", "Insert", "Line", "Check")
    for r in load_records(KNOWLEDGE, frozenset({"Countermeasure"}),
                          frozenset({"When", "Kind", "Setting", "Hides", "Cost", *edit_keys})):
        kind, setting, hides, cost = r.one("Kind"), r.one("Setting"), r.one("Hides"), r.one("Cost")
        if not (r.all("When") and kind and setting and hides and cost):
            raise UsageError(f"{r.where}: Countermeasure {r.name!r} needs When, Kind, Setting, Hides and Cost lines")
        if kind not in ("sysctl", "scrubber", "daemon"):
            raise UsageError(f"{r.where}: Kind {kind!r}: sysctl, scrubber or daemon")
        if kind == "sysctl" and not re.fullmatch(r"net\.[a-z0-9_.]+=[0-9 ]+", setting):
            raise UsageError(f"{r.where}: sysctl Setting must be net.KEY=NUMBER, not {setting!r}")
        got = [r.one(k) for k in edit_keys]
        edit = None
        if any(got):
            program, flag, insert, line, check = got
            if not (program and flag and insert and line and check) or kind != "daemon":
                raise UsageError(f"{r.where}: {', '.join(edit_keys)} go together, on a daemon entry")
            if insert != "top":
                how, _, rx = insert.partition(" ")
                try:
                    re.compile(rx)
                except re.error as e:
                    raise UsageError(f"{r.where}: Insert {insert!r}: {e}") from None
                if how != "after" or not rx:
                    raise UsageError(f"{r.where}: Insert must be 'top' or 'after REGEX', not {insert!r}")
            edit = DaemonEdit(program, flag, insert, line, tuple(check.split()))
        out.append(Measure(r.name, tuple(r.all("When")), kind, setting, hides, cost, tuple(r.sources), edit))
    return out


@dataclass(frozen=True)
class Packaged:
    """One distribution release's upstream version of a product (knowledge/packaged.txt)."""

    name: str
    product: str  # regular expression on -sV's product
    release: str
    version: str


@lru_cache(maxsize=1)
def packaged() -> list[Packaged]:
    from hostprint.signatures.records import load_records

    out = []
    for r in load_records(PACKAGED, frozenset({"Packaged"}), frozenset({"Product", "Release", "Version"})):
        product, release, version = r.one("Product"), r.one("Release"), r.one("Version")
        if not (product and release and version and r.sources):
            raise UsageError(f"{r.where}: Packaged {r.name!r} needs Product, Release, Version and Source lines")
        try:
            re.compile(product)
        except re.error as e:
            raise UsageError(f"{r.where}: Product {product!r}: {e}") from None
        out.append(Packaged(r.name, product, release, version))
    return out


@lru_cache(maxsize=1)
def stack_classes() -> int:
    """Classes of hostprint's stack DB that name an OS (not a relay or a scrubber)."""
    from hostprint.signatures import stack_db
    from hostprint.signatures.knowledge import relays

    rel = relays()
    return sum(1 for p in stack_db.load().prints if not any(c.family in rel for c in p.classes))


@lru_cache(maxsize=1)
def timing_classes() -> int:
    from hostprint.signatures.timing_db import resolve_timing_db

    return len(resolve_timing_db("hostprint").classes)


# ---------------------------------------------------------------------------------- scoring
def _is_relay(m: OsMatch) -> bool:
    from hostprint.signatures.knowledge import relays

    return (m.family or "") in relays()


def _class_bits(matches: list[OsMatch], n: int) -> tuple[float, str, list[str]]:
    """(bits, what the method names, details) for a ranked list of class matches."""
    if not matches:
        return 0.0, "no OS class", []
    best = matches[0]
    if _is_relay(best):
        return 0.0, f"only what is in front: {best.name} ({best.confidence:.0%})", []
    k = sum(1 for m in matches if m.confidence >= best.confidence - TIE and not _is_relay(m))
    bits = best.confidence * math.log2(max(n, 1) / max(k, 1))
    ties = [m.name for m in matches[1:] if m.confidence >= best.confidence - TIE]
    return max(bits, 0.0), f"{best.name} ({best.confidence:.0%})" + (f", as likely: {', '.join(ties)}" if ties else ""), []


def _stack(h: HostResult) -> MethodScore:
    n = stack_classes()
    st = h.os.stack
    ours = [m for m in (st.matches if st else []) if (m.db or "hostprint").startswith("hostprint")]
    bits, learns, details = _class_bits(ours, n)
    facts: list[str] = []
    if st is None:
        return MethodScore("stack (-O)", "not measured", 0.0, math.log2(n))
    if st.unknown is not None and not ours:
        learns = f"unknown (nearest {st.unknown.nearest})"
    if bits > 0:
        facts.append("stack-os")
    o1 = st.tests.get("OPS", {}).get("O1", "")
    for letter, fact in (("T", "option-timestamp"), ("W", "option-window-scale"), ("S", "option-sack")):
        if letter in re.sub(r"[0-9A-F]", "", o1.replace("M", "")) or (letter == "T" and "T1" in o1):
            facts.append(fact)
    if st.tests.get("ECN", {}).get("CC") == "Y":
        facts.append("ecn")
    tg = st.tests.get("T1", {}).get("TG") or st.tests.get("ECN", {}).get("TG")
    if tg:
        try:
            facts.append(f"ttl-{int(tg, 16)}")
        except ValueError:
            pass
    details = [a.kind + ": " + a.detail for a in h.os.architecture]
    return MethodScore("stack (-O)", learns, bits, math.log2(n), facts, details)


@lru_cache(maxsize=1)
def p0f_labels() -> int:
    """Distinct OS labels (name + flavour) of the installed p0f.fp's SYN+ACK section (0: none)."""
    from hostprint.signatures.p0f import default_path, load_p0f

    path = default_path()
    if not path:
        return 0
    return len({(e.label.name, e.label.flavor) for e in load_p0f(path).synack})


def _p0f(h: HostResult) -> MethodScore | None:
    """p0f's SYN+ACK signatures applied to -O's answers (what a passive observer of the replies gets)."""
    st = h.os.stack
    n = p0f_labels()
    if st is None or not n:
        return None
    ms = [m for m in st.matches if m.db == "p0f"]
    bits, learns, _ = _class_bits(ms, n)
    raw = st.data.get("p0f_raw")
    sigs = sorted({str(v) for v in raw.values()}) if isinstance(raw, dict) else []
    if not ms:
        learns = "no p0f.fp label"
    return MethodScore("passive (p0f.fp)", learns, bits, math.log2(n), [], [f"raw_sig {x}" for x in sigs[:3]])


def _timing(h: HostResult) -> MethodScore | None:
    tb = h.os.timing
    if tb is None:
        return None
    n = timing_classes()
    bits, learns, _ = _class_bits(tb.matches, n)
    if not tb.matches:
        learns = tb.outcome or "no schedule"
    return MethodScore("timing (--cron-os)", learns, bits, math.log2(n), ["timing-os"] if bits > 0 else [])


def _handshakes(h: HostResult) -> tuple[MethodScore | None, list[str]]:
    """What the TLS and SSH handshakes of -sV tell (SshFacts, TlsFacts), whatever the banners say.

    OS bits: the SSH KEXINIT lists give the product's version range (signatures/version_ranges.txt,
    read here without the banner's version, so the answer stands when DebianBanner/server_tokens hide
    it); the distribution releases of knowledge/packaged.txt whose packaged version lies outside the
    range are ruled out. Bits = log2(N / k) over those N releases, k left (uniform prior, as for the
    other methods). A range no release ships (a source build, a backport) rules nothing out.
    Identifiers (host keys, certificates) say nothing about the OS but name the *host*: the same key
    on another address, an IPv6 address or after renumbering is this machine. They are exposures.
    """
    from hostprint.match.versionrange import contains, infer
    from hostprint.probes.behaviour import ssh_observation

    ports = [p for p in h.ports if p.state == "open" and p.service is not None and (p.service.ssh or p.service.tls)]
    if not ports:
        return None, []
    pk = packaged()
    releases = {x.release for x in pk}
    left = set(releases)
    learns: list[str] = []
    details: list[str] = []
    exposures: list[str] = []
    facts: list[str] = []
    for p in ports:
        s = p.service
        assert s is not None
        where = f"{p.port}/{p.protocol}"
        if s.ssh is not None and s.ssh.kex:
            obs = ssh_observation(s.ssh.to_dict())
            vr = infer(s.product, {"ssh-kexinit": obs}, None) if obs else None
            if vr is not None and (vr.low or vr.high) and not vr.conflict:
                ships = [x for x in pk if s.product and re.search(x.product, s.product)]
                fit = {x.release for x in ships if contains(vr, x.version)}
                if fit:
                    left -= {x.release for x in ships} - fit
                    learns.append(f"{vr.product} {vr.text} from the KEXINIT ({where})")
                elif ships:
                    learns.append(f"{vr.product} {vr.text} from the KEXINIT ({where}): no release in the DB ships it")
                facts.append(f"kex-range:{vr.product}")
            if s.ssh.hassh:
                details.append(f"{where} HASSH {s.ssh.hassh}")
            for k in s.ssh.host_keys:
                if k.sha256:
                    exposures.append(f"identifier: {where} ssh host key {k.type} {k.sha256} (the same key on any "
                                     "other address is this host)")
        if s.tls is not None and not s.tls.error:
            t = s.tls
            if t.ja3s:
                details.append(f"{where} JA3S {t.ja3s}" + (f" ({t.ja3s_string})" if t.ja3s_string else ""))
            if t.jarm and t.jarm.strip("0"):
                details.append(f"{where} JARM {t.jarm}")
            if t.cert is not None and t.cert.sha256:
                names = [x for x in ([t.cert.subject] if t.cert.subject else []) + t.cert.sans if x]
                exposures.append(f"identifier: {where} TLS certificate SHA256 {t.cert.sha256[:16]}…"
                                 + (f" naming {', '.join(dict.fromkeys(names))}" if names else ""))
    n = len(releases)
    bits = math.log2(n / len(left)) if n and left and len(left) < n else 0.0
    if bits > 0:
        facts.append("handshake-os")
        learns.append("leaves " + ", ".join(sorted(left)))
    ids = sum(1 for e in exposures if e.startswith("identifier:"))
    text = "; ".join(learns) or "no version range from the handshakes"
    if ids:
        text += f"; {ids} identifier{'s' if ids > 1 else ''} of the host"
    return MethodScore("tls/ssh (handshakes)", text, bits, math.log2(n) if n else 0.0, facts, details), exposures


def _banners(h: HostResult) -> tuple[MethodScore, list[str]]:
    """OS hints from banners (scored) and version leaks (exposures)."""
    n = stack_classes()
    facts: list[str] = []
    leaks: list[str] = []
    for p in h.ports:
        s = p.service
        if p.state != "open" or s is None or not s.product:
            continue
        if s.version:
            leaks.append(f"{p.port}/{p.protocol} {s.product} {s.version}")
            facts.append(f"banner:{s.product}")
    hints = h.os.hints
    learns = "; ".join(f"{x.distribution or x.family} {x.release or ''}".strip() + f" from {x.source or 'a banner'}"
                       for x in hints) or "no OS from banners"
    bits = math.log2(n) if any(x.release for x in hints) else (1.0 if hints else 0.0)
    # A bare version (DebianBanner no leaves "OpenSSH_9.2p1") still names the releases that ship it:
    # scored like the handshake method, over knowledge/packaged.txt's releases; several products
    # narrow it together (OpenSSH 8.2p1 and nginx 1.18.0: only Ubuntu 20.04 ships both).
    pk = packaged()
    releases = {x.release for x in pk}
    left = set(releases)
    named = []
    for p in h.ports:
        s = p.service
        if p.state != "open" or s is None or not s.product or not s.version:
            continue
        listed = {x.release for x in pk if re.search(x.product, s.product)}
        ships = {x.release for x in pk if re.search(x.product, s.product) and x.version == s.version}
        if ships:
            left -= listed - ships
            named.append(f"{s.product} {s.version} ({p.port}/{p.protocol})")
            facts.append(f"version-release:{s.product}")
    if named and left and len(left) < len(releases):
        b = math.log2(len(releases) / len(left))
        if b > bits:
            bits = b
            learns = f"{' and '.join(named)}: what {', '.join(sorted(left))} ship" + (f"; {learns}" if hints else "")
    for x in hints:
        src = (x.source or "").split()
        for p in h.ports:
            if p.service and p.service.product and src and src[0] == f"{p.port}/{p.protocol}":
                facts.append(f"distro:{p.service.product}")
    return MethodScore("banners (-sV)", learns, bits, math.log2(n), facts), leaks


def _sequence(h: HostResult) -> tuple[list[str], list[str]]:
    """(exposures, facts) from --sequence."""
    seq = h.sequence or {}
    out, facts = [], []
    ipid = seq.get("ip_id") or {}
    cls = str(ipid.get("class") or "")
    words = str((seq.get("ipidsequence") or {}).get("class") or cls)
    if cls in INCREMENTAL_IPID or words in INCREMENTAL_IPID:
        out.append(f"IP ID {words}: usable as an idle-scan zombie, traffic can be counted")
        facts.append("ipid-incremental")
    diff = str((seq.get("tcpsequence") or {}).get("difficulty") or "")
    if diff in PREDICTABLE_ISN:
        out.append(f"TCP ISN predictable ({diff}): blind spoofing of connections")
        facts.append("isn-predictable")
    ts = seq.get("tcp_ts") or {}
    if ts.get("hz") and "per-connection" not in str(ts.get("clock") or ""):
        out.append(f"TCP timestamps on one {ts.get('hz')} Hz clock: uptime and reboots can be read")
        facts.append("uptime")
    return out, facts


#: names the port table gives ports that serve the same protocol (http on 8080 is expected)
_SAME = {"http": {"http", "http-alt", "http-proxy", "webcache"}, "https": {"https", "https-alt", "ssl/http"}}


def unexpected_ports(h: HostResult) -> list[str]:
    """Open ports whose identified service is not what the port table names there (ssh on 2222):
    moving a service hides it from port-table guessing, not from -sV."""
    from hostprint.services import service_name

    out = []
    for p in h.ports:
        s = p.service
        if p.state != "open" or s is None or not s.name or s.method == "port-table":
            continue
        table = service_name(p.port, p.protocol)
        if table != s.name and (table or "") not in _SAME.get(s.name, set()):
            out.append(f"{s.name} on {p.port}/{p.protocol} (the port table says {table or 'nothing'}): found by -sV anyway")
    return out


def score(h: HostResult) -> tuple[list[MethodScore], list[str]]:
    """Per-method scores and the exposures of one measured host."""
    methods = [_stack(h)]
    p = _p0f(h)
    if p:
        methods.append(p)
    t = _timing(h)
    if t:
        methods.append(t)
    hs, hs_exp = _handshakes(h)
    if hs:
        methods.append(hs)
    ban, leaks = _banners(h)
    methods.append(ban)
    seq_exp, seq_facts = _sequence(h)
    exposures = [f"version leak: {x}" for x in leaks] + seq_exp + [f"service moved: {x}" for x in unexpected_ports(h)]
    exposures += [f"in front of it: {a.kind}: {a.detail}" for a in h.os.architecture] + hs_exp
    if h.sequence:
        methods.append(MethodScore("sequence (--sequence)", "; ".join(f.split(":")[0] for f in seq_exp) or "nothing predictable",
                                   0.0, 0.0, seq_facts))
    return methods, exposures


def recommend(methods: list[MethodScore]) -> list[Countermeasure]:
    facts = {f for m in methods for f in m.facts}
    out = []
    for c in countermeasures():
        because = [w for w in c.when if w in facts]
        if because:
            out.append(Countermeasure(c.name, c.kind, c.setting, c.hides, c.cost, because, list(c.sources)))
    return out


# ---------------------------------------------------------------------------------- measuring
def measure(targets: list[str], ports: str, timing: bool, timing_timeout: float = 40.0) -> dict[str, HostResult]:
    """One scan of every method; host results by address."""
    from hostprint.report.inventory import host_from_dict

    with tempfile.TemporaryDirectory(prefix="hostprint-audit-") as tmp:
        out = os.path.join(tmp, "scan.jsonl")
        dbs = "hostprint,p0f" if p0f_labels() else "hostprint"
        argv = [sys.executable, "-m", "hostprint.cli", "scan", "-sS", "-sV", "-O", "--os-db", dbs, "--sequence", "-Pn",
                "-n", "-p", ports, "--no-db", "--progress", "never", "-oJ", out]
        if timing:
            argv += ["--cron-os", "s", "--cron-timeout", str(timing_timeout)]
        r = subprocess.run([*argv, *targets], capture_output=True, text=True, timeout=1800, check=False)
        if r.returncode != 0:
            raise UsageError(f"the audit's scan failed: {(r.stderr.strip().splitlines() or ['exit %d' % r.returncode])[-1]}")
        import json

        hosts = {}
        with open(out) as f:
            for line in f:
                if line.strip():
                    d = json.loads(line)
                    if d.get("address"):
                        hosts[str(d["address"])] = host_from_dict(d)
        return hosts


# ---------------------------------------------------------------------------------- applying
def check_netns(name: str) -> None:
    """--apply only in a named network namespace that is not this machine's own network."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise UsageError(f"--apply {name!r}: not a network namespace name")
    path = f"/run/netns/{name}"
    if not os.path.exists(path):
        raise UsageError(f"--apply {name}: no such network namespace (ip netns list); --apply changes lab namespaces only")
    try:
        if os.stat(path).st_ino == os.stat("/proc/1/ns/net").st_ino:
            raise UsageError(f"--apply {name}: that is the host's own network namespace; --apply changes lab namespaces only")
    except OSError:
        pass


class Applied:
    """Countermeasures applied in one namespace, undone by `undo()` (sysctls back to their old
    values, the scrubber stopped by its PID, daemon configuration files back to their old content
    and the daemon reloaded)."""

    def __init__(self, netns: str):
        self.netns = netns
        self.old: list[tuple[str, str]] = []
        self.scrubber: subprocess.Popen[str] | None = None
        #: daemon configurations changed: (pid, exe, edit, file, old content)
        self.files: list[tuple[int, str, DaemonEdit, str, str]] = []

    def _ns(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.netns, *argv], capture_output=True, text=True, check=False, timeout=30)

    def apply(self, c: Countermeasure) -> str:
        if c.kind == "sysctl":
            key, _, value = c.setting.partition("=")
            old = self._ns(["sysctl", "-n", key])
            if old.returncode != 0:
                return f"not applied: {key} not readable in {self.netns}"
            r = self._ns(["sysctl", "-q", "-w", c.setting])
            if r.returncode != 0:
                return f"not applied: {r.stderr.strip()}"
            self.old.append((key, old.stdout.strip()))
            return f"applied in {self.netns} (was {old.stdout.strip()})"
        if c.kind == "scrubber":
            if self.scrubber is not None:
                return "already running"
            p = subprocess.Popen(["ip", "netns", "exec", self.netns, sys.executable, "-m", "hostprint.cli", "scrub", "up",
                                  *c.setting.split()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)
            line = p.stdout.readline().strip() if p.stdout else ""
            if not line.startswith("scrub: up"):
                p.kill()
                err = p.communicate()[1]
                return f"not applied: {(err.strip().splitlines() or [line or 'scrubber did not start'])[-1]}"
            self.scrubber = p
            return f"scrubber running in {self.netns} (process {p.pid})"
        edit = next((m.edit for m in countermeasures() if m.name == c.name), None)
        if edit is None:
            return "not applied: a daemon setting (change the configuration by hand)"
        return self._edit(edit)

    # ---- daemon settings
    def _masters(self, program: str) -> list[int]:
        """PIDs of `program`'s master processes in the namespace (its parent is another program)."""
        ino = os.stat(f"/run/netns/{self.netns}").st_ino
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                if os.stat(f"/proc/{d}/ns/net").st_ino != ino:
                    continue
                with open(f"/proc/{d}/comm") as f:
                    if f.read().strip() != program:
                        continue
                with open(f"/proc/{d}/status") as f:
                    ppid = next(ln.split()[1] for ln in f if ln.startswith("PPid:"))
                with open(f"/proc/{ppid}/comm") as f:
                    if f.read().strip() == program:
                        continue
            except (OSError, StopIteration):
                continue
            out.append(int(d))
        return sorted(out)

    def _listening(self, pid: int) -> bool:
        r = self._ns(["ss", "-Hltnp"])
        return f"pid={pid}," in r.stdout

    def _reload(self, pid: int, exe: str, edit: DaemonEdit, conf: str) -> str | None:
        """The daemon's own check of `conf`, then SIGHUP and a wait (at most 10 s) until it listens
        again; None when done, else why not."""
        argv = [exe, *(a.replace("{config}", conf).replace("{dir}", os.path.dirname(conf)) for a in edit.check)]
        r = self._ns(argv)
        if r.returncode != 0:
            return f"{' '.join(argv[:2])} … rejects it: {(r.stderr.strip().splitlines() or ['exit %d' % r.returncode])[-1]}"
        os.kill(pid, signal.SIGHUP)
        import time

        deadline = time.monotonic() + 10
        time.sleep(0.2)
        while not self._listening(pid):
            if time.monotonic() > deadline:
                return f"{edit.program} ({pid}) did not listen again within 10 s of SIGHUP"
            time.sleep(0.1)
        return None

    def _edit(self, edit: DaemonEdit) -> str:
        """Insert the countermeasure's line into the configuration file the daemon's master in the
        namespace was started with (-f/-c on its command line, never a file under /etc: that is the
        system's), check it with the daemon itself, reload with SIGHUP. `undo()` puts the file back."""
        masters = self._masters(edit.program)
        if not masters:
            return f"not applied: no {edit.program} master process in {self.netns}"
        done = []
        for pid in masters:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    # nginx rewrites its title into one string: split it again on whitespace
                    argv = f.read().replace(b"\0", b" ").decode(errors="replace").split()
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError as e:
                return f"not applied: {edit.program} ({pid}): {e.strerror or e}"
            conf = argv[argv.index(edit.config_flag) + 1] if edit.config_flag in argv[:-1] else ""
            if not conf.startswith("/") or conf.startswith("/etc/") or os.path.realpath(conf).startswith("/etc/"):
                return (f"not applied: {edit.program} ({pid}) reads {conf or 'the system configuration'}; --apply edits "
                        f"only a file named by {edit.config_flag} outside /etc")
            try:
                old = Path(conf).read_text()
            except (OSError, UnicodeDecodeError) as e:
                return f"not applied: {conf}: {e}"
            lines = old.splitlines(keepends=True)
            if edit.insert == "top":
                at = 0
            else:
                rx = re.compile(edit.insert.partition(" ")[2])
                at = next((i + 1 for i, ln in enumerate(lines) if rx.search(ln)), -1)
                if at < 0:
                    return f"not applied: no line of {conf} matches {edit.insert}"
            lines.insert(at, edit.line + "\n")
            Path(conf).write_text("".join(lines))
            self.files.append((pid, exe, edit, conf, old))
            why = self._reload(pid, exe, edit, conf)
            if why is not None:
                self.files.pop()
                Path(conf).write_text(old)
                return f"not applied: {why}"
            done.append(f"{conf} + '{edit.line}', {edit.program} {pid} reloaded")
        return "applied in " + self.netns + ": " + "; ".join(done)

    def undo(self) -> list[str]:
        done = []
        for pid, exe, edit, conf, old in reversed(self.files):
            Path(conf).write_text(old)
            why = self._reload(pid, exe, edit, conf) if os.path.exists(f"/proc/{pid}") else "gone"
            done.append(f"{conf} restored" + (f" ({why})" if why else f", {edit.program} {pid} reloaded"))
        self.files.clear()
        if self.scrubber is not None:
            p, self.scrubber = self.scrubber, None
            try:
                os.kill(p.pid, signal.SIGTERM)
                p.communicate(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                p.kill()
                p.communicate()
            done.append(f"scrubber {p.pid} stopped")
        for key, old in reversed(self.old):
            self._ns(["sysctl", "-q", "-w", f"{key}={old}"])
            done.append(f"{key} back to {old}")
        self.old.clear()
        return done


# ---------------------------------------------------------------------------------- report
def render(rep: AuditReport) -> str:
    lines = [f"audit of {rep.address}: {rep.overall:.1f} bits about its OS (the best method)"]
    after = {m.method: m for m in rep.after}
    for m in rep.methods:
        a = after.get(m.method)
        score = f"{m.bits:4.1f} bits" + (f" of {m.max_bits:.1f}" if m.max_bits else "")
        if a is not None:
            score += f" -> {a.bits:.1f}"
        lines.append(f"  {m.method:22} {score:24} {m.learns}" + (f"  ->  {a.learns}" if a is not None and a.learns != m.learns else ""))
        for d in m.details[:6]:
            lines.append(f"  {'':22} {'':24} {d}")
    for m in rep.after:
        if m.method not in {x.method for x in rep.methods}:
            lines.append(f"  {m.method:22} {'(after)':24} {m.learns}")
    if rep.exposures:
        lines.append("  exposures:")
        lines += [f"    - {e}" for e in rep.exposures]
    if rep.countermeasures:
        lines.append("  countermeasures (for what was measured):")
        for c in rep.countermeasures:
            lines.append(f"    [{c.kind}] {c.name}: {c.setting}")
            lines.append(f"        hides: {c.hides}")
            lines.append(f"        cost:  {c.cost}")
            lines.append(f"        because: {', '.join(c.because)}; source: {c.sources[0]}")
            if c.applied:
                lines.append(f"        --apply: {c.applied}")
    if rep.after:
        lines.append(f"  after --apply: {AuditReport.overall_of(rep.methods):.1f} -> {AuditReport.overall_of(rep.after):.1f} bits"
                     + (f"; exposures {len(rep.exposures)} -> {len(rep.after_exposures)}"))
    return "\n".join(lines)
