"""Pong against a scripted opponent that reacts a little too slowly to be unbeatable.

The grid is 21 x 21 cells of 4 x 4 pixels. The agent's paddle (three cells tall) is on the right,
the opponent's on the left; the ball moves one column per step. Where the ball meets a paddle sets
its new vertical heading (top cell: up, middle: level, bottom: down). Each step the opponent moves
one cell toward the ball's row only with probability `opponent_speed`, so angled shots get past
it. Every point is served toward the agent. A point won scores +1, a point lost -1; the game
ends when either side reaches `points_to_win` (5 by default), so the episode return is the point
difference: about -4.7 for random play, about +4 for a paddle that simply follows the ball.
Register with a step limit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.builtin.base import GridGame

AGENT_COLOR = (92, 186, 92)
OPPONENT_COLOR = (213, 130, 74)
BALL_COLOR = (236, 236, 236)
NET_COLOR = (60, 60, 60)
PADDLE_HEIGHT = 3


class PongEnv(GridGame):
    """Pong on a 21 x 21 grid; the agent plays the right paddle. Actions: NOOP, UP, DOWN."""

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 20}
    grid_rows = 21
    grid_cols = 21
    action_meanings = ("NOOP", "UP", "DOWN")

    def __init__(
        self,
        render_mode: str | None = None,
        points_to_win: int = 5,
        opponent_speed: float = 0.6,
    ) -> None:
        super().__init__(render_mode)
        if points_to_win < 1:
            raise ValueError(f"points_to_win must be at least 1, got {points_to_win}")
        if not 0.0 <= opponent_speed <= 1.0:
            raise ValueError(f"opponent_speed must be in [0, 1], got {opponent_speed}")
        self.points_to_win = points_to_win
        self.opponent_speed = opponent_speed
        self.agent_col = self.grid_cols - 2
        self.opponent_col = 1
        self.agent_top = self.opponent_top = (self.grid_rows - PADDLE_HEIGHT) // 2
        self.ball_row, self.ball_col = self.grid_rows // 2, self.grid_cols // 2
        self.ball_row_step, self.ball_col_step = 1, 1
        self.agent_points = self.opponent_points = 0
        middle = (self.grid_cols // 2) * self.cell_width + self.cell_width // 2
        self.background_layer[::8, middle] = NET_COLOR

    def _serve(self) -> None:
        # Every point is served toward the agent from a random row, so the agent has to return
        # the ball before it can score; a random agent loses almost every point.
        self.ball_row = int(self.np_random.integers(PADDLE_HEIGHT, self.grid_rows - PADDLE_HEIGHT))
        self.ball_col = self.grid_cols // 2
        self.ball_row_step = int(self.np_random.choice((-1, 1)))
        self.ball_col_step = 1

    def _reset_game(self) -> None:
        self.agent_top = self.opponent_top = (self.grid_rows - PADDLE_HEIGHT) // 2
        self.agent_points = self.opponent_points = 0
        self._serve()

    def _info(self) -> dict[str, Any]:
        return {"agent_points": self.agent_points, "opponent_points": self.opponent_points}

    def _move_paddles(self, action: int) -> None:
        lowest_top = self.grid_rows - PADDLE_HEIGHT
        self.agent_top = min(max(self.agent_top + (0, -1, 1)[action], 0), lowest_top)
        if self.np_random.random() < self.opponent_speed:
            centre = self.opponent_top + PADDLE_HEIGHT // 2
            move = int(np.sign(self.ball_row - centre))
            self.opponent_top = min(max(self.opponent_top + move, 0), lowest_top)

    def _step_game(self, action: int) -> tuple[float, bool, dict[str, Any]]:
        self._move_paddles(action)
        row_step, col_step = self.ball_row_step, self.ball_col_step
        if not 0 <= self.ball_row + row_step < self.grid_rows:
            row_step = -row_step
        next_row, next_col = self.ball_row + row_step, self.ball_col + col_step
        reward = 0.0
        paddle_top = None
        if next_col == self.agent_col:
            paddle_top = self.agent_top
        elif next_col == self.opponent_col:
            paddle_top = self.opponent_top
        if paddle_top is not None and 0 <= next_row - paddle_top < PADDLE_HEIGHT:
            # Returned: the ball turns around where it is; the hit cell sets the new angle.
            row_step, col_step = next_row - paddle_top - 1, -col_step
        elif next_col in (0, self.grid_cols - 1):
            if next_col == 0:
                self.agent_points += 1
                reward = 1.0
            else:
                self.opponent_points += 1
                reward = -1.0
            self._serve()
            terminated = max(self.agent_points, self.opponent_points) >= self.points_to_win
            return reward, terminated, self._info()
        else:
            self.ball_row, self.ball_col = next_row, next_col
        self.ball_row_step, self.ball_col_step = row_step, col_step
        return reward, False, self._info()

    def _draw(self, frame: np.ndarray) -> None:
        self._fill(frame, self.agent_top, self.agent_col, AGENT_COLOR, rows=PADDLE_HEIGHT)
        self._fill(frame, self.opponent_top, self.opponent_col, OPPONENT_COLOR, rows=PADDLE_HEIGHT)
        self._fill(frame, self.ball_row, self.ball_col, BALL_COLOR)
