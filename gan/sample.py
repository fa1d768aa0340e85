"""Draw images from a trained DCGAN checkpoint: one grid PNG, N separate PNGs, or a walk
through latent space as a GIF (or MP4).

    sample(SampleConfig(checkpoint="runs/gan-atari-s1-..."))  # -> runs/gan-atari-s1-.../samples.png

It needs only the generator (`gan.models`) and the media writers, never the trainer.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from gan.checkpoint import generator_from_checkpoint, load_gan_checkpoint
from gan.config import SampleConfig
from gan.models import generate
from playground.checkpoint import resolve_checkpoint
from playground.device import resolve_device
from playground.errors import check, require_positive
from playground.media import image_grid, write_png, write_video
from playground.settings import check_settings

WALK_KEYFRAMES = 4
"""Random latent points the walk passes through before looping back to the first."""
WALK_MIN_SIDE = 256
"""Walk frames are enlarged (nearest neighbour) to at least this many pixels a side."""


def sample(cfg: SampleConfig) -> Path:
    """Write samples as `cfg` says; return the path written (file or folder)."""
    check(bool(cfg.checkpoint), "--checkpoint is required: a GAN checkpoint file or run folder")
    check_settings(cfg)
    require_positive(
        num_images=cfg.num_images, interpolation_steps=cfg.interpolation_steps, fps=cfg.fps
    )
    device = resolve_device(cfg.device)
    checkpoint_path = resolve_checkpoint(cfg.checkpoint)
    state = load_gan_checkpoint(checkpoint_path)
    generator = generator_from_checkpoint(state, cfg.use_ema).to(device)
    run_dir = checkpoint_path.parent
    classes = generator.num_classes
    check(
        cfg.label < 0 or classes > 0,
        f"--label {cfg.label}: {checkpoint_path} holds an unconditional generator "
        "(train with --conditional to choose the class)",
    )
    check(
        cfg.label < classes or classes == 0,
        f"--label {cfg.label}: the generator knows classes 0 to {classes - 1}",
    )
    # Every class in turn, one per grid column, unless --label picks one.
    columns = classes if classes and cfg.label < 0 else None

    def labels_for(count: int) -> torch.Tensor | None:
        return torch.full((count,), cfg.label, device=device) if cfg.label >= 0 else None

    noise_generator = torch.Generator().manual_seed(cfg.seed)

    if cfg.interpolate:
        output = Path(cfg.output) if cfg.output else run_dir / "interpolation.gif"
        check(
            output.suffix.lower() in (".gif", ".mp4"),
            f"--interpolate writes a .gif or .mp4; got --output {output}",
        )
        keyframes = torch.randn(
            WALK_KEYFRAMES, cfg.num_images, generator.latent_size, generator=noise_generator
        )
        noise = latent_walk(keyframes, cfg.interpolation_steps)  # (T, num_images, latent)
        frames = []
        for frame_noise in noise:
            images = generate(generator, frame_noise.to(device), labels_for(cfg.num_images))
            image = image_grid(images, columns=columns)  # (C, H, W) uint8
            frames.append(_enlarge(image.permute(1, 2, 0).numpy()))
        write_video(output, np.stack(frames), cfg.fps)
        print(f"wrote a {len(frames)}-frame latent walk to {output}")
        return output

    noise = torch.randn(cfg.num_images, generator.latent_size, generator=noise_generator).to(device)
    images = generate(generator, noise, labels_for(cfg.num_images))
    if cfg.grid:
        output = Path(cfg.output) if cfg.output else run_dir / "samples.png"
        check(output.suffix.lower() == ".png", f"--grid writes one .png; got --output {output}")
        write_png(output, image_grid(images, columns=columns))
        print(f"wrote a grid of {cfg.num_images} images to {output}")
        return output
    output = Path(cfg.output) if cfg.output else run_dir / "samples"
    check(not output.is_file(), f"--no-grid writes a folder of PNGs; {output} is a file")
    output.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images.cpu()):
        write_png(output / f"sample_{index:04d}.png", image_grid(image[None], padding=0))
    print(f"wrote {cfg.num_images} PNGs to {output}")
    return output


def slerp(start: torch.Tensor, end: torch.Tensor, fraction: float) -> torch.Tensor:
    """Spherical interpolation between latent vectors (rows), which keeps the norm typical of
    Gaussian noise instead of shrinking it halfway as a straight line does."""
    start_unit = start / start.norm(dim=-1, keepdim=True)
    end_unit = end / end.norm(dim=-1, keepdim=True)
    omega = torch.acos((start_unit * end_unit).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    sin_omega = torch.sin(omega)
    return (
        torch.sin((1 - fraction) * omega) * start + torch.sin(fraction * omega) * end
    ) / sin_omega


def latent_walk(keyframes: torch.Tensor, steps: int) -> torch.Tensor:
    """A closed walk through `keyframes` (K, N, latent): (K * steps, N, latent)."""
    frames = []
    for index in range(keyframes.shape[0]):
        start, end = keyframes[index], keyframes[(index + 1) % keyframes.shape[0]]
        frames += [slerp(start, end, step / steps) for step in range(steps)]
    return torch.stack(frames)


def _enlarge(frame: np.ndarray) -> np.ndarray:
    factor = max(1, math.ceil(WALK_MIN_SIDE / max(frame.shape[:2])))
    return frame.repeat(factor, axis=0).repeat(factor, axis=1)
