"""The HTML report rendered by a real browser (Debian's chromium, headless): the screenshot shows
the plots, the rendered DOM holds the tables and SVG plots with one marker per measured packet and
one bar per signature instant, and the page makes no network request.

How "no network request" is measured: chromium runs in a private network namespace that has only
loopback (so nothing can leave the machine whatever it does), with every request sent to a local
proxy that records what was asked. A control page with one http:// image must be seen by that
proxy, so a silent proxy means "no request", not "broken counter". Chromium itself asks its
component updater (update.googleapis.com, `X-Goog-Update-*` headers) for a component on start
even with --disable-component-update (measured here with chromium 156); that one browser-internal
endpoint is told apart and reported, but it is not the page's request.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from report_runs import HOSTILE_HOSTNAME, HOSTILE_PRODUCT, ISN_VALUES, LASTACK_ARRIVALS, SYN_ARRIVALS, run_a, run_b

from hostprint import cli
from hostprint.model import HostResult, OsEvidence, ScanRun
from hostprint.report.diff import diff_runs
from hostprint.report.html import SignatureSource, render_report, signature_instants
from hostprint.report.inventory import Inventory
from hostprint.report.plots import MEASURED, nice_ticks
from hostprint.signatures.timing_db import resolve_timing_db

# The real binary, not Debian's /usr/bin/chromium wrapper, which adds --enable-remote-extensions and
# extension flags from /etc/chromium.d.
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", shutil.which("chromium") or "")
                 if p and os.access(p, os.X_OK)), None)
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-extensions", "--disable-default-apps", "--no-pings",
                 "--disable-features=NetworkTimeServiceQuerying,OptimizationHints"]
BROWSER_INTERNAL = ("update.googleapis.com",)  # chromium's component updater, see the module docstring

# Runs inside the private namespace: bring up loopback, start the recording proxy, run chromium
# with every request sent to it, print what was asked and what chromium printed.
_IN_NAMESPACE = r"""
import json, socket, subprocess, sys, threading, time
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(64)
port = srv.getsockname()[1]
seen = []
def serve():
    while True:
        try:
            c, _ = srv.accept()
        except OSError:
            return
        c.settimeout(2)
        try:
            head = c.recv(8192).decode("latin-1")
        except OSError:
            head = ""
        seen.append(head.split("\r\n\r\n")[0])
        c.close()
threading.Thread(target=serve, daemon=True).start()
argv = json.loads(sys.argv[1]) + ["--proxy-server=127.0.0.1:%d" % port, "--proxy-bypass-list=<-loopback>"]
r = subprocess.run(argv, capture_output=True, timeout=60)
time.sleep(0.3)
srv.close()
print(json.dumps({"rc": r.returncode, "stdout": r.stdout.decode("utf-8", "replace"),
                  "stderr": r.stderr.decode("utf-8", "replace")[-4000:], "requests": seen}))
