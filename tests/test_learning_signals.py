"""What reaches the learner, checked against hand-worked numbers: clipped rewards and life-loss
endings in the replay buffer (a game whose rewards are above 1), the Huber loss with importance
weights, gradient clipping, priority updates, how often the target is refreshed, the GAN's EMA
and which checkpoint a run folder means when best.pt and latest.pt differ."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.config import DQNConfig, EvaluateConfig
from agents.dqn import train_dqn
from agents.evaluate import evaluate
from agents.networks import QNetwork
from agents.replay import ReplayBuffer, ReplaySample
from agents.update import UpdateRule, dqn_update
from playground.checkpoint import resolve_checkpoint, save_checkpoint
from tests.conftest import small_gan

BIG_REWARDS = "PlaygroundTest/BigRewards-v0"


class BigRewards(gym.Env):
    """A vector game with rewards of 5 and -3 and three lives: every 4th step loses a life,
    the game ends with the last one. Observations count the steps."""

    observation_space = gym.spaces.Box(-1e6, 1e6, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.steps, self.lives = 0, 3
        return self._observation(), {"lives": self.lives}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.steps += 1
        reward = 5.0 if action == 1 else -3.0
        if self.steps % 4 == 0:
            self.lives -= 1
        return self._observation(), reward, self.lives == 0, False, {"lives": self.lives}

    def _observation(self) -> np.ndarray:
        return np.array([self.steps, self.lives], dtype=np.float32)


if BIG_REWARDS not in gym.registry:
    gym.register(BIG_REWARDS, entry_point=BigRewards)


def big_rewards_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **changes: Any) -> list:
    """Train briefly on BigRewards, recording every replay.add call."""
    calls: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    real_add = ReplayBuffer.add

    def spy(self, actions, rewards, terminated, truncated, next_observations, done=None, **more):
        calls.append((np.array(rewards), np.array(terminated), None if done is None else done))
        return real_add(
            self, actions, rewards, terminated, truncated, next_observations, done, **more
        )

    monkeypatch.setattr(ReplayBuffer, "add", spy)
    settings = dict(
        env_id=BIG_REWARDS, preset="none", total_steps=60, learning_starts=30, buffer_size=200,
        batch_size=8, eval_every=0, checkpoint_every=60, runs_dir=str(tmp_path),
        run_name="big", device="cpu", progress=False, eval_video=False,
    )  # fmt: skip
    settings.update(changes)
    train_dqn(DQNConfig(**settings))
    return calls


def test_clipped_rewards_and_life_loss_endings_reach_the_replay_buffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = big_rewards_run(tmp_path, monkeypatch)
    rewards = np.concatenate([call[0] for call in calls])
    # 5 and -3 stored as their signs (0: the reset step after a game, which the buffer skips).
    assert set(np.unique(rewards)) <= {-1.0, 0.0, 1.0} and {-1.0, 1.0} <= set(rewards)
    dones = np.concatenate([call[2] for call in calls[:12]])
    # Steps 4, 8 lose a life, step 12 ends the game (then a reset step, ignored by the buffer).
    assert dones[:12].tolist() == [i in (3, 7, 11) for i in range(12)]
    unclipped = big_rewards_run(
        tmp_path, monkeypatch, clip_rewards=False, life_loss_terminal=False, run_name="raw"
    )
    raw = np.concatenate([call[0] for call in unclipped])
    assert {5.0, -3.0} <= set(np.unique(raw))
    assert all(call[2] is None for call in unclipped)


def constant_network(values: list[float]) -> QNetwork:
    """Q-values that do not depend on the observation: the head's bias alone."""
    encoder = torch.nn.Flatten()
    encoder.output_size = 2  # type: ignore[assignment]
    network = QNetwork(encoder, num_actions=len(values))
    with torch.no_grad():
        network.head.weight.zero_()
        network.head.bias.copy_(torch.tensor(values))
    return network


def batch_of(returns: list[float], weights: list[float], actions: list[int]) -> ReplaySample:
    n = len(returns)
    return ReplaySample(
        observations=torch.zeros(n, 2),
        actions=torch.tensor(actions),
        returns=torch.tensor(returns),
        next_observations=torch.zeros(n, 2),
        dones=torch.ones(n),  # no bootstrap: the target is the return
        discounts=torch.ones(n),
        weights=torch.tensor(weights),
    )


def test_the_loss_is_huber_weighted_by_the_importance_weights() -> None:
    online, target = constant_network([1.0, 0.0]), constant_network([0.0, 0.0])
    # Errors 0.5 (quadratic part: 0.125) and 3 (linear part: 2.5), weighted 2 and 0.5.
    batch = batch_of(returns=[1.5, 4.0], weights=[2.0, 0.5], actions=[0, 0])
    optimizer = torch.optim.SGD(online.parameters(), lr=0.0)
    loss, _, errors, _ = dqn_update(batch, online, target, optimizer, UpdateRule(max_grad_norm=0))
    assert loss.item() == pytest.approx((2.0 * 0.125 + 0.5 * 2.5) / 2)
    assert errors.tolist() == pytest.approx([0.5, 3.0])
    mse = UpdateRule(loss="mse", max_grad_norm=0)
    loss, _, _, _ = dqn_update(batch, online, target, optimizer, mse)
    assert loss.item() == pytest.approx((2.0 * 0.25 + 0.5 * 9.0) / 2)


