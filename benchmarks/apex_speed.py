"""Ape-X on this machine: env steps/s and learner updates/s with 1, 2 and 4 Ray actors (free
replay ratio, so the actors are not held back), the bytes per transition on the wire, beside the
single-process loop; one run after the other.

    python -m benchmarks.apex_speed --actors 1 2 4 --steps 20000 --json runs/apex_speed.json

Ray binds 127.0.0.1 for the local instance it starts; on a machine that must not even look
outward, run it in a private network namespace: unshare -n sh -c 'ip link set lo up && ...'.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import finish
from playground import tags
from playground.logger import EventReader

ROOT = Path(__file__).resolve().parents[1]


def last_values(run_dir: Path) -> dict[str, list[float]]:
    events = EventReader(run_dir).reload()
    return {tag: [value for _, value, _ in events.scalars(tag)] for tag in events.scalar_tags()}


def one_run(actors: int, steps: int, env_id: str, envs_per_actor: int, folder: Path) -> dict:
    name = f"actors-{actors}-{time.time_ns()}"
    command = [
        sys.executable, str(ROOT / "run.py"), "train-dqn", "--env-id", env_id,
        "--total-steps", str(steps), "--learning-starts", "2000", "--eval-every", "0",
        "--log-every", "1000", "--runs-dir", str(folder), "--run-name", name, "--no-progress",
        "--device", "cpu",
    ]  # fmt: skip
    if actors:
        command += [
            "--actors", str(actors), "--envs-per-actor", str(envs_per_actor),
            "--replay-ratio", "free", "--chunk-steps", "100",
        ]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    values = last_values(folder / name)
    sps = values[tags.SPS][2:] or values[tags.SPS]  # after learning has started
    record = {
        "actors": actors,
        "env_steps_per_second": sum(sps) / len(sps),
        "wall_seconds": wall,
    }
    if actors:
        updates = values[tags.UPDATES_PER_SEC][2:] or values[tags.UPDATES_PER_SEC]
        record["learner_updates_per_second"] = sum(updates) / len(updates)
        record["replay_ratio"] = values[tags.REPLAY_RATIO][-1]
        record["bytes_per_transition"] = values[tags.BYTES_PER_TRANSITION][-1]
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--env-id", default="Playground/Breakout-v0")
    parser.add_argument("--envs-per-actor", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for actors in [0, *args.actors]:
            record = one_run(actors, args.steps, args.env_id, args.envs_per_actor, Path(folder))
            results.append(record)
            print(json.dumps(record), flush=True)
    finish(results, args.json)


if __name__ == "__main__":
    main()
