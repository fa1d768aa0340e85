"""GAN checkpoints: what one holds, how a run's state goes in and comes back, and the
generator rebuilt from one (what `sample` needs).

A GAN checkpoint is one plain dict: `kind` "gan", `config` (the settings), `architecture`
(how to rebuild both networks, `gan.models.architecture`), `generator`, `discriminator`,
`ema_generator` (or None), both optimizers, `grad_scaler`, `fixed_noise` (the grid's noise,
the same across resumes), `step`, `dataset` (its name and class names), `rng`, `batch_rng`
(the stream of noise and batch indices) and `best_fid`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gan.models import Generator, generator_of
from playground.checkpoint import load_checkpoint
from playground.errors import UserError
from playground.seeding import rng_state, set_rng_state

CHECKPOINT_KIND = "gan"
# Entries --resume needs; a checkpoint lacking one is refused with its name.
RESUME_KEYS = (
    "config", "architecture", "generator", "discriminator", "generator_optimizer",
    "discriminator_optimizer", "fixed_noise", "step", "rng",
)  # fmt: skip


@dataclass
class GanState:
    """What changes while a GAN trains, and so what a checkpoint saves and a resume restores."""

    generator: nn.Module
    discriminator: nn.Module
    ema_generator: nn.Module | None
    generator_optimizer: torch.optim.Optimizer
    discriminator_optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    fixed_noise: torch.Tensor
    batch_rng: torch.Generator  # noise and batch indices, seeded alike on every rank
    best_fid: float = math.inf

    @property
    def sampler(self) -> nn.Module:
        """The generator that draws the samples: the moving average when there is one."""
        return self.ema_generator if self.ema_generator is not None else self.generator

    def checkpoint(
        self, step: int, cfg: Any, arch: dict[str, int | bool], dataset: dict[str, Any]
    ) -> dict[str, Any]:
        """The checkpoint of this state at `step` (`cfg`: the run's GanConfig)."""
        return {
            "kind": CHECKPOINT_KIND,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "ema_generator": (
                self.ema_generator.state_dict() if self.ema_generator is not None else None
            ),
            "generator_optimizer": self.generator_optimizer.state_dict(),
            "discriminator_optimizer": self.discriminator_optimizer.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "fixed_noise": self.fixed_noise.cpu(),
            "step": step,
            "config": asdict(cfg),
            "architecture": arch,
            "dataset": dataset,
            "rng": rng_state(),
            "batch_rng": self.batch_rng.get_state(),
            "best_fid": self.best_fid,
        }

    def restore(self, saved: dict[str, Any], reseed: int) -> bool:
        """Load a checkpoint's state into this one. Returns False when the batch stream was
        saved on another kind of device and was reseeded from `reseed` instead."""
        self.generator.load_state_dict(saved["generator"])
        self.discriminator.load_state_dict(saved["discriminator"])
        if self.ema_generator is not None and saved.get("ema_generator") is not None:
            self.ema_generator.load_state_dict(saved["ema_generator"])
        self.generator_optimizer.load_state_dict(saved["generator_optimizer"])
        self.discriminator_optimizer.load_state_dict(saved["discriminator_optimizer"])
        if saved.get("grad_scaler"):
            self.scaler.load_state_dict(saved["grad_scaler"])
        self.fixed_noise = saved["fixed_noise"].to(self.fixed_noise.device)
        self.best_fid = float(saved.get("best_fid", math.inf))
        set_rng_state(saved["rng"])
        if saved.get("batch_rng") is None:
            return True
        try:
            self.batch_rng.set_state(saved["batch_rng"])
        except RuntimeError:  # saved by a generator on another kind of device
            self.batch_rng.manual_seed(reseed)
            return False
        return True


def load_gan_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a GAN checkpoint (a file, or a run folder: its best.pt, else latest.pt)."""
    return load_checkpoint(path, kind=CHECKPOINT_KIND)


def check_same_network(saved: dict[str, Any], arch: dict[str, int | bool], path: Path) -> None:
    """Refuse a checkpoint whose networks differ from the ones this configuration builds."""
    # Checkpoints from before a setting existed were made with its old fixed value.
    held = {"batch_norm": True, "num_classes": 0, **saved.get("architecture", {})}
    differences = [
        f"{key} {held.get(key)} (asked {value})"
        for key, value in arch.items()
        if held.get(key) != value
    ]
    if differences:
        raise UserError(
            f"{path} holds a different network: {', '.join(differences)}; pass the settings of that run"
        )


def generator_from_checkpoint(state: dict[str, Any], use_ema: bool = True) -> Generator:
    """The generator stored in a GAN checkpoint (its moving average if asked and present), in
    eval mode."""
    arch = state.get("architecture")
    if not arch:
        raise UserError(
            "this GAN checkpoint has no architecture record; it was not written by train-gan"
        )
    generator = generator_of(arch)
    weights = (
        state["ema_generator"] if use_ema and state.get("ema_generator") else state["generator"]
    )
    try:
        generator.load_state_dict(weights)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise UserError(
            f"the checkpoint's generator weights do not fit its architecture ({first_line})"
        ) from None
    return generator.eval()
