"""Version ranges from FTP FEAT/HELP and from a Windows server's SMB2 NEGOTIATE (issue 16's data
leftovers), on documented or measured bytes:

* ProFTPD: the FEAT and HELP text its own test suite expects (tests/t/lib/ProFTPD/Tests/Commands/
  FEAT.pm feat_ok, HELP.pm help_ok) and FEAT lists built from the NEWS entries the rules cite
  (ProFTPD cannot be installed here beside vsftpd);
* vsftpd: FEAT answers measured on Debian 12's vsftpd 3.0.3 (the lab test repeats the measurement)
  and the 2.0.5 FEAT as its features.c writes it;
* Windows: an SMB2 NEGOTIATE response built from MS-SMB2 §2.2.4 / §2.2.3.1, read by the same parser
  the scan uses; Samba's product never gets a Windows rule.
"""

from __future__ import annotations

import struct

import pytest

from hostprint.match import versionrange
from hostprint.probes import behaviour

GREETING = b"220 ProFTPD Server (hostprint) [198.18.0.9]\r\n"
QUIT = b"221 Goodbye.\r\n"


def feat_answer(lines: list[str], eol: bytes = b"\r\n") -> bytes:
    """A FEAT reply (RFC 2389 §3.2): 211-, one feature per line with a leading space, 211 End."""
    return b"211-Features:" + eol + b"".join(b" " + ln.encode() + eol for ln in lines) + b"211 End\r\n"


def ftp_obs(*parts: bytes) -> dict:
    return behaviour.parse_ftp(GREETING + b"".join(parts) + QUIT)


# ProFTPD's test suite, FEAT.pm feat_ok (a tree with the Issue 1383 tests, so 1.3.8rc3 or later),
# without the optional NLS/mod_site_misc/mod_copy lines.
PROFTPD_FEAT_138 = ["CLNT", "EPRT", "EPSV", "HOST", "MDTM", "MFMT", "TVFS", "MFF modify;UNIX.group;UNIX.mode;",
                    "MLST modify*;perm*;size*;type*;unique*;UNIX.group*;UNIX.groupname*;UNIX.mode*;UNIX.owner*;"
                    "UNIX.ownername*;", "RANG STREAM", "REST STREAM", "SIZE"]
# HELP.pm help_ok (mod_tls not compiled: its commands carry the "*" of unimplemented ones).
PROFTPD_HELP = (b"214-The following commands are recognized (* =>'s unimplemented):\r\n"
                b" CWD     XCWD    CDUP    XCUP    SMNT*   QUIT    PORT    PASV    \r\n"
                b" EPRT    EPSV    ALLO*   RNFR    RNTO    DELE    MDTM    RMD     \r\n"
                b" XRMD    MKD     XMKD    PWD     XPWD    SIZE    SYST    HELP    \r\n"
                b" NOOP    FEAT    OPTS    AUTH*   CCC*    CONF*   ENC*    MIC*    \r\n"
                b" PBSZ*   PROT*   TYPE    STRU    MODE    RETR    STOR    STOU    \r\n"
                b" APPE    REST    ABOR    USER    PASS    ACCT*   REIN*   LIST    \r\n"
                b" NLST    STAT    SITE    MLSD    MLST    \r\n"
                b"214 Direct comments to root@127.0.0.1\r\n")


def test_ftp_parser_reads_feat_help_and_the_command_names():
    obs = ftp_obs(feat_answer(PROFTPD_FEAT_138), PROFTPD_HELP)
    assert obs["feat"] == PROFTPD_FEAT_138
    assert obs["feat_bare_lf"] == "no"
    assert obs["help_commands"][:3] == ["CWD", "XCWD", "CDUP"] and "SMNT*" in obs["help_commands"]
    assert "MLSD" in obs["help_commands"] and len(obs["help_commands"]) == 53
    assert "The following" not in " ".join(obs["help_commands"])
    assert "feat_bare_lf" not in ftp_obs(b"530 Please login with USER and PASS.\r\n")


def test_proftpd_current_feat_gives_1_3_7_or_later():
    vr = versionrange.infer("ProFTPD", {"ftp": ftp_obs(feat_answer(PROFTPD_FEAT_138), PROFTPD_HELP)})
    assert vr is not None and vr.conflict is None
    assert (vr.low, vr.high, vr.text) == ("1.3.7", None, ">= 1.3.7")
    ids = {e.detail.split(":")[0] for e in vr.evidence}
    assert ids == {"proftpd-mod-facts", "proftpd-help-mlsd", "proftpd-tvfs", "proftpd-host", "proftpd-rang"}
    assert all("source:" in e.detail and "NEWS" in e.detail for e in vr.evidence)


