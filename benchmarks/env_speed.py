"""Environment steps per second with random actions, on one process.

Measures each built-in game through `envs.make_env` (grayscale + frame stack, as training sees
it) and raw (`gym.make`, the RGB frame only), ALE/Breakout-v5 through `envs.make_env`, and
ale_py's C++ vector env through `envs.make_vector_env` for several numbers of sub-envs (counted in
env steps: num_envs per vector step). Needs no torch.

    python -m benchmarks.env_speed --seconds 3 --json runs/env_speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import envs


def single_env_speed(env: gym.Env, seconds: float, seed: int = 0) -> float:
    """Env steps per second of `env` under uniformly random actions, resets included."""
    env.reset(seed=seed)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(4096)]
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for action in actions[:256]:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        steps += 256
        actions = actions[256:] + actions[:256]
    return steps / (time.perf_counter() - start)


def vector_env_speed(env: gym.vector.VectorEnv, seconds: float) -> float:
    """Env steps (summed over sub-envs) per second under random actions; autoreset included."""
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(256)]
    vector_steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for action in actions:
            env.step(action)
        vector_steps += len(actions)
    return vector_steps * env.num_envs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--vector-sizes", type=int, nargs="+", default=[1, 2, 4, 8], help="ALE vector env sizes"
    )
    arguments = parser.parse_args()

    rows: list[dict[str, object]] = []

    def record(env_id: str, setup: str, steps_per_second: float) -> None:
        rows.append({"env_id": env_id, "setup": setup, "steps_per_second": steps_per_second})
        print(f"{env_id:<24} {setup:<34} {steps_per_second:>10,.0f}", flush=True)

    print(f"{'env':<24} {'setup':<34} {'steps/s':>10}")
    for env_id in envs.BUILTIN_GAMES:
        record(
            env_id, "gym.make (RGB frame)", single_env_speed(gym.make(env_id), arguments.seconds)
        )
        record(
            env_id,
            "make_env (gray, stack 4)",
            single_env_speed(envs.make_env(env_id), arguments.seconds),
        )
    record(
        "ALE/Breakout-v5",
        "make_env (AtariPreprocessing)",
        single_env_speed(envs.make_env("ALE/Breakout-v5"), arguments.seconds),
    )
    for num_envs in arguments.vector_sizes:
        vector_env = envs.make_vector_env("ALE/Breakout-v5", num_envs, seed=0)
        record(
            "ALE/Breakout-v5",
            f"AtariVectorEnv num_envs={num_envs}",
            vector_env_speed(vector_env, arguments.seconds),
        )
        vector_env.close()
    vector_env = envs.make_vector_env("Playground/Catch-v0", 8, seed=0)
    record(
        "Playground/Catch-v0",
        "SyncVectorEnv num_envs=8",
        vector_env_speed(vector_env, arguments.seconds),
    )

    if arguments.json is not None:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        machine = {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "numpy": np.__version__,
        }
        arguments.json.write_text(
            json.dumps({"machine": machine, "results": rows}, indent=2) + "\n"
        )
        print(f"wrote {arguments.json}")


if __name__ == "__main__":
    main()
