"""`evaluate`: play full games with a trained agent and report the mean and spread of the true
score (through `agents.rollout.score_games` on vector envs, as the evaluations during
training do)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from agents.checkpoint import (
    check_same_game,
    config_from_checkpoint,
    load_dqn_checkpoint,
    network_from_checkpoint,
)
from agents.config import EVALUATE_IDLE_WITHOUT, EvaluateConfig, env_options
from agents.rollout import score_games
from envs import check_env_id, is_atari
from playground.checkpoint import resolve_checkpoint
from playground.device import resolve_device
from playground.notes import note
from playground.settings import check_settings, idle_settings


def evaluate(cfg: EvaluateConfig) -> dict[str, float]:
    """Play `cfg.episodes` full games and print (and return) the mean, spread, min and max."""
    check_settings(cfg)
    path = resolve_checkpoint(cfg.checkpoint)
    checkpoint = load_dqn_checkpoint(path)
    trained = config_from_checkpoint(checkpoint)
    env_id = cfg.env_id or trained.env_id
    check_env_id(env_id)
    check_same_game(checkpoint, env_id)
    device = resolve_device(cfg.device)
    network = network_from_checkpoint(checkpoint, path).to(device)
    asked = {"noop_max"} if cfg.noop_max >= 0 else set()
    for line in idle_settings(replace(cfg, env_id=env_id), asked, EVALUATE_IDLE_WITHOUT):
        note(line)
    options = env_options(trained)
    if asked and is_atari(env_id):
        options["noop_max"] = cfg.noop_max
    games = score_games(
        network,
        env_id,
        cfg.episodes,
        epsilon=cfg.epsilon,
        seed=cfg.seed,
        device=device,
        env_options=options,
        num_envs=cfg.envs,
    )
    scores = games.scores
    result = {
        "episodes": float(len(scores)),
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "min": float(np.min(scores)),
        "max": float(np.max(scores)),
    }
    print(
        f"{env_id}: {result['mean']:.2f} +- {result['std']:.2f} (min {result['min']:.1f}, max "
        f"{result['max']:.1f}) over {len(scores)} games, checkpoint {path} at step "
        f"{checkpoint['step']}"
    )
    return result
