"""Timing signatures (Cron-OS lines, Hershel DBs, hostprint's own DB) and the timing classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hostprint.cli import main
from hostprint.errors import UsageError
from hostprint.match.timing import TimingClassifier, TimingObservation, observation_from_times
from hostprint.signatures.timing_db import (
    Schedule,
    TimingDB,
    classes_from_rows,
    decode_options,
    format_cronos,
    parse_cronos,
    read_cronos_db,
    read_hershel_rows,
    read_mapping,
    resolve_timing_db,
    rtt_scale_factor,
)

HERSHEL = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "hershel"
needs_hershel = pytest.mark.skipif(not (HERSHEL / "420OS_db.txt").exists(),
                                   reason="../shared/datasets/hershel not present")


@pytest.fixture(scope="module")
def rows420():
    return read_hershel_rows(HERSHEL / "420OS_db.txt")


@pytest.fixture(scope="module")
def builtin():
    return TimingClassifier(resolve_timing_db("hostprint"))


def split(rows, n_train=40, n_test=10, keep=None):
    seen: dict[int, int] = {}
    train, test = [], []
    for r in rows:
        if keep is not None and r.class_id not in keep:
            continue
        i = seen.get(r.class_id, 0)
        seen[r.class_id] = i + 1
        (train if i < n_train else test if i < n_train + n_test else []).append(r)
    return train, test


def noisy(row, rng, loss=0.0):
    """A held-out sample as a prober would see it: per-host delay, per-packet jitter, FIFO, loss."""
    t = row.times
    arr = np.maximum.accumulate(rng.gamma(2.0, 0.05) + t + rng.exponential(0.05, len(t)))
    keep = rng.random(len(t)) >= loss
    keep[0] = True
    return observation_from_times(arr[keep], rst=bool(row.rst_present and keep[-1]), window=row.window,
                                  ttl=row.ttl, df=row.df, options=row.options, mss=row.mss,
                                  rst_ack=row.rst_ack, rst_win=row.rst_window, rst_nonzero=row.rst_nonzero)


# --- readers -------------------------------------------------------------------------------------

@needs_hershel
def test_hershel420_reader(rows420):
    assert len(rows420) == 420 * 50
    db = TimingDB("h", classes_from_rows(rows420, read_mapping(HERSHEL / "420OS_mapping.txt"), "x"))
    assert len(db.classes) == 420
    win = db.by_id()["167"]  # Windows Vista+: SYN-ACK at 0, 3, 9 and a RST at 21
    assert "Windows" in win.label
    s = win.schedules[0]
    assert s.has_rst and s.n == 4
    np.testing.assert_allclose(s.pos_lo, [0, 3, 9, 21], atol=0.05)
    assert win.header["window"] == {8192: 1.0} and win.header["options"] == {"MNWST": 1.0}


@needs_hershel
def test_hershel116_reader_and_layout():
    rows = read_hershel_rows(HERSHEL / "116OS_db.txt")  # has the extra rst_sequence column
    db = TimingDB("h", classes_from_rows(rows, read_mapping(HERSHEL / "116OS_mapping.txt"), "x"))
    assert len(db.classes) == 116
    sol = db.by_id()["19"]  # Sun_OS_5.10: 7 packets after the first, last = RST+ACK at ~224.7 s
    assert sol.label == "Sun_OS_5.10"
    assert sol.schedules[0].n == 8 and sol.schedules[0].has_rst
    assert sol.schedules[0].pos_lo[-1] == pytest.approx(224.7, abs=0.5)
    assert resolve_timing_db("hershel116").kind == "hershel116"


def test_options_decoding_matches_db_pairs():
    assert decode_options(7331) == "MNWST"
    assert decode_options(30107572) == "MNWNNTNNS"
    assert decode_options(0) == "X"


def test_hershel_reader_names_bad_line(tmp_path):
    p = tmp_path / "db.txt"
    p.write_text("1,8192,128,1,MNWST,7331,1460,0,0,0,0,0,3.0\n1,81x2,128,1,MNWST,7331,1460,0,0,0,0,0,3.0\n")
    with pytest.raises(UsageError, match=r"db.txt:2"):
        read_hershel_rows(p)


# --- Cron-OS lines ---------------------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    "CronOS_Syn(nbPkt=2%Time=30%p=2806316%p=6010910)",
    "CronOS_LastAck(nbPkt=3%Time=30%Connect=134571%p=2918695%p=5909092%p=12014080)",
    "CronOS_FinWait(nbPkt=0%Time=30%Connect=136213)",
    "CronOS_Syn(nbPkt=2%Time=21%p=2950000-3060000%p=5950000-6060000%R=11950000-12060000)",
])
def test_cronos_round_trip(line):
    parsed = parse_cronos(line)
    assert format_cronos(parsed) == line


def test_cronos_fields():
    c = parse_cronos("CronOS_LastAck(nbPkt=3%Time=30%Connect=134571%p=2918695%p=5909092%p=12014080)")
    assert c.test == "lastack" and c.nb_pkt == 3 and c.connect_us == 134571
    s = c.to_schedule()
    np.testing.assert_allclose(s.pos_lo, [0, 2.918695, 8.827787, 20.841867])


@pytest.mark.parametrize("bad", ["CronOS_Syn(nbPkt=3%p=1)", "CronOS_Syn(nbPkt=1%p=x)", "CronOS_Foo(nbPkt=0)",
                                 "CronOS_Syn(nbPkt=1%p=5-2)", "CronOS_Syn(nbPkt=0%Zz=1)"])
def test_cronos_bad_lines(bad):
    with pytest.raises(UsageError, match="f.txt:7"):
        parse_cronos(bad, where="f.txt:7")


TEST_BLOCK = """{note}Fingerprint {name}
Class Test | Test | 1 | test
{id}CronOS_Hdr({hdr})
CronOS_Syn(nbPkt=2%Time={time}%p=1000000-1100000%p=2000000-2200000)

