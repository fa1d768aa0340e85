#!/usr/bin/env python3
"""The playground's command line: parses the settings of one command and dispatches to it.

    python run.py train-dqn --env-id Playground/Catch-v0
    python run.py evaluate --checkpoint runs/<name>
    python run.py watch --checkpoint runs/<name>
    python run.py train-gan --dataset idx:../shared/data/MNIST/raw
    python run.py sample --checkpoint runs/<name>
    python run.py demo
    python run.py <command> --help     # every setting, with its default and meaning

Each command is a plain function taking one frozen dataclass of settings (tyro turns those
dataclasses into flags and `--help` text from their docstrings). Only the settings modules are
imported to parse; a command's own modules are imported when it runs. Wherever a command reads
a checkpoint, a run folder means its best.pt, or its latest.pt while it has no best.pt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import os
import sys
from typing import Any

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

# name: (settings dataclass, function), as "module:attribute"
COMMANDS: dict[str, tuple[str, str]] = {
    "train-dqn": ("agents.config:DQNConfig", "agents.dqn:train_dqn"),
    "evaluate": ("agents.config:EvaluateConfig", "agents.evaluate:evaluate"),
    "watch": ("viewer.config:WatchConfig", "viewer.app:watch"),
    "train-gan": ("gan.config:GanConfig", "gan.train:train_gan"),
    "sample": ("gan.config:SampleConfig", "gan.sample:sample"),
    "bench": ("benchmarks.suite:BenchConfig", "benchmarks.suite:run_bench"),
    "compare": ("compare.config:CompareConfig", "compare.grid:run_compare"),
    "demo": ("demo:DemoConfig", "demo:run_demo"),
}
# What to do when a command runs out of memory (the trainers say it themselves, in detail).
OUT_OF_MEMORY = {
    "train-dqn": "lower --batch-size, --buffer-size or --num-envs, or use --replay-device cpu",
    "evaluate": "use --device cpu, or fewer --envs",
    "watch": "use --device cpu",
    "train-gan": "lower --batch-size or --metric-samples, or use a smaller --image-size",
    "sample": "use --device cpu, or fewer --num-images",
    "bench": "use --device cpu, or fewer --num-envs",
    "compare": "run fewer at a time with --parallel",
    "demo": "close other programs; the demo needs about 2 GiB",
}
# Commands whose defaults come from a preset (see playground/presets.py).
PRESETS = {"train-dqn": "agents.presets", "train-gan": "gan.presets"}


def load(target: str) -> Any:
    """The object a "module:attribute" string names."""
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)


def preset_defaults(name: str, argv: list[str]) -> Any:
    """The settings `name`'s flags start from: the preset the command line picks."""
    config_type = load(COMMANDS[name][0])
    from playground.presets import choose, with_preset

    presets = importlib.import_module(PRESETS[name])
    return with_preset(config_type, presets, choose(presets, argv, config_type))


