"""The Atari 100k benchmark: `train-dqn --preset atari-100k` on ALE games and seeds, scored as
the field scores it, with the published data-efficient agents beside it.

    python -m benchmarks.atari100k --games Pong Breakout Boxing --seeds 1 2 --parallel 2
    python -m benchmarks.atari100k --games Pong --seeds 1 --report-only     # tables, plots
    python -m benchmarks.atari100k --ray-address auto --cpus-per-run 2 --games ... --seeds ...

Each run is an ordinary run folder `<runs-dir>/<Game>-s<seed>` made by `run.py train-dqn` in a
process of its own (`--threads` torch threads each, `--parallel` at a time). The same command
again skips the runs that have their final evaluation (`final_eval.json`), resumes the ones
cut short (`--resume`, from their last checkpoint and replay buffer) and starts the rest. With
`--ray-address` every run is a Ray task holding `--cpus-per-run` CPUs (and `--gpus-per-run`
GPUs, `--resource` a custom resource); a task lost with its node is retried by Ray and the
retry resumes from the run's last checkpoint (the run folders must be on storage every node
sees).

The report (`--report`, default `<runs-dir>/atari100k.md`) has, per game, the mean final score over
seeds and its human-normalised score beside DrQ(eps), SPR and BBF's published means (100 runs
each), then the mean, median and interquartile mean of the human-normalised scores with 95%
stratified-bootstrap confidence intervals (rliable), and a learning-curve plot per game.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

from playground import tags
from playground.checkpoint import FINAL_EVAL
from playground.errors import UserError
from playground.lifecycle import StopSignals
from playground.logger import read_scalars
from playground.rundir import RunLock
from playground.trainers import Trainers

ROOT = Path(__file__).resolve().parents[1]

# Random and human scores of the 26 Atari 100k games (Kaiser et al. 2020; the values every
# paper since normalises with).
RANDOM_HUMAN: dict[str, tuple[float, float]] = {
    "Alien": (227.8, 7127.7), "Amidar": (5.8, 1719.5), "Assault": (222.4, 742.0),
    "Asterix": (210.0, 8503.3), "BankHeist": (14.2, 753.1), "BattleZone": (2360.0, 37187.5),
    "Boxing": (0.1, 12.1), "Breakout": (1.7, 30.5), "ChopperCommand": (811.0, 7387.8),
    "CrazyClimber": (10780.5, 35829.4), "DemonAttack": (152.1, 1971.0), "Freeway": (0.0, 29.6),
    "Frostbite": (65.2, 4334.7), "Gopher": (257.6, 2412.5), "Hero": (1027.0, 30826.4),
    "Jamesbond": (29.0, 302.8), "Kangaroo": (52.0, 3035.0), "Krull": (1598.0, 2665.5),
    "KungFuMaster": (258.5, 22736.3), "MsPacman": (307.3, 6951.6), "Pong": (-20.7, 14.6),
    "PrivateEye": (24.9, 69571.3), "Qbert": (163.9, 13455.0), "RoadRunner": (11.5, 7845.0),
    "Seaquest": (68.4, 42054.7), "UpNDown": (533.4, 11693.2),
}  # fmt: skip
# Published per-game means at 100k steps: DrQ(eps) and SPR over 100 runs each (the runs behind
# Agarwal et al. 2021), BBF over its RR8 runs (Schwarzer et al. 2023); shared/ANCHORS.md.
PUBLISHED: dict[str, dict[str, float]] = {
    "Pong": {"DrQ(eps)": -9.1, "SPR": -5.4, "BBF": 16.4},
    "Breakout": {"DrQ(eps)": 19.8, "SPR": 19.6, "BBF": 357.0},
    "Boxing": {"DrQ(eps)": 9.0, "SPR": 35.7, "BBF": 86.3},
    "Freeway": {"DrQ(eps)": 20.3, "SPR": 19.3, "BBF": 25.7},
    "MsPacman": {"DrQ(eps)": 1218.1, "SPR": 1318.4, "BBF": 2095.0},
    "Seaquest": {"DrQ(eps)": 352.3, "SPR": 558.1, "BBF": 1150.0},
    "Qbert": {"DrQ(eps)": 1810.7, "SPR": 866.3, "BBF": 4217.0},
    "Krull": {"DrQ(eps)": 4402.1, "SPR": 3681.6, "BBF": 8303.0},
}
AGENTS = ("DrQ(eps)", "SPR", "BBF")
# The final score of every run behind the DrQ(eps) and SPR means (100 runs a game, 26 games),
# as released with Agarwal et al. 2021: a 100-run mean on a skewed game is carried by its few
# best runs, so a handful of our runs is also placed among theirs.
PUBLISHED_RUNS_FILE = Path(__file__).with_name("atari100k_published_runs.json")


def human_normalised(game: str, score: float) -> float:
    random, human = RANDOM_HUMAN[game]
    return (score - random) / (human - random)


@functools.cache
def _published_runs() -> dict[str, dict[str, list[float]]]:
    return json.loads(PUBLISHED_RUNS_FILE.read_text())["runs"]


def published_runs(agent: str, game: str) -> np.ndarray | None:
    """The final scores of `agent`'s 100 runs on `game` (DrQ(eps) and SPR), None without."""
    runs = _published_runs().get(agent, {}).get(game)
    return None if runs is None else np.asarray(runs, dtype=np.float64)


