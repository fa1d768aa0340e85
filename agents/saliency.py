"""Gradient saliency of a Q-network: which input pixels move the value of an action most.

The map is |dQ(s, a) / ds| summed over the stacked frames (Simonyan et al., 2014, applied to
the frames an agent sees), blurred a little so it reads as regions rather than speckle, and
scaled so its largest value is 1.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur an (H, W) float image with a separable Gaussian of standard deviation `sigma` pixels
    (edges replicated, so the border does not darken). `sigma <= 0` returns it unchanged."""
    if sigma <= 0:
        return image
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    padded = nn.functional.pad(
        image[None, None], (radius, radius, radius, radius), mode="replicate"
    )
    rows = nn.functional.conv2d(padded, kernel.view(1, 1, 1, -1))  # blur along W
    both = nn.functional.conv2d(rows, kernel.view(1, 1, -1, 1))  # then along H
    return both[0, 0]


def saliency_map(
    network: nn.Module,
    observation: np.ndarray | torch.Tensor,
    action: int,
    sigma: float = 1.5,
) -> np.ndarray:
    """Saliency of Q(observation, action) for one stacked-frame observation (C, H, W).

    Returns an (H, W) float32 map in [0, 1]: |dQ/dx| summed over the C frames, blurred with
    `sigma`, divided by its maximum (all zeros when the gradient vanishes everywhere).

    Example:
        >>> from agents.networks import build_q_network
        >>> network = build_q_network((4, 84, 84), num_actions=3)
        >>> frames = np.random.default_rng(0).integers(0, 255, (4, 84, 84), dtype=np.uint8)
        >>> saliency_map(network, frames, action=1).shape
        (84, 84)
    """
    if observation.ndim != 3:
        raise ValueError(
            f"saliency needs stacked frames (C, H, W), got shape {tuple(observation.shape)}"
        )
    device = next(network.parameters()).device
    frames = torch.as_tensor(observation, device=device).float()[None].requires_grad_(True)
    with torch.enable_grad():
        q_values = network(frames)  # (1, A)
        (gradient,) = torch.autograd.grad(q_values[0, action], frames)
    heat = gaussian_blur(gradient[0].abs().sum(dim=0), sigma)  # (H, W)
    peak = heat.max()
    if peak > 0:
        heat = heat / peak
    return heat.detach().cpu().numpy().astype(np.float32)
