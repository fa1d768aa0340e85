"""Shared machinery for the built-in pixel games: a coarse grid drawn into an 84x84 RGB frame.

Each game keeps its state on a small grid (a handful of cells across) and paints every cell as a
square block of pixels with numpy slicing, which keeps a step in the tens of microseconds.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

FRAME_SIZE = 84
"""Side of the square RGB frame every built-in game draws, in pixels."""

HUMAN_SCALE = 6
"""How many screen pixels one frame pixel becomes in the "human" window."""

Color = tuple[int, int, int]

DIRECTION_STEPS = {"UP": (-1, 0), "DOWN": (1, 0), "LEFT": (0, -1), "RIGHT": (0, 1)}
"""The (row, column) step of an action named for a direction."""


def transform_frame(frame: np.ndarray, mirror: bool, quarter_turns: int) -> np.ndarray:
    """A square frame (..., H, W) mirrored left-right when `mirror`, then turned by
    `quarter_turns` quarter turns counter-clockwise (`np.rot90`'s sense)."""
    if mirror:
        frame = np.flip(frame, axis=-1)
    return np.rot90(frame, quarter_turns, axes=(-2, -1))


def mapped_actions(
    action_meanings: tuple[str, ...], mirror: bool, quarter_turns: int
) -> tuple[int, ...]:
    """For each action, the action that makes the same move in the transformed game: an action
    named for a direction (UP, DOWN, LEFT, RIGHT) becomes the one named for where that
    direction turns to; any other (NOOP, FIRE) stays itself."""
    mapped = []
    for meaning in action_meanings:
        if meaning not in DIRECTION_STEPS:
            mapped.append(action_meanings.index(meaning))
            continue
        marker = np.zeros((3, 3), dtype=np.uint8)
        row, col = DIRECTION_STEPS[meaning]
        marker[1 + row, 1 + col] = 1
        new_row, new_col = np.argwhere(transform_frame(marker, mirror, quarter_turns))[0] - 1
        mapped.append(action_meanings.index(_name_of((int(new_row), int(new_col)))))
    return tuple(mapped)


def _name_of(step: tuple[int, int]) -> str:
    return next(name for name, direction in DIRECTION_STEPS.items() if direction == step)


class GridGame(gym.Env):
    """Base class: an RGB-frame game on a `grid_rows x grid_cols` grid of square cells.

    Subclasses set `grid_rows`, `grid_cols` (each must divide 84), `action_meanings`, and implement
    `_reset_game()`, `_step_game(action) -> (reward, terminated, info)` and `_draw(frame)`.
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 15}
    grid_rows: int = 12
    grid_cols: int = 12
    action_meanings: tuple[str, ...] = ("NOOP",)
    background: Color = (0, 0, 0)
    symmetries: tuple[tuple[bool, int], ...] = ()
    """The (mirror, quarter_turns) transforms of the frame (`transform_frame`) under which the
    game's rules hold, the identity left out: a transition seen mirrored or turned, its action
    mapped by `mapped_actions`, is one the game could have made. `--symmetry-augment` learns from
    them (as AlphaZero learnt Go from the board's eight symmetries)."""

    def __init__(self, render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        if FRAME_SIZE % self.grid_rows or FRAME_SIZE % self.grid_cols:
            raise ValueError(f"grid {self.grid_rows}x{self.grid_cols} must divide {FRAME_SIZE}")
        self.render_mode = render_mode
        self.cell_height = FRAME_SIZE // self.grid_rows
        self.cell_width = FRAME_SIZE // self.grid_cols
        self.observation_space = gym.spaces.Box(0, 255, (FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
        self.action_space = gym.spaces.Discrete(len(self.action_meanings))
        self._frame = np.zeros((FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
        # What does not move (or changes rarely, like bricks) is drawn here once and copied into
        # each frame, which is much cheaper than repainting it.
        self.background_layer = np.zeros_like(self._frame)
        self.background_layer[:] = self.background
        self._window: Any = None
        self._clock: Any = None

    # -- the game, written by subclasses -------------------------------------------------------

    def _reset_game(self) -> None:
        raise NotImplementedError

    def _step_game(self, action: int) -> tuple[float, bool, dict[str, Any]]:
        raise NotImplementedError

    def _draw(self, frame: np.ndarray) -> None:
        """Paint the moving pieces onto `frame`, which already holds `self.background_layer`."""
        raise NotImplementedError

    def _info(self) -> dict[str, Any]:
        return {}

    # -- gymnasium API --------------------------------------------------------------------------

    def get_action_meanings(self) -> list[str]:
        """Names of the discrete actions, in action-index order (like ALE's)."""
        return list(self.action_meanings)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._reset_game()
        observation = self._render_frame()
        if self.render_mode == "human":
            self._show(observation)
        return observation, self._info()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        # A plain range check: Discrete.contains costs more than a whole game step.
        if not 0 <= action < self.action_space.n or int(action) != action:
            raise ValueError(f"invalid action {action!r} for {self.action_space}")
        reward, terminated, info = self._step_game(int(action))
        observation = self._render_frame()
        if self.render_mode == "human":
            self._show(observation)
        return observation, float(reward), terminated, False, info

    def render(self) -> np.ndarray | None:
        """The current 84x84x3 frame for "rgb_array"; draws the window for "human"."""
        if self.render_mode == "rgb_array":
            return self._frame.copy()
        if self.render_mode == "human":
            self._show(self._frame)
        return None

    def close(self) -> None:
        if self._window is not None:
            import pygame

            pygame.display.quit()
            self._window = None
            self._clock = None

    # -- drawing helpers ------------------------------------------------------------------------

    def _render_frame(self) -> np.ndarray:
        frame = self._frame
        np.copyto(frame, self.background_layer)
        self._draw(frame)
        return frame.copy()

    def _fill(
        self,
        frame: np.ndarray,
        row: int,
        col: int,
        color: Color | np.ndarray,
        rows: int = 1,
        cols: int = 1,
    ) -> None:
        """Paint the block of `rows x cols` cells whose top-left cell is (`row`, `col`)."""
        top, left = row * self.cell_height, col * self.cell_width
        frame[top : top + rows * self.cell_height, left : left + cols * self.cell_width] = color

    def _show(self, frame: np.ndarray) -> None:
        # pygame is imported only here so that headless training never needs a display.
        import pygame

        size = (FRAME_SIZE * HUMAN_SCALE, FRAME_SIZE * HUMAN_SCALE)
        if self._window is None:
            pygame.display.init()
            pygame.display.set_caption(type(self).__name__)
            self._window = pygame.display.set_mode(size)
            self._clock = pygame.time.Clock()
        pygame.event.pump()
        surface = pygame.surfarray.make_surface(frame.swapaxes(0, 1))  # (W, H, 3) for pygame
        # transform.scale is nearest-neighbour, so the coarse cells stay crisp.
        self._window.blit(pygame.transform.scale(surface, size), (0, 0))
        pygame.display.flip()
        self._clock.tick(self.metadata["render_fps"])
