"""Q-networks: an encoder and a head (linear, dueling, noisy or distributional: agents/heads.py). The encoders are the classic CNN
designs, each small enough for a laptop: `nature` (Mnih et al. 2015), `resnet` (residual
stacks, as IMPALA's), `vgg` (stacks of 3x3), `inception` (parallel 1x1 / 3x3 / 5x5 / pool
branches), `densenet` (dense blocks with transitions), and `mlp` for vector observations.
Every network sizes itself from the observation shape with one dry forward pass; `width`
scales its channels and `batch_norm` / `dropout` add the two regularisers."""

from __future__ import annotations

import torch
from torch import nn

from agents.config import ENCODERS, INITS, PADDINGS
from agents.heads import DEFAULT_ATOMS, HeadKind, NoisyLinear, ValueHead
from agents.spr import Renormalize, SelfPredictive


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    """Batch norm after a convolution when asked (--batch-norm), else nothing."""
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


def _conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    batch_norm: bool,
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
) -> list[nn.Module]:
    """Convolution, batch norm when asked, ReLU: layers to splice into an nn.Sequential (flat,
    so a network without batch norm keeps the parameter names checkpoints were saved with)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    return [*layers, nn.ReLU()]


class ConvEncoder(nn.Module):
    """What every pixel encoder shares: uint8 frames (N, C, H, W) scaled to [0, 1] and laid out
    channels-last, `convolutions` (set by the subclass, ending in Flatten), then a linear layer
    to `features` (ReLU, dropout when asked). The flatten size comes from a dry forward pass."""

    convolutions: nn.Module

    def _finish(self, observation_shape: tuple[int, ...], features: int, dropout: float) -> None:
        flat = _flat_size(self.convolutions, observation_shape)
        self.linear = nn.Sequential(nn.Linear(flat, features), nn.ReLU(), nn.Dropout(dropout))
        self.output_size = features

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convolutions(_scaled_channels_last(observations)))


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's and Flax's 'SAME' padding of one axis: ceil(size / stride) outputs, the
    zeros needed for them split with the odd one after (84, 8, 4 -> (2, 2): 21 outputs)."""
    outputs = -(-size // stride)
    total = max((outputs - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class NatureCNN(ConvEncoder):
    """The encoder of Mnih et al. (2015): 8x8 stride 4, 4x4 stride 2, 3x3, then 512 features.
    `padding` valid pads nothing (the paper's, and every PyTorch port's: 64 x 7 x 7 on 84 x 84);
    same pads as TensorFlow / Flax do by default, as Dopamine's DrQ(eps) and SPR networks run
    it (64 x 11 x 11: 2.5x the features into the linear layer)."""

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        width: int = 32,
        features: int = 512,
        batch_norm: bool = False,
        dropout: float = 0.0,
        padding: str = "valid",
    ) -> None:
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding {padding!r} is not one of {', '.join(PADDINGS)}")
        height, width_px = observation_shape[1], observation_shape[2]
        layers: list[nn.Module] = []
        in_channels = observation_shape[0]
        for out_channels, kernel, stride in ((width, 8, 4), (2 * width, 4, 2), (2 * width, 3, 1)):
            even: tuple[int, int] | int = 0
            if padding == "same":
                top, bottom = same_padding(height, kernel, stride)
                left, right = same_padding(width_px, kernel, stride)
                if (top, left) == (bottom, right):
                    even = (top, left)  # the convolution pads it itself (no extra copy)
                else:
                    layers.append(nn.ZeroPad2d((left, right, top, bottom)))
                height, width_px = -(-height // stride), -(-width_px // stride)
            layers += _conv(in_channels, out_channels, kernel, batch_norm, stride, even)
            in_channels = out_channels
        # valid on 84 x 84: 32 x 20 x 20, 64 x 9 x 9, 64 x 7 x 7 -> 3136 features;
        # same: 32 x 21 x 21, 64 x 11 x 11, 64 x 11 x 11 -> 7744.
        self.convolutions = nn.Sequential(*layers, nn.Flatten())
        self._finish(observation_shape, features, dropout)


class ResidualBlock(nn.Module):
    """x + conv(relu(conv(relu(x)))): the identity path lets gradients skip the block."""

    def __init__(self, channels: int, batch_norm: bool = False) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.norm0 = _norm(channels, batch_norm)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.norm1 = _norm(channels, batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm1(self.conv1(torch.relu(self.norm0(self.conv0(torch.relu(x))))))


class ResNetEncoder(ConvEncoder):
    """Residual stacks (He et al., 2016) as IMPALA uses them (Espeholt et al., 2018): three
    stacks of a 3x3 conv, a stride-2 max-pool and two residual blocks (16, 32, 32 channels)."""

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        width: int = 16,
        features: int = 256,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = observation_shape[0]
        for out_channels in (width, 2 * width, 2 * width):
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),  # halves H and W
                ResidualBlock(out_channels, batch_norm),
                ResidualBlock(out_channels, batch_norm),
            ]
            in_channels = out_channels
        layers += [nn.ReLU(), nn.Flatten()]  # 32 x 11 x 11 for 84 x 84 input
        self.convolutions = nn.Sequential(*layers)
        self._finish(observation_shape, features, dropout)


class VGGEncoder(ConvEncoder):
    """Stacks of 3x3 convolutions (Simonyan & Zisserman, 2015), each block two convolutions
    and a 2x2 max-pool. Suits small frames (one pixel per cell of a built-in game) where the
    Nature CNN's 8x8 stride-4 first layer would skip whole cells."""

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        width: int = 32,
        features: int = 256,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = observation_shape[0]
        for block_width in (width, 2 * width):
            layers += [
                *_conv(in_channels, block_width, 3, batch_norm, padding=1),
                *_conv(block_width, block_width, 3, batch_norm, padding=1),
                nn.MaxPool2d(kernel_size=2, ceil_mode=True),  # halves H and W, rounding up
            ]
            in_channels = block_width
        layers.append(nn.Flatten())  # 64 x 3 x 3 for 12 x 12 input, 64 x 6 x 6 for 21 x 21
        self.convolutions = nn.Sequential(*layers)
        self._finish(observation_shape, features, dropout)


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated (Szegedy et al., 2015): a 1x1 convolution; a 1x1
    reduction then a 3x3; a 1x1 reduction then two 3x3 (a 5x5's view at fewer weights, Szegedy
    et al., 2016); a 3x3 max-pool then a 1x1. Out: 4 x `branch` channels, same H x W."""

    def __init__(self, in_channels: int, branch: int, batch_norm: bool = False) -> None:
        super().__init__()
        reduced = max(branch // 2, 1)
        self.one = nn.Sequential(*_conv(in_channels, branch, 1, batch_norm))
        self.three = nn.Sequential(
            *_conv(in_channels, reduced, 1, batch_norm),
            *_conv(reduced, branch, 3, batch_norm, padding=1),
        )
        self.five = nn.Sequential(
            *_conv(in_channels, reduced, 1, batch_norm),
            *_conv(reduced, branch, 3, batch_norm, padding=1),
            *_conv(branch, branch, 3, batch_norm, padding=1),
        )
        self.pool = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            *_conv(in_channels, branch, 1, batch_norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.one(x), self.three(x), self.five(x), self.pool(x)], dim=1)


class InceptionEncoder(ConvEncoder):
    """A 3x3 stem, then two Inception blocks, each followed by a 2x2 max-pool."""

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        width: int = 16,
        features: int = 256,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.convolutions = nn.Sequential(
            *_conv(observation_shape[0], 2 * width, 3, batch_norm, padding=1),
            nn.MaxPool2d(kernel_size=2, ceil_mode=True),  # 32 x 42 x 42 (84), 32 x 6 x 6 (12)
            InceptionBlock(2 * width, width, batch_norm),  # 64 x 42 x 42
            nn.MaxPool2d(kernel_size=2, ceil_mode=True),  # 64 x 21 x 21
            InceptionBlock(4 * width, width, batch_norm),  # 64 x 21 x 21
            nn.MaxPool2d(kernel_size=2, ceil_mode=True),  # 64 x 11 x 11 (84), 64 x 2 x 2 (12)
            nn.Flatten(),
        )
        self._finish(observation_shape, features, dropout)


class DenseBlock(nn.Module):
    """`layers` 3x3 convolutions, each seeing the concatenation of the block's input and every
    earlier layer's output, each adding `growth` channels (Huang et al., 2017)."""

    def __init__(self, in_channels: int, growth: int, layers: int, batch_norm: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(*_conv(in_channels + index * growth, growth, 3, batch_norm, padding=1))
            for index in range(layers)
        )
        self.out_channels = in_channels + layers * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


class DenseNetEncoder(ConvEncoder):
    """A 3x3 stem, then two dense blocks of four layers (growth `width`), each followed by a
    transition: a 1x1 convolution halving the channels and a 2x2 average pool."""

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        width: int = 12,
        features: int = 256,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            *_conv(observation_shape[0], 2 * width, 3, batch_norm, padding=1),
            nn.MaxPool2d(kernel_size=2, ceil_mode=True),  # 24 x 42 x 42 (84), 24 x 6 x 6 (12)
        ]
        channels = 2 * width
        for _ in range(2):
            block = DenseBlock(channels, width, 4, batch_norm)  # + 4 x 12 channels
            channels = block.out_channels // 2
            layers += [
                block,
                *_conv(block.out_channels, channels, 1, batch_norm),  # the transition
                nn.AvgPool2d(kernel_size=2, ceil_mode=True),  # halves H and W
            ]
        layers.append(nn.Flatten())  # 30 x 11 x 11 for 84 x 84 input
        self.convolutions = nn.Sequential(*layers)
        self._finish(observation_shape, features, dropout)


class MLPEncoder(nn.Module):
    """Two hidden layers for vector observations (CartPole and friends), or flattened pixels."""

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        hidden: tuple[int, ...] = (128, 128),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        size = int(torch.tensor(observation_shape).prod())
        for width in hidden:
            layers += [nn.Linear(size, width), nn.ReLU(), nn.Dropout(dropout)]
            size = width
        self.layers = nn.Sequential(*layers)
        self.output_size = size

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        if observations.dtype == torch.uint8:  # pixels
            return self.layers(observations.float() / 255.0)
        return self.layers(observations.float())


class QNetwork(nn.Module):
    """encoder -> head; `q(observations)` gives (N, num_actions) action values.

    The head is one linear layer (a Q-value per action) unless it is dueling, noisy or
    distributional: then an `agents.heads.ValueHead`, whose `outputs` (N, A, K) are C51's
    logits or QR's quantiles, and whose Q-value is their mean."""

    def __init__(
        self,
        encoder: nn.Module,
        num_actions: int,
        dueling: bool = False,
        kind: HeadKind = "expected",
        atoms: int = 0,
        noisy: bool = False,
        v_min: float = -10.0,
        v_max: float = 10.0,
        spr_shape: tuple[int, ...] | None = None,
        renormalize: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        features = encoder.output_size
        self.kind = kind
        self.atoms = atoms or DEFAULT_ATOMS[kind]
        if kind == "expected" and not dueling and not noisy:
            self.head: nn.Module = nn.Linear(features, num_actions)
        else:
            self.head = ValueHead(
                features, num_actions, kind, self.atoms, dueling, noisy, v_min, v_max
            )
        self.num_actions = num_actions
        if spr_shape is not None:  # SPR's transition model and predictor (agents/spr.py)
            channels, height, width = _latent_shape(encoder, spr_shape)
            self.spr = SelfPredictive((channels, height, width), num_actions, features, renormalize)

    def outputs(self, observations: torch.Tensor) -> torch.Tensor:
        """The head's outputs (N, A, K): K = 1 for a Q-value, else logits or quantiles."""
        return self.head_outputs(self.encoder(observations))

    def head_outputs(self, features: torch.Tensor) -> torch.Tensor:
        # The head runs in fp32 even under bf16 autocast: Q-values near 1 differ between actions
        # by a few hundredths, and bf16's 8 bits (steps of 0.004 to 0.008 there) tied the best
        # two actions in 4-8% of Atari states and changed the greedy action in 2-4%
        # (docs/benchmarks.md). It costs one small matrix product in fp32.
        with torch.autocast(features.device.type, enabled=False):
            features = features.float()
            if isinstance(self.head, ValueHead):
                return self.head(features)
            return self.head(features).unsqueeze(-1)

    def latent(self, observations: torch.Tensor) -> torch.Tensor:
        """A pixel encoder's spatial latent (N, C, H, W): its convolutions, before flattening."""
        return self.encoder.convolutions[:-1](_scaled_channels_last(observations))

    def outputs_from_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """`outputs` from a `latent` (the same numbers as from the observations)."""
        return self.head_outputs(self.encoder.linear(latent.flatten(1)))

    def expected(self, outputs: torch.Tensor) -> torch.Tensor:
        """Q-values (N, A) from `outputs`."""
        if isinstance(self.head, ValueHead):
            return self.head.expected(outputs)
        return outputs.squeeze(-1)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """Q-values (N, A), in fp32 (the head's arithmetic, `head_outputs`)."""
        return self.expected(self.outputs(observations))


PIXEL_ENCODERS: dict[str, type[ConvEncoder]] = {
    "nature": NatureCNN,
    "resnet": ResNetEncoder,
    "impala": ResNetEncoder,  # the name it had first: IMPALA's residual stacks
    "vgg": VGGEncoder,
    "inception": InceptionEncoder,
    "densenet": DenseNetEncoder,
}


def build_q_network(
    observation_shape: tuple[int, ...],
    num_actions: int,
    encoder: str = "auto",
    dueling: bool = False,
    width: int = 0,
    batch_norm: bool = False,
    dropout: float = 0.0,
    head: HeadKind = "expected",
    atoms: int = 0,
    noisy: bool = False,
    v_min: float = -10.0,
    v_max: float = 10.0,
    spr: bool = False,
    renormalize: bool = False,
    padding: str = "valid",
    init: str = "torch",
) -> QNetwork:
    """The Q-network for an observation shape: 3-D (stacked frames) gets a CNN, 1-D an MLP.
    `width` sets the channels of a CNN's first layer (0: the encoder's published width);
    `batch_norm` puts batch norm after every convolution, `dropout` drops features before the
    head. `head` is expected (Q-values), c51 or qr with `atoms` (0: 51 or 200) on
    [v_min, v_max] for c51; `noisy` makes the head's layers and the encoder's last linear
    layer NoisyLinear (Rainbow's fully connected layers); `spr` adds SPR's transition model
    and predictor (`QNetwork.spr`); `renormalize` rescales a pixel encoder's spatial latent
    (and each of SPR's predicted ones) to [0, 1] per observation. `padding` is the nature
    encoder's (valid or same); `init` torch keeps PyTorch's default initialisation, xavier
    draws every convolution's and linear layer's weights Glorot-uniform with zero biases."""
    if init not in INITS:
        raise ValueError(f"--weight-init {init!r} is not one of {', '.join(INITS)}")
    if encoder == "auto":
        encoder = "nature" if len(observation_shape) == 3 else "mlp"
    if padding != "valid" and encoder != "nature":
        raise ValueError(
            f"--encoder-padding {padding} is the nature encoder's; --encoder {encoder} "
            "has no such choice"
        )
    if encoder in PIXEL_ENCODERS and len(observation_shape) != 3:
        raise ValueError(
            f"--encoder {encoder} needs image observations, got shape {observation_shape}"
        )
    if encoder in PIXEL_ENCODERS:
        options: dict[str, object] = {"width": width} if width else {}
        if encoder == "nature":
            options["padding"] = padding
        try:
            module: nn.Module = PIXEL_ENCODERS[encoder](
                observation_shape, batch_norm=batch_norm, dropout=dropout, **options
            )
        except ValueError as error:
            raise ValueError(f"--encoder {encoder}: {error}") from None
    elif encoder == "mlp":
        hidden = (width, width) if width else (128, 128)
        module = MLPEncoder(observation_shape, hidden=hidden, dropout=dropout)
    else:
        raise ValueError(f"unknown encoder {encoder!r}; choose from {', '.join(ENCODERS)}")
    if noisy:
        _make_last_linear_noisy(module)
    if renormalize:
        if not isinstance(module, ConvEncoder):
            raise ValueError(
                "--renormalize needs a pixel encoder (nature, resnet, vgg, inception, densenet)"
            )
        # Before the Flatten that ends every pixel encoder's convolutions: `latent` (which
        # stops before the Flatten) includes it; no parameter changes its name.
        *convolutions, flatten = module.convolutions
        module.convolutions = nn.Sequential(*convolutions, Renormalize(), flatten)
    spr_shape = tuple(observation_shape) if spr else None
    network = QNetwork(
        module, num_actions, dueling, head, atoms, noisy, v_min, v_max, spr_shape, renormalize
    )
    if init == "xavier":
        xavier_init(network)
    if len(observation_shape) == 3:
        # NHWC convolutions are ~10% faster on the CPU (oneDNN) and what tensor cores want.
        network = network.to(memory_format=torch.channels_last)
    return network


def xavier_init(network: nn.Module) -> None:
    """Glorot-uniform weights and zero biases for every convolution and linear layer (Flax's
    `xavier_uniform`, which Dopamine's DrQ(eps) and SPR networks use; PyTorch's own default is
    uniform in +-1/sqrt(fan_in) for weights and biases alike, 0.6x to 2.4x narrower on the
    Nature CNN). Noisy layers keep Fortunato et al.'s initialisation."""
    for module in network.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _latent_shape(encoder: nn.Module, observation_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if not isinstance(encoder, ConvEncoder):
        raise ValueError(
            "--spr-weight needs a pixel encoder (nature, resnet, vgg, inception, densenet)"
        )
    encoder.eval()
    try:
        with torch.no_grad():
            frames = torch.zeros(1, *observation_shape, dtype=torch.uint8)
            shape = encoder.convolutions[:-1](_scaled_channels_last(frames)).shape[1:]
    finally:
        encoder.train()
    return int(shape[0]), int(shape[1]), int(shape[2])


def _make_last_linear_noisy(module: nn.Module) -> None:
    """Swap the encoder's last nn.Linear (its features layer) for a NoisyLinear of that shape."""
    last: tuple[nn.Module, str, nn.Linear] | None = None
    for candidate in module.modules():
        for child_name, child in candidate.named_children():
            if isinstance(child, nn.Linear):
                last = (candidate, child_name, child)
    if last is not None:
        parent, name, layer = last
        setattr(parent, name, NoisyLinear(layer.in_features, layer.out_features))


def count_parameters(network: nn.Module) -> int:
    return sum(parameter.numel() for parameter in network.parameters())


def multiply_adds(network: nn.Module, observation_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass on one observation: half the FLOPs torch's own
    counter (torch.utils.flop_counter) finds in the convolutions and matrix products (what
    dominates; activations, pooling and norms are left out)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = network.training
    network.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            device = next(network.parameters()).device
            dtype = torch.uint8 if len(observation_shape) == 3 else torch.float32
            network(torch.zeros(1, *observation_shape, dtype=dtype, device=device))
    finally:
        network.train(was_training)
    return counter.get_total_flops() // 2


def random_shift(
    observations: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random-shift augmentation (DrQ, Kostrikov et al. 2020): replicate-pad by `pad` pixels
    and crop back at a random offset per image. Works on uint8 or float (N, C, H, W).

    On the CPU each image is cropped by slicing (4x faster there than one gather, which was a
    quarter of an Atari 100k update), from frames padded in their own dtype (uint8 frames are
    padded and cropped as bytes: 3-5x faster than through floats); elsewhere by one gather on
    float frames, which reads nothing back to the host (CUDA graphs). Both crop the same
    offsets from the same draws."""
    n = observations.shape[0]
    on_cpu = observations.device.type == "cpu"
    frames = observations if on_cpu else observations.float()
    padded = nn.functional.pad(frames, (pad, pad, pad, pad), mode="replicate")
    offsets_x = torch.randint(0, 2 * pad + 1, (n,), device=observations.device, generator=generator)
    offsets_y = torch.randint(0, 2 * pad + 1, (n,), device=observations.device, generator=generator)
    if on_cpu:
        return _shift_by_slicing(observations, padded, offsets_x, offsets_y)
    return _shift_by_gather(observations, padded, offsets_x, offsets_y)


def _shift_by_slicing(
    observations: torch.Tensor,
    padded: torch.Tensor,
    offsets_x: torch.Tensor,
    offsets_y: torch.Tensor,
) -> torch.Tensor:
    height, width = observations.shape[-2:]
    shifted = torch.empty_like(observations)
    for index, (row, col) in enumerate(zip(offsets_y.tolist(), offsets_x.tolist(), strict=True)):
        shifted[index] = padded[index, :, row : row + height, col : col + width]
    return shifted


def _shift_by_gather(
    observations: torch.Tensor,
    padded: torch.Tensor,
    offsets_x: torch.Tensor,
    offsets_y: torch.Tensor,
) -> torch.Tensor:
    n, _, height, width = observations.shape
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


def random_intensity(
    observations: torch.Tensor, scale: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """DrQ's intensity augmentation: each observation (N, C, H, W) multiplied by
    1 + scale * clip(N(0, 1), -2, 2), one draw per observation; returns floats (the network
    scales them by 1/255 as it does uint8 frames). Frames (N, C, H, W) come out channels-last,
    as the network lays them out, made in one pass from uint8 (a conversion, a product and a
    relayout were a tenth of an SPR update)."""
    shape = (observations.shape[0],) + (1,) * (observations.dim() - 1)
    noise = torch.randn(shape, device=observations.device, generator=generator).clamp(-2.0, 2.0)
    factor = 1.0 + scale * noise
    if observations.dim() != 4:
        return observations.float() * factor
    return torch.mul(observations, factor, out=_channels_last_floats(observations))


def random_symmetry(
    observations: torch.Tensor,
    next_observations: torch.Tensor,
    actions: torch.Tensor,
    tables: tuple[torch.Tensor, torch.Tensor],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each transition of a batch seen through one of its game's symmetries, drawn uniformly
    (the identity among them): both frames (N, C, H, W) mirrored or turned alike, the action
    mapped to the one that makes the same move there. No host read."""
    pixel_table, action_table = tables
    draw = torch.randint(
        0, pixel_table.shape[0], (observations.shape[0],), device=observations.device,
        generator=generator,
    )  # fmt: skip
    index = pixel_table[draw][:, None, :]  # (N, 1, H * W)

    def transformed(frames: torch.Tensor) -> torch.Tensor:
        flat = frames.reshape(frames.shape[0], frames.shape[1], -1)
        return flat.gather(2, index.expand(-1, frames.shape[1], -1)).reshape(frames.shape)

    return (
        transformed(observations),
        transformed(next_observations),
        action_table[draw, actions],
    )


def _scaled_channels_last(observations: torch.Tensor) -> torch.Tensor:
    """Frames (N, C, H, W), uint8 or float -> floats divided by 255, laid out channels-last,
    in one pass that scales and lays out at once (the same values as `(x.float() / 255)
    .contiguous(...)`, which made two or three: an eighth of an SPR update)."""
    if observations.requires_grad:  # a saliency map's input: autograd refuses out=
        return torch.div(observations.contiguous(memory_format=torch.channels_last), 255.0)
    return torch.div(observations, 255.0, out=_channels_last_floats(observations))


def _channels_last_floats(like: torch.Tensor) -> torch.Tensor:
    """An empty float32 tensor of `like`'s shape (N, C, H, W) and device, laid out channels-last."""
    return torch.empty(
        like.shape, dtype=torch.float32, device=like.device, memory_format=torch.channels_last
    )


def _flat_size(module: nn.Module, observation_shape: tuple[int, ...]) -> int:
    """Features out of `module` for one observation: a dry pass in eval mode, so it leaves
    batch norm's running statistics as they were."""
    module.eval()
    try:
        with torch.no_grad():
            return int(module(torch.zeros(1, *observation_shape)).shape[1])
    except RuntimeError as error:
        size = "x".join(str(side) for side in observation_shape[1:])
        raise ValueError(
            f"frames of {size} are too small for this encoder's kernels and strides; use a "
            "larger --frame-size or an encoder for small frames (vgg, resnet, inception, "
            "densenet)"
        ) from error
    finally:
        module.train()
