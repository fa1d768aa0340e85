"""The replay buffer against a fake NEXT_STEP-autoreset vector env whose frames say which
(env, episode, t) they are: every sampled stack, action and n-step target is compared with
what the env really produced, across episode ends and the ring's wrap-around."""

from __future__ import annotations

import copy
import math
from collections import Counter, deque
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.replay import ReplayBuffer
from playground.errors import UserError

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    ),
]

Key = tuple[int, int, int]  # (env, episode, t)


class FakeVectorEnv:
    """A vector env with Gymnasium's NEXT_STEP autoreset and zero-padded frame stacks.

    Frame t of episode k in env e encodes (e, k, t) in its first pixels. Episodes end at random
    by termination or truncation; `learning_done` (a life loss) is raised at random too, and
    with `clear_at_life_loss` it leaves the newest frame alone in the stack.
    """

    def __init__(
        self,
        num_envs: int,
        frame_stack: int,
        vector_observations: bool = False,
        seed: int = 0,
        max_length: int = 9,
        clear_at_life_loss: bool = False,
    ) -> None:
        self.num_envs, self.frame_stack = num_envs, frame_stack
        self.clear_at_life_loss = clear_at_life_loss
        self.life_start = [0] * num_envs  # t of each env's first frame since its stack began
        self.vector_observations = vector_observations
        self.rng = np.random.default_rng(seed)
        self.max_length = max_length
        self.episode = [0] * num_envs
        self.t = [0] * num_envs
        self.ended = [False] * num_envs
        self.stacks: list[deque[np.ndarray]] = []

    def frame(self, env: int, episode: int, t: int) -> np.ndarray:
        if self.vector_observations:
            return np.array([env, episode, t, 0.25], dtype=np.float32)
        frame = (
            (np.arange(36, dtype=np.int64) * 7 + env * 5 + episode * 3 + t) % 200 + 50
        ).reshape(6, 6)
        frame[0, :4] = [env + 1, episode // 250 + 1, episode % 250 + 1, t + 1]
        return frame.astype(np.uint8)

    def _begin(self, env: int) -> None:
        empty = np.zeros_like(self.frame(0, 0, 0))
        self.stacks[env] = deque([empty] * self.frame_stack, maxlen=self.frame_stack)
        self.stacks[env].append(self.frame(env, self.episode[env], self.t[env]))
        self.life_start[env] = self.t[env]

    def observations(self) -> np.ndarray:
        if self.vector_observations:
            return np.stack([stack[-1] for stack in self.stacks])
        return np.stack([np.stack(stack) for stack in self.stacks])

    def key(self, env: int) -> Key:
        return (env, self.episode[env], self.t[env])

    def reset(self) -> np.ndarray:
        self.stacks = [deque() for _ in range(self.num_envs)]
        for env in range(self.num_envs):
            self._begin(env)
        return self.observations()

    def step(self) -> tuple[np.ndarray, ...]:
        """Random actions in, (actions, observations, rewards, terminated, truncated, lives)."""
        num_envs = self.num_envs
        actions = self.rng.integers(0, 6, num_envs)
        rewards = self.rng.integers(-2, 4, num_envs).astype(np.float32)
        terminated = np.zeros(num_envs, dtype=bool)
        truncated = np.zeros(num_envs, dtype=bool)
        learning_done = np.zeros(num_envs, dtype=bool)
        for env in range(num_envs):
            if self.ended[env]:  # NEXT_STEP: this step only resets
                self.episode[env] += 1
                self.t[env] = 0
                self.ended[env] = False
                rewards[env] = 0.0
                self._begin(env)
                continue
            self.t[env] += 1
            self.stacks[env].append(self.frame(env, self.episode[env], self.t[env]))
            end = self.t[env] >= self.max_length or self.rng.random() < 0.15
            if end and self.rng.random() < 0.5:
                terminated[env] = True
            elif end:
                truncated[env] = True
            learning_done[env] = self.rng.random() < 0.15
            if learning_done[env] and self.clear_at_life_loss:
                self._begin(env)
            self.ended[env] = end
        return actions, self.observations(), rewards, terminated, truncated, learning_done


class GroundTruth:
    """What the env produced, keyed by the (env, episode, t) of each frame."""

    def __init__(self, env: FakeVectorEnv) -> None:
        self.env = env
        self.observation: dict[Key, np.ndarray] = {}
        self.step: dict[Key, tuple[int, float, bool, bool, bool]] = {}  # action, reward, flags
        self.streams: list[list[Key]] = [[] for _ in range(env.num_envs)]  # frames in write order
        self.since: dict[Key, int] = {}  # frames of each frame's stack before it, uncapped

    def record_frames(self, observations: np.ndarray) -> None:
        for env in range(self.env.num_envs):
            key = self.env.key(env)
            self.observation[key] = observations[env].copy()
            self.streams[env].append(key)
            self.since[key] = key[2] - self.env.life_start[env]

    def start(self, replay: ReplayBuffer) -> None:
        observations = self.env.reset()
        self.record_frames(observations)
        replay.start(observations)

    def advance(self, replay: ReplayBuffer) -> None:
        keys = [self.env.key(env) for env in range(self.env.num_envs)]
        resetting = list(self.env.ended)
        actions, observations, rewards, terminated, truncated, learning_done = self.env.step()
        for env, key in enumerate(keys):
            if not resetting[env]:
                self.step[key] = (
                    int(actions[env]),
                    float(rewards[env]),
                    bool(terminated[env] or learning_done[env]),
                    bool(terminated[env] or truncated[env]),
                    bool(terminated[env]),
                )
        self.record_frames(observations)
        restart = learning_done if self.env.clear_at_life_loss else None
        replay.add(actions, rewards, terminated, truncated, observations, learning_done, restart)

    def target(self, key: Key, n_step: int, gamma: float) -> tuple[float, Key, float, int] | None:
        """(n-step return, key of the next observation, done, steps) or None if incomplete."""
        total, done, steps = 0.0, 0.0, 0
        for k in range(n_step):
            if key not in self.step:
                return None
            _, reward, ends_return, episode_end, _ = self.step[key]
            total += gamma**k * reward
            steps += 1
            key = (key[0], key[1], key[2] + 1)
            if ends_return:
                done = 1.0
            if ends_return or episode_end:
                break
        return total, key, done, steps

    def sampleable(self, slots_per_env: int, n_step: int, gamma: float, stack: int) -> set[Key]:
        """Transitions whose n steps are recorded and whose frames are all still stored."""
        keys = set()
        for stream in self.streams:
            oldest = len(stream) - slots_per_env
            for index, key in enumerate(stream):
                first_used = max(index - stack + 1, index - self.since[key])
                if first_used >= oldest and self.target(key, n_step, gamma) is not None:
                    keys.add(key)
        return keys


def decode(observations: np.ndarray, vector_observations: bool) -> list[Key]:
    """The (env, episode, t) of each observation's newest frame."""
    if vector_observations:
        codes = observations[:, :3].astype(int)
    else:
        pixels = observations[:, -1, 0, :4].astype(int) - 1
        codes = np.stack([pixels[:, 0], pixels[:, 1] * 250 + pixels[:, 2], pixels[:, 3]], axis=1)
    return [tuple(code) for code in codes.tolist()]


def check_samples(
    replay: ReplayBuffer,
    truth: GroundTruth,
    generator: torch.Generator,
    sync_free: bool = False,
) -> None:
    """Every sample equals the env's own data; all sampleable transitions, and only they, appear
    (drawn with `sample`, or with `sample_sync_free`)."""
    n_step, gamma, stack = replay.n_step, replay.gamma, replay.frame_stack
    expected_keys = truth.sampleable(replay.slots_per_env, n_step, gamma, stack)
    assert len(replay) == len(expected_keys)
    if not expected_keys:
        return
    draw = replay.sample_sync_free if sync_free else replay.sample
    batch = draw(40 * len(expected_keys), generator)
    keys = decode(batch.observations.cpu().numpy(), truth.env.vector_observations)
    assert set(keys) == expected_keys, (
        "sampled incomplete or overwritten transitions, or missed some"
    )
    targets = {key: truth.target(key, n_step, gamma) for key in expected_keys}
    next_keys = [targets[key][1] for key in keys]
    assert all(next_key[:2] == key[:2] for key, next_key in zip(keys, next_keys, strict=True))
    expected = {
        "observations": np.stack([truth.observation[key] for key in keys]),
        "actions": np.array([truth.step[key][0] for key in keys]),
        "returns": np.array([targets[key][0] for key in keys], dtype=np.float32),
        "next_observations": np.stack([truth.observation[key] for key in next_keys]),
        "dones": np.array([targets[key][2] for key in keys], dtype=np.float32),
        "discounts": np.array([gamma ** targets[key][3] for key in keys], dtype=np.float32),
    }
    for name, value in expected.items():
        np.testing.assert_array_equal(getattr(batch, name).cpu().numpy(), value, err_msg=name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n_step", [1, 3])
@pytest.mark.parametrize("sync_free", [False, True], ids=["sample", "sample_sync_free"])
def test_samples_match_the_env_across_episodes_and_wraparound(
    device: str, n_step: int, sync_free: bool
) -> None:
    env = FakeVectorEnv(num_envs=3, frame_stack=4, seed=n_step)
    replay = ReplayBuffer(120, 3, (4, 6, 6), 4, n_step=n_step, gamma=0.5, device=device)
    truth = GroundTruth(env)
    truth.start(replay)
    generator = torch.Generator(device=device).manual_seed(0)
    # Checks after single steps and after gaps longer than the 40-slot ring.
    checks = {1, 2, 3, 5, 8, 13, 23, 46, 47, 130, 131, 150, 200, 260, 261, 262}
    for step in range(1, 301):  # 301 frames per env through a 40-slot ring: seven laps
        truth.advance(replay)
        if step in checks:
            check_samples(replay, truth, generator, sync_free)
    check_samples(replay, truth, generator, sync_free)


def test_stacks_restart_where_a_lost_life_cleared_them() -> None:
    # --life-loss-clears-stack: the env's stacks after a lost life hold no frame from before
    # it; the rebuilt ones must match them (and the transitions stay the same n-step ones).
    env = FakeVectorEnv(num_envs=2, frame_stack=4, seed=11, max_length=30, clear_at_life_loss=True)
    replay = ReplayBuffer(100, 2, (4, 6, 6), 4, n_step=3, gamma=0.5)
    truth = GroundTruth(env)
    truth.start(replay)
    generator = torch.Generator().manual_seed(0)
    for step in range(1, 181):  # 181 frames per env through a 50-slot ring
        truth.advance(replay)
        if step % 30 == 0:
            check_samples(replay, truth, generator)
    restarted = [key for key, since in truth.since.items() if since == 0 and key[2] > 0]
    assert len(restarted) > 10  # lives lost mid-episode, whose stacks began anew
    # An observation that claims a restart but still holds older frames is refused.
    observations = env.observations()
    observations[:, :-1] = 7
    with pytest.raises(ValueError, match="zero-padded frame stacks"):
        replay.add(
            np.zeros(2, np.int64), np.zeros(2), np.zeros(2, bool), np.zeros(2, bool),
            observations, stack_restart=np.ones(2, bool),
        )  # fmt: skip


def test_vector_observations_with_frame_stack_one() -> None:
    env = FakeVectorEnv(num_envs=2, frame_stack=1, vector_observations=True, seed=5)
    replay = ReplayBuffer(50, 2, (4,), 1, observation_dtype=torch.float32, n_step=2, gamma=0.5)
    truth = GroundTruth(env)
    truth.start(replay)
    generator = torch.Generator().manual_seed(1)
    for step in range(1, 90):
        truth.advance(replay)
        if step % 11 == 0:
            check_samples(replay, truth, generator)
            check_samples(replay, truth, generator, sync_free=True)
    batch = replay.sample(8, generator)
    assert batch.observations.shape == (8, 4) and batch.observations.dtype == torch.float32


def scripted_frame(t: int) -> np.ndarray:
    return np.full((2, 2), t, dtype=np.uint8)


def test_n_step_returns_stop_at_terminal_truncation_and_life_loss() -> None:
    """One env, frame_stack 2, n = 3, gamma = 0.5; targets worked out by hand below."""
    replay = ReplayBuffer(64, 1, (2, 2, 2), 2, n_step=3, gamma=0.5)
    frame_number = iter(range(1, 100))
    stack: list[np.ndarray] = []
    given: dict[int, np.ndarray] = {}  # newest frame value -> the observation the env gave

    def observe(new_episode: bool) -> np.ndarray:
        nonlocal stack
        frame = scripted_frame(next(frame_number))
        stack = [np.zeros((2, 2), np.uint8), frame] if new_episode else [stack[-1], frame]
        observation = np.stack(stack)[None]  # (1, 2, 2, 2)
        given[int(frame[0, 0])] = observation[0]
        return observation

    def step(reward: float, terminated=False, truncated=False, life_lost=False, reset=False):
        replay.add([1], [reward], [terminated], [truncated], observe(reset), [life_lost])

    replay.start(observe(True))  # frame 1: episode A
    step(1, life_lost=True)  # 1 -> 2, a life lost: the return stops, the stack goes on
    step(2)  # 2 -> 3
    step(4)  # 3 -> 4
    step(8)  # 4 -> 5
    step(16, terminated=True)  # 5 -> 6, the end of A
    step(99, reset=True)  # frame 7 starts episode B; reward and action ignored
    step(1)  # 7 -> 8
    step(1)  # 8 -> 9
    step(1, truncated=True)  # 9 -> 10, B truncated
    step(0, reset=True)  # frame 11 starts episode C
    step(3)  # 11 -> 12
    step(5)  # 12 -> 13
    step(7)  # 13 -> 14
    step(9)  # 14 -> 15: 13 and 14 lack a third step yet

    # first frame: (return, next observation's newest frame, done, discount)
    expected = {
        1: (1.0, 2, 1.0, 0.5),
        2: (2 + 0.5 * 4 + 0.25 * 8, 5, 0.0, 0.125),
        3: (4 + 0.5 * 8 + 0.25 * 16, 6, 1.0, 0.125),
        4: (8 + 0.5 * 16, 6, 1.0, 0.25),
        5: (16.0, 6, 1.0, 0.5),
        7: (1 + 0.5 + 0.25, 10, 0.0, 0.125),
        8: (1 + 0.5, 10, 0.0, 0.25),
        9: (1.0, 10, 0.0, 0.5),
        11: (3 + 0.5 * 5 + 0.25 * 7, 14, 0.0, 0.125),
        12: (5 + 0.5 * 7 + 0.25 * 9, 15, 0.0, 0.125),
    }
    assert len(replay) == len(expected)
    batch = replay.sample(2000, torch.Generator().manual_seed(0))
    found = {}
    for index in range(2000):
        first = int(batch.observations[index, -1, 0, 0])
        next_frame = int(batch.next_observations[index, -1, 0, 0])
        found[first] = (
            batch.returns[index].item(),
            next_frame,
            batch.dones[index].item(),
            batch.discounts[index].item(),
        )
        np.testing.assert_array_equal(batch.observations[index].numpy(), given[first])
        np.testing.assert_array_equal(batch.next_observations[index].numpy(), given[next_frame])
        assert batch.actions[index].item() == 1
    assert found == expected
    # After the life loss the stack is not restarted: frame 2's observation is [1, 2].
    np.testing.assert_array_equal(given[2], np.stack([scripted_frame(1), scripted_frame(2)]))
    # A new episode's first observation is zero-padded.
    np.testing.assert_array_equal(given[7][0], np.zeros((2, 2), np.uint8))


def test_state_dict_round_trip_gives_identical_samples(tmp_path: Path) -> None:
    env = FakeVectorEnv(num_envs=2, frame_stack=4, seed=3)
    replay = ReplayBuffer(60, 2, (4, 6, 6), 4, n_step=3, gamma=0.9)
    truth = GroundTruth(env)
    truth.start(replay)
    for _ in range(75):  # past one lap of the 30-slot rings
        truth.advance(replay)
    torch.save(replay.state_dict(), tmp_path / "replay.pt")
    restored = ReplayBuffer(60, 2, (4, 6, 6), 4, n_step=3, gamma=0.9)
    restored.load_state_dict(torch.load(tmp_path / "replay.pt", weights_only=True))
    # The validity recomputed from scratch agrees with the one kept up step by step.
    assert len(restored) == len(replay) > 0
    assert torch.equal(restored.valid, replay.valid)
    assert torch.equal(restored.flags, replay.flags)

    def assert_same_samples(seed: int) -> None:
        first = replay.sample(64, torch.Generator().manual_seed(seed))
        second = restored.sample(64, torch.Generator().manual_seed(seed))
        for name, a, b in zip(first._fields, first, second, strict=True):
            assert (a is None and b is None) or torch.equal(a, b), name

    assert_same_samples(7)
    # Both carry on identically, including envs whose episode ended just before saving.
    twin = copy.deepcopy(env)
    for _ in range(20):
        truth.advance(replay)
        actions, observations, rewards, terminated, truncated, lives = twin.step()
        restored.add(actions, rewards, terminated, truncated, observations, lives)
    assert_same_samples(8)
    assert torch.equal(restored.valid, replay.valid)
    assert torch.equal(restored.frames, replay.frames)


def test_a_different_buffer_size_is_refused_on_load() -> None:
    replay = ReplayBuffer(60, 2, (4, 6, 6), 4)
    other = ReplayBuffer(80, 2, (4, 6, 6), 4)
    with pytest.raises(UserError, match="same buffer size"):
        other.load_state_dict(replay.state_dict())


def test_atari_transition_fits_in_7_5_kilobytes() -> None:
    replay = ReplayBuffer(10_000, 1, (4, 84, 84), 4, num_actions=18)
    assert replay.capacity == 10_000
    assert replay.nbytes / replay.capacity <= 7680
    # one 84x84 frame (7056) + action uint8 + reward float32 + flags, offset and valid bytes
    assert ReplayBuffer.bytes_per_transition((4, 84, 84), 4) == 7064
    # ... and one zero frame standing in for stack padding
    assert replay.nbytes == 10_000 * 7064 + 84 * 84


def test_sampling_before_any_transition_is_refused() -> None:
    replay = ReplayBuffer(40, 1, (4, 6, 6), 4)
    replay.start(np.zeros((1, 4, 6, 6), np.uint8))
    assert len(replay) == 0
    with pytest.raises(RuntimeError, match="no complete transition"):
        replay.sample(4)


def test_stacks_padded_by_repeating_the_first_frame_are_refused() -> None:
    replay = ReplayBuffer(40, 1, (4, 6, 6), 4)
    with pytest.raises(ValueError, match="zero-padded"):
        replay.start(np.ones((1, 4, 6, 6), np.uint8))


def test_bad_inputs_are_refused_before_anything_is_written() -> None:
    replay = ReplayBuffer(40, 2, (4, 6, 6), 4, num_actions=4)
    replay.start(np.zeros((2, 4, 6, 6), np.uint8))
    no = np.zeros(2, dtype=bool)
    with pytest.raises(ValueError, match="actions must lie"):
        replay.add([0, 4], [0.0, 0.0], no, no, np.zeros((2, 4, 6, 6), np.uint8))
    with pytest.raises(ValueError, match="must be torch.uint8"):
        replay.add([0, 1], [0.0, 0.0], no, no, np.zeros((2, 4, 6, 6), np.float32))
    with pytest.raises(ValueError, match="shape"):
        replay.add([0, 1], [0.0, 0.0], no, no, np.zeros((2, 3, 6, 6), np.uint8))
    assert replay.position == 1


def test_a_buffer_too_small_for_its_envs_is_a_user_error() -> None:
    with pytest.raises(UserError, match="at least 64"):
        ReplayBuffer(40, 8, (4, 6, 6), 4, n_step=3)


def test_sync_free_sampling_is_uniform_over_valid_transitions() -> None:
    # Early on (few transitions valid among the written slots) and after laps of the rings.
    env = FakeVectorEnv(num_envs=3, frame_stack=4, seed=11)
    replay = ReplayBuffer(120, 3, (4, 6, 6), 4, n_step=3, gamma=0.5)
    truth = GroundTruth(env)
    truth.start(replay)
    generator = torch.Generator().manual_seed(0)
    for steps in (6, 200):
        for _ in range(steps):
            truth.advance(replay)
        replay.refresh_validity()
        valid_slots = torch.nonzero(replay.valid).squeeze(1)
        draws = 2_000 * len(valid_slots)
        batch = replay.sample_sync_free(draws, generator)
        keys = decode(batch.observations.numpy(), vector_observations=False)
        counts = np.array(list(Counter(keys).values()))
        assert len(counts) == len(valid_slots) == len(replay)
        # Pearson chi-square against uniform, far below any plausible deviation (p ~ 1e-6).
        expected = draws / len(counts)
        chi_square = float(((counts - expected) ** 2 / expected).sum())
        dof = len(counts) - 1
        assert chi_square < dof + 5 * math.sqrt(2 * dof) + 10


def test_sync_free_sampling_reads_nothing_back_from_the_device(monkeypatch) -> None:
    env = FakeVectorEnv(num_envs=2, frame_stack=4, seed=2)
    replay = ReplayBuffer(60, 2, (4, 6, 6), 4, n_step=3, gamma=0.9)
    truth = GroundTruth(env)
    truth.start(replay)
    for _ in range(50):
        truth.advance(replay)

    def host_read(*args, **kwargs):
        raise AssertionError("a tensor value was read back to the host")

    for name in ("item", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    batch = replay.sample_sync_free(32)
    monkeypatch.undo()
    assert batch.observations.shape == (32, 4, 6, 6)
    with pytest.raises(AssertionError, match="read back"):  # the guard does catch reads
        monkeypatch.setattr(torch.Tensor, "item", host_read)
        replay.sample(32)
