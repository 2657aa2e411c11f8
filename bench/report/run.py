"""Cost of the HTML report and the run diff as the inventory grows (issue 7).

Hosts are copies of the report tests' fully loaded host (4 ports, a 2-match verdict with evidence,
architecture findings, SYN_RCVD + LAST_ACK timing tests with signature overlays from the built-in
timing DB, 3 sequence charts): the most a host costs to render today. Prints one line per size:
render seconds, page size, diff seconds; and how long headless chromium takes to load the
100-host page (loopback-only namespace, as the tests run it).

    python3 bench/report/run.py
"""

from __future__ import annotations

import copy
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from report_runs import run_b  # noqa: E402

from hostprint.report.diff import diff_runs  # noqa: E402
from hostprint.report.html import render_report  # noqa: E402


def run_with(n: int):
    r = run_b()
    model = r.hosts[0]
    r.hosts = []
    for i in range(n):
        h = copy.deepcopy(model)
        h.address = f"198.18.{i // 250}.{i % 250 + 1}"
        r.hosts.append(h)
    return r


def best_of(f, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    page100 = ""
    for n in (1, 100, 1000):
        r = run_with(n)
        other = run_with(n)
        for h in other.hosts[::2]:
            h.ports[0].state = "closed"
        page = render_report(r)
        if n == 100:
            page100 = page
        t_render = best_of(lambda: render_report(r))
        t_diff = best_of(lambda: diff_runs(other, r))
        print(f"{n:5d} hosts: render {t_render:.3f} s, page {len(page.encode()) / 1e6:.2f} MB, "
              f"diff {t_diff * 1000:.1f} ms")
    try:
        from test_html_report import browse
    except Exception as e:  # pragma: no cover - bench convenience
        print(f"chromium timing skipped: {e}")
        return
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "r.html"
        p.write_text(page100)
        t = time.perf_counter()
        res = browse(p, Path(d), "--dump-dom")
        print(f"chromium --dump-dom of the 100-host page: {time.perf_counter() - t:.2f} s (rc {res['rc']}, "
              f"{len(res['page_requests'])} page requests)")


if __name__ == "__main__":
    main()
