"""Diverged training stops with the step range and likely cause and keeps the last good
checkpoint; a replay buffer that cannot fit in RAM is refused before the run starts; running
out of GPU memory ends in one line saying what to reduce."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import agents.update
from agents.config import DQNConfig
from agents.dqn import train_dqn
from playground.checkpoint import load_checkpoint
from playground.errors import UserError
from playground.logger import Logger
from playground.resources import available_memory_bytes
from tests.faults import helpers

pytestmark = pytest.mark.faults


def _config(tmp_path: Path, **changes: object) -> DQNConfig:
    settings: dict = dict(
        env_id="CartPole-v1",
        device="cpu",
        total_steps=3_000,
        learning_starts=300,
        buffer_size=2_000,
        checkpoint_every=200,
        log_every=1_000,
        eval_every=0,
        runs_dir=str(tmp_path),
        run_name="run",
        progress=False,
    )
    return DQNConfig(**{**settings, **changes})


def test_divergence_stops_naming_the_steps_and_keeps_the_last_good_checkpoint(
    tmp_path: Path,
) -> None:
    # Plain SGD at a huge rate on an unclipped squared loss: the Q-values blow up to inf/nan
    # within a few updates after learning starts (step 300), between two checkpoints.
    cfg = _config(tmp_path, optimizer="sgd", learning_rate=1e8, loss="mse", max_grad_norm=0.0)
    with pytest.raises(UserError) as raised:
        train_dqn(cfg, Logger())
    message = str(raised.value)
    assert "training diverged" in message and "--learning-rate" in message, message
    since, until = map(int, re.search(r"between steps (\d+) and (\d+)", message).groups())
    kept = int(re.search(r"latest.pt of step (\d+) is kept", message).group(1))
    state = load_checkpoint(tmp_path / "run" / "latest.pt", kind="dqn")
    assert state["step"] == kept <= since < until <= cfg.total_steps
    for name in ("q_network", "target_network"):
        assert all(torch.isfinite(tensor).all() for tensor in state[name].values())
    print(f"\n{message}")


def test_a_replay_buffer_too_big_for_ram_is_refused_before_the_run_starts(
    tmp_path: Path,
) -> None:
    available = available_memory_bytes()
    assert available is not None
    # CartPole transitions take 4 float32 + a few bytes: ask for ten times the free memory.
    buffer_size = int(10 * available / 16)
    result = helpers.run(
        helpers.dqn_command(tmp_path, "huge", 10_000, "--buffer-size", str(buffer_size)),
        timeout=120,
    )
    line = helpers.assert_one_clear_line(result, "replay buffer", "GiB of RAM", "--buffer-size")
    needed, free = map(float, re.search(r"needs ([\d.]+) GiB .* only ([\d.]+) GiB", line).groups())
    assert needed > 5 * free
    assert not (tmp_path / "huge").exists(), "a run folder was left behind"
    print(f"\n{line}")


def test_out_of_gpu_memory_is_one_line_saying_what_to_reduce(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Injected: the first update raises the error CUDA raises (there may be no GPU here)."""

    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(agents.update, "dqn_update", out_of_memory)
    with pytest.raises(UserError, match="out of memory on cpu: lower --batch-size"):
        train_dqn(_config(tmp_path), Logger())
