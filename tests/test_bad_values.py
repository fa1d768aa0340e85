"""Wrong values get one line and a non-zero exit, never a traceback, and nothing is written.

The first test walks every command's settings dataclass: each field that declares a range or a
path rule (playground/settings.py) is fed values outside it through the real command line, so
a field added tomorrow is covered the day it is added. The others pin the refusals that are not
a field's range: games DQN cannot play, and the resume rules."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import run
from agents.config import DQNConfig
from agents.dqn import train_dqn
from gan.train import train_gan
from playground.resume import given_fields
from playground.settings import PathRule, Range, constraints, flag, numeric_fields
from tests.conftest import small_gan

# What each command needs on its line besides the flag under test.
REQUIRED = {"evaluate": ["--checkpoint", "{existing}"], "compare": []}
TRAILING = {"compare": ["train-dqn"]}


def bad_values(rule: Range | PathRule, kind: type, tmp: Path) -> list[str]:
    """Values just outside `rule`: below its low end (or at an open one), above its high end,
    NaN for floats; a missing input, an output under a file, a folder that is a file."""
    if isinstance(rule, PathRule):
        if rule.kind == "input":
            return [str(tmp / "missing" / "thing.pt")]
        under_a_file = str(tmp / "a-file" / "out.png")
        if rule.kind == "folder":
            return [under_a_file, str(tmp / "a-file")]
        if rule.kind == "file":
            return [under_a_file, str(tmp)]
        return [under_a_file]
    step = 1 if kind is int else 0.5
    values: list[float] = []
    if rule.low is not None:
        values.append(rule.low if rule.low_open else rule.low - step)
        values.append(-(10**12))
    if rule.high is not None:
        values.append(rule.high if rule.high_open else rule.high + step)
        values.append(10**12)
    if kind is float:
        values.append(math.nan)
    return [str(int(value) if kind is int else value) for value in values]


def cases() -> list[tuple[str, str, str]]:
    found = []
    for command, (config_path, _) in run.COMMANDS.items():
        config_type = run.load(config_path)
        for name, (kind, _rule) in constraints(config_type).items():
            found.append((command, name, kind.__name__ if isinstance(kind, type) else "str"))
    return found


@pytest.mark.parametrize(("command", "name", "kind"), cases())
def test_every_constrained_setting_refuses_values_outside_it(
    command: str, name: str, kind: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    existing = tmp_path / "existing.pt"
    existing.write_bytes(b"")
    config_type = run.load(run.COMMANDS[command][0])
    _, rule = constraints(config_type)[name]
    before = sorted(tmp_path.rglob("*"))
    python_kind = {"int": int, "float": float}.get(kind, str)
    for value in bad_values(rule, python_kind, tmp_path):
        required = [token.format(existing=existing) for token in REQUIRED.get(command, [])]
        if name == "checkpoint":
            required = []
        argv = [command, *required, flag(name), value, *TRAILING.get(command, [])]
        code = run.main(argv)
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith(f"error: {flag(name)}"), (argv, err)
        assert "Traceback" not in err
        assert sorted(tmp_path.rglob("*")) == before, f"{argv} wrote something"


def test_every_numeric_setting_declares_its_range() -> None:
    for config_path, _ in run.COMMANDS.values():
        config_type = run.load(config_path)
        unchecked = set(numeric_fields(config_type)) - set(constraints(config_type))
        assert not unchecked, f"{config_type.__name__}: {sorted(unchecked)} declare no range"


@pytest.mark.parametrize(
    ("env_id", "message"),
    [
        ("Pendulum-v1", "Box actions; DQN needs a game with a discrete set of actions"),
        ("Playground/Nope-v0", "unknown environment id"),
    ],
)
def test_games_dqn_cannot_play_are_refused_by_name(
    env_id: str, message: str, tmp_path: Path, capsys
) -> None:
    code = run.main(["train-dqn", "--env-id", env_id, "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_game_whose_dependency_is_missing_says_what_to_install(tmp_path: Path, capsys) -> None:
    try:
        import Box2D  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("Box2D is installed here, so LunarLander-v3 can be made")
    code = run.main(["train-dqn", "--env-id", "LunarLander-v3", "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "LunarLander-v3 cannot be made here" in err and "pip install" in err
    assert len(err.strip().splitlines()) == 1


def test_given_fields_reads_the_flags_on_the_line_whatever_their_values() -> None:
    argv = ["--total-steps", "10000000", "--device=auto", "--no-progress", "--resume", "x", "5"]
    assert given_fields(DQNConfig, argv) == {"total_steps", "device", "progress", "resume"}


def tiny_dqn(tmp_path: Path, **changes: object) -> DQNConfig:
    settings = dict(
        env_id="Playground/Catch-v0", preset="none", total_steps=80, learning_starts=40,
        buffer_size=300, batch_size=8, frame_size=12, encoder="vgg", encoder_width=8,
        eval_every=0, checkpoint_every=40, runs_dir=str(tmp_path), run_name="run",
        device="cpu", progress=False,
    )  # fmt: skip
    settings.update(changes)
    return DQNConfig(**settings)


def test_a_resume_flag_given_at_its_default_value_takes_effect(tmp_path: Path, capsys) -> None:
    # The GAN: a run saved at 80 of --steps 80, resumed with --steps 250 (the default value).
    run_dir = train_gan(small_gan(tmp_path, steps=8, checkpoint_every=4))
    code = run.main(["train-gan", "--resume", str(run_dir), "--steps", "250", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    import torch

    assert torch.load(run_dir / "latest.pt", weights_only=True)["step"] == 250
    # The DQN: a run made with --device cpu, resumed with --device auto (the default value).
    first = train_dqn(tiny_dqn(tmp_path))
    code = run.main(
        ["train-dqn", "--resume", str(first), "--device", "auto", "--total-steps", "120"]
    )
    assert code == 0, capsys.readouterr().err
    from agents.checkpoint import load_dqn_checkpoint

    resumed = load_dqn_checkpoint(first / "latest.pt")
    assert resumed["step"] == 120 and resumed["config"]["device"] == "auto"


def test_both_trainers_refuse_a_resume_at_the_end_and_a_setting_it_cannot_take(
    tmp_path: Path, capsys
) -> None:
    first = train_dqn(tiny_dqn(tmp_path))
    assert run.main(["train-dqn", "--resume", str(first)]) == 2
    assert "already at step 80; pass --total-steps above it" in capsys.readouterr().err
    gan_dir = train_gan(small_gan(tmp_path, steps=4, checkpoint_every=2))
    assert run.main(["train-gan", "--resume", str(gan_dir)]) == 2
    assert "already at step 4; pass --steps above it" in capsys.readouterr().err
    code = run.main(["train-dqn", "--resume", str(first), "--learning-rate", "0.1"])
    err = capsys.readouterr().err
    assert code == 2 and "--learning-rate cannot change there" in err
    assert len(err.strip().splitlines()) == 1
    # The --resume help names exactly the flags the code lets through.
    from agents.config import RESUME_OVERRIDABLE

    paragraph = resume_paragraph("train-dqn")
    assert paragraph.startswith("--resume RUN")
    for name in RESUME_OVERRIDABLE:
        assert flag(name) in paragraph, name


def resume_paragraph(command: str) -> str:
    """The --resume entry of a command's --help, its box drawing removed."""
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
        run.main([command, "--help"])
    lines = [line.strip("│| ").strip() for line in buffer.getvalue().splitlines()]
    start = next(index for index, line in enumerate(lines) if line.startswith("--resume RUN"))
    # The entry ends with its default.
    end = next(index for index in range(start, len(lines)) if "(default:" in lines[index])
    return " ".join(lines[start : end + 1])


