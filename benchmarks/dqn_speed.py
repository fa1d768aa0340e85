"""End-to-end DQN steps/s at CleanRL `dqn_atari.py`'s update (MSE, no double DQN, no clipping),
for side-by-side runs with it (docs/benchmarks.md says how the peer is run).

Prints the training-phase rate (charts/sps after learning starts, the part that dominates a
real run) and the overall rate (total steps / wall time, start-up included), as JSON.

    python -m benchmarks.dqn_speed --total-steps 3000 --learning-starts 1000 --device cpu
    python -m benchmarks.dqn_speed --compile --cuda-graph --device cuda --num-envs 8
"""

from __future__ import annotations

import argparse
import json
import time

from benchmarks.suite import dqn_training_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="BreakoutNoFrameskip-v4")
    parser.add_argument("--total-steps", type=int, default=3_000)
    parser.add_argument("--learning-starts", type=int, default=1_000)
    parser.add_argument("--buffer-size", type=int, default=10_000)
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--cuda-graph", action="store_true")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    args = parser.parse_args()

    started = time.perf_counter()
    training_sps = dqn_training_rate(
        env_id=args.env_id,
        total_steps=args.total_steps,
        learning_starts=args.learning_starts,
        buffer_size=args.buffer_size,
        num_envs=args.num_envs,
        loss="mse",
        double_dqn=False,
        max_grad_norm=0.0,
        device=args.device,
        compile=args.compile,
        cuda_graph=args.cuda_graph,
        precision=args.precision,
    )
    wall = time.perf_counter() - started
    print(
        json.dumps(
            {
                "env_id": args.env_id,
                "device": args.device,
                "compile": args.compile,
                "cuda_graph": args.cuda_graph,
                "num_envs": args.num_envs,
                "training_sps": round(training_sps, 1),
                "overall_sps": round(args.total_steps / wall, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
