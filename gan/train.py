"""Train a DCGAN: one loop, top to bottom, "update D" then "update G" each step.

    train_gan(GanConfig(dataset="atari", steps=250))  # -> runs/gan-atari-s1-<time>/

Every `log_every` steps it logs `losses/d_loss`, `losses/g_loss`, `gan/d_real`, `gan/d_fake`
(mean sigmoid of D's logits on real and fake images) and `perf/images_per_sec`; every
`sample_every` steps an image grid `samples/fixed_noise` from one fixed batch of noise (kept
in the checkpoint, so the grid is the same across resumes); every `metric_every` steps
`metrics/fid` and `metrics/kid` (gan.metrics), the lowest FID deciding `best.pt`.
"""

from __future__ import annotations

import copy
import math
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from gan.augment import diff_augment, parse_policy
from gan.data import (
    ImageDataset,
    check_dataset_spec,
    data_device,
    load_dataset,
    native_channels,
    to_float,
    to_uint8,
)
from gan.distributed import Distributed, sync_batch_norm
from gan.losses import discriminator_loss, generator_loss
from gan.models import Generator, architecture, build_models, check_image_size
from playground.checkpoint import load_checkpoint, save_checkpoint
from playground.config import resolve_resume_dir, resumed_settings
from playground.device import resolve_device
from playground.errors import UserError, check, require_positive
from playground.logger import Logger, TensorBoardLogger
from playground.optim import OPTIMIZERS, make_optimizer
from playground.progress import Progress
from playground.rundir import RunLock, default_run_name, prepare_run_dir
from playground.seeding import rng_state, seed_everything, set_rng_state

try:  # FID/KID are optional: without gan.metrics (or torchmetrics) no metric is logged.
    from gan.metrics import QualityMetric
except ImportError:  # pragma: no cover - depends on the installation
    QualityMetric = None


RESUME_OVERRIDABLE = ("steps", "device", "progress")


@dataclass(frozen=True)
class GanConfig:
    """Train a DCGAN on an image data set (the embedded default: Atari frames, offline)."""

    dataset: str = "atari"
    """atari (built in, offline), mnist, fashion-mnist, cifar10, celeba, idx:PATH, folder:PATH,
    or fake (random images, for speed measurements)"""
    data_dir: str = "data"
    """where torchvision data sets (mnist, fashion-mnist, cifar10, celeba) are looked for"""
    max_images: int = 0
    """keep a seeded random subset of this many images (0: all)"""
    image_size: int = 32
    """side of the square images: 32, 64 or 128"""
    channels: int | None = None
    """1 (grey) or 3 (colour); default: the data set's own"""
    latent_size: int = 100
    """length of the noise vector z"""
    generator_width: int = 64
    """channels of the generator's last hidden layer (ngf); doubles towards 4 x 4"""
    discriminator_width: int = 64
    """channels of the discriminator's first layer (ndf); doubles towards 4 x 4"""
    batch_size: int = 64
    """real (and fake) images per step, over all processes (torchrun splits it evenly)"""
    sync_batch_norm: bool = False
    """under torchrun, batch norm uses the statistics of the global batch, not each process's"""
    steps: int = 250
    """total training steps (a resumed run continues up to this number)"""
    generator_learning_rate: float = 2e-4
    """generator step size"""
    discriminator_learning_rate: float = 2e-4
    """discriminator step size"""
    betas: tuple[float, float] = (0.5, 0.999)
    """Adam's beta1, beta2 (the DCGAN paper lowers beta1 to 0.5)"""
    optimizer: Literal["adam", "rmsprop", "sgd", "adagrad", "adadelta"] = "adam"
    """optimizer for both networks"""
    momentum: float = 0.0
    """momentum for sgd and rmsprop"""
    nesterov: bool = False
    """Nesterov momentum (sgd)"""
    loss: Literal["nonsaturating", "hinge"] = "nonsaturating"
    """GAN loss: the non-saturating BCE of the DCGAN paper, or the hinge loss"""
    spectral_norm: bool = False
    """spectral normalisation in the discriminator (replaces its batch norm)"""
    ema_decay: float = 0.999
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
    seed: int = 1
    """seed for data collection, initialisation and noise"""
    runs_dir: str = "runs"
    """folder holding one sub-folder per run"""
    run_name: str = ""
    """run folder name (default gan-<dataset>-s<seed>-<time>)"""
    resume: str = ""
    """continue the run in this folder (or runs/<name>) from its latest.pt with its saved
    settings; --steps, --device and --progress given here override them"""
    log_every: int = 10
    """steps between loss / throughput logs (the only host syncs of the loop)"""
    sample_every: int = 50
    """steps between fixed-noise sample grids (0: only at the end)"""
    metric_every: int = 250
    """steps between FID/KID evaluations (also at the end) that pick best.pt (0: no metric)"""
    metric_samples: int = 1000
    """generated (and at most this many real) images per FID/KID evaluation"""
    metric_feature: Literal["auto", "inception", "classifier"] = "auto"
    """FID features: inception (needs --inception-weights), classifier (offline), auto"""
    inception_weights: str = ""
    """local path of pt_inception-2015-12-05-6726825d.pth for Inception FID ("" none)"""
    checkpoint_every: int = 100
    """steps between latest.pt saves (also saved at the end and on Ctrl-C)"""
    num_samples: int = 64
    """images in the fixed-noise grid"""
    progress: bool = True
    """show a progress bar"""


