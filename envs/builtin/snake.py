"""Snake: steer a growing snake to the food without hitting a wall or itself.

The grid is 12 x 12 cells of 7 x 7 pixels. The snake starts three cells long in the middle,
heading right, and moves one cell per step. Eating the food scores +1 and grows the snake by one
cell; a new food appears on a random free cell. Running into a wall or the snake's own body ends
the episode (no penalty: the reward is the game score, the number of foods eaten). Filling the
whole board also ends it. Turning straight back is ignored. Register with a step limit, since a
snake can circle forever.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from envs.builtin.base import DIRECTION_STEPS, GridGame

HEAD_COLOR = (120, 255, 120)
BODY_COLOR = (0, 150, 0)
FOOD_COLOR = (255, 60, 60)

# (row, col) steps for UP, RIGHT, DOWN, LEFT; action 0 (NOOP) keeps the current heading.
DIRECTIONS = tuple(DIRECTION_STEPS[name] for name in ("UP", "RIGHT", "DOWN", "LEFT"))


class SnakeEnv(GridGame):
    """Classic Snake on a 12 x 12 grid. Actions: NOOP, UP, RIGHT, DOWN, LEFT."""

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 10}
    grid_rows = 12
    grid_cols = 12
    action_meanings = ("NOOP", "UP", "RIGHT", "DOWN", "LEFT")
    # The square board's eight symmetries: the rules (walls, the body, food on a uniformly random
    # free cell) hold in any mirror image or turn; only the start's place and heading do not,
    # and they are not part of a transition.
    symmetries = tuple(
        (mirror, turns) for mirror in (False, True) for turns in range(4) if mirror or turns
    )

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode)
        self.body: deque[tuple[int, int]] = deque()  # head first
        self.occupied = np.zeros((self.grid_rows, self.grid_cols), dtype=bool)
        self.heading = 1
        self.food = (0, 0)

    def _place_food(self) -> None:
        free = np.flatnonzero(~self.occupied)
        cell = int(free[self.np_random.integers(len(free))])
        self.food = divmod(cell, self.grid_cols)

    def _reset_game(self) -> None:
        row, col = self.grid_rows // 2, self.grid_cols // 2
        self.body = deque([(row, col), (row, col - 1), (row, col - 2)])
        self.occupied[:] = False
        self.background_layer[:] = self.background
        for cell in self.body:
            self._occupy(cell)
        self.heading = 1
        self._place_food()

    def _occupy(self, cell: tuple[int, int]) -> None:
        self.occupied[cell] = True
        self._fill(self.background_layer, *cell, BODY_COLOR)

    def _vacate(self, cell: tuple[int, int]) -> None:
        self.occupied[cell] = False
        self._fill(self.background_layer, *cell, self.background)

    def _info(self) -> dict[str, Any]:
        return {"length": len(self.body)}

    def _step_game(self, action: int) -> tuple[float, bool, dict[str, Any]]:
        if action != 0 and (action - 1 + 2) % 4 != self.heading:
            self.heading = action - 1
        step_row, step_col = DIRECTIONS[self.heading]
        head_row, head_col = self.body[0]
        head = (head_row + step_row, head_col + step_col)
        if not (0 <= head[0] < self.grid_rows and 0 <= head[1] < self.grid_cols):
            return 0.0, True, self._info()
        eats = head == self.food
        if not eats:
            self._vacate(self.body.pop())  # the tail moves away first
        if self.occupied[head]:
            return 0.0, True, self._info()
        self.body.appendleft(head)
        self._occupy(head)
        if not eats:
            return 0.0, False, self._info()
        if len(self.body) == self.grid_rows * self.grid_cols:
            return 1.0, True, self._info()
        self._place_food()
        return 1.0, False, self._info()

    def _draw(self, frame: np.ndarray) -> None:
        self._fill(frame, *self.food, FOOD_COLOR)
        self._fill(frame, *self.body[0], HEAD_COLOR)
