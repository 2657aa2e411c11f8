"""The project's own rules, checked on its code and data (issue 12): knowledge lives in DB files
with a source on every entry, no loader takes an entry an earlier one shadows, and imports only
run downward (commands -> report/probes -> match -> signatures -> engine/model)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT
from hostprint.errors import UsageError
from hostprint.signatures import knowledge
from hostprint.signatures.records import parse_records

PKG = Path(ROOT) / "hostprint"
KINDS, KEYS = frozenset({"Family"}), frozenset({"Vendor"})


def test_records_need_a_source_and_refuse_shadowed_entries():
    ok = parse_records("Family X\nVendor Y\nSource documented: a manual\n", "t", KINDS, KEYS)
    assert ok[0].one("Vendor") == "Y" and ok[0].sources == ["documented: a manual"]
    with pytest.raises(UsageError, match=r"t:1: Family 'X' has no 'Source"):
        parse_records("Family X\nVendor Y\n", "t", KINDS, KEYS)
    with pytest.raises(UsageError, match=r"t:5: Family 'X' is shadowed by the entry at t:1"):
        parse_records("Family X\nVendor Y\nSource measured: here\n\nFamily X\nVendor Z\nSource measured: here\n",
                      "t", KINDS, KEYS)
    with pytest.raises(UsageError, match="unknown key 'Colour'"):
        parse_records("Family X\nColour red\nSource measured: here\n", "t", KINDS, KEYS)
    with pytest.raises(UsageError, match="Source documented"):
        parse_records("Family X\nSource guessed: no\n", "t", KINDS, KEYS)


def test_knowledge_files_load_and_answer():
    fam = knowledge.families()
    assert fam.vendor("Linux") == "Linux" and fam.vendor("IOS") == "Cisco" and fam.vendor("iOS") == "Apple"
    assert fam.get("mac os x") is not None and fam.get("mac os x").name == "Mac OS X"  # a p0f label
    assert knowledge.relays()["netfilter SYNPROXY"].kind == "syn-relay"
    rules = knowledge.distro_rules()
    deb = next(r for r in rules if r.name == "Debian" and r.release_group)
    m = deb.pattern.search("OpenSSH_9.2p1 Debian-2+deb12u3")
    assert m and deb.cpe_for(m.group(deb.release_group)) == "cpe:/o:debian:debian_linux:12"
    assert next(r for r in rules if r.name == "Ubuntu").cpe_for(None) == "cpe:/o:canonical:ubuntu_linux"


def test_stack_and_passive_loaders_refuse_a_shadowed_entry(tmp_path):
    from hostprint.signatures import stack_db
    from hostprint.signatures.passive_db import load_passive_db

    entry = ("Stack Test {n}\nClass X | TestOS | 1 | general purpose\nSource measured: here\n"
             "T1(R=Y%DF=Y%TG=40)\nT5(R=Y%A=S+)\n\n")
    f = tmp_path / "dup.txt"
    f.write_text(entry.format(n=1) + entry.format(n=2))
    with pytest.raises(UsageError, match="'Test 2' has the same tests as 'Test 1'"):
        stack_db.load(extra=[str(f)])
    p = tmp_path / "passive.txt"
    sig = 'tcp-syn s unix Linux "x" 4:64:0:1460:mss*44,7:mss,sok,ts,nop,ws:df,id+:0\n'
    p.write_text("# source: measured here\n" + sig + sig)
    with pytest.raises(UsageError, match="shadowed by the same signature"):
        load_passive_db(p)


# ---------------------------------------------------------------------------- import arrows

FLOOR = {"cli": 6, "__main__": 6, "commands": 5, "lab": 5, "audit": 4, "scrub": 4, "report": 4, "probes": 4, "match": 3,
         "signatures": 2, "services": 2, "ports": 2, "targets": 2, "targets6": 2, "names": 2, "cache": 1, "engine": 1,
         "model": 1, "stackfacts": 1, "errors": 0,
         "": 0}


def _imports() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in PKG.rglob("*.py"):
        mod = ".".join(f.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")
        deps: set[str] = set()
        tree = ast.parse(f.read_text())
        typing_only = {id(n) for top in ast.walk(tree) if isinstance(top, ast.If)
                       and getattr(top.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(top)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # annotations only: no import at run time
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hostprint"):
                subs = [f"{node.module}.{a.name}" for a in node.names
                        if (PKG.parent / f"{node.module}.{a.name}".replace(".", "/")).with_suffix(".py").exists()]
                deps.update(subs or [node.module])
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("hostprint"))
        out[mod] = deps
    return out


def _floor(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_imports_only_run_downward():
    up = []
    for mod, deps in _imports().items():
        for d in deps:
            a, b = _floor(mod), _floor(d)
            if a != b and FLOOR[b] > FLOOR[a]:
                up.append(f"{mod} -> {d}")
    assert not up, up


def test_no_import_circle_between_modules():
    imports = _imports()
    graph = {m: {d for d in deps if d in imports} for m, deps in imports.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(m: str, path: list[str]) -> bool:
        state[m] = 1
        for d in graph.get(m, ()):
            if state.get(d) == 1:
                cycle.extend(path[path.index(d):] + [d] if d in path else [m, d])
                return True
            if state.get(d) is None and visit(d, path + [d]):
                return True
        state[m] = 2
        return False

    for m in graph:
        if state.get(m) is None and visit(m, [m]):
            break
    assert not cycle, " -> ".join(cycle)
