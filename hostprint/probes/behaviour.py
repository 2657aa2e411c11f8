"""Behaviour probes for version ranges: what a service says before any login, as plain data.

One function per observation kind of signatures/version_rules.py. Each opens its own connection,
asks only what an anonymous client may ask, reads a bounded answer and hangs up:

* smb2-negotiate: SMB2 NEGOTIATE (MS-SMB2 2.2.3) offering dialects 2.0.2-3.1.1 with the preauth
  integrity, encryption, compression, signing and POSIX negotiate contexts; the response's dialect,
  capability flags, contexts and chosen cipher/signing algorithm (MS-SMB2 2.2.4).
* ldap-rootdse: an anonymous base search of the root DSE (RFC 4511 §4.5, RFC 4512 §5.1).
* imap: pre-login CAPABILITY and ID NIL (RFC 9051 §6.1.1, RFC 2971).
* pop3: CAPA (RFC 2449).
* pg-startup: a startup packet for protocol 9.0, which every PostgreSQL release refuses with an
  ErrorResponse before authentication (protocol docs, "Message Formats").
* ftp: FEAT (RFC 2389) and HELP before login.

ssh-kexinit needs no probe of its own: the SSH facts (probes/ssh_kex.py) already hold the lists.
"""

from __future__ import annotations

import asyncio
import os
import re
import struct
from typing import Any

Observation = dict[str, Any]

READ_CAP = 65536


async def _talk(addr: str, port: int, payloads: list[bytes], timeout: float, *, greeting: bool,
                done: Any = None) -> bytes:
    """Connect, optionally read a greeting, send each payload, read until quiet/EOF/`done(data)`."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(addr, port), timeout)
    buf = b""
    try:
        async def read_some(until_quiet: float) -> None:
            nonlocal buf
            wait = timeout
            while len(buf) < READ_CAP:
                try:
                    chunk = await asyncio.wait_for(reader.read(READ_CAP - len(buf)), wait)
                except (asyncio.TimeoutError, TimeoutError):
                    return
                if not chunk:
                    return
                buf += chunk
                if done is not None and done(buf):
                    return
                wait = until_quiet

        if greeting:
            await read_some(0.2)
        for p in payloads:
            writer.write(p)
        await asyncio.wait_for(writer.drain(), timeout)
        await read_some(0.3)
        return buf
    finally:
        writer.transport.abort()


# ---------------------------------------------------------------------------- SMB2

SMB2_DIALECTS = {0x0202: "2.0.2", 0x0210: "2.1", 0x0300: "3.0", 0x0302: "3.0.2", 0x0311: "3.1.1"}
SMB2_CAPS = {0x01: "DFS", 0x02: "LEASING", 0x04: "LARGE_MTU", 0x08: "MULTI_CHANNEL", 0x10: "PERSISTENT_HANDLES",
             0x20: "DIRECTORY_LEASING", 0x40: "ENCRYPTION"}
SMB2_CONTEXTS = {1: "PREAUTH_INTEGRITY", 2: "ENCRYPTION", 3: "COMPRESSION", 5: "NETNAME", 6: "TRANSPORT",
                 7: "RDMA_TRANSFORM", 8: "SIGNING", 0x100: "POSIX"}
SMB2_CIPHERS = {1: "AES-128-CCM", 2: "AES-128-GCM", 3: "AES-256-CCM", 4: "AES-256-GCM"}
SMB2_SIGNING = {0: "HMAC-SHA256", 1: "AES-128-CMAC", 2: "AES-128-GMAC"}
POSIX_CONTEXT_ID = bytes.fromhex("93AD25509CB411E7B42383DE968BCD7C")  # MS-SMB2 2.2.3.1.7 (SMB3 POSIX)


def _ctx(kind: int, data: bytes) -> bytes:
    return struct.pack("<HHI", kind, len(data), 0) + data


def smb2_negotiate_request() -> bytes:
    """NetBIOS session message + SMB2 NEGOTIATE (MS-SMB2 2.2.3) with five negotiate contexts."""
    dialects = list(SMB2_DIALECTS)
    ctxs = [_ctx(1, struct.pack("<HHH", 1, 32, 1) + os.urandom(32)),  # SHA-512, 32-byte salt
            _ctx(2, struct.pack("<H", 4) + struct.pack("<4H", 4, 3, 2, 1)),  # AES-256-GCM first
            _ctx(3, struct.pack("<HHI", 3, 0, 0) + struct.pack("<3H", 1, 2, 3)),  # LZNT1, LZ77, LZ77+Huffman
            _ctx(8, struct.pack("<H", 3) + struct.pack("<3H", 2, 1, 0)),  # GMAC, CMAC, HMAC-SHA256
            _ctx(0x100, POSIX_CONTEXT_ID)]
    dial = b"".join(struct.pack("<H", d) for d in dialects)
    off = 64 + 36 + len(dial)
    pad = (8 - off % 8) % 8
    blob = b""
    for i, c in enumerate(ctxs):
        blob += c + (b"\0" * ((8 - len(c) % 8) % 8) if i < len(ctxs) - 1 else b"")
    body = struct.pack("<HHHHI16sIHH", 36, len(dialects), 1, 0, 0x7F, os.urandom(16), off + pad, len(ctxs), 0)
    body += dial + b"\0" * pad + blob
    header = b"\xfeSMB" + struct.pack("<HHIHHIIQIIQ16s", 64, 0, 0, 0, 1, 0, 0, 0, 0, 0xFEFF, 0, b"\0" * 16)
    msg = header + body
    return struct.pack(">I", len(msg)) + msg


def parse_smb2_negotiate(data: bytes) -> Observation | None:
    """The NEGOTIATE response's dialect, capabilities, contexts and chosen algorithms."""
    if len(data) < 4 + 64 + 64:
        return None
    n = int.from_bytes(data[:4], "big")
    msg = data[4:4 + n]
    if msg[:4] != b"\xfeSMB" or len(msg) < 128:
        return None
    status, command = struct.unpack("<IH", msg[8:14])
    if command != 0 or status != 0:
        return None
    r = msg[64:]
    (_size, secmode, dialect, nctx, _guid, caps, max_t, max_r, max_w, _systime, start, _soff, _slen,
     coff) = struct.unpack("<HHHH16sIIIIQQHHI", r[:64])
    obs: Observation = {
        "dialect": SMB2_DIALECTS.get(dialect, f"0x{dialect:04x}"),
        "capabilities": [name for bit, name in SMB2_CAPS.items() if caps & bit],
        "signing_required": bool(secmode & 2),
        "max_transact": max_t, "max_read": max_r, "max_write": max_w,
        "start_time": "zero" if start == 0 else "set",
        "contexts": [], "cipher": None, "signing": None,
    }
    if dialect == 0x0311 and nctx:
        p = coff
        for _ in range(nctx):
            if p + 8 > len(msg):
                break
            kind, ln = struct.unpack("<HH", msg[p:p + 4])
            d = msg[p + 8:p + 8 + ln]
            obs["contexts"].append(SMB2_CONTEXTS.get(kind, f"0x{kind:x}"))
            if kind == 2 and len(d) >= 4:
                obs["cipher"] = SMB2_CIPHERS.get(struct.unpack("<H", d[2:4])[0], "none")
            if kind == 8 and len(d) >= 4:
                obs["signing"] = SMB2_SIGNING.get(struct.unpack("<H", d[2:4])[0], "unknown")
            p += 8 + ln
            p += (8 - p % 8) % 8
    return obs


