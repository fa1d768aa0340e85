"""The DCGAN presets, picked by `--dataset` (or named with `--preset`); see `playground.presets`.

What each reaches, and in how long, is in the README's table; the torchvision data sets are
downloaded by `--dataset NAME` when online (or put under `--data-dir`), so their presets are
checked where their files exist.
"""

from __future__ import annotations

from playground.presets import NONE, Preset

SELECTOR = "--dataset"

_SMALL_GREY = dict(
    image_size=32,
    generator_width=32,
    discriminator_width=32,
    batch_size=64,
    diff_augment="",
)
# Digits: class-conditional (each digit drawn on request; the grid holds one digit per column).
_DIGITS = {**_SMALL_GREY, "conditional": True, "num_samples": 100}

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "rendered-digits",
            "the embedded default: digits drawn on the spot, 32x32, a small class-conditional "
            "DCGAN, 2,000 steps",
            {**_DIGITS, "steps": 2_000, "metric_every": 500, "sample_every": 100},
            "every digit asked for drawn recognisably, a few smudged (docs/learning.md); 2 min",
        ),
        Preset(
            "digits",
            "MNIST (mnist, idx:PATH): 32x32, a small class-conditional DCGAN, 9,000 steps "
            "(8 minutes of a CPU)",
            {**_DIGITS, "steps": 9_000, "metric_every": 1_000, "sample_every": 250},
            "judged, 2 seeds: 1.06x / 1.05x real digits' confidence, 0.54x / 0.65x their "
            "feature distance, 100% / 99% the digit asked for; Ctrl-C at 10 min",
        ),
        Preset(
            "fashion",
            "Fashion-MNIST: 32x32, a small DCGAN, 9,000 steps",
            {**_SMALL_GREY, "steps": 9_000, "metric_every": 1_000, "sample_every": 250},
        ),
        Preset(
            "cifar10",
            "CIFAR-10: 32x32 colour, the DCGAN of the paper's width, 30,000 steps (a GPU)",
            dict(
                image_size=32,
                batch_size=128,
                steps=30_000,
                diff_augment="translation",
                metric_every=2_000,
                sample_every=500,
                checkpoint_every=1_000,
            ),
        ),
        Preset(
            "celeba",
            "CelebA faces: 64x64 colour, the DCGAN of the paper, 30,000 steps (a GPU)",
            dict(
                image_size=64,
                batch_size=128,
                steps=30_000,
                diff_augment="",
                metric_every=2_000,
                sample_every=500,
                checkpoint_every=1_000,
            ),
        ),
        Preset(
            "games",
            "frames of the built-in games: 32x32 colour, 3,000 steps",
            dict(
                image_size=32,
                generator_width=48,
                discriminator_width=48,
                diff_augment="",
                steps=3_000,
                metric_every=1_000,
                sample_every=100,
            ),
        ),
        Preset(
            "atari-frames",
            "frames of four ALE games (4,096): 32x32 colour, DiffAugment against overfitting",
            dict(
                image_size=32,
                diff_augment="color,translation,cutout",
                steps=3_000,
                metric_every=1_000,
                sample_every=100,
            ),
        ),
        Preset(
            "folder",
            "a folder of your images: 64x64, DiffAugment (small data sets), 10,000 steps",
            dict(
                image_size=64,
                diff_augment="color,translation,cutout",
                steps=10_000,
                metric_every=1_000,
                sample_every=250,
                checkpoint_every=500,
            ),
        ),
    )
}


def preset_for(dataset: str) -> str:
    """The preset a `--dataset` picks (`none` for `fake`, which is for speed measurements)."""
    if dataset.startswith("idx:") or dataset == "mnist":
        return "digits"
    if dataset.startswith("folder:"):
        return "folder"
    if dataset == "fashion-mnist":
        return "fashion"
    if dataset == "atari":
        return "atari-frames"
    return dataset if dataset in PRESETS else NONE
