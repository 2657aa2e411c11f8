"""-O SYN+ACKs against the installed p0f.fp (`--os-db p0f`), checked against p0f itself.

Two kinds of evidence: SYN+ACKs we build byte by byte for stacks we cannot run here (Windows,
FreeBSD, Mac OS X, Solaris, OpenBSD: shapes from their p0f.fp signatures), written to a pcap with
the SYN they answer and read by the real `p0f -r`; and SYN+ACKs of real Linux kernels in a lab,
probed by `hostprint scan -O` and captured with tcpdump, read by both p0f and us.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import needs_root
from hostprint.engine import packets as P
from hostprint.engine import pcapfile as PF
from hostprint.errors import UsageError
from hostprint.probes import stack_p0f
from hostprint.probes.stack import SEQ_PROBES, Reply, StackResult
from hostprint.probes.stack_p0f import SEQ_NAMES, raw_signatures
from hostprint.probes.stack_p0f import p0f_matches as _p0f_matches
from hostprint.signatures.p0f import default_path, load_p0f

US, THEM = "198.18.0.1", "198.18.0.20"
MAC_US, MAC_THEM = b"\x02\0\0\0\0\x01", b"\x02\0\0\0\0\x14"


def p0f_matches(*args):
    """The typed matches in their JSON form (what -oJ shows), for readable assertions."""
    return [m.to_dict() for m in _p0f_matches(*args)]


def need_p0f_db() -> str:
    path = default_path()
    if path is None:
        pytest.skip("no p0f.fp installed (Debian package p0f)")
    return path


def need_p0f_binary() -> str:
    exe = shutil.which("p0f") or ("/usr/sbin/p0f" if os.path.exists("/usr/sbin/p0f") else None)
    if exe is None:
        pytest.skip("p0f not installed")
    return exe


def synack(*, window: int, opts: list, ttl: int = 64, df: bool = True, ipid: int = 0x1234, sport: int = 80,
           dport: int = 40000, flags: int = P.SYN | P.ACK, payload: bytes = b"") -> bytes:
    ip = P.IPv4(socket.inet_aton(THEM), socket.inet_aton(US), ttl=ttl, id=ipid, df=df)
    return P.build_ip(ip, P.TCP(sport, dport, 0x11111111, 0x22222223, flags, window, 0, opts, payload))


def result(keep_raw: bool = True, **by_probe: bytes) -> StackResult:
    """A StackResult as the probe leaves it: replies by probe name, decoded and (keep_raw) as
    received; without the bytes the module rebuilds the header from the decoded packet."""
    res = StackResult()
    for name, raw in by_probe.items():
        ip, l4 = P.decode_ip_packet(raw)
        res.replies[name] = Reply(0.0, ip, l4, raw if keep_raw else b"")
    return res


M, N, W, S, T, E = P.OPT_MSS, P.OPT_NOP, P.OPT_WS, P.OPT_SACKOK, P.OPT_TS, P.OPT_EOL
# SYN+ACK shapes of stacks we cannot run here, each built to fit one p0f.fp [tcp:response] line
# (p0f 3.09b), plus one that fits none; the p0f label is what real p0f must say too.
SHAPES = {
    # "s:win:Windows:7 or 8"  sig *:128:0:*:8192,8:mss,nop,ws,nop,nop,sok:df,id+:0
    "win7": (dict(window=8192, ttl=128, opts=[(M, 1460), (N, None), (W, 8), (N, None), (N, None), (S, None)]),
             "Windows 7 or 8"),
    # same without DF: df and id+ vanish -> p0f's fuzzy match
    "win7-nodf": (dict(window=8192, ttl=128, df=False,
                       opts=[(M, 1460), (N, None), (W, 8), (N, None), (N, None), (S, None)]), "Windows 7 or 8"),
    # "s:win:Windows:XP"  sig *:128:0:*:65535,0:mss,nop,nop,sok:df,id+:0, seen 3 hops away
    "winxp": (dict(window=65535, ttl=125, opts=[(M, 1460), (N, None), (N, None), (S, None)]), "Windows XP"),
    # "s:unix:FreeBSD:9.x"  sig *:64:0:*:65535,6:mss,nop,ws,sok,ts:df,id+:0
    "fbsd9": (dict(window=65535, opts=[(M, 1460), (N, None), (W, 6), (S, None), (T, (12345, 0xFFFFFFFF))]),
              "FreeBSD 9.x"),
    # "s:unix:Mac OS X:10.x"  sig *:64:0:*:65535,0:mss,nop,ws,sok,eol+1:df,id+:0 (EOL padding)
    "macosx": (dict(window=65535, opts=[(M, 1460), (N, None), (W, 0), (S, None), (E, None)]), "Mac OS X 10.x"),
    # "s:unix:Solaris:10"  sig *:64:0:*:mss*37,0:nop,nop,ts,mss,nop,ws:df,id+:0
    "sol10": (dict(window=37 * 1460, opts=[(N, None), (N, None), (T, (777, 0xFFFFFFFF)), (M, 1460), (N, None),
                                            (W, 0)]), "Solaris 10"),
    # "s:unix:OpenBSD:5.x"  sig *:64:0:1460:16384,3:mss,nop,ws,nop,nop,ts:df,id+:0
    "obsd5": (dict(window=16384, opts=[(M, 1460), (N, None), (W, 3), (N, None), (N, None), (T, (99, 0xFFFFFFFF))]),
              "OpenBSD 5.x"),
    # "s:unix:Linux:3.x"  sig *:64:0:*:mss*10,*:mss,sok,ts,nop,ws:df:0 (IP ID 0 with DF, as Linux sends)
    "linux3": (dict(window=10 * 1448, ipid=0, opts=[(M, 1460), (S, None), (T, (5, 0xFFFFFFFF)), (N, None), (W, 7)]),
               "Linux 3.x"),
    # a modern Linux SYN+ACK (window 65160 = 45 x 1448): no p0f.fp line fits
    "linux6": (dict(window=65160, ipid=0, opts=[(M, 1460), (S, None), (T, (5, 0xFFFFFFFF)), (N, None), (W, 7)]),
               None),
    # non-zero bytes after EOL (quirk opt+) and a SYN+ACK carrying data (payload class +): no label,
    # but the same raw_sig as p0f's (the rebuilt options area and payload are read like p0f reads them)
    "opt+": (dict(window=65535, opts=[(M, 1460), (E, None), (N, None), (N, None), (N, None)]), None),
    "payload": (dict(window=8192, ttl=128, payload=b"hello",
                     opts=[(M, 1460), (N, None), (W, 8), (N, None), (N, None), (S, None)]), None),
}


def test_windows_synack_matches_p0f_windows_label():
    need_p0f_db()
    ms = p0f_matches(result(SEQ1=synack(**SHAPES["win7"][0])))
    top = ms[0]
    assert top["name"] == "Windows 7 or 8" and top["family"] == "Windows" and top["vendor"] == "Microsoft"
    assert top["generation"] == "7 or 8" and top["device_type"] == "general purpose"
    assert top["raw_sig"] == "4:128+0:0:1460:8192,8:mss,nop,ws,nop,nop,sok:df,id+:0"
    assert top["confidence"] == stack_p0f.CONFIDENCE[(False, False)] and top["distance"] == 0
    d = top["evidence"][0]
    assert d["method"] == "stack" and "[tcp:response] label s:win:Windows:7 or 8" in d["detail"]
    assert "(exact)" in d["detail"] and default_path() in d["detail"]


def test_fuzzy_and_specific_rank_and_agreement():
    """SEQ1 decides the first label; a label only other replies give is kept, weighted by how
    many replies agree; fuzzy < exact in confidence."""
    need_p0f_db()
    fuzzy = p0f_matches(result(SEQ1=synack(**SHAPES["win7-nodf"][0])))
    assert fuzzy[0]["name"] == "Windows 7 or 8" and "fuzzy" in fuzzy[0]["evidence"][0]["detail"]
    assert fuzzy[0]["confidence"] < p0f_matches(result(SEQ1=synack(**SHAPES["win7"][0])))[0]["confidence"]
    lin = synack(**SHAPES["linux3"][0])
    ms = p0f_matches(result(SEQ1=synack(**SHAPES["win7"][0]), SEQ2=lin, SEQ3=lin, SEQ6=synack(**SHAPES["linux6"][0])))
    assert [m["name"] for m in ms] == ["Windows 7 or 8", "Linux 3.x"]
    assert ms[1]["agree"] == ["SEQ2", "SEQ3"] and ms[1]["confidence"] == pytest.approx(0.9 * 2 / 4, abs=1e-3)
    assert ms[1]["family"] == "Linux" and ms[1]["vendor"] == "Linux" and ms[1]["generation"] == "3.X"
    # no SEQ1 answer: the first answered probe leads
    assert p0f_matches(result(SEQ3=lin))[0]["probe"] == "SEQ3"


def test_label_classes():
    from hostprint.signatures.passive_sigs import Label

    def cls(name: str, flavor: str, c: str = "unix") -> tuple:
        d = stack_p0f.os_class(Label(False, c, name, flavor, "p0f.fp:1"))
        return d["family"], d["vendor"], d["generation"], d["device_type"]

    assert cls("Mac OS X", "10.x") == ("Mac OS X", "Apple", "10.X", "general purpose")
    assert cls("Solaris", "10") == ("Solaris", "Oracle", "10", "general purpose")
    assert cls("FreeBSD", "9.x") == ("FreeBSD", "FreeBSD", "9.X", "general purpose")
    assert cls("OpenVMS", "7.x", "other") == ("OpenVMS", "HP", "7.X", None)
    assert cls("Nintendo", "Wii", "other") == ("embedded", "Nintendo", "Wii", "game console")
    assert cls("MacOS X", "10.9 or newer") == ("Mac OS X", "Apple", "10.9 or newer", "general purpose")
    assert cls("Plan9", "4")[:2] == ("Plan9", None)
    assert cls("nginx", "1.x", "!") == (None, None, "1.x", None)  # an application, not an OS


def test_missing_db_is_one_line_usage_error(monkeypatch):
    monkeypatch.setattr(stack_p0f, "default_path", lambda: None)
    with pytest.raises(UsageError) as e:
        p0f_matches(result(SEQ1=synack(**SHAPES["win7"][0])))
    assert "/etc/p0f/p0f.fp" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UsageError):
        stack_p0f.load_db()


def test_explicit_db(tmp_path):
    """A caller's own DB (e.g. a user file) is used as given and named in the evidence."""
    f = tmp_path / "mine.fp"
    f.write_text("classes = win,unix,other\n[tcp:response]\nlabel = s:unix:TestOS:1.x\n"
                 "sig = *:64:0:*:65160,7:mss,sok,ts,nop,ws:df:0\n")
    ms = p0f_matches(result(SEQ1=synack(**SHAPES["linux6"][0])), load_p0f(f))
    assert ms[0]["name"] == "TestOS 1.x" and str(f) in ms[0]["evidence"][0]["detail"]


