"""Enumeration clients: what SNMP, SMB, NTP and LDAP servers tell an unauthenticated client about
their host (the survey's third phase, within reach of what -sV already talks to).

- SNMP (RFC 3416, v2c then v1, with the communities given): system group (sysDescr, sysObjectID,
  sysUpTime, sysContact, sysName, sysLocation, RFC 3418) and the interfaces table (ifDescr, ifType,
  ifMtu, ifPhysAddress, RFC 2863), walked with GetBulk (v2c) or GetNext (v1).
- SMB (MS-SMB2 NEGOTIATE + SESSION_SETUP carrying an NTLMSSP NEGOTIATE, MS-NLMP): the server's
  NTLM CHALLENGE names its NetBIOS and DNS computer and domain names and, with
  NTLMSSP_NEGOTIATE_VERSION, its OS version and build; the negotiate response gives the dialect,
  signing policy and server time. No credentials are sent; the session is never completed.
- NTP mode 6 (RFC 9327, the control protocol ntpq uses): READVAR of association 0, the system
  variables (version, processor, system, stratum, refid …). chrony does not implement mode 6.
- LDAP (RFC 4511): an anonymous base search of the root DSE (RFC 4512 5.1): naming contexts,
  supported versions, vendor, and Active Directory's functional levels and names when present.

Each returns a dict of facts, or None when the service did not answer. Kernel sockets only (no
raw packets): like -sV these work without root.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from typing import Any

from hostprint.engine import ber

SNMP_SYSTEM = {"1.3.6.1.2.1.1.1.0": "sysDescr", "1.3.6.1.2.1.1.2.0": "sysObjectID", "1.3.6.1.2.1.1.3.0": "sysUpTime",
               "1.3.6.1.2.1.1.4.0": "sysContact", "1.3.6.1.2.1.1.5.0": "sysName", "1.3.6.1.2.1.1.6.0": "sysLocation",
               "1.3.6.1.2.1.2.1.0": "ifNumber"}
IF_COLUMNS = {"1.3.6.1.2.1.2.2.1.2": "descr", "1.3.6.1.2.1.2.2.1.3": "type", "1.3.6.1.2.1.2.2.1.4": "mtu",
              "1.3.6.1.2.1.2.2.1.6": "mac"}
MAX_INTERFACES = 64


# ---------------------------------------------------------------------------- UDP/TCP helpers


async def _udp_exchange(addr: str, port: int, payload: bytes, timeout: float, tries: int = 2,
                        more: int = 0) -> list[bytes]:
    """Send `payload` (again when nothing came) and collect the first answer plus up to `more`
    further datagrams (NTP mode 6 answers in fragments)."""
    loop = asyncio.get_running_loop()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    try:
        s.connect((addr, port))
        for _ in range(tries):
            try:
                s.send(payload)
                first = await asyncio.wait_for(loop.sock_recv(s, 65535), timeout)
            except (asyncio.TimeoutError, ConnectionRefusedError, OSError):
                continue
            out = [first]
            for _ in range(more):
                try:
                    out.append(await asyncio.wait_for(loop.sock_recv(s, 65535), min(timeout, 0.3)))
                except (asyncio.TimeoutError, OSError):
                    break
            return out
        return []
    finally:
        s.close()


# ---------------------------------------------------------------------------- SNMP


def _snmp_message(version: int, community: str, pdu_tag: int, oids: list[str], request_id: int,
                  non_repeaters: int = 0, max_reps: int = 0) -> bytes:
    binds = ber.seq(*(ber.seq(ber.oid(o), ber.null()) for o in oids))
    pdu = ber.seq(ber.integer(request_id), ber.integer(non_repeaters), ber.integer(max_reps), binds, tag=pdu_tag)
    return ber.seq(ber.integer(version), ber.octets(community), pdu)


def _snmp_value(t: ber.Tlv) -> Any:
    if t.tag == ber.OCTET_STRING:
        v = t.value
        text = v.decode("utf-8", "replace")
        return text if text.isprintable() or all(c in "\r\n\t" or c.isprintable() for c in text) else v.hex(":")
    if t.tag == ber.OID:
        return t.oid()
    if t.tag == ber.INTEGER:
        return t.num()
    if t.tag in (0x41, 0x42, 0x43, 0x46):  # Counter32, Gauge32, TimeTicks, Counter64
        return t.unum()
    if t.tag == 0x40 and len(t.value) == 4:  # IpAddress
        return socket.inet_ntoa(t.value)
    return None  # NULL, noSuchObject (0x80), noSuchInstance (0x81), endOfMibView (0x82)


def _snmp_parse(data: bytes, request_id: int) -> tuple[int, list[tuple[str, ber.Tlv]]] | None:
    """(error status, varbinds) of a Response-PDU to `request_id`, None otherwise."""
    try:
        msg, _ = ber.decode(data)
        version, _community, pdu = msg.children()[:3]
        if pdu.tag != 0xA2:
            return None
        rid, status, _index, binds = pdu.children()[:4]
        if rid.num() != request_id:
            return None
        out = []
        for vb in binds.children():
            name, value = vb.children()[:2]
            out.append((name.oid(), value))
        return status.num(), out
    except (ber.BerError, ValueError, IndexError):
        return None


async def _snmp_request(addr: str, port: int, version: int, community: str, tag: int, oids: list[str],
                        timeout: float, max_reps: int = 0) -> tuple[int, list[tuple[str, ber.Tlv]]] | None:
    rid = int.from_bytes(os.urandom(3), "big")
    for data in await _udp_exchange(addr, port, _snmp_message(version, community, tag, oids, rid, 0, max_reps),
                                    timeout):
        got = _snmp_parse(data, rid)
        if got is not None:
            return got
    return None


async def snmp_info(addr: str, port: int = 161, communities: list[str] | None = None,
                    timeout: float = 1.0) -> dict[str, Any] | None:
    """The system group and interfaces of an SNMP agent, with the first community (in the user's
    order, v2c before v1) that works. Every community and version is asked at once: an agent is
    silent to a wrong community, so asking in turn cost one full wait per wrong guess (40 s for one
    wrong community at the default --sv-timeout)."""
    pairs = [(c, v) for c in dict.fromkeys(communities or ["public"]) for v in (1, 0)]  # v2c, then v1
    answers = await asyncio.gather(*(_snmp_request(addr, port, v, c, 0xA0, list(SNMP_SYSTEM), timeout)
                                     for c, v in pairs))
    for (community, version), got in zip(pairs, answers):
        if got is None:
            continue
        status, binds = got
        if status != 0 and version == 1:
            # v2c answers every OID on its own (noSuchObject); an error here means v1 semantics
            continue
        facts: dict[str, Any] = {"community": community, "version": "2c" if version == 1 else "1"}
        for name, value in binds:
            key = SNMP_SYSTEM.get(name)
            v = _snmp_value(value)
            if key and v is not None:
                facts[key] = v
        if isinstance(facts.get("sysUpTime"), int):
            facts["uptime_s"] = facts["sysUpTime"] // 100
        facts["interfaces"] = await _snmp_interfaces(addr, port, version, community, timeout)
        return facts
    return None


async def _snmp_walk(addr: str, port: int, version: int, community: str, base: str,
                     timeout: float) -> list[tuple[str, ber.Tlv]]:
    """The rows under `base` (GetBulk for v2c, GetNext for v1), at most MAX_INTERFACES."""
    out: list[tuple[str, ber.Tlv]] = []
    cur = base
    while len(out) < MAX_INTERFACES:
        if version == 1:
            got = await _snmp_request(addr, port, version, community, 0xA5, [cur], timeout, max_reps=32)
        else:
            got = await _snmp_request(addr, port, version, community, 0xA1, [cur], timeout)
        if got is None or got[0] != 0 or not got[1]:
            break
        for name, value in got[1]:
            if not name.startswith(base + ".") or value.tag == 0x82:
                return out
            out.append((name, value))
            cur = name
    return out[:MAX_INTERFACES]


async def _snmp_interfaces(addr: str, port: int, version: int, community: str, timeout: float) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    for col, key in IF_COLUMNS.items():
        for name, value in await _snmp_walk(addr, port, version, community, col, timeout):
            idx = name[len(col) + 1:]
            if idx.isdigit():
                rows.setdefault(int(idx), {"index": int(idx)})[key] = _snmp_value(value)
    for r in rows.values():
        if key_is_mac(r.get("mac")) is False:
            r["mac"] = None
    return [rows[k] for k in sorted(rows)]


def key_is_mac(v: Any) -> bool | None:
    return None if v is None else isinstance(v, str) and v.count(":") == 5


# ---------------------------------------------------------------------------- NTP mode 6


def _ntp_readvar(seq: int) -> bytes:
    # LI 0, VN 2, mode 6; opcode 2 = read variables; association 0 = the system
    return struct.pack("!BBHHHHH", (2 << 3) | 6, 2, seq, 0, 0, 0, 0)


def _parse_vars(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " ,\r\n\t":
            i += 1
        j = i
        while j < n and text[j] not in "=,":
            j += 1
        key = text[i:j].strip()
        if j < n and text[j] == "=":
            j += 1
            if j < n and text[j] == '"':
                k = text.find('"', j + 1)
                k = n if k < 0 else k
                val, j = text[j + 1:k], k + 1
            else:
                k = j
                while k < n and text[k] != ",":
                    k += 1
                val, j = text[j:k].strip(), k
            if key:
                out[key] = val
        elif key:
            out[key] = ""
        i = j + 1
    return out


async def ntp_variables(addr: str, port: int = 123, timeout: float = 1.0) -> dict[str, Any] | None:
    """The system variables of an NTP server's control protocol (ntpq -c rv), None when silent."""
    seq = int.from_bytes(os.urandom(2), "big")
    frags: dict[int, bytes] = {}
    for data in await _udp_exchange(addr, port, _ntp_readvar(seq), timeout, more=16):
        if len(data) < 12 or data[0] & 7 != 6:
            continue
        r_e_m_op, rseq, _status, _assoc, off, count = struct.unpack_from("!BHHHHH", data, 1)
        if not r_e_m_op & 0x80 or rseq != seq or r_e_m_op & 0x1F != 2:
            continue
        if r_e_m_op & 0x40:
            return {"error": "mode 6 error response"}
        frags[off] = data[12:12 + count]
    if not frags:
        return None
    text = b"".join(frags[k] for k in sorted(frags)).decode("ascii", "replace")
    return _parse_vars(text)