def share_beaten(score: float, runs: np.ndarray) -> float:
    """The share of `runs` that `score` beats, ties counting half: where one of our runs
    ranks among a published agent's (0.5: level with its median run)."""
    return float(np.mean((score > runs) + 0.5 * (score == runs)))


def probability_of_improvement(
    ours: dict[str, list[float]], agent: str, reps: int = 20_000, seed: int = 0
) -> tuple[float, float, float]:
    """rliable's probability of improvement of our runs over `agent`'s (Agarwal et al. 2021):
    per game the chance that a run of ours beats a run of theirs (the Mann-Whitney statistic
    over all pairs, ties half), averaged over the games; with a 95% stratified-bootstrap
    interval, each side's runs of each game resampled apart (rliable's own bootstrap needs as
    many runs on both sides, and we have a few against their 100)."""
    generator = np.random.default_rng(seed)
    point, samples = 0.0, np.zeros(reps)
    for game, finals in ours.items():
        mine, theirs = np.asarray(finals, dtype=np.float64), published_runs(agent, game)
        assert theirs is not None, f"no published runs of {agent} on {game}"
        point += np.mean([share_beaten(score, theirs) for score in mine]) / len(ours)
        mine_drawn = mine[generator.integers(0, len(mine), (reps, len(mine)))][:, :, None]
        theirs_drawn = theirs[generator.integers(0, len(theirs), (reps, len(theirs)))][:, None]
        wins = (mine_drawn > theirs_drawn) + 0.5 * (mine_drawn == theirs_drawn)
        samples += wins.mean(axis=(1, 2)) / len(ours)
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(point), float(low), float(high)


# ----------------------------------------------------------------------------- running


def run_command(
    game: str, seed: int, runs_dir: Path, preset: str, extra: list[str]
) -> list[str] | None:
    """The train-dqn command that makes progress on this run: resume it, start it, or None
    when it has its final evaluation."""
    run_dir = runs_dir / f"{game}-s{seed}"
    if (run_dir / FINAL_EVAL).is_file():
        return None
    base = [sys.executable, str(ROOT / "run.py"), "train-dqn", "--no-progress"]
    if (run_dir / "latest.pt").is_file():
        return [*base, "--resume", str(run_dir)]
    return [
        *base, "--env-id", f"ALE/{game}-v5", "--preset", preset, "--seed", str(seed),
        "--runs-dir", str(runs_dir), "--run-name", run_dir.name, *extra,
    ]  # fmt: skip


