"""Build environments preprocessed exactly as the DQN trainer sees them.

Three kinds of env id are understood:

* ALE Atari games (`ALE/Pong-v5`, `PongNoFrameskip-v4`, ...): grayscale 84x84 frames, 4 frames
  per action with the last two max-pooled, up to 30 no-ops at reset, FIRE at reset where the game
  has it (both can be turned off: `noop_max`, `fire_reset`), and a stack of the last
  `frame_stack` frames -> observations (stack, 84, 84) uint8.
* the built-in pixel games (`envs.BUILTIN_GAMES`): ITU-R 601 grayscale of the 84x84 frame,
  stacked -> (stack, 84, 84) uint8.
* vector-observation envs (`CartPole-v1`, ...): observations unchanged (float32 vectors).

Always: the true game reward (no clipping), the true end of a game (a lost life does not end an
episode), and episode statistics in `info["episode"]`. Frame stacks are padded with ZERO frames
at the start of an episode, as ale_py's `AtariVectorEnv` does; replay buffers rely on that.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import ale_py
import gymnasium as gym
import numpy as np
from gymnasium.wrappers import (
    AtariPreprocessing,
    FrameStackObservation,
    RecordEpisodeStatistics,
)
from gymnasium.wrappers.vector import RecordEpisodeStatistics as VectorRecordEpisodeStatistics

from envs.builtin import BUILTIN_GAMES, register_builtin_games
from envs.wrappers import (
    FireReset,
    GrayscaleFrame,
    LifeLossClearsStack,
    VectorLifeLossClearsStack,
)
from playground.errors import UserError, check, require_positive

gym.register_envs(ale_py)
register_builtin_games()

ATARI_ENTRY_POINT = "ale_py.env:AtariEnv"
FRAME_SIZE = 84
"""Side of the square grayscale frames pixel games are turned into, unless asked otherwise."""
ATARI_EPISODE_FRAMES = 108_000
"""The ALE's episode cap in emulator frames (30 minutes of play, 27,000 agent steps)."""
NOOP_MAX = 30
"""No-op frames an ALE game starts after, at most (drawn per reset; the Nature DQN's)."""


def is_atari(env_id: str) -> bool:
    """Whether `env_id` is a registered ALE Atari game."""
    return env_id in gym.registry and gym.spec(env_id).entry_point == ATARI_ENTRY_POINT


def game_fps(env_id: str) -> int:
    """Agent steps per second at a game's real-time speed: 15 for ALE games (60 frames a second,
    4 per agent step), else the env's `render_fps` (30 when it has none)."""
    if is_atari(env_id):
        return 15
    check_env_id(env_id)
    env = gym.make(env_id)
    try:
        return int(env.metadata.get("render_fps") or 30)
    finally:
        env.close()


def check_env_id(env_id: str) -> None:
    """Raise a one-line `UserError` naming the closest registered ids if `env_id` is unknown."""
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
    suggestion = f"did you mean {', '.join(close)}? " if close else ""
    raise UserError(
        f"unknown environment id {env_id!r}; {suggestion}"
        f"built-in games: {', '.join(BUILTIN_GAMES)}; Atari games look like ALE/Pong-v5"
    )


def is_pixel_game(env_id: str) -> bool:
    """An ALE game or a built-in one: a game played from frames."""
    return is_atari(env_id) or env_id in BUILTIN_GAMES


def is_pixel_space(space: gym.Space) -> bool:
    """Whether observations are images: a 3-D uint8 Box, e.g. (84, 84, 3) or (4, 84, 84)."""
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


@dataclass(frozen=True)
class GameSpaces:
    """What a learner needs of a game as a run preprocesses it, read once per run."""

    observation_shape: tuple[int, ...]
    pixels: bool  # images (frame stacks), else vectors
    num_actions: int


def game_spaces(env_id: str, seed: int | None = None, **options: Any) -> GameSpaces:
    """The spaces of `env_id` made with `options` (as `make_vector_env` makes it)."""
    envs = make_vector_env(env_id, 1, seed=seed, **options)
    try:
        space = envs.single_observation_space
        return GameSpaces(
            tuple(space.shape), is_pixel_space(space), int(envs.single_action_space.n)
        )
    finally:
        envs.close()


def _seed(env: gym.Env, seed: int | None) -> None:
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
        env.observation_space.seed(seed)


def _atari_options(
    env_id: str, repeat_action_probability: float | None, max_episode_frames: int | None
) -> dict[str, Any]:
    """The ALE's own options for `env_id`: sticky actions and the episode cap in emulator
    frames, as the id registers them unless given (None)."""
    spec_kwargs = gym.spec(env_id).kwargs
    if repeat_action_probability is None:
        repeat_action_probability = spec_kwargs.get("repeat_action_probability", 0.0)
    if max_episode_frames is None:
        max_episode_frames = spec_kwargs.get("max_num_frames_per_episode", ATARI_EPISODE_FRAMES)
    check(
        0.0 <= repeat_action_probability <= 1.0,
        f"the repeat-action probability must lie in [0, 1], got {repeat_action_probability}",
    )
    require_positive(max_episode_frames=max_episode_frames)
    return {
        "repeat_action_probability": float(repeat_action_probability),
        "max_num_frames_per_episode": int(max_episode_frames),
    }


