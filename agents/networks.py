"""Q-networks: an encoder (Nature CNN, IMPALA-style residual CNN or MLP) and a head (linear or
dueling). Every network sizes itself from the observation space with one dry forward pass."""

from __future__ import annotations

import torch
from torch import nn

from agents.config import ENCODERS


class NatureCNN(nn.Module):
    """The encoder of Mnih et al. (2015). Takes uint8 frames (N, C, H, W) and scales them."""

    def __init__(
        self, observation_shape: tuple[int, ...], width: int = 32, features: int = 512
    ) -> None:
        super().__init__()
        channels = observation_shape[0]
        self.convolutions = nn.Sequential(
            nn.Conv2d(channels, width, kernel_size=8, stride=4),
            nn.ReLU(),  # 32 x 20 x 20 for 84 x 84 input
            nn.Conv2d(width, 2 * width, kernel_size=4, stride=2),
            nn.ReLU(),  # 64 x 9 x 9
            nn.Conv2d(2 * width, 2 * width, kernel_size=3, stride=1),
            nn.ReLU(),  # 64 x 7 x 7
            nn.Flatten(),
        )
        flat = _flat_size(self.convolutions, observation_shape)  # 3136 for 84 x 84
        self.linear = nn.Sequential(nn.Linear(flat, features), nn.ReLU())
        self.output_size = features

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convolutions(_scaled_channels_last(observations)))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ImpalaCNN(nn.Module):
    """The residual encoder of Espeholt et al. (2018): three stacks of conv, max-pool and two
    residual blocks (channels 16, 32, 32), then a linear layer."""

    def __init__(
        self, observation_shape: tuple[int, ...], width: int = 16, features: int = 256
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = observation_shape[0]
        for out_channels in (width, 2 * width, 2 * width):
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),  # halves H and W
                ResidualBlock(out_channels),
                ResidualBlock(out_channels),
            ]
            in_channels = out_channels
        layers += [nn.ReLU(), nn.Flatten()]  # 32 x 11 x 11 for 84 x 84 input
        self.convolutions = nn.Sequential(*layers)
        flat = _flat_size(self.convolutions, observation_shape)
        self.linear = nn.Sequential(nn.Linear(flat, features), nn.ReLU())
        self.output_size = features

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convolutions(_scaled_channels_last(observations)))


class VGGEncoder(nn.Module):
    """Stacks of 3x3 convolutions (Simonyan & Zisserman, 2015), each block two convolutions
    and a 2x2 max-pool, then a linear layer. Suits small frames (one pixel per cell of a
    built-in game) where the Nature CNN's 8x8 stride-4 first layer would skip whole cells."""

    def __init__(
        self, observation_shape: tuple[int, ...], width: int = 32, features: int = 256
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = observation_shape[0]
        for block_width in (width, 2 * width):
            layers += [
                nn.Conv2d(in_channels, block_width, kernel_size=3, padding=1),
                nn.ReLU(),
                nn.Conv2d(block_width, block_width, kernel_size=3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=2, ceil_mode=True),  # halves H and W, rounding up
            ]
            in_channels = block_width
        layers.append(nn.Flatten())  # 64 x 3 x 3 for 12 x 12 input, 64 x 6 x 6 for 21 x 21
        self.convolutions = nn.Sequential(*layers)
        flat = _flat_size(self.convolutions, observation_shape)
        self.linear = nn.Sequential(nn.Linear(flat, features), nn.ReLU())
        self.output_size = features

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convolutions(_scaled_channels_last(observations)))