def train(
    game: str,
    seed: int,
    runs_dir: Path,
    preset: str,
    extra: list[str],
    threads: int,
    trainers: Trainers | None = None,
) -> str:
    """Bring one run to its final evaluation (a process of its own, started through
    `trainers`, which may stop it); returns a line on it."""
    trainers = trainers or Trainers()
    command = run_command(game, seed, runs_dir, preset, extra)
    name = f"{game}-s{seed}"
    if command is None:
        return f"{name}: done before"
    wait_until_free(runs_dir / name)
    environment = dict(os.environ)
    if threads:
        environment["OMP_NUM_THREADS"] = str(threads)
    runs_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(runs_dir / f"{name}.log", "a") as log:
        process = trainers.start(
            command, cwd=ROOT, env=environment, stdout=log, stderr=log, preexec_fn=_die_with_parent
        )
        if process is None:
            return f"{name}: not started (stopped)"
        returncode = trainers.wait(process)
    minutes = (time.perf_counter() - start) / 60
    if trainers.stopping:
        return f"{name}: stopped after {minutes:.1f} min (its latest.pt continues it)"
    if returncode != 0:
        raise RuntimeError(f"{name} exited {returncode}; see {runs_dir / name}.log")
    return f"{name}: {minutes:.1f} min this time"


def train_here(jobs: list[tuple[str, int]], args: argparse.Namespace) -> bool:
    """Every run on this machine, `--parallel` at a time; False when a Ctrl-C or SIGTERM
    stopped them (each saved its latest.pt; the same command continues them)."""
    trainers = Trainers()
    with StopSignals() as stop, ThreadPoolExecutor(args.parallel) as pool:
        pending = {
            pool.submit(
                train, game, seed, args.runs_dir, args.preset, args.extra, args.threads, trainers
            )
            for game, seed in jobs
        }
        while pending:
            done, pending = wait(pending, timeout=0.5)
            for future in done:
                print(future.result(), flush=True)
            if stop.requested and not trainers.stopping:
                print(f"{stop.signal_name}: stopping every run at its next step", flush=True)
                trainers.stop()
    return not stop.requested


def wait_until_free(run_dir: Path, timeout: float = 900.0) -> None:
    """Return once no process holds the run folder's lock: the retry of a run lost with its
    node waits here for the old trainer to be gone (killed with its worker, or, sent SIGTERM,
    saving its last step) instead of failing on a folder in use."""
    deadline = time.monotonic() + timeout
    while (run_dir / ".lock").is_file():
        try:
            with RunLock(run_dir):
                return
        except UserError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{run_dir} is still in use after {timeout:.0f} s") from None
            time.sleep(1.0)


def _train_task(*arguments: Any) -> tuple[str, str]:
    """`train` as a Ray task: its line, and the node it ran on."""
    import ray

    return train(*arguments), ray.get_runtime_context().get_node_id()


