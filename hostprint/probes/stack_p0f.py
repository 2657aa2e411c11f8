"""-O against p0f's SYN+ACK signatures (`--os-db p0f`): the user's installed p0f.fp as an extra DB.

It lives beside the probe because it reads what the probe sent (the peer MSS of each SEQ probe)
to read the answers; the matching itself is match/passive.py's.

Why: p0f.fp's `[tcp:response]` section describes SYN+ACKs of systems we cannot run here (Windows
XP/7/8, FreeBSD, OpenBSD, Mac OS X, Solaris, HP-UX ...). Our -O probe already collects SYN+ACKs,
so the same file can vote on an active scan at no extra packet cost. Matching reuses the passive
matcher (hostprint.match.passive: p0f's field grammar, window-multiple rule, fuzzy rules and our
confidence scale), so a SYN+ACK gets the same label here as in `hostprint passive`.

How our probes differ from the SYNs p0f's signatures were taken with (p0f docs/README §5: SYN+ACK
signatures are gathered with the bundled p0f-sendsyn; p0f tools/p0f-sendsyn.c sends 8 SYNs with
MSS 1331, window 1337, TTL 192 and every combination of WS(5), SACK-permitted and TS(1337,0)):
- SEQ1 (WS 10, NOP, MSS 1460, TS, SACK-permitted) is the all-options case, like sendsyn's 8th SYN,
  and is the probe the label comes from. Stacks that echo only the options the peer offered
  (README §8 item 4) answer it with their full option set, as they answered sendsyn's.
- The peer MSS that p0f uses as the last window-multiple candidate (fp_tcp.c detect_win_multi:
  on a SYN+ACK, the SYN's MSS and MSS-12) is our probe's MSS: 1460 for SEQ1, not sendsyn's 1331.
  Since 1460 is already a candidate on its own (MTU 1500 over IPv4), SEQ1 adds no divisor; a
  window that is a multiple of 1331 only would be read as mss*N by p0f-with-sendsyn and not here.
- The other SEQ probes (SEQ2-SEQ6, peer MSS 1400/640/none/536/265, some without WS or SACK)
  are matched too and reported as agreement; a label that only they produce is kept as a weaker
  candidate (stacks vary their SYN+ACK with the SYN, so one system may need several signatures).
- p0f reads packets off the wire; we read the reply's bytes as the probe received them, so the
  raw_sig is p0f's (checked against `p0f -r` on captures of the same SYN+ACKs in the tests).
- sendsyn's SYNs use TTL 192 and ours TTL 64; neither changes the SYN+ACK's TTL, window or options.
"""

from __future__ import annotations

import dataclasses
import struct

from hostprint.engine import packets as P
from hostprint.engine.headers import TcpObservation, parse_tcp
from hostprint.errors import UsageError
from hostprint.match.passive import PassiveMatcher, TcpMatch, raw_signature
from hostprint.model import Evidence, OsMatch
from hostprint.probes.stack_result import SEQ_PROBES, Reply, StackResult
from hostprint.signatures.knowledge import families
from hostprint.signatures.p0f import DEFAULT_PATHS, default_path, load_p0f
from hostprint.signatures.passive_sigs import CONFIDENCE, Label, SignatureDB

SEQ_NAMES = tuple(f"SEQ{i + 1}" for i in range(len(SEQ_PROBES)))
# The MSS each SEQ probe offered (None: SEQ4 sends none); p0f's "peer MSS" for that SYN+ACK.
PEER_MSS: dict[str, int | None] = {name: next((int(v) for k, v in opts if k == P.OPT_MSS and isinstance(v, int)), None)
                                   for name, (_, opts) in zip(SEQ_NAMES, SEQ_PROBES)}

_DB_CACHE: dict[str, tuple[SignatureDB, PassiveMatcher]] = {}


def load_db() -> SignatureDB:
    """The installed p0f.fp, parsed once per process; UsageError naming the missing file. Call it
    before scanning so that a missing database fails fast."""
    return _matcher(None)[0]