def test_running_out_of_device_memory_is_one_line(monkeypatch, tmp_path: Path, capsys) -> None:
    import torch

    import agents.evaluate

    def exhausted(cfg: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(agents.evaluate, "evaluate", exhausted)
    existing = tmp_path / "run.pt"
    existing.write_bytes(b"")
    assert run.main(["evaluate", "--checkpoint", str(existing)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "error: evaluate ran out of device memory; use --device cpu, or fewer --envs"
    )


@pytest.mark.parametrize("address", ["nonsense", "host:port", "host:70000", ":6379"])
def test_a_malformed_ray_address_is_refused_before_ray_starts(address: str, capsys) -> None:
    code = run.main(["train-dqn", "--actors", "2", "--ray-address", address])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --ray-address") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--distributional", "c51", "--v-min", "5", "--v-max", "1"], "--v-min (5) must be below"),
        (["--distributional", "qr", "--atoms", "1"], "--atoms 1 is no distribution"),
        (["--gamma-end", "1"], "--gamma-end 1 cannot be reached"),
        (["--n-step", "3", "--n-step-end", "3"], "--n-step-end 3 equals --n-step"),
        (
            ["--reset-every", "100", "--cuda-graph"],
            "leave out one of --cuda-graph and --reset-every",
        ),
        (["--reset-shrink", "1.5"], "--reset-shrink must lie in [0, 1]"),
        (["--v-max", "inf"], "--v-max must lie in"),
        (["--spr-weight", "1", "--encoder", "mlp"], "--spr-weight needs a pixel encoder"),
        (["--renormalize", "--encoder", "mlp"], "--renormalize needs a pixel encoder"),
        (
            ["--encoder-padding", "same", "--encoder", "vgg"],
            "--encoder-padding same is the nature encoder's",
        ),
        (["--weight-init", "he"], "--weight-init"),
        (["--encoder", "nature", "--frame-size", "12"], "too small for this encoder"),
    ],
)
def test_a_wrong_head_or_schedule_setting_is_one_line(
    flags: list[str], message: str, tmp_path: Path, capsys
) -> None:
    argv = ["train-dqn", "--env-id", "Playground/Catch-v0", "--runs-dir", str(tmp_path), *flags]
    code = run.main(argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train-dqn", "--loss", "foo"], "invalid choice 'foo' for argument '--loss'"),
        (["train-dqn", "--weight-init", "he"], "Expected one of ('torch', 'xavier')"),
        (["train-dqn", "--batch-size", "many"], "Error parsing --batch-size"),
        (["train-dqn", "--batch-size"], "Missing value for argument '--batch-size'"),
        (["train-gan", "--no-such-flag"], "Unrecognized options: --no-such-flag"),
        (["no-such-command"], "Available subcommands: train-dqn"),
        ([], "no command given: run.py <command> [flags], the command one of train-dqn"),
        (["watch", "runs/x"], "a checkpoint is named by --checkpoint runs/x"),
    ],
)
def test_what_the_parser_refuses_is_one_line_too(argv: list[str], message: str, capsys) -> None:
    """A flag tyro cannot parse (a wrong choice, not a number, no value, unknown) gets the
    same one line as a value out of range, not tyro's box."""
    code = run.main(argv)
    captured = capsys.readouterr()
    assert code == 2 and captured.err.startswith("error: "), captured.err
    assert message in captured.err and len(captured.err.strip().splitlines()) == 1, captured.err
    assert "--help" in captured.err and "╭" not in captured.err