def _die_with_parent() -> None:
    """In the trainer's process, before it starts: on Linux, be sent SIGTERM when the process
    that started it dies (a Ray worker lost with its node), so the run saves its last step and
    stops instead of running on beside the retry."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def train_on_ray(jobs: list[tuple[str, int]], args: argparse.Namespace) -> dict[str, str]:
    """Every run as a Ray task with its share of the cluster; Ray retries a task whose node
    is lost, and the retry resumes the run from its last checkpoint. Returns the node each
    run ended on."""
    import ray  # only with --ray-address

    ray.init(address=args.ray_address, logging_level="ERROR", log_to_driver=False)
    options: dict[str, Any] = {"num_cpus": args.cpus_per_run, "max_retries": 3}
    if args.gpus_per_run:
        options["num_gpus"] = args.gpus_per_run
    if args.resource:
        options["resources"] = {args.resource: 1}
    task = ray.remote(_train_task).options(**options)
    pending = {
        task.remote(game, seed, args.runs_dir.resolve(), args.preset, args.extra, args.threads): (
            f"{game}-s{seed}"
        )
        for game, seed in jobs
    }
    nodes = {}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            name = pending.pop(ready[0])
            line, nodes[name] = ray.get(ready[0])
            print(f"{line} (node {nodes[name][:8]})", flush=True)
    finally:
        ray.shutdown()
    return nodes


# ----------------------------------------------------------------------------- reporting


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float, float]]:
    """(step, value, wall time) of a TensorBoard scalar of a run."""
    return read_scalars(run_dir, tag)


def training_minutes(run_dir: Path) -> float:
    """Minutes the run trained, from its logged steps' wall times (pauses of over 10 minutes
    between two logs, a run stopped and resumed later, are left out)."""
    times = sorted(wall for _, _, wall in scalars(run_dir, tags.SPS))
    gaps = np.diff(times)
    return float(gaps[gaps < 600].sum() / 60) if len(times) > 1 else 0.0


def collect(runs_dir: Path, games: list[str], seeds: list[int]) -> list[dict[str, Any]]:
    """What each finished or unfinished run has: final score, curve, minutes."""
    records = []
    for game in games:
        for seed in seeds:
            run_dir = runs_dir / f"{game}-s{seed}"
            if not run_dir.is_dir():
                continue
            final_path = run_dir / FINAL_EVAL
            final = json.loads(final_path.read_text()) if final_path.is_file() else None
            curve = scalars(run_dir, tags.EPISODIC_RETURN)
            records.append(
                {
                    "game": game,
                    "seed": seed,
                    "final": final["mean"] if final else None,
                    "final_games": len(final["scores"]) if final else 0,
                    "final_eval_minutes": (final or {}).get("minutes"),
                    # A finished run's last step is its final evaluation's; the last training
                    # game usually ends a little before it.
                    "steps": final["step"] if final else max((s for s, _, _ in curve), default=0),
                    "minutes": training_minutes(run_dir),
                    "curve": [(step, value) for step, value, _ in curve],
                }
            )
    return records


def setting_name(preset: str, extra: list[str], name: str = "") -> str:
    """What a set of runs is of: `name` where given (`--setting`), else the preset and the
    train-dqn flags given after it. Kept scores are keyed by it, so a run with `--
    --encoder-padding same` neither counts as nor replaces the plain preset's run of the same
    game and seed, and the runs of an agent since changed in code can keep a name of their own."""
    return name or " ".join([preset, *extra])


def _kept_record(entry: dict[str, Any]) -> dict[str, Any]:
    """A scores file's entry as `collect`'s record of a finished run."""
    curve = [tuple(point) for point in entry.get("curve", [])]
    # Entries kept before the file had "step": their last training game's step.
    last = entry.get("step") or max((step for step, _ in curve), default=0)
    return {
        "game": entry["game"], "seed": entry["seed"], "final": entry["final"],
        "final_games": entry.get("games", 0), "curve": curve, "steps": last, "minutes": 0.0,
        "kept": True,
    }  # fmt: skip


def with_kept_scores(
    records: list[dict[str, Any]], path: Path, setting: str, games: list[str], seeds: list[int]
) -> list[dict[str, Any]]:
    """The runs here, and the final scores `path` (a JSON list) keeps of this setting's runs
    (`setting_name`; the file's "preset" field) whose folders are elsewhere (another machine,
    an earlier session): a kept score counts for a game and seed this folder has not finished.
    The runs finished here are added to the file with their learning curves, so it gathers
    every run's final score and curve (and the commit it was trained at, when given) and the
    plot can show runs whose folders are gone."""
    kept = json.loads(path.read_text()) if path.is_file() else []
    by_key = {(entry["preset"], entry["game"], entry["seed"]): entry for entry in kept}
    for record in records:
        if record["final"] is not None:
            key = (setting, record["game"], record["seed"])
            entry = by_key.setdefault(key, {"preset": setting, "game": record["game"]})
            entry.update(seed=record["seed"], final=record["final"], games=record["final_games"])
            entry["curve"] = [[step, round(value, 2)] for step, value in record["curve"]]
            if record.get("steps"):  # the final evaluation's step, where the plot puts its dot
                entry["step"] = record["steps"]
    finished = {(r["game"], r["seed"]) for r in records if r["final"] is not None}
    merged = [r for r in records if (r["game"], r["seed"]) in finished]
    unfinished = {(r["game"], r["seed"]): r for r in records if r["final"] is None}
    for (entry_preset, game, seed), entry in by_key.items():
        if entry_preset != setting or game not in games or seed not in seeds:
            continue
        if (game, seed) in finished:
            continue
        kept_record = _kept_record(entry)
        # An unfinished run here keeps its own curve and steps, and takes the kept final.
        record = unfinished.pop((game, seed), None) or kept_record
        scored = ("game", "seed", "final", "final_games", "kept")
        merged.append({**record, **{key: kept_record[key] for key in scored}})
    merged += unfinished.values()
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = sorted(by_key.values(), key=lambda e: (e["preset"], e["game"], e["seed"]))
    path.write_text(json.dumps(rows, indent=1) + "\n")
    return sorted(merged, key=lambda r: (games.index(r["game"]), r["seed"]))


def aggregates(scores: np.ndarray, reps: int = 50_000) -> dict[str, tuple[float, float, float]]:
    """Mean, median and IQM of human-normalised scores (runs x games) with 95% stratified
    bootstrap confidence intervals, as rliable computes them."""
    from rliable import library as rly
    from rliable import metrics

    def estimate(values: np.ndarray) -> np.ndarray:
        return np.array(
            [
                metrics.aggregate_mean(values),
                metrics.aggregate_median(values),
                metrics.aggregate_iqm(values),
            ]
        )

    points, intervals = rly.get_interval_estimates({"run": scores}, estimate, reps=reps)
    return {
        name: (float(points["run"][index]), *map(float, intervals["run"][:, index]))
        for index, name in enumerate(("mean", "median", "IQM"))
    }


def plot_curves(
    records: list[dict[str, Any]], games: list[str], path: Path, preset: str = "atari-100k"
) -> bool:
    """One panel per game: each seed's training returns (full games, smoothed over 10) against
    agent steps, DrQ(eps)'s and SPR's final means and the random score as lines. False, and
    nothing written, where no run has a curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [game for game in games if any(r["game"] == game and r["curve"] for r in records)]
    if not shown:
        return False
    figure, axes = plt.subplots(
        1, len(shown), figsize=(4.2 * len(shown), 3.3), dpi=100, squeeze=False
    )
    for axis, game in zip(axes[0], shown, strict=True):
        draw_runs(axis, [r for r in records if r["game"] == game], game, f"{game} ({preset})")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return True


