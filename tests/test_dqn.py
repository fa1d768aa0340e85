"""DQN: the pure pieces (schedule, TD targets, target updates), networks, settings checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.config import DQNConfig, validate
from agents.learner import symmetry_tables
from agents.networks import build_q_network, random_shift, random_symmetry
from agents.rollout import epsilon_greedy
from agents.update import td_target, update_target
from envs.builtin import game_symmetries, transform_frame
from playground.errors import UserError
from playground.schedules import linear_schedule


def test_linear_schedule_exact() -> None:
    assert linear_schedule(1.0, 0.1, 100, 0) == 1.0
    assert linear_schedule(1.0, 0.1, 100, 50) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 100, 100) == pytest.approx(0.1)
    assert linear_schedule(1.0, 0.1, 100, 10_000) == pytest.approx(0.1)
    assert linear_schedule(1.0, 0.1, 0, 0) == 0.1


def test_td_target_dqn_uses_target_max() -> None:
    next_q_target = torch.tensor([[1.0, 5.0], [2.0, -1.0]])
    target = td_target(
        returns=torch.tensor([1.0, 0.5]),
        discounts=torch.tensor([0.9, 0.81]),
        dones=torch.tensor([0.0, 1.0]),
        next_q_target=next_q_target,
        next_q_online=None,
    )
    # 1 + 0.9 * 5 ; terminal: no bootstrap
    assert torch.allclose(target, torch.tensor([5.5, 0.5]))


def test_td_target_double_dqn_evaluates_online_argmax_with_target() -> None:
    next_q_target = torch.tensor([[1.0, 5.0, 3.0]])
    next_q_online = torch.tensor([[0.0, 1.0, 9.0]])  # online picks action 2
    target = td_target(
        torch.tensor([0.0]), torch.tensor([0.5]), torch.tensor([0.0]), next_q_target, next_q_online
    )
    assert target.item() == pytest.approx(0.5 * 3.0)  # not 0.5 * 5 (plain max) nor 0.5 * 9


def test_n_step_discount_is_applied_to_bootstrap() -> None:
    # returns already hold r0 + g r1 + g^2 r2; the bootstrap is scaled by g^3
    gamma = 0.5
    target = td_target(
        torch.tensor([1 + gamma * 2 + gamma**2 * 3]),
        torch.tensor([gamma**3]),
        torch.tensor([0.0]),
        torch.tensor([[8.0]]),
        None,
    )
    assert target.item() == pytest.approx(1 + 1 + 0.75 + 1.0)


def test_update_target_hard_and_polyak() -> None:
    online, target = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        online.weight.fill_(1.0)
        target.weight.fill_(0.0)
    update_target(target, online, tau=0.25)
    assert torch.allclose(target.weight, torch.full((2, 2), 0.25))
    update_target(target, online, tau=1.0)
    assert torch.equal(target.weight, online.weight)


def test_epsilon_greedy() -> None:
    q_values = torch.tensor([[0.0, 1.0, 0.5]] * 1000)
    rng = np.random.default_rng(0)
    assert (epsilon_greedy(q_values, 0.0, rng) == 1).all()
    random_actions = epsilon_greedy(q_values, 1.0, rng)
    assert set(np.unique(random_actions)) == {0, 1, 2}
    share_greedy = (epsilon_greedy(q_values, 0.3, rng) == 1).mean()
    assert 0.75 < share_greedy < 0.85  # 0.7 + 0.3 / 3


@pytest.mark.parametrize("encoder", ["nature", "impala"])
@pytest.mark.parametrize("dueling", [False, True])
def test_cnn_q_networks_size_themselves(encoder: str, dueling: bool) -> None:
    for shape in [(4, 84, 84), (1, 64, 48)]:
        network = build_q_network(shape, 6, encoder, dueling)
        frames = torch.randint(0, 256, (5, *shape), dtype=torch.uint8)
        assert network(frames).shape == (5, 6)


def test_dueling_head_mean_advantage_is_zero_centered() -> None:
    network = build_q_network((3,), 4, "mlp", dueling=True)
    features = network.encoder(torch.randn(7, 3))
    q_values = network.head.expected(network.head(features))  # (N, A): one atom each
    value = network.head.value(features)
    assert torch.allclose(q_values.mean(dim=1, keepdim=True), value, atol=1e-6)


def test_mlp_for_vector_observations_and_cnn_refused() -> None:
    assert build_q_network((4,), 2)(torch.zeros(3, 4)).shape == (3, 2)
    with pytest.raises(ValueError, match="needs image observations"):
        build_q_network((4,), 2, "nature")


def test_random_shift_moves_content_within_pad() -> None:
    frames = torch.zeros(16, 1, 12, 12, dtype=torch.uint8)
    frames[:, :, 6, 6] = 255
    shifted = random_shift(frames, pad=2, generator=torch.Generator().manual_seed(0))
    assert shifted.shape == frames.shape and shifted.dtype == torch.uint8
    positions = [tuple(torch.nonzero(image[0])[0].tolist()) for image in shifted]
    assert all(4 <= row <= 8 and 4 <= col <= 8 for row, col in positions)
    assert len(set(positions)) > 1


def test_random_symmetry_turns_both_frames_and_the_action_alike() -> None:
    symmetries = game_symmetries("Playground/Snake-v0")
    tables = symmetry_tables(symmetries, 12, torch.device("cpu"))
    transforms = [(False, 0, (0, 1, 2, 3, 4)), *symmetries]
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (400, 2, 12, 12), dtype=torch.uint8, generator=generator)
    next_frames = torch.randint(0, 256, (400, 2, 12, 12), dtype=torch.uint8, generator=generator)
    actions = torch.randint(0, 5, (400,), generator=generator)
    seen, turned = random_symmetry(frames, next_frames, actions, tables, generator), set()
    for index in range(400):
        matches = [
            number
            for number, (mirror, turns, action_map) in enumerate(transforms)
            if np.array_equal(transform_frame(frames[index].numpy(), mirror, turns), seen[0][index])
            and np.array_equal(
                transform_frame(next_frames[index].numpy(), mirror, turns), seen[1][index]
            )
            and action_map[int(actions[index])] == int(seen[2][index])
        ]
        assert len(matches) == 1, index  # random frames have no symmetry of their own
        turned.add(matches[0])
    assert turned == set(range(8))  # every one drawn, the identity among them


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"total_steps": 0}, "--total-steps must be positive"),
        ({"batch_size": -1}, "--batch-size must be positive"),
        ({"learning_rate": 0.0}, "--learning-rate must be positive"),
        ({"buffer_size": 16, "batch_size": 32}, "must be at least --batch-size"),
        ({"gamma": 1.5}, "--gamma"),
        ({"freeze_encoder": True}, "--init-from"),
    ],
)
def test_impossible_settings_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        validate(DQNConfig(**changes))


def test_random_shift_crops_alike_by_slicing_and_by_gather() -> None:
    """The CPU path (a slice per image) and the device path (one gather) crop the same
    offsets from the same draws, for uint8 and float frames."""
    from agents.networks import _shift_by_gather, _shift_by_slicing

    for dtype in (torch.uint8, torch.float32):
        frames = torch.randint(0, 256, (16, 4, 20, 20)).to(dtype)
        padded = torch.nn.functional.pad(frames.float(), (4, 4, 4, 4), mode="replicate")
        offsets_x, offsets_y = torch.randint(0, 9, (16,)), torch.randint(0, 9, (16,))
        sliced = _shift_by_slicing(frames, padded, offsets_x, offsets_y)
        gathered = _shift_by_gather(frames, padded, offsets_x, offsets_y)
        assert sliced.dtype == gathered.dtype == dtype
        assert torch.equal(sliced, gathered)
        # An offset of (4, 4) is the image itself.
        centre = torch.full((16,), 4)
        assert torch.equal(_shift_by_slicing(frames, padded, centre, centre), frames)


def test_random_shift_pads_bytes_as_it_pads_floats() -> None:
    """On the CPU uint8 frames are padded and cropped as bytes; the crops, the replicated
    edges among them, are those of the float path from the same draws."""
    from agents.networks import _shift_by_gather

    frames = torch.randint(0, 256, (64, 4, 20, 20), dtype=torch.uint8)
    shifted = random_shift(frames, pad=4, generator=torch.Generator().manual_seed(3))
    draws = torch.Generator().manual_seed(3)
    offsets_x, offsets_y = (
        torch.randint(0, 9, (64,), generator=draws),
        torch.randint(0, 9, (64,), generator=draws),
    )
    padded = torch.nn.functional.pad(frames.float(), (4, 4, 4, 4), mode="replicate")
    assert shifted.dtype == torch.uint8
    assert torch.equal(shifted, _shift_by_gather(frames, padded, offsets_x, offsets_y))
    assert not torch.equal(shifted, frames)


def test_random_intensity_is_the_product_laid_out_channels_last() -> None:
    """Intensity noise made in one pass from uint8 gives the values of frames.float() * factor
    for the same draw, laid out channels-last as the network reads them."""
    from agents.networks import random_intensity

    frames = torch.randint(0, 256, (8, 4, 20, 20), dtype=torch.uint8)
    noisy = random_intensity(frames, 0.05, torch.Generator().manual_seed(1))
    noise = torch.randn((8, 1, 1, 1), generator=torch.Generator().manual_seed(1)).clamp(-2, 2)
    assert noisy.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(noisy, frames.float() * (1.0 + 0.05 * noise))
