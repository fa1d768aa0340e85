"""Run a comparison: every variant x seed as a `run.py` process, then the table and the plot.

A run that finished has `compare.json` in its folder (its numbers); one that was interrupted
has a latest.pt and is continued with `--resume`; so the same `compare` command run again
picks up where it stopped. Ctrl-C / SIGTERM stop every running trainer the way they stop
alone (each saves its latest.pt), then the comparison exits.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compare.config import CompareConfig, flat, validate
from playground import tags
from playground.checkpoint import LATEST, load_checkpoint, run_complete
from playground.errors import UserError
from playground.lifecycle import StopSignals
from playground.logger import read_scalars
from playground.notes import note, say
from playground.trainers import Trainers

ROOT = Path(__file__).resolve().parents[1]
RESULT = "compare.json"
# Two-sided 95% quantiles of Student's t for n - 1 degrees of freedom (n = 2 .. 30).
T_95 = [12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14,
        2.13, 2.12, 2.11, 2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05,
        2.05]  # fmt: skip
# What is compared, by trainer: (curve tag, higher is better, speed tag, speed unit).
MEASURES = {
    "train-dqn": (tags.EVAL_RETURN, True, tags.SPS, "steps/s"),
    "train-gan": (tags.FID, False, tags.IMAGES_PER_SEC, "images/s"),
}


@dataclass(frozen=True)
class Variant:
    """One point of the grid: a readable name and the flags that make it."""

    label: str  # "optimizer=adam encoder=vgg" (the table and the plot)
    slug: str  # "optimizer-adam_encoder-vgg" (folder names)
    flags: tuple[str, ...]


def grid(vary: tuple[str, ...], arms: tuple[str, ...] = ()) -> list[Variant]:
    """Every combination of the `--vary FLAG=A,B` values (one plain variant without any), and
    with `--variant NAME="FLAGS"` arms, that grid as given and again under each arm's flags."""
    variants = _combinations(vary)
    if not arms:
        return variants
    result = list(variants)
    for arm in arms:
        name, _, flags = arm.partition("=")
        for variant in variants:
            plain = variant.label == "as given"
            result.append(
                Variant(
                    name if plain else f"{name} {variant.label}",
                    name if plain else f"{name}_{variant.slug}",
                    (*shlex.split(flags), *variant.flags),
                )
            )
    return result


def _combinations(vary: tuple[str, ...]) -> list[Variant]:
    axes = []
    for item in vary:
        flag, _, values = item.partition("=")
        flag = flag.removeprefix("--")
        axes.append([(flag, value) for value in values.split(",")])
    variants = []
    for combination in itertools.product(*axes):
        label = " ".join(f"{flag}={value}" for flag, value in combination) or "as given"
        slug = "_".join(f"{flag}-{value}" for flag, value in combination) or "run"
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", slug)
        flags = tuple(
            token
            for flag, value in combination
            for token in (
                (f"--{flag}",) if value == "true" else (f"--no-{flag}",) if value == "false"
                else (f"--{flag}", value)
            )
        )  # fmt: skip
        variants.append(Variant(label, slug, flags))
    return variants


def parent_dir(cfg: CompareConfig) -> Path:
    return Path(cfg.runs_dir) / (cfg.name or f"compare-{time.strftime('%Y%m%d-%H%M%S')}")


def command(cfg: CompareConfig, variant: Variant, seed: int, parent: Path) -> list[str]:
    """The command line (after `run.py`) of one run of the grid."""
    return [
        *cfg.base,
        *variant.flags,
        "--seed", str(seed),
        "--runs-dir", str(parent),
        "--run-name", f"{variant.slug}_s{seed}",
        "--no-progress",
    ]  # fmt: skip


def commands(cfg: CompareConfig) -> list[list[str]]:
    """Every run's command line, for run.py to check before anything starts."""
    validate(cfg)
    parent = parent_dir(cfg)
    return [
        command(cfg, variant, seed, parent)
        for variant in grid(flat(cfg.vary), flat(cfg.variant))
        for seed in range(1, cfg.seeds + 1)
    ]


