"""Q-networks: an encoder (Nature CNN, IMPALA-style residual CNN or MLP) and a head (linear or
dueling). Every network sizes itself from the observation space with one dry forward pass."""

from __future__ import annotations

import torch
from torch import nn

ENCODERS = ("auto", "nature", "impala", "mlp")


class NatureCNN(nn.Module):
    """The encoder of Mnih et al. (2015). Takes uint8 frames (N, C, H, W) and scales them."""

    def __init__(self, observation_shape: tuple[int, ...], features: int = 512) -> None:
        super().__init__()
        channels = observation_shape[0]
        self.convolutions = nn.Sequential(
            nn.Conv2d(channels, 32, kernel_size=8, stride=4),
            nn.ReLU(),  # 32 x 20 x 20 for 84 x 84 input
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),  # 64 x 9 x 9
            nn.Conv2d(64, 64, kernel_size=3, stride=1),
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
        self,
        observation_shape: tuple[int, ...],
        channels: tuple[int, ...] = (16, 32, 32),
        features: int = 256,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = observation_shape[0]
        for out_channels in channels:
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
) -> QNetwork:
    """The Q-network for an observation shape: 3-D (stacked frames) gets a CNN, 1-D an MLP."""
    if encoder == "auto":
        encoder = "nature" if len(observation_shape) == 3 else "mlp"
    if encoder in ("nature", "impala") and len(observation_shape) != 3:
        raise ValueError(
            f"--encoder {encoder} needs image observations, got shape {observation_shape}"
        )
    if encoder == "nature":
        module: nn.Module = NatureCNN(observation_shape)
    elif encoder == "impala":
        module = ImpalaCNN(observation_shape)
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
