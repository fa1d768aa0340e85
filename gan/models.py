"""DCGAN generator and discriminator (Radford et al., 2016, "Unsupervised Representation
Learning with Deep Convolutional Generative Adversarial Networks").

Both networks are built for square images of 32, 64 or 128 pixels. The number of
up-/down-sampling blocks follows from the image size: every block doubles (generator) or halves
(discriminator) the side, between the image and a 4 x 4 feature map. The widths double towards
the 4 x 4 end, as in the paper; `generator_width` and `discriminator_width` are the widths next
to the image (the paper's and pytorch/examples' `ngf` / `ndf`).

With `num_classes` > 0 both are class-conditional (a cGAN, Mirza & Osindero, 2014): the
generator reads the label, one-hot, beside z; the discriminator reads it as that many constant
planes beside the image's channels. (A projection discriminator, Miyato & Koyama 2018, collapsed
here to one image per class on MNIST in 10 minutes of CPU; this plain form kept the variety.) A
conditional generator called without labels draws the classes in turn (0, 1, 2, ..., 0, 1,
...), so every class is equally present.

Example:
    >>> generator = Generator(image_size=64, channels=3, latent_size=100, width=64)
    >>> generator(torch.randn(8, 100)).shape
    torch.Size([8, 3, 64, 64])
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as apply_spectral_norm

from playground.errors import UserError

IMAGE_SIZES = (32, 64, 128)


def check_image_size(image_size: int) -> int:
    """The number of doublings between 4 x 4 and `image_size`, refusing unsupported sizes."""
    if image_size not in IMAGE_SIZES:
        supported = ", ".join(str(size) for size in IMAGE_SIZES)
        raise UserError(f"--image-size {image_size} is not supported; choose one of {supported}")
    return int(math.log2(image_size)) - 2


def init_weights(module: nn.Module) -> None:
    """The paper's initialisation: conv weights ~ N(0, 0.02); batch-norm scale ~ N(1, 0.02),
    shift 0."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    """Maps a latent vector z (N, latent_size) to an image (N, channels, size, size) in [-1, 1]."""

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        latent_size: int = 100,
        width: int = 64,
        batch_norm: bool = True,
        num_classes: int = 0,
    ):
        super().__init__()
        norm = nn.BatchNorm2d if batch_norm else lambda width: nn.Identity()
        doublings = check_image_size(image_size)
        if channels not in (1, 3):
            raise UserError(f"--channels {channels} is not supported; use 1 (grey) or 3 (colour)")
        self.image_size, self.channels, self.latent_size = image_size, channels, latent_size
        self.num_classes = num_classes
        input_size = latent_size + num_classes  # z and the one-hot label
        # The width at 4 x 4 is width * 2**(doublings - 1): 4x for 32 px, 8x for 64 px, 16x for 128 px.
        top = width * 2 ** (doublings - 1)
        layers: list[nn.Module] = [
            # Project z (latent, + num_classes for the one-hot label) x 1 x 1 to the 4 x 4 map.
            nn.ConvTranspose2d(input_size, top, kernel_size=4, stride=1, padding=0, bias=False),
            norm(top),
            nn.ReLU(inplace=True),
            # (width * 2**(doublings-1)) x 4 x 4, e.g. (width*8) x 4 x 4 for 64 px
        ]
        in_width = top
        for block in range(1, doublings):
            out_width = top // 2**block
            layers += [
                nn.ConvTranspose2d(
                    in_width, out_width, kernel_size=4, stride=2, padding=1, bias=False
                ),
                norm(out_width),
                nn.ReLU(inplace=True),
                # (width * 2**(doublings-1-block)) x (4 * 2**block) x (4 * 2**block),
                # e.g. for 64 px: (width*4) x 8 x 8, (width*2) x 16 x 16, width x 32 x 32
            ]
            in_width = out_width
        layers += [
            nn.ConvTranspose2d(in_width, channels, kernel_size=4, stride=2, padding=1, bias=False),
            nn.Tanh(),
            # channels x image_size x image_size
        ]
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images for `noise` (N, latent); a conditional generator draws `labels` (N,) int64,
        or, without them, the classes in turn (`balanced_labels`)."""
        noise = noise.reshape(noise.shape[0], self.latent_size)
        if self.num_classes:
            if labels is None:
                labels = balanced_labels(noise.shape[0], self.num_classes, noise.device)
            one_hot = nn.functional.one_hot(labels, self.num_classes).to(noise.dtype)
            noise = torch.cat([noise, one_hot], dim=1)
        # (N, input) -> (N, input, 1, 1): the first transposed conv treats it as a 1 x 1 map.
        return self.net(noise[:, :, None, None])


