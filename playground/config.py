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
    `runs_dir`. It must hold a latest.pt."""
    path = Path(resume)
    if not path.exists() and (Path(runs_dir) / resume).exists():
        path = Path(runs_dir) / resume
    if path.is_file():
        path = path.parent
    if not (path / "latest.pt").is_file():
        raise UserError(f"--resume: no latest.pt in {path}")
    return path


def resumed_settings(
    config_type: type[Config], saved: dict[str, Any], given: Config, overridable: Iterable[str]
) -> Config:
    """The settings a resumed run continues with: the ones saved in its checkpoint, except the
    `overridable` fields that the command line set to something other than their default
    (more steps, another device, ...). Saved fields this version does not know are ignored."""
    known = {field.name for field in dataclasses.fields(config_type)}  # type: ignore[arg-type]
    defaults = config_type()
    values = {name: value for name, value in saved.items() if name in known}
    for name in overridable:
        if getattr(given, name) != getattr(defaults, name):
            values[name] = getattr(given, name)
    values["resume"] = given.resume  # type: ignore[attr-defined]
    return config_type(**values)