def validate(cfg: GanConfig) -> None:
    """Refuse impossible settings before anything is loaded or created."""
    check_image_size(cfg.image_size)
    check_dataset_spec(cfg.dataset)
    check(cfg.channels in (None, 1, 3), f"--channels {cfg.channels}: use 1 (grey) or 3 (colour)")
    require_positive(
        latent_size=cfg.latent_size,
        generator_width=cfg.generator_width,
        discriminator_width=cfg.discriminator_width,
        batch_size=cfg.batch_size,
        steps=cfg.steps,
        generator_learning_rate=cfg.generator_learning_rate,
        discriminator_learning_rate=cfg.discriminator_learning_rate,
        log_every=cfg.log_every,
        checkpoint_every=cfg.checkpoint_every,
        metric_samples=cfg.metric_samples,
        num_samples=cfg.num_samples,
    )
    check(cfg.max_images >= 0, f"--max-images must be 0 or positive, got {cfg.max_images}")
    check(cfg.sample_every >= 0, f"--sample-every must be 0 or positive, got {cfg.sample_every}")
    check(cfg.metric_every >= 0, f"--metric-every must be 0 or positive, got {cfg.metric_every}")
    check(cfg.metric_samples >= 2, f"--metric-samples must be at least 2, got {cfg.metric_samples}")
    check(
        cfg.optimizer in OPTIMIZERS,
        f"--optimizer {cfg.optimizer!r} is not one of {', '.join(OPTIMIZERS)}",
    )
    check(
        cfg.loss in ("nonsaturating", "hinge"), f"--loss {cfg.loss!r}: use nonsaturating or hinge"
    )
    check(
        cfg.precision in ("fp32", "bf16", "fp16"),
        f"--precision {cfg.precision!r}: use fp32, bf16 or fp16",
    )
    check(0.0 <= cfg.ema_decay < 1.0, f"--ema-decay must be in [0, 1), got {cfg.ema_decay}")
    check(
        len(cfg.betas) == 2 and all(0.0 <= beta < 1.0 for beta in cfg.betas),
        f"--betas must be two numbers in [0, 1), got {cfg.betas}",
    )
    check(cfg.momentum >= 0.0, f"--momentum must be 0 or positive, got {cfg.momentum}")
    check(not cfg.nesterov or cfg.momentum > 0, "--nesterov needs --momentum > 0")
    check(
        cfg.metric_feature != "inception" or bool(cfg.inception_weights),
        "--metric-feature inception needs --inception-weights PATH (nothing is downloaded)",
    )
    parse_policy(cfg.diff_augment)


