"""The quick-start demo (`make demo`, `run.py demo`): a DQN learns a built-in game and a small
DCGAN learns to draw, on embedded defaults that need no download and no GPU; then it says
where everything is and how to look at it."""

from __future__ import annotations

from dataclasses import dataclass


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
    from agents.config import LAPTOP_SETTINGS, DQNConfig
    from agents.dqn import train_dqn
    from gan.config import GanConfig
    from gan.train import train_gan

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
