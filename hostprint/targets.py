"""Target specifications in nmap's syntax, -iL files, and nmap result files.

Specs: a single IPv4 address, CIDR (`198.18.0.0/24`, network and broadcast addresses
included, as nmap does; host bits are ignored), octet ranges and lists
(`198.18.1-3.1-254`, `198.18.0.1,3,5-7`, `-` or `*` for a whole octet, `N-`/`-M`
open ends) and host names (first IPv4 address from getaddrinfo, as nmap scans only
the first one; `name/24` works too).

Why the shape: each token parses to a pattern of one address family that can count,
enumerate (as integers) and test membership without expanding. The expansion loop only
sees patterns; IPv6 literals and prefixes are one more pattern class (targets6.py), so mixed
lists and exclusions work across both families. Exclusions never expand big patterns, so `--exclude 10.0.0.0/8`
costs nothing.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import socket
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol

from hostprint import targets6
from hostprint.errors import UsageError
from hostprint.ports import show_token

_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_V4ISH = re.compile(r"[0-9.,*-]+", re.ASCII)
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?", re.ASCII)
_SMALL_EXCLUDE = 1 << 16  # exclusions up to this size become one hash set


def _bad(token: str, why: str) -> UsageError:
    return UsageError(f"bad target spec '{show_token(token)}': {why}")


class _Pattern(Protocol):
    @property
    def family(self) -> int: ...

    @property
    def count(self) -> int: ...

    def ints(self) -> Iterator[int]: ...
    def __contains__(self, addr: int) -> bool: ...


@dataclass(frozen=True)
class _V4Block(targets6.AddressBlock):
    """A contiguous block: one address, a CIDR network or a resolved host name."""

    family: int = 4


@dataclass(frozen=True)
class _V4Octets:
    """nmap octet ranges: each octet an ascending range or tuple of allowed values."""

    octets: tuple[range | tuple[int, ...], ...]
    family: int = 4

    @property
    def count(self) -> int:
        n = 1
        for o in self.octets:
            n *= len(o)
        return n

    def ints(self) -> Iterator[int]:
        for a, b, c, d in itertools.product(*self.octets):
            yield a << 24 | b << 16 | c << 8 | d

    def __contains__(self, addr: int) -> bool:
        return all((addr >> shift) & 255 in values for shift, values in zip((24, 16, 8, 0), self.octets))


_FORMAT = {4: lambda a: socket.inet_ntoa(a.to_bytes(4, "big"))}


def _octet_values(text: str, token: str) -> range | tuple[int, ...]:
    values: set[int] = set()
    for item in text.split(","):
        if item in ("*", "-"):
            values.update(range(256))
            continue
        lo_s, dash, hi_s = item.partition("-")
        for part in (lo_s, hi_s):
            if part and not _DIGITS.fullmatch(part):
                raise _bad(token, f"bad octet '{show_token(item)}'")
            if part and (len(part.lstrip("0")) > 3 or int(part) > 255):
                raise _bad(token, f"octet {show_token(part)} out of range")
        if not item:
            raise _bad(token, "empty octet")
        if not dash:
            values.add(int(lo_s))
            continue
        lo, hi = int(lo_s) if lo_s else 0, int(hi_s) if hi_s else 255
        if lo > hi:
            raise _bad(token, f"octet range {item} is reversed")
        values.update(range(lo, hi + 1))
    ordered = sorted(values)
    if ordered == list(range(ordered[0], ordered[-1] + 1)):
        return range(ordered[0], ordered[-1] + 1)  # O(1) membership for big exclusions
    return tuple(ordered)


def _prefix(text: str, token: str, bits: int) -> int:
    if not _DIGITS.fullmatch(text) or len(text) > 3 or int(text) > bits:
        raise _bad(token, f"prefix '/{show_token(text)}' is not /0-/{bits}")
    return int(text)


def _block(addr: int, prefix: int) -> _V4Block:
    size = 1 << (32 - prefix)
    first = addr & ~(size - 1) & 0xFFFFFFFF
    return _V4Block(first, first + size - 1)


def _parse_ipv4(token: str, addr_part: str, prefix_s: str | None) -> _Pattern:
    parts = addr_part.split(".")
    if len(parts) != 4:
        raise _bad(token, f"expected 4 octets, got {len(parts)}")
    octets = tuple(_octet_values(p, token) for p in parts)
    single = all(_DIGITS.fullmatch(p) for p in parts)
    if prefix_s is not None:
        if not single:
            raise _bad(token, "a /prefix cannot be combined with octet ranges")
        return _block(int.from_bytes(bytes(o[0] for o in octets), "big"), _prefix(prefix_s, token, 32))
    if single:
        a = int.from_bytes(bytes(o[0] for o in octets), "big")
        return _V4Block(a, a)
    return _V4Octets(octets)


def _parse_ipv6(token: str, addr_part: str, prefix_s: str | None) -> _Pattern:
    """IPv6 literals and prefixes: hostprint/targets6.py."""
    return targets6.parse_ipv6(token, addr_part, prefix_s)


def _resolve(name: str) -> int:
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        infos = []
    if not infos:
        raise UsageError(f"cannot resolve host: {show_token(name)}")
    return int.from_bytes(socket.inet_aton(str(infos[0][4][0])), "big")


class Unresolved(UsageError):
    """A host name that does not resolve: the scan warns and goes on (nmap: "Failed to resolve")."""


@dataclass(frozen=True)
class _Named(_V4Block):
    """A resolved host name: its block, and the name the user typed for the address it resolved to."""

    name: str = ""
    address: int = 0


def _parse_hostname(token: str, name: str, prefix_s: str | None, resolve: bool) -> _Pattern:
    if len(name) > 253 or not _HOSTNAME.fullmatch(name):
        raise _bad(token, "not an address, range or host name")
    prefix = _prefix(prefix_s, token, 32) if prefix_s is not None and targets6.name_family() == 4 else 32
    if not resolve:
        raise _bad(token, "host names need name resolution, which is turned off")
    if targets6.name_family() == 6:  # -6: the name's IPv6 address
        named6 = targets6.parse_name6(token, name, prefix_s)
        if named6 is None:
            raise Unresolved(f"Failed to resolve \"{show_token(name)}\" to an IPv6 address")
        return named6
    try:
        addr = _resolve(name)
    except UsageError:
        raise Unresolved(f"Failed to resolve \"{show_token(name)}\"") from None
    b = _block(addr, prefix)
    return _Named(b.first, b.last, name=name.rstrip("."), address=addr)


def parse_target(token: str, *, resolve: bool = True) -> _Pattern:
    """One whitespace-free spec token -> pattern. Dispatch by shape, so a typo like
    198.18.0.300 is reported as a bad octet, never sent to DNS."""
    addr_part, slash, prefix_s = token.partition("/")
    prefix = prefix_s if slash else None
    if not addr_part:
        raise _bad(token, "empty address")
    if ":" in addr_part:
        return _parse_ipv6(token, addr_part, prefix)
    if _V4ISH.fullmatch(addr_part):
        return _parse_ipv4(token, addr_part, prefix)
    return _parse_hostname(token, addr_part, prefix, resolve)


class _Excluder:
    """Membership test over exclusion patterns: small ones merged into one set."""

    def __init__(self, patterns: Iterable[_Pattern]):
        self.sets: dict[int, set[int]] = {}
        self.big: dict[int, list[_Pattern]] = {}
        for pat in patterns:
            if pat.count <= _SMALL_EXCLUDE:
                self.sets.setdefault(pat.family, set()).update(pat.ints())
            else:
                self.big.setdefault(pat.family, []).append(pat)

    def __call__(self, family: int, addr: int) -> bool:
        return addr in self.sets.get(family, ()) or any(addr in p for p in self.big.get(family, ()))


def _tokens(specs: Iterable[str]) -> Iterator[str]:
    if isinstance(specs, str):  # a lone string would otherwise iterate by character
        specs = [specs]
    for spec in specs:
        yield from str(spec).split()


def expand_targets(
    specs: Iterable[str], *, exclude: Iterable[str] = (), resolve: bool = True, limit: int = 1 << 24,
    names: dict[str, str] | None = None, on_unresolved: Callable[[str], None] | None = None,
) -> list[str]:
    """Addresses in input order, each once, minus `exclude` (same syntax). `names` receives the
    host names the user typed (address -> name, for the address the name resolved to); with
    `on_unresolved` a name that does not resolve is reported there and skipped, not an error."""
    excluded = _Excluder(parse_target(t, resolve=resolve) for t in _tokens(exclude))
    seen: dict[int, set[int]] = {}
    out: list[str] = []
    for token in _tokens(specs):
        try:
            pat = parse_target(token, resolve=resolve)
        except Unresolved as e:
            if on_unresolved is None:
                raise
            on_unresolved(str(e))
            continue
        fmt = getattr(pat, "fmt", None) or _FORMAT[pat.family]  # IPv6 blocks format themselves (zones)
        if names is not None and isinstance(pat, (_Named, targets6.Named6)) and not excluded(pat.family, pat.address):
            names.setdefault(fmt(pat.address), pat.name)
        if pat.count > limit:
            raise UsageError(f"target spec '{show_token(token)}' has {pat.count} addresses, over the limit of {limit}")
        family_seen = seen.setdefault(pat.family, set())
        for addr in pat.ints():
            if addr in family_seen or excluded(pat.family, addr):
                continue
            family_seen.add(addr)
            out.append(fmt(addr))
        if len(out) > limit:
            raise UsageError(f"too many targets: over the limit of {limit} at spec '{show_token(token)}'")
    return out


def count_targets(specs: Iterable[str]) -> int:
    """How many addresses `specs` name, without expanding or resolving anything (a host name
    counts as its /prefix block). For the "more than a million addresses?" question."""
    total = 0
    for token in _tokens(specs):
        addr_part, slash, prefix_s = token.partition("/")
        if addr_part and not _V4ISH.fullmatch(addr_part) and ":" not in addr_part:
            if targets6.name_family() == 6:
                total += 1 << (128 - targets6.prefix_len(prefix_s, token)) if slash else 1
                continue
            total += 1 << (32 - _prefix(prefix_s, token, 32)) if slash else 1
            continue
        total += parse_target(token, resolve=False).count
    return total


def split_target_list(text: str) -> list[str]:
    """Split an nmap-style `--exclude a,b,c` value. nmap splits on every comma, which
    breaks octet lists; we split only where the next piece starts a new address
    (contains a dot, colon or letter), so `198.18.0.1,3,host2` -> two specs."""
    specs: list[str] = []
    for word in text.split():
        pieces: list[str] = []
        for piece in word.split(","):
            if pieces and not re.search(r"[.:A-Za-z]", piece):
                pieces[-1] += "," + piece
            else:
                pieces.append(piece)
        specs += pieces
    return [s for s in specs if s]


# ---- files: -iL target lists and nmap -oG / -oX results -------------------------------

_GREP_HOST = re.compile(r"^Host: (\S+) \(([^)]*)\)\t(.*)$", re.M)
_GREP_PORT_SPLIT = re.compile(r", (?=\d+/[^/]*/[a-z]+/)")


def _read_text(path: str, what: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except UnicodeDecodeError:
        raise UsageError(f"{what} '{show_token(path)}' is not UTF-8 text") from None
    except OSError as e:
        raise UsageError(f"cannot read {what} '{show_token(path)}': {e.strerror or e}") from None


def _xml_root(text: str, path: str) -> ET.Element:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        line = e.position[0] if getattr(e, "position", None) else "?"
        raise UsageError(f"bad nmap XML in '{show_token(path)}' line {line}: {str(e).split(':')[0]}") from None
    if root.tag != "nmaprun":
        raise UsageError(f"'{show_token(path)}' is XML but not nmap -oX output (root <{show_token(root.tag)}>)")
    return root


def _xml_address(host: ET.Element) -> str | None:
    for addr in host.findall("address"):
        if addr.get("addrtype") in ("ipv4", "ipv6") and addr.get("addr"):
            return addr.get("addr")
    return None


def _grep_fields(rest: str) -> dict[str, str]:
    fields = {}
    for field in rest.split("\t"):
        key, sep, value = field.partition(": ")
        if sep:
            fields[key] = value
    return fields


def _looks_xml(text: str) -> bool:
    return text.lstrip().startswith("<")


def read_target_file(path: str) -> list[str]:
    """Specs from an -iL file ('-' is stdin). Plain files: whitespace-separated specs,
    `#` to end of line is a comment. nmap -oG and -oX output is recognised and its
    hosts that were up are taken, so one scan's live hosts can feed the next."""
    text = _read_text(path, "target file")
    if _looks_xml(text):
        hosts = []
        for host in _xml_root(text, path).iter("host"):
            status = host.find("status")
            addr = _xml_address(host)
            if addr and status is not None and status.get("state") == "up":
                hosts.append(addr)
        return list(dict.fromkeys(hosts))
    if _GREP_HOST.search(text):
        hosts = []
        for m in _GREP_HOST.finditer(text):
            fields = _grep_fields(m[3])
            if fields.get("Status") == "Up" or "Ports" in fields:
                hosts.append(m[1])
        return list(dict.fromkeys(hosts))
    specs: list[str] = []
    for line in text.splitlines():
        specs += line.split("#", 1)[0].split()
    return specs


