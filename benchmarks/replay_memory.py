"""Replay buffer memory and speed at Atari size (4 x 84 x 84 uint8 frame stacks).

For each number of envs: allocates a `--capacity`-transition buffer, fills every slot through
`ReplayBuffer.add` with random frames (zero-padded stacks, episodes ending at random), and
reports resident memory (VmRSS) before and after, storage bytes per transition, add() speed
and sample() speed at batch 32. Everything on the CPU.

    python -m benchmarks.replay_memory                     # 1,000,000 transitions, ~7.1 GB
    python -m benchmarks.replay_memory --capacity 100000 --num-envs 1 8 --json runs/replay.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from agents.replay import ReplayBuffer

OBSERVATION_SHAPE = (4, 84, 84)
NUM_ACTIONS = 18


def resident_bytes() -> int:
    """This process's resident memory (VmRSS in /proc/self/status), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def fill(replay: ReplayBuffer, steps: int, seed: int = 0) -> float:
    """Add `steps` vector steps of random frames; returns the seconds add() took in all."""
    rng = np.random.default_rng(seed)
    num_envs = replay.num_envs
    frames = rng.integers(0, 256, (256, *OBSERVATION_SHAPE[1:]), dtype=np.uint8)
    observations = np.zeros((num_envs, *OBSERVATION_SHAPE), dtype=np.uint8)  # zero-padded stacks
    replay.start(observations)
    # Pre-drawn per-step data, so the timing is add() and not the random number generator.
    block = 4096
    spent = 0.0
    for block_start in range(0, steps, block):
        count = min(block, steps - block_start)
        actions = rng.integers(0, NUM_ACTIONS, (count, num_envs))
        rewards = rng.integers(-1, 2, (count, num_envs)).astype(np.float32)
        ends = rng.random((count, num_envs)) < 1 / 1000  # episodes of ~1000 steps
        terminated = ends & (rng.random((count, num_envs)) < 0.8)
        truncated = ends & ~terminated
        lives = rng.random((count, num_envs)) < 1 / 300
        pick = rng.integers(0, len(frames), (count, num_envs))
        for step in range(count):
            observations[:, -1] = frames[pick[step]]
            start = time.perf_counter()
            replay.add(
                actions[step],
                rewards[step],
                terminated[step],
                truncated[step],
                observations,
                lives[step],
            )
            spent += time.perf_counter() - start
    return spent


def sample_rate(replay: ReplayBuffer, batch_size: int, batches: int) -> float:
    """Batches per second from sample()."""
    generator = torch.Generator().manual_seed(0)
    replay.sample(batch_size, generator)
    start = time.perf_counter()
    for _ in range(batches):
        replay.sample(batch_size, generator)
    return batches / (time.perf_counter() - start)


def measure(capacity: int, num_envs: int, batch_size: int, batches: int) -> dict[str, float]:
    gc.collect()
    before = resident_bytes()
    start = time.perf_counter()
    replay = ReplayBuffer(
        capacity, num_envs, OBSERVATION_SHAPE, 4, num_actions=NUM_ACTIONS, n_step=3, gamma=0.99
    )
    allocate_seconds = time.perf_counter() - start
    allocated = resident_bytes()
    steps = replay.slots_per_env + 1  # one frame into every slot, the oldest overwritten once
    print(f"  filling {num_envs} env(s) x {steps:,} steps ...", flush=True)
    add_seconds = fill(replay, steps)
    full = resident_bytes()
    start = time.perf_counter()
    valid = len(replay)  # the first len() after the fill checks every stored position
    validity_seconds = time.perf_counter() - start
    result = {
        "capacity": replay.capacity,
        "num_envs": num_envs,
        "storage_bytes": replay.nbytes,
        "bytes_per_transition": replay.nbytes / replay.capacity,
        "rss_before_gb": before / 1e9,
        "rss_allocated_gb": allocated / 1e9,
        "rss_full_gb": full / 1e9,
        "rss_bytes_per_transition": (full - before) / replay.capacity,
        "allocate_seconds": allocate_seconds,
        "add_vector_steps_per_second": steps / add_seconds,
        "add_frames_per_second": steps * num_envs / add_seconds,
        "valid_transitions": valid,
        "first_len_seconds": validity_seconds,
        "samples_per_second": sample_rate(replay, batch_size, batches),
        "batch_size": batch_size,
    }
    del replay
    gc.collect()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=1_000_000, help="transitions")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 8], help="envs to try")
    parser.add_argument("--batch-size", type=int, default=32, help="sample() batch size")
    parser.add_argument("--batches", type=int, default=2000, help="sample() calls timed")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(
        f"replay memory benchmark: {args.capacity:,} transitions of {OBSERVATION_SHAPE} uint8,"
        f" torch {torch.__version__}, {torch.get_num_threads()} thread(s), {platform.processor()}"
    )
    results = []
    for num_envs in args.num_envs:
        result = measure(args.capacity, num_envs, args.batch_size, args.batches)
        results.append(result)
        print(
            f"envs={num_envs}: {result['bytes_per_transition']:.1f} storage bytes/transition"
            f" ({result['storage_bytes'] / 1e9:.3f} GB);"
            f" RSS {result['rss_before_gb']:.2f} GB before,"
            f" {result['rss_allocated_gb']:.2f} GB allocated,"
            f" {result['rss_full_gb']:.2f} GB full"
            f" ({result['rss_bytes_per_transition']:.0f} B/transition resident)\n"
            f"  add: {result['add_vector_steps_per_second']:,.0f} vector steps/s"
            f" ({result['add_frames_per_second']:,.0f} frames/s);"
            f" first len(): {result['first_len_seconds']:.2f} s"
            f" ({result['valid_transitions']:,} valid);"
            f" sample: {result['samples_per_second']:,.0f} batches/s at batch {args.batch_size}",
            flush=True,
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
