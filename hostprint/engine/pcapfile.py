"""pcap and pcapng files: a streaming reader built for speed, and small writers for tests.

Why a reader of our own instead of libpcap: the passive fingerprinter must beat p0f on a
million-packet file, and the way to do that in Python is to never build a per-packet object. The
reader walks the record chain of a large chunk with one `unpack_from` per record and hands the
caller *batches*: the chunk's bytes plus the start offsets and captured lengths of every packet,
so the caller can pick out the few packets it cares about (SYN, SYN+ACK, first data segments) with
numpy over the whole batch. Timestamps are decoded only for packets the caller asks about.

A damaged file is reported as `CaptureError` (a UsageError: one line, exit 2) naming the byte
offset of the damage; everything before the damage has already been handed out, so a truncated
capture still yields its packets first. Formats: classic pcap (both byte orders, µs and ns
timestamps; tcpdump's default) and pcapng (Section Header, Interface Description with
if_tsresol, Enhanced/Simple/obsolete Packet blocks; every other block is skipped by length, a long
one on disk without reading it; a packet block longer than MAX_BUFFERED is skipped the same way).
Facts from the pcap and pcapng specifications (IETF draft-ietf-opsawg-pcap, draft-ietf-opsawg-pcapng).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Union

from hostprint.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    #: offsets and lengths: a list, or a numpy int64 array (the pcap reader's); both index and len()
    Ints = Union[list[int], npt.NDArray[np.int64]]

# Link types (tcpdump.org/linktypes.html)
LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP = 0, 1, 101, 108
LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2 = 113, 228, 229, 276
# Some systems write DLT_RAW as 12 or 14 in files (libpcap's pcap-common.c notes).
_RAW_ALIASES = (12, 14, LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6)

PCAP_MAGIC_US, PCAP_MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D
PCAPNG_SHB, PCAPNG_IDB, PCAPNG_PB, PCAPNG_SPB, PCAPNG_EPB = 0x0A0D0D0A, 1, 2, 3, 6
PCAPNG_BOM = 0x1A2B3C4D

#: libpcap's MAXIMUM_SNAPLEN: no real capture holds a longer record; a longer one is damage
#: (classic pcap, which has no trailing length to confirm a long record by).
MAX_RECORD = 262144
CHUNK = 4 << 20
#: pcapng blocks up to this size are read into memory; longer ones (a 300 KB Decryption Secrets
#: Block, a packet over MAX_RECORD) are valid and are skipped on disk after their trailing length
#: confirms them, so memory stays bounded whatever a block claims. Section and interface headers
#: must be parsed: they may be up to MAX_HEADER_BLOCK long.
MAX_BUFFERED = MAX_RECORD + 4096
MAX_HEADER_BLOCK = 16 << 20


_NO_TS = struct.Struct("<II")  # Batch.with_times: the offsets format is never used


class CaptureError(UsageError):
    """The capture file is damaged or is not a capture; the message names the byte offset."""


@dataclass
class Batch:
    """Packets of one link type that lie in one buffer: `buf[starts[i]: starts[i] + lens[i]]`.

    `ts_ns(i)` decodes one timestamp on demand (most packets never need theirs). `starts`, `lens`
    and `_ts` are lists or numpy int64 arrays (the classic pcap reader gives arrays): read them
    by index, len() or numpy.asarray, never by truth value. A batch that does not come from a
    file (a live ring block: `with_times`) carries its timestamps in `tsn` (ns per packet)
    instead of offsets into `buf`."""

    buf: bytes
    starts: Ints
    lens: Ints
    linktype: int
    _ts: Ints  # per packet: offset of its timestamp words in buf
    _fmt: struct.Struct
    _scale: int  # ns per unit for pcap (sec, frac) pairs; 0 = pcapng 64-bit ticks
    _div: tuple[int, int] = (1, 1)  # pcapng: ns = ticks * a // b
    tsn: Any = None  # explicit receive times in ns, one per packet (numpy int64 array or list), or None

    @classmethod
    def with_times(cls, buf: bytes, starts: Ints, lens: Ints, linktype: int, ts_ns: Any) -> Batch:
        """A batch whose timestamps are given (ns per packet), not stored in `buf`."""
        return cls(buf, starts, lens, linktype, [], _NO_TS, 0, tsn=ts_ns)

    def part(self, i: int, j: int) -> Batch:
        """Packets i..j-1 as a batch over the same buffer."""
        return Batch(self.buf, self.starts[i:j], self.lens[i:j], self.linktype, self._ts[i:j], self._fmt,
                     self._scale, self._div, None if self.tsn is None else self.tsn[i:j])

    def ts_seconds(self, idx: list[int]) -> list[float]:
        """Timestamps (float seconds) of the packets at `idx`, decoded with numpy in one go."""
        if len(idx) == 0:
            return []
        import numpy as np

        if self.tsn is not None:
            return (np.asarray(self.tsn, np.int64)[np.asarray(idx, np.intp)] / 1e9).tolist()  # as ts_ns()/1e9
        tso = self._ts
        offs = (tso[np.asarray(idx, np.intp)] if isinstance(tso, np.ndarray)
                else np.fromiter((tso[i] for i in idx), np.int64, len(idx)))
        if self._scale == 0 or self._fmt.format[0] != "<" or (offs < 0).any():
            return [self.ts_ns(i) / 1e9 for i in idx]
        u8 = np.frombuffer(self.buf, np.uint8)

        def u32(o: np.ndarray) -> np.ndarray:
            return (u8[o].astype(np.int64) | u8[o + 1].astype(np.int64) << 8 | u8[o + 2].astype(np.int64) << 16
                    | u8[o + 3].astype(np.int64) << 24)

        return ((u32(offs) * 1_000_000_000 + u32(offs + 4) * self._scale) / 1e9).tolist()  # same rounding as ts_ns()/1e9

    def ts_ns(self, i: int) -> int:
        if self.tsn is not None:
            return int(self.tsn[i])
        o = self._ts[i]
        if o < 0:  # pcapng simple packet block: the format has no timestamp
            return 0
        a, b = self._fmt.unpack_from(self.buf, o)
        if self._scale:
            return a * 1_000_000_000 + b * self._scale
        return ((a << 32) | b) * self._div[0] // self._div[1]


def _open(path: str | Path) -> BinaryIO:
    p = Path(path)
    if p.is_dir():
        raise CaptureError(f"{path}: is a directory")
    try:
        return open(p, "rb")  # noqa: SIM115
    except OSError as e:
        raise CaptureError(f"cannot read capture {path}: {e.strerror or e}") from None


def capture_kind(path: str | Path) -> str:
    """'pcap' or 'pcapng' from the magic number; CaptureError for anything else."""
    with _open(path) as f:
        head = f.read(4)
    if len(head) < 4:
        raise CaptureError(f"{path}: damaged capture at byte offset 0: file too short for a header ({len(head)} bytes)")
    m_le, m_be = struct.unpack("<I", head)[0], struct.unpack(">I", head)[0]
    if m_le == PCAPNG_SHB:
        return "pcapng"
    if m_le in (PCAP_MAGIC_US, PCAP_MAGIC_NS) or m_be in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
        return "pcap"
    raise CaptureError(f"{path}: not a pcap or pcapng file at byte offset 0 (magic {head.hex()})")


def read_batches(path: str | Path, chunk: int = CHUNK) -> Iterator[Batch]:
    """Every packet of a pcap or pcapng file, in file order, as batches."""
    kind = capture_kind(path)
    return _pcap_batches(path, chunk) if kind == "pcap" else _pcapng_batches(path, chunk)


def iter_packets(path: str | Path) -> Iterator[tuple[int, int, bytes]]:
    """(ts_ns, linktype, bytes) per packet: the convenient, slower form (tests, small files)."""
    for b in read_batches(path):
        for i, (s, n) in enumerate(zip(_ints(b.starts), _ints(b.lens))):
            yield b.ts_ns(i), b.linktype, b.buf[s: s + n]


def _ints(x: Ints) -> list[int]:
    return x if isinstance(x, list) else x.tolist()


# --------------------------------------------------------------------------- pcap


def _pcap_batches(path: str | Path, chunk: int) -> Iterator[Batch]:
    with _open(path) as f:
        hdr = f.read(24)
        if len(hdr) < 24:
            raise CaptureError(f"{path}: damaged pcap at byte offset {len(hdr)}: file header cut short (24 bytes needed)")
        magic = struct.unpack("<I", hdr[:4])[0]
        e = "<" if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS) else ">"
        magic = struct.unpack(e + "I", hdr[:4])[0]
        vmaj, _vmin, _zone, _sig, _snap, network = struct.unpack(e + "HHiIII", hdr[4:])
        if vmaj != 2:
            raise CaptureError(f"{path}: damaged pcap at byte offset 4: version {vmaj} (expected 2)")
        linktype = network & 0x0FFFFFFF  # upper bits: FCS length flags (pcap spec)
        rec = struct.Struct(e + "8xI")
        tsf = struct.Struct(e + "II")
        scale = 1 if magic == PCAP_MAGIC_NS else 1000
        unpack = rec.unpack_from
        base = 24  # file offset of buf[0]
        buf = b""
        while True:
            data = f.read(chunk)
            if data:
                buf = buf + data if buf else data
            n = len(buf)
            starts, lens, off = _pcap_walk(buf, e, unpack)
            if len(starts):
                yield Batch(buf, starts, lens, linktype, starts - 16, tsf, scale)
            if off + 16 <= n and unpack(buf, off)[0] > MAX_RECORD:
                caplen = unpack(buf, off)[0]
                raise CaptureError(f"{path}: damaged pcap at byte offset {base + off}: record length {caplen} "
                                   f"exceeds {MAX_RECORD}")
            if not data:
                if off < n:
                    raise CaptureError(f"{path}: damaged pcap at byte offset {base + off}: last record cut short "
                                       f"({n - off} bytes left)")
                return
            buf = buf[off:]
            base += off


def _pcap_walk(buf: bytes, e: str, unpack: Callable[[bytes, int], tuple[int, ...]]) -> tuple[Any, Any, int]:
    """The whole records at the start of `buf` (classic pcap, byte order `e`): numpy arrays of their
    data offsets and captured lengths, and the offset just after the last one. Stops at a record
    that runs past the end of `buf` or claims more than MAX_RECORD (the caller tells which).

    The record chain is walked in Python a few records at a time; when the last eight lengths
    repeat with a short period (a scan's probes and their answers: 58, 54, 58, 54, ...), the chain
    is guessed ahead to repeat it and the guess checked with one numpy gather of the length
    words: the records up to the first length that differs are exactly what the walk would have
    found (each checked length places the next record), and the walk goes on from there."""
    import numpy as np

    n = len(buf)
    parts: list[tuple[Any, Any]] = []
    ss: list[int] = []
    ls: list[int] = []
    off = 0
    run, ahead = 16, 256  # records walked one at a time before the next guess; records guessed
    u32 = None
    while True:
        k = 0
        while k < run and off + 16 <= n:
            caplen = unpack(buf, off)[0]
            end = off + 16 + caplen
            if end > n or caplen > MAX_RECORD:
                break
            ss.append(off + 16)
            ls.append(caplen)
            off = end
            k += 1
        if k < run:
            break
        tail = ls[-8:]
        period = next((p for p in (1, 2, 3, 4) if all(tail[i] == tail[i - p] for i in range(p, len(tail)))), 0)
        if not period or len(tail) < 8:
            run = min(run * 2, 1024)
            continue
        if u32 is None:  # the 32-bit word at every byte offset (unaligned view, nothing copied)
            u32 = np.ndarray((max(n - 3, 0),), e + "u4", buf, 0, (1,))
        guess = np.empty(min(ahead, (n - off) // 16), np.int64)
        for j in range(period):
            guess[j::period] = ls[j - period]
        ends = off + np.cumsum(guess + 16)
        cnt = int(np.searchsorted(ends, n, "right"))  # guessed records that end inside buf
        data = ends[:cnt] - guess[:cnt]
        bad = np.flatnonzero(u32[data - 8] != guess[:cnt])  # the length word: 8 bytes into a record
        m = int(bad[0]) if len(bad) else cnt
        if m:
            if ss:
                parts.append((np.array(ss, np.int64), np.array(ls[-len(ss):], np.int64)))
                ss = []
            parts.append((data[:m], guess[:m]))
            off = int(ends[m - 1])
            ls = ls[-8:]
        if m == cnt and cnt:
            ahead, run = min(ahead * 2, 1 << 16), 8
        else:  # guess about twice the last good stretch next time
            ahead, run = max(256, 2 * m), (8 if m >= 64 else min(run * 2, 1024))
    if ss:
        parts.append((np.array(ss, np.int64), np.array(ls[-len(ss):], np.int64)))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), off
    if len(parts) == 1:
        return parts[0][0], parts[0][1], off
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), off


# --------------------------------------------------------------------------- pcapng


def _tsresol(opts: bytes, e: str) -> tuple[int, int]:
    """(a, b) so that ns = ticks * a // b, from the if_tsresol option (code 9); default µs."""
    i = 0
    while i + 4 <= len(opts):
        code, ln = struct.unpack_from(e + "HH", opts, i)
        if code == 0:
            break
        if code == 9 and ln >= 1 and i + 5 <= len(opts):
            r = opts[i + 4]
            if r & 0x80:
                return 1_000_000_000, 1 << min(r & 0x7F, 63)
            r = min(r, 30)
            return (10 ** (9 - r), 1) if r <= 9 else (1, 10 ** (r - 9))
        i += 4 + ln + (-ln % 4)
    return 1000, 1


def _pcapng_batches(path: str | Path, chunk: int) -> Iterator[Batch]:
    """Block by block; consecutive packets of one interface link type form a batch."""
    with _open(path) as f:
        buf = b""
        base = 0
        e = "<"
        ifaces: list[tuple[int, int, tuple[int, int]]] = []  # (linktype, snaplen, tsresol)
        eof = False
        seen_shb = False
        while True:
            if not eof:
                data = f.read(chunk)
                if data:
                    buf = buf + data if buf else data
                else:
                    eof = True
            n = len(buf)
            off = 0
            starts: list[int] = []
            lens: list[int] = []
            tsoffs: list[int] = []
            cur: tuple[int, tuple[int, int]] | None = None
            batches: list[Batch] = []
            err: str | None = None
            big: tuple[int, int, str] | None = None  # (offset, length, byte order) of a long block

            def flush() -> None:
                nonlocal starts, lens, tsoffs
                if starts and cur is not None:
                    batches.append(Batch(buf, starts, lens, cur[0], tsoffs, struct.Struct(e + "II"), 0, cur[1]))
                starts, lens, tsoffs = [], [], []

            while off + 12 <= n:
                btype = struct.unpack_from(e + "I", buf, off)[0]  # SHB type is a palindrome
                if btype == PCAPNG_SHB:
                    if off + 12 > n:
                        break
                    bom = buf[off + 8: off + 12]
                    if bom == b"\x4d\x3c\x2b\x1a":
                        ne = "<"
                    elif bom == b"\x1a\x2b\x3c\x4d":
                        ne = ">"
                    else:
                        err = f"section header byte-order magic {bom.hex()} is wrong"
                        break
                    blen = struct.unpack_from(ne + "I", buf, off + 4)[0]
                else:
                    if not seen_shb:
                        err = "no section header block at the start"
                        break
                    ne = e
                    blen = struct.unpack_from(e + "I", buf, off + 4)[0]
                if blen < 12 or blen % 4:
                    err = f"block length {blen} is invalid"
                    break
                if blen > MAX_BUFFERED:
                    if btype in (PCAPNG_SHB, PCAPNG_IDB) and blen > MAX_HEADER_BLOCK:
                        err = f"block length {blen} is too long for a section or interface header"
                        break
                    if btype not in (PCAPNG_SHB, PCAPNG_IDB):
                        big = (off, blen, ne)
                        break  # skipped below, on disk
                if off + blen > n:
                    break  # need more data
                if struct.unpack_from(ne + "I", buf, off + blen - 4)[0] != blen:
                    err = "block trailing length does not match its leading length"
                    break
                if btype == PCAPNG_SHB:
                    flush()
                    if blen < 28:
                        err = "section header block too short"
                        break
                    e = ne
                    seen_shb = True
                    ifaces = []
                elif btype == PCAPNG_IDB:
                    if blen < 20:
                        err = "interface description block too short"
                        break
                    lt, _r, snap = struct.unpack_from(e + "HHI", buf, off + 8)
                    ifaces.append((lt, snap, _tsresol(buf[off + 16: off + blen - 4], e)))
                elif btype in (PCAPNG_EPB, PCAPNG_PB):
                    if blen < 32:
                        err = "packet block too short"
                        break
                    if btype == PCAPNG_EPB:
                        ifid, _th, _tl, caplen = struct.unpack_from(e + "IIII", buf, off + 8)
                    else:
                        ifid = struct.unpack_from(e + "H", buf, off + 8)[0]
                        caplen = struct.unpack_from(e + "I", buf, off + 20)[0]
                    if ifid >= len(ifaces):
                        err = f"packet on undeclared interface {ifid}"
                        break
                    if 28 + caplen > blen - 4:
                        err = f"captured length {caplen} runs past its block"
                        break
                    lt, _snap, res = ifaces[ifid]
                    if cur != (lt, res):
                        flush()
                        cur = (lt, res)
                    starts.append(off + 28)
                    lens.append(caplen)
                    tsoffs.append(off + 12)
                elif btype == PCAPNG_SPB:
                    if not ifaces:
                        err = "simple packet block before any interface"
                        break
                    if blen < 16:  # found by fuzzing: a 12-byte block gave a captured length of -4
                        err = "simple packet block too short"
                        break
                    lt, snap, res = ifaces[0]
                    origlen = struct.unpack_from(e + "I", buf, off + 8)[0]
                    caplen = min(origlen, blen - 16, snap or origlen)
                    if cur != (lt, res):
                        flush()
                        cur = (lt, res)
                    starts.append(off + 12)
                    lens.append(caplen)
                    tsoffs.append(-1)
                off += blen
            flush()
            yield from batches
            if err is not None:
                raise CaptureError(f"{path}: damaged pcapng at byte offset {base + off}: {err}")
            if big is not None:
                boff, blen, ne = big
                at = base + boff
                tail = _skip_block(f, buf, boff, blen)
                if tail is None:
                    raise CaptureError(f"{path}: damaged pcapng at byte offset {at}: last block cut short "
                                       f"(block length {blen})")
                if struct.unpack(ne + "I", tail)[0] != blen:
                    raise CaptureError(f"{path}: damaged pcapng at byte offset {at}: block trailing length "
                                       f"does not match its leading length")
                base, buf, eof = at + blen, buf[boff + blen:] if boff + blen <= len(buf) else b"", False
                continue
            if eof:
                if off < n:
                    raise CaptureError(f"{path}: damaged pcapng at byte offset {base + off}: last block cut short "
                                       f"({n - off} bytes left)")
                if not seen_shb:
                    raise CaptureError(f"{path}: damaged pcapng at byte offset 0: no section header block")
                return
            buf = buf[off:]
            base += off


def _skip_block(f: BinaryIO, buf: bytes, boff: int, blen: int) -> bytes | None:
    """Skip the block at buf[boff:] of `blen` bytes, most of it still in the file; return its last 4
    bytes (the trailing length), or None when the file ends first. The file is left just after it."""
    end = boff + blen
    if end <= len(buf):
        return buf[end - 4:end]
    missing = end - len(buf)  # bytes of the block still in the file
    try:
        pos = f.tell()
        size = f.seek(0, 2)
        if pos + missing > size:
            return None
        f.seek(pos + missing - 4)
    except (OSError, ValueError):  # not seekable: read through
        left = missing - 4
        while left > 0:
            got = f.read(min(left, CHUNK))
            if not got:
                return None
            left -= len(got)
    tail = f.read(4) if missing >= 4 else buf[end - 4:end - missing] + f.read(missing)
    return tail if len(tail) == 4 else None


# --------------------------------------------------------------------------- writers (tests, benchmarks)


class PcapWriter:
    """Classic little-endian pcap, µs or ns timestamps."""

    def __init__(self, path: str | Path, linktype: int = LINKTYPE_ETHERNET, snaplen: int = MAX_RECORD,
                 nanosecond: bool = False):
        self.f = open(path, "wb")  # noqa: SIM115
        self.ns = nanosecond
        self.f.write(struct.pack("<IHHiIII", PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US, 2, 4, 0, 0, snaplen, linktype))

    def write(self, ts_ns: int, data: bytes, origlen: int | None = None) -> None:
        sec, rem = divmod(ts_ns, 1_000_000_000)
        frac = rem if self.ns else rem // 1000
        self.f.write(struct.pack("<IIII", sec, frac, len(data), origlen or len(data)) + data)

    def close(self) -> None:
        self.f.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pcapng_block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    ln = 12 + len(body)
    return struct.pack("<II", btype, ln) + body + struct.pack("<I", ln)


class PcapngWriter:
    """Little-endian pcapng: one section, interfaces added with `add_interface`, EPB packets."""

    def __init__(self, path: str | Path, linktype: int | None = LINKTYPE_ETHERNET, tsresol: int = 6):
        self.f = open(path, "wb")  # noqa: SIM115
        self.f.write(pcapng_block(PCAPNG_SHB, struct.pack("<IHHq", PCAPNG_BOM, 1, 0, -1)))
        self.res: list[int] = []
        if linktype is not None:
            self.add_interface(linktype, tsresol=tsresol)

    def add_interface(self, linktype: int, snaplen: int = MAX_RECORD, tsresol: int = 6) -> int:
        opts = b""
        if tsresol != 6:
            opts = struct.pack("<HHB3x", 9, 1, tsresol) + struct.pack("<HH", 0, 0)
        self.f.write(pcapng_block(PCAPNG_IDB, struct.pack("<HHI", linktype, 0, snaplen) + opts))
        self.res.append(tsresol)
        return len(self.res) - 1

    def write(self, ts_ns: int, data: bytes, iface: int = 0, origlen: int | None = None) -> None:
        r = self.res[iface]
        ticks = ts_ns * 10 ** r // 1_000_000_000 if r <= 9 else ts_ns * 10 ** (r - 9)
        body = struct.pack("<IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), origlen or len(data)) + data
        self.f.write(pcapng_block(PCAPNG_EPB, body))

    def close(self) -> None:
        self.f.close()

    def __enter__(self) -> PcapngWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
