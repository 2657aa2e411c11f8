"""What an SSH server says before authentication: its KEXINIT lists and its host keys.

RFC 4253: both sides send an identification line (§4.2) and SSH_MSG_KEXINIT (§7.1) in the clear;
the server's KEXINIT gives HASSH server and the algorithm lists. A host key only comes in the key
exchange reply, so for each key type the server offers we run one ECDH key exchange (RFC 5656
§4 messages 30/31, with X25519 per RFC 8731 or a NIST curve) offering only that host key
algorithm, read the key from the reply and hang up before NEWKEYS. Nothing is authenticated and
nothing is logged in; OpenSSH logs such a connection as "Connection closed by … [preauth]".
ssh-keyscan(1) does the same.
"""

from __future__ import annotations

import asyncio
import os
import struct
from contextlib import AbstractAsyncContextManager

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hostprint import __version__
from hostprint.match.sshfp import KexInit, SshError, host_key, key_requests, parse_kexinit, read_string
from hostprint.model import HostKey, SshFacts

IDENT = f"SSH-2.0-hostprint_{__version__}\r\n".encode()
MAX_PACKET = 35000  # RFC 4253 §6.1: every implementation handles this much
KEX_ECDH_INIT, KEX_ECDH_REPLY = 30, 31
IGNORE, DEBUG, DISCONNECT = 2, 4, 1

# Key exchanges we can run to see a host key, best first (all ECDH: messages 30/31).
KEX_CURVES: dict[str, ec.EllipticCurve | None] = {
    "curve25519-sha256": None, "curve25519-sha256@libssh.org": None,
    "ecdh-sha2-nistp256": ec.SECP256R1(), "ecdh-sha2-nistp384": ec.SECP384R1(), "ecdh-sha2-nistp521": ec.SECP521R1(),
}


def packet(payload: bytes) -> bytes:
    """RFC 4253 §6 binary packet before keys exist: no MAC, 8-byte blocks, 4+ bytes of padding."""
    pad = 8 - (5 + len(payload)) % 8
    if pad < 4:
        pad += 8
    return struct.pack(">IB", 1 + len(payload) + pad, pad) + payload + os.urandom(pad)


def _namelist(names: list[str]) -> bytes:
    b = ",".join(names).encode()
    return struct.pack(">I", len(b)) + b


def kexinit_payload(kex: list[str], host_keys: list[str], ciphers: list[str], macs: list[str],
                    compression: list[str]) -> bytes:
    lists = [kex, host_keys, ciphers, ciphers, macs, macs, compression, compression, [], []]
    return bytes([20]) + os.urandom(16) + b"".join(_namelist(x) for x in lists) + b"\x00" + b"\x00" * 4


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float):
        self.r, self.w, self.t = reader, writer, timeout

    async def ident(self) -> bytes:
        """The server's identification line; lines before it are allowed (RFC 4253 §4.2)."""
        for _ in range(32):
            line = await asyncio.wait_for(self.r.readline(), self.t)
            if not line:
                raise SshError("closed before identification")
            if line.startswith(b"SSH-"):
                return line.rstrip(b"\r\n")
        raise SshError("no identification line")

    async def payload(self) -> bytes:
        head = await asyncio.wait_for(self.r.readexactly(5), self.t)
        n, pad = struct.unpack(">IB", head)
        if n > MAX_PACKET or n < 1 + pad:
            raise SshError(f"bad packet length {n}")
        rest = await asyncio.wait_for(self.r.readexactly(n - 1), self.t)
        return rest[:n - 1 - pad]

    async def message(self) -> bytes:
        """The next message that is not IGNORE/DEBUG."""
        for _ in range(64):
            p = await self.payload()
            if not p:
                continue
            if p[0] == DISCONNECT:
                reason, _ = read_string(p, 5) if len(p) >= 9 else (b"", 0)
                raise SshError(f"disconnected: {reason.decode('utf-8', errors='replace')}")
            if p[0] not in (IGNORE, DEBUG):
                return p
        raise SshError("too many IGNORE/DEBUG messages")

    def send(self, payload: bytes) -> None:
        self.w.write(packet(payload))


async def _open(addr: str, port: int, timeout: float) -> _Conn:
    r, w = await asyncio.wait_for(asyncio.open_connection(addr, port, limit=MAX_PACKET + 64), timeout)
    return _Conn(r, w, timeout)


async def _kex_for_key(c: _Conn, server: KexInit, key_alg: str) -> HostKey:
    kex = next((k for k in KEX_CURVES if k in server.lists["kex"]), None)
    if kex is None:
        raise SshError("no ECDH key exchange in common (the server offers " + ",".join(server.lists["kex"]) + ")")
    curve = KEX_CURVES[kex]
    if curve is None:
        q_c = x25519.X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    else:
        q_c = ec.generate_private_key(curve).public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    c.send(kexinit_payload([kex], [key_alg], server.lists["ciphers_c2s"] or ["aes128-ctr"],
                           server.lists["macs_c2s"] or ["hmac-sha2-256"], server.lists["compression_c2s"] or ["none"]))
    c.send(bytes([KEX_ECDH_INIT]) + struct.pack(">I", len(q_c)) + q_c)
    await asyncio.wait_for(c.w.drain(), c.t)
    reply = await c.message()
    if reply[0] != KEX_ECDH_REPLY:
        raise SshError(f"expected KEX_ECDH_REPLY, got message {reply[0]}")
    blob, _ = read_string(reply, 1)
    return host_key(blob)


async def ssh_facts(addr: str, port: int, timeout: float, sem: AbstractAsyncContextManager[object] | None = None) -> SshFacts:
    """KEXINIT lists, HASSH server and one host key per key type; `error` when something failed."""
    async def conn_kexinit() -> tuple[_Conn, KexInit]:
        c = await _open(addr, port, timeout)
        try:
            await c.ident()
            c.w.write(IDENT)
            await asyncio.wait_for(c.w.drain(), timeout)
            return c, parse_kexinit(await c.message())
        except BaseException:
            c.w.transport.abort()
            raise

    try:
        c, server = await conn_kexinit()
    except (ValueError, OSError, asyncio.TimeoutError, TimeoutError, asyncio.IncompleteReadError) as e:
        # ValueError: SshError, and asyncio's line-too-long (a hostile "banner" without an end)
        return SshFacts(error=f"no KEXINIT: {e or type(e).__name__}")
    facts = server.facts()
    wanted = key_requests(server.lists["host_key_algorithms"])

    async def one(alg: str, first: _Conn | None) -> HostKey | str:
        try:
            if first is None:
                if sem is not None:
                    async with sem:
                        cc, k = await conn_kexinit()
                else:
                    cc, k = await conn_kexinit()
            else:
                cc, k = first, server
            try:
                return await _kex_for_key(cc, k, alg)
            finally:
                cc.w.transport.abort()
        except (ValueError, OSError, asyncio.TimeoutError, TimeoutError, asyncio.IncompleteReadError) as e:
            return f"{alg}: {e or type(e).__name__}"

    if not wanted:
        c.w.transport.abort()
        facts.error = "the server offers no host key algorithm"
        return facts
    got = await asyncio.gather(*(one(a, c if i == 0 else None) for i, a in enumerate(wanted)))
    seen: set[str] = set()
    for g in got:
        if isinstance(g, HostKey):
            if g.sha256 not in seen:  # rsa-sha2-512 and ssh-rsa name one key
                seen.add(g.sha256)
                facts.host_keys.append(g)
    errors = [g for g in got if isinstance(g, str)]
    if errors:
        facts.error = "; ".join(errors)
    return facts
