"""Environments: ALE Atari games, the built-in pixel games, their wrappers and vector envs.

Importing this package registers the built-in games (`Playground/Catch-v0`, ...) and the ALE
games with gymnasium.
"""

from envs.builtin import BUILTIN_GAMES
from envs.factory import (
    GameSpaces,
    action_names,
    check_env_id,
    game_fps,
    game_spaces,
    is_atari,
    is_pixel_space,
    make_env,
    make_vector_env,
)

__all__ = [
    "BUILTIN_GAMES",
    "GameSpaces",
    "action_names",
    "check_env_id",
    "game_fps",
    "game_spaces",
    "is_atari",
    "is_pixel_space",
    "make_env",
    "make_vector_env",
]
