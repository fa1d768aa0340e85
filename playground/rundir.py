"""Run directories (`runs/<name>/`): one per run, never shared by two live processes."""

from __future__ import annotations

import fcntl
import os
import re
import time
from pathlib import Path

from playground.errors import UserError


def default_run_name(prefix: str, env_or_dataset: str, seed: int) -> str:
    """A readable, unique-enough name: `dqn-Catch-v0-s1-20261122-183000`."""
    short = re.sub(r"[^A-Za-z0-9_.-]+", "-", env_or_dataset.split("/")[-1]).strip("-")
    return f"{prefix}-{short}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_run_dir(root: str | Path, name: str) -> Path:
    """Create `root/name` for a new run. A new run never reuses a folder that already holds a
    run, so nothing is overwritten (`--resume` continues one)."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise UserError(f"--run-name {name!r}: use letters, digits, '.', '_' and '-' only")
    run_dir = Path(root) / name
    if run_dir.exists() and any(run_dir.iterdir()) and not _died_before_first_checkpoint(run_dir):
        raise UserError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose another --run-name"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create run directory {run_dir}: {error.strerror}") from None
    return run_dir


def _died_before_first_checkpoint(run_dir: Path) -> bool:
    """True for a folder holding only what a run leaves when it is killed before saving its
    first checkpoint (lock file, event files, temporary files): starting anew there loses
    nothing, and the new run's logger purges the old curves (`purge_step=0`)."""
    leftovers = (".lock", "events.out.tfevents.*", ".*.tmp", "replay.pt", "replay.previous.pt")
    return all(
        entry.is_file() and any(entry.match(pattern) for pattern in leftovers)
        for entry in run_dir.iterdir()
    )


class RunLock:
    """An exclusive lock on a run directory for the life of a process (released by the OS
    even after SIGKILL), so two runs pointed at the same folder never write over each other."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self._descriptor: int | None = None

    def acquire(self) -> RunLock:
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise UserError(f"{self.path.parent} is in use by another running process") from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, str(os.getpid()).encode())
        self._descriptor = descriptor
        # Half-written temporary files of a process killed while saving: nobody else can be
        # writing them now that this process holds the lock.
        for stale in self.path.parent.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        return self

    def release(self) -> None:
        if self._descriptor is not None:
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
            os.close(self._descriptor)
            self._descriptor = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
