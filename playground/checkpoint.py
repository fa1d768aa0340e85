"""Checkpoints: one plain dict, written atomically, loaded with `weights_only=True`.

A checkpoint holds everything needed to resume exactly (weights, optimizer, step, config,
RNG state, ...) plus `kind` ("dqn", "gan", ...) and `format_version`, which `load_checkpoint`
checks so a foreign or corrupted file gets one clear line instead of a traceback.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from playground.errors import UserError

FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` to `path` atomically: a temporary file in the same folder is written,
    flushed to disk, then renamed over `path`. A crash at any moment leaves either the old
    file or the new one, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format_version": FORMAT_VERSION, **state}
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def load_checkpoint(
    path: str | Path, kind: str | None = None, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint safely (no arbitrary code runs: `weights_only=True`) and check that it
    is a `kind` checkpoint of a format this version understands."""
    path = Path(path)
    if path.is_dir():
        for name in ("latest.pt", "best.pt"):
            if (path / name).is_file():
                path = path / name
                break
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "unsafe content"
        raise UserError(
            f"{path} was refused: it is not a plain checkpoint ({first_line[:160]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise UserError(
            f"{path} is truncated or corrupted and cannot be loaded ({type(error).__name__})"
        ) from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise UserError(f"{path} is not a checkpoint written by this playground")
    if state["format_version"] > FORMAT_VERSION:
        raise UserError(
            f"{path} was written by a newer version of the playground (format "
            f"{state['format_version']}, this one reads up to {FORMAT_VERSION}); update the code"
        )
    if kind is not None and state.get("kind") != kind:
        raise UserError(
            f"{path} is a {state.get('kind', 'unknown')!r} checkpoint, not a {kind!r} one"
        )
    return state


def _fsync_directory(directory: Path) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