async def smb2_negotiate(addr: str, port: int, timeout: float) -> Observation | None:
    def done(b: bytes) -> bool:
        return len(b) >= 4 and len(b) >= 4 + int.from_bytes(b[:4], "big")

    return parse_smb2_negotiate(await _talk(addr, port, [smb2_negotiate_request()], timeout, greeting=False,
                                            done=done))


# ---------------------------------------------------------------------------- LDAP

ROOT_DSE_ATTRS = ("supportedControl", "supportedExtension", "supportedFeatures", "supportedSASLMechanisms",
                  "supportedLDAPVersion", "configContext", "namingContexts", "vendorName", "vendorVersion")


def _tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 128:
        return bytes([tag, n]) + value
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(b)]) + b + value


def rootdse_request(msgid: int = 1) -> bytes:
    """SearchRequest: base "", scope base, (objectClass=*), the root DSE's operational attributes."""
    attrs = _tlv(0x30, b"".join(_tlv(0x04, a.encode()) for a in ROOT_DSE_ATTRS))
    req = (_tlv(0x04, b"") + _tlv(0x0A, b"\x00") + _tlv(0x0A, b"\x00") + _tlv(0x02, b"\x00") + _tlv(0x02, b"\x00")
           + _tlv(0x01, b"\x00") + _tlv(0x87, b"objectClass") + attrs)
    return _tlv(0x30, _tlv(0x02, bytes([msgid])) + _tlv(0x63, req))


def _ber(b: bytes, i: int) -> tuple[int, int, int]:
    """(tag, value start, value end)."""
    tag = b[i]
    n = b[i + 1]
    j = i + 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(b[j:j + k], "big")
        j += k
    if j + n > len(b):
        raise ValueError("truncated BER")
    return tag, j, j + n


def _kids(b: bytes, s: int, e: int) -> list[tuple[int, int, int]]:
    out = []
    while s < e:
        t, vs, ve = _ber(b, s)
        out.append((t, vs, ve))
        s = ve
    return out


