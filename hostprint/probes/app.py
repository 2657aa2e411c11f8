"""Application identification engine (amap's method): banner, triggers, response rules, TLS.

Why this shape: a port is identified by what it says unprompted (the NULL probe) or in answer to
a trigger; triggers go over separate connections in parallel so one slow or hostile service
costs one response timeout, not one per trigger. Every read is capped (`max_bytes`) and every
wait bounded, so endless banners, 10 MB answers, tarpits and TLS garbage end on time with bounded
memory. TLS is detected with a ClientHello trigger (any port), then the port is scanned again
inside the tunnel, as amap's SSL pass and nmap's ssl/<service> do.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import re
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

from hostprint import model
from hostprint.match.app import Match, best, enrich, match_answer, os_hint
from hostprint.probes.base import Session, Technique
from hostprint.probes.options import ScanOptions
from hostprint.signatures.app_records import NULL, SignatureDB, Trigger

# nmap calls a port that accepts and closes without a word "tcpwrapped" (nmap book, "tcpwrapped").
TCPWRAPPED = "tcpwrapped"


@dataclass
class AppOptions:
    db: SignatureDB
    connect_timeout: float = 5.0  # amap -T
    response_timeout: float = 5.0  # amap -t: first byte of an answer to a trigger
    banner_timeout: float = 5.0  # how long the NULL probe waits for an unprompted banner
    #: Start triggers when no banner came within this long (the banner connection keeps waiting).
    trigger_after: float = 0.5
    idle: float = 0.3  # after the first bytes, stop reading once the peer is quiet this long
    retries: int = 3  # amap -C: reconnects on connect timeout
    parallel: int = 32  # amap -c: connections in flight
    first: bool = True  # amap -1: stop at the first identification
    banners_only: bool = False  # amap -B
    portscan_only: bool = False  # amap -P
    harmless_only: bool = False  # amap -H
    only_trigger: str | None = None  # amap -p
    ssl: bool = True  # amap -S disables
    rpc: bool = True  # amap -R disables
    max_bytes: int = 16384  # per response; amap matches only the first 1024 bytes
    udp_retries: int = 1
    #: nmap --version-intensity (0-9): probes whose `ports` miss the port go only when rarity <= this.
    intensity: int = 7
    #: nmap --allports: also probe the DBs' excluded ports (nmap's `Exclude T:9100-9107`: printers).
    allports: bool = False
    #: Probes of one port in flight at once (each its own connection); the rest queue behind them.
    #: A port that answered none of the first `per_port` probes (no byte, no close) gets
    #: `per_port_silent` at once: nothing there is busy serving us, and each wave costs a timeout.
    per_port: int = 8
    per_port_silent: int = 128
    #: Each quick answer (a byte or a close within `quick` s) lets one more probe of that port run
    #: at once, up to `per_port_max`: a server that keeps up gets more, one that slows down does not.
    per_port_max: int = 32
    quick: float = 0.5
    #: UDP probes of one port in flight at once (datagrams: no connection to hold).
    per_port_udp: int = 64
    #: Start the rarer probes this long after the port's `ports` probes if those are still waiting.
    next_group_after: float = 1.0
    #: Total seconds one port may take, every connection and read included (-sV's --sv-timeout);
    #: None = only the per-read limits above (amap's semantics).
    port_deadline: float | None = None
    #: TLS ports: ALPN, JA3S and JARM (12 more connections); SSH ports: KEXINIT, HASSH and one key
    #: exchange per host key type. -sV turns it on; amap's mode keeps amap's connections.
    fingerprints: bool = False
    #: Versions hidden from banners: the behaviour probes of the version-range rules (-sV).
    behaviour: bool = False


@dataclass
class Response:
    trigger: str
    data: bytes
    tls: bool = False
    eof: bool = False


@dataclass
class PortReport:
    address: str
    port: int
    proto: str
    status: str = "open"  # open | closed | timeout | open|filtered | excluded
    responses: list[Response] = field(default_factory=list)
    matches: list[tuple[Match, bool]] = field(default_factory=list)  # (match, over TLS)
    tls: dict[str, Any] | None = None
    wrapped: bool = False  # accepted and closed without a word
    elapsed: float = 0.0
    #: ONC RPC program found by the RPC pass: {"program", "name", "low", "high"}.
    rpc: dict[str, Any] | None = None
    #: Some connection got a byte or a close (a silent port never does).
    alive: bool = False
    timed_out: bool = False  # the port's deadline ended its work (what came until then is kept)
    #: SSH facts (model.SshFacts.to_dict()) of an SSH port
    ssh: dict[str, Any] | None = None
    #: What the behaviour probes saw, by kind ("ssh-kexinit", "smb2-negotiate" …), for version ranges
    behaviour: dict[str, Any] = field(default_factory=dict)
    #: The version range those observations give (model.VersionRange), when a rule applied
    version_range: model.VersionRange | None = None

    def identified(self, *, hard: bool = True) -> bool:
        return any(not (hard and m.soft) for m, _ in self.matches)

    def best(self) -> tuple[Match, bool] | None:
        """The most informative match, preferring what was learnt inside TLS over 'ssl' itself."""
        inner: list[tuple[Match, bool]] = [(m, t) for m, t in self.matches if t]
        pool = inner or [(m, t) for m, t in self.matches]
        if not pool:
            return None
        m = best(x for x, _ in pool)
        assert m is not None
        t = next(t for x, t in pool if x is m)
        return enrich(m, [x for x, tt in pool if tt == t]), t

    def service(self) -> model.Service | None:
        """The port's Service record (nmap's fields), or None when nothing was learnt."""
        b = self.best()
        banner = _banner_text(self)
        if self.rpc is not None:
            r = self.rpc
            return model.Service(name=r["name"], tunnel="ssl" if self.tls else None, version=f"{r['low']}-{r['high']}",
                                 extrainfo=f"RPC #{r['program']}", method="trigger", confidence=1.0, banner=banner,
                                 tls=self._tls_facts())
        if b is None:
            if self.tls is not None:
                return model.Service(name="ssl", method="trigger", confidence=0.8, banner=banner,
                                     tls=self._tls_facts())
            if self.wrapped:
                return model.Service(name=TCPWRAPPED, method="banner", confidence=0.8, banner=None)
            return None
        m, over_tls = b
        name = _service_name(m)
        tunnel = "ssl" if (over_tls or self.tls or m.service.startswith("ssl/")) and name != "ssl" else None
        f = m.fields
        svc = model.Service(name=name, tunnel=tunnel, product=f.get("product"), version=f.get("version"),
                            extrainfo=f.get("extrainfo"), hostname=f.get("hostname"), ostype=f.get("ostype"),
                            devicetype=f.get("devicetype"), cpe=list(dict.fromkeys(m.cpe)),
                            method="banner" if m.trigger == NULL else "trigger",
                            confidence=0.5 if m.soft else 1.0, banner=banner, tls=self._tls_facts(),
                            ssh=model.SshFacts.from_dict(self.ssh), version_range=self.version_range)
        title = None
        if name in ("http", "http-proxy", "ipp"):  # the matched answer's title first
            title = http_title([r for r in self.responses if r.trigger == m.trigger]) or http_title(self.responses)
        if title:
            svc.extrainfo = f"{svc.extrainfo}; title: {title}" if svc.extrainfo else f"title: {title}"
        hint = self.os_hint()
        if hint is not None:
            svc.ostype = svc.ostype or hint.family
            if hint.cpe and hint.cpe not in svc.cpe:
                svc.cpe.append(hint.cpe)
        return svc

    def _tls_facts(self) -> model.TlsFacts | None:
        return model.TlsFacts.from_dict(self.tls)

    def os_hint(self):
        texts = [" ".join(v for v in m.fields.values()) for m, _ in self.matches]
        texts += [r.data[:512].decode("latin-1") for r in self.responses if r.trigger == NULL]
        for t in texts:
            h = os_hint(t)
            if h is not None:
                return h
        return None


# amap ids whose protocol part itself contains '-', and amap protocol words that nmap spells
# differently (nmap-services names are what our reports use).
AMAP_PROTOCOLS = {"x-windows": "X11", "ms-sql": "ms-sql-s", "netbios-session": "netbios-ssn",
                  "ms-ds": "microsoft-ds", "oracle-tns-listener": "oracle-tns", "sap-r3": "sap",
                  "ms-remote-desktop-protocol": "ms-wbt-server", "dns": "domain"}


def _service_name(m: Match) -> str:
    """nmap's service name for a match; amap ids are 'protocol-product…' (amap 2.2's convention);
    nmap's 'ssl/NAME' lines name a service seen through TLS without a TLS pass (the tunnel is ssl)."""
    if m.rule.source != "amap":
        return m.service.removeprefix("ssl/")
    for proto, name in AMAP_PROTOCOLS.items():
        if m.service == proto or m.service.startswith(proto + "-"):
            return name
    return m.service.split("-", 1)[0]