def _port_number(text: str | None, path: str) -> int:
    if text is None or not _DIGITS.fullmatch(text) or len(text) > 5 or int(text) > 65535:
        raise UsageError(f"bad port '{show_token(str(text))}' in nmap results '{show_token(path)}'")
    return int(text)


def read_nmap_results(path: str) -> dict[str, list[tuple[int, str, str, str]]]:
    """address -> [(port, proto, state, service_name)] from nmap -oG or -oX output.
    Only hosts with at least one listed port appear; service_name is '' when nmap
    gave none. Ports nmap folded into "Ignored State" / <extraports> are not listed
    by nmap and so not here either."""
    text = _read_text(path, "nmap results file")
    results: dict[str, list[tuple[int, str, str, str]]] = {}
    if _looks_xml(text):
        for host in _xml_root(text, path).iter("host"):
            addr = _xml_address(host)
            if not addr:
                continue
            for port in host.findall("ports/port"):
                state = port.find("state")
                service = port.find("service")
                results.setdefault(addr, []).append((
                    _port_number(port.get("portid"), path),
                    port.get("protocol", ""),
                    state.get("state", "") if state is not None else "",
                    service.get("name", "") if service is not None else "",
                ))
        return results
    if not _GREP_HOST.search(text):
        raise UsageError(f"'{show_token(path)}' is neither nmap -oG nor -oX output")
    for m in _GREP_HOST.finditer(text):
        ports = _grep_fields(m[3]).get("Ports")
        if not ports:
            continue
        for entry in _GREP_PORT_SPLIT.split(ports):
            # port/state/protocol/owner/service/rpc_info/version/
            f = entry.split("/")
            if len(f) < 5:
                raise UsageError(f"bad port entry '{show_token(entry)}' in nmap results '{show_token(path)}'")
            results.setdefault(m[1], []).append((_port_number(f[0], path), f[2], f[1], f[4]))
    return results


