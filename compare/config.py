"""The settings of `run.py compare` (tyro's flags). The trainer command and its flags follow
them on the command line: `run.py compare [these flags] train-dqn [its flags]`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

import tyro

from playground.errors import check, require_positive
from playground.settings import NonNegativeInt, OutputFolder, PositiveInt

TRAINERS = ("train-dqn", "train-gan")
# A flag that may be given more than once, each time with one value or more: every value
# counts (`--vary a=1,2 --vary b=3` and `--vary a=1,2 b=3` are the same grid).
Repeatable = Annotated[tuple[tuple[str, ...], ...], tyro.conf.UseAppendAction]


def flat(values: tuple[Any, ...]) -> tuple[str, ...]:
    """The values of a Repeatable flag, in order (plain strings are taken as they are)."""
    return tuple(value for item in values for value in ((item,) if isinstance(item, str) else item))


@dataclass(frozen=True)
class CompareConfig:
    """Run variants of one train-dqn / train-gan command side by side (seeds, a grid of flag
    values), then tabulate and plot them. Put the trainer and its flags last:
    run.py compare --vary optimizer=adam,sgd --seeds 2 train-dqn --env-id Playground/Catch-v0"""

    vary: Repeatable = ()
    """FLAG=VALUE,VALUE,... (repeatable): a flag of the trainer and the values to try; the grid
    is every combination, e.g. --vary optimizer=adam,sgd encoder=nature,vgg."""
    variant: Repeatable = ()
    """NAME="FLAGS" (repeatable): a named arm run beside the command as given, e.g. --variant
    c51="--distributional c51" spr="--spr-weight 2": an ablation, one ingredient per arm (with
    --vary, every arm runs the whole grid)."""
    seeds: PositiveInt = 3
    """Seeds per variant (1, 2, ...); the table shows the mean and a 95% confidence interval."""
    parallel: NonNegativeInt = 0
    """Runs at a time (0: one per 2 CPU cores, at least 1)."""
    threads: NonNegativeInt = 0
    """Torch threads per run (0: the cores shared out, cores / --parallel); fewer leave cores
    to whatever else runs on the machine (a long run beside the comparison)."""
    name: str = ""
    """The comparison's folder under --runs-dir (default: compare-<time>); run it again with
    the same name to resume: finished runs are kept, interrupted ones continue."""
    runs_dir: OutputFolder = "runs"
    """Folder holding the comparison's folder."""
    base: Annotated[tuple[str, ...], tyro.conf.Suppress] = ()
    """The trainer command and its flags (what follows the trainer's name on the line)."""


def validate(cfg: CompareConfig) -> None:
    check(
        bool(cfg.base) and cfg.base[0] in TRAINERS,
        "compare needs a trainer command at the end: run.py compare --vary FLAG=A,B "
        "train-dqn --env-id ... (or train-gan ...)",
    )
    require_positive(seeds=cfg.seeds)
    check(cfg.parallel >= 0, f"--parallel must be >= 0, got {cfg.parallel}")
    for item in flat(cfg.variant):
        name, equals, flags = item.partition("=")
        check(
            bool(equals and re.fullmatch(r"[A-Za-z0-9_.+-]+", name) and flags.strip()),
            f'--variant {item!r}: write NAME="FLAGS" (e.g. c51="--distributional c51"; '
            "the name in letters, digits, _ . + -)",
        )
    for item in flat(cfg.vary):
        flag, equals, values = item.partition("=")
        check(
            bool(equals and flag and values and all(values.split(","))),
            f"--vary {item!r}: write FLAG=VALUE,VALUE,... (e.g. optimizer=adam,sgd)",
        )