def shares(cfg: CompareConfig, cores: int) -> tuple[int, int]:
    """Runs at a time and torch threads per run on a machine of `cores` cores: --parallel
    (0: one per 2 cores, at least 1) and --threads (0: the cores shared out among them)."""
    parallel = cfg.parallel or max(1, cores // 2)
    return parallel, cfg.threads or max(1, cores // parallel)


def run_compare(cfg: CompareConfig) -> Path:
    """Run what is not finished yet, then write comparison.md / .json / .png in the parent."""
    validate(cfg)
    parent = parent_dir(cfg)
    parent.mkdir(parents=True, exist_ok=True)
    (parent / "logs").mkdir(exist_ok=True)
    trainer = cfg.base[0]
    parallel, threads = shares(cfg, os.cpu_count() or 1)
    jobs = [
        (variant, seed)
        for variant in grid(flat(cfg.vary), flat(cfg.variant))
        for seed in range(1, cfg.seeds + 1)
    ]
    pending = [
        (variant, seed)
        for variant, seed in jobs
        if not (parent / f"{variant.slug}_s{seed}" / RESULT).is_file()
    ]
    for variant, seed in list(pending):
        # Finished but not recorded: compare was stopped as the run ended, or the folder was
        # brought in from another command (a run of benchmarks.atari100k, say).
        run_dir = parent / f"{variant.slug}_s{seed}"
        if finished_before(run_dir):
            seconds = _add_wall_time(parent, run_dir.name, 0.0)
            _record(trainer, run_dir, variant, seed, seconds or math.nan)
            pending.remove((variant, seed))
            say(f"compare: {run_dir.name} had finished before; recorded")
    say(
        f"compare: {len(jobs)} runs ({len(jobs) - len(pending)} already done) in {parent}, "
        f"{parallel} at a time with {threads} thread(s) each"
    )
    running: dict[subprocess.Popen, tuple[Variant, int, float]] = {}
    failed: list[str] = []
    trainers = Trainers()
    with StopSignals() as stop:
        while (pending and not stop.requested) or running:
            while pending and len(running) < parallel and not stop.requested:
                variant, seed = pending.pop(0)
                process = _start(trainers, cfg, variant, seed, parent, threads)
                if process is not None:
                    running[process] = (variant, seed, time.perf_counter())
            time.sleep(0.2)
            if stop.requested:
                trainers.stop()  # one SIGINT each: every trainer saves its step and exits
            for process in [
                process for process in running if trainers.finished(process) is not None
            ]:
                variant, seed, started = running.pop(process)
                run_dir = parent / f"{variant.slug}_s{seed}"
                seconds = _add_wall_time(parent, run_dir.name, time.perf_counter() - started)
                if process.returncode == 0 and not stop.requested:
                    _record(trainer, run_dir, variant, seed, seconds)
                    say(f"compare: {run_dir.name} done")
                elif not stop.requested:
                    failed.append(run_dir.name)
                    note(f"{run_dir.name} failed; see {parent / 'logs' / (run_dir.name + '.log')}")
    if stop.requested:
        say(f"compare: stopped; run the same command again to continue ({parent})")
        return parent
    results = summarise(trainer, parent, grid(flat(cfg.vary), flat(cfg.variant)), cfg.seeds)
    if failed:
        raise UserError(
            f"{len(failed)} run(s) failed: {', '.join(failed)}; the others are in {parent}"
        )
    return results


def finished_before(run_dir: Path) -> bool:
    """Whether a run folder holds a run at its last step (with its closing evaluation, where
    it has one), so that resuming it has nothing left to do."""
    if not (run_dir / LATEST).is_file():
        return False
    try:
        state = load_checkpoint(run_dir / LATEST)
    except UserError:
        return False  # resuming it says what is wrong with it
    config = state.get("config", {})
    total = config.get("total_steps", config.get("steps"))  # train-dqn's, train-gan's
    step = int(state.get("step", 0))
    return total is not None and run_complete(
        run_dir, step, int(total), config.get("final_eval_episodes", 0)
    )


def _start(
    trainers: Trainers, cfg: CompareConfig, variant: Variant, seed: int, parent: Path, threads: int
) -> subprocess.Popen | None:
    run_dir = parent / f"{variant.slug}_s{seed}"
    argv = command(cfg, variant, seed, parent)
    if (run_dir / "latest.pt").is_file():
        argv = [cfg.base[0], "--resume", str(run_dir), "--no-progress"]
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    # Its own session: a Ctrl-C in the terminal reaches compare alone, which passes it on.
    with open(parent / "logs" / f"{run_dir.name}.log", "a") as log:  # the child keeps its copy
        return trainers.start(
            [sys.executable, str(ROOT / "run.py"), *argv],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    return [(step, value) for step, value, _ in read_scalars(run_dir, tag)]


def _add_wall_time(parent: Path, run_name: str, seconds: float) -> float:
    """Add a session's seconds to the run's total (parent/wall.json); return the total, so a
    run interrupted and resumed is timed over all its sessions."""
    path = parent / "wall.json"
    totals = json.loads(path.read_text()) if path.is_file() else {}
    totals[run_name] = totals.get(run_name, 0.0) + seconds
    path.write_text(json.dumps(totals, indent=1) + "\n")
    return totals[run_name]


def _record(trainer: str, run_dir: Path, variant: Variant, seed: int, seconds: float) -> None:
    """Write the finished run's numbers beside it (compare.json): its curve, final and best
    value, speed and wall time over all its sessions."""
    tag, higher_better, speed_tag, _ = MEASURES[trainer]
    curve = _scalars(run_dir, tag)
    speeds = [value for _, value in _scalars(run_dir, speed_tag)]
    values = [value for _, value in curve]
    # A DQN run with a final evaluation (--final-eval-episodes: the Atari 100k protocol's 100
    # games) is scored by it, not by its last few-game evaluation.
    closing = _scalars(run_dir, tags.FINAL_RETURN) if trainer == "train-dqn" else []
    final = closing[-1][1] if closing else values[-1] if values else math.nan
    result = {
        "variant": variant.label,
        "seed": seed,
        "curve": curve,
        "final": final,
        "final_is_closing_evaluation": bool(closing),
        "best": (max(values) if higher_better else min(values)) if values else math.nan,
        "speed": sum(speeds) / len(speeds) if speeds else math.nan,
        "wall_seconds": seconds,
    }
    (run_dir / RESULT).write_text(json.dumps(result) + "\n")


def mean_interval(values: list[float]) -> tuple[float, float]:
    """The mean and the half-width of its 95% confidence interval (Student's t; 0 for n = 1)."""
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return math.nan, math.nan
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return mean, 0.0
    variance = sum((value - mean) ** 2 for value in finite) / (len(finite) - 1)
    t = T_95[min(len(finite) - 2, len(T_95) - 1)] if len(finite) <= 30 else 1.96
    return mean, t * math.sqrt(variance / len(finite))


def summarise(trainer: str, parent: Path, variants: list[Variant], seeds: int) -> Path:
    """comparison.json, comparison.md (also printed) and comparison.png in `parent`."""
    tag, higher_better, _, speed_unit = MEASURES[trainer]
    rows: list[dict[str, Any]] = []
    closing = 0  # runs scored by their closing evaluation
    for variant in variants:
        results = [
            json.loads((parent / f"{variant.slug}_s{seed}" / RESULT).read_text())
            for seed in range(1, seeds + 1)
            if (parent / f"{variant.slug}_s{seed}" / RESULT).is_file()
        ]
        closing += sum(bool(result.get("final_is_closing_evaluation")) for result in results)
        final, final_ci = mean_interval([result["final"] for result in results])
        best, best_ci = mean_interval([result["best"] for result in results])
        rows.append(
            {
                "variant": variant.label,
                "runs": len(results),
                "final": final,
                "final_ci95": final_ci,
                "best": best,
                "best_ci95": best_ci,
                "wall_seconds": mean_interval([r["wall_seconds"] for r in results])[0],
                "speed": mean_interval([r["speed"] for r in results])[0],
                "curves": [result["curve"] for result in results],
                # (last step, score) of each run scored by its closing evaluation
                "closing": [
                    (result["curve"][-1][0] if result["curve"] else 0, result["final"])
                    for result in results
                    if result.get("final_is_closing_evaluation")
                ],
            }
        )
    what = "evaluation return" if trainer == "train-dqn" else "FID (lower is better)"
    lines = [
        f"| variant | runs | final {what} | best | wall (min) | {speed_unit} |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['runs']} | {_number(row['final'])} ± "
            f"{_number(row['final_ci95'])} | {_number(row['best'])} ± {_number(row['best_ci95'])} "
            f"| {_minutes(row['wall_seconds'])} | {_number(row['speed'])} |"
        )
    table = "\n".join(lines)
    footnote = "± is the half-width of a 95% confidence interval over the seeds."
    if closing:
        runs = sum(row["runs"] for row in rows)
        footnote += (
            " Final: a run's closing evaluation (--final-eval-episodes) where it has one "
            f"({closing} of {runs} runs), else its last evaluation; best: its best evaluation "
            "on the way."
        )
    print(table)
    print(f"({footnote})")
    (parent / "comparison.md").write_text(f"{table}\n\n{footnote}\n")
    (parent / "comparison.json").write_text(json.dumps(rows, indent=1) + "\n")
    _plot(rows, parent / "comparison.png", tag, what)
    say(f"compare: wrote {parent / 'comparison.md'}, comparison.json and comparison.png")
    return parent


def _number(value: float) -> str:
    """3 significant digits, without exponents (a Krull score is 4,781, not 4.78e+03)."""
    if not math.isfinite(value):
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}" if math.isfinite(seconds) else "n/a"


def _plot(rows: list[dict[str, Any]], path: Path, tag: str, what: str) -> None:
    """Each variant's mean curve over its seeds, each run's own curve thin beside it, the
    95% confidence band where 3 or more seeds make it mean something (with 2, Student's t
    widens it past every run), and the closing evaluations as dots at the runs' last step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4), dpi=110)
    observed: list[float] = []
    for row in rows:
        curves = [dict(curve) for curve in row["curves"] if curve]
        if not curves:
            continue
        observed += [value for curve in curves for value in curve.values() if math.isfinite(value)]
        steps = sorted(set().union(*curves))
        means, lows, highs = [], [], []
        for step in steps:
            mean, half = mean_interval([curve.get(step, math.nan) for curve in curves])
            means.append(mean)
            lows.append(mean - half)
            highs.append(mean + half)
        (line,) = axes.plot(steps, means, lw=2, label=f"{row['variant']} ({len(curves)} runs)")
        if len(curves) >= 3:
            axes.fill_between(steps, lows, highs, color=line.get_color(), alpha=0.2, lw=0)
        if len(curves) > 1:
            for curve in curves:
                run_steps = sorted(curve)
                run_values = [curve[step] for step in run_steps]
                axes.plot(run_steps, run_values, lw=0.8, alpha=0.4, color=line.get_color())
        for step, score in row.get("closing", []):
            axes.plot(step, score, "o", ms=5, color=line.get_color())
            observed.append(score)
    if observed:
        # The t-interval of few seeds reaches far beyond any run; the axes keep to the runs.
        low, high = min(observed), max(observed)
        margin = 0.1 * (high - low) or 1.0
        axes.set_ylim(low - margin, high + margin)
    axes.set_xlabel("steps")
    axes.set_ylabel(what)
    closing = any(row.get("closing") for row in rows)
    axes.set_title(
        f"{tag}: mean over seeds, each run thin"
        + (", closing evaluations as dots" if closing else ""),
        fontsize=9,
    )
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
