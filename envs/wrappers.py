"""Small observation and reset wrappers used by `envs.factory`, one behaviour each."""

from __future__ import annotations

from typing import Any

import cv2
import gymnasium as gym
import numpy as np


class GrayscaleFrame(gym.ObservationWrapper):
    """Turn an (H, W, 3) uint8 RGB frame into an (H, W) uint8 frame of ITU-R 601 luma.

    Luma is `0.299 R + 0.587 G + 0.114 B`, rounded (OpenCV's RGB2GRAY). Gymnasium's own
    `GrayscaleObservation` uses other weights; this one matches ALE's grayscale screen.

    Example:
        >>> import gymnasium as gym, envs
        >>> env = GrayscaleFrame(gym.make("Playground/Catch-v0"))
        >>> env.reset(seed=0)[0].shape
        (84, 84)
    """

    def __init__(self, env: gym.Env) -> None:
        space = env.observation_space
        if not (
            isinstance(space, gym.spaces.Box)
            and space.dtype == np.uint8
            and len(space.shape) == 3
            and space.shape[2] == 3
        ):
            raise ValueError(f"GrayscaleFrame needs a (H, W, 3) uint8 Box, got {space}")
        super().__init__(env)
        self.observation_space = gym.spaces.Box(0, 255, space.shape[:2], dtype=np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(observation, cv2.COLOR_RGB2GRAY)


class FireReset(gym.Wrapper):
    """Press FIRE (then UP) after every reset, for games that wait for FIRE to start.

    The same as Stable-Baselines3's `FireResetEnv`: without it an agent can sit at the start
    screen forever. If either press happens to end the episode, the env is reset again.
    """

    def __init__(self, env: gym.Env) -> None:
        meanings = env.unwrapped.get_action_meanings()
        if len(meanings) < 3 or meanings[1] != "FIRE":
            raise ValueError(f"FireReset needs FIRE as action 1, got actions {meanings}")
        super().__init__(env)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        self.env.reset(seed=seed, options=options)
        for action in (1, 2):
            observation, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                observation, info = self.env.reset(options=options)
        return observation, info