def train_gan(cfg: GanConfig, logger: Logger | None = None) -> Path:
    """Train a DCGAN as `cfg` says; return the run folder (latest.pt, best.pt, event files).

    Under `torchrun` every process calls this; they train one model with DDP (gradients
    averaged, `cfg.batch_size` split over them) and rank 0 alone writes the run folder."""
    distributed = Distributed.from_env()
    try:
        return _train_gan(cfg, logger, distributed)
    finally:
        distributed.close()


def _train_gan(cfg: GanConfig, logger: Logger | None, distributed: Distributed) -> Path:
    previous = None
    if cfg.resume:
        # Rank 0 reads the checkpoint and hands it to the others: every rank resumes from the
        # same state, and the other machines need no copy of the run folder.
        run_dir, previous = distributed.run_on_main(
            lambda: read_resume_checkpoint(cfg.resume, cfg.runs_dir)
        )
        cfg = resumed_settings(GanConfig, previous["config"], cfg, RESUME_OVERRIDABLE)
    validate(cfg)
    distributed.local_batch_size(cfg.batch_size)  # refuses a batch that does not split evenly
    device = distributed.device(resolve_device(cfg.device))
    precision = cfg.precision
    if precision != "fp32" and device.type != "cuda":
        print(f"note: --precision {precision} applies on CUDA only; running fp32 on {device.type}")
        precision = "fp32"
    augment_policy = parse_policy(cfg.diff_augment)

    seed_everything(cfg.seed)
    # The data come first, so a missing data set leaves no run folder behind.
    data = load_dataset(
        cfg.dataset,
        cfg.image_size,
        cfg.channels or native_channels(cfg.dataset),
        cfg.data_dir,
        cfg.seed,
        cfg.max_images,
    )
    channels = data.channels
    arch = architecture(
        cfg.image_size,
        channels,
        cfg.latent_size,
        cfg.generator_width,
        cfg.discriminator_width,
        cfg.spectral_norm,
    )
    if distributed.is_main:
        print(
            f"data: {data.name}, {len(data)} images of {channels} x {cfg.image_size} x "
            f"{cfg.image_size}"
            + (f"; {distributed.world_size} processes" if distributed.enabled else "")
        )

    if previous is None:
        run_name = cfg.run_name or default_run_name("gan", cfg.dataset, cfg.seed)
        run_dir = distributed.run_on_main(
            lambda: prepare_run_dir(cfg.runs_dir, run_name, resume=False)
        )
    with RunLock(run_dir) if distributed.is_main else nullcontext():
        start_step = int(previous["step"]) if previous is not None else 0
        if start_step >= cfg.steps:
            raise UserError(
                f"{run_dir} is already at step {start_step}; pass --steps above it to continue"
            )

        # ---- networks, optimizers, state ----
        generator, discriminator = build_models(arch)
        if distributed.enabled and cfg.sync_batch_norm:
            generator = sync_batch_norm(generator, device)
            discriminator = sync_batch_norm(discriminator, device)
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        generator.to(device, memory_format=memory_format)
        discriminator.to(device, memory_format=memory_format)
        ema_generator = (
            copy.deepcopy(generator).eval().requires_grad_(False) if cfg.ema_decay > 0 else None
        )
        fused = cfg.optimizer == "adam"  # one kernel for all tensors, on the CPU too
        generator_optimizer = make_optimizer(
            cfg.optimizer, generator.parameters(), cfg.generator_learning_rate,
            betas=cfg.betas, momentum=cfg.momentum, nesterov=cfg.nesterov, fused=fused,
        )  # fmt: skip
        discriminator_optimizer = make_optimizer(
            cfg.optimizer, discriminator.parameters(), cfg.discriminator_learning_rate,
            betas=cfg.betas, momentum=cfg.momentum, nesterov=cfg.nesterov, fused=fused,
        )  # fmt: skip
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        # Noise and batch indices come from their own generator, seeded alike on every rank:
        # each rank draws the whole global batch and keeps its shard, so N processes train on
        # exactly the images and noise one process would. Its first draw is the fixed noise,
        # which thus does not depend on how much randomness data loading used. On a GPU it
        # lives there, so drawing a batch needs nothing from the host.
        batch_rng = torch.Generator(device if device.type == "cuda" else "cpu")
        batch_rng.manual_seed(cfg.seed)
        fixed_noise = torch.randn(
            cfg.num_samples, cfg.latent_size, generator=batch_rng, device=batch_rng.device
        ).to(device)
        best_fid = math.inf

        if previous is not None:
            check_compatible(previous, arch, run_dir / "latest.pt")
            generator.load_state_dict(previous["generator"])
            discriminator.load_state_dict(previous["discriminator"])
            if ema_generator is not None and previous.get("ema_generator") is not None:
                ema_generator.load_state_dict(previous["ema_generator"])
            generator_optimizer.load_state_dict(previous["generator_optimizer"])
            discriminator_optimizer.load_state_dict(previous["discriminator_optimizer"])
            if previous.get("grad_scaler"):
                scaler.load_state_dict(previous["grad_scaler"])
            fixed_noise = previous["fixed_noise"].to(device)
            best_fid = float(previous.get("best_fid", math.inf))
            if previous.get("batch_rng") is not None:
                try:
                    batch_rng.set_state(previous["batch_rng"])
                except RuntimeError:  # saved by a generator on another kind of device
                    batch_rng.manual_seed(cfg.seed + start_step)
                    if distributed.is_main:
                        print("note: resumed on another device; the batch draws are reseeded")
            set_rng_state(previous["rng"])
            if distributed.is_main:
                print(f"resuming {run_dir} at step {start_step}")
        if distributed.rank > 0:
            # Augmentation draws differ between ranks (rank 0 keeps the run's own stream).
            seed_everything(distributed.seed(cfg.seed) + start_step)

        data_home = data_device(data.nbytes, device)
        data = data.to(data_home)
        if data_home != device:
            data.images = data.images.pin_memory()
            if distributed.is_main:
                print(
                    f"note: the data set ({data.nbytes / 2**30:.1f} GiB) does not fit on {device}"
                    " beside training; it stays in host memory and each batch is copied over"
                )
        # DDP averages the gradients over the ranks; the unwrapped modules are what is saved,
        # so a checkpoint resumes with any number of processes.
        train_generator = distributed.wrap(generator, device)
        train_discriminator = distributed.wrap(discriminator, device)
        train_generator = torch.compile(train_generator) if cfg.compile else train_generator
        train_discriminator = (
            torch.compile(train_discriminator) if cfg.compile else train_discriminator
        )
        # Update G reads D through the plain module: D's weights get no gradient there, and
        # DDP would wait for them.
        generator_step_discriminator: nn.Module = train_discriminator
        if distributed.enabled:
            generator_step_discriminator = (
                torch.compile(discriminator) if cfg.compile else discriminator
            )
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
            if precision != "fp32"
            else nullcontext()
        )

        def augment(images: torch.Tensor) -> torch.Tensor:
            images = diff_augment(images, augment_policy) if augment_policy else images
            return images.contiguous(memory_format=memory_format)

        def sampler() -> Generator:
            return ema_generator if ema_generator is not None else generator

        def checkpoint(step: int) -> dict[str, Any]:
            return {
                "kind": "gan",
                "generator": generator.state_dict(),
                "discriminator": discriminator.state_dict(),
                "ema_generator": ema_generator.state_dict() if ema_generator is not None else None,
                "generator_optimizer": generator_optimizer.state_dict(),
                "discriminator_optimizer": discriminator_optimizer.state_dict(),
                "grad_scaler": scaler.state_dict(),
                "fixed_noise": fixed_noise.cpu(),
                "step": step,
                "config": asdict(cfg),
                "architecture": arch,
                "dataset": {"name": data.name, "label_names": list(data.label_names)},
                "rng": rng_state(),
                "batch_rng": batch_rng.get_state(),
                "best_fid": best_fid,
            }

        metric = (
            make_metric(cfg, data, device) if cfg.metric_every > 0 and distributed.is_main else None
        )
        if not distributed.is_main:
            logger = Logger()  # rank 0 alone logs
        own_logger = logger is None
        if logger is None:
            logger = TensorBoardLogger(
                run_dir, purge_step=start_step + 1 if previous is not None else None
            )
        if previous is None and distributed.is_main:
            shown = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.seed))
            real_grid = grid(to_float(data.images[shown[: cfg.num_samples]]))
            logger.image("samples/real", real_grid, 0)

        # Ctrl-C asks the loop to stop after the current step, so latest.pt is never saved
        # halfway through one (a second Ctrl-C interrupts at once).
        stop = StopFlag()
        progress = Progress(
            cfg.steps, initial=start_step, enabled=cfg.progress and distributed.is_main
        )
        # Loss values stay on the device and are read only every log_every steps.
        totals = torch.zeros(4, device=device)  # d_loss, g_loss, d_real, d_fake
        first_bad_step = torch.zeros((), dtype=torch.int64, device=device)
        window_start, window_steps, last = time.perf_counter(), 0, {}
        step = start_step
        try:
            with stop:
                for step in range(start_step + 1, cfg.steps + 1):
                    noise, real = draw_batch(
                        data, batch_rng, cfg.batch_size, cfg.latent_size, distributed, device
                    )
                    real = real.contiguous(memory_format=memory_format)

                    # ---- update D: push D(x) up on real images and D(G(z)) down on fakes ----
                    with autocast:
                        fake = train_generator(noise)
                        real_logits = train_discriminator(augment(real))
                        fake_logits = train_discriminator(augment(fake.detach()))
                        d_loss_real, d_loss_fake = discriminator_loss(
                            real_logits, fake_logits, cfg.loss
                        )
                        d_loss = d_loss_real + d_loss_fake
                    discriminator_optimizer.zero_grad(set_to_none=True)
                    scaler.scale(d_loss).backward()
                    scaler.step(discriminator_optimizer)

                    # ---- update G: make D call the same fakes real ----
                    discriminator.requires_grad_(False)  # no weight gradients for D here
                    with autocast:
                        g_loss = generator_loss(
                            generator_step_discriminator(augment(fake)), cfg.loss
                        )
                    generator_optimizer.zero_grad(set_to_none=True)
                    scaler.scale(g_loss).backward()
                    scaler.step(generator_optimizer)
                    scaler.update()
                    discriminator.requires_grad_(True)
                    if ema_generator is not None:
                        update_ema(ema_generator, generator, ema_decay(cfg.ema_decay, step))

                    # ---- bookkeeping, without host syncs except every log_every steps ----
                    losses = torch.stack([d_loss, g_loss]).detach()
                    first_bad_step = torch.where(
                        (first_bad_step == 0) & ~torch.isfinite(losses).all(), step, first_bad_step
                    )
                    with torch.no_grad():
                        totals += torch.cat(
                            [
                                losses,
                                torch.sigmoid(real_logits.float()).mean()[None],
                                torch.sigmoid(fake_logits.float()).mean()[None],
                            ]
                        )
                    window_steps += 1
                    progress.update(step)
                    stop_requested = stop.requested
                    if distributed.enabled:
                        # Every rank must stop at the same step; they agree at each log step.
                        stop_requested = step % cfg.log_every == 0 and distributed.any(
                            stop.requested, device
                        )
                        checks_finite = (
                            step % cfg.log_every == 0
                            or step % cfg.checkpoint_every == 0
                            or (cfg.metric_every and step % cfg.metric_every == 0)
                            or step == cfg.steps
                        )
                        if checks_finite:  # a NaN on any rank stops all of them
                            distributed.max_(first_bad_step)
                    final = step == cfg.steps or stop_requested

                    if step % cfg.log_every == 0 or final:
                        check_finite(first_bad_step, run_dir)
                        means = (distributed.mean_(totals) / window_steps).tolist()
                        elapsed = time.perf_counter() - window_start
                        last = dict(
                            zip(
                                ("losses/d_loss", "losses/g_loss", "gan/d_real", "gan/d_fake"),
                                means,
                                strict=True,
                            )
                        )
                        last["perf/images_per_sec"] = (
                            cfg.batch_size * window_steps / max(elapsed, 1e-9)
                        )
                        logger.scalars(last, step)
                        progress.update(
                            step,
                            d_loss=means[0],
                            g_loss=means[1],
                            images_per_sec=f"{last['perf/images_per_sec']:.0f}",
                        )
                        totals.zero_()
                        window_start, window_steps = time.perf_counter(), 0
                    if (cfg.sample_every and step % cfg.sample_every == 0) or final:
                        logger.image(
                            "samples/fixed_noise", grid(generate(sampler(), fixed_noise)), step
                        )
                    at_end = step == cfg.steps
                    if metric is not None and (step % cfg.metric_every == 0 or at_end):
                        check_finite(first_bad_step, run_dir)
                        scores = evaluate(metric, sampler(), cfg, device, step)
                        logger.scalars(
                            {f"metrics/{name}": value for name, value in scores.items()}, step
                        )
                        last.update({f"metrics/{name}": value for name, value in scores.items()})
                        if scores["fid"] < best_fid:
                            best_fid = scores["fid"]
                            save_checkpoint(run_dir / "best.pt", checkpoint(step))
                    if not distributed.enabled:
                        stop_requested = stop.requested  # also a Ctrl-C during this step's logs
                    if step % cfg.checkpoint_every == 0 or final or stop_requested:
                        check_finite(first_bad_step, run_dir)
                        if distributed.is_main:
                            logger.flush()  # curves up to this step reach disk before it
                            save_checkpoint(run_dir / "latest.pt", checkpoint(step))
                    if stop_requested:
                        progress.write(f"interrupted: saved step {step} to {run_dir / 'latest.pt'}")
                        break
            distributed.check_identical(generator, "generator")
            distributed.check_identical(discriminator, "discriminator")
            if metric is None and distributed.is_main:
                # Without a quality metric the last weights are the best we know of.
                save_checkpoint(run_dir / "best.pt", checkpoint(step))
            final_metrics = (
                {"metrics/fid": best_fid}
                if math.isfinite(best_fid)
                else {key: value for key, value in last.items() if key.startswith("losses/")}
            )
            logger.hparams(asdict(cfg), final_metrics)
        finally:
            progress.close()
            if own_logger:
                logger.close()
            else:
                logger.flush()

    if distributed.is_main:
        if distributed.enabled:
            print(f"{distributed.world_size} processes hold identical weights")
        print(f"run folder: {run_dir} (latest.pt, best.pt, TensorBoard events)")
        print(f"view the logs: tensorboard --logdir {cfg.runs_dir}")
    return run_dir


