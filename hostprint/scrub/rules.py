"""What the scrubber installs: one nftables table and one iptables (nf_tables backend) chain pair,
both named after the owner's PID and kernel start time, as the RST guard's tables are
(engine/rstguard.py): `hpscrub_<pid>_<start>` (nft, family inet) and `HPSC_<pid>_<start>` (iptables
chains in the raw and mangle tables, one jump each from PREROUTING/POSTROUTING).

Directions. In router mode the scrubber sits between `outside` (where the scanners are) and the
protected network behind `inside`: inbound = forwarded from outside, outbound = leaving through
outside (forwarded replies and the router's own packets, such as SYNPROXY's SYN-ACKs). In host
mode (one machine scrubbing itself, `audit --apply`) inbound is every packet arriving on a
non-loopback interface and outbound every packet leaving one.

What nft does in the kernel (measured to work on Linux 6.18 with nftables 1.0.6):
- inbound, before conntrack (prerouting -350): TCP options other than MSS reset to NOPs in SYNs
  (`reset tcp option`), MSS clamped, DF cleared, IP ID replaced by a random one, DSCP and ECN bits
  zeroed, packets with IP options dropped;
- inbound, filter: NULL, SYN+FIN, SYN+RST, FIN+RST, FIN/PSH/URG without ACK dropped; TCP that opens no
  tracked connection (conntrack NEW without a lone SYN) and INVALID dropped, which kills nmap's
  T2-T4, T6 and T7 probes; ICMP echo only with code 0; timestamp, address-mask and information
  requests dropped; with SYNPROXY, SYNs answered by the router (cookies) and the host reached only
  after the client's ACK;
- outbound (postrouting): TTL set to one value, DF cleared, random IP ID, DSCP/ECN zeroed, MSS
  clamped, ICMP errors limited to Linux's rate (burst 6, then 1 per second per pair of
  protected host and destination, as each Linux host limits its own).

What the NFQUEUE stage does (normalise.py): SYNs inbound and SYN-ACKs, RSTs, ICMP errors and SYNs
outbound are queued (`--queue-bypass`: when no worker listens they pass unchanged, fail-open, so a
crashed worker never cuts the network).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

#: nft table / iptables chain prefixes (the RST guard's `hostprint_<digits>` names never match these)
TABLE_PREFIX = "hpscrub_"
CHAIN_PREFIX = "HPSC_"
TABLE_RE = re.compile(r"table inet (hpscrub_(\d+)_(\d+))\b")
CHAIN_RE = re.compile(r"^:?(HPSC_(\d+)_(\d+))\b", re.M)
#: the queue's default number (any 16-bit value; the worker binds it)
QUEUE_NUM = 1919
IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")


@dataclass
class ScrubConfig:
    """One scrubber. Router mode needs `outside`; host mode scrubs the machine itself."""

    mode: str = "router"  # router | host
    outside: str | None = None  # the interface the scanners are behind (router mode)
    protect: list[str] = field(default_factory=list)  # router mode: networks behind (empty = all forwarded)
    ttl: int = 64
    mss: int = 1360
    window: int = 8192  # handshake window written into SYNs and SYN-ACKs (never raised: see normalise.py)
    synproxy: bool = True
    queue: bool = True
    queue_num: int = QUEUE_NUM
    icmp_limit: bool = True

    def check(self) -> list[str]:
        """Problems in words (empty = fine)."""
        bad = []
        if self.mode not in ("router", "host"):
            bad.append(f"mode {self.mode!r}: router or host")
        if self.mode == "router" and not self.outside:
            bad.append("router mode needs --outside IFACE (where the scanners are)")
        if self.outside is not None and not IFNAME.match(self.outside):
            bad.append(f"bad interface name {self.outside!r}")
        for n in self.protect:
            try:
                ipaddress.ip_network(n, strict=False)
            except ValueError:
                bad.append(f"bad network {n!r} (IPv4 or IPv6 prefix)")
        if not 1 <= self.ttl <= 255:
            bad.append(f"TTL {self.ttl}: 1-255")
        if not 536 <= self.mss <= 65495:
            bad.append(f"MSS {self.mss}: 536-65495")
        if not 1024 <= self.window <= 65535:
            bad.append(f"window {self.window}: 1024-65535")
        if not 0 <= self.queue_num <= 65535:
            bad.append(f"queue number {self.queue_num}: 0-65535")
        return bad


def names(pid: int, start: int) -> tuple[str, str]:
    return f"{TABLE_PREFIX}{pid}_{start}", f"{CHAIN_PREFIX}{pid}_{start}"


def _nets(cfg: ScrubConfig, version: int) -> list[str]:
    return [str(ipaddress.ip_network(n, strict=False)) for n in cfg.protect
            if ipaddress.ip_network(n, strict=False).version == version]


def _dirs(cfg: ScrubConfig) -> tuple[list[str], str | None, str | None, str]:
    """nft match prefixes: (inbound rules of either family, one per family when --protect names
    both; inbound IPv4 only; inbound IPv6 only; outbound). None = that family is not protected."""
    if cfg.mode == "host":
        return ['iifname != "lo" '], 'iifname != "lo" ', 'iifname != "lo" ', 'oifname != "lo" '
    base = f'iifname "{cfg.outside}" '
    outb = f'oifname "{cfg.outside}" '
    if not cfg.protect:
        return [base], base, base, outb
    v4, v6 = _nets(cfg, 4), _nets(cfg, 6)
    p4 = f"{base}ip daddr {{ {', '.join(v4)} }} " if v4 else None
    p6 = f"{base}ip6 daddr {{ {', '.join(v6)} }} " if v6 else None
    return [p for p in (p4, p6) if p], p4, p6, outb


ODD_FLAGS = [
    "tcp flags & (fin|syn|rst|psh|ack|urg) == 0x0",  # NULL (nmap T2)
    "tcp flags & (fin|syn) == fin|syn",  # nmap T3: SYN|FIN|URG|PSH
    "tcp flags & (syn|rst) == syn|rst",
    "tcp flags & (fin|rst) == fin|rst",
    "tcp flags & (fin|ack) == fin",  # FIN without ACK: FIN scan, Xmas (nmap T7)
    "tcp flags & (psh|ack) == psh",
    "tcp flags & (urg|ack) == urg",
]


#: ICMPv6 that must keep its hop limit: Neighbor Discovery (RFC 4861: 255, checked by the receiver)
#: and MLD (RFC 3810: 1)
ND_MLD = ("nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect, "
          "mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report")


def nft_ruleset(cfg: ScrubConfig, table: str, comment: str = "") -> str:
    """The nft script that creates the scrubber's table (`nft -f -`)."""
    inbs, inb4, inb6, outb = _dirs(cfg)
    syn = "tcp flags & (syn|ack|fin|rst) == syn"
    lines: list[str] = [f"table inet {table} {{"]
    if comment:
        lines.append(f'  comment "{comment}"')
    if cfg.icmp_limit:
        lines.append("  set icmp_errors { type ipv4_addr . ipv4_addr; flags dynamic; timeout 60s; size 65535; }")
        lines.append("  set icmp6_errors { type ipv6_addr . ipv6_addr; flags dynamic; timeout 60s; size 65535; }")
    # inbound, before conntrack (-200) and before the queue (iptables raw, -300)
    pre: list[str] = []
    if inb4 is not None:
        pre += [f"{inb4}ip hdrlength != 5 drop"]
    for inb in inbs:
        pre += [f"{inb}{syn} reset tcp option sack-perm",
                f"{inb}{syn} reset tcp option timestamp",
                f"{inb}{syn} reset tcp option window",
                f"{inb}tcp flags syn tcp option maxseg size > {cfg.mss} tcp option maxseg size set {cfg.mss}"]
    if inb4 is not None:
        pre += [f"{inb4}ip frag-off & 0x4000 != 0 ip frag-off set ip frag-off & 0xbfff",
                f"{inb4}ip id set numgen random mod 65536 << 16",
                f"{inb4}ip dscp != cs0 ip dscp set cs0",
                f"{inb4}ip ecn != not-ect ip ecn set not-ect"]
    if inb6 is not None:
        pre += [f"{inb6}ip6 dscp != cs0 ip6 dscp set cs0",
                f"{inb6}ip6 ecn != not-ect ip6 ecn set not-ect"]
    lines.append("  chain inbound_raw {\n    type filter hook prerouting priority -350; policy accept;")
    lines += [f"    {r}" for r in pre]
    lines.append("  }")
    # SYNPROXY for IPv4 only: nft's synproxy (Linux 6.18, measured here) answers no IPv6 SYN that
    # arrives without a checksum the device vouched for (raw-socket SYNs such as nmap's over veth,
    # SYNs re-injected by NFQUEUE), while it answers the same SYN sent by a kernel socket. IPv6 SYNs
    # are answered by the hosts, their SYN-ACKs normalised by the queue (the --no-synproxy path).
    if cfg.synproxy and inb4 is not None:
        lines.append("  chain synproxy_notrack {\n    type filter hook prerouting priority -250; policy accept;")
        lines.append(f"    {inb4}meta nfproto ipv4 {syn} notrack")
        lines.append("  }")
    hook = "forward" if cfg.mode == "router" else "input"
    filt = [f"{inb}{cond} drop" for inb in inbs for cond in ODD_FLAGS]
    if cfg.synproxy and inb4 is not None:
        filt.append(f"{inb4}meta nfproto ipv4 meta l4proto tcp ct state invalid,untracked synproxy mss {cfg.mss}")
    for inb in inbs:
        filt += [f"{inb}ct state invalid drop",
                 f"{inb}meta l4proto tcp ct state new tcp flags & (syn|ack|fin|rst) != syn drop"]
    if inb4 is not None:
        filt += [f"{inb4}icmp type echo-request icmp code != 0 drop",
                 f"{inb4}icmp type {{ timestamp-request, address-mask-request, info-request, redirect, router-solicitation }} drop"]
    if inb6 is not None:
        # node information queries (RFC 4620, type 139) answer with names and addresses
        filt += [f"{inb6}icmpv6 type echo-request icmpv6 code != 0 drop",
                 f"{inb6}icmpv6 type 139 drop"]
    lines.append(f"  chain inbound_filter {{\n    type filter hook {hook} priority -10; policy accept;")
    lines += [f"    {r}" for r in filt]
    lines.append("  }")
    post = [f"{outb}ip ttl set {cfg.ttl}",
            f"{outb}ip frag-off & 0x4000 != 0 ip frag-off set ip frag-off & 0xbfff",
            f"{outb}ip id set numgen random mod 65536 << 16",
            f"{outb}ip dscp != cs0 ip dscp set cs0",
            f"{outb}ip ecn != not-ect ip ecn set not-ect",
            f"{outb}tcp flags syn tcp option maxseg size > {cfg.mss} tcp option maxseg size set {cfg.mss}",
            f"{outb}icmp type {{ timestamp-reply, address-mask-reply, info-reply }} drop",
            # IPv6: the hop limit of everything but ND/MLD, traffic class and flow label (Linux
            # labels each flow with a hash, many stacks send 0)
            f"{outb}meta nfproto ipv6 meta l4proto != ipv6-icmp ip6 hoplimit set {cfg.ttl}",
            f"{outb}icmpv6 type != {{ {ND_MLD} }} ip6 hoplimit set {cfg.ttl}",
            f"{outb}ip6 dscp != cs0 ip6 dscp set cs0",
            f"{outb}ip6 ecn != not-ect ip6 ecn set not-ect",
            f"{outb}ip6 flowlabel != 0 ip6 flowlabel set 0",
            f"{outb}icmpv6 type 140 drop"]  # node information replies
    if cfg.icmp_limit:
        post.append(f"{outb}icmp type {{ destination-unreachable, time-exceeded, parameter-problem }} "
                    "update @icmp_errors { ip saddr . ip daddr limit rate over 1/second burst 6 packets } drop")
        # packet-too-big is left alone: path MTU discovery needs every one
        post.append(f"{outb}icmpv6 type {{ destination-unreachable, time-exceeded, parameter-problem }} "
                    "update @icmp6_errors { ip6 saddr . ip6 daddr limit rate over 1/second burst 6 packets } drop")
    lines.append("  chain outbound {\n    type filter hook postrouting priority 10; policy accept;")
    lines += [f"    {r}" for r in post]
    lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def iptables_rules(cfg: ScrubConfig, chain: str, version: int = 4) -> list[list[str]]:
    """iptables (version 4) or ip6tables (6) argv lists (without the tool's name) that queue what
    nft cannot rewrite: inbound SYNs in raw PREROUTING (-300: after nft's inbound_raw, before
    conntrack), outbound SYNs, SYN-ACKs, RSTs and ICMP errors in mangle POSTROUTING (-150: before
    nft's outbound chain, which then sets TTL/hop limit and IP ID on them like on every other
    packet). None for a family --protect leaves out."""
    if not cfg.queue:
        return []
    q = ["-j", "NFQUEUE", "--queue-num", str(cfg.queue_num), "--queue-bypass"]
    nets: list[str] = []
    if cfg.mode == "host":
        inb, outb = ["!", "-i", "lo"], ["!", "-o", "lo"]
    else:
        assert cfg.outside is not None
        inb, outb = ["-i", cfg.outside], ["-o", cfg.outside]
        if cfg.protect:
            nets = _nets(cfg, version)
            if not nets:
                return []
    out: list[list[str]] = []
    syn = ["-p", "tcp", "--tcp-flags", "SYN,ACK,FIN,RST", "SYN", *q]
    out.append(["-t", "raw", "-N", chain])
    if nets:  # one -d per rule
        out += [["-t", "raw", "-A", chain, *inb, "-d", n, *syn] for n in nets]
    else:
        out.append(["-t", "raw", "-A", chain, *inb, *syn])
    out.append(["-t", "raw", "-I", "PREROUTING", "1", "-j", chain])
    out.append(["-t", "mangle", "-N", chain])
    out.append(["-t", "mangle", "-A", chain, *outb, "-p", "tcp", "--tcp-flags", "SYN", "SYN", *q])
    out.append(["-t", "mangle", "-A", chain, *outb, "-p", "tcp", "--tcp-flags", "RST", "RST", *q])
    if version == 4:
        for t in ("destination-unreachable", "time-exceeded", "parameter-problem"):
            out.append(["-t", "mangle", "-A", chain, *outb, "-p", "icmp", "--icmp-type", t, *q])
    else:
        for t in ("destination-unreachable", "packet-too-big", "time-exceeded", "parameter-problem"):
            out.append(["-t", "mangle", "-A", chain, *outb, "-p", "ipv6-icmp", "--icmpv6-type", t, *q])
    out.append(["-t", "mangle", "-I", "POSTROUTING", "1", "-j", chain])
    return out