@pytest.mark.parametrize("feat, text", [
    # 1.3.6: HOST (Bug 3289) but no RANG (Issue 351, 1.3.7rc1)
    (["HOST", "MDTM", "MFMT", "TVFS", "MLST modify*;perm*;size*;type*;", "REST STREAM", "SIZE"], ">= 1.3.6"),
    # 1.3.3-1.3.5: mod_facts and TVFS (Bug 3133), no HOST
    (["MDTM", "MFMT", "TVFS", "MFF modify;UNIX.group;UNIX.mode;", "MLST modify*;", "REST STREAM", "SIZE"], ">= 1.3.3"),
    # 1.3.2: mod_facts without TVFS
    (["MDTM", "MFMT", "MLST modify*;", "REST STREAM", "SIZE"], ">= 1.3.2"),
])
def test_proftpd_feat_of_older_releases(feat, text):
    vr = versionrange.infer("ProFTPD", {"ftp": ftp_obs(feat_answer(feat))})
    assert vr is not None and vr.text == text and vr.conflict is None


def test_proftpd_bare_lf_bounds_from_above():
    """Before 1.3.3rc2 (Bug 3342) FEAT lines ended with LF alone; with mod_facts that is 1.3.2."""
    obs = ftp_obs(feat_answer(["MDTM", "MFMT", "MLST modify*;", "SIZE"], eol=b"\n"))
    assert obs["feat_bare_lf"] == "yes" and obs["feat"] == ["MDTM", "MFMT", "MLST modify*;", "SIZE"]
    vr = versionrange.infer("ProFTPD", {"ftp": obs})
    assert (vr.low, vr.high, vr.text) == ("1.3.2", "1.3.3", ">= 1.3.2, < 1.3.3")
    vr = versionrange.infer("ProFTPD", {"ftp": obs}, "1.3.5")
    assert vr.conflict and "1.3.5" in vr.conflict


def test_proftpd_without_extensions_gives_nothing():
    """A FEAT that says nothing new (or no FEAT at all) gives no range: absence is not evidence."""
    assert versionrange.infer("ProFTPD", {"ftp": ftp_obs(feat_answer(["MDTM", "SIZE"]))}) is None
    assert versionrange.infer("ProFTPD", {"ftp": ftp_obs(b"500 FEAT not understood\r\n")}) is None


# vsftpd 3.0.3-13+b2 (Debian 12), measured here: the default configuration, and ssl_enable=YES with
# port_enable=NO and pasv_enable=NO.
VSFTPD_DEFAULT = ["EPRT", "EPSV", "MDTM", "PASV", "REST STREAM", "SIZE", "TVFS"]
VSFTPD_TLS_NODATA = ["AUTH TLS", "MDTM", "PBSZ", "PROT", "REST STREAM", "SIZE", "TVFS"]
# vsftpd 2.0.5's features.c with ssl_enable=YES: AUTH SSL and AUTH TLS together, PASV listed.
VSFTPD_205_TLS = ["AUTH SSL", "AUTH TLS", "EPRT", "EPSV", "MDTM", "PASV", "PBSZ", "PROT", "REST STREAM", "SIZE",
                  "TVFS"]
LOGIN_FIRST = b"530 Please login with USER and PASS.\r\n"


@pytest.mark.parametrize("feat, text", [
    (VSFTPD_DEFAULT, ">= 2.0.0"),
    (VSFTPD_TLS_NODATA, ">= 2.3.5"),
    (VSFTPD_205_TLS, ">= 2.0.0"),
])
def test_vsftpd_feat_ranges(feat, text):
    vr = versionrange.infer("vsftpd", {"ftp": ftp_obs(feat_answer(feat), LOGIN_FIRST)}, "3.0.3")
    assert vr is not None and vr.text == text and vr.conflict is None


def test_vsftpd_range_checks_the_banner():
    vr = versionrange.infer("vsftpd", {"ftp": ftp_obs(feat_answer(VSFTPD_TLS_NODATA))}, "2.0.5")
    assert vr.conflict and "2.0.5" in vr.conflict and ">= 2.3.5" in vr.conflict


def test_vsftpd_before_2_0_refuses_feat_before_login_and_gets_no_bound():
    """vsftpd 1.2.x answered FEAT only after login: the 530 must not read as "PASV absent"."""
    assert versionrange.infer("vsftpd", {"ftp": ftp_obs(LOGIN_FIRST, LOGIN_FIRST)}) is None