"""


def _block(name: str, note: str = "# test data, synthetic\n", id: str = "", hdr: str = "TTL=64%DF=1",
           time: int = 10) -> str:
    return TEST_BLOCK.format(name=name, note=note, id=f"Id {id}\n" if id else "", hdr=hdr, time=time)


def test_cronos_db_refuses_a_class_without_source():
    with pytest.raises(UsageError, match=r"^db\.txt:1: class 'A' has no source"):
        read_cronos_db("db.txt", text=_block("A", note=""))
    # a comment paragraph ended by a blank line belongs to no class
    with pytest.raises(UsageError, match=r"^db\.txt:9: class 'B' has no source"):
        read_cronos_db("db.txt", text=_block("A") + "# a stray note\n\n" + _block("B", note="", hdr="TTL=128"))
    with pytest.raises(UsageError, match=r"^db\.txt:2: class 'A' has no source"):
        read_cronos_db("db.txt", text=_block("A", note="#\n"))


def test_cronos_db_refuses_a_shadowed_class():
    # the same id again (the later one could never be used), whatever its schedules
    with pytest.raises(UsageError, match=r"^db\.txt:9: class id 'x' is shadowed by the class with that id at line 2"):
        read_cronos_db("db.txt", text=_block("A", id="x") + _block("B", id="x", hdr="TTL=128"))
    # the same header fields and schedules under another name: it ties with the earlier class on every
    # observation and ties go to the earlier one, so it could never win (Time= is not scored)
    with pytest.raises(UsageError, match=r"^db\.txt:8: class 'B' has the same header fields and schedules as "
                                         r"'A' \(line 2\), which shadows it"):
        read_cronos_db("db.txt", text=_block("A") + _block("B", hdr="DF=1%TTL=64", time=60))
    # a header field or a schedule of its own is not shadowed
    db = read_cronos_db("db.txt", text=_block("A") + _block("B", hdr="TTL=64%DF=1%W=8192") + _block("C", hdr="TTL=64"))
    assert [c.id for c in db.classes] == ["a", "b", "c"]
    other = _block("D").replace("p=2000000-2200000", "p=2000000-2300000")
    assert len(read_cronos_db("db.txt", text=_block("A") + other).classes) == 2


def test_keyword_types_name_every_field_they_stand_for():
    """The TypedDicts that type keyword arguments list the dataclass fields they pass on."""
    from dataclasses import fields

    from hostprint.match.timing import ClosedWorldOptions, ObservationHeader, TimingModel
    from hostprint.signatures.timing_db import ScheduleOptions

    def names(cls):
        return {f.name for f in fields(cls)}

    assert set(ClosedWorldOptions.__annotations__) == names(TimingModel) - {"strict_packets", "generic_rule",
                                                                             "adequacy_alpha"}
    assert set(ObservationHeader.__annotations__) == names(TimingObservation) - {"arrivals", "rst_time", "rst"}
    assert set(ScheduleOptions.__annotations__) == names(Schedule) - {"test", "gap_lo", "gap_hi", "pos_lo", "pos_hi",
                                                                       "has_rst", "samples"}


def test_rtt_scaling_seed_example():
    assert rtt_scale_factor(38900, 20000) == pytest.approx(1.945)
    line = parse_cronos("CronOS_LastAck(nbPkt=3%Time=30%Connect=20000%p=300000%p=600000%p=1200000"
                        "%Scale=rtt%Floor=400000%Cap=1000000)")
    s = line.to_schedule().scaled(38900)
    # 0.3 s x 1.945 = 0.5835 s; 0.6 x 1.945 = 1.167 s but floor 0.4 s x 2 = 0.8 and cap 1 s -> 1 s
    np.testing.assert_allclose(s.gap_lo, [0.5835, 1.0, 1.0])
    # a lower RTT: the floor (backing off with the timer) wins
    np.testing.assert_allclose(line.to_schedule().scaled(10000).gap_lo, [0.4, 0.8, 1.0])


def test_builtin_db_parses_and_says_where_entries_come_from():
    db = read_cronos_db(Path(__file__).resolve().parents[1] / "hostprint" / "signatures" / "timing.txt")
    ids = {c.id for c in db.classes}
    for want in ("linux-3.1+", "linux-2.4-3.0", "windows-2000-2003", "windows-vista+", "freebsd-4-9",
                 "freebsd-10", "freebsd-current", "macos-10.5+", "solaris-8-10", "cisco-ios-12",
                 "bsd44-embedded", "lwip", "gvisor", "libslirp", "pasta", "syn-cookie"):
        assert want in ids
    for c in db.classes:
        assert c.source and ("§" in c.source or "inference" in c.source or "google/gvisor" in c.source
                             or "measured here" in c.source.lower()), c.id


# --- classifier ------------------------------------------------------------------------------------

@needs_hershel
def test_heldout_noisy_samples_mostly_correct(rows420):
    keep = set(range(0, 420, 7))  # 60 classes keep the test fast
    train, test = split(rows420, keep=keep)
    clf = TimingClassifier(TimingDB("t", classes_from_rows(train, {}, "train")))
    rng = np.random.default_rng(7)
    obs = [noisy(r, rng, loss=0.02) for r in test]
    got = [v.best.id if v.best else None for v in clf.classify_many(obs)]
    acc = np.mean([g == str(r.class_id) for g, r in zip(got, test)])
    assert acc >= 0.93


def test_middle_retransmission_lost_still_matches(builtin):
    # Linux >= 3.1 SYN-ACKs at 0, 1, 3, 7, 15, 31 s after a 50 ms RTT, the one at 7 s lost
    o = TimingObservation(arrivals=[0.05, 1.07, 3.09, 15.31, 31.48], window=64240, ttl=57, df=1,
                          options="MSTNW", mss=1460)
    v = builtin.classify(o)
    assert v.outcome != "unknown"
    assert {c.family for c, _ in v.fitting} == {"Linux"} or v.best.id in ("linux-3.1+", "pasta")
    assert v.best.id in ("linux-3.1+", "pasta")  # pasta = the host kernel's schedule, same evidence


def test_several_classes_fit_equally(builtin):
    # one SYN-ACK and 5 s of silence: a stateless answer, pasta before its RST and libslirp before its
    # first retransmission look the same
    v = builtin.classify(TimingObservation(arrivals=[0.0005], rtt=0.0005, listen_s=5.0))
    top = {c.id for c, _ in v.fitting}
    assert {"syn-cookie", "pasta", "libslirp"} <= top
    assert v.outcome == "ambiguous"


def test_stateless_answer_is_one_class_for_syn_cookies_and_syn_proxies(builtin):
    # one SYN-ACK, never retransmitted: a SYN cookie answer and a SYN proxy look the same, so the DB
    # holds one class for both (two would shadow each other, see the loader test below)
    v = builtin.classify(TimingObservation(arrivals=[0.02], window=29200, ttl=64, df=1, options="MSTNW"))
    assert v.best is not None and v.best.id == "syn-cookie" and "SYN proxy" in v.best.label


def test_scrubbed_synproxy_answer_is_not_libslirp(builtin):
    # what the scrub lab measured (signatures/timing.txt, synproxy-scrubbed): one window-0 SYN-ACK,
    # TTL 64, no DF, MSS only, then silence until the early stop at ~13 s
    seen = dict(arrivals=[0.0004], rtt=0.0004, listen_s=13.1, ttl=64, df=0, options="M", mss=1360)
    v = builtin.classify(TimingObservation(window=0, **seen))
    assert v.best is not None and v.best.id == "synproxy-scrubbed", v.fitting
    # the window is what sets it apart from libslirp (same TTL, DF and options): a window a stack
    # would send leaves libslirp and the generic stateless class a real share again
    v2 = builtin.classify(TimingObservation(window=65535, **seen))
    p0, p1 = dict((c.id, p) for c, p in v.fitting), dict((c.id, p) for c, p in v2.fitting)
    assert p1["synproxy-scrubbed"] < p0["synproxy-scrubbed"]
    assert p1.get("libslirp", 0) > p0.get("libslirp", 0), (p0, p1)


def test_out_of_db_stack_is_unknown(builtin):
    # linear 2.5-s retransmissions with an odd header: nothing in the DB looks like that
    o = TimingObservation(arrivals=[0.05, 2.55, 5.05, 7.55, 10.05], window=1234, ttl=200, df=0,
                          options="MWT", mss=999)
    v = builtin.classify(o)
    assert v.outcome == "unknown" and v.best is None
    assert v.nearest is not None and v.distance["timing_residual_s"] > 1
    assert v.to_dict()["class"] is None


@needs_hershel
def test_real_stack_missing_from_db_is_not_confidently_misnamed(rows420, builtin):
    # Juniper NetScreen-like linear 2-s schedule with a RST (a Hershel+ class) is not in hostprint's DB
    lin = [r for r in rows420 if len(r.times) > 9 and np.allclose(np.diff(r.times[:6]), np.diff(r.times[:6])[0], atol=0.1)]
    assert lin, "expected a linear-schedule class in the 420 DB"
    rng = np.random.default_rng(3)
    v = builtin.classify(noisy(lin[0], rng))
    assert v.outcome == "unknown" or v.ranked[0][1] < 0.5


def test_confidences_are_probabilities(builtin):
    o = TimingObservation(arrivals=[0.05, 3.06, 9.05], rst_time=21.05, rst=True, rst_nonzero=1, window=8192,
                          ttl=120, df=1, options="MNWST", mss=1460)
    v = builtin.classify(o)
    assert v.outcome == "match" and v.best.id == "windows-vista+"
    total = sum(p for _, p in builtin.classify_many([o], top=100)[0].ranked) + v.unknown_probability
    assert total == pytest.approx(1.0, abs=1e-6)


# --- CLI -------------------------------------------------------------------------------------------

def _write_csv(path: Path, rows: list[list[object]]) -> None:
    n = max(int(r[10]) for r in rows)
    head = "obs_id,window,ttl,df,options,mss,rst,rst_ack,rst_win,rst_nonzero,n_arrivals," + \
           ",".join(f"t{i}" for i in range(n)) + ",comment\n"
    path.write_text(head + "".join(",".join(map(str, r)) + ",x\n" for r in rows))


def test_cli_classify_end_to_end(tmp_path, capsys):
    obs = tmp_path / "obs.csv"
    _write_csv(obs, [
        ["win7", 8192, 113, 1, "MNWST", 1460, 1, 0, 0, 1, 4, 0.11, 3.12, 9.1, 21.13],
        ["lnx", 29200, 61, 1, "MSTNW", 1400, 0, 0, 0, 0, 6, 0.02, 1.05, 3.07, 7.3, 15.5, 31.7],
        ["odd", 1234, 200, 0, "MWT", 999, 0, 0, 0, 0, 5, 0.05, 2.55, 5.05, 7.55, 10.05],
    ])
    out = tmp_path / "out.jsonl"
    assert main(["timing", "classify", str(obs), "--timing-db", "hostprint", "-oJ", str(out)]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["obs_id"] for r in recs] == ["win7", "lnx", "odd"]
    for r in recs:
        assert {"obs_id", "class", "label", "confidence", "alternatives"} <= set(r)
    assert recs[0]["class"] == "windows-vista+" and recs[0]["confidence"] > 0.9
    assert recs[1]["class"] in ("linux-3.1+", "pasta")
    assert recs[2]["class"] is None and recs[2]["unknown"]["nearest"]


@needs_hershel
def test_cli_classify_with_hershel_db(tmp_path):
    obs = tmp_path / "obs.csv"
    _write_csv(obs, [["w", 8192, 128, 1, "MNWST", 1460, 1, 0, 0, 1, 4, 0.1, 3.1, 9.1, 21.1]])
    out = tmp_path / "o.jsonl"
    assert main(["timing", "classify", str(obs), "--timing-db", str(HERSHEL / "420OS_db.txt"),
                 "--timing-db-mapping", str(HERSHEL / "420OS_mapping.txt"), "-oJ", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert "Windows" in rec["label"]


@pytest.mark.parametrize("body,where", [
    ("a,8192,128,1,MNWST,1460,0,0,0,0,2,0.1,zz\n", "obs.csv:2: column t1"),
    ("a,8192,128,7,MNWST,1460,0,0,0,0,1,0.1,\n", "obs.csv:2: column df"),
    ("a,8192,128,1,MQ,1460,0,0,0,0,1,0.1,\n", "obs.csv:2: column options"),
    ("a,8192,128,1,MNWST,1460,0,0,0,0,3,0.1,0.2\n", "obs.csv:2: column t2"),
])
def test_cli_bad_csv_names_line_and_column(tmp_path, capsys, body, where):
    obs = tmp_path / "obs.csv"
    obs.write_text("obs_id,window,ttl,df,options,mss,rst,rst_ack,rst_win,rst_nonzero,n_arrivals,t0,t1\n" + body)
    assert main(["timing", "classify", str(obs), "-oJ", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert where in err and err.count("\n") == 1


def test_one_extra_fin_is_explained_at_a_price_but_not_an_extra_synack(builtin):
    """A DB with one class (as a learned DB holds): LAST_ACK with one FIN more than the class sends
    used to get zero likelihood and came out unknown; it now names the class, less surely than the
    exact schedule. One SYN-ACK more is another retry setting, so it stays unknown."""

    base = next(c for c in builtin.db.classes if c.id == "linux-3.1+")
    fin = Schedule.from_gaps("lastack", np.array([0.18, 0.37, 0.74]), np.array([0.28, 0.53, 1.0]))
    syn = Schedule.from_gaps("syn", np.array([0.9, 1.9]), np.array([1.1, 2.1]))
    import dataclasses

    cls = dataclasses.replace(base, id="learned", schedules=[syn, fin])
    one = TimingClassifier(TimingDB("t", [cls]))
    hdr = dict(window=64240, ttl=64, df=1, options="MSTNW", mss=1460)
    exact = one.classify(TimingObservation(arrivals=[0.0, 0.22, 0.66, 1.5], test="lastack", **hdr))
    extra = one.classify(TimingObservation(arrivals=[0.0, 0.22, 0.66, 1.5, 3.2], test="lastack", **hdr))
    assert exact.best is not None and extra.best is not None and extra.best.id == "learned"
    assert extra.to_dict()["confidence"] <= exact.to_dict()["confidence"]
    more_syn = one.classify(TimingObservation(arrivals=[0.0, 1.0, 3.0, 7.0], **hdr))
    assert more_syn.outcome == "unknown"


@pytest.mark.parametrize("after_handshake", [
    [0.0002, 2.139, 7.143, 17.150],   # RTT sample 0 ticks: RTO 2.5 s (measured 2026-11-23)
    [0.0002, 2.736, 8.739, 20.744],   # RTT sample 1 tick: RTO 3 s (measured 2026-12-05, a loaded client)
])
def test_lwip_either_rto_after_the_handshake(after_handshake):
    """lwIP's LAST_ACK/FIN_WAIT1 RTO follows one RTT sample counted in 500-ms ticks (timing.txt's
    lwIP entry): both schedules measured on the lab's lwIP are lwIP, with the RTT measured."""
    clf = TimingClassifier(resolve_timing_db("hostprint"))
    obs = [observation_from_times([0, 2.6, 8.6], test="syn", ttl=254, df=0, listen_s=40, rtt=0.0005),
           *(observation_from_times(after_handshake, test=t, ttl=254, df=0, listen_s=40, rtt=0.0005)
             for t in ("lastack", "finwait"))]
    v = clf.classify_host(obs)
    assert v.outcome == "match" and v.best is not None and v.best.id == "lwip", v.to_dict()
