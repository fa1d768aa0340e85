"""The README and docs never show a flag that the command line rejects."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_HEADING = re.compile(r"^### `([a-z-]+)`")
COMMANDS = ("train-dqn", "evaluate", "watch", "train-gan", "sample", "bench", "demo")
# `run.py COMMAND flags...` up to a comment, or `COMMAND --flags` quoted in prose.
INVOCATION = re.compile(
    rf"run\.py ({'|'.join(COMMANDS)})\b([^#`]*)|`({'|'.join(COMMANDS)})( --[^`]*)`"
)
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


@cache
def accepted_flags(command: str) -> frozenset[str]:
    """Every flag `python run.py COMMAND --help` lists."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), command, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, f"run.py {command} --help failed: {result.stderr}"
    return frozenset(FLAG.findall(result.stdout))


def logical_lines(path: Path) -> list[str]:
    """The document's lines, with shell continuations (a trailing backslash) joined."""
    return re.sub(r"\\\n\s*", " ", path.read_text()).splitlines()


def documented_flags(path: Path) -> list[tuple[str, str, str]]:
    """(command, flag, line) for each flag shown with a command: on a `run.py COMMAND` line,
    the flags after the command; in the README section of a command, every flag."""
    found = []
    section = None
    for line in logical_lines(path):
        heading = COMMAND_HEADING.match(line)
        if line.startswith("#"):
            section = heading.group(1) if heading else None
            continue
        invocations = list(INVOCATION.finditer(line))
        for invocation in invocations:
            command = invocation.group(1) or invocation.group(3)
            rest = invocation.group(2) if invocation.group(1) else invocation.group(4)
            found += [(command, flag, line) for flag in FLAG.findall(rest)]
        if not invocations and section is not None and path.name == "README.md":
            found += [(section, flag, line) for flag in FLAG.findall(line)]
    return found


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.name)
def test_documented_flags_are_accepted(path: Path) -> None:
    flags = documented_flags(path)
    if path.name == "README.md":
        assert len(flags) > 40  # the parser does find the README's flags
    unknown = [
        f"run.py {command} {flag}  (in: {line.strip()[:90]})"
        for command, flag, line in flags
        if flag not in accepted_flags(command)
    ]
    assert not unknown, "flags the CLI rejects:\n" + "\n".join(unknown)
