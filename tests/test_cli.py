"""Bad input gets one line naming the bad token and exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest


def hp(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hostprint", *args], capture_output=True, text=True,
                          input=input, timeout=60)


@pytest.mark.parametrize("args,token", [
    (["scan", "198.18.0.300"], "198.18.0.300"),
    (["scan", "-p", "70000", "198.18.0.1"], "70000"),
    (["scan", "-p", "22-x", "198.18.0.1"], "22-x"),
    (["scan", "-T9", "198.18.0.1"], "9"),
    (["scan", "-iL", "/nonexistent/targets.txt"], "/nonexistent/targets.txt"),
    (["scan", "--scanflags", "BOGUS", "198.18.0.1"], "BOGUS"),
    (["scan", "--data-length", "99999", "198.18.0.1"], "99999"),
    (["scan", "--min-rate", "-5", "198.18.0.1"], "-5"),
    (["scan", "-oX", "/nonexistent/dir/out.xml", "198.18.0.1"], "/nonexistent/dir/out.xml"),
    (["scan", "--bogus-flag", "198.18.0.1"], "--bogus-flag"),
    (["scan", "--exclude", "198.18.0.0/24", "198.18.0.0/24"], "excluded"),
    (["scan"], "no targets"),
    (["discover", "198.18.0.1/33"], "198.18.0.1/33"),
    (["history", "--db", "/nonexistent/dir/x.sqlite", "nosuchrun"], "/nonexistent/dir/x.sqlite"),
])
def test_bad_input_one_line_exit_2(args, token):
    r = hp(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert token in lines[0] and "Traceback" not in r.stderr


def test_implicit_scan_subcommand_and_help():
    r = hp("198.18.0.300")
    assert r.returncode == 2 and "198.18.0.300" in r.stderr
    assert hp("--help").returncode == 0
    assert "scan" in hp("--help").stdout


def test_target_file_with_junk_names_the_token(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("198.18.0.1\n# comment\n198.18.0.999\n")
    r = hp("scan", "-iL", str(f))
    assert r.returncode == 2 and "198.18.0.999" in r.stderr
