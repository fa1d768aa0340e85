"""Prioritized replay: the sum tree's sums hold after random updates, draws follow the
priorities (chi-square), the buffer gives every new transition the largest priority and only
sampleable ones any, importance weights are exact, nothing is read back to the host, and a
prioritized run trains and resumes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agents.prioritized import SumTree, importance_weights
from agents.replay import ReplayBuffer
from tests.test_replay import FakeVectorEnv, GroundTruth, decode


def check_sums(tree: SumTree) -> None:
    inner = torch.arange(1, tree.leaf_start)
    assert torch.allclose(tree.nodes[inner], tree.nodes[2 * inner] + tree.nodes[2 * inner + 1])
    assert float(tree.total) == pytest.approx(float(tree.nodes[tree.leaf_start :].sum()))


def test_sum_tree_sums_hold_after_random_updates() -> None:
    generator = torch.Generator().manual_seed(0)
    tree = SumTree(1000)
    assert tree.leaf_start == 1024
    reference = torch.zeros(1000, dtype=torch.float64)
    for _ in range(200):
        slots = torch.randint(0, 1000, (37,), generator=generator)
        values = torch.rand(37, generator=generator, dtype=torch.float64)
        values[values < 0.2] = 0.0
        tree.set(slots, values)
        for slot, value in zip(slots.tolist(), values.tolist(), strict=True):
            reference[slot] = value  # duplicates: the last value wins, as in the tree
        check_sums(tree)
    assert torch.equal(tree.values(torch.arange(1000)), reference)
    assert float(tree.total) == pytest.approx(float(reference.sum()))


def chi_square(counts: np.ndarray, expected: np.ndarray) -> float:
    mask = expected > 0
    return float(((counts[mask] - expected[mask]) ** 2 / expected[mask]).sum())


def test_draws_follow_the_priorities() -> None:
    generator = torch.Generator().manual_seed(1)
    tree = SumTree(300)
    values = torch.rand(300, generator=generator, dtype=torch.float64) ** 3
    values[::5] = 0.0  # never drawn
    tree.set(torch.arange(300), values)
    draws = 300_000
    slots = tree.sample(draws, generator)
    counts = np.bincount(slots.numpy(), minlength=300).astype(float)
    assert counts[values.numpy() == 0].sum() == 0
    expected = (values / values.sum()).numpy() * draws
    dof = int((expected > 0).sum()) - 1
    assert chi_square(counts, expected) < dof + 5 * math.sqrt(2 * dof)
    # The test can tell: against uniform draws over the same slots it fails by far.
    uniform = np.where(expected > 0, draws / (dof + 1), 0.0)
    assert chi_square(counts, uniform) > 50 * dof


def test_importance_weights_are_exact() -> None:
    tree = SumTree(4)
    tree.set(torch.arange(4), torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))
    slots = torch.tensor([0, 3])
    weights = importance_weights(tree, slots, beta=0.5, count=4)
    raw = torch.tensor([(4 * 0.1) ** -0.5, (4 * 0.4) ** -0.5])
    assert torch.allclose(weights, (raw / raw.max()).float())


def filled(priority_alpha: float | None = 0.6) -> tuple[ReplayBuffer, GroundTruth]:
    env = FakeVectorEnv(num_envs=2, frame_stack=4, seed=3)
    replay = ReplayBuffer(80, 2, (4, 6, 6), 4, n_step=3, gamma=0.9, priority_alpha=priority_alpha)
    truth = GroundTruth(env)
    truth.start(replay)
    for _ in range(120):  # wraps around the 40 slots per env
        truth.advance(replay)
    return replay, truth


def test_the_buffer_prioritizes_only_sampleable_transitions() -> None:
    replay, truth = filled()
    len(replay)  # brings validity (and the leaves) up to date
    leaves = replay.priorities.values(torch.arange(replay.capacity))
    assert torch.equal(leaves > 0, replay.valid)  # priority exactly where sampleable
    assert torch.allclose(
        leaves[replay.valid], torch.ones(int(replay.valid.sum()), dtype=torch.float64)
    )
    batch, slots = replay.sample_prioritized(
        256, beta=0.4, generator=torch.Generator().manual_seed(0)
    )
    assert bool(replay.valid[slots].all())
    keys = decode(batch.observations.numpy(), vector_observations=False)
    assert set(keys) <= truth.sampleable(replay.slots_per_env, 3, 0.9, 4)
    assert torch.allclose(batch.weights, torch.ones(256))  # equal priorities, equal weights

    # A large error makes a transition far more likely; its weight shrinks to match.
    favourite = slots[:1]
    replay.update_priorities(favourite, torch.tensor([50.0]), epsilon=1e-6)
    assert float(replay.max_priority) == pytest.approx(50.0 + 1e-6)
    batch, slots = replay.sample_prioritized(
        2000, beta=1.0, generator=torch.Generator().manual_seed(1)
    )
    share = float((slots == favourite).float().mean())
    valid = int(replay.valid.sum())
    expected = 50**0.6 / (50**0.6 + valid - 1)
    assert share == pytest.approx(expected, abs=0.03)
    assert float(batch.weights[slots == favourite].max()) < float(batch.weights.max())


def test_prioritized_sampling_reads_nothing_back(monkeypatch: pytest.MonkeyPatch) -> None:
    replay, _ = filled()
    len(replay)

    def host_read(*args, **kwargs):
        raise AssertionError("a tensor value was read back to the host")

    for name in ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    batch, slots = replay.sample_prioritized(32, beta=0.5)
    replay.update_priorities(slots, torch.rand(32), epsilon=1e-6)
    monkeypatch.undo()
    assert batch.observations.shape == (32, 4, 6, 6) and batch.weights.shape == (32,)


def test_priorities_survive_a_save_and_load() -> None:
    replay, _ = filled()
    len(replay)
    batch, slots = replay.sample_prioritized(16, beta=0.4)
    replay.update_priorities(slots, torch.rand(16) * 5, epsilon=1e-6)
    restored = ReplayBuffer(80, 2, (4, 6, 6), 4, n_step=3, gamma=0.9, priority_alpha=0.6)
    restored.load_state_dict(replay.state_dict())
    assert torch.equal(restored.priorities.nodes, replay.priorities.nodes)
    assert torch.equal(restored.max_priority, replay.max_priority)


def test_a_prioritized_run_trains_and_resumes(tmp_path) -> None:
    import dataclasses

    from agents.checkpoint import load_dqn_checkpoint
    from agents.dqn import train_dqn
    from playground.logger import NullLogger
    from tests.test_train_dqn import tiny

    run_dir = train_dqn(tiny(tmp_path, total_steps=200, prioritized=True), logger=NullLogger())
    saved = load_dqn_checkpoint(run_dir / "latest.pt")
    assert saved["updates"] == (200 - 100) // 4
    replay = torch.load(run_dir / "replay.pt", weights_only=True)
    # The updates gave the drawn transitions priorities of their own |TD error|: the stored
    # ones are no longer all the insertion priority every transition gets.
    leaves = replay["priorities"][len(replay["priorities"]) // 2 :]
    assert len(torch.unique(leaves[leaves > 0])) > 1
    train_dqn(
        dataclasses.replace(tiny(tmp_path, total_steps=300), resume=str(run_dir)),
        logger=NullLogger(),
    )
    assert load_dqn_checkpoint(run_dir / "latest.pt")["updates"] == (300 - 100) // 4
