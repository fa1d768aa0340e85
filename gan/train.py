"""Train a DCGAN: one loop, top to bottom, "update D" then "update G" each step.

    train_gan(GanConfig(dataset="atari", steps=250))  # -> runs/gan-atari-s1-<time>/

Every `log_every` steps it logs `losses/d_loss`, `losses/g_loss`, `gan/d_real`, `gan/d_fake`
(mean sigmoid of D's logits on real and fake images) and `perf/images_per_sec`; every
`sample_every` steps an image grid `samples/fixed_noise` from one fixed batch of noise (kept
in the checkpoint, so the grid is the same across resumes); every `metric_every` steps
`metrics/fid` and `metrics/kid` (gan.metrics), the lowest FID deciding `best.pt`. The run
folder, logger, stop signals and saves are `playground.lifecycle.Run`, as for every trainer.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Collection
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gan import presets
from gan.augment import diff_augment, parse_policy
from gan.config import RESUME_OVERRIDABLE, GanConfig, validate
from gan.data import ImageDataset, data_device, load_dataset, native_channels, to_float
from gan.distributed import Distributed, sync_batch_norm
from gan.losses import discriminator_loss, generator_loss, top_k
from gan.models import architecture, build_models, ema_decay, generate, update_ema
from playground.config import resumed_settings
from playground.device import resolve_device
from playground.display import start_viewer
from playground.errors import UserError
from playground.lifecycle import Run, new_run_dir, note, read_resume
from playground.logger import Logger
from playground.media import image_grid
from playground.optim import make_optimizer
from playground.presets import describe
from playground.progress import Progress
from playground.rundir import default_run_name
from playground.seeding import rng_state, seed_everything, set_rng_state

CHECKPOINT_KIND = "gan"
# Entries --resume needs; a checkpoint lacking one is refused with its name.
RESUME_KEYS = (
    "config", "architecture", "generator", "discriminator", "generator_optimizer",
    "discriminator_optimizer", "fixed_noise", "step", "rng",
)  # fmt: skip
DIVERGENCE_ADVICE = (
    "a learning rate too high (lower it), or try --precision fp32 or --spectral-norm"
)


def train_gan(
    cfg: GanConfig, logger: Logger | None = None, *, given: Collection[str] | None = None
) -> Path:
    """Train a DCGAN as `cfg` says; return the run folder (latest.pt, best.pt, event files).

    Under `torchrun` every process calls this; they train one model with DDP (gradients
    averaged, `cfg.batch_size` split over them) and rank 0 alone writes the run folder."""
    distributed = Distributed.from_env()
    try:
        return _train_gan(cfg, logger, distributed, given)
    finally:
        distributed.close()


def _train_gan(
    cfg: GanConfig,
    logger: Logger | None,
    distributed: Distributed,
    given: Collection[str] | None = None,
) -> Path:
    previous: dict[str, Any] | None = None
    if cfg.resume:
        # Rank 0 reads the checkpoint and hands it to the others: every rank resumes from the
        # same state, and the other machines need no copy of the run folder.
        run_dir, previous = distributed.run_on_main(
            lambda: read_resume(cfg.resume, cfg.runs_dir, CHECKPOINT_KIND, RESUME_KEYS)
        )
        cfg = resumed_settings(GanConfig, previous["config"], cfg, RESUME_OVERRIDABLE, given)
    validate(cfg)
    distributed.local_batch_size(cfg.batch_size)  # refuses a batch that does not split evenly
    device = distributed.device(resolve_device(cfg.device))
    main = distributed.is_main
    if main and (line := describe(presets, cfg)) is not None:
        note(line)
    precision = cfg.precision
    if precision != "fp32" and device.type != "cuda":
        if main:
            note(f"--precision {precision} applies on CUDA only; running fp32 on {device.type}")
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
    arch = architecture(
        cfg.image_size,
        data.channels,
        cfg.latent_size,
        cfg.generator_width,
        cfg.discriminator_width,
        cfg.spectral_norm,
        cfg.batch_norm,
        num_classes(data) if cfg.conditional else 0,
    )
    if main:
        print(
            f"data: {data.name}, {len(data)} images of {data.channels} x {cfg.image_size} x "
            f"{cfg.image_size}"
            + (f"; {distributed.world_size} processes" if distributed.enabled else "")
        )
    start_step = int(previous["step"]) if previous is not None else 0
    if previous is None:
        run_name = cfg.run_name or default_run_name("gan", cfg.dataset, cfg.seed)
        run_dir = distributed.run_on_main(lambda: new_run_dir(cfg.runs_dir, run_name))
    elif start_step >= cfg.steps:
        raise UserError(
            f"{run_dir} is already at step {start_step}; pass --steps above it to continue"
        )
    with Run(
        run_dir,
        command="train-gan",
        step=start_step,
        resumed=previous is not None,
        logger=logger,
        main=main,
        divergence_advice=DIVERGENCE_ADVICE,
    ) as run:
        viewer = None
        if cfg.watch == "web" and main:
            # A separate process serves the page from the run's own event files.
            viewer = start_viewer(
                ["--web", "--run-dir", str(Path(run_dir).resolve()),
                 "--host", cfg.watch_host, "--port", str(cfg.watch_port)]
            )  # fmt: skip
        try:
            step = _train(
                cfg, run, distributed, device, precision, augment_policy, data, arch, previous
            )
        except (torch.OutOfMemoryError, MemoryError):
            raise UserError(
                f"out of memory on {device}: lower --batch-size, --image-size or the network "
                "widths (latest.pt is kept)"
            ) from None
        finally:
            if viewer is not None:
                viewer.terminate()
        if main and distributed.enabled:
            note(f"{distributed.world_size} processes hold identical weights")
        run.finish(step, cfg.runs_dir)
    return run_dir


def _train(
    cfg: GanConfig,
    run: Run,
    distributed: Distributed,
    device: torch.device,
    precision: str,
    augment_policy: tuple[str, ...],
    data: ImageDataset,
    arch: dict[str, int | bool],
    previous: dict[str, Any] | None,
) -> int:
    logger = run.logger
    start_step = int(previous["step"]) if previous is not None else 0

    # ---- networks, optimizers, state ----
    generator, discriminator = build_models(arch, cfg.dropout)
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
        weight_decay=cfg.weight_decay,
    )  # fmt: skip
    discriminator_optimizer = make_optimizer(
        cfg.optimizer, discriminator.parameters(), cfg.discriminator_learning_rate,
        betas=cfg.betas, momentum=cfg.momentum, nesterov=cfg.nesterov, fused=fused,
        weight_decay=cfg.weight_decay,
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
        check_compatible(previous, arch, run.dir / "latest.pt")
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
                if run.main:
                    note("resumed on another device; the batch draws are reseeded")
        set_rng_state(previous["rng"])
        if run.main:
            note(f"resuming {run.dir} at step {start_step}")
    if distributed.rank > 0:
        # Augmentation draws differ between ranks (rank 0 keeps the run's own stream).
        seed_everything(distributed.seed(cfg.seed) + start_step)

    data_home = data_device(data.nbytes, device)
    data = data.to(data_home)
    if data_home != device:
        data.images = data.images.pin_memory()
        if run.main:
            note(
                f"the data set ({data.nbytes / 2**30:.1f} GiB) does not fit on {device} beside "
                "training; it stays in host memory and each batch is copied over"
            )
    # DDP averages the gradients over the ranks; the unwrapped modules are what is saved,
    # so a checkpoint resumes with any number of processes.
    train_generator = distributed.wrap(generator, device)
    train_discriminator = distributed.wrap(discriminator, device)
    train_generator = torch.compile(train_generator) if cfg.compile else train_generator
    train_discriminator = torch.compile(train_discriminator) if cfg.compile else train_discriminator
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

    # A conditional grid holds one class per column (generate draws the classes in turn).
    grid_columns = int(arch["num_classes"]) or None

    def sampler() -> nn.Module:
        return ema_generator if ema_generator is not None else generator

    def checkpoint(step: int) -> dict[str, Any]:
        return {
            "kind": CHECKPOINT_KIND,
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

    def finite_values() -> list[torch.Tensor]:
        # first_bad_step is 0 while every loss has been finite (a flag kept on the device).
        return [first_bad_step == 0, *generator.parameters(), *discriminator.parameters()]

    metric = None
    if cfg.metric_every > 0 and run.main:
        from gan.metrics import make_quality_metric, measure_quality  # noqa: PLC0415

        metric = make_quality_metric(cfg, data, device)
    if previous is None and run.main:
        shown = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.seed))
        logger.image("samples/real", image_grid(to_float(data.images[shown[: cfg.num_samples]])), 0)

    progress = Progress(cfg.steps, initial=start_step, enabled=cfg.progress and run.main)
    # Loss values stay on the device and are read only every log_every steps.
    totals = torch.zeros(4, device=device)  # d_loss, g_loss, d_real, d_fake
    first_bad_step = torch.zeros((), dtype=torch.int64, device=device)
    window_start, window_steps, last = time.perf_counter(), 0, {}
    step = start_step
    try:
        for step in range(start_step + 1, cfg.steps + 1):
            if cfg.learning_rate_decay == "linear":
                remaining = 1.0 - (step - 1) / cfg.steps  # from step alone: resumes exactly
                for optimizer, rate in (
                    (generator_optimizer, cfg.generator_learning_rate),
                    (discriminator_optimizer, cfg.discriminator_learning_rate),
                ):
                    for group in optimizer.param_groups:
                        group["lr"] = rate * remaining
            # A conditional GAN draws its fakes with the real batch's labels (so the classes
            # come as often as in the data) and D sees each image with its label.
            noise, real, labels = draw_batch(
                data, batch_rng, cfg.batch_size, cfg.latent_size, distributed, device,
                labelled=cfg.conditional,
            )  # fmt: skip
            real = real.contiguous(memory_format=memory_format)

            # ---- update D: push D(x) up on real images and D(G(z)) down on fakes ----
            with autocast:
                fake = train_generator(noise, labels)
                real_logits = train_discriminator(augment(real), labels)
                fake_logits = train_discriminator(augment(fake.detach()), labels)
                d_loss_real, d_loss_fake = discriminator_loss(
                    real_logits, fake_logits, cfg.loss, cfg.label_smoothing
                )
                d_loss = d_loss_real + d_loss_fake
            discriminator_optimizer.zero_grad(set_to_none=True)
            scaler.scale(d_loss).backward()
            scaler.step(discriminator_optimizer)

            # ---- update G: make D call the same fakes real ----
            discriminator.requires_grad_(False)  # no weight gradients for D here
            with autocast:
                fake_logits_for_g = generator_step_discriminator(augment(fake), labels)
                fraction = 1.0 - (1.0 - cfg.top_k) * min(step / cfg.steps, 1.0)
                g_loss = generator_loss(top_k(fake_logits_for_g, fraction), cfg.loss)
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
            log_step = step % cfg.log_every == 0
            if distributed.enabled:
                # Every rank must stop at the same step; they agree at each log step, and a
                # NaN on any rank stops all of them.
                if log_step and distributed.any(run.stop_requested, device):
                    run.request_stop()
                if (
                    log_step
                    or step % cfg.checkpoint_every == 0
                    or (cfg.metric_every and step % cfg.metric_every == 0)
                    or step == cfg.steps
                ):
                    distributed.max_(first_bad_step)
                stopping = log_step and run.stop_requested
            else:
                stopping = run.stop_requested
            final = step == cfg.steps or stopping

            if log_step or final:
                run.check_finite(finite_values(), "the losses", step)
                means = (distributed.mean_(totals) / window_steps).tolist()
                elapsed = time.perf_counter() - window_start
                last = dict(
                    zip(
                        ("losses/d_loss", "losses/g_loss", "gan/d_real", "gan/d_fake"),
                        means,
                        strict=True,
                    )
                )
                last["perf/images_per_sec"] = cfg.batch_size * window_steps / max(elapsed, 1e-9)
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
                    "samples/fixed_noise",
                    image_grid(generate(sampler(), fixed_noise), columns=grid_columns),
                    step,
                )
            if metric is not None and (step % cfg.metric_every == 0 or step == cfg.steps):
                run.check_finite(finite_values(), "the losses", step)
                scores = measure_quality(metric, sampler(), cfg, device, step)
                logger.scalars({f"metrics/{name}": value for name, value in scores.items()}, step)
                last.update({f"metrics/{name}": value for name, value in scores.items()})
                if scores["fid"] < best_fid:
                    best_fid = scores["fid"]
                    run.save_best(checkpoint(step), step)
            if not distributed.enabled:
                stopping = run.stop_requested  # also a signal during this step's logs
            if step % cfg.checkpoint_every == 0 or final or stopping:
                run.save_latest(checkpoint(step), step, finite_values(), "the losses")
            if stopping:
                break
        distributed.check_identical(generator, "generator")
        distributed.check_identical(discriminator, "discriminator")
        if metric is None:
            # Without a quality metric the last weights are the best we know of.
            run.save_best(checkpoint(step), step)
        final_metrics = (
            {"metrics/fid": best_fid}
            if math.isfinite(best_fid)
            else {key: value for key, value in last.items() if key.startswith("losses/")}
        )
        logger.hparams(asdict(cfg), final_metrics)
    finally:
        progress.close()
    return step


def draw_batch(
    data: ImageDataset,
    batch_rng: torch.Generator,
    batch_size: int,
    latent_size: int,
    distributed: Distributed,
    device: torch.device,
    labelled: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """This rank's share of one global batch: (noise (B/N, latent), real images (B/N, C, H, W)
    in [-1, 1], with `labelled` their labels (B/N,), else None). Every rank draws the same
    global batch from `batch_rng` and keeps its shard."""
    noise = torch.randn(batch_size, latent_size, generator=batch_rng, device=batch_rng.device)
    indices = torch.randint(len(data), (batch_size,), generator=batch_rng, device=batch_rng.device)
    shard = distributed.shard(batch_size)
    noise = noise[shard].to(device, non_blocking=True)
    # Indexed where the images live (the GPU when they fit there), then moved if they do not.
    where = indices[shard].to(data.images.device, non_blocking=True)
    real = to_float(data.images[where].to(device, non_blocking=True))
    labels = data.labels[where].to(device, non_blocking=True) if labelled else None
    return noise, real, labels


def num_classes(data: ImageDataset) -> int:
    """The number of classes of a labelled data set, refusing one without labels."""
    if data.labels is None:
        raise UserError(
            f"--conditional needs a labelled data set; {data.name} has no labels (IDX files "
            "need their labels file beside them, a folder needs one sub-folder per class)"
        )
    return max(len(data.label_names), int(data.labels.max()) + 1)


def check_compatible(state: dict[str, Any], arch: dict[str, int | bool], path: Path) -> None:
    """Refuse a checkpoint whose networks differ from the ones this configuration builds."""
    # Checkpoints from before a setting existed were made with its old fixed value.
    saved = {"batch_norm": True, "num_classes": 0, **state.get("architecture", {})}
    differences = [
        f"{key} {saved.get(key)} (asked {value})"
        for key, value in arch.items()
        if saved.get(key) != value
    ]
    if differences:
        raise UserError(
            f"{path} holds a different network: {', '.join(differences)}; pass the settings of that run"
        )
