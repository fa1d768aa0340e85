"""What a player that knows the game's rules scores in `Playground/Breakout-v0`: the ceiling a
learned policy is measured against.

While the ball falls, the player tries every paddle position on a copy of the game (the game's
own `_step_game`, so the rules are exactly the game's), keeps the one that knocks out the next
brick soonest without losing the ball (or, if none does within 80 steps, the nearest one that
keeps it), and moves there. It plans one bounce ahead only, so it is a floor for what the game
allows, not the best play.

    python -m benchmarks.breakout_ceiling --games 20

Used to find that, before the ball bounced off brick faces, a diagonal ball stayed on one colour
of a checkerboard for a whole life (row + column of one parity), so this player stopped at 21 to
24 bricks with 12 of one colour left in rows 2 and 4 (docs/learning.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np

from envs.builtin import BreakoutEnv

LOOKAHEAD = 80
"""Steps simulated per candidate paddle position."""


def move_towards(env: BreakoutEnv, target_left: int) -> int:
    """The action (NOOP, LEFT, RIGHT) that brings the paddle's left cell towards `target_left`."""
    if target_left == env.paddle_left:
        return 0
    return 1 if target_left < env.paddle_left else 2


def plan(env: BreakoutEnv) -> int:
    """The paddle position (its left cell) that scores the next brick soonest."""
    best = (float("inf"), env.paddle_left)
    for target in range(env.grid_cols - 2):
        game = copy.deepcopy(env)
        lives = game.lives
        for step in range(LOOKAHEAD):
            reward, terminated, _ = game._step_game(move_towards(game, target))
            if reward:
                best = min(best, (step, target))
                break
            if terminated or game.lives < lives:
                break
        else:  # kept the ball without scoring: better than losing it
            best = min(best, (LOOKAHEAD + abs(target - env.paddle_left), target))
    return best[1]


def play(seed: int, max_steps: int) -> tuple[int, int, int]:
    """One game: (bricks, steps, lives left)."""
    env = BreakoutEnv()
    env.reset(seed=seed)
    target, score = env.paddle_left, 0
    for step in range(1, max_steps + 1):
        if env.ball_row_step == 1:  # falling: where should the paddle be?
            target = plan(env)
        _, reward, terminated, _, _ = env.step(move_towards(env, target))
        score += int(reward)
        if terminated:
            return score, step, env.lives
    return score, max_steps, env.lives


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", type=int, default=20)
    parser.add_argument("--max-steps", type=int, default=3_000, help="the game's step limit")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    start = time.perf_counter()
    games = [play(seed, args.max_steps) for seed in range(args.games)]
    scores = [score for score, _, _ in games]
    print(
        f"lookahead player, {args.games} games: mean {np.mean(scores):.1f} of 36 bricks, "
        f"min {min(scores)}, max {max(scores)}, {sum(s == 36 for s in scores)} cleared "
        f"({time.perf_counter() - start:.0f} s)"
    )
    print("games (bricks, steps, lives left):", sorted(games))
    if args.json is not None:
        args.json.write_text(json.dumps({"games": games, "mean": float(np.mean(scores))}) + "\n")


if __name__ == "__main__":
    main()