def draw_runs(axis: Any, records: list[dict[str, Any]], game: str, title: str) -> None:
    """One panel: each run's training returns (full games, smoothed over 10) against agent
    steps with its final score as a dot, DrQ(eps)'s and SPR's final means and the random score
    as lines."""
    for record in (r for r in records if r["curve"]):
        steps, values = map(np.array, zip(*record["curve"], strict=True))
        window = min(10, len(values))
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        (line,) = axis.plot(steps[window - 1 :], smooth, lw=1.5, label=f"seed {record['seed']}")
        if record["final"] is not None:  # in its curve's colour, unfinished runs or not
            axis.scatter(
                [record["steps"]], [record["final"]], marker="o", s=25, zorder=3,
                color=line.get_color(),
            )  # fmt: skip
    for agent, style in (("DrQ(eps)", "--"), ("SPR", ":")):
        if agent in PUBLISHED.get(game, {}):
            axis.axhline(PUBLISHED[game][agent], ls=style, color="black", lw=1, label=agent)
    axis.axhline(RANDOM_HUMAN[game][0], color="grey", lw=0.8, label="random")
    axis.set_title(textwrap.fill(title, 36), fontsize=9)
    axis.set_xlabel("agent steps")
    axis.set_ylabel("return of full games")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper left")


def kept_runs(path: Path, setting: str, game: str) -> list[dict[str, Any]]:
    """The runs of `setting` on `game` that the scores file `path` keeps, as `collect`'s
    records (final score, curve, the final evaluation's step), by seed."""
    entries = json.loads(path.read_text())
    runs = [_kept_record(e) for e in entries if e["preset"] == setting and e["game"] == game]
    return sorted(runs, key=lambda run: run["seed"])


