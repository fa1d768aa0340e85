"""Draw images from a trained DCGAN checkpoint: one grid PNG, N separate PNGs, or a walk
through latent space as a GIF (or MP4).

    sample(SampleConfig(checkpoint="runs/gan-atari-s1-.../best.pt"))  # -> .../samples.png
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gan.data import to_uint8
from gan.models import Generator
from gan.train import generate, grid
from playground.checkpoint import load_checkpoint
from playground.device import resolve_device
from playground.errors import UserError, check, require_positive

WALK_KEYFRAMES = 4
"""Random latent points the walk passes through before looping back to the first."""
WALK_MIN_SIDE = 256
"""Walk frames are enlarged (nearest neighbour) to at least this many pixels a side."""


@dataclass(frozen=True)
class SampleConfig:
    """Draw images, a grid or a latent-space walk from a trained DCGAN checkpoint."""

    checkpoint: str = ""
    """a GAN checkpoint (.pt) or a run folder (its latest.pt is used)"""
    output: str = ""
    """where to write: a .png grid, a folder of PNGs, or a .gif/.mp4 walk (default: in the run folder)"""
    num_images: int = 64
    """images to draw (cells of the walk with --interpolate)"""
    grid: bool = True
    """one grid PNG instead of one PNG per image"""
    interpolate: bool = False
    """write a latent-space walk (GIF, or MP4 when --output ends in .mp4)"""
    interpolation_steps: int = 30
    """frames between two latent points of the walk"""
    fps: int = 20
    """frames per second of the walk"""
    seed: int = 0
    """seed of the latent noise"""
    use_ema: bool = True
    """use the moving-average generator when the checkpoint has one"""
    device: str = "auto"
    """auto|cpu|cuda|cuda:N|mps"""


def sample(cfg: SampleConfig) -> Path:
    """Write samples as `cfg` says; return the path written (file or folder)."""
    check(bool(cfg.checkpoint), "--checkpoint is required: a GAN checkpoint file or run folder")
    require_positive(
        num_images=cfg.num_images, interpolation_steps=cfg.interpolation_steps, fps=cfg.fps
    )
    device = resolve_device(cfg.device)
    state = load_checkpoint(cfg.checkpoint, kind="gan")
    generator = load_generator(state, cfg.use_ema).to(device)
    checkpoint_path = Path(cfg.checkpoint)
    run_dir = checkpoint_path if checkpoint_path.is_dir() else checkpoint_path.parent
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
            image = grid(generate(generator, frame_noise.to(device)))  # (C, H, W) uint8
            frames.append(_enlarge(image.permute(1, 2, 0).numpy()))
        write_animation(output, np.stack(frames), cfg.fps)
        print(f"wrote a {len(frames)}-frame latent walk to {output}")
        return output

    noise = torch.randn(cfg.num_images, generator.latent_size, generator=noise_generator).to(device)
    images = generate(generator, noise)
    from PIL import Image

    if cfg.grid:
        output = Path(cfg.output) if cfg.output else run_dir / "samples.png"
        check(output.suffix.lower() == ".png", f"--grid writes one .png; got --output {output}")
        output.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_hwc(grid(images))).save(output)
        print(f"wrote a grid of {cfg.num_images} images to {output}")
        return output
    output = Path(cfg.output) if cfg.output else run_dir / "samples"
    check(not output.is_file(), f"--no-grid writes a folder of PNGs; {output} is a file")
    output.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(to_uint8(images).cpu()):
        Image.fromarray(_hwc(image)).save(output / f"sample_{index:04d}.png")
    print(f"wrote {cfg.num_images} PNGs to {output}")
    return output


def load_generator(state: dict, use_ema: bool = True) -> Generator:
    """The generator stored in a GAN checkpoint (its moving average if asked and present)."""
    arch = state.get("architecture")
    if not arch:
        raise UserError(
            "this GAN checkpoint has no architecture record; it was not written by train-gan"
        )
    generator = Generator(
        int(arch["image_size"]),
        int(arch["channels"]),
        int(arch["latent_size"]),
        int(arch["generator_width"]),
    )
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


def write_animation(path: Path, frames: np.ndarray, fps: int) -> None:
    """(T, H, W, C) uint8 frames as a looping GIF (Pillow) or an MP4 (imageio + ffmpeg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    if path.suffix.lower() == ".mp4":
        import imageio.v2 as imageio

        # H.264 wants even sides; pad by at most one pixel.
        pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
        imageio.mimwrite(path, list(frames), fps=fps, macro_block_size=1)
        return
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=max(20, round(1000 / fps)), loop=0
    )


def _hwc(image: torch.Tensor) -> np.ndarray:
    """uint8 (C, H, W) -> (H, W) or (H, W, 3) for Pillow."""
    array = image.permute(1, 2, 0).cpu().numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


def _enlarge(frame: np.ndarray) -> np.ndarray:
    factor = max(1, math.ceil(WALK_MIN_SIDE / max(frame.shape[:2])))
    return frame.repeat(factor, axis=0).repeat(factor, axis=1)
