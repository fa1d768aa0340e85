"""The one way a policy plays a game: evaluation, the evaluation video and the viewer all use
`Rollout`; the training loop acts through the same `epsilon_greedy`.

    rollout = Rollout(make_env(env_id, seed=0), network, epsilon=0.001, seed=0)
    while len(rollout.scores) < 10:
        rollout.step()              # the policy acts; rollout.step(action) plays a given action
    rollout.scores                  # true scores of the finished games

`play_games` is that loop, keeping the frames of the first game so the video shown in
TensorBoard is a game that was scored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.networks import QNetwork
from envs import make_env, make_vector_env
from playground.display import display_available


@dataclass(frozen=True)
class ReturnDistribution:
    """What a distributional head says of each action's return: for c51, probabilities
    `weights` (A, K) on the fixed returns `values` (K,); for qr, the returns `weights` (A, K) at
    the quantile fractions `values` (K,). Either way each action's mean is its Q-value."""

    kind: str
    values: np.ndarray
    weights: np.ndarray

    def histogram(self, action: int, bins: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(returns (K,), probability mass (K,)) of one action, on a shared picture: c51's own
        atoms, or qr's quantiles binned into `bins` (0: as many as there are quantiles, at
        most 51) equal bins between the lowest and the highest, each quantile 1 / K of mass."""
        if self.kind == "c51":
            return self.values, self.weights[action]
        quantiles = self.weights[action]
        bins = bins or min(len(quantiles), 51)
        low, high = float(quantiles.min()), float(quantiles.max())
        if high - low < 1e-6:
            return np.array([low]), np.array([1.0])
        mass, edges = np.histogram(quantiles, bins=bins, range=(low, high))
        return (edges[:-1] + edges[1:]) / 2, mass / len(quantiles)


def epsilon_greedy(q_values: torch.Tensor, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """Greedy actions from (E, A) Q-values, each replaced by a uniform random one with
    probability epsilon."""
    greedy = q_values.argmax(dim=1).cpu().numpy()
    num_envs, num_actions = q_values.shape
    explore = rng.random(num_envs) < epsilon
    if explore.any():
        greedy = np.where(explore, rng.integers(0, num_actions, num_envs), greedy)
    return greedy


class Rollout:
    """One env played a step at a time by an epsilon-greedy policy over `network` (uniformly
    random actions when it is None), or by the actions a caller passes (a person playing).

    After each `step()`: `q_values` and `action` for the observation now on screen (the action
    the policy will take next), `frame` (the game's RGB picture when `render`), the running
    `episode_return` / `episode_length`, `game_over`, and `scores` / `lengths` of finished
    games. The step after a game ends starts the next one, so its last frame can be shown."""

    def __init__(
        self,
        env: gym.Env,
        network: QNetwork | None,
        *,
        epsilon: float,
        seed: int,
        device: torch.device | str = "cpu",
        render: bool = True,
    ) -> None:
        self.env = env
        self.network = network
        self.epsilon = epsilon
        self.device = torch.device(device)
        self.render = render
        self.num_actions = int(env.action_space.n)
        self.rng = np.random.default_rng(seed)
        self.scores: list[float] = []
        self.lengths: list[int] = []
        self.steps = 0  # agent steps taken, over all games
        self.episode_return = 0.0
        self.episode_length = 0
        self.game_over = False
        self.observation, _ = env.reset()
        self.frame = env.render() if render else None
        self.q_values = np.zeros(self.num_actions, dtype=np.float32)
        # A distributional network's return distribution of each action: (kind, values (K,),
        # weights (A, K)); see `ReturnDistribution`. None for a Q-value head.
        self.distribution: ReturnDistribution | None = None
        self.action = 0
        self.think()

    def think(self) -> None:
        """Q-values of the current observation and the action the policy takes on it (call
        again after the network or epsilon changed)."""
        if self.network is not None:
            with torch.no_grad():
                observation = torch.as_tensor(self.observation, device=self.device)[None]
                kind = getattr(self.network, "kind", "expected")
                if kind == "expected":
                    q_values = self.network(observation).float()
                else:
                    outputs = self.network.outputs(observation)
                    q_values = self.network.expected(outputs).float()
                    values, weights = self.network.head.distribution(outputs)
                    self.distribution = ReturnDistribution(
                        kind, values.cpu().numpy(), weights[0].cpu().numpy()
                    )
            self.q_values = q_values[0].cpu().numpy()
            self.action = int(epsilon_greedy(q_values, self.epsilon, self.rng)[0])
        else:
            self.action = int(self.rng.integers(self.num_actions))

    def step(self, action: int | None = None) -> float:
        """Play `action` (default: the policy's), or start the next game after a game over.
        Returns the reward."""
        reward = 0.0
        if self.game_over:
            self.observation, _ = self.env.reset()
            self.game_over = False
            self.episode_return = 0.0
            self.episode_length = 0
        else:
            if action is not None:
                self.action = int(action)
            self.observation, reward, terminated, truncated, _ = self.env.step(self.action)
            reward = float(reward)
            self.episode_return += reward
            self.episode_length += 1
            self.steps += 1
            if terminated or truncated:
                self.game_over = True
                self.scores.append(self.episode_return)
                self.lengths.append(self.episode_length)
        if self.render:
            self.frame = self.env.render()
        self.think()
        return reward

    def close(self) -> None:
        self.env.close()


@dataclass
class Games:
    """What `play_games` saw: the true score and length of each game, and the RGB frames of
    the first game (with the score so far at each frame) when asked for."""

    scores: list[float]
    lengths: list[int]
    frames: list[np.ndarray] = field(default_factory=list)
    frame_scores: list[float] = field(default_factory=list)


def play_games(
    network: QNetwork,
    env_id: str,
    games: int,
    *,
    epsilon: float,
    seed: int,
    device: torch.device | str = "cpu",
    env_options: dict[str, Any] | None = None,
    record_frames: int = 0,
    max_steps: int = 0,
    should_stop: Any = None,
) -> Games:
    """Play `games` full games with an epsilon-greedy policy in eval mode, one at a time. The
    frames of the first game (at most `record_frames`) are kept for a video. `should_stop()`
    returning True, or `max_steps` agent steps (0: no limit), end early (the games finished so
    far are returned)."""
    # Pixel games render RGB frames anyway; vector games (CartPole) only when asked to.
    render_mode = "rgb_array" if record_frames > 0 else None
    if record_frames > 0 and not display_available():
        # gymnasium draws the vector games' frames with pygame, whose SDL otherwise looks for a
        # display and prints "error: XDG_RUNTIME_DIR is invalid ..." at every evaluation video
        # on a machine without one (as `watch --headless` does; set before SDL starts).
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    env = make_env(env_id, seed=seed, render_mode=render_mode, **(env_options or {}))
    was_training = network.training
    network.eval()
    frames: list[np.ndarray] = []
    frame_scores: list[float] = []
    try:
        rollout = Rollout(env, network, epsilon=epsilon, seed=seed, device=device, render=False)
        recording = record_frames > 0
        if recording:
            frames.append(env.render())
            frame_scores.append(0.0)
        while len(rollout.scores) < games:
            if should_stop is not None and should_stop():
                break
            if max_steps and rollout.steps >= max_steps:
                break
            first_game = not rollout.scores
            rollout.step()
            if recording and first_game and len(frames) < record_frames:
                frames.append(env.render())
                frame_scores.append(rollout.episode_return)
            if rollout.game_over:
                rollout.step()  # the next game's first observation
        return Games(list(rollout.scores), list(rollout.lengths), frames, frame_scores)
    finally:
        env.close()
        network.train(was_training)


def score_games(
    network: QNetwork,
    env_id: str,
    games: int,
    *,
    epsilon: float,
    seed: int,
    device: torch.device | str = "cpu",
    env_options: dict[str, Any] | None = None,
    num_envs: int = 16,
    should_stop: Any = None,
) -> Games:
    """Play `games` full games with an epsilon-greedy policy in eval mode, `num_envs` at a time
    in one vector env, one batched forward pass per step. Each env plays a fixed share of the
    games to their end (env i plays games // num_envs, one more for the first games % num_envs),
    so a long game counts as much as a short one: the scores are those of `games` whole games,
    not of the first ones to finish. Returns their true scores and lengths, env by env.
    `should_stop()` returning True ends early (the games finished so far are returned)."""
    device = torch.device(device)
    num_envs = max(1, min(num_envs, games))
    quota = np.full(num_envs, games // num_envs)
    quota[: games % num_envs] += 1
    envs = make_vector_env(env_id, num_envs, seed=seed, **(env_options or {}))
    rng = np.random.default_rng(seed)
    scores: list[list[float]] = [[] for _ in range(num_envs)]
    lengths: list[list[int]] = [[] for _ in range(num_envs)]
    returns = np.zeros(num_envs)
    steps = np.zeros(num_envs, dtype=np.int64)
    ended = np.zeros(num_envs, dtype=bool)  # the last step ended a game: this one resets
    was_training = network.training
    network.eval()
    try:
        observations, _ = envs.reset(seed=seed)
        while any(len(done) < want for done, want in zip(scores, quota, strict=True)):
            if should_stop is not None and should_stop():
                break
            with torch.no_grad():
                q_values = network(torch.as_tensor(observations, device=device)).float()
            actions = epsilon_greedy(q_values, epsilon, rng)
            observations, rewards, terminated, truncated, _ = envs.step(actions)
            playing = ~ended
            returns[playing] += rewards[playing]
            steps[playing] += 1
            ended = np.logical_or(terminated, truncated)
            for index in np.flatnonzero(ended):
                if len(scores[index]) < quota[index]:
                    scores[index].append(float(returns[index]))
                    lengths[index].append(int(steps[index]))
            returns[ended] = 0.0
            steps[ended] = 0
    finally:
        envs.close()
        network.train(was_training)
    return Games(
        [score for env_scores in scores for score in env_scores],
        [length for env_lengths in lengths for length in env_lengths],
    )
