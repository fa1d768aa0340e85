"""SIGTERM (what a scheduler or `docker stop` sends) stops either trainer cleanly: it saves
latest.pt at the step the signal arrived in, exits 0 with one line saying how to continue, and
--resume finishes the run with every TensorBoard point logged exactly once."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from playground.checkpoint import load_checkpoint
from tests.conftest import read_scalars
from tests.faults import helpers

pytestmark = [pytest.mark.faults, pytest.mark.slow]

STOPPED = re.compile(r"Stopped by SIGTERM at step (\d+); saved .*latest\.pt")


def _terminate_once_logging(process, run_dir: Path, tag: str, after_points: int) -> int:
    """Send SIGTERM once the run has logged `after_points` points of `tag`; return the step
    the run says it stopped at."""
    assert helpers.wait_for(
        lambda: run_dir.is_dir() and len(_points(run_dir, tag)) >= after_points,
        timeout=240,
        interval=0.2,
    ), process.stderr.read()[-2000:] if process.poll() is not None else "no progress"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    stopped = STOPPED.search(stderr)
    assert stopped, stderr[-2000:]
    assert f"--resume {run_dir}" in stderr
    return int(stopped.group(1))


def _points(run_dir: Path, tag: str) -> list[int]:
    try:
        return [step for step, _ in read_scalars(run_dir, tag)]
    except KeyError:
        return []


def test_dqn_sigterm_saves_the_step_and_resumes_with_whole_curves(tmp_path: Path) -> None:
    total = 6_000
    runs_dir, run_dir = tmp_path / "runs", tmp_path / "runs" / "term"
    # No periodic checkpoint: whatever latest.pt holds was written because of the signal.
    command = helpers.dqn_command(runs_dir, "term", total)
    command[command.index("--checkpoint-every") + 1] = "1000000"
    process = helpers.start(command)
    stopped_at = _terminate_once_logging(process, run_dir, "charts/epsilon", 5)
    state = load_checkpoint(run_dir / "latest.pt", kind="dqn")
    assert state["step"] == stopped_at and 0 < stopped_at < total

    finished = helpers.run(helpers.resume_command(run_dir))
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "fills again" not in finished.stderr, "the replay buffer was not restored"
    state = load_checkpoint(run_dir / "latest.pt", kind="dqn")
    assert state["step"] == total and state["updates"] == (total - 100) // 4
    logged = _points(run_dir, "charts/epsilon")
    assert logged == list(range(helpers.LOG_EVERY, total + 1, helpers.LOG_EVERY))


def test_gan_sigterm_saves_the_step_and_resumes_with_whole_curves(tmp_path: Path) -> None:
    steps, log_every = 400, 10
    run_dir = tmp_path / "gan"
    command = [
        helpers.PYTHON, str(helpers.ROOT / "run.py"), "train-gan",
        "--dataset", "fake", "--image-size", "32", "--batch-size", "16",
        "--generator-width", "16", "--discriminator-width", "16",
        "--steps", str(steps), "--log-every", str(log_every), "--checkpoint-every", "100000",
        "--sample-every", "0", "--metric-every", "0",
        "--device", "cpu", "--runs-dir", str(tmp_path), "--run-name", "gan", "--no-progress",
    ]  # fmt: skip
    process = helpers.start(command)
    stopped_at = _terminate_once_logging(process, run_dir, "losses/d_loss", 3)
    assert load_checkpoint(run_dir / "latest.pt", kind="gan")["step"] == stopped_at < steps

    resume = [
        helpers.PYTHON, str(helpers.ROOT / "run.py"), "train-gan", "--resume", str(run_dir),
        "--device", "cpu", "--no-progress",
    ]  # fmt: skip
    finished = helpers.run(resume, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert load_checkpoint(run_dir / "latest.pt", kind="gan")["step"] == steps
    # Every log step once, plus the step the run stopped at (its losses were logged then).
    expected = sorted(set(range(log_every, steps + 1, log_every)) | {stopped_at})
    assert _points(run_dir, "losses/d_loss") == expected
