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
from gan.checkpoint import CHECKPOINT_KIND, RESUME_KEYS, GanState, check_same_network
from gan.config import IDLE_WITHOUT, RESUME_OVERRIDABLE, GanConfig, validate
from gan.data import ImageDataset, data_device, load_dataset, native_channels
from gan.distributed import Distributed, sync_batch_norm
from gan.losses import discriminator_loss, generator_loss, top_k
from gan.models import architecture, build_models, ema_decay, generate, update_ema
from playground import tags
from playground.checkpoint import run_complete
from playground.device import resolve_device
from playground.display import start_beside
from playground.errors import UserError
from playground.lifecycle import Run, new_run_dir, read_resume
from playground.logger import Logger
from playground.media import image_grid, to_float
from playground.notes import note, say
from playground.optim import make_optimizer
from playground.presets import changed_settings, describe
from playground.progress import Progress
from playground.resume import resumed_settings
from playground.rundir import default_run_name
from playground.schedules import due, linear_schedule, set_learning_rate
from playground.seeding import seed_everything
from playground.settings import idle_settings

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
    if main:
        changed = given if given is not None else changed_settings(presets, cfg)
        for line in idle_settings(cfg, changed, IDLE_WITHOUT):
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
        say(
            f"data: {data.name}, {len(data)} images of {data.channels} x {cfg.image_size} x "
            f"{cfg.image_size}"
            + (f"; {distributed.world_size} processes" if distributed.enabled else "")
        )
    start_step = int(previous["step"]) if previous is not None else 0
    if previous is None:
        run_name = cfg.run_name or default_run_name("gan", cfg.dataset, cfg.seed)
        run_dir = distributed.run_on_main(lambda: new_run_dir(cfg.runs_dir, run_name))
    elif run_complete(run_dir, start_step, cfg.steps):
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
            viewer = start_beside(
                "viewer",
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
    """The loop: a batch, one GAN step, then what is due at this step (log, samples, FID,
    save). Returns the last step trained."""
    logger = run.logger
    start_step = int(previous["step"]) if previous is not None else 0
    state = build_state(cfg, arch, distributed, device, precision)
    if previous is not None:
        _restore(state, previous, arch, run, cfg.seed + start_step)
    if distributed.rank > 0:
        # Augmentation draws differ between ranks (rank 0 keeps the run's own stream).
        seed_everything(distributed.seed(cfg.seed) + start_step)
    data = place_data(data, device, run.main)
    gan_step = GanStep(cfg, state, distributed, device, precision, augment_policy)
    window = LossWindow(device)
    dataset = {"name": data.name, "label_names": list(data.label_names)}
    # A conditional grid holds one class per column (generate draws the classes in turn).
    grid_columns = int(arch["num_classes"]) or None

    def finite_values() -> list[torch.Tensor]:
        return [
            window.all_finite(),
            *state.generator.parameters(),
            *state.discriminator.parameters(),
        ]

    metric = None
    if cfg.metric_every > 0 and run.main:
        from gan.metrics import make_quality_metric

        metric = make_quality_metric(cfg, data, device)
    if previous is None and run.main:
        shown = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg.seed))
        real_grid = image_grid(to_float(data.images[shown[: cfg.num_samples]]))
        logger.image(tags.REAL_IMAGES, real_grid, 0)

    progress = Progress(cfg.steps, initial=start_step, enabled=cfg.progress and run.main)
    last: dict[str, float] = {}
    step = start_step
    try:
        for step in range(start_step + 1, cfg.steps + 1):
            if cfg.learning_rate_decay == "linear":
                _decay_learning_rates(cfg, state, step)
            # A conditional GAN draws its fakes with the real batch's labels (so the classes
            # come as often as in the data) and D sees each image with its label.
            noise, real, labels = draw_batch(
                data, state.batch_rng, cfg.batch_size, cfg.latent_size, distributed, device,
                labelled=cfg.conditional,
            )  # fmt: skip
            window.add(*gan_step(noise, real, labels, step), step)
            progress.update(step)

            log_step = due(step, cfg.log_every)
            stopping = agree_to_stop(
                run, distributed, device, window, log_step,
                sync_step=log_step or due(step, cfg.checkpoint_every)
                or due(step, cfg.metric_every) or step == cfg.steps,
            )  # fmt: skip
            final = step == cfg.steps or stopping
            if log_step or final:
                run.check_finite(finite_values(), "the losses", step)
                last = window.read(distributed, cfg.batch_size)
                logger.scalars(last, step)
                progress.update(
                    step,
                    d_loss=last[tags.D_LOSS],
                    g_loss=last[tags.G_LOSS],
                    images_per_sec=f"{last[tags.IMAGES_PER_SEC]:.0f}",
                )
            if due(step, cfg.sample_every) or final:
                grid = image_grid(generate(state.sampler, state.fixed_noise), columns=grid_columns)
                logger.image(tags.SAMPLES, grid, step)
            if metric is not None and (due(step, cfg.metric_every) or step == cfg.steps):
                run.check_finite(finite_values(), "the losses", step)
                last.update(_measure(metric, state, cfg, arch, dataset, run, device, step))
            if not distributed.enabled:
                stopping = run.stop_requested  # also a signal during this step's logs
            if due(step, cfg.checkpoint_every) or final or stopping:
                checkpoint = state.checkpoint(step, cfg, arch, dataset)
                run.save_latest(checkpoint, step, finite_values(), "the losses")
            if stopping:
                break
        distributed.check_identical(state.generator, "generator")
        distributed.check_identical(state.discriminator, "discriminator")
        if metric is None:
            # Without a quality metric the last weights are the best we know of.
            run.save_best(state.checkpoint(step, cfg, arch, dataset), step)
        final_metrics = (
            {tags.FID: state.best_fid}
            if math.isfinite(state.best_fid)
            else {tag: value for tag, value in last.items() if tag in (tags.D_LOSS, tags.G_LOSS)}
        )
        logger.hparams(asdict(cfg), final_metrics)
    finally:
        progress.close()
    return step