def iptables_removal(chain: str) -> list[list[str]]:
    """Undo iptables_rules (each step may fail when a crash came halfway: the caller ignores that)."""
    return [["-t", "raw", "-D", "PREROUTING", "-j", chain], ["-t", "raw", "-F", chain], ["-t", "raw", "-X", chain],
            ["-t", "mangle", "-D", "POSTROUTING", "-j", chain], ["-t", "mangle", "-F", chain],
            ["-t", "mangle", "-X", chain]]


def dry_run(cfg: ScrubConfig, pid: int = 0, start: int = 0) -> str:
    """Everything `scrub up` would install, as commands a person can read or run."""
    table, chain = names(pid, start)
    out = ["# nftables (nft -f -)", nft_ruleset(cfg, table).rstrip()]
    for tool, version in (("iptables", 4), ("ip6tables", 6)):
        ipt = iptables_rules(cfg, chain, version)
        if ipt:
            out += ["", f"# NFQUEUE ({tool}, nf_tables backend: this kernel has no nft queue expression)"]
            out += [f"{tool} " + " ".join(a if a and " " not in a else f"'{a}'" for a in argv) for argv in ipt]
    if cfg.synproxy:
        out += ["", "# SYNPROXY needs conntrack to leave mid-stream pick-up to it:",
                "sysctl -w net.netfilter.nf_conntrack_tcp_loose=0",
                "# and a client reusing a source port must not meet its old connection in TIME_WAIT:",
                "sysctl -w net.netfilter.nf_conntrack_tcp_timeout_time_wait=0"]
    return "\n".join(out) + "\n"