# ---- --resume: the targets an interrupted scan already finished ---------------------------


@dataclass
class ResumeState:
    """What an interrupted scan's output says: its command line and the hosts it finished."""

    args: list[str]
    hosts: list  # list[model.HostResult]
    path: str
    run_id: str | None = None  # the interrupted run's id (-oJ, inventory): the resumed run keeps it


def _host_from_record(d: dict) -> object:
    """A HostResult from one -oJ record (the README's schema)."""
    from hostprint import model

    def svc(s: dict | None) -> model.Service | None:
        if not isinstance(s, dict):
            return None
        known = {f for f in model.Service.__dataclass_fields__}
        return model.Service(**{k: v for k, v in s.items() if k in known})

    ports = [model.PortResult(int(p["port"]), str(p.get("protocol", "tcp")), str(p.get("state", "")),
                              str(p.get("reason", "")), p.get("reason_ttl"), svc(p.get("service")))
             for p in d.get("ports") or [] if isinstance(p, dict) and "port" in p]
    extra = [model.ExtraPorts(str(e.get("state", "")), int(e.get("count", 0)), dict(e.get("reasons") or {}),
                              e.get("protocol")) for e in d.get("extraports") or [] if isinstance(e, dict)]
    return model.HostResult(
        address=str(d["address"]), status=str(d.get("status", "unknown")), reasons=list(d.get("reasons") or []),
        hostname=d.get("hostname"), mac=d.get("mac"), distance=d.get("distance"), rtt_us=d.get("rtt_us"),
        ports=ports, extraports=extra, os=model.OsEvidence.from_dict(d.get("os") or {}), sequence=d.get("sequence") or {},
        hostnames=[h for h in d.get("hostnames") or [] if isinstance(h, dict)],
        warnings=[w for w in d.get("warnings") or [] if isinstance(w, str)],
        trace=[t for t in d.get("trace") or [] if isinstance(t, dict)])


