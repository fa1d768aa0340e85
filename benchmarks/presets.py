"""What the built-in games' presets reach: `train-dqn --env-id <game>` with no other flag (but
the seed and where the run goes), each run a separate process, timed from start to exit.

    python -m benchmarks.presets                                  # 4 games x seed 1, one at a time
    python -m benchmarks.presets --games snake --seeds 1 2 3 --parallel 2
    python -m benchmarks.presets --plot-only --json docs/presets.json --plots docs/

Writes a JSON of every run (final and best evaluation score, wall seconds, the evaluation curve,
and the run folder's checkpoint re-scored on 100 fresh games: `--rescore-only` adds that to runs
made before) and, per game, a PNG of the evaluation return against env steps: the mean over seeds and the
spread (min to max). Wall times are only comparable from runs made one at a time on an idle
machine (`--parallel 1`); curves are by step and may be made in parallel.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from playground import tags
from playground.logger import read_scalars

ROOT = Path(__file__).resolve().parents[1]
GAMES = {
    "catch": "Playground/Catch-v0",
    "pong": "Playground/Pong-v0",
    "breakout": "Playground/Breakout-v0",
    "snake": "Playground/Snake-v0",
    "cartpole": "CartPole-v1",
    "acrobot": "Acrobot-v1",
    "mountaincar": "MountainCar-v0",
    "lunarlander": "LunarLander-v3",  # needs Box2D: apt install swig, then pip install box2d-py
}
# What each game's bar is: every built-in game learned on a 2-core CPU; the vector games at
# RL Zoo's published DQN level (its benchmark.md: CartPole-v1 500 in 50k steps, Acrobot-v1
# -76.6 in 100k, MountainCar-v0 -100.8 in 120k, LunarLander-v2 154.4 in 100k).
BARS = {
    "catch": 0.9, "pong": 4.0, "breakout": 30.0, "snake": 10.0,
    "cartpole": 500.0, "acrobot": -76.6, "mountaincar": -100.8, "lunarlander": 154.4,
}  # fmt: skip
RANDOM_PLAY = {
    "catch": -0.67, "pong": -4.7, "breakout": 1.4, "snake": 0.1,
    "cartpole": 22.0, "acrobot": -500.0, "mountaincar": -200.0, "lunarlander": -182.4,
}  # fmt: skip


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    return [(step, value) for step, value, _ in read_scalars(run_dir, tag)]


def run_one(game: str, seed: int, runs_dir: Path, threads: int) -> dict:
    name = f"{game}-s{seed}"
    run_dir = runs_dir / name
    command = [
        sys.executable, str(ROOT / "run.py"), "train-dqn", "--env-id", GAMES[game],
        "--seed", str(seed), "--runs-dir", str(runs_dir), "--run-name", name, "--no-progress",
    ]  # fmt: skip
    environment = {**os.environ}
    if threads:
        environment["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stderr[-2000:]}")
    curve = scalars(run_dir, tags.EVAL_RETURN)
    served = rescore(run_dir)
    final_eval, final_games = final_score(run_dir, curve)
    record = {
        "game": game,
        "env_id": GAMES[game],
        "seed": seed,
        "wall_seconds": round(wall, 1),
        "final_eval": final_eval,
        "final_games": final_games,
        "best_eval": max(value for _, value in curve) if curve else None,
        "steps": curve[-1][0] if curve else 0,
        "curve": curve,
        "bar": BARS[game],
        "first_at_bar": next((step for step, value in curve if value >= BARS[game]), None),
        "served_eval": served,
    }
    print(
        f"{name}: final eval {record['final_eval']} (over {record['final_games'] or 'its last'} "
        f"games), best {record['best_eval']}, its "
        f"checkpoint over {RESCORE_GAMES} fresh games {served:.1f}, "
        f"{wall / 60:.1f} min (bar {BARS[game]}, first reached at step "
        f"{record['first_at_bar']})",
        flush=True,
    )
    return record


def final_score(run_dir: Path, curve: list[tuple[int, float]]) -> tuple[float | None, int | None]:
    """The run's final evaluation (the mean and its games) where its preset plays one
    (`--final-eval-episodes`, final_eval.json), else its last evaluation (games not counted)."""
    path = run_dir / "final_eval.json"
    if path.is_file():
        final = json.loads(path.read_text())
        return final["mean"], len(final["scores"])
    return (curve[-1][1] if curve else None), None


RESCORE_GAMES = 100
RESCORE_SEED = 10_000  # far from the seeds the runs' own evaluations play


def rescore(run_dir: Path, games: int = RESCORE_GAMES) -> float:
    """The mean score, over `games` fresh games at the run's own evaluation epsilon, of the
    checkpoint its folder means (best.pt: what `evaluate`, `watch` and `--init-from` load):
    the agent a run hands over, scored apart from the evaluations that chose it."""
    from agents.config import EvaluateConfig
    from agents.evaluate import evaluate
    from playground.checkpoint import load_checkpoint

    trained = load_checkpoint(run_dir)["config"]
    config = EvaluateConfig(
        checkpoint=str(run_dir),
        episodes=games,
        epsilon=trained["eval_epsilon"],
        seed=RESCORE_SEED,
        device="cpu",
    )
    return round(evaluate(config)["mean"], 2)


def plot(records: list[dict], folder: Path) -> list[Path]:
    """One PNG per game: mean evaluation return over seeds, and the min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    for game in GAMES:
        runs = [record for record in records if record["game"] == game and record["curve"]]
        if not runs:
            continue
        steps = sorted({step for run in runs for step, _ in run["curve"]})
        values = np.array(
            [[dict(run["curve"]).get(step, np.nan) for step in steps] for run in runs]
        )
        mean = np.nanmean(values, axis=0)
        figure, axes = plt.subplots(figsize=(6, 3.6), dpi=110)
        axes.fill_between(
            steps, np.nanmin(values, axis=0), np.nanmax(values, axis=0), alpha=0.25, lw=0
        )
        axes.plot(steps, mean, lw=2, label=f"mean of {len(runs)} seed(s)")
        axes.axhline(BARS[game], color="tab:green", ls="--", lw=1, label=f"bar {BARS[game]:g}")
        axes.axhline(RANDOM_PLAY[game], color="grey", ls=":", lw=1, label="random play")
        axes.set_title(f"{GAMES[game]} with its preset (train-dqn --env-id only)")
        axes.set_xlabel("environment steps")
        axes.set_ylabel("evaluation return")
        axes.grid(alpha=0.3)
        axes.legend(loc="lower right", fontsize=8)
        figure.tight_layout()
        path = folder / f"learning-{game}.png"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", nargs="+", default=list(GAMES), choices=list(GAMES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time")
    parser.add_argument("--threads", type=int, default=0, help="OMP threads per run (0: torch's)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/presets"))
    parser.add_argument("--json", type=Path, default=Path("runs/presets/presets.json"))
    parser.add_argument("--plots", type=Path, default=None, help="folder for the PNG curves")
    parser.add_argument("--plot-only", action="store_true", help="plot the runs in --json")
    parser.add_argument(
        "--rescore-only",
        action="store_true",
        help="re-score the checkpoints of the runs in --json (their folders in --runs-dir)",
    )
    args = parser.parse_args()

    previous = json.loads(args.json.read_text()) if args.json.is_file() else []
    if args.rescore_only:
        for record in previous:
            if record["game"] in args.games and record["seed"] in args.seeds:
                run_dir = args.runs_dir / f"{record['game']}-s{record['seed']}"
                record["served_eval"] = rescore(run_dir)
                print(
                    f"{run_dir.name}: its checkpoint over {RESCORE_GAMES} fresh games "
                    f"{record['served_eval']:.1f} (final eval {record['final_eval']})"
                )
        args.json.write_text(json.dumps(previous, indent=1) + "\n")
        return
    if not args.plot_only:
        jobs = [(game, seed) for seed in args.seeds for game in args.games]
        previous = [r for r in previous if (r["game"], r["seed"]) not in set(jobs)]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(args.parallel) as pool:
            # Each run is written down as it ends, so a long sweep stopped midway keeps its runs.
            for record in as_completed(
                [pool.submit(run_one, *job, args.runs_dir, args.threads) for job in jobs]
            ):
                previous.append(record.result())
                args.json.write_text(json.dumps(previous, indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.plots is not None:
        args.plots.mkdir(parents=True, exist_ok=True)
        for path in plot(previous, args.plots):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