def report(records: list[dict[str, Any]], games: list[str], preset: str, reps: int = 50_000) -> str:
    """The markdown tables: per game, then the aggregate over the games every seed finished
    (`reps` bootstrap draws for our runs' intervals, at most 10,000 for the published ones)."""
    lines = [
        f"| game | runs | {preset} (mean over seeds) | per seed | HNS | "
        + " | ".join(f"{agent} (HNS)" for agent in AGENTS)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(AGENTS),
    ]
    finished: dict[str, list[float]] = {}
    for game in games:
        runs = [r for r in records if r["game"] == game and r["final"] is not None]
        if not runs:
            continue
        finals = [r["final"] for r in runs]
        finished[game] = finals
        mean = float(np.mean(finals))
        published = [
            f"{PUBLISHED[game][agent]:g} ({human_normalised(game, PUBLISHED[game][agent]):.2f})"
            if agent in PUBLISHED.get(game, {})
            else "-"
            for agent in AGENTS
        ]
        lines.append(
            f"| {game} | {len(runs)} | {mean:.1f} | "
            + " / ".join(f"{value:.1f}" for value in finals)
            + f" | {human_normalised(game, mean):.2f} | "
            + " | ".join(published)
            + " |"
        )
    if finished:
        runs = sum(len(values) for values in finished.values())
        of_means = np.mean([human_normalised(g, float(np.mean(v))) for g, v in finished.items()])
        lines += [
            "",
            f"Mean HNS of the per-game means, all {runs} runs: {of_means:.2f} (as the published "
            "agents' means below are).",
        ]
        seeds = min(len(values) for values in finished.values())
        matrix = np.array(
            [[human_normalised(game, values[i]) for game, values in finished.items()]
             for i in range(seeds)]
        )  # fmt: skip
        lines += [
            "",
            f"Over {len(finished)} game(s), {seeds} run(s) each"
            + (
                " (the first of each game's; games have unequal runs)"
                if seeds * len(finished) < runs
                else ""
            )
            + " (human-normalised, 95% stratified-bootstrap confidence intervals, rliable):",
            "",
            f"| aggregate | {preset} | " + " | ".join(AGENTS) + " |",
            "|---|---|" + "---|" * len(AGENTS),
        ]
        ours = aggregates(matrix, reps=reps)
        theirs = {
            agent: _published_aggregates(agent, list(finished), min(reps, 10_000))
            for agent in AGENTS
        }
        for name in ("mean", "median", "IQM"):
            published = []
            for agent in AGENTS:
                if theirs[agent] is not None:
                    point, low, high = theirs[agent][name]
                    published.append(f"{point:.2f} [{low:.2f}, {high:.2f}]")
                elif all(agent in PUBLISHED.get(game, {}) for game in finished):
                    values = np.array(
                        [[human_normalised(game, PUBLISHED[game][agent]) for game in finished]]
                    )
                    published.append(f"{_point(values, name):.2f} (of the means)")
                else:
                    published.append("-")
            point, low, high = ours[name]
            lines.append(
                f"| {name} | {point:.2f} [{low:.2f}, {high:.2f}] | " + " | ".join(published) + " |"
            )
        lines += [
            "",
            "DrQ(eps)'s and SPR's aggregates are over their 100 runs of each of these games, with "
            "the same intervals; BBF's over its per-game means.",
        ]
        lines += against_published_runs(finished, preset, min(reps, 20_000))
    return "\n".join(lines) + "\n"


def _published_aggregates(
    agent: str, games: list[str], reps: int = 10_000
) -> dict[str, tuple[float, float, float]] | None:
    """rliable's aggregates of `agent`'s published runs on `games` (None without them)."""
    runs = [published_runs(agent, game) for game in games]
    if any(values is None for values in runs):
        return None
    matrix = np.stack(
        [[human_normalised(game, score) for score in values]
         for game, values in zip(games, runs, strict=True)],
        axis=1,
    )  # fmt: skip
    return aggregates(matrix, reps=reps)


def against_published_runs(
    finished: dict[str, list[float]], setting: str, reps: int = 20_000
) -> list[str]:
    """Markdown placing each of our runs among DrQ(eps)'s and SPR's 100 runs of its game, and
    rliable's probability of improvement over each agent on these games."""
    agents = [
        agent
        for agent in ("DrQ(eps)", "SPR")
        if all(published_runs(agent, game) is not None for game in finished)
    ]
    if not finished or not agents:
        return []
    lines = [
        "",
        "Each run placed among the published agents' 100 runs of its game (the share of their "
        "runs it beats, ties half: 50% is level with their median run; a mean over 100 runs of a "
        "skewed game is carried by its few best ones):",
        "",
        "| game | "
        + " | ".join(f"{agent}'s runs: median, mean | share beaten by each run" for agent in agents)
        + " |",
        "|---|" + "---|---|" * len(agents),
    ]
    for game, finals in finished.items():
        cells = []
        for agent in agents:
            runs = published_runs(agent, game)
            assert runs is not None
            beaten = " / ".join(f"{share_beaten(score, runs):.0%}" for score in finals)
            cells.append(f"{np.median(runs):.1f}, {runs.mean():.1f} | {beaten}")
        lines.append(f"| {game} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Probability of improvement (rliable's; 0.5: no better, no worse), 95% intervals:",
    ]
    lines.append("")
    for agent in agents:
        point, low, high = probability_of_improvement(finished, agent, reps)
        lines.append(
            f"- P({setting} > {agent}) = **{point:.2f}** [{low:.2f}, {high:.2f}]: the chance "
            f"that a run of ours beats a run of {agent} on the same game, averaged over the games"
        )
    return lines