def read_resume_checkpoint(resume: str, runs_dir: str) -> tuple[Path, dict[str, Any]]:
    """The folder `--resume` names and its latest.pt."""
    run_dir = resolve_resume_dir(resume, runs_dir)
    return run_dir, load_checkpoint(run_dir / "latest.pt", kind="gan")


def draw_batch(
    data: ImageDataset,
    batch_rng: torch.Generator,
    batch_size: int,
    latent_size: int,
    distributed: Distributed,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's share of one global batch: (noise (B/N, latent), real images (B/N, C, H, W)
    in [-1, 1]). Every rank draws the same global batch from `batch_rng` and keeps its shard."""
    noise = torch.randn(batch_size, latent_size, generator=batch_rng, device=batch_rng.device)
    indices = torch.randint(len(data), (batch_size,), generator=batch_rng, device=batch_rng.device)
    shard = distributed.shard(batch_size)
    noise = noise[shard].to(device, non_blocking=True)
    # Indexed where the images live (the GPU when they fit there), then moved if they do not.
    real = data.images[indices[shard].to(data.images.device, non_blocking=True)]
    return noise, to_float(real.to(device, non_blocking=True))


def check_compatible(state: dict[str, Any], arch: dict[str, int | bool], path: Path) -> None:
    """Refuse a checkpoint whose networks differ from the ones this configuration builds."""
    saved = state.get("architecture", {})
    differences = [
        f"{key} {saved.get(key)} (asked {value})"
        for key, value in arch.items()
        if saved.get(key) != value
    ]
    if differences:
        raise UserError(
            f"{path} holds a different network: {', '.join(differences)}; pass the settings of that run"
        )


def check_finite(first_bad_step: torch.Tensor, run_dir: Path) -> None:
    """Stop on a NaN/inf loss; the diverged state is not saved, latest.pt stays the last good one."""
    bad_step = int(first_bad_step)
    if bad_step:
        raise UserError(
            f"the loss became NaN/inf at step {bad_step}; stopped without saving that state "
            f"({run_dir / 'latest.pt'} is the last good checkpoint); try a lower learning rate, "
            f"--precision fp32 or --spectral-norm"
        )


def ema_decay(decay: float, step: int) -> float:
    """The EMA decay, ramped up early so the average is not dominated by the random init."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model for weights; buffers (BN statistics) copied."""
    for ema_parameter, parameter in zip(ema.parameters(), model.parameters(), strict=True):
        ema_parameter.lerp_(parameter, 1.0 - decay)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers(), strict=True):
        ema_buffer.copy_(buffer)


