"""SPR's self-predictive loss on hand-worked cases: the cosine loss, a rollout through a
transition model that keeps the latent as it is, and the replay buffer's future steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.networks import build_q_network
from agents.replay import ReplayBuffer
from agents.spr import Renormalize, cosine_losses, spr_losses
from agents.update import UpdateRule, dqn_update


def test_the_cosine_loss_counts_the_unmasked_steps() -> None:
    same = torch.tensor([[[1.0, 2.0], [3.0, 0.0], [0.0, 1.0]]])  # (1, 3, 2)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert cosine_losses(same, 5 * same, mask).item() == pytest.approx(-2.0)  # scale-free
    opposite = -same
    assert cosine_losses(same, opposite, mask).item() == pytest.approx(2.0)
    orthogonal = torch.tensor([[[2.0, -1.0], [0.0, 3.0], [1.0, 0.0]]])
    assert cosine_losses(same, orthogonal, mask).item() == pytest.approx(0.0, abs=1e-6)


def _identity_transition(network) -> None:
    """Transition model = ReLU(latent) (the actions ignored), predictor = identity."""
    first, second = network.spr.transition[0], network.spr.transition[2]
    channels = second.out_channels
    with torch.no_grad():
        for conv in (first, second):
            conv.weight.zero_()
            conv.bias.zero_()
            for channel in range(channels):
                conv.weight[channel, channel, 1, 1] = 1.0
        network.spr.predictor.weight.copy_(torch.eye(network.spr.predictor.in_features))
        network.spr.predictor.bias.zero_()


def test_a_rollout_that_keeps_the_latent_predicts_a_frame_that_stays_perfectly() -> None:
    """With the latent kept as it is and the frames unchanged, each prediction is the target's
    projection: the loss is minus the number of steps within the episode. A future frame that
    differs costs more."""
    torch.manual_seed(0)
    network = build_q_network((2, 12, 12), 3, encoder="vgg", width=8, spr=True).eval()
    _identity_transition(network)
    frames = torch.randint(0, 256, (4, 2, 12, 12), dtype=torch.uint8)
    latent = network.latent(frames)
    future = frames[:, None].expand(-1, 3, -1, -1, -1)  # (B, K=3, 2, 12, 12): the same frames
    actions = torch.randint(0, 3, (4, 3))
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    with torch.no_grad():
        losses = spr_losses(network, network, latent, future, actions, mask)
    assert losses.tolist() == pytest.approx([-3.0, -2.0, -1.0, -3.0], abs=1e-5)
    other = torch.randint(0, 256, future.shape, dtype=torch.uint8)
    with torch.no_grad():
        worse = spr_losses(network, network, latent, other, actions, mask)
    assert (worse > losses + 1e-3).all()


def test_the_buffer_hands_out_the_next_k_frames_actions_and_the_episode_mask() -> None:
    buffer = ReplayBuffer(
        64, 1, (2,), 1, observation_dtype=torch.float32, n_step=3, gamma=0.9, future_steps=3
    )
    buffer.start(np.zeros((1, 2), dtype=np.float32))
    for t in range(12):
        done = np.array([t == 5])  # the step from position 5 ends the episode
        buffer.add(
            np.array([t % 3]), np.ones(1), done, np.zeros(1, dtype=bool),
            np.array([[t + 1.0, 0.0]], dtype=np.float32),
        )  # fmt: skip
    sample = buffer._transitions(torch.tensor([1]), buffer.position)
    assert sample.future_observations[0, :, 0].tolist() == [2.0, 3.0, 4.0]
    assert sample.future_actions[0].tolist() == [1, 2, 0]  # steps 1, 2, 3
    assert sample.future_mask[0].tolist() == [1.0, 1.0, 1.0]
    ending = buffer._transitions(torch.tensor([4]), buffer.position)
    # The step from 5 ends the episode: 1 and 2 steps on (positions 5, 6: the observation it
    # ended on) are the episode's; 3 steps on is the next episode's first frame.
    assert ending.future_mask[0].tolist() == [1.0, 1.0, 0.0]
    plain = ReplayBuffer(64, 1, (2,), 1, observation_dtype=torch.float32, n_step=3)
    plain.start(np.zeros((1, 2), dtype=np.float32))
    plain.add(np.zeros(1), np.ones(1), np.zeros(1, dtype=bool), np.zeros(1, dtype=bool),
              np.ones((1, 2), dtype=np.float32))  # fmt: skip
    assert plain._transitions(torch.tensor([0]), plain.position).future_observations is None


def test_an_spr_update_trains_the_transition_model_and_reports_its_loss() -> None:
    torch.manual_seed(0)
    network = build_q_network((2, 12, 12), 3, encoder="vgg", width=8, spr=True)
    target = build_q_network((2, 12, 12), 3, encoder="vgg", width=8, spr=True)
    target.load_state_dict(network.state_dict())
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    from agents.replay import ReplaySample

    frames = torch.randint(0, 256, (8, 2, 12, 12), dtype=torch.uint8)
    batch = ReplaySample(
        frames, torch.zeros(8, dtype=torch.int64), torch.zeros(8), frames, torch.zeros(8),
        torch.full((8,), 0.99), torch.ones(8),
        future_observations=frames[:, None].expand(-1, 2, -1, -1, -1).contiguous(),
        future_actions=torch.zeros(8, 2, dtype=torch.int64), future_mask=torch.ones(8, 2),
    )  # fmt: skip
    before = network.spr.transition[0].weight.detach().clone()
    first = dqn_update(batch, network, target, optimizer, UpdateRule(spr_weight=2.0))
    for _ in range(30):
        last = dqn_update(batch, network, target, optimizer, UpdateRule(spr_weight=2.0))
    assert not torch.equal(before, network.spr.transition[0].weight)
    assert -2.0 <= last.spr_loss.item() < first.spr_loss.item()  # two steps, towards -2
    off = dqn_update(batch, network, target, optimizer, UpdateRule())
    assert off.spr_loss.item() == 0.0


def test_the_latent_path_gives_the_networks_own_outputs() -> None:
    """The update reads the Q-values through SPR's latent: the same numbers as the network."""
    torch.manual_seed(0)
    network = build_q_network((4, 84, 84), 6, encoder="nature", spr=True, head="c51").eval()
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    latent = network.latent(frames)
    assert latent.shape == (3, 64, 7, 7)
    assert torch.equal(network.outputs_from_latent(latent), network.outputs(frames))


