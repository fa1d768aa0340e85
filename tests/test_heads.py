"""The heads beyond a Q-value and the pieces around them, each on a hand-worked case: C51's
projection, the quantile Huber loss, a noisy layer's noise, a shrink-and-perturb reset, the
n-step and discount schedules."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from agents.config import DQNConfig
from agents.heads import (
    NoisyLinear,
    ValueHead,
    c51_projection,
    explore_with_noise,
    quantile_huber_loss,
    shrink_and_perturb,
)
from agents.learner import horizon
from agents.networks import build_q_network
from agents.replay import ReplayBuffer
from agents.update import UpdateRule, dqn_update


def test_c51_projection_of_a_shifted_distribution_splits_mass_between_neighbours() -> None:
    support = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])  # spacing 1
    probabilities = torch.tensor([[0.0, 0.5, 0.5, 0.0, 0.0]])  # mass on -1 and 0
    # r = 0.5, gamma = 1: the atoms move to -0.5 and 0.5, each split half and half.
    target = c51_projection(
        probabilities, torch.tensor([0.5]), torch.tensor([1.0]), torch.tensor([0.0]), support
    )
    assert torch.allclose(target, torch.tensor([[0.0, 0.25, 0.5, 0.25, 0.0]]))
    # r = 1, gamma = 1: a whole shift lands on the grid, all mass on one atom each.
    target = c51_projection(
        probabilities, torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([0.0]), support
    )
    assert torch.allclose(target, torch.tensor([[0.0, 0.0, 0.5, 0.5, 0.0]]))
    # gamma = 0.5 shrinks towards r: -1 -> -0.5 + 1 = 0.5, 0 -> 1; beyond v_max is clipped.
    target = c51_projection(
        probabilities, torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor([0.0]), support
    )
    assert torch.allclose(target, torch.tensor([[0.0, 0.0, 0.25, 0.75, 0.0]]))
    target = c51_projection(
        probabilities, torch.tensor([5.0]), torch.tensor([1.0]), torch.tensor([0.0]), support
    )
    assert torch.allclose(target, torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0]]))
    # A terminal transition: all mass at r = -1.25 (3/4 of the way from -2 to -1), whatever
    # came next.
    target = c51_projection(
        probabilities, torch.tensor([-1.25]), torch.tensor([1.0]), torch.tensor([1.0]), support
    )
    assert torch.allclose(target, torch.tensor([[0.25, 0.75, 0.0, 0.0, 0.0]]))
    assert torch.allclose(target.sum(dim=1), torch.ones(1))


def test_quantile_huber_loss_by_hand() -> None:
    fractions = torch.tensor([0.25, 0.75])
    quantiles = torch.tensor([[0.0, 1.0]])
    targets = torch.tensor([[0.5, 3.0]])
    # u_ij = target_j - theta_i: theta_0 = 0 -> (0.5, 3.0); theta_1 = 1 -> (-0.5, 2.0).
    # huber (kappa 1): 0.125, 2.5; 0.125, 1.5. weights |tau_i - 1{u<0}|: 0.25, 0.25; 0.25, 0.75.
    expected = (0.25 * 0.125 + 0.25 * 2.5) / 2 + (0.25 * 0.125 + 0.75 * 1.5) / 2
    loss = quantile_huber_loss(quantiles, targets, fractions)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(expected)
    # Quantiles at the targets' own quantiles cost nothing more than any other placement.
    samples = torch.linspace(0, 1, 1001)[None, :]
    right = quantile_huber_loss(torch.tensor([[0.25, 0.75]]), samples, fractions, kappa=1e-3)
    wrong = quantile_huber_loss(torch.tensor([[0.4, 0.6]]), samples, fractions, kappa=1e-3)
    assert right.item() < wrong.item()


def test_a_noisy_layer_draws_factorised_noise_afresh_and_none_in_evaluation() -> None:
    torch.manual_seed(0)
    layer = NoisyLinear(5, 3)
    weight_noise, bias_noise = layer.noise()
    assert torch.linalg.matrix_rank(weight_noise).item() == 1  # an outer product
    # The bias noise is the output factor f(e_out): the rows of the weight noise scale with it.
    ratio = weight_noise / bias_noise[:, None]
    assert torch.allclose(ratio, ratio[0].expand_as(ratio))
    inputs = torch.randn(4, 5)
    layer.train()
    # A training-mode pass adds exactly such a draw to the mean weights.
    torch.manual_seed(3)
    weight_noise, bias_noise = layer.noise()
    torch.manual_seed(3)
    noisy = layer(inputs)
    weight = layer.weight_mu + layer.weight_sigma * weight_noise
    bias = layer.bias_mu + layer.bias_sigma * bias_noise
    assert torch.allclose(noisy, inputs @ weight.T + bias, atol=1e-6)
    first, second = layer(inputs), layer(inputs)
    assert not torch.allclose(first, second)  # resampled at every pass
    layer.eval()
    mean = inputs @ layer.weight_mu.T + layer.bias_mu
    assert torch.equal(layer(inputs), layer(inputs))
    assert torch.allclose(layer(inputs), mean)
    # The noise's scale is learned: sigma gets a gradient.
    layer.train()
    layer(inputs).sum().backward()
    assert layer.weight_sigma.grad is not None and layer.weight_sigma.grad.abs().sum() > 0


def test_noisy_networks_explore_only_in_their_noisy_layers() -> None:
    torch.manual_seed(0)
    network = build_q_network((4,), 3, noisy=True, dropout=0.5)
    noisy = [module for module in network.modules() if isinstance(module, NoisyLinear)]
    assert len(noisy) == 2  # the encoder's last linear layer and the head's
    network.eval()
    explore_with_noise(network)
    assert all(layer.training for layer in noisy)
    dropouts = [module for module in network.modules() if isinstance(module, torch.nn.Dropout)]
    assert dropouts and not any(layer.training for layer in dropouts)


def test_a_reset_reinitialises_the_head_and_shrinks_only_the_trainable_encoder() -> None:
    torch.manual_seed(0)
    network = build_q_network((4,), 2, width=8, dueling=True)
    fresh = build_q_network((4,), 2, width=8, dueling=True)
    before = {name: value.clone() for name, value in network.state_dict().items()}
    first = network.encoder.layers[1]
    first.requires_grad_(False)  # as --freeze-encoder leaves a layer
    shrink_and_perturb(network, fresh, 0.25)
    fresh_state = fresh.state_dict()
    for name, value in network.state_dict().items():
        if name.startswith("head."):
            assert torch.equal(value, fresh_state[name]), name
        elif name.startswith("encoder.layers.1."):
            assert torch.equal(value, before[name]), name  # frozen
        else:
            assert torch.allclose(value, 0.25 * before[name] + 0.75 * fresh_state[name]), name


def test_the_n_step_and_discount_schedules_move_geometrically_and_restart_at_resets() -> None:
    cfg = DQNConfig(n_step=10, n_step_end=3, gamma=0.97, gamma_end=0.997, schedule_updates=100)
    assert horizon(cfg, 0) == (10, pytest.approx(0.97))
    n, gamma = horizon(cfg, 50)
    assert n == round(10 * 0.3**0.5) == 5
    assert 1 - gamma == pytest.approx(0.03 * 0.1**0.5)
    assert horizon(cfg, 100) == (3, pytest.approx(0.997))
    assert horizon(cfg, 1_000) == (3, pytest.approx(0.997))
    reset = dataclasses.replace(cfg, reset_every=400)
    assert horizon(reset, 450) == horizon(cfg, 50)


def test_a_shorter_horizon_sums_fewer_rewards() -> None:
    buffer = ReplayBuffer(64, 1, (2,), 1, observation_dtype=torch.float32, n_step=3, gamma=0.5)
    buffer.start(np.zeros((1, 2), dtype=np.float32))
    no = np.zeros(1, dtype=bool)
    for t in range(10):
        buffer.add(np.zeros(1), np.ones(1), no, no, np.array([[t + 1.0, 0.0]], dtype=np.float32))
    slot = torch.tensor([2])
    full = buffer._transitions(slot, buffer.position)
    assert full.returns.item() == pytest.approx(1 + 0.5 + 0.25)
    assert full.discounts.item() == pytest.approx(0.125)
    assert full.next_observations[0, 0].item() == 5.0  # 3 steps on
    buffer.set_horizon(2, 0.9)
    short = buffer._transitions(slot, buffer.position)
    assert short.returns.item() == pytest.approx(1 + 0.9)
    assert short.discounts.item() == pytest.approx(0.81)
    assert short.next_observations[0, 0].item() == 4.0


@pytest.mark.parametrize("kind", ["c51", "qr"])
def test_a_distributional_head_means_its_distribution(kind: str) -> None:
    torch.manual_seed(0)
    head = ValueHead(8, 3, kind, atoms=11, dueling=True)
    outputs = head(torch.randn(4, 8))
    assert outputs.shape == (4, 3, 11)
    values, weights = head.distribution(outputs)
    if kind == "c51":
        assert torch.allclose(weights.sum(dim=-1), torch.ones(4, 3))
        expected = (weights * values).sum(dim=-1)
    else:
        assert torch.allclose(values, (torch.arange(11) + 0.5) / 11)
        expected = weights.mean(dim=-1)
    assert torch.allclose(head.expected(outputs), expected)


@pytest.mark.parametrize("kind", ["c51", "qr"])
def test_a_distributional_update_moves_the_taken_action_towards_its_target(kind: str) -> None:
    """One state, one action, reward 1 and terminal: the taken action's expected value rises
    towards 1 under repeated updates, the other action's stays where it was."""
    torch.manual_seed(0)
    network = build_q_network((2,), 2, head=kind, atoms=21, v_min=-2.0, v_max=2.0)
    target = build_q_network((2,), 2, head=kind, atoms=21, v_min=-2.0, v_max=2.0)
    target.load_state_dict(network.state_dict())
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    from agents.replay import ReplaySample

    batch = ReplaySample(
        observations=torch.ones(8, 2),
        actions=torch.zeros(8, dtype=torch.int64),
        returns=torch.ones(8),
        next_observations=torch.ones(8, 2),
        dones=torch.ones(8),
        discounts=torch.full((8,), 0.99),
        weights=torch.ones(8),
    )
    rule = UpdateRule(head=kind)
    for _ in range(300):
        loss, q_mean, errors, _ = dqn_update(batch, network, target, optimizer, rule)
    assert errors.shape == (8,) and (errors >= 0).all()
    assert q_mean.item() == pytest.approx(1.0, abs=0.1)
    with torch.no_grad():
        assert network(torch.ones(1, 2))[0, 0].item() == pytest.approx(1.0, abs=0.1)


