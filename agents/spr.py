"""SPR's self-predictive loss (Schwarzer et al. 2021), which BBF keeps: from the encoder's
spatial latent of an observation, a transition model predicts the latents of the next K steps
given the actions taken; each prediction, projected (by the encoder's own features layer) and
passed through a predictor, should point the same way as the target network's projection of
the observation actually seen then (projections are taken before the features layer's ReLU, as
BBF's). The loss is minus their cosine similarity, summed over the
K steps that stay within the episode; it trains the encoder to keep what the game's dynamics
need, which is what lets a data-efficient agent learn from so few frames.

    spr = SelfPredictive(latent_shape=(64, 7, 7), num_actions=6, features=512)
    losses = spr_losses(online, target, latent, future_observations, future_actions, mask)
"""

from __future__ import annotations

import torch
from torch import nn


class SelfPredictive(nn.Module):
    """The transition model (two 3x3 convolutions on the latent with the action as one-hot
    planes, ReLU after each, as SPR's) and the predictor (one linear layer). It lives inside
    the Q-network (`QNetwork.spr`), so it is saved, restored, optimised and reset with it."""

    def __init__(
        self,
        latent_shape: tuple[int, int, int],
        num_actions: int,
        features: int,
        renormalize: bool = False,
    ) -> None:
        super().__init__()
        channels = latent_shape[0]
        self.num_actions = num_actions
        self.transition = nn.Sequential(
            nn.Conv2d(channels + num_actions, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            *([Renormalize()] if renormalize else []),
        )
        self.predictor = nn.Linear(features, features)

    def step(self, latent: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The latent (N, C, H, W) one step on after `actions` (N,)."""
        planes = nn.functional.one_hot(actions, self.num_actions).to(latent.dtype)
        planes = planes[:, :, None, None].expand(-1, -1, *latent.shape[2:])
        return self.transition(torch.cat([latent, planes], dim=1))


class Renormalize(nn.Module):
    """Each latent (N, ...) rescaled to [0, 1] over all its entries: (x - min) / (max - min),
    as SPR, BBF and MuZero rescale the encoder's output and every predicted latent. The
    latent's scale can then neither grow nor shrink, and a predicted latent lives on the same
    scale as an encoded one (`--renormalize`)."""

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, latent.dim()))  # no reshape: a channels-last latent stays so
        low = latent.amin(dim=dims, keepdim=True)
        high = latent.amax(dim=dims, keepdim=True)
        return (latent - low) / (high - low + 1e-5)


def cosine_losses(
    predictions: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Minus the cosine similarity of predictions and targets (B, K, F), summed over the K
    steps where `mask` (B, K) is 1: one loss per transition (B,)."""
    similarity = nn.functional.cosine_similarity(predictions.float(), targets.float(), dim=-1)
    return -(similarity * mask).sum(dim=1)


def spr_losses(
    online: nn.Module,
    target: nn.Module,
    latent: torch.Tensor,
    future_observations: torch.Tensor,
    future_actions: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """SPR's loss per transition (B,): `latent` (B, C, H, W) is the online encoder's of the
    transitions' observations; the future observations (B, K, ...) are projected by the target
    network's encoder (no gradient), the predictions rolled out by `online.spr`."""
    batch, steps = future_actions.shape
    with torch.no_grad():
        seen_latent = target.latent(future_observations.flatten(0, 1))
        seen = projection(target)(seen_latent.flatten(1)).view(batch, steps, -1)
    project = projection(online)
    predictions = []
    for step in range(steps):
        latent = online.spr.step(latent, future_actions[:, step])
        predictions.append(online.spr.predictor(project(latent.flatten(1))))
    return cosine_losses(torch.stack(predictions, dim=1), seen, mask)


def projection(network: nn.Module) -> nn.Module:
    """SPR's projection of a flattened latent: the encoder's features layer *before* its ReLU,
    as BBF's (its `project`; the Q path applies the ReLU after), so the parts a ReLU would
    zero count in the cosine too."""
    return network.encoder.linear[0]
