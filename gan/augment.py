"""DiffAugment (Zhao et al., 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The same kind of random, differentiable augmentation is applied to real and to fake images
right before the discriminator, so the discriminator cannot simply memorise a small data set
while gradients still flow through the augmentation to the generator.

Example:
    >>> policy = parse_policy("color,translation,cutout")
    >>> diff_augment(torch.zeros(4, 3, 32, 32), policy).shape
    torch.Size([4, 3, 32, 32])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from playground.errors import UserError


def random_brightness(images: torch.Tensor) -> torch.Tensor:
    """Add one offset in [-0.5, 0.5) per image."""
    return images + (
        torch.rand(images.shape[0], 1, 1, 1, dtype=images.dtype, device=images.device) - 0.5
    )


def random_saturation(images: torch.Tensor) -> torch.Tensor:
    """Scale each image's distance from its per-pixel grey value by a factor in [0, 2)."""
    grey = images.mean(dim=1, keepdim=True)
    factor = torch.rand(images.shape[0], 1, 1, 1, dtype=images.dtype, device=images.device) * 2
    return (images - grey) * factor + grey


def random_contrast(images: torch.Tensor) -> torch.Tensor:
    """Scale each image's distance from its mean value by a factor in [0.5, 1.5)."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    factor = torch.rand(images.shape[0], 1, 1, 1, dtype=images.dtype, device=images.device) + 0.5
    return (images - mean) * factor + mean


def random_translation(images: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to `ratio` of its size in x and y, filling with zeros."""
    batch, _, height, width = images.shape
    shift_y, shift_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    device = images.device
    translation_y = torch.randint(-shift_y, shift_y + 1, (batch, 1, 1), device=device)
    translation_x = torch.randint(-shift_x, shift_x + 1, (batch, 1, 1), device=device)
    grid_batch, grid_y, grid_x = torch.meshgrid(
        torch.arange(batch, device=device),
        torch.arange(height, device=device),
        torch.arange(width, device=device),
        indexing="ij",
    )
    # Index into a one-pixel zero border, so shifted-in pixels read zeros.
    grid_y = torch.clamp(grid_y + translation_y + 1, 0, height + 1)
    grid_x = torch.clamp(grid_x + translation_x + 1, 0, width + 1)
    padded = F.pad(images, [1, 1, 1, 1])  # (N, C, H + 2, W + 2)
    shifted = padded.permute(0, 2, 3, 1)[grid_batch, grid_y, grid_x]  # (N, H, W, C)
    return shifted.permute(0, 3, 1, 2)


def random_cutout(images: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of `ratio` times the image size at a random place in each image."""
    batch, _, height, width = images.shape
    size_y, size_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    device = images.device
    offset_y = torch.randint(0, height + (1 - size_y % 2), (batch, 1, 1), device=device)
    offset_x = torch.randint(0, width + (1 - size_x % 2), (batch, 1, 1), device=device)
    grid_batch, grid_y, grid_x = torch.meshgrid(
        torch.arange(batch, device=device),
        torch.arange(size_y, device=device),
        torch.arange(size_x, device=device),
        indexing="ij",
    )
    grid_y = torch.clamp(grid_y + offset_y - size_y // 2, 0, height - 1)
    grid_x = torch.clamp(grid_x + offset_x - size_x // 2, 0, width - 1)
    mask = torch.ones(batch, height, width, dtype=images.dtype, device=device)
    mask[grid_batch, grid_y, grid_x] = 0
    return images * mask.unsqueeze(1)


AUGMENTATIONS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], ...]] = {
    "color": (random_brightness, random_saturation, random_contrast),
    "translation": (random_translation,),
    "cutout": (random_cutout,),
}


def parse_policy(text: str) -> tuple[str, ...]:
    """Turn `--diff-augment "color,translation,cutout"` into a tuple; "" means no augmentation."""
    policy = tuple(part.strip() for part in text.split(",") if part.strip())
    for name in policy:
        if name not in AUGMENTATIONS:
            raise UserError(
                f"--diff-augment: unknown augmentation {name!r}; use a comma-separated subset of "
                f"{','.join(AUGMENTATIONS)} (or an empty string for none)"
            )
    return policy


def diff_augment(images: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """Apply the augmentations of `policy` in order; differentiable in `images`."""
    for name in policy:
        for augmentation in AUGMENTATIONS[name]:
            images = augmentation(images)
    return images
