"""Every command the docs show exists as written (issue 21): a `make` target, a `cardlab` verb and its
options, a `dvc` subcommand and its options. The check runs each command's cheap form — `make -n TARGET`
(prints, runs nothing), `cardlab VERB --help`, `dvc SUB --help` — and fails on an unknown target, verb,
subcommand or option, so a documented command cannot rot (`dvc repro -S` did: DVC 3 has no such option)."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
# a command in an inline code span or on its own line of a fenced block, with or without .venv/bin/
CMD = re.compile(r"^(?:\.venv/bin/)?(make|cardlab|dvc)\s+(.*)$")
PLACEHOLDER = re.compile(r"[<>|\[\]…]|\.\.\.")


def _commands() -> list[tuple[str, str, str]]:
    """(doc, tool, argument string) for every documented make / cardlab / dvc command."""
    found: dict[tuple[str, str, str], None] = {}
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        lines = [m.group(1) for m in re.finditer(r"`([^`\n]+)`", text)]
        for block in re.findall(r"```(?:bash|sh|shell|console)?\n(.*?)```", text, flags=re.S):
            lines += [ln.strip().lstrip("$ ").strip() for ln in block.splitlines()]
        for line in lines:
            line = line.split("#")[0].strip().rstrip("\\").strip()
            for part in re.split(r"\s*(?:&&|;|\|\|)\s*", line):
                m = CMD.match(part.strip())
                if m:
                    found[(str(doc.relative_to(REPO)), m.group(1), m.group(2).strip())] = None
    return list(found)


@functools.cache
def _help(tool: str, sub: str) -> tuple[int, str]:
    exe = str(BIN / tool)
    proc = subprocess.run(
        [exe, *sub.split(), "--help"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    return proc.returncode, proc.stdout + proc.stderr


@functools.cache
def _make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, flags=re.M))


def _options(args: list[str]) -> list[str]:
    return [a.split("=")[0] for a in args if a.startswith("-")]


COMMANDS = _commands()


def test_the_docs_show_commands():
    tools = {tool for _, tool, _ in COMMANDS}
    assert tools == {"make", "cardlab", "dvc"}, tools
    assert len(COMMANDS) > 40


@pytest.mark.parametrize(("doc", "tool", "args"), COMMANDS, ids=[f"{d}:{t} {a}"[:90] for d, t, a in COMMANDS])
def test_documented_command_exists(doc: str, tool: str, args: str):
    words = args.split()
    if tool == "make":
        target = next((w for w in words if "=" not in w), "help")
        assert target in _make_targets(), f"{doc}: `make {args}`: no target {target!r} in the Makefile"
        for var in (w for w in words if "=" in w):
            name = var.split("=")[0]
            assert re.search(rf"\b{name}\b", (REPO / "Makefile").read_text()), (
                f"{doc}: `make {args}`: the Makefile never reads {name}"
            )
        return
    if not words or PLACEHOLDER.search(words[0]):
        pytest.skip(f"{doc}: `{tool} {args}` names no concrete subcommand")
    # the subcommand: cardlab takes one verb, dvc one or two words (`dvc exp run`, `dvc remote modify`)
    sub = words[0]
    code, text = _help(tool, sub)
    assert code == 0, f"{doc}: `{tool} {args}`: `{tool} {sub} --help` failed: {text[-400:]}"
    if tool == "dvc" and len(words) > 1 and not words[1].startswith("-"):
        code2, text2 = _help(tool, f"{sub} {words[1]}")
        if code2 == 0 and re.search(rf"usage: dvc \S+ {re.escape(words[1])}\b", text2):
            sub, text = f"{sub} {words[1]}", text2
    for option in _options(words):
        if PLACEHOLDER.search(option):
            continue
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (
            f"{doc}: `{tool} {args}`: `{tool} {sub}` has no option {option}"
        )
