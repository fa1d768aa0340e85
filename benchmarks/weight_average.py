"""Do a run's weights play better averaged? Scores DQN checkpoints of one run alone and the
plain mean of the last k of them (ordered by step), every one on the same games (the same
starts, the same epsilon draws), so the differences are the weights'.

    python -m benchmarks.weight_average snaps/*.pt --games 40 --last 1 2 3 5
    python -m benchmarks.weight_average snaps/*.pt --games 40 --each   # every checkpoint alone too

A run keeps only its latest.pt; keep copies as it rewrites it (every --checkpoint-every steps)
to have several. This is how `train-dqn --policy-ema` was judged before it was measured in
runs (docs/atari100k.md): the mean of the last few checkpoints stands in for the running
average the flag keeps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.checkpoint import (
    POLICY_WEIGHTS,
    config_from_checkpoint,
    load_dqn_checkpoint,
    network_from_checkpoint,
    network_spec,
)
from agents.config import env_options
from agents.rollout import score_games
from playground.errors import UserError, check


def mean_weights(checkpoints: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """The mean of the online networks' floating-point tensors; the others (counters) are the
    last checkpoint's."""
    last = checkpoints[-1]["q_network"]
    return {
        name: (
            torch.stack([c["q_network"][name].float() for c in checkpoints]).mean(dim=0)
            if value.is_floating_point()
            else value
        )
        for name, value in last.items()
    }


def load_run(paths: list[str]) -> list[dict[str, Any]]:
    """The checkpoints, ordered by step; refused unless they are one network of one game."""
    checkpoints = sorted((load_dqn_checkpoint(path) for path in paths), key=lambda c: c["step"])
    first = checkpoints[0]
    for checkpoint in checkpoints[1:]:
        check(
            network_spec(checkpoint) == network_spec(first)
            and checkpoint["config"]["env_id"] == first["config"]["env_id"],
            "the checkpoints must be of one network on one game",
        )
    return checkpoints


def score(
    checkpoint: dict[str, Any], weights: dict[str, torch.Tensor], games: int, seed: int, envs: int
) -> list[float]:
    """Scores of `games` full games played by `weights` in the checkpoint's network, with the
    run's own game settings and evaluation epsilon."""
    network = network_from_checkpoint({**checkpoint, "q_network": weights, POLICY_WEIGHTS: None})
    cfg = config_from_checkpoint(checkpoint)
    return score_games(
        network, cfg.env_id, games, epsilon=cfg.eval_epsilon, seed=seed,
        env_options=env_options(cfg), num_envs=envs,
    ).scores  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="DQN checkpoints of one run")
    parser.add_argument("--games", type=int, default=40)
    parser.add_argument("--last", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--each", action="store_true", help="score every checkpoint alone too")
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json-path", default="")
    args = parser.parse_args()
    try:
        check(args.games > 0 and args.envs > 0, "--games and --envs must be positive")
        checkpoints = load_run(args.checkpoints)
        check(
            all(0 < k <= len(checkpoints) for k in args.last),
            f"--last takes 1 to {len(checkpoints)} (the checkpoints given)",
        )
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
    torch.set_num_threads(args.threads)
    groups = [[c] for c in checkpoints] if args.each else []
    groups += [checkpoints[-k:] for k in args.last if not (args.each and k == 1)]
    rows = []
    for group in groups:
        scores = score(group[-1], mean_weights(group), args.games, args.seed, args.envs)
        steps = [c["step"] for c in group]
        rows.append({"steps": steps, "mean": float(np.mean(scores)), "std": float(np.std(scores)),
                     "scores": scores})  # fmt: skip
        label = (
            f"step {steps[0]:,}"
            if len(steps) == 1
            else f"mean of steps {steps[0]:,}-{steps[-1]:,} ({len(steps)})"
        )
        print(f"{label:40s} {np.mean(scores):8.2f} +- {np.std(scores):.2f}", flush=True)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"games": args.games, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
