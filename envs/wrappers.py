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


class StackClearing:
    """Zeroes, in each lane's frame stacks (lanes, S, H, W), the frames from before the lane's
    last lost life, as Dopamine's agents do when they begin each life as a new episode (its
    replay pads the first stacks of an episode with blank frames). `step` takes the
    observations a step returned, its lives and which lanes that step reset; it returns the
    observations cleared and the lanes whose life was lost in this step (their stack holds the
    new life's first frame alone)."""

    def __init__(self, lanes: int, frame_stack: int) -> None:
        self.frame_stack = frame_stack
        self.since = np.zeros(lanes, dtype=np.int64)  # frames of each lane's life so far, - 1
        self.lives: np.ndarray | None = None

    def reset(self, lives: np.ndarray | None) -> None:
        """Every lane begins a game (its stack is zero-padded already)."""
        self.since[:] = 0
        self.lives = None if lives is None else np.array(lives)

    def step(
        self, observations: np.ndarray, lives: np.ndarray | None, reset: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        lost = np.zeros_like(reset)
        if lives is not None and self.lives is not None:
            lost = (np.asarray(lives) < self.lives) & ~reset
        self.lives = None if lives is None else np.array(lives)
        self.since = np.where(reset | lost, 0, self.since + 1)
        short = np.flatnonzero(self.since < self.frame_stack - 1)
        if short.size:
            observations = observations.copy()
            for lane in short:
                observations[lane, : self.frame_stack - 1 - self.since[lane]] = 0
        return observations, lost


class LifeLossClearsStack(gym.Wrapper):
    """A single env's frame stack (S, H, W) cleared at each lost life (`StackClearing`)."""

    def __init__(self, env: gym.Env, frame_stack: int) -> None:
        super().__init__(env)
        self.clearing = StackClearing(1, frame_stack)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        observation, info = self.env.reset(seed=seed, options=options)
        self.clearing.reset(np.array([info["lives"]]) if "lives" in info else None)
        return observation, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        lives = np.array([info["lives"]]) if "lives" in info else None
        cleared, _ = self.clearing.step(observation[None], lives, np.zeros(1, dtype=bool))
        return cleared[0], reward, terminated, truncated, info


class VectorLifeLossClearsStack(gym.vector.VectorWrapper):
    """A vector env's (autoreset NEXT_STEP) frame stacks cleared at each lane's lost life
    (`StackClearing`); `lost` holds the lanes whose life the last step lost. `after_step`
    does the clearing for a caller that steps the env below through its own split step."""

    def __init__(self, env: gym.vector.VectorEnv, frame_stack: int) -> None:
        super().__init__(env)
        self.clearing = StackClearing(env.num_envs, frame_stack)
        self.ended = np.zeros(env.num_envs, dtype=bool)  # lanes the next step resets
        self.lost = np.zeros(env.num_envs, dtype=bool)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        observations, infos = self.env.reset(seed=seed, options=options)
        self.clearing.reset(infos.get("lives"))
        self.ended[:] = False
        self.lost[:] = False
        return observations, infos

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        return self.after_step(self.env.step(actions))

    def after_step(self, outcome: tuple[Any, ...]) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        observations, rewards, terminated, truncated, infos = outcome
        observations, self.lost = self.clearing.step(observations, infos.get("lives"), self.ended)
        self.ended = np.logical_or(terminated, truncated)
        return observations, rewards, terminated, truncated, infos


def stack_clearing(envs: gym.vector.VectorEnv) -> VectorLifeLossClearsStack | None:
    """The wrapper of `make_vector_env`'s env that clears stacks at lost lives, if it has one."""
    while isinstance(envs, gym.vector.VectorWrapper):
        if isinstance(envs, VectorLifeLossClearsStack):
            return envs
        envs = envs.env
    return None
