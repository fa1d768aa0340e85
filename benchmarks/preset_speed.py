"""Training steps/s of presets side by side: each preset a `train-dqn` process of its own with
`--threads` torch threads, all started together on the same game, so that they share the
machine alike and its drift hits them all; the table gives each one's rate after learning
starts and its time per step against the first preset's (what a "2x the CPU time per run"
budget is measured in).

    python -m benchmarks.preset_speed --presets atari-100k atari-100k-spr --env-id ALE/Pong-v5
    python -m benchmarks.preset_speed --presets atari-100k atari-100k-spr --total-steps 6000 \
        --json-path runs/preset_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from agents.presets import PRESETS
from playground import tags
from playground.logger import read_scalars

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["atari-100k", "atari-100k-spr"])
    parser.add_argument("--env-id", default="ALE/Pong-v5")
    parser.add_argument("--total-steps", type=int, default=4_000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--json-path", type=Path, default=None)
    args = parser.parse_args()
    unknown = [name for name in args.presets if name not in PRESETS]
    if unknown:
        raise SystemExit(
            f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}"
        )

    environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryDirectory() as runs_dir:
        processes = {
            name: subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "run.py"),
                    "train-dqn",
                    "--env-id",
                    args.env_id,
                    "--preset",
                    name,
                    "--total-steps",
                    str(args.total_steps),
                    "--eval-every",
                    "0",
                    "--final-eval-episodes",
                    "0",
                    "--checkpoint-every",
                    str(10**9),
                    "--save-replay",
                    "never",
                    "--log-every",
                    "100",
                    "--no-progress",
                    "--runs-dir",
                    runs_dir,
                    "--run-name",
                    name,
                ],
                cwd=ROOT,
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for name in args.presets
        }
        rows = []
        for name, process in processes.items():
            _, errors = process.communicate()
            if process.returncode != 0:
                raise SystemExit(f"{name} failed:\n{errors[-2000:]}")
            starts = PRESETS[name].settings.get("learning_starts", 0)
            # The 100-step periods after learning starts, the first two (warming up) left out.
            rates = [
                value
                for step, value, _ in read_scalars(Path(runs_dir) / name, tags.SPS)
                if step > starts + 200
            ]
            if not rates:
                raise SystemExit(
                    f"{name} learns from step {starts:,}: give --total-steps above {starts + 300:,}"
                )
            rows.append({"preset": name, "training_sps": round(float(np.mean(rates)), 2)})
    first = rows[0]["training_sps"]
    print(
        f"{args.env_id}, {args.total_steps:,} steps, runs side by side, {args.threads} "
        "thread(s) each"
    )
    print(f"{'preset':<24} {'steps/s':>8} {'time per step x first':>22}")
    for row in rows:
        row["time_ratio"] = round(first / row["training_sps"], 2)
        print(f"{row['preset']:<24} {row['training_sps']:>8.1f} {row['time_ratio']:>22.2f}")
    if args.json_path is not None:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