ALE_ONLY = "--noop-max has no effect on CartPole-v1, which is no ALE game"


@pytest.mark.parametrize(
    ("argv", "notes"),
    [
        (
            ["train-dqn", "--env-id", "Playground/Catch-v0", "--distributional", "qr",
             "--v-min", "5"],
            ["--v-min has no effect without --distributional c51"],
        ),
        (
            ["train-dqn", "--env-id", "Playground/Catch-v0", "--priority-alpha", "0.5",
             "--optimizer", "sgd", "--adam-eps", "0.01"],
            ["--priority-alpha has no effect without --prioritized",
             "--adam-eps has no effect with --optimizer sgd"],
        ),
        (
            ["train-dqn", "--env-id", "Playground/Catch-v0", "--noisy", "--end-epsilon", "0.1",
             "--actor-epsilon", "0.3"],
            ["--actor-epsilon has no effect without --actors",
             "--end-epsilon has no effect with --noisy: the noise explores, and epsilon is 0 "
             "after --learning-starts"],
        ),
        (
            ["train-dqn", "--env-id", "ALE/Pong-v5", "--preset", "atari-100k",
             "--exploration-fraction", "0.2"],
            ["--exploration-fraction has no effect with --exploration-steps, which sets how "
             "long epsilon decays"],
        ),
        (["train-dqn", "--env-id", "CartPole-v1", "--noop-max", "0"], [ALE_ONLY]),
        (
            ["train-dqn", "--env-id", "CartPole-v1", "--augment"],
            ["--augment has no effect on CartPole-v1, which has no frames"],
        ),
        # What the preset sets is not the user's doing, and a setting in use gets no note.
        (["train-dqn", "--env-id", "ALE/Pong-v5", "--preset", "atari-100k", "--noisy"], []),
        (
            ["train-dqn", "--env-id", "Playground/Catch-v0", "--prioritized",
             "--priority-alpha", "0.5", "--distributional", "c51", "--v-max", "5"],
            [],
        ),
        (
            ["train-gan", "--loss", "hinge", "--label-smoothing", "0.1", "--metric-every", "0",
             "--metric-samples", "500"],
            ["--label-smoothing has no effect with --loss hinge",
             "--metric-samples has no effect with --metric-every 0"],
        ),
        (["train-gan", "--optimizer", "rmsprop", "--momentum", "0.5"], []),
    ],
)  # fmt: skip
def test_a_setting_typed_where_it_does_nothing_gets_a_note_naming_what_it_needs(
    argv: list[str], notes: list[str]
) -> None:
    import agents.config
    import agents.presets
    import gan.config
    import gan.presets
    from playground.presets import changed_settings
    from playground.settings import idle_settings

    command, cfg = run.parse(argv)
    presets, rules = (
        (agents.presets, agents.config.IDLE_WITHOUT)
        if command == "train-dqn"
        else (gan.presets, gan.config.IDLE_WITHOUT)
    )
    assert idle_settings(cfg, changed_settings(presets, cfg), rules) == notes


