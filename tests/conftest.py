"""Shared test set-up: no window ever opens, and helpers to read TensorBoard files back."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

MNIST_RAW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "MNIST" / "raw"


def read_event_tags(log_dir: Path) -> dict[str, list[str]]:
    """Tags in a TensorBoard run folder, by kind ("scalars", "images", "tensors", ...)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(
        str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0}
    )
    accumulator.Reload()
    return accumulator.Tags()


def read_scalars(log_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) points of one scalar tag."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def hparams_tags(log_dir: Path) -> list[str]:
    """Tags written by the HParams plugin (they hold the run's hyperparameters)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    return list(accumulator.PluginTagToContent("hparams"))


@pytest.fixture
def mnist_raw() -> Path:
    if not (MNIST_RAW / "t10k-images-idx3-ubyte").is_file():
        pytest.skip(f"MNIST test split not found at {MNIST_RAW}")
    return MNIST_RAW


def small_gan(tmp_path: Path, **changes: object):
    """A DCGAN run of seconds on random images (no metric, no sample grids)."""
    from gan.config import GanConfig

    settings: dict[str, object] = dict(
        dataset="fake", preset="none", steps=4, batch_size=8, generator_width=8,
        discriminator_width=8, metric_every=0, sample_every=0, checkpoint_every=2,
        runs_dir=str(tmp_path), run_name="gan", device="cpu", progress=False,
    )  # fmt: skip
    settings.update(changes)
    return GanConfig(**settings)