def test_the_projections_are_taken_before_the_features_layers_relu() -> None:
    """The cosine compares the features layer's outputs before its ReLU (BBF's projection), so
    their negative parts count: the loss is the pre-ReLU cosine, not the post-ReLU one."""
    torch.manual_seed(0)
    network = build_q_network((2, 12, 12), 3, encoder="vgg", width=8, spr=True).eval()
    _identity_transition(network)
    frames = torch.randint(0, 256, (4, 2, 12, 12), dtype=torch.uint8)
    future = torch.randint(0, 256, (4, 1, 2, 12, 12), dtype=torch.uint8)
    actions = torch.randint(0, 3, (4, 1))
    linear = network.encoder.linear[0]
    with torch.no_grad():  # centred features: about half of each projection is negative
        latents = torch.cat([network.latent(frames), network.latent(future[:, 0])])
        linear.bias.copy_(-linear.weight @ latents.flatten(1).mean(0))
        losses = spr_losses(
            network, network, network.latent(frames), future, actions, torch.ones(4, 1)
        )
        predicted = linear(network.spr.step(network.latent(frames), actions[:, 0]).flatten(1))
        seen = linear(network.latent(future[:, 0]).flatten(1))
    cosine = torch.nn.functional.cosine_similarity
    assert (predicted < 0).any() and (seen < 0).any()
    assert losses.tolist() == pytest.approx((-cosine(predicted, seen)).tolist(), abs=1e-5)
    after_relu = -cosine(predicted.relu(), seen.relu())
    assert (losses - after_relu).abs().max() > 1e-2


