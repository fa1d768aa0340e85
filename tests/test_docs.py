"""The README and docs never show a flag that the command line rejects."""

from __future__ import annotations

import re
import warnings
from functools import cache
from pathlib import Path

import pytest
import tyro

import run
from playground.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_HEADING = re.compile(r"^### `([a-z-]+)`")
COMMANDS = tuple(run.COMMANDS)  # every command the CLI has
# `run.py COMMAND flags...` up to a comment, or `COMMAND --flags` quoted in prose.
INVOCATION = re.compile(
    rf"run\.py ({'|'.join(COMMANDS)})\b([^#`]*)|`({'|'.join(COMMANDS)})( --[^`]*)`"
)
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


@cache
def accepted_flags(command: str) -> frozenset[str]:
    """Every option string of the command's parser (tyro builds it from the settings class),
    not words seen in its help text."""
    config_type = run.load(run.COMMANDS[command][0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # get_parser: no other public way
        parser = tyro.extras.get_parser(config_type)
    return frozenset(option for action in parser._actions for option in action.option_strings)


def test_the_parser_is_what_the_command_line_uses() -> None:
    """A flag taken from the parser parses on the real command line, an unknown one fails."""
    name, config = run.parse(["sample", "--checkpoint", "x", "--num-images", "3"])
    assert name == "sample" and config.num_images == 3
    assert "--num-images" in accepted_flags("sample")
    assert "--no-grid" in accepted_flags("sample")  # booleans get both spellings
    assert "--grid-size" not in accepted_flags("sample")
    with pytest.raises(UserError, match="Unrecognized options: --grid-size"):
        run.parse(["sample", "--grid-size", "3"])


def logical_lines(path: Path) -> list[str]:
    """The document's lines, with shell continuations (a trailing backslash) joined."""
    return re.sub(r"\\\n\s*", " ", path.read_text()).splitlines()


VARIANT_VALUE = re.compile(r"""(--variant(?:\s+|=)[\w.+-]+=)(["'])(.*?)\2""")


def _variant_flags(text: str) -> tuple[str, list[str]]:
    """`compare --variant NAME="FLAGS"`: the text without the quoted FLAGS, and the flags in
    them (they are the trainer's, not compare's)."""
    inner = [flag for match in VARIANT_VALUE.finditer(text) for flag in FLAG.findall(match[3])]
    return VARIANT_VALUE.sub(r"\1", text), inner


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
            # `compare ... train-dqn ...`: the flags after the trainer's name are the trainer's.
            trainer = (
                re.search(r"\s(train-dqn|train-gan)(\s|$)", rest) if command == "compare" else None
            )
            if trainer:
                found += [
                    (trainer.group(1), flag, line) for flag in FLAG.findall(rest[trainer.end() :])
                ]
                rest = rest[: trainer.start()]
            if command == "compare":
                rest, inner = _variant_flags(rest)
                found += [(trainer.group(1) if trainer else "train-dqn", f, line) for f in inner]
            found += [(command, flag, line) for flag in FLAG.findall(rest)]
        if not invocations and section is not None and path.name == "README.md":
            text = line
            if section == "compare":
                text, inner = _variant_flags(line)
                found += [("train-dqn", flag, line) for flag in inner]
            found += [(section, flag, line) for flag in FLAG.findall(text)]
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
