"""Two runs pointed at the same run directory never overwrite each other: a second new run
and a second --resume are refused while the first one trains, and two runs started at the same
moment under one name end with exactly one of them training."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from playground.checkpoint import load_checkpoint
from playground.rundir import RunLock
from tests.faults import helpers

pytestmark = pytest.mark.faults


def test_a_live_run_directory_is_never_shared(tmp_path: Path) -> None:
    run_dir = tmp_path / "shared"
    first = helpers.start(helpers.dqn_command(tmp_path, "shared", 1_000_000))
    try:
        assert helpers.wait_for(lambda: (run_dir / "latest.pt").is_file(), timeout=120)
        again = helpers.run(helpers.dqn_command(tmp_path, "shared", 1_000_000), timeout=120)
        helpers.assert_one_clear_line(again, "already holds a run")
        resumed = helpers.run(helpers.resume_command(run_dir), timeout=120)
        helpers.assert_one_clear_line(resumed, "in use by another running process")
        assert first.poll() is None, "the first run was disturbed"
        assert load_checkpoint(run_dir / "latest.pt", kind="dqn")["step"] > 0
    finally:
        first.send_signal(signal.SIGTERM)  # saves latest.pt and exits
        first.wait(timeout=120)
    assert first.returncode == 0, first.stderr.read()[-2000:]
    # Once it has stopped, the folder is free again (the lock died with the process).
    RunLock(run_dir).acquire().release()


def test_two_runs_started_together_under_one_name(tmp_path: Path) -> None:
    command = helpers.dqn_command(tmp_path, "race", 1_000_000)
    processes = [helpers.start(command), helpers.start(command)]
    try:
        assert helpers.wait_for(
            lambda: any(process.poll() is not None for process in processes), timeout=120
        ), "neither run was refused"
        refused = next(process for process in processes if process.poll() is not None)
        running = next(process for process in processes if process is not refused)
        stderr = refused.stderr.read()
        assert refused.returncode == 2, stderr[-2000:]
        assert "in use by another running process" in stderr or "already holds a run" in stderr
        assert helpers.wait_for(lambda: (tmp_path / "race" / "latest.pt").is_file(), timeout=120)
        assert running.poll() is None
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
