"""Presets: each one's settings validate, the flag that picks it picks it, a flag given on the
command line wins over it, and the README's table is the code's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import agents.presets
import gan.presets
import run
from agents.config import DQNConfig
from agents.config import validate as validate_dqn
from gan.config import GanConfig
from gan.config import validate as validate_gan
from playground.errors import UserError
from playground.presets import check_presets, describe, option_value, with_preset

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(agents.presets.PRESETS))
def test_every_dqn_preset_validates(name: str) -> None:
    check_presets(DQNConfig, agents.presets)
    cfg = with_preset(DQNConfig, agents.presets, name)
    validate_dqn(cfg)
    assert cfg.preset == name
    for key, value in agents.presets.PRESETS[name].settings.items():
        assert getattr(cfg, key) == value


@pytest.mark.parametrize("name", list(gan.presets.PRESETS))
def test_every_gan_preset_validates(name: str) -> None:
    check_presets(GanConfig, gan.presets)
    cfg = with_preset(GanConfig, gan.presets, name)
    validate_gan(cfg)
    assert cfg.preset == name


@pytest.mark.parametrize(
    ("env_id", "preset"),
    [
        ("Playground/Catch-v0", "catch"),
        ("Playground/Pong-v0", "pong"),
        ("Playground/Breakout-v0", "breakout"),
        ("Playground/Snake-v0", "snake"),
        ("ALE/Pong-v5", "atari"),
        ("BreakoutNoFrameskip-v4", "atari"),
        ("CartPole-v1", "cartpole"),
        ("Acrobot-v1", "acrobot"),
        ("MountainCar-v0", "mountaincar"),
        ("MountainCarContinuous-v0", "none"),
    ],
)
def test_the_env_id_picks_its_preset(env_id: str, preset: str) -> None:
    _, cfg = run.parse(["train-dqn", "--env-id", env_id])
    assert cfg.preset == preset


@pytest.mark.parametrize(
    ("env_id", "learning_rate", "decay", "total_steps"),
    [
        ("CartPole-v1", 2.3e-3, "none", 50_000),
        ("Acrobot-v1", 6.3e-4, "linear", 100_000),
        ("MountainCar-v0", 4e-3, "linear", 120_000),
        ("LunarLander-v3", 6.3e-4, "linear", 100_000),
    ],
)
def test_the_vector_presets_take_rl_zoos_rate_and_budget(
    env_id: str, learning_rate: float, decay: str, total_steps: int
) -> None:
    """RL Zoo's tuned learning rate and step budget; where measured better (docs/learning.md),
    the rate falls linearly to a tenth over the run."""
    _, cfg = run.parse(["train-dqn", "--env-id", env_id])
    assert (cfg.learning_rate, cfg.learning_rate_decay, cfg.total_steps) == (
        learning_rate,
        decay,
        total_steps,
    )


def test_mountaincar_takes_3_step_targets_where_rl_zoo_takes_1() -> None:
    """With RL Zoo's 1-step targets one seed of three never reached its level (docs/learning.md);
    the preset's 3-step targets are the measured change, the rest stays RL Zoo's."""
    _, cfg = run.parse(["train-dqn", "--env-id", "MountainCar-v0"])
    assert (cfg.n_step, cfg.gamma, cfg.double_dqn) == (3, 0.98, False)
    _, cfg = run.parse(["train-dqn", "--env-id", "Acrobot-v1"])
    assert cfg.n_step == 1


@pytest.mark.parametrize(
    ("dataset", "preset"),
    [
        ("rendered-digits", "rendered-digits"),
        ("idx:../shared/data/MNIST/raw", "digits"),
        ("mnist", "digits"),
        ("fashion-mnist", "fashion"),
        ("cifar10", "cifar10"),
        ("celeba", "celeba"),
        ("games", "games"),
        ("atari", "atari-frames"),
        ("folder:/some/pictures", "folder"),
        ("fake", "none"),
    ],
)
def test_the_dataset_picks_its_preset(dataset: str, preset: str) -> None:
    _, cfg = run.parse(["train-gan", "--dataset", dataset])
    assert cfg.preset == preset
    assert run.parse(["train-gan"])[1].preset == "rendered-digits"  # the default data set


def test_a_flag_on_the_command_line_wins_over_the_preset() -> None:
    snake = agents.presets.PRESETS["snake"].settings
    _, cfg = run.parse(["train-dqn", "--env-id", "Playground/Snake-v0", "--learning-rate", "0.003"])
    assert cfg.learning_rate == 0.003
    assert cfg.frame_size == snake["frame_size"] and cfg.total_steps == snake["total_steps"]
    # Even a value equal to the plain default wins (the preset says otherwise).
    default_lr = DQNConfig().learning_rate
    assert snake["learning_rate"] != default_lr
    _, cfg = run.parse(
        ["train-dqn", "--env-id=Playground/Snake-v0", f"--learning-rate={default_lr}"]
    )
    assert cfg.learning_rate == default_lr and cfg.preset == "snake"
    _, cfg = run.parse(["train-gan", "--dataset", "mnist", "--steps", "17", "--no-progress"])
    assert (
        cfg.steps == 17
        and cfg.generator_width == gan.presets.PRESETS["digits"].settings["generator_width"]
    )
    line = describe(gan.presets, cfg)
    assert line is not None and "preset digits" in line and "steps" in line


def test_preset_none_and_an_explicit_preset() -> None:
    _, plain = run.parse(["train-dqn", "--env-id", "Playground/Pong-v0", "--preset", "none"])
    assert plain == DQNConfig(env_id="Playground/Pong-v0", preset="none")
    _, other = run.parse(["train-dqn", "--env-id", "Playground/Catch-v0", "--preset", "snake"])
    assert other.frame_size == agents.presets.PRESETS["snake"].settings["frame_size"]
    assert other.env_id == "Playground/Catch-v0" and other.preset == "snake"


def test_a_resumed_run_takes_no_preset() -> None:
    _, cfg = run.parse(["train-dqn", "--resume", "runs/x", "--env-id", "Playground/Snake-v0"])
    assert cfg.preset == "none" and cfg.frame_size == DQNConfig().frame_size


def test_an_unknown_preset_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UserError, match="--preset 'snak' is not one of"):
        run.parse(["train-dqn", "--preset", "snak"])
    assert run.main(["train-gan", "--preset", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: --preset 'nope' is not one of")


def test_option_value_reads_both_spellings() -> None:
    assert option_value(["a", "--env-id", "X"], "--env-id") == "X"
    assert option_value(["--env-id=Y"], "--env-id") == "Y"
    assert option_value(["--env_id", "Z", "--env-id", "W"], "--env-id") == "W"
    assert option_value(["--env-id"], "--env-id") is None


def readme_table(kind: str) -> dict[str, dict[str, str]]:
    """Rows of the README's `kind` preset table (between <!-- presets:KIND --> and
    <!-- /presets -->): name -> {picked_by, summary, reaches}."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"<!-- presets:{kind} -->")
    table = text[start : text.index("<!-- /presets -->", start)]
    rows = {}
    for line in table.splitlines():
        match = re.match(r"^\| `([a-z0-9-]+)` \| (.*?) \| (.+?) \| (.+?) \|$", line)
        if match:
            rows[match.group(1)] = {
                "picked_by": match.group(2),
                "summary": match.group(3),
                "reaches": match.group(4),
            }
    return rows


@pytest.mark.parametrize("kind", ["dqn", "gan"])
def test_the_readme_preset_tables_are_the_code(kind: str) -> None:
    code = {"dqn": agents.presets.PRESETS, "gan": gan.presets.PRESETS}[kind]
    rows = readme_table(kind)
    assert set(rows) == set(code), set(rows) ^ set(code)
    for name, preset in code.items():
        assert rows[name]["summary"] == preset.summary, name
        assert rows[name]["reaches"] == preset.reaches, name