# ---------------------------------------------------------------------------- Windows SMB

def _ctx(kind: int, data: bytes) -> bytes:
    """SMB2_NEGOTIATE_CONTEXT (MS-SMB2 §2.2.3.1): type, length, 4 reserved bytes, data, 8-byte aligned."""
    c = struct.pack("<HHI", kind, len(data), 0) + data
    return c + b"\0" * ((8 - len(c) % 8) % 8)


def negotiate_response(dialect: int, contexts: list[bytes], caps: int = 0x2F) -> bytes:
    """NetBIOS length + SMB2 header + NEGOTIATE response (MS-SMB2 §2.2.1, §2.2.4), no security blob."""
    header = b"\xfeSMB" + struct.pack("<HHIHHIIQIIQ16s", 64, 0, 0, 0, 1, 1, 0, 0, 0, 0xFEFF, 0, b"\0" * 16)
    ctx_off = 64 + 64
    body = struct.pack("<HHHH16sIIIIQQHHI", 65, 1, dialect, len(contexts), b"G" * 16, caps, 8388608, 8388608,
                       8388608, 0, 0, 128, 0, ctx_off if contexts else 0)
    blob = b"".join(contexts)
    msg = header + body + blob
    return struct.pack(">I", len(msg)) + msg


PREAUTH = _ctx(1, struct.pack("<HHH", 1, 32, 1) + b"S" * 32)  # SHA-512 (§2.2.3.1.1)
AES128_GCM = _ctx(2, struct.pack("<HH", 1, 2))  # one cipher chosen: AES-128-GCM (§2.2.3.1.2)
AES256_GCM = _ctx(2, struct.pack("<HH", 1, 4))
COMPRESSION = _ctx(3, struct.pack("<HHI", 1, 0, 0) + struct.pack("<H", 3))  # LZ77+Huffman (§2.2.3.1.3)


@pytest.mark.parametrize("dialect, contexts, text", [
    (0x0202, [], ">= 6.0"),
    (0x0210, [], ">= 6.1"),
    (0x0300, [], ">= 6.2"),
    (0x0302, [], ">= 6.3"),
    (0x0311, [PREAUTH, AES128_GCM], ">= 10.0"),
    (0x0311, [PREAUTH, AES128_GCM, COMPRESSION], ">= 10.0.18362"),
    (0x0311, [PREAUTH, AES256_GCM, COMPRESSION], ">= 10.0.20348"),
])
def test_windows_range_from_the_negotiate_response(dialect, contexts, text):
    obs = behaviour.parse_smb2_negotiate(negotiate_response(dialect, contexts))
    assert obs is not None
    vr = versionrange.infer("Microsoft Windows SMB", {"smb2-negotiate": obs})
    assert vr is not None and vr.text == text and vr.conflict is None
    assert all(e.detail.startswith("windows-smb-") and "source:" in e.detail for e in vr.evidence)


def test_samba_never_gets_a_windows_range():
    """Samba with the same answer is judged by the Samba rules only."""
    obs = behaviour.parse_smb2_negotiate(negotiate_response(0x0311, [PREAUTH, AES256_GCM, COMPRESSION]))
    vr = versionrange.infer("Samba smbd", {"smb2-negotiate": obs})
    assert vr is not None and not any("windows" in e.detail.split(":")[0] for e in vr.evidence)
    assert vr.text == ">= 4.15"  # samba-aes256 (Samba 4.15 release notes), nothing from Windows


def test_the_ntlm_build_is_checked_against_the_range():
    """NTLMSSP says 10.0 build 17763 (Server 2019) but the server offers compression (1903+)."""
    stated = versionrange.stated_version("Microsoft Windows SMB", None, "NTLMSSP Windows 10.0 build 17763")
    assert stated == "10.0.17763"
    obs = behaviour.parse_smb2_negotiate(negotiate_response(0x0311, [PREAUTH, AES128_GCM, COMPRESSION]))
    vr = versionrange.infer("Microsoft Windows SMB", {"smb2-negotiate": obs}, stated)
    assert vr.conflict and "10.0.17763" in vr.conflict
    ok = versionrange.infer("Microsoft Windows SMB", {"smb2-negotiate": obs}, "10.0.20348")
    assert ok.conflict is None and versionrange.contains(ok, "10.0.20348")
    assert versionrange.stated_version("Samba smbd", None, "NTLMSSP Windows 10.0 build 17763") is None
    assert versionrange.stated_version("vsftpd", "3.0.3", None) == "3.0.3"
