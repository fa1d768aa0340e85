"""What a viewer shows and what its controls change, without any drawing: the game played by
`agents.rollout.Rollout`, pause and single steps, speed, epsilon, the saliency overlay, the
scores, `--follow` reloads and the short messages. The pygame window (`viewer.window`) draws a
`ViewerSession`; any other front end can draw the same state, so the two never disagree.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.checkpoint import (
    check_same_game,
    config_from_checkpoint,
    load_dqn_checkpoint,
    network_from_checkpoint,
    network_spec,
    playing_weights,
)
from agents.config import env_options
from agents.networks import build_q_network
from agents.rollout import ReturnDistribution, Rollout
from agents.saliency import saliency_map
from envs import action_names, check_env_id, game_fps, make_env
from playground.checkpoint import resolve_checkpoint
from playground.device import resolve_device
from playground.errors import UserError, check
from viewer.config import WatchConfig, validate

EPSILON_CYCLE = (0.0, 0.01, 0.05, 1.0)
"""The values the epsilon control steps through."""
UNCAPPED = 0
"""Speed value meaning "as fast as the machine goes"."""
SPEEDS = (1, 2, 5, 10, 15, 20, 30, 60, 120, UNCAPPED)
"""Agent steps per second that faster / slower step through, slowest first."""
FOLLOW_MAX_FPS = 60
"""Speed cap with --follow, so a viewer beside a training run leaves the CPU to it."""
FOLLOW_INTERVAL = 2.0
"""Seconds between checks of the checkpoint's modification time with --follow."""
GAME_KEYS = ("UP", "DOWN", "LEFT", "RIGHT", "FIRE")
"""The keys a person plays with (--human), by the action-name parts they stand for."""


