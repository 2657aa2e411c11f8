"""gVisor (runsc, Debian package `runsc`) answering for a lab host: a container whose network is the
host's namespace, so runsc's user-space netstack takes the interface over (it copies the address and
routes into netstack and removes them from the kernel side) and answers every packet itself.

The container is busybox-static's httpd on the given ports, in a read-only rootfs of one file.

Quirk worked around here: runsc 20221219 decides it runs in the root network namespace when
/proc/sys/net/core/rmem_default exists, which was true only of the root namespace on older kernels;
kernels that namespace that sysctl (this machine's 6.18) show it everywhere, and runsc refuses to
start ("cannot run with network enabled in root network namespace"). runsc is therefore started in
a private mount namespace where an empty tmpfs hides /proc/sys/net/core. Nothing else changes.

Teardown: `runsc kill` + `runsc delete --force`, then the lab kills the PID it spawned.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from hostprint.lab.state import kill_child

RUNSC = "runsc"


def missing() -> str | None:
    if shutil.which(RUNSC) is None:
        return "needs Debian package runsc"
    if shutil.which("unshare") is None:
        return "needs util-linux (unshare)"
    if not os.path.exists("/bin/busybox"):
        return "needs Debian package busybox-static"
    return None


def version() -> str:
    r = subprocess.run([RUNSC, "--version"], capture_output=True, text=True)
    return r.stdout.split("\n", 1)[0].replace("runsc version ", "").strip() or "?"


@dataclass
class Sandbox:
    cid: str
    root: str
    address: str
    pid: int
    proc: subprocess.Popen[Any]
    log: str


def start_gvisor(lab: Any, host: str, tmpdir: str, *, ports: tuple[int, ...] = (80,), timeout: float = 60.0) -> Sandbox:
    """runsc serving busybox httpd on `ports` for lab host `host` (which then has no stack of its own)."""
    why = missing()
    if why:
        raise RuntimeError(why)
    h = lab.host(host)
    bundle = os.path.join(tmpdir, f"gv-{host}")
    rootfs = os.path.join(bundle, "rootfs")
    for d in ("bin", "www", "proc", "dev", "tmp"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(rootfs, "bin", "busybox"))
    os.chmod(os.path.join(rootfs, "bin", "busybox"), stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    with open(os.path.join(rootfs, "www", "index.html"), "w") as f:
        f.write("ok\n")
    script = "".join(f"/bin/busybox httpd -p {p} -h /www; " for p in ports) + "exec /bin/busybox sleep 2147483647"
    subprocess.run([RUNSC, "spec", "--bundle", bundle, "--", "/bin/busybox", "sh", "-c", script],
                   check=True, capture_output=True)
    cfg_path = os.path.join(bundle, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["process"]["terminal"] = False
    cfg["root"] = {"path": rootfs, "readonly": True}
    nss = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
    nss.append({"type": "network", "path": f"/run/netns/{h.ns}"})
    cfg["linux"]["namespaces"] = nss
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    root = os.path.join(tmpdir, f"gv-{host}-state")
    os.makedirs(root, exist_ok=True)
    cid = f"hp{lab.name}{host}"
    log = os.path.join(tmpdir, f"gv-{host}.log")
    inner = (f"mount -t tmpfs -o size=4k,mode=0555 hostprint-mask /proc/sys/net/core && "
             f"exec {RUNSC} --root {root} --network=sandbox --ignore-cgroups run --bundle {bundle} {cid}")
    with open(log, "wb") as err:
        p = lab.spawn(h.ns, ["unshare", "-m", "--propagation", "private", "sh", "-c", inner],
                      stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT)
    sb = Sandbox(cid, root, h.address, p.pid, p, log)
    deadline = time.monotonic() + timeout
    while True:
        r = lab.exec("scan", [sys.executable, "-c", f"import socket; socket.create_connection(({h.address!r}, {ports[0]}), 1)"],
                     capture_output=True)
        if r.returncode == 0:
            return sb
        if p.poll() is not None or time.monotonic() > deadline:
            stop_gvisor(sb)
            with open(log, errors="replace") as f:
                raise RuntimeError(f"runsc did not start: {f.read().strip()[-400:]}")
        time.sleep(0.3)


def stop_gvisor(sb: Sandbox) -> None:
    for argv in ([RUNSC, "--root", sb.root, "kill", sb.cid, "KILL"], [RUNSC, "--root", sb.root, "delete", "--force", sb.cid]):
        subprocess.run(argv, capture_output=True, timeout=30)
    kill_child(sb.proc)

