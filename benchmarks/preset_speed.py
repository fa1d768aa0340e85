"""Training steps/s of presets side by side: each preset a `train-dqn` process of its own with
`--threads` torch threads, all started together on the same game, so that they share the
machine alike and its drift hits them all; the table gives each one's rate after learning
starts and its time per step against the first preset's (what a "2x the CPU time per run"
budget is measured in).

    python -m benchmarks.preset_speed --presets atari-100k atari-100k-spr --env-id ALE/Pong-v5
    python -m benchmarks.preset_speed --presets atari-100k "atari-100k-spr: --spr-steps 2" \
        --total-steps 6000 --json-path runs/preset_speed.json

An entry `PRESET: FLAGS` runs the preset with those train-dqn flags added. With
`--one-at-a-time` the runs go one after another, each with the machine to itself and
`--threads` threads (what a user who trains one run sees; side by side with one thread each
is how the CPU time of runs that fill the machine compares).

    python -m benchmarks.preset_speed --one-at-a-time --threads 2 --env-id ALE/Boxing-v5 \
        --presets atari-100k atari-100k-spr
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from agents.presets import PRESETS
from playground import tags
from playground.logger import read_scalars

ROOT = Path(__file__).resolve().parents[1]


def preset_and_flags(entry: str) -> tuple[str, list[str]]:
    """ "atari-100k-spr: --spr-steps 2" -> ("atari-100k-spr", ["--spr-steps", "2"])."""
    preset, _, flags = entry.partition(":")
    return preset.strip(), shlex.split(flags)


def command(entry: str, args: argparse.Namespace, runs_dir: str, run_name: str) -> list[str]:
    preset, flags = preset_and_flags(entry)
    return [
        sys.executable, str(ROOT / "run.py"), "train-dqn", "--env-id", args.env_id,
        "--preset", preset, "--total-steps", str(args.total_steps), "--eval-every", "0",
        "--final-eval-episodes", "0", "--checkpoint-every", str(10**9), "--save-replay", "never",
        "--log-every", "100", "--no-progress", "--runs-dir", runs_dir, "--run-name", run_name,
        *flags,
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["atari-100k", "atari-100k-spr"])
    parser.add_argument("--env-id", default="ALE/Pong-v5")
    parser.add_argument("--total-steps", type=int, default=4_000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--json-path", type=Path, default=None)
    parser.add_argument(
        "--one-at-a-time", action="store_true", help="run the presets one after another"
    )
    args = parser.parse_args()
    unknown = [e for e in args.presets if preset_and_flags(e)[0] not in PRESETS]
    if unknown:
        raise SystemExit(
            f"unknown preset in {', '.join(unknown)}; choose from {', '.join(PRESETS)}"
        )

    environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    rows = []
    with tempfile.TemporaryDirectory() as runs_dir:

        def start(index: int, entry: str) -> subprocess.Popen[str]:
            return subprocess.Popen(
                command(entry, args, runs_dir, f"run{index}"),
                cwd=ROOT,
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )

        def finish(index: int, entry: str, process: subprocess.Popen[str]) -> None:
            _, errors = process.communicate()
            if process.returncode != 0:
                raise SystemExit(f"{entry} failed:\n{errors[-2000:]}")
            curves.append(read_scalars(Path(runs_dir) / f"run{index}", tags.SPS))

        curves: list[list[tuple[int, float, float]]] = []
        if args.one_at_a_time:
            for index, entry in enumerate(args.presets):
                finish(index, entry, start(index, entry))
        else:
            processes = [start(index, entry) for index, entry in enumerate(args.presets)]
            for index, (entry, process) in enumerate(zip(args.presets, processes, strict=True)):
                finish(index, entry, process)
    # Side by side, only the periods logged while every run was still going: a run alone on
    # the machine after the others ended would look faster than it is.
    together_until = float("inf") if args.one_at_a_time else min(curve[-1][2] for curve in curves)
    for entry, curve in zip(args.presets, curves, strict=True):
        starts = PRESETS[preset_and_flags(entry)[0]].settings.get("learning_starts", 0)
        # The 100-step periods after learning starts, the first two (warming up) left out.
        rates = [
            value for step, value, wall in curve if step > starts + 200 and wall <= together_until
        ]
        if not rates:
            raise SystemExit(
                f"{entry}: no training period while all ran (it learns from step {starts:,}): "
                "give a larger --total-steps"
            )
        rows.append({"preset": entry, "training_sps": round(float(np.mean(rates)), 2)})
    first = rows[0]["training_sps"]
    how = "one at a time" if args.one_at_a_time else "side by side"
    print(f"{args.env_id}, {args.total_steps:,} steps, runs {how}, {args.threads} thread(s) each")
    print(f"{'preset':<36} {'steps/s':>8} {'time per step x first':>22}")
    for row in rows:
        row["time_ratio"] = round(first / row["training_sps"], 2)
        print(f"{row['preset']:<36} {row['training_sps']:>8.1f} {row['time_ratio']:>22.2f}")
    if args.json_path is not None:
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