def _matcher(db: SignatureDB | None) -> tuple[SignatureDB, PassiveMatcher, str]:
    """The installed p0f.fp's (cached) or the given DB's matcher, and the file it came from."""
    if db is None:
        path = default_path()
        if path is None:
            raise UsageError(f"--os-db p0f: no p0f database at {DEFAULT_PATHS[0]} (install the Debian package p0f)")
        if path not in _DB_CACHE:
            loaded = load_p0f(path)
            _DB_CACHE[path] = (loaded, PassiveMatcher(loaded))
        return *_DB_CACHE[path], path
    src = db.sources[0] if db.sources else "p0f.fp"
    path = src[src.find("(") + 1: src.rfind(")")] if "(" in src else src
    cached = _DB_CACHE.get(path)
    return db, cached[1] if cached and cached[0] is db else PassiveMatcher(db), path


_FIXED_SIZE = {P.OPT_MSS: 4, P.OPT_WS: 3, P.OPT_SACKOK: 2, P.OPT_TS: 10}  # RFC 9293, 7323, 2018


def _option_bytes(tcp: P.TCP) -> bytes:
    """The options area as received, rebuilt from the decoded list: the decoder keeps every option
    up to EOL (a body of unexpected length as raw bytes) and the non-zero bytes after EOL; the zero
    padding is implied by the data offset."""
    out = bytearray()
    for kind, val in tcp.options:
        if kind == P.OPT_EOL:
            out.append(0)
            break
        if kind == P.OPT_NOP:
            out.append(1)
        elif isinstance(val, (bytes, bytearray)):
            out += bytes((kind, 2 + len(val))) + val
        else:
            size = _FIXED_SIZE[kind] if kind in _FIXED_SIZE else 2 + 8 * len(val or ())  # type: ignore[arg-type]
            out += P.encode_tcp_options([(kind, val)])[:size]  # without encode's padding
    out += tcp.opt_trailing
    room = (tcp.data_offset - 20) if tcp.data_offset else len(out) + (-len(out) % 4)
    return bytes(out[:room]) + b"\0" * max(0, room - len(out))


