"""The command line: bad input ends in one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from playground.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = ROOT, screen: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `run.py`; `screen=False` runs it as on a server with no display at all."""
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "PYTHONPATH": str(ROOT)}
    if not screen:
        env.pop("SDL_VIDEODRIVER")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]


def test_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    import run

    assert len(run.COMMANDS) == 8
    for command in run.COMMANDS:
        assert command in result.stdout, command


def test_unknown_game_names_a_close_match(tmp_path: Path) -> None:
    result = run_cli("train-dqn", "--env-id", "ALE/Pongg-v5", "--runs-dir", str(tmp_path))
    assert_one_line_error(result, "ALE/Pong-v5")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--total-steps", "0"], "--total-steps must be positive"),
        (["--batch-size", "-4"], "--batch-size must be positive"),
        (["--learning-rate", "0"], "--learning-rate must be positive"),
        (
            ["--buffer-size", "10", "--batch-size", "32"],
            "--buffer-size (10) must be at least --batch-size (32)",
        ),
    ],
)
def test_impossible_values(tmp_path: Path, flags: list[str], fragment: str) -> None:
    result = run_cli(
        "train-dqn", "--env-id", "Playground/Catch-v0", "--runs-dir", str(tmp_path), *flags
    )
    assert_one_line_error(result, fragment)


def test_broken_and_foreign_checkpoints(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pt"
    save_checkpoint(truncated, {"kind": "dqn", "weights": torch.zeros(10_000)})
    truncated.write_bytes(truncated.read_bytes()[:5_000])
    assert_one_line_error(
        run_cli("evaluate", "--checkpoint", str(truncated)), "truncated or corrupted"
    )
    foreign = save_checkpoint(tmp_path / "gan.pt", {"kind": "gan"})
    assert_one_line_error(run_cli("evaluate", "--checkpoint", str(foreign)), "not a 'dqn' one")
    assert_one_line_error(
        run_cli("evaluate", "--checkpoint", str(tmp_path / "missing.pt")), "not found"
    )


def test_watch_without_display_says_how_to_run_headless() -> None:
    env_result = run_cli("watch", "--env-id", "Playground/Catch-v0", screen=False)
    assert_one_line_error(env_result, "--headless")


def test_resume_of_a_missing_run(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("train-dqn", "--resume", str(tmp_path / "nope")), "no latest.pt")


@pytest.mark.parametrize(
    ("argv", "field", "value"),
    [
        (["train-gan", "--total-steps", "7"], "steps", 7),
        (["train-gan", "--steps=8"], "steps", 8),
        (["train-dqn", "--steps", "9"], "total_steps", 9),
        (["train-dqn", "--total-steps=10"], "total_steps", 10),
    ],
)
def test_both_trainers_take_steps_by_either_name(argv: list[str], field: str, value: int) -> None:
    import run
    from playground.resume import given_fields

    name, config = run.parse(argv)
    assert getattr(config, field) == value
    assert field in given_fields(type(config), argv[1:])  # so a resumed run takes it