def _restore(
    state: GanState, previous: dict[str, Any], arch: dict[str, int | bool], run: Run, reseed: int
) -> None:
    """Load a resumed checkpoint into `state` (the same networks, or a one-line error)."""
    check_same_network(previous, arch, run.dir / "latest.pt")
    if not state.restore(previous, reseed=reseed) and run.main:
        note("resumed on another device; the batch draws are reseeded")
    if run.main:
        note(f"resuming {run.dir} at step {int(previous['step'])}")


def _decay_learning_rates(cfg: GanConfig, state: GanState, step: int) -> None:
    """--learning-rate-decay linear: both rates go to zero at --steps, set from the step alone
    (so a resumed run continues the same line)."""
    scale = linear_schedule(1.0, 0.0, cfg.steps, step - 1)
    set_learning_rate(state.generator_optimizer, cfg.generator_learning_rate * scale)
    set_learning_rate(state.discriminator_optimizer, cfg.discriminator_learning_rate * scale)


def _measure(
    metric: Any, state: GanState, cfg: GanConfig, arch: dict[str, int | bool],
    dataset: dict[str, Any], run: Run, device: torch.device, step: int,
) -> dict[str, float]:  # fmt: skip
    """FID and KID of the sampler now, logged; a new lowest FID saves best.pt."""
    from gan.metrics import measure_quality

    scores = measure_quality(metric, state.sampler, cfg, device, step)
    scores = {tags.metric(name): value for name, value in scores.items()}
    run.logger.scalars(scores, step)
    if scores[tags.FID] < state.best_fid:
        state.best_fid = scores[tags.FID]
        run.save_best(state.checkpoint(step, cfg, arch, dataset), step)
    return scores


