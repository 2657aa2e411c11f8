"""Which methods tell the scrub lab's hosts apart, without and with `hostprint scrub` (issue 19).

    sudo python3 bench/scrub/compare.py [--timing] [--json OUT]

Prints, per method, every host's view and the number of distinct views (1 = the method cannot tell
the hosts apart). Results: bench/RESULTS.md "Scrubber".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from hostprint.lab import scrublab as S  # noqa: E402


def show(tag: str, res: dict[str, dict[str, dict[str, object]]], hosts: dict[str, str]) -> None:
    print(f"## {tag}")
    for method, views in res.items():
        print(f"{method}: {S.distinct(views, list(hosts.values()))} distinct view(s) of {len(hosts)} hosts")
        for name, a in hosts.items():
            v = views.get(a) or {}
            brief = {k: v[k] for k in v if k != "view"}
            print(f"  {name:5} {a:12} {json.dumps(brief)[:400]}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--timing-tests", default="s", help="--cron-os tests with --timing (s, l, f)")
    ap.add_argument("--timing-only", action="store_true", help="with --timing: only the timing method")
    ap.add_argument("--json")
    ap.add_argument("--no-synproxy", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hpt-scmp-") as tmp, S.scrub_lab(f"sc{os.getpid() % 10000}") as sl:
        print("hosts:", sl.hosts, "skipped:", sl.skipped)
        t0 = time.monotonic()
        before = S.measure(sl, tmp, "without", a.timing, a.timing_tests, a.timing_only)
        print(f"# without: {time.monotonic() - t0:.0f} s", file=sys.stderr)
        show("without scrubber", before, sl.hosts)
        print(sl.start_scrubber(*(["--no-synproxy"] if a.no_synproxy else [])))
        t0 = time.monotonic()
        after = S.measure(sl, tmp, "with", a.timing, a.timing_tests, a.timing_only)
        print(f"# with: {time.monotonic() - t0:.0f} s", file=sys.stderr)
        show("with scrubber", after, sl.hosts)
        print(sl.stop_scrubber().strip())
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"hosts": sl.hosts, "skipped": sl.skipped, "without": before, "with": after}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