def parse(argv: list[str] | None = None) -> tuple[str, Any]:
    """The command named on the command line and its settings (a preset's settings, when the
    command has presets, under the flags given). `compare` takes the trainer command that ends
    its line as its `base`, and every run of its grid is parsed here before anything starts."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        from playground.errors import UserError

        raise UserError(
            f"no command given: run.py <command> [flags], the command one of {', '.join(COMMANDS)}"
            " (start with run.py demo; see run.py --help)"
        )
    named = next((token for token in argv if token in COMMANDS), None)
    if named != "compare":
        return _parse_one(argv, named)
    start = argv.index("compare")
    trainer = next(
        (index for index in range(start + 1, len(argv)) if argv[index] in PRESETS), len(argv)
    )
    name, config = _parse_one(argv[:trainer], named)
    config = dataclasses.replace(config, base=tuple(argv[trainer:]))
    from compare.grid import commands

    for run_argv in commands(config):
        _parse_one(run_argv, run_argv[0])  # a flag no run takes fails here, before any run
    return name, config


CHECKPOINT_COMMANDS = ("evaluate", "watch", "sample")  # each takes --checkpoint PATH


def _parse_one(argv: list[str], named: str | None) -> tuple[str, Any]:
    """tyro's parse of one command line, the command `named` starting from its preset."""
    from typing import Annotated, Union

    import tyro

    config_types = {name: load(config) for name, (config, _) in COMMANDS.items()}
    choices = [
        Annotated[
            config_type,
            tyro.conf.subcommand(name, prefix_name=False)
            if name != named or name not in PRESETS
            else tyro.conf.subcommand(name, default=preset_defaults(name, argv), prefix_name=False),
        ]
        for name, config_type in config_types.items()
    ]
    messages = io.StringIO()
    try:
        with contextlib.redirect_stderr(messages):
            config = tyro.cli(
                Union[tuple(choices)],  # noqa: UP007 (tyro reads the Annotated members of a Union)
                args=argv,
                prog="run.py",
                description=__doc__.split("\n\n")[0],
            )
    except SystemExit as exit_:
        if exit_.code not in (0, None):  # a parse error: one line, as every other bad value
            from playground.errors import UserError

            message = one_line(messages.getvalue())
            if named in CHECKPOINT_COMMANDS and "--checkpoint" not in argv:
                unrecognized = message.removeprefix("Unrecognized options: ").split(" (")[0]
                stray = [t for t in unrecognized.split(", ") if not t.startswith("-")]
                if message.startswith("Unrecognized") and stray:  # `watch runs/X`
                    message += f"; a checkpoint is named by --checkpoint {stray[0]}"
            raise UserError(message) from None
        sys.stderr.write(messages.getvalue())
        raise
    sys.stderr.write(messages.getvalue())  # tyro's warnings, if any
    name = next(name for name, config_type in config_types.items() if type(config) is config_type)
    return name, config


def one_line(box: str) -> str:
    """tyro's boxed parse error as one line: its message, the subcommands it offers, and
    where the help is ("invalid choice 'x' for argument '--loss'. Expected one of ('huber',
    'mse') (see run.py train-dqn --help)")."""
    sections: list[list[str]] = [[]]
    boxed = False  # on a terminal a box with the title in its top edge; else plain text, the
    for raw in box.splitlines():  # title on a line of its own, then "----" between sections
        line = raw.strip().strip("│").strip()
        if line.startswith(("╭", "╰")):
            boxed = True
            continue
        if line and set(line) <= set("─-"):
            sections.append([])
        elif line:
            sections[-1].append(line)
    texts = [_joined(section) for section in sections if section]
    if not boxed and len(texts) > 1:
        texts = texts[1:]
    if not texts:
        return "the command line could not be parsed (see run.py --help)"
    message = texts[0].rstrip(".")
    message += "".join(
        f"; {text.rstrip('.')}" for text in texts[1:] if text.startswith("Available")
    )
    helps = [text for text in texts if text.startswith("For full helptext")]
    if helps:
        where = helps[-1].split(",", 1)[-1].strip().removeprefix("run ").removeprefix("see ")
        message += f" (see {where})"
    return message


def _joined(lines: list[str]) -> str:
    """Lines a box wrapped, joined back (no space before a piece that starts with punctuation)."""
    text = lines[0]
    for line in lines[1:]:
        text += line if line[0] in ".,;:)" else " " + line
    return text


def _command_argv(argv: list[str] | None, name: str) -> list[str]:
    """The tokens after the command's name."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return argv[argv.index(name) + 1 :] if name in argv else argv


def main(argv: list[str] | None = None) -> int:
    from playground.errors import UserError
    from playground.settings import check_settings

    try:
        name, config = parse(argv)
        check_settings(config)  # every setting's declared range, before anything starts
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        command = load(COMMANDS[name][1])
        if getattr(config, "resume", ""):
            # A resumed run takes the flags on the command line, whatever their values.
            from playground.resume import given_fields

            command(config, given=given_fields(type(config), _command_argv(argv, name)))
        else:
            command(config)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"error: {name} ran out of memory; {OUT_OF_MEMORY[name]}", file=sys.stderr)
        return 2
    except Exception as error:
        if type(error).__name__ != "OutOfMemoryError":  # torch's, without importing torch here
            raise
        print(f"error: {name} ran out of device memory; {OUT_OF_MEMORY[name]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
