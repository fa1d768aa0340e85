"""Checkpoints: one plain dict, written atomically, loaded with `weights_only=True`.

A checkpoint holds everything needed to resume exactly (weights, optimizer, step, config,
RNG state, ...) plus `kind` ("dqn", "gan", ...) and `format_version`, which `load_checkpoint`
checks so a foreign or corrupted file gets one clear line instead of a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from playground.errors import UserError

FORMAT_VERSION = 1
OLDEST_FORMAT_VERSION = 1  # formats older than this cannot be read any more

LATEST = "latest.pt"
"""The newest state of a run: what --resume continues from."""
BEST = "best.pt"
"""The best state of a run by its own measure (evaluation score, FID)."""
FINAL_EVAL = "final_eval.json"
"""A DQN run's closing evaluation (--final-eval-episodes): every game's score, in its folder."""
RUN_FOLDER_RULE = "a run folder means its best.pt, or its latest.pt while it has no best.pt"
"""Which checkpoint a run folder stands for, for every command that reads one."""


def run_complete(run_dir: Path, step: int, total_steps: int, final_eval_episodes: int = 0) -> bool:
    """Whether a run at `step` has nothing left to do: at its last step, with its closing
    evaluation written where it has one (a run stopped between the two still owes it). What
    `--resume` refuses, and what compare records instead of resuming."""
    return step >= total_steps and (not final_eval_episodes or (run_dir / FINAL_EVAL).is_file())


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file `path` names: itself when it is a file; for a run folder its best.pt,
    or its latest.pt while it has no best.pt (RUN_FOLDER_RULE). A missing path is returned as
    is, for `load_checkpoint` to refuse with one line."""
    path = Path(path).expanduser()
    if path.is_dir():
        for name in (BEST, LATEST):
            if (path / name).is_file():
                return path / name
        raise UserError(f"{path} holds no checkpoint ({BEST} or {LATEST}); is it a run folder?")
    return path


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
    except (OSError, RuntimeError) as error:
        Path(temporary).unlink(missing_ok=True)
        raise UserError(_write_failure(path, error)) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def write_json_atomic(path: str | Path, record: Any) -> Path:
    """Write `record` as JSON to `path` atomically (a temporary file renamed over it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "w") as handle:
            json.dump(record, handle, indent=1)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise UserError(_write_failure(path, error)) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _write_failure(path: Path, error: BaseException) -> str:
    """One line for a checkpoint that could not be written. torch.save reports a full disk as
    a RuntimeError from its zip writer, so the free space is looked at to name the cause."""
    if (
        isinstance(error, OSError)
        and error.errno in (errno.ENOSPC, errno.EDQUOT)
        or _nearly_full(path.parent)
    ):
        reason = "no space left on the device"
    elif isinstance(error, OSError):
        reason = error.strerror or str(error)
    else:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
    return (
        f"cannot write {path}: {reason}; the checkpoints saved before are intact. Free some "
        "space (or pick another --runs-dir), then continue with --resume"
    )


def _nearly_full(directory: Path) -> bool:
    try:
        return shutil.disk_usage(directory).free < 1024**2
    except OSError:
        return False


def load_checkpoint(
    path: str | Path, kind: str | None = None, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint safely (no arbitrary code runs: `weights_only=True`) and check that it
    is a `kind` checkpoint of a format this version understands. A run folder stands for its
    best.pt, or its latest.pt while it has none (`resolve_checkpoint`)."""
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message is a paragraph; keep the line that names what was refused.
        found = re.search(
            r"(unsupported GLOBAL [\w.]+|Unsupported (global|operand)[^\n.]*)", str(error)
        )
        detail = found.group(0).strip() if found else "unreadable or unsafe content"
        raise UserError(
            f"{path} was refused, nothing in it was run: it is not a plain checkpoint ({detail})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise UserError(
            f"{path} is truncated or corrupted and cannot be loaded ({type(error).__name__})"
        ) from None
    except MemoryError:
        raise
    except Exception as error:
        # (a memo KeyError, an IndexError on its stack, ...); all mean the same to a user.
        raise UserError(
            f"{path} was refused, nothing in it was run: it is not a plain checkpoint "
            f"(unreadable content: {type(error).__name__})"
        ) from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise UserError(f"{path} is not a checkpoint written by this playground")
    version = state["format_version"]
    if not isinstance(version, int) or version < OLDEST_FORMAT_VERSION:
        raise UserError(
            f"{path} was written by an older version of the playground (format {version!r}, "
            f"this one reads formats {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}); train anew"
        )
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


def require_keys(state: dict[str, Any], keys: Iterable[str], path: str | Path) -> None:
    """Refuse a checkpoint that lacks entries this version needs (an older or partial file)
    with one line naming them."""
    missing = [key for key in keys if key not in state]
    if missing:
        raise UserError(
            f"{path} lacks {', '.join(missing)} (written by an older version of the playground, "
            f"format {state.get('format_version')!r}?); it cannot be resumed, train anew"
        )


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
