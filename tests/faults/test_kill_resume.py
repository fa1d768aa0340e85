"""SIGKILL at any moment, including in the middle of writing a checkpoint: the latest
checkpoint always loads, and --resume carries the step counter, the schedules and the
TensorBoard curves on with no step logged twice or missing."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from playground.checkpoint import load_checkpoint
from playground.schedules import linear_schedule
from tests.conftest import read_scalars
from tests.faults import helpers

pytestmark = [pytest.mark.faults, pytest.mark.slow]  # about 40 s

KILLS = 10
TOTAL_STEPS = 8_000


def _temporary_files(run_dir: Path) -> set[Path]:
    return set(run_dir.glob(".*.tmp")) if run_dir.is_dir() else set()


def _mtime(path: Path) -> float:
    return path.stat().st_mtime_ns if path.is_file() else 0


def _kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read()[-2000:]


def test_dqn_survives_repeated_sigkill_and_resumes_exactly(tmp_path: Path) -> None:
    chooser = random.Random(0)
    runs_dir = tmp_path / "runs"
    run_dir = runs_dir / "killed"
    latest = run_dir / "latest.pt"

    # Killed while starting, before any checkpoint: the same command starts it again.
    process = helpers.start(helpers.dqn_command(runs_dir, "killed", TOTAL_STEPS))
    time.sleep(1.0)
    _kill(process)
    assert not latest.exists()
    kills, kills_mid_write, saved_steps = 1, 0, []
    while kills < KILLS:
        if latest.is_file():
            command = helpers.resume_command(run_dir)
        else:
            command = helpers.dqn_command(runs_dir, "killed", TOTAL_STEPS)
        before, saved_at = _temporary_files(run_dir), _mtime(latest)
        process = helpers.start(command)
        # Let it get somewhere (a new checkpoint), so every kill is at a later point.
        assert helpers.wait_for(
            lambda saved_at=saved_at: _mtime(latest) != saved_at, timeout=120, interval=0.01
        ), process.stderr.read()[-2000:] if process.poll() is not None else "no progress"
        if kills % 2 == 0:
            # Inside a checkpoint write: kill the moment a new temporary file shows up.
            helpers.wait_for(
                lambda before=before: bool(_temporary_files(run_dir) - before),
                timeout=60,
                interval=0.0005,
            )
        else:
            # Anywhere: acting, learning, logging, saving.
            time.sleep(chooser.uniform(0.0, 1.0))
        _kill(process)
        kills += 1
        # A temporary file left behind means the kill landed inside save_checkpoint.
        kills_mid_write += bool(_temporary_files(run_dir) - before)
        state = load_checkpoint(latest, kind="dqn")
        assert state["step"] % helpers.CHECKPOINT_EVERY == 0
        assert not saved_steps or state["step"] > saved_steps[-1]
        saved_steps.append(state["step"])
    assert saved_steps[-1] < TOTAL_STEPS, "the run finished before it was killed"
    assert kills_mid_write >= 1, "no kill landed while a checkpoint was being written"

    finished = helpers.run(helpers.resume_command(run_dir))
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "fills again" not in finished.stderr, "the replay buffer was not restored"
    assert not _temporary_files(run_dir), "stale temporary files were not cleaned up"
    state = load_checkpoint(latest, kind="dqn")
    assert state["step"] == TOTAL_STEPS
    # One update per 4 steps after learning starts (step 100), across every resume.
    assert state["updates"] == (TOTAL_STEPS - 100) // 4

    # Curves: every log point exactly once, none missing, the epsilon schedule continued.
    expected_steps = list(range(helpers.LOG_EVERY, TOTAL_STEPS + 1, helpers.LOG_EVERY))
    epsilon = read_scalars(run_dir, "charts/epsilon")
    assert [step for step, _ in epsilon] == expected_steps
    decay = helpers.EXPLORATION_FRACTION * TOTAL_STEPS
    for step, value in epsilon:  # the epsilon that chose the action of step - 1 -> step
        assert value == pytest.approx(linear_schedule(1.0, 0.01, decay, step - 1), abs=1e-6)
    losses = read_scalars(run_dir, "losses/td_loss")
    assert [step for step, _ in losses] == [step for step in expected_steps if step > 100]
    print(
        f"\nkills survived: {kills} ({kills_mid_write} inside a checkpoint write); "
        f"latest.pt steps after each kill: {saved_steps}"
    )
