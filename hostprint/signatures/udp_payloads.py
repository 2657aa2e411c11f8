"""UDP probe payloads that make common services answer (-sU), written from the protocol specs.

An empty datagram gets no answer from most UDP services, so the port would only ever be
"open|filtered"; a well-formed request turns it into "open". Each payload cites its spec.
"""

from __future__ import annotations

import struct


def _dns_query(name: str, qtype: int, qclass: int, txid: int = 0x6870) -> bytes:
    # RFC 1035 §4.1: header (id, flags=RD off, 1 question), QNAME labels, QTYPE, QCLASS.
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", txid, 0x0000, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, qclass)


def _ber_len(n: int) -> bytes:
    return bytes([n]) if n < 128 else bytes([0x81, n])


def _ber(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _ber_len(len(body)) + body


def _snmp_get_sysdescr(community: bytes = b"public") -> bytes:
    # RFC 1157 §4.1 / RFC 3416: SNMPv1 GetRequest for sysDescr.0 (1.3.6.1.2.1.1.1.0, RFC 1213).
    oid = bytes([0x2B, 6, 1, 2, 1, 1, 1, 0])
    varbind = _ber(0x30, _ber(0x06, oid) + b"\x05\x00")
    pdu = _ber(0xA0, _ber(0x02, b"\x01") + _ber(0x02, b"\x00") + _ber(0x02, b"\x00") + _ber(0x30, varbind))
    return _ber(0x30, _ber(0x02, b"\x00") + _ber(0x04, community) + pdu)


def _nbstat() -> bytes:
    # RFC 1002 §4.2.17: NODE STATUS REQUEST for the wildcard name "*" (first-level encoded).
    name = b"*" + b"\0" * 15
    enc = bytes([32]) + b"".join(bytes([0x41 + (c >> 4), 0x41 + (c & 15)]) for c in name) + b"\0"
    return struct.pack("!HHHHHH", 0x6870, 0, 1, 0, 0, 0) + enc + struct.pack("!HH", 0x21, 1)


def _rpc_null(prog: int, vers: int) -> bytes:
    # RFC 5531: CALL, rpcvers 2, prog, vers, proc 0 (NULL), AUTH_NONE credentials and verifier.
    return struct.pack("!IIIIIIIIII", 0x68700001, 0, 2, prog, vers, 0, 0, 0, 0, 0)


PAYLOADS: dict[int, bytes] = {
    53: _dns_query("version.bind", 16, 3),  # TXT CH, answered by BIND/unbound/dnsmasq
    69: b"\x00\x01hostprint.txt\x00octet\x00",  # RFC 1350 RRQ: an ERROR reply proves the server
    111: _rpc_null(100000, 2),  # portmapper
    123: b"\x23" + b"\0" * 47,  # RFC 5905: LI 0, version 4, mode 3 (client), 48 bytes
    137: _nbstat(),
    161: _snmp_get_sysdescr(),
    177: b"\x00\x01\x00\x02\x00\x01\x00",  # XDMCP (X11R6 XDMCP spec) Query, no auth names
    500: b"",  # IKE needs a full SA proposal; left empty
    520: b"\x01\x02\x00\x00" + b"\x00\x00" + b"\x00" * 14 + b"\x00\x00\x00\x10",  # RFC 2453 whole-table request
    1434: b"\x02",  # MC-SQLR: CLNT_BCAST_EX
    1900: (b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n"
           b"MX: 1\r\nST: ssdp:all\r\n\r\n"),  # UPnP Device Architecture 1.1 §1.3.2
    5060: (b"OPTIONS sip:nm SIP/2.0\r\nVia: SIP/2.0/UDP nm;branch=z9hG4bK-hostprint\r\nFrom: <sip:nm@nm>;tag=hp\r\n"
           b"To: <sip:nm2@nm2>\r\nCall-ID: hostprint\r\nCSeq: 42 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"),  # RFC 3261 §11
    5353: _dns_query("_services._dns-sd._udp.local", 12, 1, txid=0),  # RFC 6763 §9
    11211: b"\x00\x01\x00\x00\x00\x01\x00\x00stats\r\n",  # memcached UDP frame header + text command
}


def llmnr_ptr(addr: str) -> bytes:
    """LLMNR query (RFC 4795 §2.1.1: header as DNS, id, flags 0) for PTR of the target's own
    reverse name: a responder answers only for names it owns, and it owns its addresses' reverse
    names (RFC 4795 §2, §2.4)."""
    import ipaddress

    name = ipaddress.ip_address(addr).reverse_pointer
    return _dns_query(name, 12, 1, txid=0x6870)


#: Per-target payload builders named by `build=` in the application DB (signatures/app_*.txt).
BUILDERS = {"llmnr-ptr": llmnr_ptr}


def payload_for(port: int) -> bytes:
    return PAYLOADS.get(port, b"")