def memory_format(channels_last: bool) -> torch.memory_format:
    """How images and weights are laid out (--channels-last)."""
    return torch.channels_last if channels_last else torch.contiguous_format


def build_state(
    cfg: GanConfig,
    arch: dict[str, int | bool],
    distributed: Distributed,
    device: torch.device,
    precision: str,
) -> GanState:
    """Fresh networks, optimizers, grad scaler, the batch stream and the fixed noise."""
    generator, discriminator = build_models(arch, cfg.dropout)
    if distributed.enabled and cfg.sync_batch_norm:
        generator = sync_batch_norm(generator, device)
        discriminator = sync_batch_norm(discriminator, device)
    generator.to(device, memory_format=memory_format(cfg.channels_last))
    discriminator.to(device, memory_format=memory_format(cfg.channels_last))
    ema_generator = (
        copy.deepcopy(generator).eval().requires_grad_(False) if cfg.ema_decay > 0 else None
    )

    def optimizer(module: nn.Module, learning_rate: float) -> torch.optim.Optimizer:
        return make_optimizer(
            cfg.optimizer, module.parameters(), learning_rate, betas=cfg.betas,
            momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay,
            fused=cfg.optimizer == "adam",  # one kernel for all tensors, on the CPU too
        )  # fmt: skip

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
    return GanState(
        generator=generator,
        discriminator=discriminator,
        ema_generator=ema_generator,
        generator_optimizer=optimizer(generator, cfg.generator_learning_rate),
        discriminator_optimizer=optimizer(discriminator, cfg.discriminator_learning_rate),
        scaler=torch.amp.GradScaler(device.type, enabled=precision == "fp16"),
        fixed_noise=fixed_noise,
        batch_rng=batch_rng,
    )


def place_data(data: ImageDataset, device: torch.device, main: bool) -> ImageDataset:
    """The data set on `device` when it fits there beside training, else pinned host memory."""
    home = data_device(data.nbytes, device)
    data = data.to(home)
    if home != device:
        data.images = data.images.pin_memory()
        if main:
            note(
                f"the data set ({data.nbytes / 2**30:.1f} GiB) does not fit on {device} beside "
                "training; it stays in host memory and each batch is copied over"
            )
    return data