def _tls_said(m: Match) -> bool:
    """A hard match saying "this port speaks TLS": nmap's `ssl` (its SSL pass follows) or
    `ssl/NAME`; our rules also name plaintext answers that say TLS was expected (HTTP 400 texts,
    an alert or handshake record in reply to a plaintext probe)."""
    return not m.soft and (m.service == "ssl" or m.service.startswith("ssl/"))


_TITLE = re.compile(rb"<title[^>]*>([^<]{1,200})</title>", re.I)


def http_title(responses: list[Response]) -> str | None:
    """The HTML <title> of the first HTTP answer that has one (HTML 4.01 §7.4.2), whitespace folded."""
    for r in responses:
        if r.data.startswith(b"HTTP/"):
            m = _TITLE.search(r.data)
            if m:
                t = " ".join(m.group(1).decode("utf-8", errors="replace").split())
                return t[:80] or None
    return None


def _same_id(a: Match, b: Match) -> bool:
    """amap reports each id once per port; our and nmap's rules count once per rule."""
    if a.rule.source == "amap" and b.rule.source == "amap":
        return a.service == b.service
    return a.rule is b.rule


def _speaks_ssh(r: PortReport) -> bool:
    """The port's unprompted banner is an SSH identification line (RFC 4253 §4.2)."""
    return any(x.trigger == NULL and not x.tls and x.data.startswith((b"SSH-2.0-", b"SSH-1.99-")) for x in r.responses)


def _banner_text(r: PortReport) -> str | None:
    for resp in r.responses:
        if resp.trigger == NULL and resp.data:
            return printable(resp.data[:256])
    return None


def printable(b: bytes) -> str:
    """Bytes as text with escapes for the unprintable (banners in reports)."""
    out = []
    for c in b:
        if c in (9,):
            out.append("\\t")
        elif c == 10:
            out.append("\\n")
        elif c == 13:
            out.append("\\r")
        elif 32 <= c < 127 and c != 92:
            out.append(chr(c))
        else:
            out.append(f"\\x{c:02x}")
    return "".join(out)


# ---------------------------------------------------------------------------- low-level I/O


class ConnectFailed(Exception):
    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


