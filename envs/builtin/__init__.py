"""Built-in Atari-style pixel games, registered with gymnasium as `Playground/<Name>-v0`.

All draw an 84x84 RGB frame on a coarse grid, take discrete actions (`get_action_meanings()`),
score the true game score and are deterministic under `reset(seed=...)`.
"""

from __future__ import annotations

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from envs.builtin.base import mapped_actions, transform_frame
from envs.builtin.breakout import BreakoutEnv
from envs.builtin.catch import CatchEnv
from envs.builtin.pong import PongEnv
from envs.builtin.snake import SnakeEnv

# id -> (entry point, step limit or None); the easiest game first.
_REGISTRATIONS: dict[str, tuple[str, int | None]] = {
    "Playground/Catch-v0": ("envs.builtin.catch:CatchEnv", None),
    "Playground/Pong-v0": ("envs.builtin.pong:PongEnv", 3_000),
    "Playground/Breakout-v0": ("envs.builtin.breakout:BreakoutEnv", 3_000),
    "Playground/Snake-v0": ("envs.builtin.snake:SnakeEnv", 1_000),
}

BUILTIN_GAMES: tuple[str, ...] = tuple(_REGISTRATIONS)
"""Ids of the built-in games, the easiest (Catch) first."""


def register_builtin_games() -> None:
    """Register every built-in game with gymnasium; calling it again does nothing."""
    for env_id, (entry_point, max_episode_steps) in _REGISTRATIONS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=max_episode_steps)


def game_symmetries(env_id: str) -> list[tuple[bool, int, tuple[int, ...]]]:
    """(mirror, quarter_turns, action map) for each symmetry a built-in game declares (see
    `GridGame.symmetries`); empty for any other game."""
    if env_id not in _REGISTRATIONS:
        return []
    game = load_env_creator(_REGISTRATIONS[env_id][0])  # the class, not an instance
    return [
        (mirror, turns, mapped_actions(game.action_meanings, mirror, turns))
        for mirror, turns in game.symmetries
    ]


__all__ = [
    "BUILTIN_GAMES",
    "BreakoutEnv",
    "CatchEnv",
    "PongEnv",
    "SnakeEnv",
    "game_symmetries",
    "mapped_actions",
    "register_builtin_games",
    "transform_frame",
]