def _point(values: np.ndarray, name: str) -> float:
    from scipy import stats  # rliable's own dependency

    flat = values.reshape(-1)
    if name == "mean":
        return float(flat.mean())
    if name == "median":
        return float(np.median(flat))
    return float(stats.trim_mean(flat, proportiontocut=0.25))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", nargs="+", default=["Pong", "Breakout", "Boxing"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--preset", default="atari-100k")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/atari100k"))
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (local)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--ray-address", default="", help="run each game x seed as a Ray task")
    parser.add_argument("--cpus-per-run", type=float, default=1.0)
    parser.add_argument("--gpus-per-run", type=float, default=0.0)
    parser.add_argument("--resource", default="", help="a Ray custom resource each run needs")
    parser.add_argument(
        "--report", type=Path, default=None, help="the table (default: <runs-dir>/atari100k.md)"
    )
    parser.add_argument(
        "--plot", type=Path, default=None, help="the curves (default: <runs-dir>/atari100k.png)"
    )
    parser.add_argument("--report-only", action="store_true", help="report the runs there are")
    parser.add_argument(
        "--scores",
        type=Path,
        default=None,
        help="a JSON file of final scores kept from runs whose folders are elsewhere: counted "
        "where --runs-dir has not finished a game and seed, and extended with the runs it has",
    )
    parser.add_argument(
        "--setting",
        default="",
        help="the name --scores keeps these runs under (default: the preset and the flags after "
        "--); name the runs of an agent since changed in code apart from the current preset's",
    )
    parser.add_argument(
        "extra", nargs="*", default=[], help="more train-dqn flags for new runs (after --)"
    )
    args = parser.parse_args()
    # Beside the runs, so that a run from a checkout never overwrites its docs unasked.
    args.report = args.report or args.runs_dir / "atari100k.md"
    args.plot = args.plot or args.runs_dir / "atari100k.png"
    unknown = sorted(set(args.games) - set(RANDOM_HUMAN))
    if unknown:
        raise SystemExit(f"not an Atari 100k game: {', '.join(unknown)}")

    jobs = [(game, seed) for seed in args.seeds for game in args.games]
    if not args.report_only:
        if args.ray_address:
            train_on_ray(jobs, args)
        elif not train_here(jobs, args):
            print(f"stopped; run the same command again to continue ({args.runs_dir})")
            return
    records = collect(args.runs_dir, args.games, args.seeds)
    setting = setting_name(args.preset, args.extra, args.setting)
    if args.scores:
        records = with_kept_scores(records, args.scores, setting, args.games, args.seeds)
    for record in records:
        state = (
            f"final {record['final']:.1f} over {record['final_games']} games"
            + (f" (kept in {args.scores})" if record.get("kept") else "")
            if record["final"] is not None
            else "no final evaluation yet"
        )
        print(
            f"{record['game']}-s{record['seed']}: step {record['steps']:,}, {state}, "
            f"{record['minutes']:.0f} min of training"
        )
    table = report(records, args.games, setting)
    print(table)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(table)
    plotted = plot_curves(records, args.games, args.plot, setting)
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    (args.runs_dir / "atari100k.json").write_text(json.dumps(records, indent=1) + "\n")
    written = [args.report, *([args.plot] if plotted else []), args.runs_dir / "atari100k.json"]
    print("wrote " + ", ".join(map(str, written)))


if __name__ == "__main__":
    main()