"""


def _unshare() -> list[str]:
    return ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]


def browse(page: Path, tmp: Path, *extra: str) -> dict:
    """Load `page` in headless chromium inside a loopback-only namespace; returns rc, stdout,
    stderr, requests (every request chromium made) and page_requests (those not browser-internal)."""
    if CHROMIUM is None:
        pytest.skip("needs Debian's chromium (scripts/setup.sh installs it)")
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) for a loopback-only network namespace")
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    argv = [CHROMIUM, *BROWSER_FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
    p = subprocess.run([*_unshare(), sys.executable, "-c", _IN_NAMESPACE, json.dumps(argv)],
                       capture_output=True, text=True, timeout=90)
    if p.returncode != 0 and "unshare" in p.stderr:
        pytest.skip(f"cannot create a network namespace here: {p.stderr.strip()[:200]}")
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["page_requests"] = [r for r in out["requests"]
                            if not any(host in r.split("\r\n")[0] for host in BROWSER_INTERNAL)]
    return out


def read_png(path: Path) -> np.ndarray:
    """8-bit RGB/RGBA PNG -> (h, w, channels) array with zlib and numpy (no imaging library)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, [], 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
        elif kind == b"IDAT":
            idat.append(body)
    bpp = 3 if ctype == 2 else 4
    stride = w * bpp
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(h, stride + 1)
    out = np.zeros((h, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int64)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int64)
        if f == 1:
            line = line.reshape(w, bpp).cumsum(axis=0).reshape(-1) & 255
        elif f == 2:
            line = (line + prev) & 255
        elif f in (3, 4):
            cur, up = line.tolist(), prev.tolist()
            for x in range(stride):
                a = cur[x - bpp] if x >= bpp else 0
                b = up[x]
                if f == 3:
                    cur[x] = (cur[x] + ((a + b) >> 1)) & 255
                    continue
                c = up[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                cur[x] = (cur[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            line = np.asarray(cur, dtype=np.int64)
        out[y] = line
        prev = line
    return out.reshape(h, w, bpp)


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _private_inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTPRINT_DB", str(tmp_path / "default-inventory.sqlite"))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run B with the diff against run A, written by the real CLI from a real inventory."""
    tmp = tmp_path_factory.mktemp("report")
    db = tmp / "inv.sqlite"
    with Inventory(db) as inv:
        inv.record_run(run_a())
        inv.record_run(run_b())
    out = tmp / "report.html"
    assert cli.main(["report", "b0b0", "--diff", "a0a0", "--db", str(db), "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def screenshot(report: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("shot")
    png = tmp / "report.png"
    res = browse(report, tmp, f"--screenshot={png}", "--window-size=1280,3400")
    return png, res


@pytest.fixture(scope="module")
def dom(report: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict]:
    from lxml import html as lh

    res = browse(report, tmp_path_factory.mktemp("dom"), "--dump-dom")
    assert res["rc"] == 0, res["stderr"]
    return lh.fromstring(res["stdout"]), res


# ---------------------------------------------------------------------------------------------- browser


def test_screenshot_shows_the_page_and_its_plots(screenshot: tuple[Path, dict]) -> None:
    png, res = screenshot
    assert res["rc"] == 0 and png.exists(), res["stderr"]
    assert png.stat().st_size > 50_000  # a blank 1280x3400 page compresses to a few kB
    img = read_png(png)[:, :, :3]
    assert img.shape[:2] == (3400, 1280)
    packed = (img[:, :, 0].astype(np.int32) << 16) | (img[:, :, 1].astype(np.int32) << 8) | img[:, :, 2]
    colours, counts = np.unique(packed, return_counts=True)
    assert int(colours[counts.argmax()]) in {0xF3F4F6, 0xFFFFFF}  # page or panel background
    assert len(colours) > 200  # text antialiasing, badges, bars: far from a flat page
    # measured packets are solid circles in a colour nothing else on the page uses: 15 packets
    # (6 SYN-ACKs, 9 FINs) of ~90 px each, all right of the lane labels and below the header
    blue = np.all(img == _rgb(MEASURED), axis=2)
    ys, xs = np.nonzero(blue)
    assert blue.sum() > 15 * 50, blue.sum()
    assert xs.min() > 250 and ys.min() > 300


def test_rendered_dom_has_the_tables(dom: tuple[object, dict]) -> None:
    doc, _ = dom
    overview = doc.xpath('//table[@class="overview"]/tbody/tr')
    assert [tr.xpath("td")[0].text_content() for tr in overview] == ["198.18.0.10", "198.18.0.11", "198.18.0.12"]
    (t1,) = doc.xpath('//section[@id="host-198-18-0-10"]')
    ports = [[td.text_content().strip() for td in tr.xpath("td")]
             for tr in t1.xpath('.//table[@class="ports"]/tbody/tr')]
    assert [p[:2] for p in ports] == [["22/tcp", "open"], ["80/tcp", "filtered"], ["443/tcp", "open"],
                                       ["6379/tcp", "open"]]
    assert ports[0][4] == "OpenSSH 9.2p1 Debian 2+deb12u4" and ports[3][4] == "Redis key-value store 7.0.15"
    verdict = t1.xpath('.//table[@class="verdict"]/tbody/tr')
    assert len(verdict) == 2 and "Linux 4.8 and later" in verdict[0].text_content()
    assert "93%" in verdict[0].text_content()
    assert [li.text_content() for li in verdict[0].xpath(".//li")][:2] == [
        "timingSYN-ACK retransmissions 1, 2, 4, 8, 16 s apart", "stackTTL 64, DF, options MSTNW"]
    arch = [tr.xpath("td")[0].text_content() for tr in t1.xpath('.//table[@class="architecture"]/tbody/tr')]
    assert arch == ["load-balancer", "nat"]
    # the diff is at the top
    assert doc.xpath('//section[@id="changes"]//table[@class="diff-ports"]/tbody/tr')


def test_rendered_dom_has_the_plots(dom: tuple[object, dict]) -> None:
    doc, _ = dom
    (t1,) = doc.xpath('//section[@id="host-198-18-0-10"]')
    figs = {f.get("data-test"): f for f in t1.xpath('.//figure[@class="timing"]')}
    assert set(figs) == {"syn", "lastack"}
    db = resolve_timing_db("hostprint").by_id()
    for test, arrivals in (("syn", SYN_ARRIVALS), ("lastack", LASTACK_ARRIVALS)):
        svg = figs[test].xpath(".//svg")[0]
        measured, *sig_lanes = svg.xpath('.//g[contains(@class, "lane")]')
        assert len(measured.xpath('.//circle[@class="pkt"]')) == len(arrivals)
        assert len(svg.xpath('.//circle[@class="pkt"]')) == len(arrivals)
        # best match and runner-up: one bar per instant of one of that class's schedules for this test
        assert len(sig_lanes) == 2
        for lane, cid in zip(sig_lanes, ("linux-3.1+", "linux-3.1+-synack4")):
            bars = len(lane.xpath('.//rect[@class="sig" or @class="sig-rst"]')) + int(lane.get("data-later"))
            assert bars in ({s.n for s in db[cid].schedules_for(test)} or {0}), (cid, test, bars)
        assert len(sig_lanes[0].xpath('.//rect[@class="sig"]')) >= 6
        labels = [t.text_content() for t in svg.xpath('.//text[@class="lane-label"]')]
        assert labels[0] == "measured" and labels[1].startswith("Linux 3.1 and later")
        ticks = [t.text_content() for t in svg.xpath('.//text[@class="tick"]')]
        assert "0" in ticks and len(ticks) >= 5
        assert len(figs[test].xpath('following-sibling::table[@class="instants"][1]/tbody/tr')) >= len(arrivals)
    seq = {f.get("data-series"): f for f in t1.xpath('.//figure[@class="sequence"]')}
    assert set(seq) == {"isn", "ip_id", "tcp_ts"}
    for fig in seq.values():
        (poly,) = fig.xpath('.//polyline[@class="series"]')
        assert len(poly.get("points").split()) == len(ISN_VALUES)


def test_hostile_strings_stay_text(dom: tuple[object, dict]) -> None:
    doc, _ = dom
    assert not doc.xpath("//img") and not doc.xpath("//script")
    text = doc.text_content()
    assert HOSTILE_PRODUCT in text and HOSTILE_HOSTNAME in text
    assert doc.xpath("//title")[0].text_content().startswith("hostprint report")


def test_page_makes_no_network_requests(screenshot: tuple[Path, dict], dom: tuple[object, dict],
                                        tmp_path: Path) -> None:
    _, shot = screenshot
    _, dumped = dom
    assert shot["page_requests"] == [] and dumped["page_requests"] == [], (shot["requests"], dumped["requests"])
    # control: the same counter sees a page that does fetch
    page = tmp_path / "fetches.html"
    page.write_text('<!DOCTYPE html><html><body><img src="http://198.18.255.254/pixel.png"></body></html>')
    res = browse(page, tmp_path, "--dump-dom")
    assert any("198.18.255.254/pixel.png" in r for r in res["page_requests"]), res["requests"]


# ---------------------------------------------------------------------------------------------- static


class _Refs(HTMLParser):
    URL_ATTRS = {"src", "href", "xlink:href", "action", "data", "poster", "srcset", "background", "formaction"}

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for k, v in attrs:
            if k in self.URL_ATTRS and v is not None:
                self.refs.append(v)


def test_html_references_nothing_outside_the_file(report: Path) -> None:
    text = report.read_text()
    p = _Refs()
    p.feed(text)
    assert p.refs and all(r.startswith("#") for r in p.refs), p.refs  # only in-page anchors
    assert not p.tags & {"script", "link", "img", "iframe", "object", "embed", "image", "use", "video", "audio"}
    assert "url(" not in text and "@import" not in text and "@font-face" not in text
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


ONE_TEST_DB = """# made up for this test: a stack with only a SYN_RCVD schedule
Fingerprint Test stack
Class Test | Test | 1 | test
Id test-stack
CronOS_Syn(nbPkt=2%p=1000000%p=2000000-2500000)
"""


def test_signature_instants_from_the_match_or_the_db(tmp_path: Path) -> None:
    src = SignatureSource()
    test = {"test": "syn", "arrivals": SYN_ARRIVALS, "rst": None, "rtt_us": 300}
    inst, rst, origin = signature_instants({"arrivals": [[0.5, 0.5], [1.5, 1.9], 3.5]}, test, src)
    assert inst == [(0.0, 0.0), (1.0, 1.4), (3.0, 3.0)] and rst is None and "match" in origin
    inst, _, _ = signature_instants({"gaps": {"syn": [1.0, [2.0, 2.5]]}}, test, src)
    assert inst == [(0.0, 0.0), (1.0, 1.0), (3.0, 3.5)]
    inst, rst, origin = signature_instants({"id": "linux-3.1+"}, test, src)
    s = resolve_timing_db("hostprint").by_id()["linux-3.1+"].schedules_for("syn")[0]
    assert inst == [(float(a), float(b)) for a, b in zip(s.pos_lo, s.pos_hi)] and "linux-3.1+" in origin
    assert signature_instants({"id": "no-such-class"}, test, src) is None
    (tmp_path / "one.txt").write_text(ONE_TEST_DB)
    own = SignatureSource(str(tmp_path / "one.txt"))
    inst, rst, origin = signature_instants({"id": "test-stack"}, test, own)
    assert inst == [(0.0, 0.0), (1.0, 1.0), (3.0, 3.5)] and rst is None and "test-stack" in origin
    assert signature_instants({"id": "test-stack"}, {"test": "finwait", "arrivals": [0.1]}, own) is None


def test_nice_ticks() -> None:
    assert nice_ticks(0, 35.4) == [0, 5, 10, 15, 20, 25, 30, 35]
    assert nice_ticks(0, 1.0) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(4411, 4416, 5) == [4411, 4412, 4413, 4414, 4415, 4416]


_json = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True)
                     | st.text(max_size=12),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                         st.sampled_from(["matches", "timing", "tests", "arrivals", "rst", "architecture", "name",
                                          "confidence", "evidence", "values", "isn", "ip_id", "tcp_ts", "test",
                                          "gaps", "id", "class", "kind", "detail", "rtt_us", "outcome", "hz"]),
                         inner, max_size=5), max_leaves=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(os_block=_json, sequence=_json)
def test_malformed_stored_blocks_never_crash_the_report(os_block: object, sequence: object) -> None:
    h = HostResult("198.18.0.40", "up", ["syn-ack"])
    h.os = OsEvidence.from_dict(os_block)  # whatever an older/newer writer left in the inventory
    h.sequence = sequence  # type: ignore[assignment]
    page = render_report(ScanRun(args=["hostprint"], hosts=[h]))
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


@pytest.mark.parametrize("os_block,sequence", [
    ({"timing": {"tests": [{"arrivals": 5, "rst": "x", "test": "syn"}], "matches": [{"id": "linux-3.1+"}]}}, {}),
    ({"timing": {"tests": [{"arrivals": [2.0, 1.0], "test": "nosuch"}], "matches": [{"id": "linux-3.1+"}]}},
     {"isn": {"values": [1, "x", None]}, "ip_id": {"values": 7}, "tcp_ts": []}),
    ({"matches": [{"name": "x", "confidence": "high", "evidence": "ttl"}], "architecture": [{"kind": None}, 3]},
     {"ip_id": {"class": "I", "values": [1, 1, 1]}}),
    ({"matches": 5, "timing": {"outcome": "match", "matches": 5, "tests": 7}}, {"isn": 3}),
    ({"matches": [{"name": "x", "confidence": True}], "timing": {"outcome": "unknown", "unknown": {"nearest": 1}}},
     {"tcp_ts": {"values": [1e300, -1e300], "times": [0, "x"]}}),
])
def test_malformed_known_shapes(os_block: dict, sequence: dict) -> None:
    h = HostResult("198.18.0.41", "up", ["syn-ack"], os=os_block, sequence=sequence)
    assert "198.18.0.41" in render_report(ScanRun(args=[], hosts=[h]))


def test_unknown_timing_outcome_shows_the_nearest_stack() -> None:
    h = HostResult("198.18.0.42", "up", ["syn-ack"], os={"timing": {
        "outcome": "unknown", "matches": [], "unknown": {"nearest": "Linux 3.1 and later", "distance": {}},
        "tests": [{"test": "syn", "port": 80, "arrivals": [0.001, 3.0, 9.0], "rst": None}]}})
    page = render_report(ScanRun(args=[], hosts=[h]))
    # linux-3.1+'s 6 SYN-ACK instants: those up to 1.5 x the last measured packet drawn, the rest counted
    later = sum(int(x) for x in re.findall(r'data-later="(\d+)"', page))
    assert "nearest known stack" in page and page.count('class="sig"') == 4 and later == 2
    assert "+2 later" in page


def test_render_without_diff_or_hosts() -> None:
    page = render_report(ScanRun(args=["hostprint", "198.18.0.0/30"]))
    assert "recorded no hosts" in page and 'id="changes"' not in page
    page = render_report(run_b(), diff=diff_runs(run_b(), run_b()))
    assert "No changes" in page