class MLPEncoder(nn.Module):
    """Two hidden layers for vector observations (CartPole and friends)."""

    def __init__(
        self, observation_shape: tuple[int, ...], hidden: tuple[int, ...] = (128, 128)
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        size = int(torch.tensor(observation_shape).prod())
        for width in hidden:
            layers += [nn.Linear(size, width), nn.ReLU()]
            size = width
        self.layers = nn.Sequential(*layers)
        self.output_size = size

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        if observations.dtype == torch.uint8:  # pixels
            return self.layers(observations.float() / 255.0)
        return self.layers(observations.float())


class DuelingHead(nn.Module):
    """Q = V + A - mean(A) (Wang et al., 2016)."""

    def __init__(self, features: int, num_actions: int) -> None:
        super().__init__()
        self.value = nn.Linear(features, 1)
        self.advantage = nn.Linear(features, num_actions)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        advantage = self.advantage(features)  # (N, A)
        return self.value(features) + advantage - advantage.mean(dim=1, keepdim=True)


class QNetwork(nn.Module):
    """encoder -> head; `q(observations)` gives (N, num_actions) action values."""

    def __init__(self, encoder: nn.Module, num_actions: int, dueling: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        features = encoder.output_size
        self.head = (
            DuelingHead(features, num_actions) if dueling else nn.Linear(features, num_actions)
        )
        self.num_actions = num_actions

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(observations))


def build_q_network(
    observation_shape: tuple[int, ...],
    num_actions: int,
    encoder: str = "auto",
    dueling: bool = False,
    width: int = 0,
) -> QNetwork:
    """The Q-network for an observation shape: 3-D (stacked frames) gets a CNN, 1-D an MLP.
    `width` sets the channels of a CNN's first layer (0: the encoder's published width)."""
    widths = {"width": width} if width else {}
    if encoder == "auto":
        encoder = "nature" if len(observation_shape) == 3 else "mlp"
    if encoder in ("nature", "impala", "vgg") and len(observation_shape) != 3:
        raise ValueError(
            f"--encoder {encoder} needs image observations, got shape {observation_shape}"
        )
    if encoder == "nature":
        module: nn.Module = NatureCNN(observation_shape, **widths)
    elif encoder == "impala":
        module = ImpalaCNN(observation_shape, **widths)
    elif encoder == "vgg":
        module = VGGEncoder(observation_shape, **widths)
    elif encoder == "mlp":
        module = MLPEncoder(observation_shape)
    else:
        raise ValueError(f"unknown encoder {encoder!r}; choose from {', '.join(ENCODERS)}")
    network = QNetwork(module, num_actions, dueling=dueling)
    if len(observation_shape) == 3:
        # NHWC convolutions are ~10% faster on the CPU (oneDNN) and what tensor cores want.
        network = network.to(memory_format=torch.channels_last)
    return network


def random_shift(
    observations: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random-shift augmentation (DrQ, Kostrikov et al. 2020): replicate-pad by `pad` pixels
    and crop back at a random offset per image. Works on uint8 or float (N, C, H, W)."""
    n, _, height, width = observations.shape
    padded = nn.functional.pad(observations.float(), (pad, pad, pad, pad), mode="replicate")
    offsets_x = torch.randint(0, 2 * pad + 1, (n,), device=observations.device, generator=generator)
    offsets_y = torch.randint(0, 2 * pad + 1, (n,), device=observations.device, generator=generator)
    rows = torch.arange(height, device=observations.device)
    cols = torch.arange(width, device=observations.device)
    row_index = (offsets_y[:, None] + rows[None, :])[:, None, :, None]  # (N, 1, H, 1)
    col_index = (offsets_x[:, None] + cols[None, :])[:, None, None, :]  # (N, 1, 1, W)
    batch_index = torch.arange(n, device=observations.device)[:, None, None, None]
    channel_index = torch.arange(observations.shape[1], device=observations.device)[
        None, :, None, None
    ]
    shifted = padded[batch_index, channel_index, row_index, col_index]
    return shifted.to(observations.dtype)


def _scaled_channels_last(observations: torch.Tensor) -> torch.Tensor:
    """uint8 frames (N, C, H, W) -> floats in [0, 1], laid out channels-last."""
    return (observations.float() / 255.0).contiguous(memory_format=torch.channels_last)


def _flat_size(module: nn.Module, observation_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(module(torch.zeros(1, *observation_shape)).shape[1])
