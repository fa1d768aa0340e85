"""Constraints declared beside each setting, checked by one function before a command starts.

A settings field says what values it takes in its type, and tyro shows that in `--help` (as
the flag's metavar):

    batch_size: Positive[int] = 32            # --batch-size INT>0
    gamma: Between[float, 0, 1] = 0.99        # hand-written: Annotated[float, Range(0, 1)]
    output: OutputFile = ""                   # its folder must be writable (or makeable)

`check_settings(cfg)` walks the dataclass and refuses the first value outside its field's
constraint with one line naming the flag (`--batch-size must be positive, got 0`), so a field
added with a constraint is checked the day it is added (tests/test_bad_values.py feeds every
one of them values outside their ranges).
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from playground.errors import UserError


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Range:
    """low <= value <= high (either end may be open, or absent)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, value: float) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (
            self.high is not None and (value >= self.high if self.high_open else value > self.high)
        )

    def describe(self) -> str:
        """As the error says it: "positive", ">= 0", "lie in [0, 1]"."""
        if self.high is None:
            if self.low == 0 and self.low_open:
                return "be positive"
            return f"be {'>' if self.low_open else '>='} {_number(self.low)}"
        if self.low is None:
            return f"be {'<' if self.high_open else '<='} {_number(self.high)}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"lie in {left}{_number(self.low)}, {_number(self.high)}{right}"

    def metavar(self, kind: type) -> str:
        name = "INT" if kind is int else "FLOAT"
        if self.high is None:
            return f"{name}{'>' if self.low_open else '>='}{self.low:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{name}{left}{self.low:g},{self.high:g}{right}"


@dataclass(frozen=True)
class PathRule:
    """A path setting: an input that must exist (when given), or an output (a file, a folder,
    or either) whose place must be writable. An empty value means "not given" and is not
    checked."""

    kind: Literal["input", "file", "folder", "any"]

    def problem(self, value: str) -> str | None:
        path = Path(value).expanduser()
        if self.kind == "input":
            return None if path.exists() else f"{value} not found"
        if self.kind == "file" and path.is_dir():
            return f"{value} is a folder; name a file"
        if self.kind == "folder" and path.exists() and not path.is_dir():
            return f"{value} is a file, not a folder"
        place = path if path.is_dir() else _nearest_existing(path.parent)
        if not place.is_dir():
            return f"{place} is a file, so nothing can be written under it"
        if not os.access(place, os.W_OK | os.X_OK):
            return f"cannot write in {place}; pick another place"
        return None


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


INPUT = PathRule("input")
OUTPUT_FILE = PathRule("file")
OUTPUT_FOLDER = PathRule("folder")
OUTPUT_ANY = PathRule("any")

POSITIVE = Range(0, None, low_open=True)
NON_NEGATIVE = Range(0)
UNIT = Range(0, 1)

# The common constraints as types: tyro reads the metavar, check_settings the Range.
PositiveInt = Annotated[int, POSITIVE, tyro.conf.arg(metavar="INT>0")]
PositiveFloat = Annotated[float, POSITIVE, tyro.conf.arg(metavar="FLOAT>0")]
NonNegativeInt = Annotated[int, NON_NEGATIVE, tyro.conf.arg(metavar="INT>=0")]
NonNegativeFloat = Annotated[float, NON_NEGATIVE, tyro.conf.arg(metavar="FLOAT>=0")]
UnitFloat = Annotated[float, UNIT, tyro.conf.arg(metavar="FLOAT[0,1]")]
Seed = Annotated[int, Range(0, 2**32 - 1), tyro.conf.arg(metavar="INT[0,2^32)")]
Port = Annotated[int, Range(0, 65535), tyro.conf.arg(metavar="PORT")]  # 0: any free one
InputPath = Annotated[str, INPUT, tyro.conf.arg(metavar="PATH")]
OutputFile = Annotated[str, OUTPUT_FILE, tyro.conf.arg(metavar="FILE")]
OutputFolder = Annotated[str, OUTPUT_FOLDER, tyro.conf.arg(metavar="DIR")]
OutputPath = Annotated[str, OUTPUT_ANY, tyro.conf.arg(metavar="PATH")]  # a file or a folder


def between(kind: type, low: float, high: float, **open_ends: bool) -> Any:
    """`Annotated[kind, Range(low, high)]` with its metavar, e.g. `between(float, 0, 1,
    high_open=True)` for dropout."""
    bounds = Range(low, high, **open_ends)
    return Annotated[kind, bounds, tyro.conf.arg(metavar=bounds.metavar(kind))]


def at_least(kind: type, low: float) -> Any:
    bounds = Range(low)
    return Annotated[kind, bounds, tyro.conf.arg(metavar=bounds.metavar(kind))]


def constraints(config_type: type) -> dict[str, tuple[Any, Range | PathRule]]:
    """name -> (the field's plain type, its constraint) for each constrained field."""
    hints = typing.get_type_hints(config_type, include_extras=True)
    found = {}
    for item in dataclasses.fields(config_type):
        hint = hints[item.name]
        if typing.get_origin(hint) is not Annotated:
            continue
        base, *metadata = typing.get_args(hint)
        for rule in metadata:
            if isinstance(rule, Range | PathRule):
                found[item.name] = (base, rule)
    return found


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_settings(cfg: Any) -> None:
    """Refuse the first setting of `cfg` (a settings dataclass) outside its declared
    constraint, with one line naming its flag."""
    for name, (_, rule) in constraints(type(cfg)).items():
        value = getattr(cfg, name)
        if value is None:
            continue
        if isinstance(rule, Range):
            if not rule.holds(value):
                raise UserError(f"{flag(name)} must {rule.describe()}, got {value}")
        elif value != "":
            problem = rule.problem(str(value))
            if problem is not None:
                raise UserError(f"{flag(name)}: {problem}")


@dataclass(frozen=True)
class Needs:
    """Settings that act only beside others: `idle(cfg)` is true when they do nothing, and
    `why` (formatted with the settings' values) says under what, as in "--v-min has no effect
    without --distributional c51"."""

    fields: tuple[str, ...]
    idle: Callable[[Any], bool]
    why: str


def idle_settings(cfg: Any, changed: Collection[str], rules: Iterable[Needs]) -> list[str]:
    """One line for each rule whose settings the user changed (`changed`: field names) while
    they do nothing; a setting is named once, by the first rule it falls under."""
    lines, named = [], set()
    for rule in rules:
        fields = [name for name in rule.fields if name in changed and name not in named]
        if fields and rule.idle(cfg):
            named.update(fields)
            flags = ", ".join(flag(name) for name in fields)
            verb = "has" if len(fields) == 1 else "have"
            lines.append(f"{flags} {verb} no effect {rule.why.format(**vars(cfg))}")
    return lines


def numeric_fields(config_type: type) -> list[str]:
    """The int and float fields of a settings dataclass (every one should be constrained)."""
    hints = typing.get_type_hints(config_type, include_extras=True)
    names = []
    for item in dataclasses.fields(config_type):
        hint = hints[item.name]
        base = typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint
        if base in (int, float):
            names.append(item.name)
    return names