# ---------------------------------------------------------------------------- LDAP


ROOT_DSE_ATTRS = ("namingContexts", "defaultNamingContext", "rootDomainNamingContext", "configurationNamingContext",
                  "schemaNamingContext", "subschemaSubentry", "supportedLDAPVersion", "supportedSASLMechanisms",
                  "vendorName", "vendorVersion", "dnsHostName", "serverName", "ldapServiceName",
                  "domainFunctionality", "forestFunctionality", "domainControllerFunctionality",
                  "isGlobalCatalogReady", "highestCommittedUSN", "structuralObjectClass", "objectClass")


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close a connection, waiting at most a second for it to go (a peer that never answers our
    FIN must not hold the enumeration)."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except (asyncio.TimeoutError, OSError):
        pass


async def _tcp_exchange(addr: str, port: int, payload: bytes, timeout: float, until: Any) -> bytes:
    """Send `payload` over TCP and read until `until(buffer)` says the answer is whole."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(addr, port), timeout)
    try:
        writer.write(payload)
        await writer.drain()
        buf = b""
        while not until(buf):
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                break
            buf += chunk
        return buf
    finally:
        await _close(writer)


def _ldap_done(buf: bytes) -> bool:
    off = 0
    try:
        while off < len(buf):
            msg, off = ber.decode(buf, off)
            if len(msg.children()) > 1 and msg.children()[1].tag == 0x65:  # searchResDone
                return True
    except ber.BerError:
        return False
    return False


async def ldap_root_dse(addr: str, port: int = 389, timeout: float = 2.0) -> dict[str, Any] | None:
    req = ber.seq(ber.integer(1), ber.seq(
        ber.octets(""), ber.integer(0, ber.ENUMERATED), ber.integer(0, ber.ENUMERATED), ber.integer(0), ber.integer(0),
        ber.boolean(False), ber.octets("objectClass", 0x87), ber.seq(*(ber.octets(a) for a in ROOT_DSE_ATTRS)),
        tag=0x63))
    try:
        buf = await _tcp_exchange(addr, port, req, timeout, _ldap_done)
    except (OSError, asyncio.TimeoutError):
        return None
    out: dict[str, Any] = {}
    off = 0
    try:
        while off < len(buf):
            msg, off = ber.decode(buf, off)
            op = msg.children()[1]
            if op.tag == 0x64:  # searchResEntry: objectName, attributes
                for attr in op.children()[1].children():
                    name, vals = attr.children()[:2]
                    out[name.text()] = [v.text() for v in vals.children()]
            elif op.tag == 0x65:
                code = op.children()[0].num()
                if code != 0 and not out:
                    return {"result_code": code}
                break
    except (ber.BerError, IndexError, ValueError):
        pass
    return out or None


# ---------------------------------------------------------------------------- SMB


SMB2_DIALECTS = (0x0202, 0x0210, 0x0300, 0x0302)
NTLM_OID, SPNEGO_OID = "1.3.6.1.4.1.311.2.2.10", "1.3.6.1.5.5.2"
#: NTLMSSP NEGOTIATE flags: unicode, OEM, request target, NTLM, always sign, extended session
#: security, target info, version, 128-bit, 56-bit (MS-NLMP 2.2.2.5)
NTLM_FLAGS = 0x00000001 | 0x00000002 | 0x00000004 | 0x00000200 | 0x00008000 | 0x00080000 | 0x00800000 | \
    0x02000000 | 0x20000000 | 0x80000000
AV_NAMES = {1: "netbios_computer", 2: "netbios_domain", 3: "dns_computer", 4: "dns_domain", 5: "dns_forest"}


def _smb2(command: int, body: bytes, message_id: int) -> bytes:
    hdr = struct.pack("<4sHHIHHIIQIIQ16s", b"\xfeSMB", 64, 0, 0, command, 1, 0, 0, message_id, 0, 0, 0, b"\0" * 16)
    pkt = hdr + body
    return struct.pack(">I", len(pkt)) + pkt  # direct TCP transport: a 4-byte length (MS-SMB2 2.1)


def _ntlm_negotiate() -> bytes:
    version = bytes([6, 1]) + struct.pack("<H", 7601) + b"\0\0\0" + bytes([15])
    msg = b"NTLMSSP\0" + struct.pack("<II", 1, NTLM_FLAGS) + struct.pack("<HHI", 0, 0, 40) * 2 + version
    token = ber.seq(ber.seq(ber.seq(ber.oid(NTLM_OID)), tag=0xA0), ber.seq(ber.octets(msg), tag=0xA2))
    return ber.seq(ber.oid(SPNEGO_OID), ber.seq(token, tag=0xA0), tag=0x60)


def _filetime(v: int) -> float | None:
    return (v - 116444736000000000) / 1e7 if v else None


def parse_ntlm_challenge(buf: bytes) -> dict[str, Any] | None:
    """Names and version from an NTLMSSP CHALLENGE message found anywhere in `buf` (MS-NLMP 2.2.1.2)."""
    i = buf.find(b"NTLMSSP\0\x02\0\0\0")
    if i < 0 or len(buf) < i + 48:
        return None
    m = buf[i:]
    tn_len, _tn_max, tn_off = struct.unpack_from("<HHI", m, 12)
    flags = struct.unpack_from("<I", m, 20)[0]
    ti_len, _ti_max, ti_off = struct.unpack_from("<HHI", m, 40)
    out: dict[str, Any] = {}
    if tn_len and tn_off + tn_len <= len(m):
        out["target_name"] = m[tn_off:tn_off + tn_len].decode("utf-16-le", "replace")
    if flags & 0x02000000 and len(m) >= 56:
        major, minor, build = m[48], m[49], struct.unpack_from("<H", m, 50)[0]
        out["os_version"] = f"{major}.{minor}.{build}"
        out["ntlm_revision"] = m[55]
    off, end = ti_off, min(ti_off + ti_len, len(m))
    while off + 4 <= end:
        av_id, av_len = struct.unpack_from("<HH", m, off)
        off += 4
        if av_id == 0 or off + av_len > end:
            break
        val = m[off:off + av_len]
        if av_id in AV_NAMES:
            out[AV_NAMES[av_id]] = val.decode("utf-16-le", "replace")
        elif av_id == 7 and av_len == 8:
            out["time"] = _filetime(struct.unpack("<Q", val)[0])
        off += av_len
    return out


async def smb_info(addr: str, port: int = 445, timeout: float = 2.0) -> dict[str, Any] | None:
    """What an SMB2/3 server says before any authentication: dialect, signing, time, and the
    NTLM challenge's names and OS version."""
    guid = os.urandom(16)
    neg = struct.pack("<HHHHI16sQ", 36, len(SMB2_DIALECTS), 1, 0, 0, guid, 0)
    neg += b"".join(struct.pack("<H", d) for d in SMB2_DIALECTS)
    token = _ntlm_negotiate()
    setup = struct.pack("<HBBIIHHQ", 25, 0, 1, 0, 0, 64 + 24, len(token), 0) + token
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(addr, port), timeout)
    except (OSError, asyncio.TimeoutError):
        return None
    out: dict[str, Any] = {}
    try:
        async def frame() -> bytes:
            hdr = await asyncio.wait_for(reader.readexactly(4), timeout)
            return await asyncio.wait_for(reader.readexactly(struct.unpack(">I", hdr)[0] & 0xFFFFFF), timeout)

        writer.write(_smb2(0, neg, 0))
        await writer.drain()
        r = await frame()
        if r[:4] != b"\xfeSMB" or len(r) < 64 + 64:
            return {"smb1_only": True} if r[:4] == b"\xffSMB" else None
        status = struct.unpack_from("<I", r, 8)[0]
        if status != 0:
            return {"negotiate_status": f"0x{status:08x}"}
        sec_mode, dialect = struct.unpack_from("<HH", r, 66)
        out["dialect"] = {0x0202: "2.0.2", 0x0210: "2.1", 0x0300: "3.0", 0x0302: "3.0.2", 0x0311: "3.1.1"}.get(
            dialect, f"0x{dialect:04x}")
        out["signing_required"] = bool(sec_mode & 2)
        out["server_guid"] = r[72:88].hex()
        systime, start = struct.unpack_from("<QQ", r, 64 + 40)
        out["server_time"] = _filetime(systime)
        if start:
            out["server_start_time"] = _filetime(start)
        writer.write(_smb2(1, setup, 1))
        await writer.drain()
        r = await frame()
        chal = parse_ntlm_challenge(r[64:])
        if chal:
            out.update(chal)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, struct.error):
        pass
    finally:
        await _close(writer)
    return out or None
