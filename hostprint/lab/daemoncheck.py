"""Why a lab daemon did not start, in one line a developer can act on.

A Debian security update can change what a daemon accepts (cups-daemon 2.4.2-3+deb12u11 made an
unknown cupsd.conf directive fatal). When that happens the message must name the daemon, the
package version that refused, and the line of our config it refused, so the fix is obvious and
the report of a CI run says which daemon broke. Config checkers (`nginx -t`, `sshd -t`, `cupsd -t`,
`slapd -T test`, `postgres -C` …) run before the daemon; a daemon without a checker gets the same
message from its own start-up output.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

#: An absolute path in a checker's output (quotes, brackets and trailing punctuation stripped).
_PATH = re.compile(r"(/[^\s\"'()<>,;:]+)(?::(\d+))?")
#: A token the checker quotes ("foo", 'foo', <foo>): the fallback when no line number is given.
_QUOTED = re.compile(r"[\"'<]([A-Za-z_][\w.-]*)[\"'>]")


@functools.lru_cache(maxsize=None)
def package_version(package: str) -> str | None:
    """The installed version of a Debian package (None if not installed or no dpkg)."""
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


def package_label(packages: tuple[str, ...]) -> str:
    """'cups-daemon 2.4.2-3+deb12u11' (several: comma separated); our own helpers say so."""
    if not packages:
        return "hostprint helper"
    return ", ".join(f"{p} {package_version(p)}" if package_version(p) else f"{p} (not installed)" for p in packages)


@dataclass(frozen=True)
class RejectedLine:
    path: str
    lineno: int
    text: str

    def __str__(self) -> str:
        return f"{os.path.basename(self.path)} line {self.lineno}: {self.text.strip()!r}"


def _line_of(path: str, lineno: int) -> tuple[int, str] | None:
    """(line number, text); a parser that hit the end of the file (nginx's "unexpected end of
    file" names the line after the last) gets the last line."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return None
    if lines and lineno == len(lines) + 1:
        lineno = len(lines)
    return (lineno, lines[lineno - 1]) if 0 < lineno <= len(lines) else None


def _group(m: re.Match[str] | None) -> str | None:
    return m.group(1) if m else None


def rejected_line(output: str, configs: Iterable[Path] = ()) -> tuple[RejectedLine | None, str]:
    """Find the config line a daemon or checker complains about, and the complaint itself.

    Checkers say it in many ways (nginx `in FILE:19`, sshd/slapd `FILE: line 13:`, cups `on line 10
    of FILE`, squid `FILE(11):`, postgres `in file "FILE" line 816`, chrony `at line 7 in file FILE`,
    dovecot `file FILE line 33:`); the common part is a path that exists and a line number on the
    same output line. When no number is given (testparm's "Unknown parameter encountered: "x""),
    a quoted token that starts a line of one of our config files is used instead."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in lines:
        for m in _PATH.finditer(ln):
            path = m.group(1).rstrip(".")
            if not os.path.isfile(path):
                continue
            num = m.group(2) or _group(re.match(r"\((\d+)\)", ln[m.end():])) or _group(re.search(r"\bline (\d+)", ln))
            if num:
                found = _line_of(path, int(num))
                if found is not None:
                    return RejectedLine(path, *found), ln
    for ln in lines:
        for m in _QUOTED.finditer(ln):
            tok = m.group(1)
            for cfg in configs:
                try:
                    cfg_lines = cfg.read_text(errors="replace").splitlines()
                except OSError:
                    continue
                for i, text in enumerate(cfg_lines, 1):
                    if re.match(rf"\s*{re.escape(tok)}\b", text):
                        return RejectedLine(str(cfg), i, text), ln
    complaint = next((ln for ln in lines if re.search(r"(?i)error|fatal|emerg|bad|unknown|invalid|unrecogni", ln)),
                     lines[-1] if lines else "")
    return None, complaint


@dataclass(frozen=True)
class ServiceFailure:
    """A lab daemon that could not be started: which one, from which package, and why."""

    kind: str
    port: int
    host: str
    packages: tuple[str, ...]
    stage: str  # "config check" | "start" | "listen"
    detail: str
    line: RejectedLine | None = None
    log: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.port}@{self.host}"

    def message(self) -> str:
        what = f"{self.kind}:{self.port} on {self.host} ({package_label(self.packages)})"
        if self.line is not None:
            why = f"{self.stage} rejects {self.line}"
            if self.detail:
                why += f" — {self.detail}"
        else:
            why = f"{self.stage} failed: {self.detail}" if self.detail else f"{self.stage} failed"
        tail = f" [log {self.log}]" if self.log else ""
        return f"lab daemon {what}: {why}{tail}"


def run_checker(argv: list[str], *, timeout: float = 60.0) -> tuple[int, str]:
    """Run a config checker; (exit code, its output). A checker that cannot run is exit 127."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        return 127, str(e)
    return r.returncode, (r.stdout or "") + (r.stderr or "")
