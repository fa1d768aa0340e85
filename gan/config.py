"""The settings of `train-gan` and `sample` (frozen dataclasses: tyro's flags and `--help`)
and `validate`. Importing this module loads no data, network or metric code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import tyro

from playground.errors import check
from playground.optim import OptimizerName, check_optimizer
from playground.resume import resume_help
from playground.settings import (
    InputPath,
    Needs,
    NonNegativeFloat,
    NonNegativeInt,
    OutputFolder,
    OutputPath,
    Port,
    PositiveFloat,
    PositiveInt,
    Seed,
    at_least,
    between,
    check_settings,
)

Fraction = between(float, 0, 1, high_open=True)  # dropout, momentum, EMA decay: [0, 1)
Share = between(float, 0, 1, low_open=True)  # --top-k: (0, 1]
Smoothing = between(float, 0, 0.5, high_open=True)  # --label-smoothing: [0, 0.5)
MetricSamples = at_least(int, 2)
Label = at_least(int, -1)

# Settings a resumed run may change: none of them changes what is learned.
RESUME_OVERRIDABLE = ("steps", "device", "progress", "watch", "watch_host", "watch_port")
ResumeFolder = Annotated[str, tyro.conf.arg(help=resume_help(RESUME_OVERRIDABLE), metavar="RUN")]


@dataclass(frozen=True)
class GanConfig:
    """Train a DCGAN on an image data set (the embedded default: digits drawn on the spot)."""

    dataset: str = "rendered-digits"
    """rendered-digits (embedded: drawn on the spot), games (frames of the built-in games), atari
    (frames of ALE games), mnist, fashion-mnist, cifar10, celeba (torchvision), idx:PATH (MNIST
    files), folder:PATH (your images), or fake (random images, for speed measurements)"""
    preset: str = "auto"
    """settings made for a data set, under the flags given here: auto (the one --dataset picks),
    none (the defaults), or a name: rendered-digits, digits, fashion, cifar10, celeba, games,
    atari-frames, folder (the README has the table)"""
    data_dir: str = "data"
    """where torchvision data sets (mnist, fashion-mnist, cifar10, celeba) are looked for"""
    max_images: NonNegativeInt = 0
    """keep a seeded random subset of this many images (0: all)"""
    image_size: Literal[32, 64, 128] = 32
    """side of the square images: 32, 64 or 128"""
    channels: int | None = None
    """1 (grey) or 3 (colour); default: the data set's own"""
    latent_size: PositiveInt = 100
    """length of the noise vector z"""
    conditional: bool = False
    """a class-conditional DCGAN: G draws the class it is given, D judges image and label
    together (both read the label one-hot); needs a labelled data set (digits, games, ...)"""
    generator_width: PositiveInt = 64
    """channels of the generator's last hidden layer (ngf); doubles towards 4 x 4"""
    discriminator_width: PositiveInt = 64
    """channels of the discriminator's first layer (ndf); doubles towards 4 x 4"""
    batch_size: PositiveInt = 64
    """real (and fake) images per step, over all processes (torchrun splits it evenly)"""
    sync_batch_norm: bool = False
    """under torchrun, batch norm uses the statistics of the global batch, not each process's"""
    steps: Annotated[PositiveInt, tyro.conf.arg(aliases=("--total-steps",))] = 250
    """total training steps (a resumed run continues up to this number); --total-steps, as
    train-dqn names it, works too"""
    generator_learning_rate: PositiveFloat = 2e-4
    """generator step size"""
    discriminator_learning_rate: PositiveFloat = 2e-4
    """discriminator step size"""
    learning_rate_decay: Literal["none", "linear"] = "none"
    """none, or linear: both learning rates fall linearly to zero at --steps"""
    betas: tuple[float, float] = (0.5, 0.999)
    """Adam's beta1, beta2 (the DCGAN paper lowers beta1 to 0.5)"""
    optimizer: OptimizerName = "adam"
    """optimizer for both networks"""
    momentum: Fraction = 0.0
    """momentum for sgd and rmsprop"""
    nesterov: bool = False
    """Nesterov momentum (sgd)"""
    loss: Literal["nonsaturating", "hinge"] = "nonsaturating"
    """GAN loss: the non-saturating BCE of the DCGAN paper, or the hinge loss"""
    label_smoothing: Smoothing = 0.0
    """one-sided label smoothing: D's target for real images is 1 minus this (nonsaturating loss)"""
    top_k: Share = 1.0
    """the generator learns from this fraction of its batch that D finds most real, going down
    linearly from the whole batch at the start to it at --steps (Sinha et al. 2020; 1: off)"""
    spectral_norm: bool = False
    """spectral normalisation in the discriminator (replaces its batch norm)"""
    batch_norm: bool = True
    """batch norm in both networks, as the DCGAN paper (--no-batch-norm leaves it out)"""
    dropout: Fraction = 0.0
    """dropout after each hidden block of the discriminator"""
    weight_decay: NonNegativeFloat = 0.0
    """weight decay of both networks (decoupled, AdamW-style, with adam)"""
    ema_decay: Fraction = 0.999
    """decay of the generator's exponential moving average used for samples and metrics (0: off)"""
    diff_augment: str = "color,translation,cutout"
    """DiffAugment before D: a comma-separated subset of color,translation,cutout ("" off)"""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """autocast precision on CUDA (CPU always runs fp32)"""
    channels_last: bool = True
    """channels-last memory format (faster convolutions: ~20% on a 2-core CPU, more on GPUs)"""
    compile: bool = False
    """torch.compile both networks (slow start, faster steps)"""
    device: str = "auto"
    """auto|cpu|cuda|cuda:N|mps"""
    seed: Seed = 1
    """seed for data collection, initialisation and noise"""
    runs_dir: OutputFolder = "runs"
    """folder holding one sub-folder per run"""
    run_name: str = ""
    """run folder name (default gan-<dataset>-s<seed>-<time>)"""
    resume: ResumeFolder = ""
    log_every: PositiveInt = 10
    """steps between loss / throughput logs (the only host syncs of the loop)"""
    sample_every: NonNegativeInt = 50
    """steps between fixed-noise sample grids (0: only at the end)"""
    metric_every: NonNegativeInt = 250
    """steps between FID/KID evaluations (also at the end) that pick best.pt (0: no metric)"""
    metric_samples: MetricSamples = 1000
    """generated (and at most this many real) images per FID/KID evaluation"""
    metric_feature: Literal["auto", "inception", "classifier"] = "auto"
    """FID features: inception (needs --inception-weights), classifier (offline), auto"""
    inception_weights: InputPath = ""
    """local path of pt_inception-2015-12-05-6726825d.pth for Inception FID ("" none)"""
    checkpoint_every: PositiveInt = 100
    """steps between latest.pt saves (also saved at the end and on Ctrl-C)"""
    num_samples: PositiveInt = 64
    """images in the fixed-noise grid"""
    progress: bool = True
    """show a progress bar"""
    watch: Literal["none", "web"] = "none"
    """web: serve a page with the fixed-noise samples as they change, the real images, D(x),
    D(G(z)) and the losses while it trains (a separate process)"""
    watch_host: str = "127.0.0.1"
    """with --watch web: the address to serve on; beyond loopback the printed token is needed"""
    watch_port: Port = 8765
    """with --watch web: the port to serve on"""


