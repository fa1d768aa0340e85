"""GAN losses as pure functions of the discriminator's logits.

`nonsaturating` is the original GAN loss with the generator maximising log D(G(z)) instead of
minimising log(1 - D(G(z))) (Goodfellow et al., 2014), written with `binary_cross_entropy_with_logits`
so it stays finite and is safe under autocast. `hinge` is the hinge loss of Lim & Ye (2017) and
Miyato et al. (2018). Logits are cast to float32 first so half-precision runs do not lose the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("nonsaturating", "hinge")


def discriminator_loss(
    real_logits: torch.Tensor,
    fake_logits: torch.Tensor,
    loss: str = "nonsaturating",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The discriminator's loss on real and on fake images, as two parts; their sum is d_loss.

    nonsaturating: -log sigmoid(D(x)) and -log(1 - sigmoid(D(G(z)))), batch means; with
    `label_smoothing` s the real images' target is 1 - s (one-sided, Salimans et al. 2016).
    hinge: max(0, 1 - D(x)) and max(0, 1 + D(G(z))), batch means."""
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if loss == "nonsaturating":
        real_target = torch.full_like(real_logits, 1.0 - label_smoothing)
        d_loss_real = F.binary_cross_entropy_with_logits(real_logits, real_target)
        d_loss_fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        return d_loss_real, d_loss_fake
    if loss == "hinge":
        return F.relu(1.0 - real_logits).mean(), F.relu(1.0 + fake_logits).mean()
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")


def top_k(fake_logits: torch.Tensor, fraction: float) -> torch.Tensor:
    """The `fraction` of logits the discriminator finds most real (Sinha et al., 2020: the
    generator learns from its better samples; the others' gradients mostly point at D's
    current weak spots)."""
    if fraction >= 1.0:
        return fake_logits
    count = max(1, round(fraction * fake_logits.shape[0]))
    return torch.topk(fake_logits.float(), count).values


def generator_loss(fake_logits: torch.Tensor, loss: str = "nonsaturating") -> torch.Tensor:
    """The generator's loss on the discriminator's logits for its images.

    nonsaturating: -log sigmoid(D(G(z))), batch mean.  hinge: -D(G(z)), batch mean."""
    fake_logits = fake_logits.float()
    if loss == "nonsaturating":
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    if loss == "hinge":
        return -fake_logits.mean()
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