def observation(ip: P.IPv4, tcp: P.TCP, raw: bytes = b"") -> TcpObservation | None:
    """p0f's view of a SYN+ACK (None when it is not one), read by the passive parser (one
    definition of p0f's fields and quirks) from the IP packet as received.

    Without those bytes (a Reply built from decoded packets only) the header is rebuilt from the
    decoded one first. One loss then: the decoder stops at an option whose length
    runs past the header, so such a reply lists the options before it plus the `bad` quirk, while
    p0f (compared with `p0f -r`) steps over MSS/WS/SACK-permitted/TS by their fixed sizes and lists
    the rest too. No p0f.fp 3.09b signature has `bad`, so the label is the same (none) either way."""
    if not isinstance(tcp, P.TCP) or not (tcp.flags & P.SYN and tcp.flags & P.ACK):
        return None
    if isinstance(raw, (bytes, bytearray)) and raw and raw[0] >> 4 == 4:
        parsed = parse_tcp(raw, 0, len(raw), 4, True)
        return parsed[0] if parsed is not None else None
    opts = _option_bytes(tcp)
    doff = 20 + len(opts)
    hdr = struct.pack("!HHIIBBHHH", tcp.sport, tcp.dport, tcp.seq & 0xFFFFFFFF, tcp.ack & 0xFFFFFFFF,
                      (doff // 4) << 4 | (tcp.reserved & 0xF), tcp.flags & 0xFF, tcp.window, 0, tcp.urg)
    seg = hdr + opts + tcp.payload
    ip4 = dataclasses.replace(ip, total_length=None, csum=0, options=ip.options[:40])
    buf = ip4.encode(len(seg)) + seg
    parsed = parse_tcp(buf, 0, len(buf), 4, True)
    if parsed is None:
        return None
    o = parsed[0]
    if tcp.opt_bad and "bad" not in o.quirks:
        o.quirks = o.quirks | {"bad"}
    return o


def label_text(lb: Label) -> str:
    return f"{'g' if lb.generic else 's'}:{lb.cls}:{lb.name}:{lb.flavor}"


def os_class(lb: Label) -> dict[str, str | None]:
    """family/vendor/generation/device_type for a p0f label, in nmap-os-db's vocabulary (the label
    names map onto families by the aliases in signatures/knowledge/families.txt, so the verdict
    groups p0f and nmap matches of one system)."""
    if lb.cls == "!":  # an application (possible in a user's file): says nothing about the OS
        return {"family": None, "vendor": None, "generation": lb.flavor.strip() or None, "device_type": None}
    fam = families().get(lb.name)
    family, vendor = (fam.name, fam.vendor) if fam else (lb.name, None)
    gen = lb.flavor.strip() or None
    if gen and gen.endswith(".x") and family != "embedded":  # Nintendo 3DS / Wii: the flavor is the product
        gen = gen[:-2] + ".X"
    dtype = (fam.device_type if fam else None) or ("general purpose" if lb.cls in ("unix", "win") else None)
    return {"family": family, "vendor": vendor, "generation": gen, "device_type": dtype}


def _kind(m: TcpMatch) -> str:
    return ("generic" if m.generic else "exact") + (", fuzzy" if m.fuzzy else "")


def p0f_matches(res: StackResult, db: SignatureDB | None = None) -> list[OsMatch]:
    """Labels for the -O SYN+ACKs, best first: the label of the first answered SEQ probe (SEQ1
    normally), then labels only other SEQ replies produced, by how many replies agree.
    Raises UsageError (one line) when no DB is given and p0f.fp is not installed."""
    _, matcher, path = _matcher(db)
    seen = [(name, o, raw_signature(o, PEER_MSS[name]), matcher.match_tcp(o, PEER_MSS[name]))
            for name, o in _observations(res)]
    if not seen:
        return []
    answered = len(seen)
    groups: dict[tuple[str, str], list[tuple[str, TcpObservation, str, TcpMatch]]] = {}
    for name, o, raw, m in seen:
        if m is not None:
            groups.setdefault((label_text(m.label), m.label.source), []).append((name, o, raw, m))
    primary = seen[0][0]
    ordered = sorted(groups.values(), key=lambda g: (g[0][0] != primary, -len(g), SEQ_NAMES.index(g[0][0])))
    out = []
    for g in ordered:
        name, o, raw, m = g[0]
        agree = [n for n, *_ in g]
        conf = CONFIDENCE[(m.generic, m.fuzzy)]
        if name != primary:  # seen only in replies to SYNs unlike sendsyn's: weighted by agreement
            conf *= len(g) / answered
        others = f"; same label from {','.join(agree[1:])}" if len(agree) > 1 else ""
        line = m.label.source.split(":", 1)[1] if ":" in m.label.source else "?"
        detail = (f"p0f.fp {path} [tcp:response] label {label_text(m.label)} (line {line}): raw_sig {raw} "
                  f"({_kind(m)}) from {name}{others} ({len(agree)}/{answered} SYN+ACKs)")
        cls = os_class(m.label)
        out.append(OsMatch(name=m.label.full, family=cls["family"], vendor=cls["vendor"], generation=cls["generation"],
                           device_type=cls["device_type"], confidence=round(conf, 3), db="p0f",
                           evidence=[Evidence("stack", detail)], line=int(line) if line.isdigit() else None,
                           data={"raw_sig": raw, "signature": m.entry.text, "probe": name, "agree": list(agree),
                                 "distance": m.distance}))
    return out


def raw_signatures(res: StackResult) -> dict[str, str]:
    """raw_sig per answered SEQ probe, for the report even when nothing in p0f.fp matches."""
    return {name: raw_signature(o, PEER_MSS[name]) for name, o in _observations(res)}


def _observations(res: StackResult) -> list[tuple[str, TcpObservation]]:
    """(probe, observation) for every SEQ probe answered by a SYN+ACK, in probe order."""
    out = []
    for name in SEQ_NAMES:
        rep = res.replies.get(name)
        if isinstance(rep, Reply) and isinstance(rep.ip, P.IPv4) and isinstance(rep.l4, P.TCP):
            o = observation(rep.ip, rep.l4, getattr(rep, "raw", b""))
            if o is not None:
                out.append((name, o))
    return out
