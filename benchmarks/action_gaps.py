"""How often bf16 changes a trained agent's greedy action: the same states (the agent's own
play) through its network in fp32, in bf16 autocast as it runs now (the head in fp32), and in
bf16 with the head in bf16 too (as before 2026-12-06).

    python -m benchmarks.action_gaps --checkpoint runs/atari100k/Breakout-s3/latest.pt

Prints, per arithmetic, the share of states whose best two actions tie and whose greedy action
differs from fp32's, and the spread of the fp32 action gaps (best minus second best).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from agents.checkpoint import config_from_checkpoint, load_dqn_checkpoint, network_from_checkpoint
from agents.config import env_options
from agents.heads import ValueHead
from agents.networks import QNetwork
from envs import make_vector_env
from playground.checkpoint import resolve_checkpoint


def q_values_bf16_head(network: QNetwork, observations: torch.Tensor) -> torch.Tensor:
    """Q-values with the encoder and the head both in bf16 (what autocast made of the network
    before its head ran in fp32)."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features = network.encoder(observations)
        if isinstance(network.head, ValueHead):
            outputs = network.head(features)
        else:
            outputs = network.head(features).unsqueeze(-1)
    return network.expected(outputs.float()).float()


def measure(checkpoint: str, steps: int, envs: int, seed: int) -> dict[str, float]:
    path = resolve_checkpoint(checkpoint)
    state = load_dqn_checkpoint(path)
    trained = config_from_checkpoint(state)
    network = network_from_checkpoint(state, path).eval()
    options = env_options(trained)
    vector = make_vector_env(trained.env_id, envs, seed=seed, **options)
    observations, _ = vector.reset(seed=seed)
    generator = np.random.default_rng(seed)
    ties = {"bf16": 0, "bf16 head": 0}
    differs = {"bf16": 0, "bf16 head": 0}
    gaps: list[float] = []
    total = 0
    try:
        with torch.no_grad():
            for _ in range(steps):
                batch = torch.as_tensor(observations)
                exact = network(batch).float()
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    now = network(batch).float()
                for name, values in (
                    ("bf16", now),
                    ("bf16 head", q_values_bf16_head(network, batch)),
                ):
                    best = values.max(dim=1, keepdim=True).values
                    ties[name] += int(((values == best).sum(dim=1) > 1).sum())
                    differs[name] += int((values.argmax(dim=1) != exact.argmax(dim=1)).sum())
                ordered = exact.sort(dim=1, descending=True).values
                gaps += (ordered[:, 0] - ordered[:, 1]).tolist()
                total += len(exact)
                actions = exact.argmax(dim=1).numpy()
                explore = generator.random(len(actions)) < 0.05
                actions[explore] = generator.integers(0, exact.shape[1], int(explore.sum()))
                observations, *_ = vector.step(actions)
    finally:
        vector.close()
    result = {f"{name}: ties": ties[name] / total for name in ties}
    result |= {f"{name}: greedy action differs": differs[name] / total for name in differs}
    result |= {
        "gap median": float(np.median(gaps)),
        "gap 10th percentile": float(np.percentile(gaps, 10)),
    }
    result["states"] = float(total)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a DQN checkpoint or run folder")
    parser.add_argument("--steps", type=int, default=400, help="steps of every env")
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = measure(args.checkpoint, args.steps, args.envs, args.seed)
    for name, value in result.items():
        shown = (
            f"{value:.1%}" if ":" in name else f"{value:.4f}" if "gap" in name else f"{value:,.0f}"
        )
        print(f"{name}: {shown}")


if __name__ == "__main__":
    main()
