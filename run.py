#!/usr/bin/env python3
"""The playground's command line: parses the settings of one command and dispatches to it.

    python run.py train-dqn --env-id Playground/Catch-v0 --total-steps 30000
    python run.py evaluate --checkpoint runs/<name>
    python run.py watch --checkpoint runs/<name>
    python run.py train-gan --dataset idx:../shared/data/MNIST/raw --steps 2000
    python run.py demo
    python run.py <command> --help     # every setting, with its default and meaning

Each command is a plain function in its package taking one frozen dataclass of settings
(tyro turns those dataclasses into flags and `--help` text from their docstrings).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


@dataclass(frozen=True)
class DemoConfig:
    """The quick-start demo: a short DQN run on a built-in game and a small DCGAN, on embedded
    defaults that need no download and no GPU."""

    env_id: str = "Playground/Catch-v0"
    """Built-in game the DQN learns."""
    dqn_steps: int = 20_000
    """Environment steps of DQN training."""
    gan_steps: int = 250
    """Training steps of the DCGAN on Atari frames (the embedded data set)."""
    device: str = "cpu"
    """Device for the demo (cpu keeps it the same on every machine; auto uses a GPU)."""
    runs_dir: str = "runs"
    """Folder for the demo's runs."""
    seed: int = 1
    """Seed of the demo runs."""


def run_demo(cfg: DemoConfig) -> None:
    """Train a DQN on a built-in game and a DCGAN on Atari frames, then say where the logs and
    checkpoints are and how to look at them."""
    from agents.dqn import LAPTOP_SETTINGS, DQNConfig, train_dqn
    from gan.train import GanConfig, train_gan

    print(f"[1/2] DQN learns {cfg.env_id} ({cfg.dqn_steps:,} steps on {cfg.device})")
    dqn_dir = train_dqn(
        DQNConfig(
            env_id=cfg.env_id,
            total_steps=cfg.dqn_steps,
            seed=cfg.seed,
            device=cfg.device,
            runs_dir=cfg.runs_dir,
            **LAPTOP_SETTINGS,
        )
    )
    print(f"[2/2] DCGAN learns to draw Atari frames ({cfg.gan_steps:,} steps on {cfg.device})")
    gan_dir = train_gan(
        GanConfig(steps=cfg.gan_steps, seed=cfg.seed, device=cfg.device, runs_dir=cfg.runs_dir)
    )
    print(f"\nDQN run:   {dqn_dir}  (latest.pt, best.pt)")
    print(f"  evaluate: python run.py evaluate --checkpoint {dqn_dir}")
    print(f"  watch:    python run.py watch --checkpoint {dqn_dir}")
    print(f"DCGAN run: {gan_dir}  (latest.pt, best.pt)")
    print(f"  sample:   python run.py sample --checkpoint {gan_dir} --output samples.png")
    print(
        f"\nTensorBoard: .venv/bin/tensorboard --logdir {cfg.runs_dir}   (then open http://localhost:6006)"
    )


def main(argv: list[str] | None = None) -> int:
    import tyro

    from agents.dqn import DQNConfig, EvaluateConfig, evaluate, train_dqn
    from agents.watch import WatchConfig, watch
    from benchmarks.suite import BenchConfig, run_bench
    from gan.sample import SampleConfig, sample
    from gan.train import GanConfig, train_gan
    from playground.errors import UserError

    commands = {  # name: (settings, function)
        "train-dqn": (DQNConfig, train_dqn),
        "evaluate": (EvaluateConfig, evaluate),
        "watch": (WatchConfig, watch),
        "train-gan": (GanConfig, train_gan),
        "sample": (SampleConfig, sample),
        "bench": (BenchConfig, run_bench),
        "demo": (DemoConfig, run_demo),
    }
    config = tyro.extras.subcommand_cli_from_dict(
        {name: config_type for name, (config_type, _) in commands.items()},
        args=argv,
        description=__doc__.split("\n\n")[0],
    )
    command = next(
        function for config_type, function in commands.values() if type(config) is config_type
    )
    try:
        command(config)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(
            "error: out of memory; reduce --buffer-size, --batch-size or --num-envs",
            file=sys.stderr,
        )
        return 2
    except Exception as error:  # noqa: BLE001 - the CUDA OOM type only exists with a GPU build
        if type(error).__name__ == "OutOfMemoryError":
            print(
                "error: out of GPU memory; reduce --batch-size or --buffer-size, or use --replay-device cpu",
                file=sys.stderr,
            )
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