def test_renormalize_rescales_each_latent_to_the_unit_range_by_its_own_min_and_max() -> None:
    latent = torch.tensor([[[[0.0, 2.0], [4.0, 8.0]]], [[[3.0, 3.5], [4.0, 5.0]]]])  # (2,1,2,2)
    out = Renormalize()(latent)
    assert out[0].flatten().tolist() == pytest.approx([0.0, 0.25, 0.5, 1.0], abs=1e-5)
    assert out[1].flatten().tolist() == pytest.approx([0.0, 0.25, 0.5, 1.0], abs=1e-5)
    last = latent.contiguous(memory_format=torch.channels_last)
    assert Renormalize()(last).is_contiguous(memory_format=torch.channels_last)


def test_a_renormalized_network_keeps_its_parameter_names_and_rescales_every_latent() -> None:
    """--renormalize adds no parameter (a checkpoint's weights keep their names), rescales the
    latent the Q-values are read from and each of SPR's predicted latents, and survives the
    checkpoint's network spec."""
    from agents.checkpoint import build_from_spec, spec_for
    from agents.config import DQNConfig

    torch.manual_seed(0)
    plain = build_q_network((4, 84, 84), 6, dueling=True, spr=True)
    rescaled = build_q_network((4, 84, 84), 6, dueling=True, spr=True, renormalize=True)
    assert list(plain.state_dict()) == list(rescaled.state_dict())
    rescaled.load_state_dict(plain.state_dict())
    frames = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        latent = rescaled.latent(frames)
        flat = latent.flatten(1)
        assert flat.amin(dim=1).tolist() == pytest.approx([0.0] * 5, abs=1e-6)
        assert flat.amax(dim=1).tolist() == pytest.approx([1.0] * 5, abs=1e-4)
        assert torch.allclose(
            rescaled.expected(rescaled.outputs_from_latent(latent)), rescaled(frames)
        )
        assert not torch.allclose(rescaled(frames), plain(frames))  # the Q path is rescaled
        predicted = rescaled.spr.step(latent, torch.arange(5) % 6).flatten(1)
        assert predicted.amin(dim=1).tolist() == pytest.approx([0.0] * 5, abs=1e-6)
        assert predicted.amax(dim=1).tolist() == pytest.approx([1.0] * 5, abs=1e-4)
    cfg = DQNConfig(env_id="ALE/Pong-v5", spr_weight=2.0, renormalize=True, dueling=True)
    rebuilt = build_from_spec(spec_for(cfg, (4, 84, 84), 6))
    rebuilt.load_state_dict(rescaled.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(frames), rescaled.eval()(frames))


def test_the_collapse_probe_sees_past_a_shared_mean() -> None:
    """benchmarks/spr_collapse: four vectors, a large shared part plus +-e1 or +-e2, point
    almost the same way, yet once centred they span two directions, each opposite one other
    vector and orthogonal to the other two."""
    from benchmarks.spr_collapse import spread_of

    shared = torch.zeros(6)
    shared[5] = 100.0
    e1, e2 = torch.eye(6)[0], torch.eye(6)[1]
    row = spread_of(torch.stack([shared + e1, shared - e1, shared + e2, shared - e2]))
    assert row["pairwise_cosine"] > 0.999
    assert row["effective_rank"] == pytest.approx(2.0, abs=1e-4)
    assert row["centred_abs_cosine"] == pytest.approx(1 / 3, abs=1e-5)
    assert row["mean_norm_share"] == pytest.approx(100 / (100**2 + 1) ** 0.5, abs=1e-6)
    same = spread_of(torch.stack([shared + e1] * 3 + [shared + e1 + 1e-3 * e2]))
    assert same["effective_rank"] == pytest.approx(1.0, abs=1e-3)
