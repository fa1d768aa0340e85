"""The DCGAN trainer under SIGKILL: after each kill latest.pt loads, and --resume finishes the
run with every loss point logged exactly once."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from playground.checkpoint import load_checkpoint
from tests.conftest import read_scalars
from tests.faults import helpers

pytestmark = [pytest.mark.faults, pytest.mark.slow]

STEPS, LOG_EVERY, CHECKPOINT_EVERY, KILLS = 600, 10, 20, 3


def _command(runs_dir: Path) -> list[str]:
    return [
        helpers.PYTHON, str(helpers.ROOT / "run.py"), "train-gan",
        "--dataset", "fake", "--image-size", "32", "--batch-size", "16",
        "--generator-width", "16", "--discriminator-width", "16",
        "--steps", str(STEPS), "--log-every", str(LOG_EVERY),
        "--checkpoint-every", str(CHECKPOINT_EVERY), "--sample-every", "0", "--metric-every", "0",
        "--device", "cpu", "--runs-dir", str(runs_dir), "--run-name", "gan", "--no-progress",
    ]  # fmt: skip


def _resume(run_dir: Path) -> list[str]:
    return [
        helpers.PYTHON, str(helpers.ROOT / "run.py"), "train-gan", "--resume", str(run_dir),
        "--device", "cpu", "--no-progress",
    ]  # fmt: skip


def _step(latest: Path) -> int:
    return int(load_checkpoint(latest, kind="gan")["step"]) if latest.is_file() else 0


def test_gan_survives_sigkill_and_resumes_with_whole_curves(tmp_path: Path) -> None:
    chooser = random.Random(1)
    latest = tmp_path / "gan" / "latest.pt"
    steps_after_kills = []
    for kill in range(KILLS):
        process = helpers.start(_resume(latest.parent) if latest.is_file() else _command(tmp_path))
        saved = _step(latest)
        assert helpers.wait_for(lambda saved=saved: _step(latest) > saved, timeout=300), (
            process.stderr.read()[-2000:] if process.poll() is not None else "no progress"
        )
        time.sleep(chooser.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, f"kill {kill}: the run ended by itself"
        steps_after_kills.append(_step(latest))  # loads, or the test fails here
    assert steps_after_kills[-1] < STEPS
    finished = helpers.run(_resume(latest.parent), timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert _step(latest) == STEPS
    points = read_scalars(tmp_path / "gan", "losses/d_loss")
    assert [step for step, _ in points] == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
    print(f"\nGAN kills survived: {KILLS}; latest.pt steps after each: {steps_after_kills}")
