"""IPv6 target specs: literals (`2001:2::10`, `[2001:2::10]`, `fe80::1%eth0`), prefixes
(`2001:2::/120`) and host names resolved to IPv6 (nmap's `-6`).

One pattern class beside targets.py's IPv4 ones: a contiguous block of 128-bit integers that can
count, enumerate and test membership without expanding, so exclusions and mixed IPv4/IPv6 lists
work as they do for IPv4. nmap has no octet-range syntax for IPv6; neither do we.

**The sweep cap.** An IPv6 subnet is a /64: 2**64 addresses, which nobody can enumerate (at a
million probes a second, 585,000 years). A prefix with more than `MAX_V6_BITS` host bits is refused
in one line that says so and what to do instead (addresses of known hosts, -iL, or the on-link
all-nodes echo, -PB, which finds the hosts of a link in one packet).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Iterator

from hostprint.errors import UsageError
from hostprint.ports import show_token

#: The longest sweep: a /104, 2**24 addresses (the IPv4 side's expansion limit is the same count).
MAX_V6_BITS = 24

#: nmap's -6: host names resolve to IPv6 (AAAA) instead of IPv4 (A). Set by the command.
_prefer = {"family": 4}


def set_family(family: int) -> None:
    """4: names resolve to IPv4 (nmap's default); 6: to IPv6 (nmap's -6)."""
    _prefer["family"] = 6 if family == 6 else 4


def name_family() -> int:
    return _prefer["family"]


@dataclass(frozen=True)
class AddressBlock:
    """A contiguous block of addresses as integers, of either family (targets.py's IPv4 blocks
    too): it counts, enumerates and tests membership without expanding."""

    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    def ints(self) -> Iterator[int]:
        return iter(range(self.first, self.last + 1))

    def __contains__(self, addr: int) -> bool:
        return self.first <= addr <= self.last


@dataclass(frozen=True)
class V6Block(AddressBlock):
    """A contiguous block of IPv6 addresses (one address, a prefix, or a resolved name's block).
    `zone` (fe80::1%eth0) is kept on every address it formats."""

    zone: str = ""
    family: int = 6

    def fmt(self, addr: int) -> str:
        text = ipaddress.IPv6Address(addr).compressed
        return f"{text}%{self.zone}" if self.zone else text


def _bad(token: str, why: str) -> UsageError:
    return UsageError(f"bad target spec '{show_token(token)}': {why}")


def too_big(token: str, prefix: int) -> UsageError:
    bits = 128 - prefix
    return UsageError(f"target spec '{show_token(token)}' is an IPv6 /{prefix}: 2^{bits} addresses, which no scan "
                      f"can sweep (at most /{128 - MAX_V6_BITS}, 2^{MAX_V6_BITS}); give host addresses or -iL, or "
                      "find the hosts of a link with -PB (all-nodes echo, ff02::1)")


def block(addr: int, prefix: int, token: str, zone: str = "") -> V6Block:
    if 128 - prefix > MAX_V6_BITS:
        raise too_big(token, prefix)
    size = 1 << (128 - prefix)
    first = addr & ~(size - 1) & ((1 << 128) - 1)
    return V6Block(first, first + size - 1, zone)


def prefix_len(text: str, token: str) -> int:
    if not text.isdigit() or len(text) > 3 or int(text) > 128:
        raise _bad(token, f"prefix '/{show_token(text)}' is not /0-/128")
    return int(text)


def parse_ipv6(token: str, addr_part: str, prefix_s: str | None) -> V6Block:
    """A literal (brackets and a %zone allowed) with an optional /prefix."""
    text = addr_part[1:-1] if addr_part.startswith("[") and addr_part.endswith("]") else addr_part
    addr, _, zone = text.partition("%")
    try:
        a = ipaddress.IPv6Address(addr)
    except ValueError:
        raise _bad(token, "not an IPv4 or IPv6 address") from None
    if zone and not all(c.isalnum() or c in "._-@" for c in zone):
        raise _bad(token, f"bad zone '%{show_token(zone)}'")
    if a.ipv4_mapped is not None:
        raise _bad(token, f"IPv4-mapped address: scan {a.ipv4_mapped} instead")
    prefix = 128 if prefix_s is None else prefix_len(prefix_s, token)
    return block(int(a), prefix, token, zone)


def resolve6(name: str) -> int | None:
    """The first IPv6 address of a host name (AAAA), or None."""
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET6, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    for info in infos:
        try:
            return int(ipaddress.IPv6Address(str(info[4][0]).partition("%")[0]))
        except ValueError:
            continue
    return None


@dataclass(frozen=True)
class Named6(V6Block):
    """A host name resolved to IPv6 (-6): its block, and the name typed for the address."""

    name: str = ""
    address: int = 0


def parse_name6(token: str, name: str, prefix_s: str | None) -> Named6 | None:
    """A host name under -6 (None: it has no IPv6 address)."""
    prefix = 128 if prefix_s is None else prefix_len(prefix_s, token)
    addr = resolve6(name)
    if addr is None:
        return None
    b = block(addr, prefix, token)
    return Named6(b.first, b.last, name=name.rstrip("."), address=addr)
