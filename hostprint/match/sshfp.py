"""SSH server facts from the server's own messages (pure functions; probes/ssh_kex.py talks).

SSH_MSG_KEXINIT (RFC 4253 §7.1): a cookie and ten name-lists. HASSH server (salesforce/hassh,
BSD-3; README "hasshServer"): MD5 of the server's kex_algorithms, encryption, MAC and compression
lists server-to-client, each as sent (comma-separated, pseudo-algorithms such as
kex-strict-s-v00@openssh.com included), joined with ";".

Host keys (RFC 4253 §6.6, RFC 5656 §3.1, RFC 8709 §4): the key blob a key exchange reply carries.
Fingerprints as OpenSSH prints them (`ssh-keygen -l`: "SHA256:" + unpadded base64 of SHA-256) and
as nmap's ssh-hostkey does (MD5, hex).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

from hostprint.model import HostKey, SshFacts

KEXINIT = 20
LIST_NAMES = ("kex", "host_key_algorithms", "ciphers_c2s", "ciphers_s2c", "macs_c2s", "macs_s2c",
              "compression_c2s", "compression_s2c", "languages_c2s", "languages_s2c")


class SshError(ValueError):
    pass


@dataclass
class KexInit:
    cookie: bytes
    lists: dict[str, list[str]]
    first_kex_follows: bool

    def facts(self) -> SshFacts:
        hs, hstr = hassh_server(self)
        return SshFacts(hassh=hs, hassh_string=hstr, kex=self.lists["kex"],
                        host_key_algorithms=self.lists["host_key_algorithms"], ciphers=self.lists["ciphers_s2c"],
                        macs=self.lists["macs_s2c"], compression=self.lists["compression_s2c"],
                        ciphers_c2s=self.lists["ciphers_c2s"], macs_c2s=self.lists["macs_c2s"])


def read_string(b: bytes, i: int) -> tuple[bytes, int]:
    """RFC 4251 §5 string: uint32 length, bytes."""
    if i + 4 > len(b):
        raise SshError("truncated string length")
    (n,) = struct.unpack(">I", b[i:i + 4])
    if i + 4 + n > len(b):
        raise SshError("string runs past the message")
    return b[i + 4:i + 4 + n], i + 4 + n


def parse_kexinit(payload: bytes) -> KexInit:
    """An SSH_MSG_KEXINIT payload (message number first)."""
    if not payload or payload[0] != KEXINIT:
        raise SshError(f"not a KEXINIT (message {payload[0] if payload else 'none'})")
    if len(payload) < 17:
        raise SshError("short KEXINIT")
    cookie = payload[1:17]
    i = 17
    lists: dict[str, list[str]] = {}
    for name in LIST_NAMES:
        raw, i = read_string(payload, i)
        text = raw.decode("ascii", errors="replace")
        lists[name] = text.split(",") if text else []
    follows = bool(payload[i]) if i < len(payload) else False
    return KexInit(cookie, lists, follows)


def hassh_string(kex: list[str], ciphers: list[str], macs: list[str], compression: list[str]) -> str:
    return ";".join(",".join(x) for x in (kex, ciphers, macs, compression))


def hassh_server(k: KexInit) -> tuple[str, str]:
    """(hasshServer, hasshServerAlgorithms)."""
    s = hassh_string(k.lists["kex"], k.lists["ciphers_s2c"], k.lists["macs_s2c"], k.lists["compression_s2c"])
    return hashlib.md5(s.encode()).hexdigest(), s


CURVE_BITS = {"nistp256": 256, "nistp384": 384, "nistp521": 521}


def host_key(blob: bytes) -> HostKey:
    """A host key blob's type, size and fingerprints."""
    kind_b, i = read_string(blob, 0)
    kind = kind_b.decode("ascii", errors="replace")
    bits: int | None = None
    if kind == "ssh-ed25519":
        bits = 256
    elif kind == "ssh-ed448":
        bits = 456
    elif kind.startswith("ecdsa-sha2-"):
        curve, _ = read_string(blob, i)
        bits = CURVE_BITS.get(curve.decode("ascii", errors="replace"))
    elif kind == "ssh-rsa":
        _e, i = read_string(blob, i)
        n, _ = read_string(blob, i)
        bits = int.from_bytes(n, "big").bit_length()
    elif kind == "ssh-dss":
        p, _ = read_string(blob, i)
        bits = int.from_bytes(p, "big").bit_length()
    sha = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return HostKey(type=kind, bits=bits, sha256=f"SHA256:{sha}", md5=hashlib.md5(blob).hexdigest(),
                   key=base64.b64encode(blob).decode())


# Which host key algorithm names ask for which key (one key exchange per key type is enough).
KEY_FAMILIES = (
    ("ssh-ed25519", ("ssh-ed25519",)),
    ("ecdsa", ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")),
    ("ssh-rsa", ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")),
    ("ssh-dss", ("ssh-dss",)),
    ("ssh-ed448", ("ssh-ed448",)),
)


def key_requests(offered: list[str]) -> list[str]:
    """One host key algorithm per key the server has, from what it offers: ECDSA servers may hold
    one key per curve (each offered name is its own key), RSA is one key whatever the hash."""
    out: list[str] = []
    for family, names in KEY_FAMILIES:
        have = [n for n in names if n in offered]
        if family == "ecdsa":
            out += have
        elif have:
            out.append(have[0])
    return out
