"""The quick-start demo (`make demo`, `run.py demo`): a DQN learns a built-in game and a DCGAN
learns to draw digits, on embedded defaults that need no download and no GPU (each with the
preset made for it); then it says where everything is and how to look at it."""

from __future__ import annotations

from dataclasses import dataclass

from playground.settings import NonNegativeInt, OutputFolder, Seed


@dataclass(frozen=True)
class DemoConfig:
    """The quick-start demo: a DQN learns a built-in game and a DCGAN learns to draw digits, on
    embedded defaults that need no download and no GPU."""

    env_id: str = "Playground/Catch-v0"
    """Built-in game the DQN learns (with its preset)."""
    dqn_steps: NonNegativeInt = 0
    """Environment steps of DQN training (0: the game's preset)."""
    gan_steps: NonNegativeInt = 0
    """Training steps of the DCGAN on rendered digits (0: its preset)."""
    device: str = "cpu"
    """Device for the demo (cpu keeps it the same on every machine; auto uses a GPU)."""
    runs_dir: OutputFolder = "runs"
    """Folder for the demo's runs."""
    seed: Seed = 1
    """Seed of the demo runs."""


def run_demo(cfg: DemoConfig) -> None:
    """Train a DQN on a built-in game and a DCGAN on rendered digits, then say where the logs,
    checkpoints and pictures are and how to look at them."""
    import agents.presets
    import gan.presets
    from agents.config import DQNConfig
    from agents.dqn import train_dqn
    from gan.config import GanConfig, SampleConfig
    from gan.sample import sample
    from gan.train import train_gan
    from playground.presets import with_preset

    common = dict(seed=cfg.seed, device=cfg.device, runs_dir=cfg.runs_dir)
    steps = {"total_steps": cfg.dqn_steps} if cfg.dqn_steps else {}
    dqn = with_preset(DQNConfig, agents.presets, "auto", env_id=cfg.env_id, **common, **steps)
    print(f"[1/2] DQN learns {cfg.env_id} ({dqn.total_steps:,} steps on {cfg.device})")
    dqn_dir = train_dqn(dqn)
    overrides = {"steps": cfg.gan_steps} if cfg.gan_steps else {}
    gan_cfg = with_preset(GanConfig, gan.presets, "rendered-digits", **common, **overrides)
    print(f"[2/2] DCGAN learns to draw digits ({gan_cfg.steps:,} steps on {cfg.device})")
    gan_dir = train_gan(gan_cfg)
    grid = sample(
        SampleConfig(checkpoint=str(gan_dir), output=str(gan_dir / "samples.png"), num_images=100)
    )

    print(f"\nDQN run:   {dqn_dir}  (latest.pt, best.pt)")
    print(f"  evaluate: python run.py evaluate --checkpoint {dqn_dir}")
    print(f"  watch:    python run.py watch --checkpoint {dqn_dir}")
    print(f"DCGAN run: {gan_dir}  (latest.pt, best.pt)")
    print(
        f"  samples:  {grid}   <- open this picture: 100 digits the generator drew, 0-9 by column"
    )
    print(f"  sevens:   python run.py sample --checkpoint {gan_dir} --label 7 --output sevens.png")
    print(
        f"  more:     python run.py sample --checkpoint {gan_dir} --interpolate --output walk.gif"
    )
    print(
        f"\nTensorBoard: .venv/bin/tensorboard --logdir {cfg.runs_dir}   (then open http://localhost:6006)"
    )
