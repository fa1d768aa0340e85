"""DQN replay buffer that stores each frame once and rebuilds frame stacks by index.

A vector env with `frame_stack` S hands over observations (E, S, H, W) whose last frame is
the newest, zero-padded at episode start. Storing whole stacks would keep every frame S times
(28 KB per Atari transition); this buffer keeps one frame per env step in a ring per env and
rebuilds the stack of position p from the frames p-S+1..p, zeroing the ones that lie before
the episode's first frame. An Atari transition then costs about 7.07 KB.

It is fed the way Gymnasium 1.x vector envs with `AutoresetMode.NEXT_STEP` step: the step
after an env reports terminated or truncated ignores the action and returns the first
observation of a new episode. The buffer remembers which envs ended, records that
observation as a first frame and makes no transition of it.

Everything lives in torch tensors on one device, so a buffer on the GPU samples there.

    replay = ReplayBuffer(capacity=100_000, num_envs=8, observation_shape=(4, 84, 84),
                          frame_stack=4, num_actions=envs.single_action_space.n, n_step=3)
    observations, _ = envs.reset(seed=0)
    replay.start(observations)
    next_observations, rewards, terminated, truncated, _ = envs.step(actions)
    replay.add(actions, rewards, terminated, truncated, next_observations)
    batch = replay.sample(32)
    target = batch.returns + batch.discounts * (1 - batch.dones) * q_next.max(dim=1).values
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from playground.errors import check

# Bits of the per-slot `flags` byte. A slot holds the frame at one position of an env's frame
# stream and, once the env has stepped from it, the action taken there and its outcome.
HAS_ACTION = 1  # the step from this frame is recorded; the next slot holds its next frame
TERMINAL = 2  # that step ends the return: terminated, or a learning-only end (life loss)
EPISODE_END = 4  # that step ended the episode (terminated or truncated)
VALID = 8  # the n-step transition starting here can be sampled (see `_validity`)
NOT_VALID = 0xFF ^ VALID

# Offsets (frames since the episode's first frame) are stored capped to fit a byte.
OFFSET_CAP = 255
# Rejection-sampling rounds before the remaining draws fall back to an exact pick.
REJECTION_ROUNDS = 16


class ReplaySample(NamedTuple):
    """A batch of n-step transitions. Target: `returns + discounts * (1 - dones) * max Q(next)`."""

    observations: torch.Tensor  # (B, S, H, W) uint8, or (B, *observation_shape) when S = 1
    actions: torch.Tensor  # (B,) int64
    returns: torch.Tensor  # (B,) float32: r_t + g r_{t+1} + ..., stopping at the episode's end
    next_observations: torch.Tensor  # like observations: the one after the steps summed
    dones: torch.Tensor  # (B,) float32: 1 when a terminal (not a truncation) ends the sum
    discounts: torch.Tensor  # (B,) float32: gamma ** (number of rewards summed)


def _action_dtype(num_actions: int) -> torch.dtype:
    """The smallest integer dtype holding action ids 0..num_actions-1."""
    if num_actions <= 256:
        return torch.uint8
    if num_actions <= 2**15:
        return torch.int16
    return torch.int32


def _to_numpy(values: Any, name: str, length: int) -> np.ndarray:
    """Per-env values (numpy, torch or a list) as a host array of shape (length,)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {array.shape}")
    return array


