"""Shared pieces of the fault tests: the real command line, run in real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

# A DQN run small enough to take seconds: CartPole (vector observations, an MLP), a replay
# buffer that fills at once, a checkpoint every 100 steps and a log point every 50.
TOTAL_STEPS = 3_000
LOG_EVERY = 50
CHECKPOINT_EVERY = 100
EXPLORATION_FRACTION = 0.5


def dqn_command(
    runs_dir: Path, name: str, total_steps: int = TOTAL_STEPS, *extra: str
) -> list[str]:
    """`run.py train-dqn` for a new run `runs_dir/name`."""
    return [
        PYTHON, str(ROOT / "run.py"), "train-dqn",
        "--env-id", "CartPole-v1",
        "--preset", "none",  # the plain defaults: one update per 4 steps
        "--device", "cpu",
        "--total-steps", str(total_steps),
        "--learning-starts", "100",
        "--buffer-size", "2000",
        "--exploration-fraction", str(EXPLORATION_FRACTION),
        "--checkpoint-every", str(CHECKPOINT_EVERY),
        "--log-every", str(LOG_EVERY),
        "--eval-every", "0",
        "--runs-dir", str(runs_dir),
        "--run-name", name,
        "--no-progress",
        *extra,
    ]  # fmt: skip


def resume_command(run_dir: Path) -> list[str]:
    """`run.py train-dqn --resume run_dir`."""
    return [
        PYTHON, str(ROOT / "run.py"), "train-dqn", "--resume", str(run_dir), "--device", "cpu",
        "--no-progress",
    ]  # fmt: skip


def environment() -> dict[str, str]:
    """The child's environment: one thread each, so parallel children share 2 cores fairly."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def start(command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=timeout
    )


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def error_lines(stderr: str) -> list[str]:
    """The `error: ...` lines run.py printed."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The command failed with exit code 2, one `error:` line holding `words`, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr[-2000:]
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
    return lines[0]
