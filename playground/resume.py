"""Resuming, for every command: the settings a resumed run continues with (saved ones, the
flags given on its command line), and which flags a command line gave."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from playground.errors import UserError

Config = TypeVar("Config")


def resolve_resume_dir(resume: str, runs_dir: str) -> Path:
    """The run folder named by `--resume`: a path, a checkpoint file in it, or a name under
    `runs_dir`. It must hold a latest.pt (a run is always continued from its newest state)."""
    path = Path(resume).expanduser()
    if not path.exists() and (Path(runs_dir) / resume).exists():
        path = Path(runs_dir) / resume
    if path.is_file():
        path = path.parent
    if not (path / "latest.pt").is_file():
        raise UserError(f"--resume: no checkpoint to resume in {path} (no latest.pt there)")
    return path


def settings_from_saved(
    config_type: type[Config], saved: dict[str, Any], **overrides: Any
) -> Config:
    """Rebuild settings saved in a checkpoint (fields this version does not know are ignored;
    fields it added since take their defaults), with `overrides` on top."""
    known = {field.name for field in dataclasses.fields(config_type)}  # type: ignore[arg-type]
    values = {name: value for name, value in saved.items() if name in known}
    return config_type(**{**values, **overrides})


# Fields that only say where the run is; a resumed run may be named with them.
RESUME_LOCATION = ("resume", "runs_dir", "preset")


# The flags one trainer takes under the other's name: --steps and --total-steps are the same
# setting in train-dqn and train-gan.
FLAG_ALIASES = {"steps": "total_steps", "total_steps": "steps"}


def given_fields(config_type: type, argv: Iterable[str]) -> frozenset[str]:
    """The fields of `config_type` whose flags appear in `argv` (`--total-steps 5`,
    `--total-steps=5`, `--progress` / `--no-progress`), whatever their values."""
    known = {field.name for field in dataclasses.fields(config_type)}  # type: ignore[arg-type]
    found = set()
    for token in argv:
        if not token.startswith("--"):
            continue
        name = token[2:].partition("=")[0].replace("-", "_")
        if name not in known and name.startswith("no_") and name[3:] in known:
            name = name[3:]
        if name not in known and FLAG_ALIASES.get(name) in known:
            name = FLAG_ALIASES[name]
        if name in known:
            found.add(name)
    return frozenset(found)


def resumed_settings(
    config_type: type[Config],
    saved: dict[str, Any],
    given: Config,
    overridable: Iterable[str],
    explicit: Iterable[str] | None = None,
) -> Config:
    """The settings a resumed run continues with: the ones saved in its checkpoint, except the
    `overridable` fields that the command line gave (`explicit`, the fields whose flags were on
    it, whatever their values; None, as for settings built in code: those that differ from
    their defaults). A flag given that a resumed run cannot take is refused with one line."""
    overridable = tuple(overridable)
    if explicit is None:
        defaults = config_type()
        explicit = [name for name in overridable if getattr(given, name) != getattr(defaults, name)]
    explicit = set(explicit) - set(RESUME_LOCATION)
    refused = sorted(explicit - set(overridable))
    if refused:
        flags = ", ".join("--" + name.replace("_", "-") for name in refused)
        allowed = ", ".join("--" + name.replace("_", "-") for name in overridable)
        raise UserError(
            f"--resume continues with the run's saved settings; {flags} cannot change there "
            f"(a resumed run takes only {allowed}); start a new run to change it"
        )
    overrides = {name: getattr(given, name) for name in explicit}
    overrides["resume"] = given.resume  # type: ignore[attr-defined]
    return settings_from_saved(config_type, saved, **overrides)


def resume_help(overridable: Iterable[str]) -> str:
    """The --resume help text, naming the flags a resumed run takes (from the list the code
    uses)."""
    flags = ", ".join("--" + name.replace("_", "-") for name in overridable)
    return (
        "Continue the run in this folder (or runs/<name>) from its latest.pt with its saved "
        f"settings; of the other flags only {flags} may be given with it, and they apply "
        "whatever their value."
    )