class GanStep:
    """One GAN step on a batch: "update D" (D(x) up on real images, D(G(z)) down on fakes),
    "update G" (make D call the same fakes real), then the EMA generator.

    Under torchrun the networks are DDP-wrapped here (gradients averaged over the ranks);
    `state` keeps the unwrapped modules, which is what is saved, so a checkpoint resumes with
    any number of processes."""

    def __init__(
        self,
        cfg: GanConfig,
        state: GanState,
        distributed: Distributed,
        device: torch.device,
        precision: str,
        augment_policy: tuple[str, ...],
    ) -> None:
        self.cfg, self.state, self.augment_policy = cfg, state, augment_policy
        self.memory_format = memory_format(cfg.channels_last)
        compiled = torch.compile if cfg.compile else (lambda module: module)
        self.generator = compiled(distributed.wrap(state.generator, device))
        self.discriminator = compiled(distributed.wrap(state.discriminator, device))
        # Update G reads D through the plain module: D's weights get no gradient there, and
        # DDP would wait for them.
        self.discriminator_for_g = (
            compiled(state.discriminator) if distributed.enabled else self.discriminator
        )
        self.autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
            if precision != "fp32"
            else nullcontext()
        )

    def augment(self, images: torch.Tensor) -> torch.Tensor:
        images = diff_augment(images, self.augment_policy) if self.augment_policy else images
        return images.contiguous(memory_format=self.memory_format)

    def __call__(
        self, noise: torch.Tensor, real: torch.Tensor, labels: torch.Tensor | None, step: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (the losses [D, G], D's logits on the real batch, on the fakes), on the
        device: nothing here reads a value back to the host."""
        cfg, state = self.cfg, self.state
        real = real.contiguous(memory_format=self.memory_format)

        # ---- update D: push D(x) up on real images and D(G(z)) down on fakes ----
        with self.autocast:
            fake = self.generator(noise, labels)
            real_logits = self.discriminator(self.augment(real), labels)
            fake_logits = self.discriminator(self.augment(fake.detach()), labels)
            d_loss_real, d_loss_fake = discriminator_loss(
                real_logits, fake_logits, cfg.loss, cfg.label_smoothing
            )
            d_loss = d_loss_real + d_loss_fake
        state.discriminator_optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(d_loss).backward()
        state.scaler.step(state.discriminator_optimizer)

        # ---- update G: make D call the same fakes real ----
        state.discriminator.requires_grad_(False)  # no weight gradients for D here
        with self.autocast:
            fake_logits_for_g = self.discriminator_for_g(self.augment(fake), labels)
            fraction = linear_schedule(1.0, cfg.top_k, cfg.steps, step)
            g_loss = generator_loss(top_k(fake_logits_for_g, fraction), cfg.loss)
        state.generator_optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(g_loss).backward()
        state.scaler.step(state.generator_optimizer)
        state.scaler.update()
        state.discriminator.requires_grad_(True)
        if state.ema_generator is not None:
            update_ema(state.ema_generator, state.generator, ema_decay(cfg.ema_decay, step))
        return torch.stack([d_loss, g_loss]).detach(), real_logits, fake_logits


class LossWindow:
    """The losses and D's outputs summed on the device between two log steps (no host read in
    between), and the first step at which a loss was not finite (0 while none)."""

    TAGS = (tags.D_LOSS, tags.G_LOSS, tags.D_REAL, tags.D_FAKE)

    def __init__(self, device: torch.device) -> None:
        self.totals = torch.zeros(len(self.TAGS), device=device)
        self.first_bad_step = torch.zeros((), dtype=torch.int64, device=device)
        self.steps, self.start = 0, time.perf_counter()

    @torch.no_grad()
    def add(
        self, losses: torch.Tensor, real_logits: torch.Tensor, fake_logits: torch.Tensor, step: int
    ) -> None:
        self.first_bad_step = torch.where(
            (self.first_bad_step == 0) & ~torch.isfinite(losses).all(), step, self.first_bad_step
        )
        d_real = torch.sigmoid(real_logits.float()).mean()[None]
        d_fake = torch.sigmoid(fake_logits.float()).mean()[None]
        self.totals += torch.cat([losses, d_real, d_fake])
        self.steps += 1

    def all_finite(self) -> torch.Tensor:
        return self.first_bad_step == 0

    def read(self, distributed: Distributed, batch_size: int) -> dict[str, float]:
        """The means since the last read (over every rank) and the images per second, tag by
        tag; the window starts again."""
        means = (distributed.mean_(self.totals) / max(self.steps, 1)).tolist()
        values = dict(zip(self.TAGS, means, strict=True))
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        values[tags.IMAGES_PER_SEC] = batch_size * self.steps / elapsed
        self.totals.zero_()
        self.steps, self.start = 0, time.perf_counter()
        return values


def agree_to_stop(
    run: Run,
    distributed: Distributed,
    device: torch.device,
    window: LossWindow,
    log_step: bool,
    sync_step: bool,
) -> bool:
    """Whether to stop after this step. One process stops on its signal at once; under
    torchrun every rank must stop at the same step, so they agree at each log step (a signal
    on any rank stops all), and at each step that checks or saves they share the first
    non-finite step, so a NaN on any rank stops all of them."""
    if not distributed.enabled:
        return run.stop_requested
    if log_step and distributed.any(run.stop_requested, device):
        run.request_stop()
    if sync_step:
        distributed.max_(window.first_bad_step)
    return log_step and run.stop_requested


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
