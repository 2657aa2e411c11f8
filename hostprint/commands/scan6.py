"""The IPv6 side of scan's target checks: a lab address (2001:2::/48, RFC 5180) that would leave
through a default route is refused, as 198.18.0.0/15 is (commands/scan.py `_lab_route_problem`),
and an address without a route is a warning and skipped."""

from __future__ import annotations

import ipaddress

from hostprint.errors import UsageError

#: The IPv6 benchmarking range (RFC 5180): every IPv6 lab address lives here.
LAB_V6 = ipaddress.IPv6Network("2001:2::/48")


def route_problem6(addr: str) -> str | None:
    """Why an IPv6 target is skipped (None: scan it)."""
    from hostprint.engine import route

    a = ipaddress.IPv6Address(addr.partition("%")[0])
    try:
        r = route.table6().lookup(addr)
    except UsageError as e:
        return f"{e}; skipped"
    if a in LAB_V6 and not r.local:
        tab = route.table6()
        net = next((n for n, _m, rr in tab.routes if a in n and rr.get("dev") == r.iface), None)
        if net is not None and net.prefixlen == 0:
            via = f" via {r.gateway}" if r.gateway else ""
            return (f"{addr} is a lab address (2001:2::/48) but would leave through the default route{via} "
                    f"({r.iface}); skipped. Scan the lab from inside it: hostprint lab exec -- hostprint ...")
    return None