def parse_rootdse(data: bytes) -> Observation | None:
    """Attributes of the first SearchResultEntry (RFC 4511 §4.5.2)."""
    try:
        i = 0
        while i < len(data):
            _t, s, e = _ber(data, i)
            parts = _kids(data, s, e)
            if len(parts) >= 2 and parts[1][0] == 0x64:  # SearchResultEntry
                _t2, es, ee = parts[1]
                entry = _kids(data, es, ee)
                obs: Observation = {}
                for _ta, as_, ae in _kids(data, entry[1][1], entry[1][2]):
                    kv = _kids(data, as_, ae)
                    name = data[kv[0][1]:kv[0][2]].decode("utf-8", errors="replace")
                    obs[name] = [data[vs:ve].decode("utf-8", errors="replace")
                                 for _tv, vs, ve in _kids(data, kv[1][1], kv[1][2])]
                return obs
            i = e
    except (ValueError, IndexError):
        return None
    return None


def _ldap_done(data: bytes) -> bool:
    """A SearchResultDone ([APPLICATION 5]) has arrived."""
    try:
        i = 0
        while i < len(data):
            _t, s, e = _ber(data, i)
            parts = _kids(data, s, e)
            if len(parts) >= 2 and parts[1][0] == 0x65:
                return True
            i = e
    except (ValueError, IndexError):
        return False
    return False


async def ldap_rootdse(addr: str, port: int, timeout: float) -> Observation | None:
    def done(b: bytes) -> bool:
        return _ldap_done(b)

    return parse_rootdse(await _talk(addr, port, [rootdse_request()], timeout, greeting=False, done=done))


# ---------------------------------------------------------------------------- IMAP, POP3

def parse_imap(data: bytes) -> Observation:
    text = data.decode("utf-8", errors="replace")
    caps: list[str] = []
    ident: list[str] = []
    for line in text.splitlines():
        up = line.upper()
        if up.startswith("* CAPABILITY "):
            caps = line.split()[2:]
        elif "[CAPABILITY " in up and not caps:
            caps = line[up.index("[CAPABILITY ") + 12:].split("]", 1)[0].split()
        elif up.startswith("* ID ") and "(" in line and ")" in line:
            quoted = line[line.index("(") + 1:line.rindex(")")].split('"')[1::2]
            ident = [f"{k}={v}" for k, v in zip(quoted[::2], quoted[1::2])]
    return {"capability": caps, "id": ident}


async def imap_facts(addr: str, port: int, timeout: float) -> Observation | None:
    data = await _talk(addr, port, [b"hp1 CAPABILITY\r\nhp2 ID NIL\r\nhp3 LOGOUT\r\n"], timeout, greeting=True,
                       done=lambda b: b"hp3 " in b)
    return parse_imap(data) if data.startswith(b"* ") else None


async def pop3_facts(addr: str, port: int, timeout: float) -> Observation | None:
    data = await _talk(addr, port, [b"CAPA\r\nQUIT\r\n"], timeout, greeting=True,
                       done=lambda b: b"\r\n.\r\n" in b and b.count(b"+OK") >= 3)
    if not data.startswith(b"+OK"):
        return None
    lines = data.decode("utf-8", errors="replace").split("\r\n")
    try:
        start = next(i for i, ln in enumerate(lines) if ln.startswith("+OK") and i > 0)
        end = lines.index(".", start)
    except (StopIteration, ValueError):
        return {"capa": []}
    return {"capa": [ln for ln in lines[start + 1:end] if ln]}


# ---------------------------------------------------------------------------- PostgreSQL

def pg_startup_request() -> bytes:
    body = struct.pack(">I", 0x00090000) + b"user\0hostprint\0\0"
    return struct.pack(">I", len(body) + 4) + body


def parse_pg_error(data: bytes) -> Observation | None:
    """ErrorResponse fields by their one-letter codes (S, V, C, M, F, L, R …)."""
    if len(data) < 5 or data[:1] != b"E":
        return None
    n = int.from_bytes(data[1:5], "big")
    obs: Observation = {}
    for part in data[5:1 + n].split(b"\0"):
        if part:
            obs[chr(part[0])] = part[1:].decode("utf-8", errors="replace")
    return obs


async def pg_startup(addr: str, port: int, timeout: float) -> Observation | None:
    def done(b: bytes) -> bool:
        return len(b) >= 5 and len(b) >= 1 + int.from_bytes(b[1:5], "big")

    return parse_pg_error(await _talk(addr, port, [pg_startup_request()], timeout, greeting=False, done=done))


# ---------------------------------------------------------------------------- FTP

#: a command name in a HELP list (RFC 959 §4.1.3: four letters or fewer; "*" marks one not implemented)
_FTP_COMMAND = re.compile(r"^[A-Z]{3,4}\*?$")


