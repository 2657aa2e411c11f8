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


def ssh_key(address: str, port: int) -> str | None:
    """The host's ed25519 (else ECDSA, else RSA) SSH host key as ssh-keyscan reads it (None: none)."""
    import shutil
    import subprocess

    exe = shutil.which("ssh-keyscan")
    if exe is None:
        return None
    try:
        r = subprocess.run([exe, "-T", "3", "-p", str(port), "-t", "ed25519,ecdsa,rsa", address.partition("%")[0]],
                           capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return None
    keys = sorted(ln.split()[1:3] for ln in r.stdout.splitlines() if ln and not ln.startswith("#") and len(ln.split()) >= 3)
    order = {"ssh-ed25519": 0, "ecdsa-sha2-nistp256": 1, "ssh-rsa": 2}
    keys.sort(key=lambda k: order.get(k[0], 9))
    return " ".join(keys[0]) if keys else None


def dual_stack(hosts: list, say=None) -> list:  # type: ignore[no-untyped-def,type-arg]
    """--dual-stack: hosts reachable over both families folded into one record each
    (match/dualstack.py); one line per pairing for the person watching."""
    from hostprint.match import dualstack

    families = {":" in h.address for h in hosts if h.status == "up"}
    if len(families) < 2:
        return hosts
    keys = dualstack.ssh_host_keys(hosts, ssh_key)
    pairs = dualstack.find_pairs(hosts, keys)
    for p in pairs:
        if say is not None:
            say(f"dual stack: {p.v4} and {p.v6} are one host ({'; '.join(p.by)})")
    return dualstack.merge(hosts, pairs)