def _xml_partial(text: str, path: str) -> tuple[ET.Element | None, list[ET.Element]]:
    """<nmaprun> and its complete <host> elements, from XML an interrupted scan may have cut off."""
    parser: Any = ET.XMLPullParser(events=("start", "end"))
    root: Any = None
    hosts: list[Any] = []

    def take() -> None:
        nonlocal root
        for event, el in parser.read_events():
            if event == "start" and el.tag == "nmaprun" and root is None:
                root = el
            elif event == "end" and el.tag == "host":
                hosts.append(el)

    try:
        parser.feed(text)
        take()
    except ET.ParseError:
        take()
    if root is None:
        raise UsageError(f"--resume: '{show_token(path)}' is not nmap -oX output")
    return root, hosts


def _host_from_xml(el: ET.Element) -> object:
    from hostprint import model

    addr = _xml_address(el) or ""
    st = el.find("status")
    status = st.get("state", "unknown") if st is not None else "unknown"
    reason = st.get("reason") if st is not None else None
    h = model.HostResult(addr, status, [reason] if reason else [])
    for hn in el.findall("hostnames/hostname"):
        if hn.get("name"):
            h.add_hostname(hn.get("name", ""), hn.get("type", "PTR"))
    for a in el.findall("address"):
        if a.get("addrtype") == "mac":
            h.mac = (a.get("addr") or "").lower() or None
    for p in el.findall("ports/port"):
        pst = p.find("state")
        sv = p.find("service")
        service = None
        if sv is not None:
            service = model.Service(name=sv.get("name"), product=sv.get("product"), version=sv.get("version"),
                                    extrainfo=sv.get("extrainfo"), method="port-table" if sv.get("method") == "table"
                                    else "banner", cpe=[c.text or "" for c in sv.findall("cpe")])
        ttl = pst.get("reason_ttl") if pst is not None else None
        h.ports.append(model.PortResult(_port_number(p.get("portid"), "--resume"), p.get("protocol", "tcp"),
                                        pst.get("state", "") if pst is not None else "",
                                        pst.get("reason", "") if pst is not None else "",
                                        int(ttl) if ttl and ttl.isdigit() and int(ttl) else None, service))
    for e in el.findall("ports/extraports"):
        reasons = {r.get("reason", ""): int(r.get("count", "0")) for r in e.findall("extrareasons")}
        proto = next((r.get("proto") for r in e.findall("extrareasons") if r.get("proto")), None)
        h.extraports.append(model.ExtraPorts(e.get("state", ""), int(e.get("count", "0")), reasons, proto))
    d = el.find("distance")
    if d is not None and (d.get("value") or "").isdigit():
        h.distance = int(d.get("value", "0"))
    return h