# Each flag on the Catch preset (20,000 steps): near-perfect play at the end, as without it.
LEARNS_CATCH = {
    "c51": dict(distributional="c51"),
    "qr": dict(distributional="qr", atoms=51),
    "noisy": dict(noisy=True),
    "schedules": dict(n_step=5, n_step_end=1, gamma_end=0.995, schedule_updates=2_000),
    "resets": dict(reset_every=2_000),
    "spr": dict(spr_weight=2.0),  # (random shifts alone, 4 pixels of a 12-pixel frame, fail here)
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LEARNS_CATCH))
def test_each_flag_learns_catch(name: str, tmp_path) -> None:
    import agents.presets
    from agents.config import EvaluateConfig
    from agents.dqn import train_dqn
    from agents.evaluate import evaluate
    from playground.logger import NullLogger
    from playground.presets import with_preset

    cfg = with_preset(
        DQNConfig, agents.presets, "catch", env_id="Playground/Catch-v0", runs_dir=str(tmp_path),
        run_name=name, device="cpu", progress=False, eval_every=0, **LEARNS_CATCH[name],
    )  # fmt: skip
    run_dir = train_dqn(cfg, logger=NullLogger())
    result = evaluate(
        EvaluateConfig(
            checkpoint=str(run_dir / "latest.pt"), episodes=50, epsilon=0.0, device="cpu"
        )
    )
    assert result["mean"] >= 0.9, result