def test_gradients_are_clipped_to_the_maximum_norm() -> None:
    batch = batch_of(returns=[100.0, -50.0], weights=[1.0, 1.0], actions=[0, 1])
    moves = {}
    for max_norm in (0.0, 0.1):
        online, target = constant_network([0.0, 0.0]), constant_network([0.0, 0.0])
        before = online.head.bias.detach().clone()
        optimizer = torch.optim.SGD(online.parameters(), lr=1.0)
        dqn_update(batch, online, target, optimizer, UpdateRule(loss="mse", max_grad_norm=max_norm))
        moves[max_norm] = (online.head.bias.detach() - before).norm().item()
    # Unclipped: the MSE gradient on the bias is (q - target) per sample: (-100, 50) / 2 * 2.
    assert moves[0.0] == pytest.approx(float(np.hypot(100.0, 50.0)))
    assert moves[0.1] == pytest.approx(0.1, rel=1e-4)  # lr 1 times the clipped norm


def test_priority_updates_store_the_td_error_to_the_power_alpha() -> None:
    replay = ReplayBuffer(64, 1, (2,), 1, observation_dtype=torch.float32, priority_alpha=0.5)
    replay.start(np.zeros((1, 2), dtype=np.float32))
    for step in range(20):
        replay.add([0], [1.0], [False], [False], np.full((1, 2), step, dtype=np.float32))
    replay.refresh_validity()
    _, slots = replay.sample_prioritized(4, beta=0.4)
    errors = torch.tensor([0.5, -2.0, 0.0, 3.0], dtype=torch.float32)
    replay.update_priorities(slots, errors, epsilon=1e-6)
    expected = (errors.abs().double() + 1e-6) ** 0.5
    # A slot drawn twice keeps the value written last.
    last = {int(slot): value for slot, value in zip(slots, expected, strict=True)}
    stored = replay.priorities.values(torch.tensor(list(last)))
    assert torch.allclose(stored, torch.stack(list(last.values())))
    assert replay.max_priority.item() == pytest.approx(3.0 + 1e-6)


def test_the_target_is_refreshed_once_per_boundary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    import agents.learner as learning

    refreshes = []
    real_update_target = learning.update_target

    def counting(target, online, tau):
        refreshes.append(tau)
        return real_update_target(target, online, tau)

    monkeypatch.setattr(learning, "update_target", counting)
    big_rewards_run(tmp_path, monkeypatch, total_steps=100, target_update_frequency=7)
    # Learning starts at step 31 (learning_starts 30): boundaries 35, 42, ..., 98 are passed.
    assert len(refreshes) == len(range(35, 101, 7))


def test_the_gan_moving_average_is_decay_weighted_and_sample_draws_from_it(
    tmp_path: Path,
) -> None:
    from gan.checkpoint import generator_from_checkpoint
    from gan.config import SampleConfig
    from gan.models import update_ema
    from gan.sample import sample
    from gan.train import train_gan

    average, model = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        average.weight.fill_(1.0)
        model.weight.fill_(3.0)
    update_ema(average, model, decay=0.75)
    assert torch.allclose(average.weight, torch.full((1, 2), 0.75 * 1.0 + 0.25 * 3.0))

    run_dir = train_gan(small_gan(tmp_path, steps=4, checkpoint_every=2, ema_decay=0.5))
    state = torch.load(run_dir / "latest.pt", weights_only=True)
    differs = any(
        not torch.equal(state["ema_generator"][key], state["generator"][key])
        for key in state["generator"]
        if state["generator"][key].is_floating_point()
    )
    assert differs  # the average is not the generator itself
    ema = generator_from_checkpoint(state, use_ema=True)
    plain = generator_from_checkpoint(state, use_ema=False)
    for key, value in ema.state_dict().items():
        assert torch.equal(value, state["ema_generator"][key])
    a, b = tmp_path / "ema.png", tmp_path / "plain.png"
    sample(SampleConfig(checkpoint=str(run_dir), output=str(a), num_images=4, device="cpu"))
    sample(
        SampleConfig(
            checkpoint=str(run_dir), output=str(b), num_images=4, device="cpu", use_ema=False
        )
    )
    assert a.read_bytes() != b.read_bytes()  # the two generators draw different pictures
    assert any(
        not torch.equal(x, y)
        for x, y in zip(ema.state_dict().values(), plain.state_dict().values(), strict=True)
    )


def test_a_run_folder_means_best_pt_when_it_differs_from_latest_pt(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    settings = dict(
        env_id="CartPole-v1", preset="none", total_steps=300, learning_starts=100,
        buffer_size=500, batch_size=8, eval_every=100, eval_episodes=1, checkpoint_every=300,
        runs_dir=str(runs), run_name="folder", device="cpu", progress=False,
        eval_video=False,
    )  # fmt: skip
    run_dir = train_dqn(DQNConfig(**settings))
    best = torch.load(run_dir / "best.pt", weights_only=True)
    latest = torch.load(run_dir / "latest.pt", weights_only=True)
    if best["step"] == latest["step"]:  # make them differ: an older best
        best["step"] = 100
        save_checkpoint(run_dir / "best.pt", best)
    assert resolve_checkpoint(run_dir) == run_dir / "best.pt"
    evaluate(EvaluateConfig(checkpoint=str(run_dir), episodes=1, device="cpu"))
    out = capsys.readouterr().out
    assert f"best.pt at step {torch.load(run_dir / 'best.pt', weights_only=True)['step']}" in out
    evaluate(EvaluateConfig(checkpoint=str(run_dir / "latest.pt"), episodes=1, device="cpu"))
    assert f"latest.pt at step {latest['step']}" in capsys.readouterr().out