def balanced_labels(
    count: int, num_classes: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """0, 1, ..., num_classes - 1, 0, 1, ...: `count` labels, every class equally often (in a grid
    with `num_classes` columns, one class per column)."""
    return torch.arange(count, device=device) % num_classes


class Discriminator(nn.Module):
    """Maps an image (N, channels, size, size) to one LOGIT per image (N,), not a probability:
    the losses apply the sigmoid themselves, which is numerically safe under autocast.

    With `spectral_norm` every conv is spectrally normalised (Miyato et al., 2018) and batch norm
    is left out, since the two fight each other. `dropout` drops features after every hidden
    block (a regulariser against a discriminator that memorises a small data set)."""

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        width: int = 64,
        spectral_norm: bool = False,
        batch_norm: bool = True,
        dropout: float = 0.0,
        num_classes: int = 0,
    ):
        super().__init__()
        doublings = check_image_size(image_size)
        if channels not in (1, 3):
            raise UserError(f"--channels {channels} is not supported; use 1 (grey) or 3 (colour)")
        self.image_size, self.channels, self.num_classes = image_size, channels, num_classes

        def conv(in_width: int, out_width: int, stride: int, padding: int) -> nn.Module:
            layer = nn.Conv2d(in_width, out_width, 4, stride, padding, bias=False)
            init_weights(layer)
            return apply_spectral_norm(layer) if spectral_norm else layer

        layers: list[nn.Module] = [
            # No batch norm on the input layer (the paper's advice). A conditional D reads
            # num_classes more planes: the one-hot label, constant over the image.
            conv(channels + num_classes, width, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            # width x (image_size / 2) x (image_size / 2)
        ]
        in_width = width
        for block in range(1, doublings):
            out_width = width * 2**block
            layers.append(conv(in_width, out_width, stride=2, padding=1))
            if batch_norm and not spectral_norm:
                layers.append(nn.BatchNorm2d(out_width))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            # (width * 2**block) x (image_size / 2**(block+1)) x (image_size / 2**(block+1)),
            # e.g. for 64 px: (width*2) x 16 x 16, (width*4) x 8 x 8, (width*8) x 4 x 4
            in_width = out_width
        layers += [
            conv(in_width, 1, stride=1, padding=0),
            # 1 x 1 x 1
        ]
        self.net = nn.Sequential(*layers)
        self.net.apply(_init_batch_norm)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            if labels is None:
                raise ValueError("a conditional discriminator needs the images' labels")
            size = images.shape[-1]
            planes = nn.functional.one_hot(labels, self.num_classes).to(images.dtype)
            planes = planes[:, :, None, None].expand(-1, -1, size, size)
            images = torch.cat([images, planes], dim=1)
        return self.net(images).reshape(images.shape[0])


def _init_batch_norm(module: nn.Module) -> None:
    if isinstance(module, nn.BatchNorm2d):
        init_weights(module)


def architecture(
    image_size: int,
    channels: int,
    latent_size: int,
    generator_width: int,
    discriminator_width: int,
    spectral_norm: bool,
    batch_norm: bool = True,
    num_classes: int = 0,
) -> dict[str, int | bool]:
    """The settings that fix the networks' shapes; a checkpoint stores them so that loading it
    into different networks is refused with one clear line."""
    return {
        "image_size": image_size,
        "channels": channels,
        "latent_size": latent_size,
        "generator_width": generator_width,
        "discriminator_width": discriminator_width,
        "spectral_norm": spectral_norm,
        "batch_norm": batch_norm,
        "num_classes": num_classes,
    }


def build_models(
    arch: dict[str, int | bool], dropout: float = 0.0
) -> tuple[Generator, Discriminator]:
    """Generator and discriminator for an `architecture(...)` dict (`dropout` in D)."""
    discriminator = Discriminator(
        int(arch["image_size"]),
        int(arch["channels"]),
        int(arch["discriminator_width"]),
        bool(arch["spectral_norm"]),
        bool(arch.get("batch_norm", True)),
        dropout,
        int(arch.get("num_classes", 0)),
    )
    return generator_of(arch), discriminator


def generator_of(arch: dict[str, int | bool]) -> Generator:
    """The generator an `architecture(...)` dict describes (a checkpoint's, too)."""
    return Generator(
        int(arch["image_size"]),
        int(arch["channels"]),
        int(arch["latent_size"]),
        int(arch["generator_width"]),
        bool(arch.get("batch_norm", True)),  # checkpoints from before the flag had it
        int(arch.get("num_classes", 0)),  # and unconditional ones from before conditioning
    )


@torch.no_grad()
def generate(
    generator: Generator,
    noise: torch.Tensor,
    labels: torch.Tensor | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Images in [-1, 1] for `noise` (and, for a conditional generator, `labels`; by default
    the classes in turn), with batch norm in inference mode (running statistics); the
    generator's mode is restored afterwards."""
    if generator.num_classes and labels is None:
        labels = balanced_labels(noise.shape[0], generator.num_classes, noise.device)
    was_training = generator.training
    generator.eval()
    if labels is None:
        images = torch.cat([generator(chunk) for chunk in noise.split(batch_size)])
    else:
        images = torch.cat(
            [
                generator(chunk, chunk_labels)
                for chunk, chunk_labels in zip(
                    noise.split(batch_size), labels.split(batch_size), strict=True
                )
            ]
        )
    generator.train(was_training)
    return images.float()


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