def _malformed() -> dict[str, bytes]:
    base = synack(**SHAPES["win7"][0])
    ihl = 20
    bad_len = bytearray(base)  # MSS option claiming length 40: runs past the header
    bad_len[ihl + 21] = 40
    short_mss = synack(window=8192, opts=[(M, 1460)])
    short_mss = bytearray(short_mss)
    short_mss[ihl + 21] = 3  # MSS option of length 3
    trailing = synack(window=65535, opts=[(M, 1460), (E, None), (N, None), (N, None), (N, None)])
    return {
        "bad-length": bytes(bad_len),
        "mss-len-3": bytes(short_mss),
        "opt+": trailing,  # non-zero bytes after EOL
        "rst": synack(window=0, opts=[], flags=P.RST | P.ACK),
        "payload": synack(window=8192, opts=[(M, 1460)], payload=b"hello"),
        "zero-window-no-opts": synack(window=0, opts=[], ttl=1, df=False, ipid=0),
        "all-quirks": synack(window=1, opts=[(W, 200), (T, (0, 5))], flags=P.SYN | P.ACK | P.URG | P.PSH | P.ECE),
    }


@pytest.mark.parametrize("keep_raw", [True, False], ids=["as-received", "rebuilt"])
def test_malformed_replies_do_not_crash(keep_raw: bool):
    need_p0f_db()
    pk = _malformed()
    res = result(keep_raw, **dict(zip(SEQ_NAMES, list(pk.values())[:6])))
    p0f_matches(res)
    sigs = raw_signatures(res)
    assert "bad" in sigs["SEQ1"] and "bad" in sigs["SEQ2"] and "opt+" in sigs["SEQ3"], sigs
    assert "SEQ4" not in sigs  # a RST is not a SYN+ACK
    assert sigs["SEQ5"].endswith(":+")  # payload class
    ip, l4 = P.decode_ip_packet(pk["all-quirks"])
    o = stack_p0f.observation(ip, l4, pk["all-quirks"] if keep_raw else b"")
    assert {"exws", "ts1-", "urgf+", "pushf+", "ecn"} <= o.quirks
    # replies that are not TCP at all (ICMP, an unreassembled fragment), or junk objects
    odd = StackResult(replies={"SEQ1": Reply(0.0, P.IPv4(), P.ICMP(P.ICMP_UNREACH, 3)),
                               "SEQ2": Reply(0.0, P.IPv4(frag=5), b"\x00\x50"),
                               "SEQ3": Reply(0.0, None, None)})  # type: ignore[arg-type]
    assert p0f_matches(odd) == [] and raw_signatures(odd) == {}


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=20, max_size=120), st.integers(0, 255), st.booleans())
def test_random_options_and_headers_never_crash(tail: bytes, ttl: int, df: bool):
    if default_path() is None:
        return
    ip = P.IPv4(socket.inet_aton(THEM), socket.inet_aton(US), ttl=ttl, df=df)
    hdr = bytearray(P.build_ip(ip, P.TCP(80, 40000, 1, 2, P.SYN | P.ACK, 1000)))
    doff = min(60, 20 + (len(tail) // 4) * 4)
    hdr[32] = (doff // 4) << 4 | (tail[0] & 0xF)
    raw = bytes(hdr) + tail
    raw = raw[:2] + len(raw).to_bytes(2, "big") + raw[4:]
    try:
        ip2, l4 = P.decode_ip_packet(raw)
    except P.DecodeError:
        return
    for res in (StackResult(replies={"SEQ1": Reply(0.0, ip2, l4, raw)}), StackResult(replies={"SEQ1": Reply(0.0, ip2, l4)})):
        for m in p0f_matches(res):
            assert m["raw_sig"] and m["name"]


# --------------------------------------------------------------------------- real p0f on our bytes


def _eth(src: str, dst: str, raw: bytes) -> bytes:
    return P.Ethernet(MAC_US if src == US else MAC_THEM, MAC_THEM if src == US else MAC_US, P.ETH_P_IP).encode() + raw


def _p0f_log(exe: str, pcap: Path) -> list[dict[str, str]]:
    log = pcap.with_suffix(".log")
    log.unlink(missing_ok=True)
    subprocess.run([exe, "-r", str(pcap), "-o", str(log)], check=True, capture_output=True, timeout=60)
    return [dict(kv.split("=", 1) for kv in line.split("] ", 1)[1].split("|") if "=" in kv)
            for line in log.read_text().splitlines()]


def test_constructed_synacks_agree_with_real_p0f(tmp_path):
    """Each shape answers a SEQ1-shaped SYN in its own flow; p0f reads the pcap."""
    need_p0f_db()
    exe = need_p0f_binary()
    pcap = tmp_path / "shapes.pcap"
    win, opts = SEQ_PROBES[0]
    ours = {}
    with PF.PcapWriter(pcap) as w:
        for i, (key, (kw, _)) in enumerate(SHAPES.items()):
            cport = 41000 + i
            syn = P.build_ip(P.IPv4(socket.inet_aton(US), socket.inet_aton(THEM), ttl=64),
                             P.TCP(cport, 80, 0x22222222, 0, P.SYN, win, 0, opts))
            sa = synack(**kw, dport=cport)
            w.write(1_700_000_000_000_000_000 + i * 10_000_000, _eth(US, THEM, syn))
            w.write(1_700_000_000_000_000_000 + i * 10_000_000 + 100_000, _eth(THEM, US, sa))
            res = result(SEQ1=sa)
            ms = p0f_matches(res)
            rebuilt = result(False, SEQ1=sa)
            assert p0f_matches(rebuilt) == ms and raw_signatures(rebuilt) == raw_signatures(res), key
            ours[f"{US}/{cport}"] = (key, ms[0] if ms else None, raw_signatures(res)["SEQ1"])
    theirs = {f["cli"]: f for f in _p0f_log(exe, pcap) if f["mod"] == "syn+ack"}
    assert set(theirs) == set(ours)
    for cli, (key, m, raw) in ours.items():
        f = theirs[cli]
        expected = SHAPES[key][1]
        assert f["raw_sig"] == raw, (key, f, raw)
        assert (None if f["os"] == "???" else f["os"]) == expected, (key, f)
        assert (m["name"] if m else None) == expected, (key, m)
        if m:
            assert ("fuzzy" in f["params"]) == ("fuzzy" in m["evidence"][0]["detail"]), (key, f, m)
            assert int(f["dist"]) == m["distance"], (key, f, m)


# --------------------------------------------------------------------------- real Linux kernels

STOCK, RWND10 = "198.18.0.30", "198.18.0.31"


@pytest.fixture(scope="module")
def p0flab(tmp_path_factory):
    """Two Linux listeners: stock, and one whose route caps the initial receive window at 10
    segments (`ip route ... initrwnd 10`, tcp_select_initial_window in net/ipv4/tcp_output.c),
    which is how Linux 3.x sized its SYN+ACK window (TCP_DEFAULT_INIT_RCVWND 10). Probed with
    `hostprint scan -O` while tcpdump records the scanner's interface."""
    needs_root()
    if not shutil.which("tcpdump"):
        pytest.skip("tcpdump not installed")
    from hostprint.lab import HostSpec, Lab, LabSpec

    tmp = tmp_path_factory.mktemp("stackp0f")
    spec = LabSpec(name=f"sp{os.getpid() % 10000}", hosts=[
        HostSpec(name="l1", address=STOCK, services=["tcp-listen:80"]),
        HostSpec(name="l2", address=RWND10, services=["tcp-listen:80"]),
    ])
    with Lab(spec) as lab:
        ns2 = lab.host("l2").ns
        lab.exec(ns2, ["ip", "route", "change", "198.18.0.0/16", "dev", "eth0", "proto", "kernel", "scope", "link",
                       "src", RWND10, "initrwnd", "10"], check=True)
        links = lab.exec(lab.scanner_ns, ["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
        iface = next(ln.split()[1] for ln in links.splitlines() if f" {US}/" in ln)
        pcap = tmp / "lab.pcap"
        td = lab.spawn(lab.scanner_ns, ["tcpdump", "-i", iface, "-U", "-n", "-w", str(pcap), "tcp"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while not (pcap.exists() and pcap.stat().st_size >= 24) and time.monotonic() < deadline:
                time.sleep(0.05)
            r = lab.exec(lab.scanner_ns, [sys.executable, "-m", "hostprint", "scan", "-sS", "-O", "--os-db", "hostprint,p0f",
                                          "-p", "80,81",
                                          STOCK, RWND10, "-oJ", "-", "--no-db", "--progress", "never"],
                         capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            time.sleep(0.5)
        finally:
            td.terminate()
            td.wait(timeout=10)
        yield lab, pcap, {d["address"]: d for d in map(json.loads, r.stdout.splitlines()) if d}


def _replies_from_pcap(pcap: Path) -> dict[str, StackResult]:
    """Per target, the first SYN+ACK to each SEQ probe; a probe is recognised by its window and
    options (SEQ_PROBES), so this does not depend on the probe's source-port choice."""
    shapes = {(win, P.options_layout(opts), tuple(v for _, v in opts)): f"SEQ{i + 1}"
              for i, (win, opts) in enumerate(SEQ_PROBES)}
    probe: dict[tuple[bytes, int], str] = {}
    out: dict[str, StackResult] = {}
    for ts, lt, fr in PF.iter_packets(pcap):
        assert lt == PF.LINKTYPE_ETHERNET
        p = P.decode_frame(fr)
        t = p.tcp
        if t is None:
            continue
        if p.ip.src == socket.inet_aton(US) and t.flags == P.SYN:
            name = shapes.get((t.window, P.options_layout(t.options), tuple(v for _, v in t.options)))
            if name:
                probe[(p.ip.dst, t.sport)] = name
        elif t.flags & (P.SYN | P.ACK) == P.SYN | P.ACK and (p.ip.src, t.dport) in probe:
            res = out.setdefault(socket.inet_ntoa(p.ip.src), StackResult())
            res.replies.setdefault(probe[(p.ip.src, t.dport)], Reply(ts / 1e9, p.ip, t, bytes(fr[14:])))
    return out


@pytest.mark.lab
def test_lab_linux_agrees_with_p0f(p0flab):
    need_p0f_db()
    exe = need_p0f_binary()
    lab, pcap, hosts = p0flab
    assert {STOCK, RWND10} <= set(hosts)
    by_host = _replies_from_pcap(pcap)
    assert set(by_host[STOCK].replies) == set(SEQ_NAMES) == set(by_host[RWND10].replies)
    ports = {}
    for addr, res in by_host.items():
        for name, rep in res.replies.items():
            ports[(addr, f"{US}/{rep.l4.dport}")] = name
    theirs = [f for f in _p0f_log(exe, pcap) if f["mod"] == "syn+ack"]
    compared = set()
    for f in theirs:
        addr = f["srv"].split("/")[0]
        name = ports.get((addr, f["cli"]))
        if name is None or (addr, name) in compared:
            continue  # SYN+ACKs to other probes, or p0f's second report of a flow (retransmission)
        assert raw_signatures(by_host[addr])[name] == f["raw_sig"], (name, f)
        rebuilt = StackResult(replies={n: dataclasses.replace(r, raw=b"") for n, r in by_host[addr].replies.items()})
        assert raw_signatures(rebuilt)[name] == f["raw_sig"], (name, f)
        if name == "SEQ1":
            ms = p0f_matches(by_host[addr])
            mine = ms[0]["name"] if ms and ms[0]["probe"] == "SEQ1" else None
            assert mine == (None if f["os"] == "???" else f["os"]), (addr, f, ms)
        compared.add((addr, name))
    assert len(compared) == 12, theirs
    # what the comparison found: Linux with a 10-segment initial window is p0f's "Linux 3.x" on
    # every SEQ reply; a stock kernel's 45 x (MSS-12) window fits no p0f.fp line
    ms = p0f_matches(by_host[RWND10])
    assert [m["name"] for m in ms] == ["Linux 3.x"] and ms[0]["family"] == "Linux" and ms[0]["vendor"] == "Linux"
    assert ms[0]["agree"] == list(SEQ_NAMES) and ms[0]["confidence"] == 0.9
    assert p0f_matches(by_host[STOCK]) == []
    # the CLI (`-O --os-db hostprint,p0f`) reports the same p0f label next to hostprint's own DB's
    from_cli = [m for m in hosts[RWND10]["os"]["stack"]["matches"] if "p0f.fp" in m["evidence"][0]["detail"]]
    assert [(m["name"], m["raw_sig"]) for m in from_cli] == [("Linux 3.x", ms[0]["raw_sig"])]
    assert not [m for m in hosts[STOCK]["os"]["stack"]["matches"] if "p0f.fp" in m["evidence"][0]["detail"]]
    assert ":mss*45," in raw_signatures(by_host[STOCK])["SEQ1"]
