"""What every command's settings share: how a resumed run gets its settings back."""

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


def resumed_settings(
    config_type: type[Config], saved: dict[str, Any], given: Config, overridable: Iterable[str]
) -> Config:
    """The settings a resumed run continues with: the ones saved in its checkpoint, except the
    `overridable` fields that the command line set to something other than their default
    (more steps, another device, ...)."""
    defaults = config_type()
    overrides = {
        name: getattr(given, name)
        for name in overridable
        if getattr(given, name) != getattr(defaults, name)
    }
    overrides["resume"] = given.resume  # type: ignore[attr-defined]
    return settings_from_saved(config_type, saved, **overrides)
