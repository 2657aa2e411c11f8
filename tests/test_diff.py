"""`hostprint diff`: changes between two recorded runs, read back from a real SQLite inventory,
in the terminal, as JSON, and in front of the HTML report; plus one real before/after pair of
scans of the lab (a listener started between the two scans must show up as an opened port)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from report_runs import HOSTILE_PRODUCT, run_a, run_b

from hostprint import cli
from hostprint.model import ExtraPorts, HostResult, OsEvidence, PortResult, ScanRun, Service
from hostprint.report.diff import NOT_LISTED, diff_runs, diff_summary
from hostprint.report.inventory import Inventory


@pytest.fixture(autouse=True)
def _private_inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTPRINT_DB", str(tmp_path / "default-inventory.sqlite"))


@pytest.fixture
def hp(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """The real CLI entry point in-process: (exit code, stdout, stderr)."""
    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = cli.main(list(args))
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "inv.sqlite"
    with Inventory(path) as inv:
        inv.record_run(run_a())
        inv.record_run(run_b())
    return path


def _stored(db: Path) -> tuple[ScanRun, ScanRun]:
    with Inventory(db, create=False) as inv:
        return inv.load_run("a0a0"), inv.load_run("b0b0")


def test_diff_of_stored_runs_lists_exactly_the_changes(db: Path) -> None:
    a, b = _stored(db)  # through SQLite: extraports come back without their protocol
    d = diff_runs(a, b)
    assert [(h.address, h.status_other, h.open_ports) for h in d.appeared] == [
        ("198.18.0.12", "down", ["22/tcp ssh"])]
    assert [(h.address, h.status_other, h.open_ports) for h in d.went_away] == [
        ("198.18.0.11", "down", ["8080/tcp http-proxy"])]
    assert [(p.address, p.port, p.before, p.after, p.kind) for p in d.ports] == [
        ("198.18.0.10", 80, "open", "filtered", "closed"),
        ("198.18.0.10", 443, "closed", "open", "opened"),
    ]
    assert [(s.address, s.port, s.before, s.after) for s in d.services] == [
        ("198.18.0.10", 22, "ssh OpenSSH 9.2p1 Debian 2+deb12u3", "ssh OpenSSH 9.2p1 Debian 2+deb12u4")]
    assert [(o.address, o.before, o.after) for o in d.os] == [
        ("198.18.0.10", "Linux 3.1 and later", "Linux 4.8 and later")]
    assert d.counts() == {"hosts_appeared": 1, "hosts_went_away": 1, "ports_opened": 1, "ports_closed": 1,
                          "ports_changed": 0, "services_changed": 1, "fingerprints_changed": 0,
                          "os_changed": 1}
    assert diff_summary(d) == ("1 host appeared, 1 host went away, 1 port opened, 1 port closed, "
                               "1 service changed, 1 OS verdict changed")
    assert diff_runs(b, b).empty and diff_summary(diff_runs(a, a)) == "no changes"


def _one_host(ports: list[PortResult], scanned: list[int], extra: list[ExtraPorts] | None = None,
              os_name: str | None = None) -> ScanRun:
    r = ScanRun(args=["hostprint"], ports_scanned={"tcp": scanned})
    h = HostResult("198.18.0.20", "up", ["syn-ack"])
    h.ports = ports
    h.extraports = extra or []
    if os_name:
        h.os = OsEvidence.from_dict({"matches": [{"name": os_name, "confidence": 0.9}]})
    r.hosts = [h]
    return r


def test_unscanned_ports_are_not_changes_and_folded_ports_take_their_extraports_state() -> None:
    open22 = PortResult(22, "tcp", "open", "syn-ack")
    open80 = PortResult(80, "tcp", "open", "syn-ack")
    a = _one_host([open22], [22])
    b = _one_host([open22, open80], [22, 80])
    assert diff_runs(a, b).empty  # run A never looked at 80: no claim that it opened
    # B scanned 443 and folded it into "closed": a real change from A's open 443
    a = _one_host([PortResult(443, "tcp", "open", "syn-ack")], list(range(400, 500)))
    b = _one_host([], list(range(400, 500)), [ExtraPorts("closed", 100, {"reset": 100})])
    (p,) = diff_runs(a, b).ports
    assert (p.port, p.before, p.after, p.kind) == (443, "open", "closed", "closed")
    # two folded states: the port's state is unknown, said so rather than guessed
    b = _one_host([], list(range(400, 500)), [ExtraPorts("closed", 60, {"reset": 60}),
                                              ExtraPorts("filtered", 40, {"no-response": 40})])
    (p,) = diff_runs(a, b).ports
    assert (p.after, p.kind) == (NOT_LISTED, "closed")
    # closed -> filtered is a state change but neither opened nor closed
    a = _one_host([PortResult(25, "tcp", "closed", "reset")], [25])
    b = _one_host([PortResult(25, "tcp", "filtered", "no-response")], [25])
    assert [p.kind for p in diff_runs(a, b).ports] == ["changed"]


def test_os_and_service_changes_include_appearing_verdicts_and_versions() -> None:
    ssh1 = PortResult(22, "tcp", "open", "syn-ack", service=Service(name="ssh", product="OpenSSH", version="8.4"))
    ssh2 = PortResult(22, "tcp", "open", "syn-ack", service=Service(name="ssh", product="OpenSSH", version="9.2"))
    d = diff_runs(_one_host([ssh1], [22]), _one_host([ssh2], [22], os_name="Linux 5.X"))
    assert [(s.before, s.after) for s in d.services] == [("ssh OpenSSH 8.4", "ssh OpenSSH 9.2")]
    assert [(o.before, o.after, o.after_confidence) for o in d.os] == [(None, "Linux 5.X", 0.9)]


def test_hosts_down_in_both_runs_are_not_reported() -> None:
    a = ScanRun(args=[], hosts=[HostResult("198.18.0.30", "down")])
    b = ScanRun(args=[], hosts=[HostResult("198.18.0.30", "down"), HostResult("198.18.0.31", "down")])
    assert diff_runs(a, b).empty


def test_cli_terminal_json_and_file(hp, db: Path, tmp_path: Path) -> None:
    rc, out, err = hp("diff", "a0a0", "b0b0", "--db", str(db))
    assert rc == 0, err
    for text in ("198.18.0.12", "appeared", "198.18.0.11", "went away", "443/tcp", "opened", "80/tcp",
                 "2+deb12u4", "Linux 4.8 and later", "1 OS verdict changed"):
        assert text in out, (text, out)
    rc, out, _ = hp("diff", "-2", "-1", "--db", str(db), "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["a"]["id"] == "a0a0a0a0a0a0" and data["b"]["id"] == "b0b0b0b0b0b0"
    assert data["counts"]["ports_opened"] == 1 and data["hosts_appeared"][0]["address"] == "198.18.0.12"
    assert {p["port"]: p["kind"] for p in data["ports"]} == {80: "closed", 443: "opened"}
    f = tmp_path / "diff.json"
    rc, out, _ = hp("diff", "a0a0", "b0b0", "--db", str(db), "-oJ", str(f))
    assert rc == 0 and json.loads(f.read_text()) == data and "opened" in out  # file plus the tables
    rc, out, _ = hp("diff", "a0a0", "b0b0", "--db", str(db), "-oJ", "-")
    assert rc == 0 and json.loads(out) == data


def test_cli_no_changes(hp, db: Path) -> None:
    rc, out, _ = hp("diff", "b0b0", "b0b0", "--db", str(db))
    assert rc == 0 and "No changes" in out


@pytest.mark.parametrize("args,token", [
    (["diff", "a0a0", "nosuchrun"], "nosuchrun"),
    (["diff", "a0a0"], "RUN_B"),
    (["diff", "a0a0", "b0b0", "-oJ", "/nonexistent/dir/d.json"], "/nonexistent/dir/d.json"),
    (["diff", "-0", "b0b0"], "-0"),
])
def test_cli_bad_input_one_line_exit_2(hp, db: Path, args: list[str], token: str) -> None:
    rc, _, err = hp(*args, "--db", str(db))
    assert rc == 2 and token in err and len(err.strip().splitlines()) == 1, err


def test_cli_missing_inventory_is_not_created(hp, tmp_path: Path) -> None:
    path = tmp_path / "none.sqlite"
    rc, _, err = hp("diff", "a", "b", "--db", str(path))
    assert rc == 2 and str(path) in err and not path.exists()


def test_report_with_diff_shows_the_changes(hp, db: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    rc, _, err = hp("report", "b0b0", "--diff", "a0a0", "--db", str(db), "-o", str(out))
    assert rc == 0, err
    from lxml import html as lh

    doc = lh.fromstring(out.read_text())
    (sec,) = doc.xpath('//section[@id="changes"]')
    ports = [[c.text_content().strip() for c in tr.xpath("td")]
             for tr in sec.xpath('.//table[@class="diff-ports"]//tbody/tr')]
    assert ports == [["198.18.0.10", "80/tcp", "closed", "open", "filtered"],
                     ["198.18.0.10", "443/tcp", "opened", "closed", "open"]]
    hosts = {tr.xpath("td")[0].text_content(): tr.xpath("td")[1].text_content()
             for tr in sec.xpath('.//table[@class="diff-hosts"]//tbody/tr')}
    assert hosts == {"198.18.0.12": "appeared", "198.18.0.11": "went away"}
    assert "2+deb12u4" in sec.text_content() and "Linux 4.8 and later" in sec.text_content()
    assert HOSTILE_PRODUCT not in sec.text_content()  # the product is not part of the ssh change


@pytest.mark.lab
def test_lab_before_and_after_a_listener_starts(scanlab, hp, tmp_path: Path) -> None:
    """Two real scans of t1; a listener on 7411 started in between must be the one opened port."""
    from conftest import hostprint

    db = tmp_path / "lab.sqlite"
    args = ["scan", "198.18.0.10", "-p", "22,80,7411", "--db", str(db), "--progress", "never"]
    hostprint(scanlab, *args)
    listener = scanlab.spawn("t1", [sys.executable, "-c",
                                    "import socket,time\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,"
                                    "socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',7411));s.listen(8)\n"
                                    "print('ready',flush=True);time.sleep(120)"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == b"ready"
        hostprint(scanlab, *args)
    finally:
        os.kill(listener.pid, 9)
        listener.wait(timeout=10)
    rc, out, err = hp("diff", "-2", "-1", "--db", str(db), "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert [(p["address"], p["port"], p["before"], p["after"], p["kind"]) for p in d["ports"]] == [
        ("198.18.0.10", 7411, "closed", "open", "opened")]
    assert not d["hosts_appeared"] and not d["hosts_went_away"] and not d["services"]
    report = tmp_path / "lab.html"
    rc, _, err = hp("report", "-1", "--diff", "-2", "--db", str(db), "-o", str(report))
    assert rc == 0, err
    from lxml import html as lh

    doc = lh.fromstring(report.read_text())
    rows = [tr.xpath("td")[0].text_content() for tr in doc.xpath('//section[contains(@class,"host")]'
                                                                   '//table[@class="ports"]//tbody/tr')]
    assert set(rows) >= {"22/tcp", "80/tcp", "7411/tcp"}
    assert doc.xpath('//table[@class="diff-ports"]//td[.="7411/tcp"]')


def test_progress_line_counts_fingerprints_too() -> None:
    """Issue 7's live progress: hosts up, open ports and fingerprints done beside each phase's bar
    (terminal.py holds both this and print_diff; the other progress tests are in test_report.py)."""
    import io

    from rich.console import Console

    from hostprint.report.terminal import ScanProgress

    buf = io.StringIO()
    with ScanProgress(enabled=True, console=Console(file=buf, force_terminal=True, width=200)) as p:
        t = p.phase("timing OS tests", 4)
        p.update_counts(hosts_up=4, ports_open=9, fingerprints=3)
        p.advance(t, 3)
    text = buf.getvalue()
    assert "timing OS tests" in text and "4 up, 9 open, 3 fingerprinted" in text and "ETA" in text