def test_settings_built_in_code_are_read_against_the_defaults() -> None:
    """`DQNConfig(...)` without `with_preset` has no preset's values, so only what the caller
    set counts as changed, not every field the game's preset would have set."""
    import agents.presets
    from playground.presets import changed_settings, with_preset

    built = DQNConfig(env_id="ALE/Pong-v5", v_min=-5.0)
    assert changed_settings(agents.presets, built) == {"env_id", "v_min"}
    preset = with_preset(DQNConfig, agents.presets, "atari-100k", env_id="ALE/Pong-v5", seed=3)
    assert changed_settings(agents.presets, preset) == {"env_id", "seed"}


def test_a_run_notes_a_setting_that_does_nothing_and_trains_on(tmp_path: Path, capsys) -> None:
    cfg = tiny_dqn(tmp_path, priority_alpha=0.5, total_steps=40, learning_starts=20)
    run_dir = train_dqn(cfg)
    err = capsys.readouterr().err
    assert "note: --priority-alpha has no effect without --prioritized" in err, err
    assert (run_dir / "latest.pt").is_file()
    # Resumed, the flags on the command line are what the user set: a setting it may change
    # and that does nothing is noted again (--watch-port without --watch web).
    code = run.main(
        ["train-dqn", "--resume", str(run_dir), "--total-steps", "60", "--watch-port", "9001"]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "note: --watch-port has no effect without --watch web" in err, err
    assert "--priority-alpha" not in err  # the saved setting is not the command line's
