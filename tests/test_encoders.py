"""The encoders (the classic CNN designs), their sizes and counts, the regularisers (batch norm,
dropout, weight decay) and bf16 on the CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agents.networks import (
    PIXEL_ENCODERS,
    build_q_network,
    count_parameters,
    multiply_adds,
    same_padding,
)
from agents.replay import ReplaySample
from agents.update import UpdateRule, dqn_update, evaluating, update_target
from playground.optim import make_optimizer

# Parameters for 4 x 84 x 84 and 6 actions; a change here is a change of the design.
PARAMETERS_84 = {
    "nature": 1_687_206,  # the Nature DQN's: 8,224 + 32,832 + 36,928 + 1,606,144 + 3,078
    "resnet": 1_090_774,
    "vgg": 7_292_998,
    "inception": 1_999_462,
    "densenet": 1_351_444,
}


@pytest.mark.parametrize("encoder", ["nature", "resnet", "vgg", "inception", "densenet"])
@pytest.mark.parametrize("shape", [(4, 84, 84), (2, 12, 12), (3, 21, 21), (1, 64, 48)])
def test_every_encoder_sizes_itself(encoder: str, shape: tuple[int, ...]) -> None:
    if encoder == "nature" and shape[1] < 36:
        with pytest.raises(ValueError, match="too small for this encoder"):
            build_q_network(shape, 6, encoder)
        return
    network = build_q_network(shape, 6, encoder, dueling=True)
    frames = torch.randint(0, 256, (5, *shape), dtype=torch.uint8)
    assert network(frames).shape == (5, 6)
    assert network.encoder.output_size in (256, 512)
    parameters, macs = count_parameters(network), multiply_adds(network, shape)
    assert parameters > 10_000 and macs > parameters // 4
    wider = build_q_network(shape, 6, encoder, width=2 * _default_width(encoder))
    assert multiply_adds(wider, shape) > 2 * macs  # width scales the convolutions


def _default_width(encoder: str) -> int:
    return {"nature": 32, "resnet": 16, "vgg": 32, "inception": 16, "densenet": 12}[encoder]


def test_parameter_counts_at_84x84() -> None:
    counts = {
        name: count_parameters(build_q_network((4, 84, 84), 6, name)) for name in PARAMETERS_84
    }
    assert counts == PARAMETERS_84
    # Multiply-adds of the Nature CNN by hand: three convolutions and two linear layers.
    by_hand = 20 * 20 * 32 * 8 * 8 * 4 + 9 * 9 * 64 * 4 * 4 * 32 + 7 * 7 * 64 * 3 * 3 * 64
    by_hand += 3136 * 512 + 512 * 6
    assert multiply_adds(build_q_network((4, 84, 84), 6, "nature"), (4, 84, 84)) == by_hand
    assert set(PIXEL_ENCODERS) >= set(PARAMETERS_84)


def test_batch_norm_and_dropout_act_in_training_only() -> None:
    torch.manual_seed(0)
    network = build_q_network((2, 12, 12), 3, "vgg", batch_norm=True, dropout=0.5)
    assert any(isinstance(module, nn.BatchNorm2d) for module in network.modules())
    frames = torch.randint(0, 256, (8, 2, 12, 12), dtype=torch.uint8)
    norms = [module for module in network.modules() if isinstance(module, nn.BatchNorm2d)]
    before = norms[0].running_mean.clone()
    with torch.no_grad(), evaluating(network):
        first, second = network(frames), network(frames)
    assert torch.equal(first, second)  # no dropout, running statistics
    assert torch.equal(norms[0].running_mean, before)  # and they did not move
    assert network.training  # the mode is back
    network(frames)
    assert not torch.equal(norms[0].running_mean, before)  # a training pass updates them


def test_the_update_leaves_the_targets_batch_norm_alone() -> None:
    torch.manual_seed(0)
    online = build_q_network((2, 12, 12), 3, "vgg", batch_norm=True, dropout=0.2)
    target = build_q_network((2, 12, 12), 3, "vgg", batch_norm=True, dropout=0.2)
    target.load_state_dict(online.state_dict())
    target.eval().requires_grad_(False)
    statistics = [buffer.clone() for buffer in target.buffers()]
    batch = ReplaySample(
        observations=torch.randint(0, 256, (16, 2, 12, 12), dtype=torch.uint8),
        actions=torch.randint(0, 3, (16,)),
        returns=torch.rand(16),
        next_observations=torch.randint(0, 256, (16, 2, 12, 12), dtype=torch.uint8),
        dones=torch.zeros(16),
        discounts=torch.full((16,), 0.99),
        weights=torch.ones(16),
    )
    optimizer = make_optimizer("adam", online.parameters(), 1e-3, weight_decay=0.01)
    assert isinstance(optimizer, torch.optim.AdamW)  # decoupled weight decay for adam
    rule = UpdateRule(double_dqn=True, stochastic_layers=True)
    online_statistics = [buffer.clone() for buffer in online.buffers()]
    dqn_update(batch, online, target, optimizer, rule)
    for kept, now in zip(statistics, target.buffers(), strict=True):
        assert torch.equal(kept, now)
    # The online network's statistics moved once (its learning pass), not twice: the
    # next-state pass of double DQN ran in eval mode.
    tracked = [b for name, b in online.named_buffers() if name.endswith("num_batches_tracked")]
    assert tracked and all(int(count) == 1 for count in tracked)
    assert not all(
        torch.equal(old, new) for old, new in zip(online_statistics, online.buffers(), strict=True)
    )
    update_target(target, online, tau=0.5)  # Polyak also brings the running statistics over
    for target_buffer, online_buffer in zip(target.buffers(), online.buffers(), strict=True):
        assert torch.equal(target_buffer, online_buffer)


def test_bf16_update_on_the_cpu_is_close_to_fp32() -> None:
    if not torch.cpu._is_avx512_bf16_supported():
        pytest.skip("this CPU has no AVX-512 BF16 instructions")
    torch.manual_seed(0)
    observations = torch.randint(0, 256, (32, 4, 84, 84), dtype=torch.uint8)
    batch = ReplaySample(
        observations=observations,
        actions=torch.randint(0, 4, (32,)),
        returns=torch.rand(32),
        next_observations=observations.roll(1, dims=0),
        dones=torch.zeros(32),
        discounts=torch.full((32,), 0.99),
        weights=torch.ones(32),
    )
    losses = {}
    for autocast in (False, True):
        torch.manual_seed(1)
        online = build_q_network((4, 84, 84), 4, "nature")
        target = build_q_network((4, 84, 84), 4, "nature").requires_grad_(False)
        optimizer = make_optimizer("adam", online.parameters(), 1e-4)
        losses[autocast] = [
            dqn_update(batch, online, target, optimizer, UpdateRule(), autocast=autocast)[0].item()
            for _ in range(3)
        ]
    assert losses[True] == pytest.approx(losses[False], rel=0.05)


@pytest.mark.parametrize("dueling", [False, True])
def test_the_head_keeps_action_gaps_under_bf16(dueling: bool) -> None:
    # Q-values near 4 that differ by 0.01: bf16 steps by 0.03 there and tied all four, so the
    # greedy action was the first; the head runs in fp32 and keeps them apart.
    network = build_q_network((4, 84, 84), 4, "nature", dueling=dueling)
    gaps = torch.tensor([0.0, 0.01, 0.02, 0.03])
    with torch.no_grad():
        if dueling:
            network.head.value.weight.zero_()
            network.head.value.bias.fill_(4.0)
            network.head.advantage.weight.zero_()
            network.head.advantage.bias.copy_(gaps)
            expected = 4.0 + gaps - gaps.mean()
        else:
            network.head.weight.zero_()
            network.head.bias.copy_(4.0 + gaps)
            expected = 4.0 + gaps
    observations = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        q_values = network(observations)
    assert q_values.dtype == torch.float32
    assert torch.allclose(q_values, expected.expand(2, 4), atol=1e-6)
    assert q_values.argmax(dim=1).tolist() == [3, 3]
    # What benchmarks.action_gaps calls the bf16 head (as autocast ran it before): the best two
    # come out tied, so the greedy action is whichever comes first.
    from benchmarks.action_gaps import q_values_bf16_head

    with torch.no_grad():
        best_two = q_values_bf16_head(network, observations).topk(2, dim=1).values
    assert torch.equal(best_two[:, 0], best_two[:, 1])


def test_checkpoints_of_earlier_versions_still_load() -> None:
    """Without batch norm the parameter names are the ones saved by earlier versions."""
    nature = list(build_q_network((4, 84, 84), 6, "nature").state_dict())
    assert nature == [
        "encoder.convolutions.0.weight", "encoder.convolutions.0.bias",
        "encoder.convolutions.2.weight", "encoder.convolutions.2.bias",
        "encoder.convolutions.4.weight", "encoder.convolutions.4.bias",
        "encoder.linear.0.weight", "encoder.linear.0.bias", "head.weight", "head.bias",
    ]  # fmt: skip
    resnet = list(build_q_network((4, 84, 84), 6, "impala").state_dict())
    assert resnet[:4] == [
        "encoder.convolutions.0.weight", "encoder.convolutions.0.bias",
        "encoder.convolutions.2.conv0.weight", "encoder.convolutions.2.conv0.bias",
    ]  # fmt: skip


def test_input_scaling_gives_the_plain_formulas_values_in_channels_last_and_keeps_gradients() -> (
    None
):
    from agents.networks import _scaled_channels_last

    frames = torch.randint(0, 256, (3, 4, 9, 9), dtype=torch.uint8)
    for observations in (frames, frames.float() * 1.05):
        scaled = _scaled_channels_last(observations)
        assert torch.equal(scaled, observations.float() / 255.0)
        assert scaled.dtype == torch.float32
        assert scaled.is_contiguous(memory_format=torch.channels_last)
    wanting_grad = (frames.float() * 1.0).requires_grad_(True)  # as a saliency map's input
    _scaled_channels_last(wanting_grad).sum().backward()
    assert torch.allclose(wanting_grad.grad, torch.full_like(wanting_grad, 1 / 255.0))


def test_same_padding_splits_the_zeros_as_tensorflow_does() -> None:
    # 84 frames, kernel 8, stride 4: ceil(84 / 4) = 21 outputs need 20 * 4 + 8 - 84 = 4 zeros,
    # 2 each side; 21, 4, 2: 11 outputs need 3, the odd one after; 11, 3, 1: 2, 1 each side.
    assert same_padding(84, 8, 4) == (2, 2)
    assert same_padding(21, 4, 2) == (1, 2)
    assert same_padding(11, 3, 1) == (1, 1)
    assert same_padding(7, 3, 1) == (1, 1) and same_padding(8, 2, 2) == (0, 0)


def test_the_nature_encoder_with_same_padding_is_dopamines_network() -> None:
    """--encoder-padding same: 64 x 11 x 11 latents on 84 x 84 (Flax's 'SAME', Dopamine's
    DrQ(eps) and SPR networks), 7,744 features into the 512 linear layer; a window hanging
    over the frame's edge sees zeros."""
    network = build_q_network((4, 84, 84), 6, "nature", dueling=True, padding="same")
    assert network.encoder.linear[0].in_features == 64 * 11 * 11
    assert count_parameters(network) == PARAMETERS_84["nature"] + 513 + (7744 - 3136) * 512
    convolution = next(m for m in network.encoder.convolutions if isinstance(m, nn.Conv2d))
    with torch.no_grad():
        convolution.weight.fill_(1.0)
        convolution.bias.zero_()
        ones = torch.ones(1, 4, 84, 84)
        first = torch.relu(convolution(ones))
    assert first.shape == (1, 32, 21, 21)
    # The top-left window starts 2 pixels before the frame: 6 x 6 of its 8 x 8 are inside.
    assert first[0, 0, 0, 0] == 6 * 6 * 4 and first[0, 0, 5, 5] == 8 * 8 * 4
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    assert network(frames).shape == (3, 6)


def test_valid_padding_keeps_the_nature_encoders_parameter_names() -> None:
    default = build_q_network((4, 84, 84), 6, "nature")
    assert [n for n, _ in default.named_parameters()][:6] == [
        f"encoder.convolutions.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")
    ]
    with pytest.raises(ValueError, match="--encoder-padding same is the nature encoder's"):
        build_q_network((4, 84, 84), 6, "resnet", padding="same")


def test_xavier_init_is_glorot_uniform_with_zero_biases() -> None:
    network = build_q_network((4, 84, 84), 6, "nature", dueling=True, init="xavier")
    for module in network.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            fan_in = module.weight[0].numel()
            fan_out = module.weight.shape[0] * module.weight[0, 0].numel()
            bound = (6.0 / (fan_in + fan_out)) ** 0.5
            assert module.weight.abs().max() <= bound
            assert module.weight.abs().max() > 0.9 * bound  # drawn over the whole range
            assert torch.count_nonzero(module.bias) == 0
    torch_default = build_q_network((4, 84, 84), 6, "nature", dueling=True)
    assert torch.count_nonzero(torch_default.encoder.linear[0].bias) > 0
    with pytest.raises(ValueError, match="--weight-init"):
        build_q_network((4, 84, 84), 6, init="he")
