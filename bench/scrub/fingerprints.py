"""hostprint -O fingerprints of the scrub lab's hosts behind `hostprint scrub` in each mode, N runs
each (the measurements behind the "fingerprint scrubber" classes in signatures/stack/userspace.txt).

    sudo python3 bench/scrub/fingerprints.py [--runs 3] [--modes default,no-synproxy,no-queue]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from hostprint.lab import scrublab as S  # noqa: E402

MODES = {"default": [], "no-synproxy": ["--no-synproxy"], "no-queue": ["--no-queue"],
         "no-queue-no-synproxy": ["--no-queue", "--no-synproxy"]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--modes", default="default,no-synproxy,no-queue")
    a = ap.parse_args()
    with S.scrub_lab(f"sf{os.getpid() % 10000}") as sl:
        print("hosts:", sl.hosts, "skipped:", sl.skipped)
        addrs = list(sl.hosts.values())
        for mode in a.modes.split(","):
            print(sl.start_scrubber(*MODES[mode]))
            seen: dict[str, set[str]] = {}
            for run in range(a.runs):
                for addr, v in S.hostprint_stack(sl, addrs).items():
                    print(f"## {mode} run {run + 1} {addr}: class {v['class']} verdict {v['verdict']} "
                          f"architecture {v['architecture']}")
                    for line in v["fingerprint"].splitlines():
                        seen.setdefault(line.split("(")[0], set()).add(line)
            print(f"# {mode}: lines seen over {a.runs} runs x {len(addrs)} hosts")
            for test, lines in seen.items():
                print("  " + (" | ".join(sorted(lines)) if len(lines) < 6 else f"{test}: {len(lines)} values"))
            print(sl.stop_scrubber().strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