def _make_unrecorded(
    env_id: str,
    render_mode: str | None,
    frame_stack: int,
    frame_size: int = FRAME_SIZE,
    repeat_action_probability: float | None = None,
    max_episode_frames: int | None = None,
    noop_max: int = NOOP_MAX,
    fire_reset: bool = True,
    life_loss_clears_stack: bool = False,
) -> gym.Env:
    """The preprocessed env without episode statistics (vector envs record their own)."""
    check_env_id(env_id)
    require_positive(frame_stack=frame_stack, frame_size=frame_size)
    check(noop_max >= 0, f"--noop-max must be at least 0, got {noop_max}")
    pixel_game = is_pixel_game(env_id)
    if render_mode is None and pixel_game:
        render_mode = "rgb_array"  # free for these games: the frame exists anyway
    if is_atari(env_id):
        # Skipping is done by AtariPreprocessing (with max-pooling), so the ALE must not skip.
        options = _atari_options(env_id, repeat_action_probability, max_episode_frames)
        env = gym.make(env_id, frameskip=1, render_mode=render_mode, **options)
        env = AtariPreprocessing(
            env,
            noop_max=noop_max,
            frame_skip=4,
            screen_size=frame_size,
            grayscale_obs=True,
            terminal_on_life_loss=False,
            scale_obs=False,
        )
        if fire_reset and "FIRE" in env.unwrapped.get_action_meanings():
            env = FireReset(env)
        env = FrameStackObservation(env, frame_stack, padding_type="zero")
        return LifeLossClearsStack(env, frame_stack) if life_loss_clears_stack else env
    try:
        env = gym.make(env_id, render_mode=render_mode)
    except gym.error.DependencyNotInstalled as error:
        first_line = (str(error).strip().splitlines() or ["a dependency is missing"])[0]
        raise UserError(f"{env_id} cannot be made here: {first_line}") from None
    if not isinstance(env.action_space, gym.spaces.Discrete):
        env.close()
        raise UserError(
            f"{env_id} has {type(env.action_space).__name__} actions; DQN needs a game with a "
            "discrete set of actions (CartPole-v1, Acrobot-v1, MountainCar-v0, LunarLander-v3, "
            "an ALE game, a built-in game)"
        )
    if env_id in BUILTIN_GAMES:
        env = GrayscaleFrame(env)
        if frame_size != FRAME_SIZE:
            # Area averaging (OpenCV's INTER_AREA): the built-in games paint square cells of
            # several pixels, so one pixel per cell keeps all they show in far fewer pixels.
            env = gym.wrappers.ResizeObservation(env, (frame_size, frame_size))
        return FrameStackObservation(env, frame_stack, padding_type="zero")
    return env


def make_env(
    env_id: str,
    *,
    seed: int | None = None,
    render_mode: str | None = None,
    frame_stack: int = 4,
    frame_size: int = FRAME_SIZE,
    repeat_action_probability: float | None = None,
    max_episode_frames: int | None = None,
    noop_max: int = NOOP_MAX,
    fire_reset: bool = True,
    life_loss_clears_stack: bool = False,
) -> gym.Env:
    """One env, preprocessed exactly like training sees it (see the module docstring).

    With `seed`, the env is reset once with it (and its spaces seeded), so later plain `reset()`
    calls continue a reproducible sequence. For pixel games `render_mode=None` means "rgb_array",
    so `render()` always returns the game's own RGB frame: 210x160x3 for ALE games, 84x84x3 for
    the built-in games; "human" opens a window instead. For ALE games,
    `repeat_action_probability` (sticky actions) and `max_episode_frames` (the episode cap in
    emulator frames, 4 per agent step) override what the id registers (None keeps it: 0.25 and
    108,000 for `ALE/...-v5`, no sticky actions for `...NoFrameskip-v4`); `noop_max` (a random
    0 to `noop_max` no-op frames at each reset) and `fire_reset` (press FIRE at each reset, in
    games that have it) set how a game starts; `life_loss_clears_stack` zeroes the frames from
    before a lost life in the stacks after it (Dopamine's agents). Other games ignore all five.

    Example:
        >>> env = make_env("Playground/Catch-v0", seed=0)
        >>> env.reset()[0].shape
        (4, 84, 84)
    """
    env = RecordEpisodeStatistics(
        _make_unrecorded(
            env_id,
            render_mode,
            frame_stack,
            frame_size,
            repeat_action_probability,
            max_episode_frames,
            noop_max,
            fire_reset,
            life_loss_clears_stack,
        )
    )
    _seed(env, seed)
    return env


