"""Run inside a private mount namespace on a small tmpfs (see test_disk_full.py): start a DQN
run on that filesystem, fill the filesystem once the run has saved a checkpoint, and report
as JSON how the run ended and what was left on the disk.

    python -m tests.faults.disk_full_driver DISK {checkpoint|log} OUT.json
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

from playground.checkpoint import load_checkpoint
from playground.errors import UserError
from tests.faults import helpers


def fill(disk: Path, leave_bytes: int) -> None:
    """Write a filler file until the filesystem has at most `leave_bytes` free."""
    with open(disk / "filler", "wb") as handle:
        chunk = b"\0" * 65536
        while os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize > leave_bytes:
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            try:
                handle.write(chunk[: max(1, min(len(chunk), free - leave_bytes))])
                handle.flush()
            except OSError as error:
                assert error.errno == errno.ENOSPC
                break


def main() -> None:
    disk, mode, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    runs_dir = disk / "runs"
    latest = runs_dir / "full" / "latest.pt"
    # In "log" mode many log points fall between two checkpoints, so the event file needs
    # new space (more than the slack of its last page) before the next checkpoint is due.
    extra = ("--log-every", "1", "--checkpoint-every", "400") if mode == "log" else ()
    process = helpers.start(helpers.dqn_command(runs_dir, "full", 1_000_000, *extra))

    def saved_step() -> int:
        try:
            return int(load_checkpoint(latest, kind="dqn")["step"]) if latest.is_file() else 0
        except UserError:
            return 0

    helpers.wait_for(
        lambda: saved_step() >= (400 if mode == "log" else 200) or process.poll() is not None,
        timeout=180,
    )
    step_before = saved_step()
    # "checkpoint": room for a few more log events but not for a checkpoint (300 kB);
    # "log": not one byte left.
    fill(disk, 48 * 1024 if mode == "checkpoint" else 0)
    try:
        process.wait(timeout=120)
        stderr = process.stderr.read()
    except Exception:
        process.kill()
        stderr = "the run did not stop within 120 s of the disk filling up"
    try:
        state = load_checkpoint(latest, kind="dqn")
        loads, step_after = True, int(state["step"])
    except UserError as error:
        loads, step_after = str(error), -1
    report = {
        "returncode": process.returncode,
        "stderr": stderr,
        "step_before": step_before,
        "latest_loads": loads,
        "step_after": step_after,
        "temporary_files": [path.name for path in latest.parent.glob(".*.tmp")],
        "free_bytes": os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize,
    }
    out.write_text(json.dumps(report))


if __name__ == "__main__":
    main()
