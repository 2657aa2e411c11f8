"""Long decoder fuzzing run (issue 17): the harness of tests/test_fuzz_decoders.py for millions of inputs.

  python3 bench/fuzz/run.py [--seconds 600] [--seed 1] [--md]

Inputs, from one seeded random stream so a run can be repeated exactly:
  45 % mutations of real Linux captures and crafted frames of every kind (tests/fuzz_corpus.py),
  35 % IPv6 packets with random, inconsistent extension-header chains (loops, lying lengths, cuts),
  20 % random bytes;
every 512 inputs the batch also goes through the vectorised IPv6 block parsers as one ring block,
and every 200 inputs a generated pcap/pcapng image goes through the capture reader (whose packets
go through the decoders again). Every decoder must refuse bad input with DecodeError (the reader:
CaptureError); anything else is counted as escaped and the input saved under
/tmp/hostprint-bench/fuzz/ to reproduce. Not a test: prints the numbers for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
OUT = Path("/tmp/hostprint-bench/fuzz")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--md", action="store_true", help="print a Markdown table row")
    args = ap.parse_args()

    from fuzz_corpus import blocks_all, capture_all, decode_all, mutate, random_chain, random_pcap, seeds

    rng = random.Random(args.seed)
    pool = seeds()
    OUT.mkdir(parents=True, exist_ok=True)
    cap_path = str(OUT / "current.cap")
    counts = {"frames": 0, "mutated": 0, "chains": 0, "random": 0, "decoder_calls_refused": 0, "blocks": 0,
              "block_frames": 0, "captures": 0, "capture_packets": 0, "escaped": 0}
    escaped: list[dict] = []
    batch: list[bytes] = []
    t0 = time.monotonic()
    end = t0 + args.seconds

    def record(kind: str, data: bytes) -> None:
        counts["escaped"] += 1
        h = hashlib.sha1(data).hexdigest()[:12]
        (OUT / f"escaped-{kind}-{h}.bin").write_bytes(data)
        if len(escaped) < 20:
            escaped.append({"kind": kind, "file": str(OUT / f"escaped-{kind}-{h}.bin"), "error": traceback.format_exc(limit=3)})

    i = 0
    while time.monotonic() < end:
        for _ in range(256):
            r = rng.random()
            if r < 0.45:
                fr = mutate(rng, rng.choice(pool), pool)
                counts["mutated"] += 1
            elif r < 0.80:
                fr = random_chain(rng)
                counts["chains"] += 1
            else:
                fr = rng.randbytes(rng.randint(0, 400))
                counts["random"] += 1
            try:
                counts["decoder_calls_refused"] += decode_all(fr)
            except Exception:  # noqa: BLE001 - this is what the run looks for
                record("frame", fr)
            counts["frames"] += 1
            batch.append(fr)
            i += 1
            if len(batch) >= 512:
                try:
                    blocks_all(batch)
                except Exception:  # noqa: BLE001
                    record("block", b"".join(len(f).to_bytes(4, "big") + f for f in batch))
                counts["blocks"] += 1
                counts["block_frames"] += len(batch)
                batch = []
            if i % 200 == 0:
                image = random_pcap(rng, pool)
                try:
                    counts["capture_packets"] += capture_all(image, cap_path)
                except Exception:  # noqa: BLE001
                    record("capture", image)
                counts["captures"] += 1
    elapsed = time.monotonic() - t0
    result = {"date": time.strftime("%Y-%m-%d"), "seed": args.seed, "seconds": round(elapsed, 1),
              "python": platform.python_version(), "kernel": platform.release(), **counts,
              "frames_per_s": round(counts["frames"] / elapsed), "escaped_examples": escaped}
    print(json.dumps(result, indent=1))
    if args.md:
        print(f"| {result['date']} | {args.seed} | {result['seconds']} s | {counts['frames']:,} | "
              f"{counts['mutated']:,} / {counts['chains']:,} / {counts['random']:,} | {counts['block_frames']:,} | "
              f"{counts['captures']:,} ({counts['capture_packets']:,} packets) | {counts['escaped']} |")
    try:
        os.unlink(cap_path)
    except OSError:
        pass
    return 1 if counts["escaped"] else 0


if __name__ == "__main__":
    sys.exit(main())