async def _read(reader: asyncio.StreamReader, first_timeout: float, idle: float, cap: int,
                done: Callable[[bytes], bool | None] | None = None) -> tuple[bytes, bool]:
    """Read one answer: wait up to first_timeout for the first bytes, then until quiet for `idle`,
    EOF, `cap` bytes, or `done(data)` says enough (True). `done` returning None means "only a soft
    match so far": keep reading until first_timeout is used up (nmap reads on after a softmatch:
    an IRC server's version comes after its lookups). Returns (data, eof)."""
    buf = bytearray()
    timeout = first_timeout
    deadline = time.monotonic() + first_timeout
    while len(buf) < cap:
        timeout = _left(timeout)
        if timeout <= 0:  # the port's deadline: keep what came (a drip of bytes ends here)
            return bytes(buf), False
        try:
            chunk = await asyncio.wait_for(reader.read(min(65536, cap - len(buf))), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return bytes(buf), False
        except (ConnectionError, OSError, ssl.SSLError):
            return bytes(buf), True
        if not chunk:
            return bytes(buf), True
        buf += chunk
        verdict = done(bytes(buf)) if done is not None else False
        if verdict:
            break
        timeout = max(idle, deadline - time.monotonic()) if verdict is None else idle
    return bytes(buf), False


# ---------------------------------------------------------------------------- per-port budget

#: Loop time at which the current port's work must end (set per port by Engine.scan; the tasks a
#: port starts inherit it), and the port a connection is for (fair sharing of connection slots).
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("sv_deadline", default=None)
_port_key: contextvars.ContextVar[object] = contextvars.ContextVar("sv_port", default=None)
_port_timeout: contextvars.ContextVar[asyncio.Timeout | None] = contextvars.ContextVar("sv_timeout", default=None)


def _left(timeout: float) -> float:
    """`timeout`, cut to what is left of the current port's deadline."""
    end = _deadline.get()
    if end is None:
        return timeout
    return min(timeout, end - asyncio.get_running_loop().time())


class _FairSlots:
    """At most `n` connections in flight, shared fairly between ports: a freed slot goes to the
    waiting port that holds the fewest (first come among equals). With one FIFO semaphore, 32 ports
    that drip bytes for minutes queued their triggers ahead of every other port's and starved them."""

    def __init__(self, n: int):
        self.free = n
        self.held: dict[object, int] = {}
        self.waiters: list[tuple[object, asyncio.Future[None]]] = []

    async def __aenter__(self) -> None:
        key = _port_key.get()
        if self.free > 0 and not self.waiters:
            self._take(key)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append((key, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release(key)  # the slot was ours already: hand it on
            else:
                self.waiters = [w for w in self.waiters if w[1] is not fut]
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release(_port_key.get())

    def _take(self, key: object) -> None:
        self.free -= 1
        self.held[key] = self.held.get(key, 0) + 1

    def _release(self, key: object) -> None:
        self.free += 1
        n = self.held.get(key, 1) - 1
        if n > 0:
            self.held[key] = n
        else:
            self.held.pop(key, None)
        while self.free > 0 and self.waiters:
            i = min(range(len(self.waiters)), key=lambda j: self.held.get(self.waiters[j][0], 0))
            k, fut = self.waiters.pop(i)
            if fut.done():
                continue
            self._take(k)
            fut.set_result(None)


def _client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # we identify, we do not trust
    try:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pass
    return ctx


class Engine:
    def __init__(self, opts: AppOptions):
        self.o = opts
        self.sem = _FairSlots(max(1, opts.parallel))
        self._ssl_ctx: ssl.SSLContext | None = None
        self.connections = 0
        #: every port's report from its start (filled as answers arrive), and those whose work ended
        self.reports: list[PortReport] = []
        self.finished: set[int] = set()

    @property
    def ssl_ctx(self) -> ssl.SSLContext:
        if self._ssl_ctx is None:
            self._ssl_ctx = _client_context()
        return self._ssl_ctx

    async def _connect(self, addr: str, port: int, tls: bool):
        """(reader, writer) or ConnectFailed('closed'|'timeout'|'tls-failed')."""
        last = "timeout"
        for _attempt in range(max(1, self.o.retries)):
            try:
                self.connections += 1
                return await asyncio.wait_for(
                    asyncio.open_connection(addr, port, ssl=self.ssl_ctx if tls else None,
                                            server_hostname="" if tls else None,
                                            ssl_handshake_timeout=self.o.connect_timeout if tls else None,
                                            limit=self.o.max_bytes + 1),
                    max(0.0, _left(self.o.connect_timeout + (1 if tls else 0))))
            except ConnectionRefusedError:
                raise ConnectFailed("closed") from None
            except (asyncio.TimeoutError, TimeoutError):
                if tls:
                    raise ConnectFailed("tls-failed") from None
                last = "timeout"
            except ssl.SSLError:
                raise ConnectFailed("tls-failed") from None
            except OSError as e:
                if tls:
                    raise ConnectFailed("tls-failed") from None
                if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                    raise ConnectFailed("unreachable") from None
                last = "timeout"
        raise ConnectFailed(last)

    async def _exchange(self, addr: str, port: int, payload: bytes | None, tls: bool, first_timeout: float,
                        done: Callable[[bytes], bool | None] | None = None) -> tuple[bytes, bool, dict | None]:
        async with self.sem:
            reader, writer = await self._connect(addr, port, tls)
            try:
                info = _tls_info(writer) if tls else None
                if payload:
                    writer.write(payload)
                    try:
                        await asyncio.wait_for(writer.drain(), first_timeout)
                    except (asyncio.TimeoutError, TimeoutError, ConnectionError, OSError, ssl.SSLError):
                        return b"", True, info
                data, eof = await _read(reader, first_timeout, self.o.idle, self.o.max_bytes, done)
                return data, eof, info
            finally:
                writer.transport.abort()  # no lingering FIN_WAIT or TLS close_notify waits

    # ------------------------------------------------------------------------ probe plan
    def _triggers(self, proto: str, port: int, tls: bool) -> list[Trigger]:
        ts = [t for t in self.o.db.triggers if t.fits(proto) and t.name != NULL and t.payload]
        if self.o.harmless_only:
            ts = [t for t in ts if not t.harmful]
        if self.o.only_trigger:
            ts = [t for t in ts if t.name == self.o.only_trigger]
        if tls:  # already inside: no ClientHello inside the tunnel
            ts = [t for t in ts if t.name not in ("tls", "ssl") and not t.payload.startswith((b"\x16\x03", b"\x80"))]
        return ts

    def plan(self, proto: str, port: int, tls: bool) -> tuple[list[Trigger], list[Trigger]]:
        """nmap's probe order (ServiceNFO::nextProbe): first the probes whose `ports` (inside TLS:
        `sslports`) list this port, whatever their rarity; then the others whose rarity is at
        most the intensity, in file order. amap's -p (one named trigger) ignores rarity."""
        ts = self._triggers(proto, port, tls)
        probable = [t for t in ts if t.probable(port, tls)]
        rest = [t for t in ts if not t.probable(port, tls) and (self.o.only_trigger or t.rarity <= self.o.intensity)]
        return probable, rest

    def _null_probe(self) -> Trigger | None:
        return next((t for t in self.o.db.trigger(NULL) if t.fits("tcp")), None)

    def _wait(self, t: Trigger) -> float:
        """nmap's totalwaitms where the DB states one, else the engine's answer timeout."""
        return t.wait_ms / 1000 if t.wait_ms else self.o.response_timeout

    def _excluded(self, proto: str, port: int) -> bool:
        return not self.o.allports and (proto, port) in self.o.db.exclude

    def _done(self, trigger: str, proto: str) -> Callable[[bytes], bool | None]:
        db = self.o.db

        # Stop reading early only when a hard rule already gave a version: rules without one may
        # be the first step of a longer answer (MQTT CONNACK before the $SYS/broker/version PUBLISH).
        # HTTP answers are read to the end (EOF after our HTTP/1.0 request): the body has the title.
        def done(data: bytes) -> bool | None:
            if data.startswith(b"HTTP/"):
                return False
            ms = match_answer(db, data[:self.o.max_bytes], trigger, proto)
            if any(not m.soft and "version" in m.fields for m in ms):
                return True
            if ms and all(m.soft for m in ms):
                return None
            return False

        return done

    # ------------------------------------------------------------------------ TCP
    async def scan_tcp(self, addr: str, port: int, rep: PortReport | None = None) -> PortReport:
        t0 = time.monotonic()
        rep = rep or PortReport(addr, port, "tcp")
        if self._excluded("tcp", port):
            rep.status = "excluded"
            return rep
        try:
            await self._tcp_pass(rep, tls=False)
            if (not rep.identified() and rep.status == "open" and not rep.wrapped and not self.o.banners_only
                    and not self.o.portscan_only and not self.o.only_trigger):
                await self._serial_retry(rep)
            if (self.o.ssl and not self.o.banners_only and not self.o.portscan_only and rep.status == "open"
                    and any(_tls_said(m) for m, t in rep.matches if not t)):
                await self._tcp_pass(rep, tls=True)
            if self._is_rpc(rep):
                await self._rpc_sweep(rep)
            if self.o.fingerprints and not (self.o.banners_only or self.o.portscan_only) and rep.status == "open":
                if rep.tls and "error" not in rep.tls:
                    await self._tls_fingerprints(rep)
                if _speaks_ssh(rep):
                    from hostprint.probes.ssh_kex import ssh_facts

                    rep.ssh = (await ssh_facts(addr, port, self.o.response_timeout, self.sem)).to_dict()
            if self.o.behaviour and not (self.o.banners_only or self.o.portscan_only) and rep.status == "open":
                await self._behaviour(rep)
        finally:
            rep.elapsed = time.monotonic() - t0
        return rep

    async def _tls_fingerprints(self, rep: PortReport) -> None:
        """ALPN, JA3S and JARM of a TLS port (probes/tls_probes.py), added to the TLS pass's facts."""
        from hostprint.match.tlsfp import ja3s
        from hostprint.probes import tls_probes

        t = self.o.response_timeout

        async def alpn() -> str | None:
            ctx = _client_context()
            ctx.set_alpn_protocols(["h2", "http/1.1"])
            async with self.sem:
                try:
                    _r, w = await asyncio.wait_for(
                        asyncio.open_connection(rep.address, rep.port, ssl=ctx, server_hostname="",
                                                ssl_handshake_timeout=t), t + 1)
                except (OSError, ssl.SSLError, asyncio.TimeoutError, TimeoutError):
                    return None
                try:
                    obj = w.get_extra_info("ssl_object")
                    return obj.selected_alpn_protocol() if obj is not None else None
                finally:
                    w.transport.abort()

        async def hello() -> tuple[Any, str | None]:
            async with self.sem:
                return await tls_probes.ja3s_of(rep.address, rep.port, None, t)

        chosen, (sh, _why), (jarm, raw) = await asyncio.gather(
            alpn(), hello(), tls_probes.jarm(rep.address, rep.port, None, t, self.sem))
        assert rep.tls is not None
        rep.tls["alpn"] = chosen
        if sh is not None:
            rep.tls["ja3s"], rep.tls["ja3s_string"] = ja3s(sh)
        rep.tls["jarm"], rep.tls["jarm_raw"] = jarm, raw

    async def _behaviour(self, rep: PortReport) -> None:
        """Observations for the version-range rules of the identified product (signatures/
        version_ranges.txt), then the range they give. Only the probes some rule reads are sent."""
        from hostprint.match.versionrange import infer, kinds_for, stated_version
        from hostprint.probes import behaviour

        svc = rep.service()
        if svc is None or not svc.product:
            return
        kinds = kinds_for(svc.product)
        if not kinds:
            return
        if "ssh-kexinit" in kinds:
            obs = behaviour.ssh_observation(rep.ssh)
            if obs is not None:
                rep.behaviour["ssh-kexinit"] = obs
        for kind in sorted(kinds - {"ssh-kexinit"}):
            if svc.name not in behaviour.SERVICES.get(kind, ()) or svc.tunnel:
                continue
            async with self.sem:
                got = await behaviour.observe(kind, rep.address, rep.port, self.o.response_timeout)
            if got is not None:
                rep.behaviour[kind] = got
        vr = infer(svc.product, rep.behaviour, stated_version(svc.product, svc.version, svc.extrainfo))
        if vr is not None:
            vr.evidence += [model.Evidence("observed", behaviour.summary(k, o)) for k, o in rep.behaviour.items()]
            rep.version_range = vr

    async def _tcp_pass(self, rep: PortReport, tls: bool) -> None:
        """One pass over a port (plain, or inside TLS): the NULL probe's banner wait on one
        connection, the other probes each on its own connection, many at once (nmap sends them
        one after the other); the first hard match that names a product ends the pass."""
        o = self.o
        addr, port = rep.address, rep.port
        stop = asyncio.Event()
        # A hard match that names no product (a bare "HTTP/1.1 404") does not end the wait: a more
        # specific answer to another trigger (etcd's /version) may still come; each waits -t at most.
        generic = asyncio.Event()
        settled = asyncio.Event()
        known: set[str] = set()  # services named with a product but no version yet
        #: services soft-matched so far: later probes must be able to hard-match one (nmap).
        soft: set[str] = set()
        null = self._null_probe()
        banner_wait = (null.wait_ms / 1000) if null is not None and null.wait_ms else o.banner_timeout
        wrapped_s = ((null.tcpwrapped_ms if null is not None and null.tcpwrapped_ms else 2000) / 1000)
        per_port = asyncio.Semaphore(max(1, o.per_port))
        # liveness: [any byte or close seen, silent answers counted, widened, permits granted]
        life: list[Any] = [False, 0, False, o.per_port]
        shared: dict[bytes, asyncio.Future[Any]] = {}
        order: dict[str, int] = {}
        cut = [1 << 30]  # probes ordered after the first that gave a version are not needed

        def record(trigger: str, data: bytes, eof: bool) -> None:
            rep.responses.append(Response(trigger, data, tls, eof))
            if not data:
                return
            for m in match_answer(o.db, data[:o.max_bytes], trigger, "tcp", first=o.first):
                if any(_same_id(m, x) and t == tls for x, t in rep.matches):
                    continue
                rep.matches.append((m, tls))
                if _tls_said(m) and not tls:
                    if o.ssl and not o.banners_only:
                        stop.set()  # the rest is for the TLS pass
                    continue
                if m.soft:
                    soft.add(_service_name(m))
                elif o.first:
                    # a version (or a banner) ends the pass; a product without version lets the
                    # probes in flight finish (another may carry the version) but starts no more.
                    if trigger == NULL:
                        stop.set()
                    elif "version" in m.fields:
                        # nmap's answer is the first probe in its order that matches: probes
                        # after this one stop, earlier ones still in flight may answer first.
                        cut[0] = min(cut[0], order.get(trigger, 0))
                    elif "product" in m.fields:
                        # a product without version: later probes are only those whose own rules
                        # can read this service's version
                        settled.set()
                        known.add(_service_name(m))
                    else:
                        generic.set()

        flowing = asyncio.Event()  # the banner connection has bytes and is still reading
        banner_done = self._done(NULL, "tcp")

        def banner_more(data: bytes) -> bool | None:
            flowing.set()
            return banner_done(data)

        async def banner() -> None:
            t_conn = time.monotonic()
            try:
                # -P: the connect is the answer; no banner wait
                data, eof, info = await self._exchange(addr, port, None, tls,
                                                       0.0 if o.portscan_only else banner_wait,
                                                       banner_more)
            except ConnectFailed as e:
                if tls:
                    rep.tls = rep.tls or {"error": e.status}
                else:
                    rep.status = e.status
                stop.set()
                return
            if tls and info:
                rep.tls = info
            record(NULL, data, eof)
            if data or eof:
                life[0] = rep.alive = True
            # nmap's tcpwrapped: the NULL probe's connection closed without a byte, quickly
            # (tcpwrappedms); a service that closes idle clients after a while is not "wrapped".
            if not data and eof and not tls and time.monotonic() - t_conn <= wrapped_s + o.connect_timeout:
                rep.wrapped = True
            if o.portscan_only or o.banners_only:
                stop.set()

        async def trigger(t: Trigger) -> None:
            async with per_port:
                # once a probe gave a version, only probes already in flight may still answer
                if stop.is_set() or cut[0] < 1 << 30:
                    return
                # nmap: after a soft match only probes that can hard-match that service
                # (below intensity 9 for the port's own probes too).
                if soft and o.intensity < 9 and not (o.db.possible(t.name) & soft):
                    return
                if known and not (o.db.versioned(t.name) & known):
                    return
                # Probes with the same bytes (our `http` and nmap's GetRequest) share one connection;
                # the answer is judged by each probe's rules.
                payload = t.payload_for(addr)
                fut = shared.get(payload)
                if fut is None:
                    fut = shared[payload] = asyncio.get_running_loop().create_future()
                    t0 = time.monotonic()
                    # a port that answered nothing to a whole first wave gets no long waits either
                    wait = min(self._wait(t), o.response_timeout) if life[2] else self._wait(t)
                    try:
                        got = await self._exchange(addr, port, payload, tls, wait, self._done(t.name, "tcp"))
                    except ConnectFailed:
                        got = None
                    except BaseException:
                        fut.cancel()
                        raise
                    fut.set_result(got)
                    if got is not None and (got[0] or got[1]):
                        life[0] = rep.alive = True
                        if time.monotonic() - t0 < o.quick and life[3] < o.per_port_max:
                            life[3] += 1
                            per_port.release()
                    else:
                        life[1] += 1
                        if not life[0] and not life[2] and life[1] >= max(1, o.per_port // 2):
                            life[2] = True  # a silent port: the rest go at once
                            for _ in range(max(0, o.per_port_silent - o.per_port)):
                                per_port.release()
            got = await asyncio.shield(fut)
            if got is None:
                return
            data, eof, info = got
            if tls and info and not rep.tls:
                rep.tls = info
            record(t.name, data, eof)

        btask = asyncio.ensure_future(banner())
        try:
            await asyncio.wait_for(asyncio.shield(btask), o.trigger_after)
        except (asyncio.TimeoutError, TimeoutError):
            pass
        if flowing.is_set() and not btask.done():
            # A banner still arriving (slowly: a drip) is heard out before triggers open more
            # connections; 32 drip ports firing every trigger held every slot until their deadline.
            await asyncio.gather(btask, return_exceptions=True)
        if not (stop.is_set() or o.banners_only or o.portscan_only):
            probable, rest = self.plan("tcp", port, tls)
            if soft and o.intensity < 9:  # the banner soft-matched: nmap narrows every group
                rest = [t for t in rest if o.db.possible(t.name) & soft]
            for i, t in enumerate(probable + rest):
                order.setdefault(t.name, i)
            await self._run_groups([probable, rest], trigger, stop, lambda: rep.status != "open",
                                   lambda: cut[0], order)
        if (stop.is_set() or generic.is_set() or settled.is_set() or cut[0] < 1 << 30) and o.first and rep.identified():
            btask.cancel()
        await asyncio.gather(btask, return_exceptions=True)
        if rep.wrapped and any(r.data for r in rep.responses if not r.tls):
            rep.wrapped = False

    async def _serial_retry(self, rep: PortReport) -> None:
        """Servers that serve one client at a time (gunicorn's sync worker) or few per address
        (ngircd's MaxConnectionsIP) stay silent or refuse while our other connections hold them:
        once everything is closed, ask again alone -- the probes that can name a service already
        soft-matched (at most two), else the most common question (GET /)."""
        soft = {_service_name(m) for m, _t in rep.matches if m.soft}
        probable, rest = self.plan("tcp", rep.port, False)
        ts = probable + rest
        if soft:
            picks = [t for t in ts if self.o.db.possible(t.name) & soft and t.source == "hostprint"][:1]
            picks += [t for t in ts if self.o.db.possible(t.name) & soft and t not in picks][:2 - len(picks)]
        else:
            picks = [t for t in ts if t.payload.startswith(b"GET / HTTP/")][:1]
        for t in picks:
            try:
                # a port that never said a word gets a short wait: it is most likely a silent sink
                wait = min(self._wait(t), self.o.response_timeout) + 1.0 if rep.alive else min(2.0, self._wait(t))
                data, eof, _info = await self._exchange(rep.address, rep.port, t.payload_for(rep.address), False, wait,
                                                        self._done(t.name, "tcp"))
            except ConnectFailed:
                return
            rep.responses.append(Response(t.name, data, False, eof))
            if not data:
                continue
            for name in {x.name for x in self.o.db.triggers if x.payload == t.payload and x.fits("tcp")}:
                for m in match_answer(self.o.db, data[:self.o.max_bytes], name, "tcp", first=self.o.first):
                    if not any(_same_id(m, x) for x, _t in rep.matches):
                        rep.matches.append((m, False))
            if rep.identified():
                return

    async def _run_groups(self, groups: list[list[Trigger]], run: Callable[[Trigger], Any], stop: asyncio.Event,
                          give_up: Callable[[], bool], cut: Callable[[], int] = lambda: 1 << 30,
                          order: dict[str, int] | None = None) -> None:
        """Start each group when the one before has finished, or `next_group_after` seconds after
        it started (a probe that waits out its timeout does not hold the rarer ones back); end
        everything at `stop`. Once a probe gave a version (`cut()` = its place in the order), no
        group starts, probes after it are cancelled and those before it may still finish."""
        tasks: list[tuple[int, asyncio.Future[Any]]] = []
        stopper = asyncio.ensure_future(stop.wait())
        idx = (lambda t: order.get(t.name, 0)) if order is not None else (lambda t: 0)
        done_at = cut

        def needed() -> set[asyncio.Future[Any]]:
            c = done_at()
            for i, x in tasks:
                if i > c and not x.done():
                    x.cancel()
            return {x for i, x in tasks if i <= c and not x.done()}

        try:
            for group in groups:
                if stop.is_set() or give_up() or done_at() < 1 << 30:
                    break
                if not group:
                    continue
                mine = [(idx(t), asyncio.ensure_future(run(t))) for t in group]
                tasks += mine
                deadline = time.monotonic() + self.o.next_group_after
                while not stop.is_set() and done_at() >= 1 << 30:
                    pending = {x for _i, x in mine if not x.done()}
                    left = deadline - time.monotonic()
                    if not pending or left <= 0:
                        break
                    await asyncio.wait(pending | {stopper}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            while not stop.is_set():
                pending = needed()
                if not pending:
                    break
                await asyncio.wait(pending | {stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for _i, x in tasks:
                x.cancel()
            stopper.cancel()
            await asyncio.gather(*(x for _i, x in tasks), stopper, return_exceptions=True)

    # ------------------------------------------------------------------------ UDP
    async def scan_udp(self, addr: str, port: int, rep: PortReport | None = None) -> PortReport:
        t0 = time.monotonic()
        rep = rep or PortReport(addr, port, "udp", status="open|filtered")
        if self._excluded("udp", port):
            rep.status = "excluded"
            return rep
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        settled = asyncio.Event()  # a product without version: only probes that can read its version
        known: set[str] = set()
        soft: set[str] = set()
        per_port = asyncio.Semaphore(max(1, self.o.per_port_udp))

        async def one(t: Trigger) -> None:
            async with per_port:
                if stop.is_set():
                    return
                if soft and self.o.intensity < 9 and not (self.o.db.possible(t.name) & soft):
                    return
                if known and not (self.o.db.versioned(t.name) & known):
                    return
                await send(t)

        async def send(t: Trigger) -> None:
            fut: asyncio.Future[bytes] = loop.create_future()

            class P(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, a: Any) -> None:
                    if a[0] != addr:
                        return
                    if not fut.done():
                        fut.set_result(data[:self_cap])

                def error_received(self, exc: Exception) -> None:
                    if isinstance(exc, ConnectionRefusedError) and not fut.done():
                        fut.set_exception(exc)

            self_cap = self.o.max_bytes
            async with self.sem:
                try:
                    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET  # IPv6 targets: issue 17
                    if t.any_port:  # unconnected: accept the reply from any port of the target
                        tr, _p = await loop.create_datagram_endpoint(P, local_addr=("::" if ":" in addr else "0.0.0.0", 0),
                                                                     family=fam)
                    else:  # connected: ICMP port unreachable is reported (closed port)
                        tr, _p = await loop.create_datagram_endpoint(P, remote_addr=(addr, port), family=fam)
                except OSError:
                    return
                try:
                    wait = self._wait(t)
                    payload = t.payload_for(addr)
                    for _attempt in range(1 + max(0, self.o.udp_retries)):
                        tr.sendto(payload, (addr, port) if t.any_port else None)
                        try:
                            data = await asyncio.wait_for(asyncio.shield(fut), wait / (1 + self.o.udp_retries))
                        except (asyncio.TimeoutError, TimeoutError):
                            if stop.is_set():
                                return
                            continue
                        except ConnectionRefusedError:
                            rep.status = "closed"
                            stop.set()
                            return
                        rep.status = "open"
                        rep.responses.append(Response(t.name, data))
                        for m in match_answer(self.o.db, data, t.name, "udp", first=self.o.first):
                            rep.matches.append((m, False))
                            if m.soft:
                                soft.add(_service_name(m))
                            elif self.o.first and "version" in m.fields:
                                stop.set()
                            elif self.o.first and "product" in m.fields:
                                settled.set()
                                known.add(_service_name(m))
                        return
                finally:
                    tr.close()

        if not (self.o.banners_only or self.o.portscan_only):
            probable, rest = self.plan("udp", port, False)
            await self._run_groups([probable, rest], one, stop, lambda: rep.status == "closed")
        if self._is_rpc(rep):
            await self._rpc_sweep(rep)
        rep.elapsed = time.monotonic() - t0
        return rep

    # ------------------------------------------------------------------------ RPC
    def _is_rpc(self, rep: PortReport) -> bool:
        return (self.o.rpc and bool(self.o.db.rpc) and not self.o.banners_only and not self.o.portscan_only
                and any(_service_name(m) in ("rpc", "rpcbind") for m, _ in rep.matches))

    async def _rpc_sweep(self, rep: PortReport) -> None:
        """Which ONC RPC program answers here: CALL each known program, version 0, procedure 0; the
        program that answers PROG_MISMATCH (or SUCCESS) is it, with its version range (RFC 5531 §9).
        amap does the same with its appdefs.rpc list over one reused connection."""
        progs = list(self.o.db.rpc.items())
        tcp = rep.proto == "tcp"
        cm = _port_timeout.get()
        if cm is not None:  # the RPC pass comes after the deadline's passes: one response timeout of its own
            end = asyncio.get_running_loop().time() + self.o.response_timeout
            _deadline.set(end)
            cm.reschedule(end + 0.25)
        try:
            if tcp:
                async with self.sem:
                    reader, writer = await self._connect(rep.address, rep.port, False)
                    try:
                        for prog, name in progs:
                            writer.write(_rpc_call(prog, tcp=True))
                            await asyncio.wait_for(writer.drain(), self.o.response_timeout)
                            head = await asyncio.wait_for(reader.readexactly(4), self.o.response_timeout)
                            n = int.from_bytes(head, "big") & 0x7FFFFFFF
                            if n > 4096:
                                return
                            body = await asyncio.wait_for(reader.readexactly(n), self.o.response_timeout)
                            if self._rpc_found(rep, prog, name, body):
                                return
                    finally:
                        writer.transport.abort()
            else:
                loop = asyncio.get_running_loop()
                for prog, name in progs:
                    q: asyncio.Queue[bytes] = asyncio.Queue()

                    class P(asyncio.DatagramProtocol):
                        def datagram_received(self, data: bytes, a: Any) -> None:
                            q.put_nowait(data[:4096])

                    tr, _ = await loop.create_datagram_endpoint(P, remote_addr=(rep.address, rep.port))
                    try:
                        tr.sendto(_rpc_call(prog, tcp=False))
                        body = await asyncio.wait_for(q.get(), self.o.response_timeout)
                    finally:
                        tr.close()
                    if self._rpc_found(rep, prog, name, body):
                        return
        except (ConnectFailed, asyncio.TimeoutError, TimeoutError, asyncio.IncompleteReadError, OSError):
            return

    @staticmethod
    def _rpc_found(rep: PortReport, prog: int, name: str, body: bytes) -> bool:
        import struct

        if len(body) < 24 or body[:4] != b"hprp":
            return False
        _xid, mtype, rstat, _flav, vlen = struct.unpack(">5I", body[:20])
        off = 20 + ((vlen + 3) & ~3)
        if mtype != 1 or rstat != 0 or len(body) < off + 4:
            return False
        (astat,) = struct.unpack(">I", body[off:off + 4])
        if astat == 2 and len(body) >= off + 12:  # PROG_MISMATCH: low, high
            lo, hi = struct.unpack(">2I", body[off + 4:off + 12])
        elif astat == 0:
            lo = hi = 0
        else:
            return False
        rep.rpc = {"program": prog, "name": name, "low": lo, "high": hi}
        return True

    async def scan(self, targets: list[tuple[str, int, str]],
                   on_done: Callable[[PortReport], None] | None = None) -> list[PortReport]:
        """targets: (address, port, 'tcp'|'udp'); results in the same order. `on_done` hears of each
        port as it finishes (progress bars, partial results)."""
        async def one(a: str, p: int, pr: str) -> PortReport:
            rep = await self._bounded(a, p, pr)
            if on_done is not None:
                on_done(rep)
            return rep

        return list(await asyncio.gather(*(one(a, p, pr) for a, p, pr in targets)))

    async def _bounded(self, addr: str, port: int, proto: str) -> PortReport:
        """One port within its deadline (AppOptions.port_deadline): its reads stop at the deadline
        keeping what came, and whatever still runs a moment later is cancelled. What the port
        answered until then is kept (PortReport filled as answers arrive)."""
        _port_key.set((addr, port, proto))
        limit = self.o.port_deadline
        rep = PortReport(addr, port, proto, status="open|filtered" if proto == "udp" else "open")
        self.reports.append(rep)
        if limit is None:
            await (self.scan_udp(addr, port, rep) if proto == "udp" else self.scan_tcp(addr, port, rep))
            self.finished.add(id(rep))
            return rep
        t0 = time.monotonic()
        _deadline.set(asyncio.get_running_loop().time() + limit)
        try:
            async with asyncio.timeout(limit + 0.25) as cm:
                _port_timeout.set(cm)
                await (self.scan_udp(addr, port, rep) if proto == "udp" else self.scan_tcp(addr, port, rep))
        except TimeoutError:
            rep.elapsed = time.monotonic() - t0
            rep.timed_out = True
        self.finished.add(id(rep))
        return rep

    def partial(self) -> list[PortReport]:
        """For a scan stopped half-way: the reports of the ports whose work ended, and of those still
        at work that already identified something (a match, an RPC program, TLS); in start order."""
        return [r for r in self.reports
                if id(r) in self.finished or r.matches or r.rpc is not None or r.tls is not None]


# ---------------------------------------------------------------------------- TLS facts


def _rpc_call(prog: int, *, tcp: bool) -> bytes:
    """CALL prog version 0 procedure 0 with AUTH_NONE, xid 'hprp' (RFC 5531 §9, §11 record mark)."""
    import struct

    body = b"hprp" + struct.pack(">9I", 0, 2, prog, 0, 0, 0, 0, 0, 0)
    return (struct.pack(">I", 0x80000000 | len(body)) + body) if tcp else body


def _tls_info(writer: asyncio.StreamWriter) -> dict[str, Any] | None:
    obj = writer.get_extra_info("ssl_object")
    if obj is None:
        return None
    info: dict[str, Any] = {"version": obj.version()}
    c = obj.cipher()
    if c:
        info["cipher"] = c[0]
        info["bits"] = c[2]
    der = obj.getpeercert(binary_form=True)
    if der:
        from hostprint.match.x509 import cert_facts

        info["cert"] = cert_facts(der).to_dict()
    return info


# ---------------------------------------------------------------------------- suggestions


def suggest(resp: Response, proto: str) -> list[str]:
    """Ready-to-paste rule lines for an unrecognised answer (amapcrap's idea): ours and amap 5.x."""
    head = resp.data[:24]
    rx = "".join(chr(c) if (c < 128 and chr(c).isalnum()) or c == 32 else f"\\x{c:02x}" for c in head)
    trig = "" if resp.trigger == NULL else f" trigger={resp.trigger}"
    amap_trig = "" if resp.trigger == NULL else resp.trigger
    return [f"match SERVICE{trig} m|^{rx}|s",
            f"SERVICE:{amap_trig}:{proto}::^{rx}"]


def hexdump(data: bytes, limit: int = 512) -> str:
    lines = []
    for i in range(0, min(len(data), limit), 16):
        chunk = data[i:i + 16]
        hx = " ".join(f"{b:02x}" for b in chunk)
        lines.append(f"{i:04x}: {hx:<47}  [ {''.join(chr(b) if 32 <= b < 127 else '.' for b in chunk)} ]")
    if len(data) > limit:
        lines.append(f"… {len(data) - limit} more bytes")
    return "\n".join(lines)


def apply_to_host(host: model.HostResult, reports: list[PortReport]) -> None:
    """Fill PortResult.service from reports; add distribution hints to host.os['hints']."""
    by = {(r.port, r.proto): r for r in reports if r.address == host.address}
    for p in host.ports:
        r = by.get((p.port, p.protocol))
        if r is None:
            continue
        svc = r.service()
        if svc is None:
            _keep_unidentified(p, r)
            continue
        p.service = svc
        if p.protocol == "udp" and r.status == "open" and p.state == model.OPEN_FILTERED:
            p.state, p.reason = model.OPEN, "udp-response"
        hint = r.os_hint()
        if hint is not None:
            hint.source = f"{p.port}/{p.protocol} {svc.name} banner"
            host.os.add_hint(hint)


def _keep_unidentified(p: model.PortResult, r: PortReport) -> None:
    """A port that answered but matched nothing keeps its banner and nmap's SF fingerprint."""
    from hostprint import __version__
    from hostprint.report.servicefp import fingerprint

    fp = fingerprint(p.port, p.protocol, r.responses, version=f"hostprint-{__version__}", tls=r.tls is not None)
    if fp is None:
        return
    if p.service is None:
        p.service = model.Service(name="unknown", method="port-table", confidence=0.0)
    p.service.fingerprint = fp
    p.service.banner = p.service.banner or _banner_text(r)


class ServiceScan(Technique[list[PortReport]]):
    """-sV through the contract of probes/base.py: banners, triggers and TLS on every open TCP
    port and every open or open|filtered UDP port of the up hosts."""

    name = "service"
    phase = 20
    needs_raw = False
    label = "service scan"

    def __init__(self, opts: AppOptions):
        self.opts = opts

    @classmethod
    def create(cls, options: ScanOptions) -> list[ServiceScan]:
        if not options.service_scan:
            return []
        from hostprint.signatures import version_rules
        from hostprint.signatures.sv_db import sv_db

        version_rules.load()  # a broken rule file is one line before any packet (probes/base.py)
        total = options.sv_timeout  # --sv-timeout: the whole of one port's work, not one read
        w = min(3.0, total * 0.6)  # one read waits at most 3 s, and never past the port's budget
        # up to 384 connections in flight: silent ports hold theirs for nmap's NULL wait
        return [cls(AppOptions(sv_db(options.sv_db), connect_timeout=w, response_timeout=w, banner_timeout=w,
                               retries=1, parallel=384, intensity=options.version_intensity, port_deadline=total,
                               fingerprints=True, behaviour=True))]

    async def probe(self, hosts: Sequence[model.HostResult], session: Session) -> dict[str, list[PortReport]]:
        todo = [(h.address, p.port, p.protocol) for h in hosts for p in h.ports
                if p.state == model.OPEN or (p.protocol == "udp" and p.state == model.OPEN_FILTERED)]
        if not todo:
            return {}
        task = session.progress.phase(self.label, len(todo))
        engine = self._engine = Engine(self.opts)
        reps = await engine.scan(todo, on_done=lambda _rep: session.progress.advance(task, 1))
        out: dict[str, list[PortReport]] = {}
        for r in reps:
            out.setdefault(r.address, []).append(r)
        return out

    def record(self, host: model.HostResult, result: list[PortReport]) -> None:
        apply_to_host(host, result)

    _engine: Engine | None = None  # the -sV run in progress (partial() reads it)

    def finished_ports(self) -> set[tuple[str, int, str]]:
        """(address, port, protocol) of the ports whose work ended (a stop's partial() also gives
        ports still at work that had identified something)."""
        e = self._engine
        return {(r.address, r.port, r.proto) for r in e.reports if id(r) in e.finished} if e is not None else set()

    def partial(self) -> dict[str, list[PortReport]]:
        out: dict[str, list[PortReport]] = {}
        for r in self._engine.partial() if self._engine is not None else []:
            out.setdefault(r.address, []).append(r)
        return out
