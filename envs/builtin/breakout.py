"""Breakout, small: bounce the ball off the paddle to clear three rows of bricks.

The grid is 12 x 12 cells of 7 x 7 pixels: three rows of 12 bricks near the top and a three-cell
paddle in the bottom row. The ball moves one cell per step in both directions; where it meets the
paddle sets its new heading (left third: up-left, middle: straight up, right third: up-right), so
every column can be reached. The ball bounces off the first brick on its way: the face above
(or below) it, then the side face, then the corner it heads for. Each brick scores +1. Missing the ball costs a life (3 in all, shown
in `info["lives"]`); the episode ends with the last life or the last brick. There is no FIRE: the
ball is served automatically. Register with a step limit, since a ball can loop without hitting
bricks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.builtin.base import GridGame

PADDLE_COLOR = (200, 72, 72)
BALL_COLOR = (255, 255, 255)
BRICK_COLORS = ((255, 200, 60), (60, 200, 255), (120, 255, 120))  # top row first
BRICK_ROWS = (2, 3, 4)
PADDLE_WIDTH = 3
SERVE_ROW = 6
LIVES = 3


class BreakoutEnv(GridGame):
    """A small Breakout on a 12 x 12 grid. Actions: NOOP, LEFT, RIGHT."""

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 15}
    grid_rows = 12
    grid_cols = 12
    action_meanings = ("NOOP", "LEFT", "RIGHT")

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode)
        self.paddle_row = self.grid_rows - 1
        self.bricks = np.zeros((self.grid_rows, self.grid_cols), dtype=bool)
        self.paddle_left = 0
        self.ball_row, self.ball_col = SERVE_ROW, 0
        self.ball_row_step, self.ball_col_step = 1, 1
        self.lives = LIVES

    def _serve(self) -> None:
        self.ball_row = SERVE_ROW
        self.ball_col = int(self.np_random.integers(self.grid_cols))
        self.ball_row_step = 1
        self.ball_col_step = int(self.np_random.choice((-1, 1)))

    def _reset_game(self) -> None:
        self.bricks[:] = False
        self.bricks[list(BRICK_ROWS)] = True
        self.background_layer[:] = self.background
        for row, color in zip(BRICK_ROWS, BRICK_COLORS, strict=True):
            self._fill(self.background_layer, row, 0, color, cols=self.grid_cols)
            self.background_layer[(row + 1) * self.cell_height - 1] = 0  # seam between rows
        self.paddle_left = (self.grid_cols - PADDLE_WIDTH) // 2
        self.lives = LIVES
        self._serve()

    def _info(self) -> dict[str, Any]:
        return {"lives": self.lives}

    def _step_game(self, action: int) -> tuple[float, bool, dict[str, Any]]:
        move = (0, -1, 1)[action]
        self.paddle_left = min(max(self.paddle_left + move, 0), self.grid_cols - PADDLE_WIDTH)

        row_step, col_step = self.ball_row_step, self.ball_col_step
        if not 0 <= self.ball_col + col_step < self.grid_cols:
            col_step = -col_step
        if self.ball_row + row_step < 0:
            row_step = -row_step
        next_row, next_col = self.ball_row + row_step, self.ball_col + col_step
        reward, terminated = 0.0, False
        brick = self._brick_hit(next_row, next_col, col_step)
        if brick is not None:
            # The ball knocks the brick out and bounces back, staying where it is this step:
            # off a brick's top or bottom face or its corner it turns back vertically, off a
            # side face horizontally.
            brick_row, brick_col = brick
            self.bricks[brick_row, brick_col] = False
            self._fill(self.background_layer, brick_row, brick_col, self.background)
            reward = 1.0
            if brick_row == self.ball_row:
                col_step = -col_step
            else:
                row_step = -row_step
            terminated = not self.bricks.any()
        elif next_row == self.paddle_row:
            offset = next_col - self.paddle_left
            if 0 <= offset < PADDLE_WIDTH:
                row_step, col_step = -1, offset - 1
            else:
                self.lives -= 1
                terminated = self.lives == 0
                if not terminated:
                    self._serve()
                return reward, terminated, self._info()
        else:
            self.ball_row, self.ball_col = next_row, next_col
        self.ball_row_step, self.ball_col_step = row_step, col_step
        return reward, terminated, self._info()

    def _brick_hit(self, next_row: int, next_col: int, col_step: int) -> tuple[int, int] | None:
        """The brick the ball runs into on its way to (next_row, next_col), if any: a face
        before a corner, as a ball that moves one cell across and one down (or up) passes the
        brick beside its path first. Checking only the corner cell would keep a diagonal ball
        on one colour of a checkerboard for a whole life (it only ever enters cells whose row +
        column has one parity), leaving the other colour's bricks of rows 2 and 4 unreachable."""
        candidates = [(next_row, self.ball_col)]  # the top or bottom face
        if col_step:
            candidates += [(self.ball_row, next_col), (next_row, next_col)]  # side face, corner
        for row, col in candidates:
            if self.bricks[row, col]:
                return row, col
        return None

    def _draw(self, frame: np.ndarray) -> None:
        self._fill(frame, self.paddle_row, self.paddle_left, PADDLE_COLOR, cols=PADDLE_WIDTH)
        self._fill(frame, self.ball_row, self.ball_col, BALL_COLOR)
