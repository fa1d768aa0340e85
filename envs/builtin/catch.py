"""Catch: the easiest built-in game. A ball falls; move the paddle under it.

The ball appears in the top row at a random column and falls one row per step. The paddle sits in
the bottom row and moves one column left or right (or stays). When the ball reaches the bottom row
the reward is +1 if the paddle is under it and -1 otherwise. An episode is `num_balls` balls (one by
default), so an episode is 11 steps and the episode return is the number caught minus the number
missed. The grid is 12 x 12 cells of 7 x 7 pixels; the paddle can always reach the ball in time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.builtin.base import GridGame

BALL_COLOR = (255, 255, 255)
PADDLE_COLOR = (60, 160, 255)


class CatchEnv(GridGame):
    """Catch a falling ball with a one-cell paddle. Actions: NOOP, LEFT, RIGHT.

    Example:
        >>> import gymnasium as gym, envs
        >>> env = gym.make("Playground/Catch-v0")
        >>> observation, info = env.reset(seed=0)
        >>> observation.shape
        (84, 84, 3)
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 10}
    grid_rows = 12
    grid_cols = 12
    action_meanings = ("NOOP", "LEFT", "RIGHT")

    def __init__(self, render_mode: str | None = None, num_balls: int = 1) -> None:
        super().__init__(render_mode)
        if num_balls < 1:
            raise ValueError(f"num_balls must be at least 1, got {num_balls}")
        self.num_balls = num_balls
        self.paddle_row = self.grid_rows - 1
        self.ball_row = 0
        self.ball_col = 0
        self.paddle_col = self.grid_cols // 2
        self.balls_left = num_balls

    def _new_ball(self) -> None:
        self.ball_row = 0
        self.ball_col = int(self.np_random.integers(self.grid_cols))

    def _reset_game(self) -> None:
        self.paddle_col = self.grid_cols // 2
        self.balls_left = self.num_balls
        self._new_ball()

    def _step_game(self, action: int) -> tuple[float, bool, dict[str, Any]]:
        move = (0, -1, 1)[action]
        self.paddle_col = min(max(self.paddle_col + move, 0), self.grid_cols - 1)
        self.ball_row += 1
        if self.ball_row < self.paddle_row:
            return 0.0, False, {}
        reward = 1.0 if self.ball_col == self.paddle_col else -1.0
        self.balls_left -= 1
        terminated = self.balls_left == 0
        if not terminated:
            self._new_ball()
        return reward, terminated, {}

    def _draw(self, frame: np.ndarray) -> None:
        self._fill(frame, self.paddle_row, self.paddle_col, PADDLE_COLOR)
        self._fill(frame, self.ball_row, self.ball_col, BALL_COLOR)
