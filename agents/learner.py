"""What a DQN learner holds, whoever acts for it: networks, optimizer, replay buffer, the update
and the counters, built (or restored from a checkpoint) once, saved as one plain dict. The
single-process loop (`agents.dqn`) and the Ape-X learner (`agents.apex`) both use it; each keeps
its own loop.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents import checkpoint as dqn_checkpoint
from agents.config import DQNConfig
from agents.heads import shrink_and_perturb
from agents.networks import QNetwork, count_parameters, multiply_adds
from agents.replay import ReplayBuffer
from agents.update import DQNUpdate, UpdateRule, update_target
from envs import GameSpaces
from envs.builtin import game_symmetries, transform_frame
from playground import tags
from playground.checkpoint import save_checkpoint
from playground.device import use_bf16
from playground.errors import UserError
from playground.lifecycle import Run
from playground.notes import note
from playground.optim import make_optimizer
from playground.schedules import linear_schedule, set_learning_rate
from playground.seeding import rng_state, set_rng_state

POLICY = "policy.pt"  # the weights a viewer follows (--watch)


@dataclass
class Learner:
    """The learner's state. `step` counts environment steps (all envs / actors together;
    only `learn` and `advance` move it), `updates` gradient updates; `update_credit` is the
    fraction of an update owed."""

    cfg: DQNConfig
    q_network: QNetwork
    target_network: QNetwork
    optimizer: torch.optim.Optimizer
    replay: ReplayBuffer
    update: DQNUpdate
    rng: np.random.Generator
    network_spec: dict[str, Any]
    save_replay: bool
    autocast: bool
    stochastic_layers: bool
    # --policy-ema: the average of the online network's recent weights, which evaluations and
    # every saved policy play (None: off; the online network plays).
    policy_network: QNetwork | None = None
    step: int = 0
    updates: int = 0
    best_eval: float = -math.inf
    update_credit: float = 0.0
    loss_sum: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
    q_sum: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
    spr_sum: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
    loss_count: int = 0

    # ------------------------------------------------------------------ learning

    def learn(self, new_steps: int) -> None:
        """Account for `new_steps` more environment steps: the updates they earn
        (--gradient-steps per --train-frequency), the target network's refresh when a
        --target-update-frequency boundary is passed, then the step count. The schedules read
        the count before these steps, so a resumed run continues them exactly."""
        self.update_credit += new_steps / self.cfg.train_frequency
        if self.cfg.learning_rate_decay == "linear":  # to a tenth at --total-steps
            scale = linear_schedule(1.0, 0.1, self.cfg.total_steps, self.step)
            set_learning_rate(self.optimizer, self.cfg.learning_rate * scale)
        while self.update_credit >= 1.0:
            for _ in range(self.cfg.gradient_steps):
                self.update_once()
            self.update_credit -= 1.0
        self.refresh_target(new_steps)
        self.step += new_steps

    def advance(self, new_steps: int) -> None:
        """Count `new_steps` environment steps that earn no update here: before the buffer is
        ready, or with Ape-X's free replay ratio, whose updates are made as fast as they go
        (then the target is refreshed at any boundary passed; before the first update there
        is nothing to copy)."""
        if self.updates:
            self.refresh_target(new_steps)
        self.step += new_steps

    def update_once(self) -> None:
        """One gradient update (prioritized replay's beta annealed from the env step)."""
        cfg = self.cfg
        self.update.beta = linear_schedule(cfg.priority_beta, 1.0, cfg.total_steps, self.step)
        if cfg.n_step_end or cfg.gamma_end:
            self.replay.set_horizon(*horizon(cfg, self.updates))
        result = self.update.step()
        self.loss_sum += result.loss
        self.q_sum += result.q_mean
        if cfg.spr_weight > 0:
            self.spr_sum += result.spr_loss
        self.loss_count += 1
        self.updates += 1
        if self.policy_network is not None:
            update_target(self.policy_network, self.q_network, cfg.policy_ema)
        if cfg.reset_every and self.updates % cfg.reset_every == 0:
            self.reset()

    def reset(self) -> None:
        """Shrink and perturb (`agents.heads.shrink_and_perturb`) towards a fresh network of
        the same shape, with the optimizer's state cleared (its moments belong to the old
        weights); the target network follows by its own rule."""
        fresh = dqn_checkpoint.build_from_spec(self.network_spec).to(self.update.device)
        shrink_and_perturb(self.q_network, fresh, self.cfg.reset_shrink)
        self.optimizer.state.clear()
        note(
            f"reset at update {self.updates:,} (step {self.step:,}): head re-initialised, "
            f"encoder kept at {self.cfg.reset_shrink:g}"
        )

    def refresh_target(self, new_steps: int) -> None:
        """Update the target network when `new_steps` more env steps pass a boundary."""
        frequency = self.cfg.target_update_frequency
        if (self.step + new_steps) // frequency != self.step // frequency:
            update_target(self.target_network, self.q_network, self.cfg.tau)

    def log_losses(self, run: Run, step: int) -> None:
        """The mean loss and Q-value since the last call (one host read per log period)."""
        if not self.loss_count:
            return
        run.check_finite([self.loss_sum, self.q_sum], "the TD loss or the Q-values", step)
        run.logger.scalar(tags.TD_LOSS, (self.loss_sum / self.loss_count).item(), step)
        run.logger.scalar(tags.Q_VALUES, (self.q_sum / self.loss_count).item(), step)
        if self.cfg.spr_weight > 0:
            run.logger.scalar(tags.SPR_LOSS, (self.spr_sum / self.loss_count).item(), step)
            self.spr_sum.zero_()
        self.loss_sum.zero_()
        self.q_sum.zero_()
        self.loss_count = 0

    @property
    def playing_network(self) -> QNetwork:
        """The network that is scored and shown: --policy-ema's average, else the online one."""
        return self.policy_network if self.policy_network is not None else self.q_network

    # ------------------------------------------------------------------ saving

    def checkpoint_state(self) -> dict[str, Any]:
        state = {
            "kind": dqn_checkpoint.CHECKPOINT_KIND,
            "config": dataclasses.asdict(self.cfg),
            "network": self.network_spec,
            "q_network": self.q_network.state_dict(),
            "target_network": self.target_network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "updates": self.updates,
            "best_eval": self.best_eval,
            "rng": rng_state(self.rng),
            "replay_step": self.step if self.save_replay else -1,
            "update_credit": self.update_credit,  # a fraction of an update owed, at any step
        }
        if self.policy_network is not None:
            state[dqn_checkpoint.POLICY_WEIGHTS] = self.policy_network.state_dict()
        return state

    def finite_values(self) -> list[torch.Tensor]:
        playing = [] if self.policy_network is None else list(self.policy_network.parameters())
        return [self.loss_sum, self.q_sum, *self.q_network.parameters(), *playing]

    def save_latest(self, run: Run) -> None:
        """latest.pt (and replay.pt before it), once the numbers are checked finite."""
        run.check_finite(self.finite_values(), "the TD loss or the Q-values", self.step)
        if self.save_replay:
            dqn_checkpoint.save_replay(run.dir, self.replay, self.step)
        run.save_latest(self.checkpoint_state(), self.step)
        dqn_checkpoint.replay_saved(run.dir)

    def save_best(self, run: Run, score: float) -> None:
        if score > self.best_eval:
            self.best_eval = score
            run.save_best(self.checkpoint_state(), self.step, self.finite_values(), "the Q-values")

    def export_policy(self, run_dir: Path) -> None:
        """The weights that play (--policy-ema's average, else the online network's) as
        policy.pt, for a viewer that follows them."""
        save_checkpoint(
            run_dir / POLICY,
            {
                "kind": dqn_checkpoint.CHECKPOINT_KIND,
                "config": dataclasses.asdict(self.cfg),
                "network": self.network_spec,
                "q_network": self.playing_network.state_dict(),
                "step": self.step,
            },
        )


def symmetry_tables(
    symmetries: list[tuple[bool, int, tuple[int, ...]]], side: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lookup tables for `random_symmetry`: for the identity and each (mirror, quarter_turns,
    action map) of a game (`envs.builtin.game_symmetries`), where each pixel of a `side` x
    `side` frame comes from (K, side * side) and which action each action becomes (K, A)."""
    num_actions = len(symmetries[0][2])
    pixels = [np.arange(side * side)]
    actions = [tuple(range(num_actions))]
    for mirror, turns, action_map in symmetries:
        source = np.arange(side * side).reshape(side, side)
        pixels.append(transform_frame(source, mirror, turns).reshape(-1))
        actions.append(action_map)
    return (
        torch.as_tensor(np.stack(pixels), dtype=torch.long, device=device),
        torch.as_tensor(actions, dtype=torch.long, device=device),
    )


def horizon(cfg: DQNConfig, updates: int) -> tuple[int, float]:
    """The n-step and discount of the next update: --n-step and --gamma moved geometrically
    towards --n-step-end and --gamma-end (1 - gamma moving, so the horizon 1 / (1 - gamma)
    grows steadily) over --schedule-updates updates since the last reset (BBF's schedules)."""
    since = updates % cfg.reset_every if cfg.reset_every else updates
    progress = min(since / cfg.schedule_updates, 1.0)
    n_step = cfg.n_step
    if cfg.n_step_end:
        n_step = round(cfg.n_step * (cfg.n_step_end / cfg.n_step) ** progress)
    gamma = cfg.gamma
    if cfg.gamma_end and cfg.gamma < 1.0:
        gamma = 1.0 - (1.0 - cfg.gamma) * ((1.0 - cfg.gamma_end) / (1.0 - cfg.gamma)) ** progress
    return n_step, gamma


def target_is_online(cfg: DQNConfig) -> bool:
    """Whether the target network equals the online one at every update: a hard copy after
    every update (each learn() call makes at most one update and then refreshes), one process,
    and no batch norm or dropout (whose train-mode passes differ from the target's)."""
    return (
        cfg.tau >= 1.0
        and cfg.gradient_steps == 1
        and cfg.target_update_frequency <= cfg.train_frequency
        and cfg.num_envs <= cfg.train_frequency
        and cfg.actors == 0
        and not cfg.batch_norm
        and cfg.dropout == 0
    )


def build_learner(
    cfg: DQNConfig,
    run: Run,
    device: torch.device,
    previous: dict[str, Any] | None,
    spaces: GameSpaces,
    lanes: int,
    replay_device: torch.device,
) -> Learner:
    """Networks, optimizer and a replay buffer of `lanes` env streams, restored from `previous`
    (a checkpoint) when resuming; prints and logs the network's size."""
    observation_shape, pixels, num_actions = (
        spaces.observation_shape,
        spaces.pixels,
        spaces.num_actions,
    )
    q_network, target_network, encoder_name = _q_networks(
        cfg, run, device, observation_shape, num_actions, pixels, fresh=previous is None
    )
    # Batch norm and dropout act only in the update's own forward pass: acting, the target
    # network and evaluation use the running statistics and all features.
    stochastic_layers = cfg.batch_norm or cfg.dropout > 0
    optimizer = make_optimizer(
        cfg.optimizer,
        [p for p in q_network.parameters() if p.requires_grad],
        cfg.learning_rate,
        eps=cfg.adam_eps,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
        capturable=cfg.cuda_graph and device.type == "cuda",
    )
    autocast = use_bf16(cfg.precision, device)
    if cfg.cuda_graph and device.type != "cuda":
        note(f"--cuda-graph applies on CUDA only; ignored on {device}")
    future_steps = cfg.spr_steps if cfg.spr_weight > 0 else 0
    replay = ReplayBuffer(
        cfg.buffer_size,
        lanes,
        observation_shape,
        cfg.frame_stack if pixels else 1,
        observation_dtype=torch.uint8 if pixels else torch.float32,
        # The most steps any part looks ahead: a schedule's or SPR's, of which n are summed.
        n_step=max(cfg.n_step, cfg.n_step_end, future_steps),
        gamma=cfg.gamma,
        device=replay_device,
        num_actions=num_actions,
        priority_alpha=cfg.priority_alpha if cfg.prioritized else None,
        future_steps=future_steps,
    )
    replay.set_horizon(*horizon(cfg, 0))
    rng = np.random.default_rng(cfg.seed)
    counters = {"step": 0, "updates": 0, "best_eval": -math.inf, "update_credit": 0.0}
    policy_network = None
    if cfg.policy_ema > 0:
        policy_network = copy.deepcopy(q_network).eval().requires_grad_(False)
    if previous is not None:
        counters = _restore(previous, q_network, target_network, optimizer, replay, rng, run.dir)
        if policy_network is not None:
            policy_network.load_state_dict(previous[dqn_checkpoint.POLICY_WEIGHTS])
    symmetries = None
    if cfg.symmetry_augment:  # train_dqn has checked that the game declares some
        symmetries = symmetry_tables(game_symmetries(cfg.env_id), observation_shape[-1], device)
    # The update is made last: what it starts from is the restored state.
    update = DQNUpdate(
        replay,
        q_network,
        target_network,
        optimizer,
        UpdateRule(
            cfg.double_dqn,
            cfg.loss,
            cfg.max_grad_norm,
            stochastic_layers,
            target_is_online=target_is_online(cfg),
            head=dqn_checkpoint.HEAD_KINDS[cfg.distributional],
            spr_weight=cfg.spr_weight,
        ),
        cfg.batch_size,
        device,
        augment=cfg.augment and pixels,
        intensity=cfg.intensity_noise if pixels else 0.0,
        symmetries=symmetries,
        autocast=autocast,
        compile=cfg.compile,
        cuda_graph=cfg.cuda_graph,
    )
    learner = Learner(
        cfg=cfg,
        q_network=q_network,
        target_network=target_network,
        optimizer=optimizer,
        replay=replay,
        update=update,
        rng=rng,
        network_spec=dqn_checkpoint.spec_for(cfg, observation_shape, num_actions),
        save_replay=dqn_checkpoint.should_save_replay(cfg.save_replay, replay),
        autocast=autocast,
        stochastic_layers=stochastic_layers,
        policy_network=policy_network,
        loss_sum=torch.zeros((), device=device),
        q_sum=torch.zeros((), device=device),
        spr_sum=torch.zeros((), device=device),
        **counters,
    )
    if previous is None:
        run.logger.hparams(
            dataclasses.asdict(cfg), {tags.EVAL_RETURN: 0.0, tags.EPISODIC_RETURN: 0.0}
        )
    return learner


def _q_networks(
    cfg: DQNConfig,
    run: Run,
    device: torch.device,
    observation_shape: tuple[int, ...],
    num_actions: int,
    pixels: bool,
    fresh: bool,
) -> tuple[QNetwork, QNetwork, str]:
    """The online and target Q-networks (the online one's encoder from --init-from on a
    fresh run, frozen with --freeze-encoder) and the encoder's name; notes their size, and
    logs it on a fresh run."""

    spec = dqn_checkpoint.spec_for(cfg, observation_shape, num_actions)

    def build() -> QNetwork:
        try:
            return dqn_checkpoint.build_from_spec(spec).to(device)
        except ValueError as error:
            raise UserError(str(error)) from None

    q_network, target_network = build(), build()
    encoder_name = spec["encoder"]
    parameters, macs = count_parameters(q_network), multiply_adds(q_network, observation_shape)
    size = (
        f"Q-network: {encoder_name} encoder on {observation_shape}, {parameters:,} parameters, "
        f"{macs / 1e6:,.2f}M multiply-adds per observation"
    )
    note(size)
    if fresh:
        run.logger.text(tags.MODEL_SUMMARY, size)
        run.logger.scalar(tags.MODEL_PARAMETERS, parameters, 0)
        run.logger.scalar(tags.MODEL_MULTIPLY_ADDS, macs, 0)
        if cfg.init_from:
            dqn_checkpoint.load_encoder(q_network, cfg.init_from, encoder_name, observation_shape)
    if cfg.freeze_encoder:
        q_network.encoder.requires_grad_(False)
    target_network.load_state_dict(q_network.state_dict())
    target_network.eval().requires_grad_(False)
    return q_network, target_network, encoder_name


def _restore(
    previous: dict[str, Any],
    q_network: QNetwork,
    target_network: QNetwork,
    optimizer: torch.optim.Optimizer,
    replay: ReplayBuffer,
    rng: np.random.Generator,
    run_dir: Path,
) -> dict[str, Any]:
    """Load a checkpoint's weights, optimizer, RNG and (when saved with it) replay buffer;
    returns its counters."""
    q_network.load_state_dict(previous["q_network"])
    target_network.load_state_dict(previous["target_network"])
    optimizer.load_state_dict(previous["optimizer"])
    counters = {
        "step": previous["step"],
        "updates": previous["updates"],
        "best_eval": previous["best_eval"],
        "update_credit": float(previous.get("update_credit", 0.0)),
    }
    set_rng_state(previous["rng"], rng)
    step = counters["step"]
    if previous.get("replay_step") == step and not dqn_checkpoint.load_replay(
        replay, run_dir, step
    ):
        note(f"no replay buffer of step {step} in {run_dir}; it fills again")
    return counters