def ale_game_name(env_id: str) -> str:
    """The ROM name ale_py's vector env expects: "ALE/MsPacman-v5" -> "ms_pacman"."""
    return gym.spec(env_id).kwargs["game"]


def make_vector_env(
    env_id: str,
    num_envs: int,
    *,
    seed: int,
    frame_stack: int = 4,
    frame_size: int = FRAME_SIZE,
    repeat_action_probability: float | None = None,
    max_episode_frames: int | None = None,
    noop_max: int = NOOP_MAX,
    fire_reset: bool = True,
    life_loss_clears_stack: bool = False,
    asynchronous: bool = False,
) -> gym.vector.VectorEnv:
    """`num_envs` copies of `make_env(env_id)` stepped together, autoreset NEXT_STEP.

    ALE games use ale_py's C++ `AtariVectorEnv` (same preprocessing as `make_env`: 30 no-ops, 4
    frames per action max-pooled, FIRE at reset, zero-padded stack; no reward clipping, no
    life-loss ends; `info["lives"]` per env). Other ids use gymnasium's `SyncVectorEnv` (or
    `AsyncVectorEnv` with `asynchronous=True`) over the single-env preprocessing.

    A vector `RecordEpisodeStatistics` puts `info["episode"]["r"]`, `["l"]` and the mask
    `info["_episode"]` in the step where a game really ends. For `AtariVectorEnv` that is the full
    game score summed over all lives: with `episodic_life=False` the ALE only reports termination
    at game over, so a lost life neither ends nor splits the recorded episode (checked in
    tests/test_envs.py, where the return equals the sum of the step rewards and lives reach 0).

    `repeat_action_probability`, `max_episode_frames`, `noop_max`, `fire_reset` and
    `life_loss_clears_stack` are `make_env`'s (with the last, the `VectorLifeLossClearsStack`
    under the statistics wrapper holds in `lost` the lanes whose life the last step lost). The
    env is reset once with `seed` (sub-env i gets `seed + i`) and its action space seeded.
    """
    check_env_id(env_id)
    require_positive(num_envs=num_envs, frame_stack=frame_stack, frame_size=frame_size)
    check(noop_max >= 0, f"--noop-max must be at least 0, got {noop_max}")
    if is_atari(env_id):
        spec_kwargs = gym.spec(env_id).kwargs
        envs: gym.vector.VectorEnv = ale_py.vector_env.AtariVectorEnv(
            ale_game_name(env_id),
            num_envs,
            full_action_space=spec_kwargs.get("full_action_space", False),
            **_atari_options(env_id, repeat_action_probability, max_episode_frames),
            img_height=frame_size,
            img_width=frame_size,
            grayscale=True,
            stack_num=frame_stack,
            frameskip=4,
            maxpool=True,
            noop_max=noop_max,
            episodic_life=False,
            reward_clipping=False,
            use_fire_reset=fire_reset,
            autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP,
        )
        if life_loss_clears_stack:
            envs = VectorLifeLossClearsStack(envs, frame_stack)
    else:
        start = {"noop_max": noop_max, "fire_reset": fire_reset}
        env_functions: list[Callable[[], gym.Env]] = [
            partial(_make_unrecorded, env_id, None, frame_stack, frame_size, **start)
            for _ in range(num_envs)
        ]
        vector_class = gym.vector.AsyncVectorEnv if asynchronous else gym.vector.SyncVectorEnv
        envs = vector_class(env_functions, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    envs = VectorRecordEpisodeStatistics(envs)
    envs.reset(seed=seed)
    envs.action_space.seed(seed)
    return envs


def action_names(env: gym.Env | gym.vector.VectorEnv) -> list[str]:
    """Names of the discrete actions ("NOOP", "FIRE", ...) of a single or vector env.

    Falls back to "ACTION_0", "ACTION_1", ... when the game does not name its actions.
    """
    unwrapped = env.unwrapped
    if isinstance(unwrapped, ale_py.vector_env.AtariVectorEnv):
        return [action.name for action in unwrapped.ale.get_action_set()]
    if isinstance(unwrapped, gym.vector.SyncVectorEnv):
        unwrapped = unwrapped.envs[0].unwrapped
    elif isinstance(unwrapped, gym.vector.AsyncVectorEnv):
        # The sub-envs live in other processes; ask a throwaway copy built the same way.
        probe = unwrapped.env_fns[0]()
        try:
            return action_names(probe)
        finally:
            probe.close()
    if hasattr(unwrapped, "get_action_meanings"):
        return list(unwrapped.get_action_meanings())
    space = getattr(env, "single_action_space", env.action_space)
    if not isinstance(space, gym.spaces.Discrete):
        raise UserError(f"only discrete action spaces have action names, got {space}")
    return [f"ACTION_{index}" for index in range(int(space.n))]
