"""Whether SPR's projections stay apart: train presets side by side for a few thousand steps,
then project the same frames of the game (a random policy's, spaced apart) through each run's
network and report how far apart the projections of different frames point.

    python -m benchmarks.spr_collapse --presets atari-100k-spr "atari-100k-spr: --renormalize" \
        --env-id ALE/Pong-v5 --total-steps 3000

SPR's loss is minus the cosine between a predicted projection and the target's projection of
the frame actually seen. If every frame projects to (nearly) one direction, that loss sits at
its floor while predicting nothing: a collapse. Reported per run, over the frames' projections:
the mean pairwise cosine (1 = collapsed), the same after removing their mean (how different
frames differ, independent of the shared part), and the effective rank of the centred
projections (Roy and Vetterli's exp-entropy of the singular values; 1 = one direction left).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.checkpoint import (
    build_from_spec,
    load_dqn_checkpoint,
    network_from_checkpoint,
    network_spec,
)
from agents.presets import PRESETS
from agents.spr import projection
from benchmarks import preset_speed
from benchmarks.preset_speed import preset_and_flags
from envs.factory import make_env


def command(entry: str, args: argparse.Namespace, runs_dir: str, run_name: str) -> list[str]:
    """preset_speed's train-dqn command (no evaluations, no replay saved; a run writes its
    latest.pt at its end), with the probe's seed."""
    return [*preset_speed.command(entry, args, runs_dir, run_name), "--seed", str(args.seed)]


def game_frames(env_id: str, count: int, spacing: int, seed: int) -> torch.Tensor:
    """`count` observations (stacked frames, uint8) of a random policy, `spacing` steps apart,
    preprocessed as training sees them (no sticky actions, the protocol's)."""
    env = make_env(env_id, seed=seed, repeat_action_probability=0.0)
    env.action_space.seed(seed)
    observation, _ = env.reset()
    frames = []
    step = 0
    while len(frames) < count:
        observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
        step += 1
        if step % spacing == 0:
            frames.append(torch.as_tensor(np.asarray(observation)))
        if terminated or truncated:
            observation, _ = env.reset()
    env.close()
    return torch.stack(frames)


def spread(network: torch.nn.Module, frames: torch.Tensor) -> dict[str, float]:
    """How far apart the projections of different frames point (see the module docstring)."""
    with torch.no_grad():
        return spread_of(projection(network)(network.latent(frames).flatten(1)).float())


def spread_of(projected: torch.Tensor) -> dict[str, float]:
    """Of vectors (N, F): their mean pairwise cosine, the mean absolute pairwise cosine once
    their mean is removed, the effective rank of the centred vectors (the exponential of the
    entropy of their normalised singular values), and the norm of the mean over the mean norm."""
    unit = torch.nn.functional.normalize(projected, dim=1)
    off_diagonal = ~torch.eye(len(projected), dtype=torch.bool)
    centred = projected - projected.mean(dim=0)
    centred_unit = torch.nn.functional.normalize(centred, dim=1)
    singular = torch.linalg.svdvals(centred)
    weights = singular / singular.sum()
    entropy = -(weights * torch.log(weights.clamp_min(1e-12))).sum()
    return {
        "pairwise_cosine": float((unit @ unit.T)[off_diagonal].mean()),
        "centred_abs_cosine": float((centred_unit @ centred_unit.T).abs()[off_diagonal].mean()),
        "effective_rank": float(torch.exp(entropy)),
        "mean_norm_share": float(projected.mean(dim=0).norm() / projected.norm(dim=1).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["atari-100k-spr"])
    parser.add_argument("--env-id", default="ALE/Pong-v5")
    parser.add_argument("--total-steps", type=int, default=3_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--spacing", type=int, default=25, help="agent steps between frames")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--runs-dir", default="", help="keep the runs there (default: a temp dir)")
    parser.add_argument("--json-path", type=Path, default=None)
    args = parser.parse_args()
    unknown = [e for e in args.presets if preset_and_flags(e)[0] not in PRESETS]
    if unknown:
        parser.error(f"unknown preset(s): {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    frames = game_frames(args.env_id, args.frames, args.spacing, args.seed + 1000)
    with tempfile.TemporaryDirectory() as scratch:
        runs_dir = args.runs_dir or scratch
        environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        processes = [
            subprocess.Popen(command(entry, args, runs_dir, f"run{i}"), env=environment)
            for i, entry in enumerate(args.presets)
        ]
        if any(process.wait() for process in processes):
            sys.exit("a training run failed; see its output above")
        results: dict[str, Any] = {}
        for i, entry in enumerate(args.presets):
            checkpoint = load_dqn_checkpoint(Path(runs_dir) / f"run{i}" / "latest.pt")
            torch.manual_seed(args.seed)
            results[f"{entry} (initialised)"] = spread(
                build_from_spec(network_spec(checkpoint)).eval(), frames
            )
            results[entry] = spread(network_from_checkpoint(checkpoint), frames)
    print(f"{args.env_id}, {args.frames} frames {args.spacing} steps apart, after "
          f"{args.total_steps:,} steps, seed {args.seed}:")  # fmt: skip
    print("| run | pairwise cosine | centred abs cosine | effective rank | mean's share |")
    print("|---|---|---|---|---|")
    for entry, row in results.items():
        print(
            f"| {entry} | {row['pairwise_cosine']:.4f} | {row['centred_abs_cosine']:.3f} | "
            f"{row['effective_rank']:.1f} | {row['mean_norm_share']:.3f} |"
        )
    if args.json_path:
        args.json_path.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