@torch.no_grad()
def generate(generator: Generator, noise: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Images in [-1, 1] for `noise`, with batch norm in inference mode (running statistics);
    the generator's mode is restored afterwards."""
    was_training = generator.training
    generator.eval()
    images = torch.cat([generator(chunk) for chunk in noise.split(batch_size)])
    generator.train(was_training)
    return images.float()


def grid(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> one uint8 (C, H', W') grid image, about square."""
    import torchvision.utils

    nrow = max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    return to_uint8(
        torchvision.utils.make_grid(images.float().cpu(), nrow=nrow, padding=2, pad_value=-1.0)
    )


def make_metric(cfg: GanConfig, data: ImageDataset, device: torch.device):
    """FID/KID against the real images, or None when gan.metrics is unavailable."""
    if QualityMetric is None:
        print("note: gan.metrics is unavailable; FID/KID are not logged")
        return None
    metric = QualityMetric(
        data.images,
        data.labels,
        feature=cfg.metric_feature,
        inception_weights=cfg.inception_weights or None,
        device=device,
        seed=cfg.seed,
        max_real=max(cfg.metric_samples, 2),
    )
    print(f"quality metric: FID/KID on {metric.feature_name} features")
    return metric


def evaluate(
    metric, generator: Generator, cfg: GanConfig, device: torch.device, step: int
) -> dict[str, float]:
    """FID/KID of `metric_samples` fresh images. The training RNG streams are saved and
    restored around it, so evaluating does not change what training draws next."""
    state = rng_state()
    noise = torch.randn(
        cfg.metric_samples,
        cfg.latent_size,
        generator=torch.Generator().manual_seed(cfg.seed + step),
    ).to(device)
    scores = metric.compute(generate(generator, noise))
    set_rng_state(state)
    return scores


class StopFlag:
    """While entered (in the main thread), the first Ctrl-C sets `requested` instead of raising
    KeyboardInterrupt; the previous handler is back in place for a second Ctrl-C and on exit."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous)
