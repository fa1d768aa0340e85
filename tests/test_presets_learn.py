"""Each built-in game's preset learns: a short run with nothing but the preset (fewer steps)
beats random play clearly. The full runs and their bars are benchmarks, not tests
(`python -m benchmarks.presets`, docs/learning.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import agents.presets
from agents.checkpoint import load_dqn_checkpoint, network_from_checkpoint
from agents.config import DQNConfig
from agents.dqn import train_dqn
from agents.rollout import play_games
from playground.logger import NullLogger
from playground.presets import with_preset

# game: (steps of the short run, how far above random play its mean must be)
SHORT_RUNS = {
    "Playground/Catch-v0": (20_000, 1.0),
    "Playground/Pong-v0": (50_000, 2.0),
    "Playground/Breakout-v0": (30_000, 4.0),
    "Playground/Snake-v0": (30_000, 2.0),
}


@pytest.mark.slow
@pytest.mark.parametrize("env_id", list(SHORT_RUNS))
def test_the_preset_beats_random_play(env_id: str, tmp_path: Path) -> None:
    steps, margin = SHORT_RUNS[env_id]
    cfg = with_preset(
        DQNConfig,
        agents.presets,
        "auto",
        env_id=env_id,
        total_steps=steps,
        eval_every=0,
        runs_dir=str(tmp_path),
        run_name="short",
        device="cpu",
        progress=False,
    )
    run_dir = train_dqn(cfg, logger=NullLogger())
    checkpoint = load_dqn_checkpoint(run_dir / "latest.pt")
    network = network_from_checkpoint(checkpoint)
    options = {"frame_stack": cfg.frame_stack, "frame_size": cfg.frame_size}
    trained = play_games(network, env_id, 20, epsilon=0.001, seed=5, env_options=options)
    random = play_games(network, env_id, 20, epsilon=1.0, seed=5, env_options=options)
    assert np.mean(trained.scores) >= np.mean(random.scores) + margin, (
        np.mean(trained.scores),
        np.mean(random.scores),
    )
