"""DQN replay buffer that stores each frame once and rebuilds frame stacks by index.

A vector env with `frame_stack` S hands over observations (E, S, H, W) whose last frame is
the newest, zero-padded at episode start. Storing whole stacks would keep every frame S times
(28 KB per Atari transition); this buffer keeps one frame per env step in a ring per env and
rebuilds the stack of position p from the frames p-S+1..p, zeroing the ones that lie before
the episode's first frame. An Atari transition then costs 7,064 bytes.

It is fed the way Gymnasium 1.x vector envs with `AutoresetMode.NEXT_STEP` step: the step
after an env reports terminated or truncated ignores the action and returns the first
observation of a new episode. The buffer remembers which envs ended, records that
observation as a first frame and makes no transition of it.

Everything lives in torch tensors on one device, so a buffer on the GPU samples there.
`sample` is exact and cheapest on the CPU; `sample_sync_free` never waits for the device, so
on a GPU it can run ahead of it and be captured in a CUDA graph (see agents/update.py).

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

from agents.prioritized import SumTree, importance_weights
from playground.errors import check

# Bits of the per-slot `flags` byte. A slot holds the frame at one position of an env's frame
# stream and, once the env has stepped from it, the action taken there and its outcome.
HAS_ACTION = 1  # the step from this frame is recorded; the next slot holds its next frame
TERMINAL = 2  # that step ends the return: terminated, or a learning-only end (life loss)
EPISODE_END = 4  # that step ended the episode (terminated or truncated)

# Offsets (frames since the episode's first frame) are stored capped to fit a byte.
OFFSET_CAP = 255
# Rejection-sampling rounds before the remaining draws fall back to an exact pick.
REJECTION_ROUNDS = 16
# Positions whose validity is recomputed at once, to bound temporary memory.
VALIDITY_CHUNK = 1 << 20


class ReplaySample(NamedTuple):
    """A batch of n-step transitions. Target: `returns + discounts * (1 - dones) * max Q(next)`."""

    observations: torch.Tensor  # (B, S, H, W) uint8, or (B, *observation_shape) when S = 1
    actions: torch.Tensor  # (B,) int64
    returns: torch.Tensor  # (B,) float32: r_t + g r_{t+1} + ..., stopping at the episode's end
    next_observations: torch.Tensor  # like observations: the one after the steps summed
    dones: torch.Tensor  # (B,) float32: 1 when a terminal (not a truncation) ends the sum
    discounts: torch.Tensor  # (B,) float32: gamma ** (number of rewards summed)
    weights: torch.Tensor  # (B,) float32: importance weights (ones unless prioritized)
    # With `future_steps` K (SPR's self-predictive loss), what follows each transition:
    future_observations: torch.Tensor | None = None  # (B, K, ...): 1, ..., K steps on
    future_actions: torch.Tensor | None = None  # (B, K) int64: the actions of steps 0..K-1
    future_mask: torch.Tensor | None = None  # (B, K) float32: 1 while the episode goes on

    def to(self, device: torch.device) -> ReplaySample:
        """The batch on `device` (its absent fields stay None)."""
        return ReplaySample(
            *(None if tensor is None else tensor.to(device, non_blocking=True) for tensor in self)
        )


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
        priority_alpha: float | None = None,
        future_steps: int = 0,
    ) -> None:
        check(num_envs >= 1, f"num_envs must be at least 1, got {num_envs}")
        check(1 <= frame_stack <= OFFSET_CAP, f"frame stack must be 1..{OFFSET_CAP}")
        check(n_step >= 1, f"--n-step must be at least 1, got {n_step}")
        check(0.0 <= gamma <= 1.0, f"--gamma must be in [0, 1], got {gamma}")
        check(num_actions >= 1, f"num_actions must be at least 1, got {num_actions}")
        check(
            0 <= future_steps <= n_step,
            f"future steps ({future_steps}) must lie in [0, n_step = {n_step}]",
        )
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
        self.future_steps = future_steps
        self.num_actions = num_actions
        self.device = torch.device(device)

        # Slot of (env e, position p) is e * slots_per_env + p % slots_per_env. torch.zeros
        # writes every page, so the memory is resident (and refused) now, not mid-training.
        slots = self.capacity
        # One extra, always-zero frame after the rings stands in for the padding of stacks.
        self.frames = torch.zeros(
            (slots + 1, *self.frame_shape), dtype=observation_dtype, device=self.device
        )
        self.actions = torch.zeros(slots, dtype=_action_dtype(num_actions), device=self.device)
        self.rewards = torch.zeros(slots, dtype=torch.float32, device=self.device)
        self.flags = torch.zeros(slots, dtype=torch.uint8, device=self.device)
        self.offsets = torch.zeros(slots, dtype=torch.uint8, device=self.device)
        # Whether the n-step transition from a slot can be sampled; kept exact lazily (see
        # `_refresh_validity`) together with `valid_count`, the number of such slots.
        self.valid = torch.zeros(slots, dtype=torch.bool, device=self.device)
        self.valid_count = torch.zeros((), dtype=torch.int64, device=self.device)
        # All envs step together, so one position (frames written per env) serves them all.
        self.position = 0
        self.ended = np.zeros(num_envs, dtype=bool)  # which envs' last step ended their episode
        self.started = False
        self._episode_frames = np.zeros(num_envs, dtype=np.int64)  # offset of the newest frame
        self._checked_position = 0  # `valid` is exact for the buffer as it was at this position
        # `_checked_position` on the device, read by `sample_sync_free` (and by a captured CUDA
        # graph, which cannot read a Python int that changes).
        self._position_tensor = torch.zeros((), dtype=torch.int64, device=self.device)

        self._action_numpy_dtype = self.actions.cpu().numpy().dtype
        self._env_base = torch.arange(num_envs, device=self.device) * slots_per_env  # (E,)
        self._step_numbers = torch.arange(n_step, device=self.device)  # (n,)
        self._discount_powers = torch.tensor(
            [gamma**k for k in range(n_step + 1)], dtype=torch.float32, device=self.device
        )
        # The steps a sampled return sums: the first `horizon` of the n (see `set_horizon`).
        self.horizon = n_step
        self._summed_steps = torch.ones(n_step, dtype=torch.bool, device=self.device)
        # Prioritized replay: a sum tree of priority ** alpha per slot (0 for a slot that
        # cannot be sampled); a transition enters with the largest priority seen so far.
        self.priority_alpha = priority_alpha
        self.priorities = SumTree(slots, self.device) if priority_alpha is not None else None
        self.max_priority = torch.ones((), dtype=torch.float64, device=self.device)

    # ---------------------------------------------------------------- sizes

    @staticmethod
    def bytes_per_transition(
        observation_shape: tuple[int, ...],
        frame_stack: int,
        observation_dtype: torch.dtype = torch.uint8,
        num_actions: int = 256,
    ) -> int:
        """Storage bytes per transition: one frame, action, reward, flags, offset, valid."""
        frame_shape = observation_shape if frame_stack == 1 else observation_shape[1:]
        frame_bytes = int(np.prod(frame_shape)) * torch.empty((), dtype=observation_dtype).itemsize
        action_bytes = torch.empty((), dtype=_action_dtype(num_actions)).itemsize
        return frame_bytes + action_bytes + 4 + 1 + 1 + 1

    @property
    def nbytes(self) -> int:
        """Bytes held by the storage tensors (the per-slot ones and one zero frame)."""
        tensors = (self.frames, self.actions, self.rewards, self.flags, self.offsets, self.valid)
        return sum(tensor.nbytes for tensor in tensors)

    def __len__(self) -> int:
        """Number of transitions that `sample` can return now."""
        self._refresh_validity()
        return int(self.valid_count.item())

    # ---------------------------------------------------------------- writing

    def start(self, observations: Any) -> None:
        """Record the first observations after `envs.reset()`: every env begins an episode."""
        new_episode = np.ones(self.num_envs, dtype=bool)
        self.start_frames(self._newest_frames(observations, new_episode))

    def start_frames(self, frames: Any) -> None:
        """`start` from each env's first frame (E, *frame_shape) alone, as actors send them."""
        frames = torch.as_tensor(frames)
        check(
            tuple(frames.shape) == (self.num_envs, *self.frame_shape),
            f"first frames must have shape {(self.num_envs, *self.frame_shape)}",
        )
        self._write_frames(frames, np.ones(self.num_envs, dtype=bool))
        self.ended[:] = False
        self.started = True

    def end_episodes(self, envs: Any) -> None:
        """Cut the episodes of `envs` at their newest frame (an actor was restarted and its envs
        begin anew): their next frame starts an episode. The cut step is not recorded, so no
        transition crosses the cut and none is made up."""
        self.ended[np.asarray(envs, dtype=np.int64)] = True

    def add(
        self,
        actions: Any,
        rewards: Any,
        terminated: Any,
        truncated: Any,
        next_observations: Any,
        learning_done: Any | None = None,
        stack_restart: Any | None = None,
    ) -> None:
        """Record one vector-env step (arrays of length num_envs, numpy or torch).

        Envs whose previous step ended are being reset by this step: their observation becomes
        the first frame of a new episode and their action, reward and flags are ignored.
        `learning_done` ends the n-step return there (dones = 1) without ending the episode,
        e.g. on an Atari life loss; the frame stack carries on across it, unless
        `stack_restart` marks the env: then its observation's stack holds its newest frame
        alone, and the stacks rebuilt from it on are zero-padded there as at an episode's start
        (`--life-loss-clears-stack`).
        """
        if not self.started:
            raise RuntimeError("call start(observations) after envs.reset() before add()")
        restart = np.zeros(self.num_envs, dtype=bool)
        if stack_restart is not None:
            restart = _to_numpy(stack_restart, "stack_restart", self.num_envs).astype(bool)
        self.add_frames(
            actions,
            rewards,
            terminated,
            truncated,
            self._newest_frames(next_observations, self.ended | restart),
            learning_done,
            restart,
        )

    def add_frames(
        self,
        actions: Any,
        rewards: Any,
        terminated: Any,
        truncated: Any,
        frames: Any,
        learning_done: Any | None = None,
        stack_restart: Any | None = None,
    ) -> None:
        """`add` from each env's newest frame (E, *frame_shape) alone: what a remote actor sends
        (a stack's other frames are in the buffer already, or zero at an episode's start or
        at a `stack_restart`)."""
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
        frames = torch.as_tensor(frames)
        if tuple(frames.shape) != (num_envs, *self.frame_shape):
            raise ValueError(
                f"frames must have shape {(num_envs, *self.frame_shape)}, got {tuple(frames.shape)}"
            )
        flags = HAS_ACTION | (TERMINAL * ends_return) | (EPISODE_END * (terminated | truncated))
        flags[resetting] = 0
        actions[resetting] = 0
        rewards[resetting] = 0.0

        # The step from the newest frame, then the frame it led to.
        current = self._env_base + (self.position - 1) % self.slots_per_env  # (E,)
        self.actions.index_copy_(0, current, self._tensor(actions.astype(self._action_numpy_dtype)))
        self.rewards.index_copy_(0, current, self._tensor(rewards))
        self.flags.index_copy_(0, current, self._tensor(flags.astype(np.uint8)))
        restart = resetting.copy()
        if stack_restart is not None:
            restart |= _to_numpy(stack_restart, "stack_restart", num_envs).astype(bool)
        self._write_frames(frames, restart)
        self.ended = (terminated | truncated) & ~resetting

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        """A host array on the buffer's device."""
        return torch.from_numpy(array).to(self.device)

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
                        "first observations of an episode (or of a life, with its stack"
                        " cleared) must be zero-padded frame stacks"
                        " (FrameStackObservation(padding_type='zero'))"
                    )
            observations = observations[:, -1]
        return observations

    def _write_frames(self, frames: torch.Tensor, new_episode: np.ndarray) -> None:
        """Store each env's frame at the next position; `new_episode` marks first frames."""
        slots = self._env_base + self.position % self.slots_per_env  # (E,)
        self._episode_frames = np.where(new_episode, 0, self._episode_frames + 1)
        offsets = np.minimum(self._episode_frames, OFFSET_CAP).astype(np.uint8)
        self.frames.index_copy_(0, slots, frames.to(self.device))
        self.offsets.index_copy_(0, slots, self._tensor(offsets))
        # No step from the new frame yet. Its `valid` entry may still describe the position it
        # evicted; `_refresh_validity` rewrites it before anything reads it.
        self.flags.index_fill_(0, slots, 0)
        self.position += 1

    # ---------------------------------------------------------------- validity

    def set_horizon(self, n_step: int, gamma: float) -> None:
        """Sample `n_step`-step returns (at most the buffer's n) discounted by `gamma` from now
        on: the n-step and discount schedules. Changed in place, so a captured CUDA graph
        follows; a transition still needs all n of the buffer's steps recorded to be drawn."""
        n_step = max(1, min(n_step, self.n_step))
        if n_step == self.horizon and gamma == self.gamma:
            return
        self.horizon, self.gamma = n_step, gamma
        self._summed_steps.copy_(self._step_numbers < n_step)
        powers = [gamma**k for k in range(self.n_step + 1)]
        self._discount_powers.copy_(torch.tensor(powers, dtype=torch.float32))

    def refresh_validity(self) -> None:
        """Bring the sampling state up to date with the frames written so far (both samplers
        do this first; a caller replaying a captured sampler must call it before each replay)."""
        self._refresh_validity()

    def _refresh_validity(self) -> None:
        """Bring `valid` and `valid_count` up to date with the frames written since last time.

        Between positions V (last refresh) and P (now), the steps from positions V-1 on were
        recorded, which completes the n-step windows of positions from V-n on, and new frames
        reused the slots of positions before P-C (C slots per env), whose frames the stacks of
        positions up to P-C+S-2 may use. No other position's validity changed, so only those
        two ranges are recomputed; sampling and len() call this first.
        """
        end, size, stack = self.position, self.slots_per_env, self.frame_stack
        if end == self._checked_position:
            return
        first_present = max(end - size, 0)
        evicted_users_end = max(min(end - size + stack - 1, end), first_present)
        completed_start = max(self._checked_position - self.n_step, evicted_users_end)
        ranges = [(first_present, evicted_users_end), (completed_start, end)]
        per_chunk = max(VALIDITY_CHUNK // self.num_envs, 1)
        for range_start, range_end in ranges:
            for chunk_start in range(range_start, range_end, per_chunk):
                positions = torch.arange(
                    chunk_start, min(chunk_start + per_chunk, range_end), device=self.device
                )
                envs = torch.arange(self.num_envs, device=self.device)
                envs = envs.repeat_interleave(len(positions))  # (E * W,)
                positions = positions.repeat(self.num_envs)  # (E * W,)
                slots = envs * size + positions % size
                valid = self._validity(envs, positions)
                old = self.valid.index_select(0, slots)
                self.valid_count += valid.sum() - old.sum()
                self.valid.index_copy_(0, slots, valid)
                if self.priorities is not None:
                    newest = self.max_priority**self.priority_alpha
                    kept = torch.where(old, self.priorities.values(slots), newest)
                    self.priorities.set(slots, torch.where(valid, kept, 0.0))
        self._checked_position = end
        self._position_tensor.fill_(end)

    def _validity(self, envs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Whether the transitions at these stored positions (all >= position - C) can be sampled.

        It needs all its steps recorded, up to n or up to a stop (terminal, life loss or episode
        end), so its next observation is written, and every frame of its stack still stored.
        """
        size, newest = self.slots_per_env, self.position - 1
        oldest = max(self.position - size, 0)
        base = envs * size
        offsets = self.offsets.index_select(0, base + positions % size).to(torch.int64)
        stack_stored = positions - offsets.clamp_(max=self.frame_stack - 1) >= oldest
        steps = positions[:, None] + self._step_numbers  # (K, n)
        flags = self._step_flags(base, steps)
        recorded = (steps < newest) & ((flags & HAS_ACTION) != 0)
        return stack_stored & (recorded | ~self._summed(flags)).all(dim=1)

    def _step_flags(self, base: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """Flags (K, n) of the steps at positions `steps` (K, n) of the envs at `base` (K,)."""
        slots = base[:, None] + steps % self.slots_per_env
        return self.flags.index_select(0, slots.reshape(-1)).view(steps.shape)

    @staticmethod
    def _summed(flags: torch.Tensor) -> torch.Tensor:
        """Which of n steps (K, n) enter the return: those before and at the first stop."""
        stops = ((flags & (TERMINAL | EPISODE_END)) != 0).to(torch.int32)
        return stops.cumsum(dim=1) - stops == 0

    # ---------------------------------------------------------------- reading

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> ReplaySample:
        """Draw `batch_size` transitions uniformly (with replacement) from the valid ones.

        Tensors come back on the buffer's device; `generator`, if given, must live there too.
        """
        count = len(self)
        if count == 0:
            raise RuntimeError("the replay buffer holds no complete transition yet")
        size = self.slots_per_env
        written = min(self.position, size)
        device = self.device

        def draw() -> torch.Tensor:
            envs = torch.randint(self.num_envs, (batch_size,), generator=generator, device=device)
            ages = torch.randint(written, (batch_size,), generator=generator, device=device)
            return envs * size + (self.position - 1 - ages) % size

        # Uniform candidates among written slots, redrawing the invalid ones: uniform over the
        # valid ones. When few are valid (early on), pick among them exactly instead.
        if count * 8 >= written * self.num_envs:
            slots = draw()
            for _ in range(REJECTION_ROUNDS):
                invalid = ~self.valid.index_select(0, slots)
                if not invalid.any():
                    break
                slots = torch.where(invalid, draw(), slots)
            else:
                invalid = ~self.valid.index_select(0, slots)
                slots[invalid] = self._exact_draw(int(invalid.sum()), generator)
        else:
            slots = self._exact_draw(batch_size, generator)

        return self._transitions(slots, self.position)

    def sample_sync_free(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> ReplaySample:
        """Like `sample`, drawn by inverse transform over the running count of valid slots,
        with fixed shapes and no value read back to the host.

        It never waits for the device, so on a GPU the batch is drawn while earlier work still
        runs, and after `refresh_validity()` the whole call can be captured in a CUDA graph.
        The cost is a cumulative sum over the whole buffer per call: nothing on a GPU, but on
        the CPU `sample` is faster. The caller makes sure a transition is sampleable
        (`len(self) > 0`); on an empty buffer the batch is meaningless.
        """
        self._refresh_validity()
        cumulative = self.valid.cumsum(0)  # (C,) valid slots up to and including each one
        # Uniform integers in [0, count): float64 keeps every count below 2**53 exact.
        picks = (
            torch.rand(batch_size, dtype=torch.float64, generator=generator, device=self.device)
            * cumulative[-1]
        )
        # The slot holding the (pick + 1)-th valid transition.
        slots = torch.searchsorted(cumulative, picks.to(torch.int64), right=True)
        return self._transitions(slots.clamp_(max=self.capacity - 1), self._position_tensor)

    def _transitions(self, slots: torch.Tensor, position: int | torch.Tensor) -> ReplaySample:
        """The n-step transitions starting at `slots` (B,) of a buffer written up to `position`
        (an int, or the same value as a device tensor)."""
        size = self.slots_per_env
        envs = slots // size
        positions = position - 1 - (position - 1 - slots % size) % size  # (B,)
        base = envs * size
        steps = positions[:, None] + self._step_numbers  # (B, n)
        flags = self._step_flags(base, steps)
        summed = self._summed(flags) & self._summed_steps
        rewards = self.rewards.index_select(0, (base[:, None] + steps % size).reshape(-1))
        discounted = rewards.view(steps.shape) * self._discount_powers[: self.n_step]
        returns = torch.where(summed, discounted, 0.0).sum(dim=1)
        dones = (summed & ((flags & TERMINAL) != 0)).any(dim=1)
        step_count = summed.sum(dim=1)
        future = (
            self._future(envs, positions, steps, flags) if self.future_steps else (None, None, None)
        )
        return ReplaySample(
            observations=self._stacks(envs, positions),
            actions=self.actions.index_select(0, slots).to(torch.int64),
            returns=returns,
            next_observations=self._stacks(envs, positions + step_count),
            dones=dones.to(torch.float32),
            discounts=self._discount_powers[step_count],
            weights=torch.ones(len(slots), dtype=torch.float32, device=self.device),
            future_observations=future[0],
            future_actions=future[1],
            future_mask=future[2],
        )

    def _future(
        self, envs: torch.Tensor, positions: torch.Tensor, steps: torch.Tensor, flags: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The K observations after each transition's (B, K, ...), the actions of its first K
        steps (B, K) and which of those observations still belong to its episode (B, K): after
        the observation that a terminal, a life loss or an episode's end leads to, the rest are
        masked (their frames are the next episode's, or not written yet)."""
        k, size = self.future_steps, self.slots_per_env
        ahead = positions[:, None] + torch.arange(1, k + 1, device=self.device)  # (B, K)
        observations = self._stacks(envs.repeat_interleave(k), ahead.reshape(-1))
        observations = observations.view(len(positions), k, *observations.shape[1:])
        slots = (envs * size)[:, None] + steps[:, :k] % size
        actions = self.actions.index_select(0, slots.reshape(-1)).view(slots.shape).to(torch.int64)
        # The observation after the step that ends a life or the episode is still its own
        # (the last one seen); the ones after it are not.
        mask = self._summed(flags[:, :k]).to(torch.float32)
        return observations, actions, mask

    def sample_prioritized(
        self, batch_size: int, beta: float, generator: torch.Generator | None = None
    ) -> tuple[ReplaySample, torch.Tensor]:
        """Draw transitions with probability proportional to priority ** alpha (stratified, from
        the sum tree, nothing read back to the host) and their importance weights
        (N * P) ** -beta over their maximum; also return the slots, for `update_priorities`."""
        check(self.priorities is not None, "this replay buffer was not made prioritized")
        self._refresh_validity()
        slots = self.priorities.sample(batch_size, generator)
        weights = importance_weights(self.priorities, slots, beta, self.valid_count)
        batch = self._transitions(slots, self._position_tensor)
        return batch._replace(weights=weights), slots

    def update_priorities(self, slots: torch.Tensor, errors: torch.Tensor, epsilon: float) -> None:
        """New priorities |error| + epsilon for sampled slots (still sampleable ones only)."""
        priority = errors.detach().abs().to(torch.float64) + epsilon
        self.max_priority = torch.maximum(self.max_priority, priority.max())
        values = torch.where(self.valid.index_select(0, slots), priority**self.priority_alpha, 0.0)
        self.priorities.set(slots, values)

    def _exact_draw(self, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
        """Slots drawn uniformly among all valid ones (a pass over the whole buffer)."""
        valid_slots = torch.nonzero(self.valid).squeeze(1)
        picks = torch.randint(
            len(valid_slots), (batch_size,), generator=generator, device=self.device
        )
        return valid_slots[picks]

    def _stacks(self, envs: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Observations at these positions, zero frames before the episode's first."""
        size = self.slots_per_env
        base = envs * size
        if self.frame_stack == 1:
            return self._gather_frames(base + positions % size)
        stack = self.frame_stack
        offsets = self.offsets.index_select(0, base + positions % size).to(torch.int64)  # (B,)
        back = torch.arange(stack - 1, -1, -1, device=self.device)  # (S,) S-1 .. 0
        slots = base[:, None] + (positions[:, None] - back) % size  # (B, S)
        # Frames from before the episode's first one are the zero frame.
        slots = torch.where(back <= offsets[:, None], slots, self.capacity)
        return self._gather_frames(slots)

    def _gather_frames(self, slots: torch.Tensor) -> torch.Tensor:
        """Frames at `slots` (any shape), as (*slots.shape, *frame_shape)."""
        # Copying whole rows, as 8-byte words where they fit, is several times faster on the
        # CPU than indexing the (slots, H, W) tensor.
        rows = self.frames.view(len(self.frames), -1)
        if rows.dtype == torch.uint8 and rows.shape[1] % 8 == 0:
            rows = rows.view(torch.int64)
        gathered = rows.index_select(0, slots.reshape(-1)).view(self.frames.dtype)
        return gathered.view(*slots.shape, *self.frame_shape)

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
            "episode_frames": torch.from_numpy(self._episode_frames.copy()),
            "position": self.position,
            "started": int(self.started),
            **(
                {"priorities": self.priorities.nodes, "max_priority": self.max_priority}
                if self.priorities is not None
                else {}
            ),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` output from a buffer with the same capacity, envs and frames.

        Validity is recomputed, so `n_step` may differ from the saved buffer's.
        """
        names = ("frames", "actions", "rewards", "flags", "offsets")
        for name in names:
            own, saved = getattr(self, name), state[name]
            check(
                saved.shape == own.shape and saved.dtype == own.dtype,
                f"saved replay {name} are {saved.dtype} {tuple(saved.shape)} but this buffer"
                f" holds {own.dtype} {tuple(own.shape)}: use the same buffer size, envs and game",
            )
        for name in names:
            # Replace rather than copy, so a large buffer is not held twice.
            setattr(self, name, state[name].to(self.device))
        self.ended = state["ended"].cpu().numpy().astype(bool)
        self._episode_frames = state["episode_frames"].cpu().numpy().astype(np.int64)
        self.position = int(state["position"])
        self.started = bool(state["started"])
        self.valid.zero_()
        self.valid_count.zero_()
        self._checked_position = 0  # recompute the validity of every stored position
        self._refresh_validity()
        if self.priorities is not None and "priorities" in state:
            # The saved priorities, over the validity just recomputed.
            self.priorities.nodes.copy_(state["priorities"].to(self.device))
            self.max_priority = state["max_priority"].to(self.device)