class ViewerSession:
    """One game, one agent (or a person), and the viewer's controls.

    The loop of a front end: `should_step()` then `step()` (the agent's action, or the one the
    held game keys name with --human), `reload_if_changed()` with --follow, then draw from the
    attributes: `frame`, `q_values`, `action`, `action_labels`, `saliency`, `episode_score`,
    `scores`, `epsilon`, `speed`, `paused`, `training_step`, `message`."""

    def __init__(self, cfg: WatchConfig) -> None:
        validate(cfg)
        self.cfg = cfg
        self.headless = cfg.headless
        self.device = resolve_device(cfg.device)
        self.human = cfg.human
        self.follow = cfg.follow

        # The agent: a checkpoint, or an untrained network for the game.
        self.checkpoint_path: Path | None = None
        self.checkpoint_mtime = 0
        self.training_step: int | None = None
        checkpoint: dict[str, Any] | None = None
        options: dict[str, int] = {}
        if cfg.checkpoint:
            self.checkpoint_path = resolve_checkpoint(cfg.checkpoint)
            checkpoint = load_dqn_checkpoint(self.checkpoint_path)
            self.checkpoint_mtime = self.checkpoint_path.stat().st_mtime_ns
            trained = config_from_checkpoint(checkpoint)
            options = env_options(trained)
            self.env_id = cfg.env_id or trained.env_id
            check_env_id(self.env_id)
            if self.env_id != trained.env_id:
                try:
                    check_same_game(checkpoint, self.env_id)
                except UserError as error:
                    raise UserError(
                        f"{error}; pick a game with the same observations and actions with "
                        f"--env-id, or leave --env-id out to watch {trained.env_id}"
                    ) from None
            self.training_step = int(checkpoint["step"])
        else:
            self.env_id = cfg.env_id
            check_env_id(self.env_id)

        env = make_env(self.env_id, seed=cfg.seed, render_mode="rgb_array", **options)
        check(
            hasattr(env.action_space, "n"),
            f"{self.env_id} has a {type(env.action_space).__name__} action space; watch plays "
            "discrete actions",
        )
        self.action_labels = action_names(env)
        self.action_index = {name: index for index, name in enumerate(self.action_labels)}
        if self.human:
            check(
                bool(set(GAME_KEYS) & set(self.action_labels)),
                f"--human: the actions of {self.env_id} ({', '.join(self.action_labels)}) have no "
                "keys; play a built-in or ALE game",
            )
        self.pixels = len(env.observation_space.shape) == 3
        self.network_spec: dict[str, Any] = (
            network_spec(checkpoint) if checkpoint is not None else {}
        )
        if checkpoint is not None:
            self.network = network_from_checkpoint(checkpoint, self.checkpoint_path)
        else:
            torch.manual_seed(cfg.seed)
            self.network = build_q_network(
                tuple(env.observation_space.shape), int(env.action_space.n)
            )
        self.network.to(self.device).eval()

        # What the controls change.
        self.paused = False
        self.pending_steps = 0
        default_epsilon = 0.01 if checkpoint is not None else 1.0
        epsilon = default_epsilon if cfg.epsilon is None else cfg.epsilon
        self.speed = cfg.fps or self.real_time_fps()
        if self.follow and (self.speed == UNCAPPED or self.speed > FOLLOW_MAX_FPS):
            self.speed = FOLLOW_MAX_FPS
        self.saliency_on = cfg.saliency
        self.quit_requested = False
        self.held_keys: set[str] = set()
        self._tapped_keys: set[str] = set()
        self._human_action = 0

        self.rollout = Rollout(
            env, self.network, epsilon=epsilon, seed=cfg.seed, device=self.device, render=True
        )
        self.frames = 0  # calls to step(): agent steps plus the resets after game over
        self.saliency: np.ndarray | None = None
        self._step_times: deque[float] = deque(maxlen=120)
        self._message = ""
        self._message_until = 0.0
        self._next_follow_check = time.monotonic() + FOLLOW_INTERVAL
        self._update_saliency()

    # -- the game, as the rollout has it -------------------------------------------------------

    @property
    def env(self) -> Any:
        return self.rollout.env

    @property
    def frame(self) -> np.ndarray:
        return self.rollout.frame

    @property
    def observation(self) -> np.ndarray:
        return self.rollout.observation

    @property
    def q_values(self) -> np.ndarray:
        return self.rollout.q_values

    @property
    def distribution(self) -> ReturnDistribution | None:
        """The return distributions of a distributional network (None for a Q-value head)."""
        return self.rollout.distribution

    @property
    def action(self) -> int:
        """The action shown as chosen: the agent's next one, or the person's last one."""
        return self._human_action if self.human else self.rollout.action

    @property
    def epsilon(self) -> float:
        return self.rollout.epsilon

    @epsilon.setter
    def epsilon(self, value: float) -> None:
        self.rollout.epsilon = value

    @property
    def scores(self) -> list[float]:
        return self.rollout.scores

    @property
    def episode_score(self) -> float:
        return self.rollout.episode_return

    @property
    def episode_steps(self) -> int:
        return self.rollout.episode_length

    @property
    def episode_count(self) -> int:
        return len(self.rollout.scores)

    @property
    def episode_over(self) -> bool:
        return self.rollout.game_over

    @property
    def total_steps(self) -> int:
        return self.rollout.steps

    @property
    def finished(self) -> bool:
        """Whether --episodes or --max-steps are done (a headless run plays one game unless
        told otherwise)."""
        episodes = self.cfg.episodes or (1 if self.headless and not self.cfg.max_steps else 0)
        if episodes and self.episode_count >= episodes:
            return True
        return bool(self.cfg.max_steps) and self.total_steps >= self.cfg.max_steps

    # -- controls ------------------------------------------------------------------------------

    def real_time_fps(self) -> int:
        """Agent steps per second at the game's own speed."""
        return game_fps(self.env_id)

    def faster(self) -> None:
        if self.speed == UNCAPPED:
            return
        allowed = [
            speed
            for speed in SPEEDS
            if not (self.follow and (speed == UNCAPPED or speed > FOLLOW_MAX_FPS))
        ]
        higher = [speed for speed in allowed if speed == UNCAPPED or speed > self.speed]
        if higher:
            self.speed = higher[0]

    def slower(self) -> None:
        if self.speed == UNCAPPED:
            self.speed = max(speed for speed in SPEEDS if speed != UNCAPPED)
            return
        lower = [speed for speed in SPEEDS if speed != UNCAPPED and speed < self.speed]
        if lower:
            self.speed = lower[-1]

    def cycle_epsilon(self) -> None:
        higher = [value for value in EPSILON_CYCLE if value > self.epsilon + 1e-9]
        self.epsilon = higher[0] if higher else EPSILON_CYCLE[0]

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        self.pending_steps = 0

    def step_once(self) -> None:
        """One step while paused."""
        if self.paused:
            self.pending_steps += 1

    def toggle_saliency(self) -> None:
        self.saliency_on = not self.saliency_on
        if self.saliency_on and not self.pixels:
            self.say("saliency needs a pixel game")
        self._update_saliency()

    def press_game_key(self, key: str, pressed: bool = True) -> None:
        """A person's game key (one of GAME_KEYS) pressed or released (--human)."""
        if pressed:
            self.held_keys.add(key)
            self._tapped_keys.add(key)
        else:
            self.held_keys.discard(key)

    def human_action(self) -> int:
        """The action named by the game keys held (or tapped) since the last step, most
        specific name first: UP+RIGHT+FIRE -> UPRIGHTFIRE, else UPRIGHT, UPFIRE, ..., NOOP."""
        keys = self.held_keys | self._tapped_keys
        self._tapped_keys.clear()
        vertical = "UP" if "UP" in keys else "DOWN" if "DOWN" in keys else ""
        horizontal = "RIGHT" if "RIGHT" in keys else "LEFT" if "LEFT" in keys else ""
        fire = "FIRE" if "FIRE" in keys else ""
        candidates = (
            vertical + horizontal + fire,
            vertical + horizontal,
            vertical + fire,
            horizontal + fire,
            vertical,
            horizontal,
            fire,
        )
        for name in candidates:
            if name and name in self.action_index:
                return self.action_index[name]
        return self.action_index.get("NOOP", 0)

    # -- stepping ------------------------------------------------------------------------------

    def should_step(self) -> bool:
        if not self.paused:
            return True
        if self.pending_steps:
            self.pending_steps -= 1
            return True
        return False

    def step(self) -> None:
        """Advance one agent step; after game over, one step starts the next game (so the last
        frame of a game is shown)."""
        starting_new_game = self.rollout.game_over
        action = None
        if self.human and not starting_new_game:
            action = self._human_action = self.human_action()
        self.rollout.step(action)
        if not starting_new_game:
            self._step_times.append(time.perf_counter())
        self.frames += 1
        self._update_saliency()

    def measured_fps(self) -> float:
        """Agent steps per second over the last second or so."""
        times = [t for t in self._step_times if t >= time.perf_counter() - 1.5]
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-6)

    def _update_saliency(self) -> None:
        self.saliency = None
        if self.saliency_on and self.pixels:
            self.saliency = saliency_map(self.network, self.observation, self.action)

    # -- --follow ------------------------------------------------------------------------------

    def reload_if_changed(self, force: bool = False) -> bool:
        """With --follow, reload the checkpoint when its file changed (checked every ~2 s)."""
        now = time.monotonic()
        if self.checkpoint_path is None or not (force or now >= self._next_follow_check):
            return False
        self._next_follow_check = now + FOLLOW_INTERVAL
        try:
            mtime = self.checkpoint_path.stat().st_mtime_ns
        except OSError:
            return False
        if mtime == self.checkpoint_mtime:
            return False
        try:
            checkpoint = load_dqn_checkpoint(self.checkpoint_path)
            if network_spec(checkpoint) != self.network_spec:
                self.say("the new checkpoint has another network; not reloaded")
                self.checkpoint_mtime = mtime
                return False
            self.network.load_state_dict(playing_weights(checkpoint))
        except UserError:
            return False  # being replaced right now; the next check will see the new file
        self.checkpoint_mtime = mtime
        self.training_step = int(checkpoint["step"])
        self.say(f"reloaded: step {self.training_step:,}")
        self.rollout.think()
        self._update_saliency()
        return True

    # -- messages ------------------------------------------------------------------------------

    def say(self, message: str, seconds: float = 2.5) -> None:
        """Show a short message for a few seconds."""
        self._message = message
        self._message_until = time.monotonic() + seconds

    @property
    def message(self) -> str:
        return self._message if time.monotonic() < self._message_until else ""

    def close(self) -> None:
        self.rollout.close()