def _command_words(line: str) -> list[str]:
    import shlex

    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def read_resume(path: str) -> ResumeState:
    """The command line and finished hosts of an interrupted scan's -oG, -oX or -oJ output."""
    import json

    from hostprint import model

    text = _read_text(path, "--resume file")
    if _looks_xml(text):
        root, els = _xml_partial(text, path)
        assert root is not None
        return ResumeState(_command_words(root.get("args", "")), [_host_from_xml(e) for e in els
                                                                  if not (e.get("comment") or "").startswith("incomplete")], path)
    if text.lstrip().startswith("{"):
        hosts = []
        args: list[str] = []
        run_id = None
        for ln in text.splitlines():
            try:
                d = json.loads(ln)
            except ValueError:
                continue  # a line cut off by the interruption
            if not isinstance(d, dict) or "address" not in d or d.get("type") not in (None, "host"):
                continue
            args = list((d.get("scan") or {}).get("args") or args)
            run_id = (d.get("scan") or {}).get("id") or run_id
            if not d.get("incomplete"):  # a host the interruption cut short is probed again
                hosts.append(_host_from_record(d))
        return ResumeState(args, hosts, path, run_id)
    m = re.search(r"^# \S+ \S+ scan initiated .*? as: (.*)$", text, re.M)
    if not m and not _GREP_HOST.search(text):
        raise UsageError(f"--resume: '{show_token(path)}' is neither -oG, -oX nor -oJ output")
    args = _command_words(m[1]) if m else []
    by: dict[str, object] = {}
    for g in _GREP_HOST.finditer(text):
        fields = _grep_fields(g[3])
        if "Incomplete" in fields:  # cut short by the interruption: probed again
            continue
        h = by.get(g[1])
        if h is None:
            h = by[g[1]] = model.HostResult(g[1], "up" if fields.get("Status", "Up") == "Up" else "down")
            if g[2]:
                h.add_hostname(g[2], "PTR")  # type: ignore[attr-defined]
        if "Ports" in fields:
            for entry in _GREP_PORT_SPLIT.split(fields["Ports"]):
                f = entry.split("/")
                if len(f) >= 5:
                    name = f[4].rstrip("?") or None
                    h.ports.append(model.PortResult(_port_number(f[0], path), f[2], f[1], "",  # type: ignore[attr-defined]
                                                    service=model.Service(name=name) if name else None))
    return ResumeState(args, list(by.values()), path)


