"""`run.py compare`: a grid of short Catch runs finishes, writes its table, JSON and plot,
resumes after Ctrl-C without redoing finished runs, and repeats itself exactly on the CPU."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compare.config import CompareConfig
from compare.grid import grid, mean_interval

ROOT = Path(__file__).resolve().parents[1]
# A Catch run of a few seconds: the catch preset, shortened.
BASE = [
    "train-dqn", "--env-id", "Playground/Catch-v0", "--total-steps", "1200",
    "--learning-starts", "200", "--eval-every", "600", "--eval-episodes", "4",
    "--checkpoint-every", "300", "--log-every", "300", "--device", "cpu",
]  # fmt: skip


def test_the_grid_is_every_combination() -> None:
    variants = grid(("optimizer=adam,sgd", "--dueling=true,false"))
    assert [variant.label for variant in variants] == [
        "optimizer=adam dueling=true",
        "optimizer=adam dueling=false",
        "optimizer=sgd dueling=true",
        "optimizer=sgd dueling=false",
    ]
    assert variants[1].flags == ("--optimizer", "adam", "--no-dueling")
    assert variants[0].slug == "optimizer-adam_dueling-true"
    assert [variant.label for variant in grid(())] == ["as given"]


def test_a_flag_given_twice_keeps_both(tmp_path: Path) -> None:
    """`--vary A --vary B` (the README's form) and `--vary A B` make the same grid."""
    import tyro

    from compare.config import flat

    twice = tyro.cli(CompareConfig, args=["--vary", "optimizer=adam,sgd", "--vary", "dueling=true"])
    once = tyro.cli(CompareConfig, args=["--vary", "optimizer=adam,sgd", "dueling=true"])
    assert flat(twice.vary) == flat(once.vary) == ("optimizer=adam,sgd", "dueling=true")
    arms = tyro.cli(CompareConfig, args=["--variant", "a=--noisy", "--variant", "b=--dueling"])
    assert [v.label for v in grid(flat(arms.vary), flat(arms.variant))] == ["as given", "a", "b"]


def test_named_arms_run_beside_the_command_as_given() -> None:
    arms = ("c51=--distributional c51", "spr=--spr-weight 2 --spr-steps 3")
    assert [(v.label, v.flags) for v in grid((), arms)] == [
        ("as given", ()),
        ("c51", ("--distributional", "c51")),
        ("spr", ("--spr-weight", "2", "--spr-steps", "3")),
    ]
    with_grid = grid(("seed-offset=1,2",), arms[:1])
    assert [v.slug for v in with_grid] == [
        "seed-offset-1", "seed-offset-2", "c51_seed-offset-1", "c51_seed-offset-2",
    ]  # fmt: skip
    assert with_grid[2].flags == ("--distributional", "c51", "--seed-offset", "1")


def test_table_numbers_keep_three_digits_without_exponents() -> None:
    from compare.grid import _number

    assert [_number(value) for value in (4780.9, 321.6, 27.84, 0.1234, -9.06)] == [
        "4,781", "322", "27.8", "0.123", "-9.06",
    ]  # fmt: skip
    assert _number(float("nan")) == "n/a"


def test_mean_and_confidence_interval() -> None:
    assert mean_interval([2.0]) == (2.0, 0.0)
    mean, half = mean_interval([1.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(12.71 * 1.0)  # t(1) * s / sqrt(2), s = sqrt 2
    mean, half = mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.30 * 1.0 / 3**0.5)


def test_a_run_with_a_closing_evaluation_is_scored_by_it(tmp_path: Path) -> None:
    """An Atari 100k run's score is its 100 closing games, not its last 8-game evaluation."""
    from compare.grid import Variant, _record, summarise
    from playground import tags
    from playground.logger import TensorBoardLogger

    arm = Variant("as given", "run", ())
    for seed, (last, closing) in enumerate([(4.0, 10.0), (6.0, None)], start=1):
        with TensorBoardLogger(tmp_path / f"run_s{seed}") as logger:
            logger.scalar(tags.EVAL_RETURN, 1.0, 500)
            logger.scalar(tags.EVAL_RETURN, last, 1000)
            if closing is not None:
                logger.scalar(tags.FINAL_RETURN, closing, 1000)
        _record("train-dqn", tmp_path / f"run_s{seed}", arm, seed, 60.0)
    first, second = (
        json.loads((tmp_path / f"run_s{s}" / "compare.json").read_text()) for s in (1, 2)
    )
    assert (first["final"], first["final_is_closing_evaluation"], first["best"]) == (
        10.0,
        True,
        4.0,
    )
    assert (second["final"], second["final_is_closing_evaluation"]) == (6.0, False)
    assert first["curve"] == [[500, 1.0], [1000, 4.0]]
    summarise("train-dqn", tmp_path, [arm], seeds=2)
    row = json.loads((tmp_path / "comparison.json").read_text())[0]
    assert row["final"] == 8.0 and row["runs"] == 2
    assert row["closing"] == [[1000, 10.0]]  # the dot drawn at the run's last step
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
    assert (
        "closing evaluation (--final-eval-episodes) where it has one (1 of 2 runs)"
        in (tmp_path / "comparison.md").read_text()
    )


def test_a_finished_run_is_recorded_not_resumed(tmp_path: Path) -> None:
    """A run at its last step with its closing evaluation (compare stopped as it ended, or a
    folder brought in from another command) counts as finished; one short of either does not."""
    from compare.grid import finished_before
    from playground.checkpoint import FINAL_EVAL, LATEST, save_checkpoint

    def run(name: str, step: int, final_games: int, closing: bool) -> Path:
        config = {"total_steps": 1000, "final_eval_episodes": final_games}
        save_checkpoint(tmp_path / name / LATEST, {"kind": "dqn", "config": config, "step": step})
        if closing:
            (tmp_path / name / FINAL_EVAL).write_text("{}")
        return tmp_path / name

    assert finished_before(run("done", 1000, 100, closing=True))
    assert finished_before(run("no-closing-games", 1000, 0, closing=False))
    assert not finished_before(run("closing-games-pending", 1000, 100, closing=False))
    assert not finished_before(run("short", 900, 0, closing=False))
    assert not finished_before(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / LATEST).write_bytes(b"not a checkpoint")
    assert not finished_before(tmp_path / "broken")  # resuming it says what is wrong
    gan = tmp_path / "gan" / LATEST
    save_checkpoint(gan, {"kind": "gan", "config": {"steps": 250}, "step": 250})
    assert finished_before(gan.parent)


def _compare(runs_dir: Path, name: str, *vary: str, seeds: int = 2) -> list[str]:
    return [
        sys.executable, str(ROOT / "run.py"), "compare", "--vary", *vary, "--seeds", str(seeds),
        "--parallel", "2", "--name", name, "--runs-dir", str(runs_dir), *BASE,
    ]  # fmt: skip


@pytest.mark.slow
def test_compare_runs_resumes_and_repeats_itself(tmp_path: Path) -> None:
    command = _compare(tmp_path, "optimizers", "optimizer=adam,sgd,rmsprop")
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    parent = tmp_path / "optimizers"
    # Ctrl-C once the first runs have finished, while others are still going.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(parent.glob("*/compare.json"))) < 2:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-2000:]
    assert "run the same command again to continue" in stderr
    finished_before = {
        path.parent.name: path.stat().st_mtime_ns for path in parent.glob("*/compare.json")
    }
    assert 2 <= len(finished_before) < 6
    assert not (parent / "comparison.md").exists()

    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"6 runs ({len(finished_before)} already done)" in result.stderr
    for name, stamp in finished_before.items():  # finished runs were not redone
        assert (parent / name / "compare.json").stat().st_mtime_ns == stamp
    rows = json.loads((parent / "comparison.json").read_text())
    assert [row["variant"] for row in rows] == [
        "optimizer=adam",
        "optimizer=sgd",
        "optimizer=rmsprop",
    ]
    assert all(row["runs"] == 2 and len(row["curves"]) == 2 for row in rows)
    table = (parent / "comparison.md").read_text()
    assert "| optimizer=sgd | 2 |" in table and "±" in table
    assert (parent / "comparison.png").stat().st_size > 10_000
    assert "| variant | runs | final evaluation return" in result.stdout

    # The same seed, the same result: a second comparison of one variant repeats the first.
    again = subprocess.run(
        _compare(tmp_path, "again", "optimizer=adam", seeds=1), cwd=ROOT, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    first = json.loads((parent / "optimizer-adam_s1" / "compare.json").read_text())
    second = json.loads((tmp_path / "again" / "optimizer-adam_s1" / "compare.json").read_text())
    assert first["curve"] == second["curve"]


def test_bad_comparisons_are_one_line(tmp_path: Path) -> None:
    for argv, message in [
        (["compare", "--vary", "optimizer"], "write FLAG=VALUE"),
        (["compare", "--seeds", "2"], "needs a trainer command at the end"),
        (["compare", "--variant", "no flags"], "write NAME="),
    ]:
        result = subprocess.run(
            [sys.executable, str(ROOT / "run.py"), *argv, *(BASE if argv[1] in ("--vary", "--variant") else [])],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert CompareConfig().seeds == 3


def test_runs_share_the_cores_unless_told_how_many_threads_each_takes() -> None:
    from compare.grid import shares

    def cfg(**settings: int) -> CompareConfig:
        return CompareConfig(base=tuple(BASE), **settings)

    assert shares(cfg(), 2) == (1, 2)  # one run per 2 cores, with both
    assert shares(cfg(), 16) == (8, 2)
    assert shares(cfg(parallel=2), 2) == (2, 1)
    assert shares(cfg(parallel=3), 2) == (3, 1)  # never below one thread
    assert shares(cfg(parallel=1, threads=1), 2) == (1, 1)  # a core left free
    assert shares(cfg(parallel=2, threads=4), 16) == (2, 4)