def parse_ftp(data: bytes) -> Observation:
    """FEAT lines (RFC 2389 §3.2), HELP lines and the command names in them, and whether the FEAT
    block ended a line with a bare LF (ProFTPD before 1.3.3 did: Bug 3342)."""
    pieces = data.decode("utf-8", errors="replace").split("\n")
    feat: list[str] = []
    help_lines: list[str] = []
    commands: list[str] = []
    mode = None
    saw_feat = bare_lf = False
    for i, piece in enumerate(pieces):
        ln = piece.removesuffix("\r")
        ended_by_lf = i < len(pieces) - 1 and not piece.endswith("\r")
        if ln.startswith("211-"):
            mode, saw_feat = "feat", True
            bare_lf |= ended_by_lf
            continue
        if ln.startswith("214-") or ln.startswith("214 "):
            mode = "help"
            help_lines.append(ln[4:])
            continue
        if mode == "feat" and ln.startswith(" "):
            feat.append(ln.strip())
            bare_lf |= ended_by_lf
        elif mode == "help" and ln.startswith(" "):
            help_lines.append(ln.strip())
            commands += [t for t in ln.split() if _FTP_COMMAND.match(t)]
        elif ln[:3].isdigit():
            if mode == "feat" and ln.startswith("211 "):
                bare_lf |= ended_by_lf
            mode = None
    obs: Observation = {"feat": feat, "help": help_lines, "help_commands": commands}
    if saw_feat:
        obs["feat_bare_lf"] = "yes" if bare_lf else "no"
    return obs


async def ftp_facts(addr: str, port: int, timeout: float) -> Observation | None:
    data = await _talk(addr, port, [b"FEAT\r\nHELP\r\nQUIT\r\n"], timeout, greeting=True,
                       done=lambda b: b"\r\n221" in b)
    return parse_ftp(data) if data[:3].isdigit() else None


# ---------------------------------------------------------------------------- dispatch

PROBES = {"smb2-negotiate": smb2_negotiate, "ldap-rootdse": ldap_rootdse, "imap": imap_facts, "pop3": pop3_facts,
          "pg-startup": pg_startup, "ftp": ftp_facts}
#: which identified services each observation needs (nmap-services names)
SERVICES = {"smb2-negotiate": ("microsoft-ds", "netbios-ssn", "smb"), "ldap-rootdse": ("ldap",),
            "imap": ("imap",), "pop3": ("pop3",), "pg-startup": ("postgresql",), "ftp": ("ftp",)}


def ssh_observation(ssh: dict[str, Any] | None) -> Observation | None:
    """The KEXINIT lists of the SSH facts, under the rule field names."""
    if not ssh or not ssh.get("kex"):
        return None
    return {"kex": ssh.get("kex", []), "hostkey": ssh.get("host_key_algorithms", []),
            "cipher": ssh.get("ciphers", []), "mac": ssh.get("macs", []),
            "compression": ssh.get("compression", [])}


def summary(kind: str, obs: Observation) -> str:
    """One line of what was observed (the evidence beside the rules that used it)."""
    if kind == "pg-startup":
        return "pg-startup: " + " ".join(f"{k}={obs[k]}" for k in ("V", "C", "F", "L", "R") if k in obs) \
            + (f" M={obs['M']!r}" if "M" in obs else "")
    if kind == "smb2-negotiate":
        return (f"smb2-negotiate: dialect {obs.get('dialect')}, capabilities {','.join(obs.get('capabilities', []))}"
                f", contexts {','.join(obs.get('contexts', []))}, cipher {obs.get('cipher')}, signing {obs.get('signing')}")
    if kind == "ldap-rootdse":
        return "ldap-rootdse: " + "; ".join(f"{k} {','.join(v)}" for k, v in obs.items()
                                            if k in ("supportedControl", "supportedExtension", "supportedFeatures",
                                                     "configContext"))
    if kind == "imap":
        return f"imap: capability {' '.join(obs.get('capability', []))}; id {' '.join(obs.get('id', []))}"
    if kind == "pop3":
        return f"pop3: capa {', '.join(obs.get('capa', []))}"
    if kind == "ftp":
        return (f"ftp: feat {', '.join(obs.get('feat', []))}"
                + (f"; help {' '.join(obs['help_commands'])}" if obs.get("help_commands") else ""))
    if kind == "ssh-kexinit":
        return f"ssh-kexinit: kex {','.join(obs.get('kex', []))}"
    return kind


async def observe(kind: str, addr: str, port: int, timeout: float) -> Observation | None:
    """One observation; None when the service did not answer as the protocol says."""
    fn = PROBES.get(kind)
    if fn is None:
        return None
    try:
        return await fn(addr, port, timeout)
    except (OSError, asyncio.TimeoutError, TimeoutError, ValueError, IndexError, struct.error):
        return None