class ReplayBuffer:
    """Uniform n-step replay over the frames of `num_envs` parallel envs, each frame kept once.

    `capacity` counts transitions over all envs; each env gets a ring of `capacity // num_envs`
    slots, one per frame. An episode of L steps takes L + 1 slots (its final observation has no
    action), so slightly fewer than `capacity` transitions can be sampled when full.

    `observation_shape` is one env's observation: (S, H, W) with S = `frame_stack`, or any
    shape when `frame_stack` is 1 (then the whole observation is the frame, e.g. CartPole's
    (4,) float32). `num_actions` picks the action dtype (uint8 up to 256 actions).
    """

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        observation_shape: tuple[int, ...],
        frame_stack: int,
        observation_dtype: torch.dtype = torch.uint8,
        n_step: int = 1,
        gamma: float = 0.99,
        device: torch.device | str = "cpu",
        num_actions: int = 256,
    ) -> None:
        check(num_envs >= 1, f"num_envs must be at least 1, got {num_envs}")
        check(1 <= frame_stack <= OFFSET_CAP, f"frame stack must be 1..{OFFSET_CAP}")
        check(n_step >= 1, f"--n-step must be at least 1, got {n_step}")
        check(0.0 <= gamma <= 1.0, f"--gamma must be in [0, 1], got {gamma}")
        check(num_actions >= 1, f"num_actions must be at least 1, got {num_actions}")
        observation_shape = tuple(int(size) for size in observation_shape)
        if frame_stack > 1 and (len(observation_shape) < 2 or observation_shape[0] != frame_stack):
            raise ValueError(
                f"observation shape {observation_shape} does not start with frame stack {frame_stack}"
            )
        slots_per_env = capacity // num_envs
        minimum = frame_stack + n_step + 1
        check(
            slots_per_env >= minimum,
            f"replay capacity {capacity} leaves {slots_per_env} slots per env for {num_envs} envs;"
            f" raise the buffer size to at least {minimum * num_envs}",
        )
        self.num_envs = num_envs
        self.slots_per_env = slots_per_env
        self.capacity = slots_per_env * num_envs
        self.observation_shape = observation_shape
        self.frame_shape = observation_shape if frame_stack == 1 else observation_shape[1:]
        self.frame_stack = frame_stack
        self.observation_dtype = observation_dtype
        self.n_step = n_step
        self.gamma = gamma
        self.num_actions = num_actions
        self.device = torch.device(device)

        # Slot of (env e, position p) is e * slots_per_env + p % slots_per_env. torch.zeros
        # writes every page, so the memory is resident (and refused) now, not mid-training.
        slots = self.capacity
        self.frames = torch.zeros(
            (slots, *self.frame_shape), dtype=observation_dtype, device=self.device
        )
        self.actions = torch.zeros(slots, dtype=_action_dtype(num_actions), device=self.device)
        self.rewards = torch.zeros(slots, dtype=torch.float32, device=self.device)
        self.flags = torch.zeros(slots, dtype=torch.uint8, device=self.device)
        self.offsets = torch.zeros(slots, dtype=torch.uint8, device=self.device)
        self.valid_count = torch.zeros((), dtype=torch.int64, device=self.device)
        # All envs step together, so one position (frames written per env) serves them all.
        self.position = 0
        self.ended = np.zeros(num_envs, dtype=bool)  # which envs' last step ended their episode
        self.started = False

        self._env_base = torch.arange(num_envs, device=self.device) * slots_per_env  # (E,)
        self._discount_powers = torch.tensor(
            [gamma**k for k in range(n_step + 1)], dtype=torch.float32, device=self.device
        )

    # ---------------------------------------------------------------- sizes

    @staticmethod
    def bytes_per_transition(
        observation_shape: tuple[int, ...],
        frame_stack: int,
        observation_dtype: torch.dtype = torch.uint8,
        num_actions: int = 256,
    ) -> int:
        """Storage bytes per transition slot: one frame, action, reward, flags and offset."""
        frame_shape = observation_shape if frame_stack == 1 else observation_shape[1:]
        frame_bytes = int(np.prod(frame_shape)) * torch.empty((), dtype=observation_dtype).itemsize
        action_bytes = torch.empty((), dtype=_action_dtype(num_actions)).itemsize
        return frame_bytes + action_bytes + 4 + 1 + 1

    @property
    def nbytes(self) -> int:
        """Bytes held by the per-slot storage tensors (frames, actions, rewards, flags, offsets)."""
        tensors = (self.frames, self.actions, self.rewards, self.flags, self.offsets)
        return sum(tensor.nbytes for tensor in tensors)

    def __len__(self) -> int:
        """Number of transitions that `sample` can return now."""
        return int(self.valid_count.item())

    # ---------------------------------------------------------------- writing

    def start(self, observations: Any) -> None:
        """Record the first observations after `envs.reset()`: every env begins an episode."""
        new_episode = np.ones(self.num_envs, dtype=bool)
        self._write_frames(self._newest_frames(observations, new_episode), new_episode)
        self.ended[:] = False
        self.started = True

    def add(
        self,
        actions: Any,
        rewards: Any,
        terminated: Any,
        truncated: Any,
        next_observations: Any,
        learning_done: Any | None = None,
    ) -> None:
        """Record one vector-env step (arrays of length num_envs, numpy or torch).

        Envs whose previous step ended are being reset by this step: their observation becomes
        the first frame of a new episode and their action, reward and flags are ignored.
        `learning_done` ends the n-step return there (dones = 1) without ending the episode,
        e.g. on an Atari life loss; the frame stack carries on across it.
        """
        if not self.started:
            raise RuntimeError("call start(observations) after envs.reset() before add()")
        num_envs = self.num_envs
        actions = _to_numpy(actions, "actions", num_envs).astype(np.int64)
        rewards = _to_numpy(rewards, "rewards", num_envs).astype(np.float32)
        terminated = _to_numpy(terminated, "terminated", num_envs).astype(bool)
        truncated = _to_numpy(truncated, "truncated", num_envs).astype(bool)
        ends_return = terminated.copy()
        if learning_done is not None:
            ends_return |= _to_numpy(learning_done, "learning_done", num_envs).astype(bool)
        if actions.min() < 0 or actions.max() >= self.num_actions:
            raise ValueError(f"actions must lie in [0, {self.num_actions}), got {actions}")

        resetting = self.ended.copy()
        frames = self._newest_frames(next_observations, resetting)
        flags = (
            HAS_ACTION
            + TERMINAL * ends_return.astype(np.uint8)
            + EPISODE_END * (terminated | truncated).astype(np.uint8)
        ).astype(np.uint8)
        flags[resetting] = 0
        actions[resetting] = 0
        rewards[resetting] = 0.0

        current = self._env_base + (self.position - 1) % self.slots_per_env  # (E,)
        keep_valid = self.flags[current] & VALID
        self.flags[current] = keep_valid | torch.as_tensor(flags, device=self.device)
        self.actions[current] = torch.as_tensor(actions, device=self.device).to(self.actions.dtype)
        self.rewards[current] = torch.as_tensor(rewards, device=self.device)
        self._write_frames(frames, resetting)
        self.ended = (terminated | truncated) & ~resetting

    def _newest_frames(self, observations: Any, new_episode: np.ndarray) -> torch.Tensor:
        """Check a batch of observations and return each env's newest frame (E, *frame_shape)."""
        expected = (self.num_envs, *self.observation_shape)
        if tuple(observations.shape) != expected:
            raise ValueError(
                f"observations must have shape {expected}, got {tuple(observations.shape)}"
            )
        if isinstance(observations, np.ndarray):
            observations = torch.from_numpy(observations)
        if observations.dtype != self.observation_dtype:
            raise ValueError(
                f"observations must be {self.observation_dtype}, got {observations.dtype}"
            )
        if self.frame_stack > 1:
            if new_episode.any():
                # A first observation must be zero-padded; a stack padded by repeating the first
                # frame (FrameStackObservation's default) would be rebuilt differently.
                first = torch.from_numpy(np.flatnonzero(new_episode)).to(observations.device)
                if observations[first, :-1].any():
                    raise ValueError(
                        "first observations of an episode must be zero-padded frame stacks"
                        " (FrameStackObservation(padding_type='zero'))"
                    )
            observations = observations[:, -1]
        return observations

    def _write_frames(self, frames: torch.Tensor, new_episode: np.ndarray) -> None:
        """Store each env's frame at the next position; `new_episode` marks first frames."""
        slots = self._env_base + self.position % self.slots_per_env  # (E,)
        self.frames[slots] = frames.to(self.device)
        if self.position == 0:
            offsets = torch.zeros(self.num_envs, dtype=torch.uint8, device=self.device)
        else:
            previous = self._env_base + (self.position - 1) % self.slots_per_env
            offsets = (self.offsets[previous].to(torch.int32) + 1).clamp_(max=OFFSET_CAP)
            new_episode_tensor = torch.as_tensor(new_episode, device=self.device)
            offsets = offsets.masked_fill_(new_episode_tensor, 0).to(torch.uint8)
        self.offsets[slots] = offsets
        # The VALID bit is left to `_refresh_validity`, which keeps `valid_count` in step.
        self.flags[slots] &= VALID
        self.position += 1
        self._refresh_validity()

    # ---------------------------------------------------------------- validity

    def _refresh_validity(self) -> None:
        """Recompute the VALID bit where the last write can have changed it.

        Writing position P-1 (P = self.position) completes n-step windows of positions from
        P-2-n on, and evicts position P-1-C, whose frame the stacks of positions up to
        P-C+S-2 may have used. No other position's validity changes.
        """
        newest, size = self.position, self.slots_per_env
        evicted_users = np.arange(
            max(newest - size, 0), min(newest - size + self.frame_stack, newest)
        )
        completed = np.arange(
            max(newest - 2 - self.n_step, newest - size + self.frame_stack, 0), newest
        )
        positions = torch.from_numpy(np.concatenate([evicted_users, completed])).to(self.device)
        positions = positions.expand(self.num_envs, -1).reshape(-1)  # (E * W,)
        envs = torch.arange(self.num_envs, device=self.device).repeat_interleave(
            len(positions) // self.num_envs
        )
        slots = self._env_base[envs] + positions % size
        valid = self._validity(envs, positions)
        old = self.flags[slots]
        self.valid_count += valid.sum() - ((old & VALID) != 0).sum()
        self.flags[slots] = (old & NOT_VALID) | (valid.to(torch.uint8) * VALID)

    def _validity(self, envs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Whether the transitions at these stored positions (all >= position - C) can be sampled.

        It needs an action, all n steps recorded up to a stop (terminal, life loss or episode
        end), the next observation written, and every frame of its stack still stored.
        """
        size, newest = self.slots_per_env, self.position - 1
        oldest = max(self.position - size, 0)
        base = self._env_base[envs]
        offsets = (
            self.offsets[base + positions % size].to(torch.int64).clamp_(max=self.frame_stack - 1)
        )
        valid = positions - offsets >= oldest
        active = torch.ones_like(valid)
        for k in range(self.n_step):
            step = positions + k
            flags = self.flags[base + step % size]
            recorded = (step < newest) & ((flags & HAS_ACTION) != 0)
            valid &= recorded | ~active
            active &= (flags & (TERMINAL | EPISODE_END)) == 0
        return valid

    # ---------------------------------------------------------------- reading

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> ReplaySample:
        """Draw `batch_size` transitions uniformly (with replacement) from the valid ones."""
        count = len(self)
        if count == 0:
            raise RuntimeError("the replay buffer holds no complete transition yet")
        size = self.slots_per_env
        written = min(self.position, size)
        device = self.device

        def draw() -> torch.Tensor:
            envs = torch.randint(self.num_envs, (batch_size,), generator=generator, device=device)
            ages = torch.randint(written, (batch_size,), generator=generator, device=device)
            return self._env_base[envs] + (self.position - 1 - ages) % size

        # Uniform candidates among written slots, redrawing the invalid ones: uniform over the
        # valid ones. When few are valid (early on), pick among them exactly instead.
        slots = None
        if count * 8 >= written * self.num_envs:
            slots = draw()
            for _ in range(REJECTION_ROUNDS):
                invalid = (self.flags[slots] & VALID) == 0
                if not invalid.any():
                    break
                slots = torch.where(invalid, draw(), slots)
            else:
                invalid = (self.flags[slots] & VALID) == 0
                slots[invalid] = self._exact_draw(int(invalid.sum()), generator)
        else:
            slots = self._exact_draw(batch_size, generator)

        envs = slots // size
        positions = self.position - 1 - (self.position - 1 - slots % size) % size  # (B,)
        returns = torch.zeros(batch_size, dtype=torch.float32, device=device)
        steps = torch.zeros(batch_size, dtype=torch.int64, device=device)
        dones = torch.zeros(batch_size, dtype=torch.bool, device=device)
        active = torch.ones(batch_size, dtype=torch.bool, device=device)
        base = self._env_base[envs]
        for k in range(self.n_step):
            step_slots = base + (positions + k) % size
            flags = self.flags[step_slots]
            returns += torch.where(active, self.rewards[step_slots] * self.gamma**k, 0.0)
            steps += active
            dones |= active & ((flags & TERMINAL) != 0)
            active &= (flags & (TERMINAL | EPISODE_END)) == 0
        return ReplaySample(
            observations=self._stacks(envs, positions),
            actions=self.actions[slots].to(torch.int64),
            returns=returns,
            next_observations=self._stacks(envs, positions + steps),
            dones=dones.to(torch.float32),
            discounts=self._discount_powers[steps],
        )

    def _exact_draw(self, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
        """Slots drawn uniformly among all valid ones (a pass over the whole buffer)."""
        valid_slots = torch.nonzero((self.flags & VALID) != 0).squeeze(1)
        picks = torch.randint(
            len(valid_slots), (batch_size,), generator=generator, device=self.device
        )
        return valid_slots[picks]

    def _stacks(self, envs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Observations at these positions, zero frames before the episode's first."""
        size = self.slots_per_env
        base = self._env_base[envs]
        if self.frame_stack == 1:
            return self.frames[base + positions % size]
        stack = self.frame_stack
        offsets = self.offsets[base + positions % size].to(torch.int64)  # (B,)
        back = torch.arange(stack - 1, -1, -1, device=self.device)  # (S,) S-1 .. 0
        frame_positions = positions[:, None] - back  # (B, S)
        observations = self.frames[base[:, None] + frame_positions % size]  # (B, S, *frame)
        before_start = back > offsets[:, None]  # (B, S)
        observations[before_start] = 0
        return observations

    # ---------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: tensors and ints (safe for `weights_only` loading)."""
        return {
            "frames": self.frames,
            "actions": self.actions,
            "rewards": self.rewards,
            "flags": self.flags,
            "offsets": self.offsets,
            "ended": torch.from_numpy(self.ended.copy()),
            "position": self.position,
            "started": int(self.started),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` output from a buffer with the same capacity, envs and frames.

        Validity is recomputed, so `n_step` may differ from the saved buffer's.
        """
        for name in ("frames", "actions", "rewards", "flags", "offsets"):
            own, saved = getattr(self, name), state[name]
            check(
                saved.shape == own.shape and saved.dtype == own.dtype,
                f"saved replay {name} are {saved.dtype} {tuple(saved.shape)} but this buffer"
                f" holds {own.dtype} {tuple(own.shape)}: use the same buffer size, envs and game",
            )
        for name in ("frames", "actions", "rewards", "flags", "offsets"):
            # Replace rather than copy, so a large buffer is not held twice.
            setattr(self, name, state[name].to(self.device))
        self.ended = state["ended"].cpu().numpy().astype(bool)
        self.position = int(state["position"])
        self.started = bool(state["started"])
        self._recompute_all_validity()

    def _recompute_all_validity(self) -> None:
        """Set every VALID bit and `valid_count` from scratch, in chunks to bound memory."""
        self.flags &= NOT_VALID
        self.valid_count.zero_()
        size = self.slots_per_env
        stored = min(self.position, size)
        chunk = 1 << 20
        for env in range(self.num_envs):
            for first in range(self.position - stored, self.position, chunk):
                positions = torch.arange(
                    first, min(first + chunk, self.position), device=self.device
                )
                envs = torch.full_like(positions, env)
                valid = self._validity(envs, positions)
                slots = env * size + positions % size
                self.flags[slots] |= valid.to(torch.uint8) * VALID
                self.valid_count += valid.sum()