def validate(cfg: GanConfig) -> None:
    """Refuse impossible settings before anything is loaded or created: every field outside
    the range its type declares, then the combinations that cannot work."""
    from gan.augment import parse_policy  # torch-level modules, loaded late
    from gan.data import check_dataset_spec
    from gan.models import check_image_size

    check_settings(cfg)
    check_image_size(cfg.image_size)
    check_dataset_spec(cfg.dataset)
    check(cfg.channels in (None, 1, 3), f"--channels {cfg.channels}: use 1 (grey) or 3 (colour)")
    check_optimizer(cfg.optimizer)
    check(
        cfg.loss in ("nonsaturating", "hinge"), f"--loss {cfg.loss!r}: use nonsaturating or hinge"
    )
    check(
        cfg.precision in ("fp32", "bf16", "fp16"),
        f"--precision {cfg.precision!r}: use fp32, bf16 or fp16",
    )
    check(
        len(cfg.betas) == 2 and all(0.0 <= beta < 1.0 for beta in cfg.betas),
        f"--betas must be two numbers in [0, 1), got {cfg.betas}",
    )
    check(not cfg.nesterov or cfg.momentum > 0, "--nesterov needs --momentum > 0")
    check(
        cfg.metric_feature != "inception" or bool(cfg.inception_weights),
        "--metric-feature inception needs --inception-weights PATH (nothing is downloaded)",
    )
    parse_policy(cfg.diff_augment)


# Settings that do nothing without another (a run notes each one the command line set in vain).
IDLE_WITHOUT: tuple[Needs, ...] = (
    Needs(("label_smoothing",), lambda c: c.loss != "nonsaturating", "with --loss {loss}"),
    Needs(
        ("betas",), lambda c: c.optimizer != "adam", "with --optimizer {optimizer} (adam uses them)"
    ),
    Needs(
        ("momentum",),
        lambda c: c.optimizer not in ("sgd", "rmsprop"),
        "with --optimizer {optimizer} (sgd and rmsprop use it)",
    ),
    Needs(("sync_batch_norm",), lambda c: not c.batch_norm, "with --no-batch-norm"),
    Needs(
        ("metric_samples", "metric_feature", "inception_weights"),
        lambda c: c.metric_every == 0,
        "with --metric-every 0",
    ),
    Needs(("watch_host", "watch_port"), lambda c: c.watch != "web", "without --watch web"),
)


@dataclass(frozen=True)
class SampleConfig:
    """Draw images, a grid or a latent-space walk from a trained DCGAN checkpoint."""

    checkpoint: InputPath = ""
    """a GAN checkpoint (.pt) or a run folder (its best.pt, or latest.pt while it has none)"""
    output: OutputPath = ""
    """where to write: a .png grid, a folder of PNGs, or a .gif/.mp4 walk (default: in the run folder)"""
    num_images: PositiveInt = 64
    """images to draw (cells of the walk with --interpolate)"""
    grid: bool = True
    """one grid PNG instead of one PNG per image"""
    interpolate: bool = False
    """write a latent-space walk (GIF, or MP4 when --output ends in .mp4)"""
    interpolation_steps: PositiveInt = 30
    """frames between two latent points of the walk"""
    fps: PositiveInt = 20
    """frames per second of the walk"""
    seed: Seed = 0
    """seed of the latent noise"""
    label: Label = -1
    """with a conditional checkpoint: draw only this class (-1: every class in turn, one per
    column of the grid)"""
    use_ema: bool = True
    """use the moving-average generator when the checkpoint has one"""
    device: str = "auto"
    """auto|cpu|cuda|cuda:N|mps"""
