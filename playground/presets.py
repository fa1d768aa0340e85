"""Presets: named sets of settings that make a run work for a game or data set, applied for you.

A trainer's presets module (`agents.presets`, `gan.presets`) holds `PRESETS` (name -> Preset),
`SELECTOR` (the flag whose value picks one: `--env-id`, `--dataset`) and `preset_for(value)`.
`run.py` turns the chosen preset into the defaults of the command's settings, so every flag
given on the command line still wins over it, and `--help` shows the preset's values:

    python run.py train-dqn --env-id Playground/Snake-v0               # the snake preset
    python run.py train-dqn --env-id Playground/Snake-v0 --learning-rate 1e-3   # ... but this lr
    python run.py train-dqn --preset none --env-id Playground/Snake-v0  # the plain defaults

Settings built in code take a preset with `with_preset(DQNConfig, agents.presets, name, ...)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

from playground.errors import UserError

Config = TypeVar("Config")
AUTO = "auto"
NONE = "none"


@dataclass(frozen=True)
class Preset:
    """A name, what it is for, its settings, and what it reaches (for the README's table)."""

    name: str
    summary: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    reaches: str = "not measured"


def option_value(argv: Sequence[str], flag: str) -> str | None:
    """The value given to `flag` in `argv` (`--flag value` or `--flag=value`; the last wins),
    or None. Underscores are accepted for dashes, as tyro does."""
    names = {flag, flag.replace("-", "_")}
    value = None
    for index, token in enumerate(argv):
        name, equals, rest = token.partition("=")
        if name in names:
            if equals:
                value = rest
            elif index + 1 < len(argv):
                value = argv[index + 1]
    return value


def choose(presets: ModuleType, argv: Sequence[str], config_type: type) -> str:
    """The preset named by `--preset`, else the one `presets.SELECTOR`'s value picks (its
    default when the flag is absent); `none` for a resumed run, whose saved settings rule."""
    if option_value(argv, "--resume"):
        return NONE
    chosen = option_value(argv, "--preset") or AUTO
    if chosen == AUTO:
        selector = presets.SELECTOR.removeprefix("--").replace("-", "_")
        value = option_value(argv, presets.SELECTOR)
        if value is None:
            value = getattr(config_type(), selector)
        chosen = presets.preset_for(value)
    if chosen != NONE and chosen not in presets.PRESETS:
        names = ", ".join([*presets.PRESETS, NONE])
        raise UserError(f"--preset {chosen!r} is not one of {names}")
    return chosen


def with_preset(
    config_type: type[Config], presets: ModuleType, name: str, **settings: Any
) -> Config:
    """Settings of `config_type` with preset `name` applied and `settings` over it."""
    if name == AUTO:
        selector = presets.SELECTOR.removeprefix("--").replace("-", "_")
        value = settings.get(selector, getattr(config_type(), selector))
        name = presets.preset_for(value)
    values = dict(presets.PRESETS[name].settings) if name != NONE else {}
    values.update(settings)
    return config_type(**{**values, "preset": name})


def changed_settings(presets: ModuleType, cfg: Any) -> frozenset[str]:
    """The fields of `cfg` whose values differ from its preset's (or, without one, from the
    defaults): what the command line or the caller changed. Settings built in code without
    `with_preset` keep `preset="auto"` and no preset's values: they are read against the
    defaults."""
    name = getattr(cfg, "preset", NONE)
    baseline = with_preset(type(cfg), presets, name if name in presets.PRESETS else NONE)
    return frozenset(
        item.name
        for item in dataclasses.fields(cfg)
        if item.name != "preset" and getattr(cfg, item.name) != getattr(baseline, item.name)
    )


def describe(presets: ModuleType, cfg: Any) -> str | None:
    """One line saying which preset a run uses and which of its settings the command line
    changed; None when no preset applies."""
    name = getattr(cfg, "preset", NONE)
    if name in (AUTO, NONE) or name not in presets.PRESETS:
        return None
    preset = presets.PRESETS[name]
    changed = [key for key, value in preset.settings.items() if getattr(cfg, key, value) != value]
    line = f"preset {name}: {preset.summary}"
    if changed:
        line += f"; given on the command line instead: {', '.join(changed)}"
    return line


def check_presets(config_type: type, presets: ModuleType) -> None:
    """Every preset names only fields that `config_type` has (a typo would be ignored
    silently otherwise)."""
    fields = {item.name for item in dataclasses.fields(config_type)}
    for preset in presets.PRESETS.values():
        unknown = set(preset.settings) - fields
        if unknown:
            raise AssertionError(f"preset {preset.name} sets unknown fields {sorted(unknown)}")