# ---- random targets (-iR) ------------------------------------------------------------------------


def _in(intervals: tuple[tuple[int, int], ...], starts: list[int], x: int) -> bool:
    import bisect

    i = bisect.bisect_right(starts, x) - 1
    return i >= 0 and x <= intervals[i][1]


def random_targets(n: int, *, seed: int | None = None, exclude: Iterable[str] = (), family: int = 4,
                   max_tries: int | None = None) -> list[str]:
    """`n` distinct random addresses of `family` that are in no IANA special-purpose block, not
    multicast, not unallocated (IPv6: drawn only from IANA's allocations to the RIRs; IPv4 has no
    unallocated unicast space left) and not in `exclude` (target specs, as --exclude; IPv6
    prefixes too). The same `seed` gives the same list. Sends nothing, resolves nothing but the
    names in `exclude`. The DB: signatures/address_space.txt."""
    import random

    from hostprint.signatures.address_space import allocated, merge, never

    if family not in (4, 6):
        raise UsageError(f"bad address family {family}: 4 or 6")
    rng = random.Random(seed)
    bad = never(family)
    starts = [lo for lo, _ in bad]
    v4_excl: list[str] = []
    v6_excl: list[tuple[int, int]] = []
    for tok in _tokens(exclude):
        if ":" in tok:
            try:
                net = ipaddress.IPv6Network(tok, strict=False)
            except ValueError:
                raise _bad(tok, "not an IPv6 address or prefix") from None
            v6_excl.append((int(net.network_address), int(net.broadcast_address)))
        else:
            v4_excl.append(tok)
    user = _Excluder(parse_target(t) for t in v4_excl)
    v6_user = merge(v6_excl)
    v6_starts = [lo for lo, _ in v6_user]
    pools = allocated(6) if family == 6 else ((0, (1 << 32) - 1),)
    weights = [hi - lo + 1 for lo, hi in pools]
    out: list[str] = []
    seen: set[int] = set()
    tries = 0
    limit = max_tries if max_tries is not None else 1000 * n + 100_000
    while len(out) < n:
        tries += 1
        if tries > limit:
            raise UsageError(f"-iR: found only {len(out)} of {n} addresses after {limit:,} draws; "
                             "the exclusions leave too little space")
        lo, hi = rng.choices(pools, weights)[0] if len(pools) > 1 else pools[0]
        a = rng.randint(lo, hi)
        if a in seen or _in(bad, starts, a):
            continue
        if family == 4 and user(4, a):
            continue
        if family == 6 and v6_user and _in(v6_user, v6_starts, a):
            continue
        seen.add(a)
        out.append(socket.inet_ntoa(a.to_bytes(4, "big")) if family == 4 else str(ipaddress.IPv6Address(a)))
    return out
