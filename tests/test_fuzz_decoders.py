"""Property-based fuzzing of every decoder: whatever the bytes, only DecodeError may escape (the
capture reader: only CaptureError), and the vectorised parsers neither raise nor read out of bounds.

Each test is bounded to a few seconds for CI; bench/fuzz/run.py drives the same harness
(tests/fuzz_corpus.py) for millions of packets and records the result in bench/RESULTS.md.
"""

from __future__ import annotations

import os
import random
import tempfile

from fuzz_corpus import blocks_all, capture_all, decode_all, mutate, random_chain, random_pcap, seeds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostprint.engine import frames as F
from hostprint.engine import icmpv6 as C6
from hostprint.engine import ipv6 as I6
from hostprint.engine import packets as P

SEEDS = seeds()
FAST = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CHAINS = settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=300))
def test_random_bytes(fr):
    decode_all(fr)


@FAST
@given(st.sampled_from(SEEDS), st.randoms(use_true_random=False))
def test_mutated_real_and_crafted_frames(seed, rng):
    decode_all(mutate(rng, seed, SEEDS))


@CHAINS
@given(st.randoms(use_true_random=False))
def test_malformed_looping_and_truncated_extension_chains(rng):
    decode_all(random_chain(rng))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SEEDS), st.integers(0, 7), st.binary(min_size=1, max_size=8))
def test_ipv6_header_fields_overwritten(seed, which, data):
    """Payload length, next header and the first extension header's bytes, set to anything."""
    if seed[12:14] != b"\x86\xdd":
        seed = SEEDS[-1]
    at = [18, 20, 54, 55, 56, 62, 58, 14][which]
    decode_all(seed[:at] + data + seed[at + len(data):])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(SEEDS), st.binary(max_size=120),
                          st.builds(mutate, st.randoms(use_true_random=False), st.sampled_from(SEEDS), st.just(SEEDS)),
                          st.builds(random_chain, st.randoms(use_true_random=False))), min_size=1, max_size=24))
def test_vectorised_ipv6_block_parsers(frames):
    blocks_all(frames)


@settings(max_examples=300, deadline=None)
@given(st.randoms(use_true_random=False))
def test_capture_files(rng):
    fd, path = tempfile.mkstemp(suffix=".cap")
    os.close(fd)
    try:
        capture_all(random_pcap(rng, SEEDS), path)
    finally:
        os.unlink(path)


ext_header = st.one_of(
    st.builds(I6.HopByHop, st.lists(st.tuples(st.integers(2, 255), st.binary(max_size=10)), max_size=3)),
    st.builds(I6.DestOpts, st.lists(st.tuples(st.integers(2, 255), st.binary(max_size=10)), max_size=3)),
    st.builds(lambda t, s, a: I6.Routing(t, s, bytes(4) + a), st.integers(0, 255), st.integers(0, 255),
              st.binary(max_size=48).map(lambda b: b[: len(b) // 8 * 8])),
    st.builds(I6.Fragment, st.just(0), st.just(False), st.integers(0, 2**32 - 1)),
    # AH over IPv6: 12 fixed bytes plus an ICV, a multiple of 8 octets in all (RFC 4302 §2.2)
    st.builds(lambda icv: I6.RawExt(I6.IPPROTO_AH, bytes(10) + icv),
              st.integers(0, 4).flatmap(lambda k: st.binary(min_size=4 + 8 * k, max_size=4 + 8 * k))),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(ext_header, max_size=8), st.integers(0, 255), st.integers(0, 0xFFFFF), st.integers(1, 255),
       st.sampled_from(["tcp", "udp", "echo", "na"]))
def test_well_formed_chains_round_trip(ext, tc, flow, hlim, kind):
    """Anything the encoder builds within the RFC's rules decodes to the same headers, and encodes
    again to the same bytes."""
    l4 = {"tcp": P.TCP(1, 2, 3, 4, P.SYN, 5), "udp": P.UDP(1, 2, b"u"), "echo": C6.echo_request(1, 2, b"e"),
          "na": C6.neighbor_advertisement(I6.ip6_bytes("2001:2::1"), b"\x02" * 6)}[kind]
    ip = I6.IPv6(I6.ip6_bytes("2001:2::1"), I6.ip6_bytes("2001:2::2"), None, hlim, tc, flow, ext)
    raw = F.build_ip6(ip, l4)
    back, l4b = F.decode_ip6_packet(raw)
    assert (back.tc, back.flow, back.hlim, len(back.ext)) == (tc, flow, hlim, len(ext))
    assert [type(h) for h in back.ext] == [type(h) for h in ext]
    assert type(l4b) is type(l4)
    assert F.build_ip6(back, l4b) == raw


def test_harness_catches_a_bug():
    """The harness itself: an exception other than DecodeError must surface (else every test above
    could pass while checking nothing)."""
    import pytest

    real = I6.decode_options
    try:
        I6.decode_options = lambda raw: (_ for _ in ()).throw(IndexError("planted"))  # type: ignore[assignment]
        with pytest.raises(IndexError):
            decode_all(SEEDS[0])
    finally:
        I6.decode_options = real
    assert decode_all(b"") > 0 and decode_all(random.Random(1).randbytes(100)) >= 0


def test_found_by_fuzzing_pcapng_simple_packet_block_of_12_bytes(tmp_path):
    """A 12-byte simple packet block (the minimum is 16) gave a captured length of -4."""
    import struct

    import pytest

    from hostprint.engine import pcapfile

    path = tmp_path / "spb.pcapng"
    with pcapfile.PcapngWriter(path) as w:
        w.write(0, SEEDS[0])
    path.write_bytes(path.read_bytes() + struct.pack("<III", pcapfile.PCAPNG_SPB, 12, 12))
    got = []
    with pytest.raises(pcapfile.CaptureError, match="simple packet block too short"):
        for b in pcapfile.read_batches(path):
            got += b.lens
    assert got == [len(SEEDS[0])]
