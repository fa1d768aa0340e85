"""DQN (Mnih et al. 2015) with the usual improvements, in one training loop that reads top to
bottom like CleanRL's `dqn_atari.py`. The pure pieces (epsilon schedule, TD target, target
update) are separate functions so tests can check them exactly.

Defaults reproduce the Nature / CleanRL Atari setup: Adam 1e-4, replay 1M, batch 32, one update
per 4 env steps, target copy every 1,000 steps, epsilon 1 -> 0.01 over 10% of training,
learning starts at 80,000 steps, rewards clipped to their sign, life loss ends an episode for
learning only.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from agents.learner import DQNLearner
from agents.networks import ENCODERS, QNetwork, build_q_network, random_shift
from agents.replay import ReplayBuffer, ReplaySample
from envs import check_env_id, is_pixel_space, make_vector_env
from playground.checkpoint import load_checkpoint, require_keys, save_checkpoint
from playground.config import resolve_resume_dir, resumed_settings, settings_from_saved
from playground.device import resolve_device
from playground.errors import UserError, check, require_positive
from playground.logger import Logger, TensorBoardLogger
from playground.optim import CAPTURABLE_OPTIMIZERS, OPTIMIZERS, make_optimizer
from playground.progress import Progress
from playground.resources import check_fits_in_memory
from playground.rundir import RunLock, default_run_name, prepare_run_dir
from playground.seeding import rng_state, seed_everything, set_rng_state

CHECKPOINT_KIND = "dqn"
# Settings a resumed run may change: none of them changes what is learned.
RESUME_OVERRIDABLE = ("total_steps", "device", "progress", "watch", "compile", "cuda_graph")
# Entries --resume needs; a checkpoint lacking one is refused with its name.
RESUME_KEYS = (
    "config", "q_network", "target_network", "optimizer", "step", "updates", "best_eval", "rng"
)  # fmt: skip
WATCH_EXPORT_SECONDS = 3.0  # with --watch, seconds between exports of the latest weights
EVAL_VIDEO_FRAMES = 1_000  # longest evaluation game logged to TensorBoard as a video


@dataclass(frozen=True)
class DQNConfig:
    """Train a DQN agent on an Atari, built-in or vector-observation game."""

    env_id: str = "ALE/Breakout-v5"
    """Game to learn: an ALE id (ALE/Pong-v5, ...), a built-in game (Playground/Catch-v0, ...)
    or a vector-observation gymnasium id (CartPole-v1)."""
    total_steps: int = 10_000_000
    """Environment steps to train for (summed over all parallel envs)."""
    num_envs: int = 1
    """Environments stepped together in one vector env."""
    seed: int = 1
    """Seed for the environments, the network initialisation and exploration."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N | mps (auto picks the best available)."""

    # Network
    encoder: Literal["auto", "nature", "impala", "mlp"] = "auto"
    """Observation encoder: nature CNN, impala residual CNN, or mlp; auto picks by observation."""
    dueling: bool = False
    """Use a dueling head (V + A - mean A)."""
    frame_stack: int = 4
    """Frames stacked into one observation for pixel games."""

    # Learning
    learning_rate: float = 1e-4
    """Optimizer learning rate."""
    optimizer: Literal["adam", "rmsprop", "sgd", "adagrad", "adadelta"] = "adam"
    """Optimizer."""
    adam_eps: float = 1e-8
    """Epsilon of adam / rmsprop / adagrad / adadelta (Nature RMSProp used 0.01)."""
    momentum: float = 0.0
    """Momentum for sgd and rmsprop."""
    nesterov: bool = False
    """Nesterov momentum for sgd."""
    gamma: float = 0.99
    """Discount factor."""
    n_step: int = 1
    """Steps of reward summed into the TD target (n-step returns)."""
    double_dqn: bool = True
    """Pick the next action with the online network, evaluate it with the target (van Hasselt 2016)."""
    loss: Literal["huber", "mse"] = "huber"
    """TD loss: huber (smooth L1, the Nature error clipping) or mse (CleanRL)."""
    max_grad_norm: float = 10.0
    """Clip the gradient norm to this value (0 disables)."""
    batch_size: int = 32
    """Transitions per update."""
    buffer_size: int = 1_000_000
    """Replay capacity in transitions (each frame is stored once, uint8)."""
    replay_device: Literal["auto", "cpu", "same"] = "auto"
    """Where the replay buffer lives: same = the training device; auto = the training device
    when it has room for it, else cpu."""
    learning_starts: int = 80_000
    """Environment steps of random-ish play before learning starts."""
    train_frequency: int = 4
    """Environment steps per gradient update (the replay ratio is 1 / this)."""
    target_update_frequency: int = 1_000
    """Environment steps between target network updates."""
    tau: float = 1.0
    """Target update rate: 1.0 copies the weights, < 1 is Polyak averaging."""
    start_epsilon: float = 1.0
    """Exploration epsilon at the start."""
    end_epsilon: float = 0.01
    """Exploration epsilon after the decay."""
    exploration_fraction: float = 0.10
    """Fraction of total_steps over which epsilon decays linearly."""
    clip_rewards: bool = True
    """Clip rewards to their sign for learning (logged returns are always the true score)."""
    life_loss_terminal: bool = True
    """Treat a lost life as the end of an episode for learning (Atari); the game goes on."""
    augment: bool = False
    """Random-shift image augmentation (DrQ) on sampled observations."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """bf16 autocast for the network on CUDA (ignored on the CPU)."""
    compile: bool = False
    """torch.compile the update (fused kernels; the first update compiles for a minute or so)."""
    cuda_graph: bool = False
    """On CUDA, capture the whole update, replay sampling included, as one CUDA graph replayed
    once per update (ignored on the CPU; adagrad cannot be captured)."""

    # Transfer learning
    init_from: str = ""
    """Start from the encoder of another DQN checkpoint (file or run dir)."""
    freeze_encoder: bool = False
    """With --init-from: keep the loaded encoder fixed and train only the head."""

    # Evaluation, logging, checkpoints
    eval_every: int = 100_000
    """Environment steps between evaluations (0 disables)."""
    eval_episodes: int = 10
    """Full games per evaluation."""
    eval_epsilon: float = 0.001
    """Epsilon of the evaluation policy."""
    checkpoint_every: int = 100_000
    """Environment steps between saves of latest.pt."""
    save_replay: Literal["auto", "always", "never"] = "auto"
    """Save the replay buffer beside latest.pt so --resume continues exactly; auto saves it when
    it takes at most 2 GiB."""
    log_every: int = 1_000
    """Environment steps between logged training scalars (losses, sps, epsilon)."""
    eval_video: bool = True
    """Log one evaluation game as a video (eval/video in TensorBoard) at every evaluation."""
    watch: bool = False
    """Open a window that shows the agent play with its latest weights while it trains
    (a separate process, refreshed every few seconds)."""
    runs_dir: str = "runs"
    """Folder holding one sub-folder per run."""
    run_name: str = ""
    """Name of this run's folder (default: dqn-<game>-s<seed>-<time>)."""
    resume: str = ""
    """Continue the run in this folder (or runs/<name>) from its latest.pt with its saved
    settings; --total-steps, --device, --progress and --watch given here override them."""
    progress: bool = True
    """Show a progress bar."""


# Settings under which a DQN learns a built-in game on a laptop CPU in minutes (the demo's).
LAPTOP_SETTINGS: dict[str, Any] = dict(
    buffer_size=20_000,
    learning_starts=1_000,
    exploration_fraction=0.25,
    target_update_frequency=500,
    learning_rate=2.5e-4,
    eval_every=5_000,
    eval_episodes=20,
    checkpoint_every=5_000,
    log_every=500,
)


def validate(cfg: DQNConfig) -> None:
    """Refuse impossible settings with one clear line each."""
    require_positive(
        total_steps=cfg.total_steps,
        num_envs=cfg.num_envs,
        batch_size=cfg.batch_size,
        buffer_size=cfg.buffer_size,
        learning_rate=cfg.learning_rate,
        train_frequency=cfg.train_frequency,
        target_update_frequency=cfg.target_update_frequency,
        frame_stack=cfg.frame_stack,
        n_step=cfg.n_step,
        eval_episodes=cfg.eval_episodes,
        log_every=cfg.log_every,
        checkpoint_every=cfg.checkpoint_every,
    )
    check(
        cfg.buffer_size >= cfg.batch_size,
        f"--buffer-size ({cfg.buffer_size}) must be at least --batch-size ({cfg.batch_size})",
    )
    check(
        cfg.buffer_size >= cfg.num_envs * (cfg.frame_stack + cfg.n_step + 2),
        "--buffer-size is too small for --num-envs",
    )
    check(0.0 <= cfg.gamma <= 1.0, f"--gamma must lie in [0, 1], got {cfg.gamma}")
    check(0.0 < cfg.tau <= 1.0, f"--tau must lie in (0, 1], got {cfg.tau}")
    for name in ("start_epsilon", "end_epsilon", "eval_epsilon", "exploration_fraction"):
        value = getattr(cfg, name)
        check(0.0 <= value <= 1.0, f"--{name.replace('_', '-')} must lie in [0, 1], got {value}")
    check(cfg.learning_starts >= 0, f"--learning-starts must be >= 0, got {cfg.learning_starts}")
    check(cfg.eval_every >= 0, f"--eval-every must be >= 0, got {cfg.eval_every}")
    check(cfg.max_grad_norm >= 0, f"--max-grad-norm must be >= 0, got {cfg.max_grad_norm}")
    check(cfg.encoder in ENCODERS, f"--encoder {cfg.encoder!r} is not one of {', '.join(ENCODERS)}")
    check(
        cfg.optimizer in OPTIMIZERS,
        f"--optimizer {cfg.optimizer!r} is not one of {', '.join(OPTIMIZERS)}",
    )
    check(not cfg.freeze_encoder or bool(cfg.init_from), "--freeze-encoder needs --init-from CKPT")
    check(
        not cfg.cuda_graph or cfg.optimizer in CAPTURABLE_OPTIMIZERS,
        f"--cuda-graph cannot capture --optimizer {cfg.optimizer}; "
        f"use {', '.join(CAPTURABLE_OPTIMIZERS)}, or leave out --cuda-graph",
    )


# ----------------------------------------------------------------------------- pure pieces


def linear_schedule(start: float, end: float, duration: float, step: int) -> float:
    """Linear interpolation from `start` to `end` over `duration` steps, then constant."""
    if duration <= 0:
        return end
    return start + (end - start) * min(step / duration, 1.0)


def td_target(
    returns: torch.Tensor,
    discounts: torch.Tensor,
    dones: torch.Tensor,
    next_q_target: torch.Tensor,
    next_q_online: torch.Tensor | None,
) -> torch.Tensor:
    """r_t + ... + gamma^k * (1 - done) * Q_target(s_{t+k}, a*), where a* is the target network's
    argmax (DQN) or, when `next_q_online` is given, the online network's argmax (double DQN)."""
    if next_q_online is None:
        next_value = next_q_target.max(dim=1).values
    else:
        next_actions = next_q_online.argmax(dim=1, keepdim=True)
        next_value = next_q_target.gather(1, next_actions).squeeze(1)
    return returns + discounts * (1.0 - dones) * next_value


def dqn_update(
    batch: ReplaySample,
    q_network: QNetwork,
    target_network: QNetwork,
    optimizer: torch.optim.Optimizer,
    cfg: DQNConfig,
    *,
    augment: bool = False,
    autocast: bool = False,
    autocast_cache: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One gradient step on a batch: TD target, loss, backward, clipping, optimizer step.
    Returns the loss and the mean Q-value of the taken actions as device tensors (no sync).
    Nothing in it reads a value back to the host, so it can be compiled and graph-captured."""
    observations, next_observations = batch.observations, batch.next_observations
    if augment:
        observations, next_observations = (
            random_shift(observations),
            random_shift(next_observations),
        )
    device_type = observations.device.type
    with torch.autocast(
        device_type, dtype=torch.bfloat16, enabled=autocast, cache_enabled=autocast_cache
    ):
        with torch.no_grad():
            next_q_target = target_network(next_observations).float()
            next_q_online = q_network(next_observations).float() if cfg.double_dqn else None
            targets = td_target(
                batch.returns, batch.discounts, batch.dones, next_q_target, next_q_online
            )
        q_taken = q_network(observations).float().gather(1, batch.actions.unsqueeze(1)).squeeze(1)
    if cfg.loss == "huber":
        loss = nn.functional.smooth_l1_loss(q_taken, targets)
    else:
        loss = nn.functional.mse_loss(q_taken, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.max_grad_norm > 0:
        nn.utils.clip_grad_norm_(
            [p for p in q_network.parameters() if p.requires_grad], cfg.max_grad_norm
        )
    optimizer.step()
    return loss.detach(), q_taken.detach().mean()


@torch.no_grad()
def update_target(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Hard copy (tau = 1) or Polyak averaging: target <- tau * online + (1 - tau) * target."""
    if tau >= 1.0:
        target.load_state_dict(online.state_dict())
        return
    target_params = list(target.parameters())
    online_params = list(online.parameters())
    torch._foreach_lerp_(target_params, online_params, tau)


def epsilon_greedy(q_values: torch.Tensor, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """Greedy actions from (E, A) Q-values, each replaced by a uniform random one with
    probability epsilon."""
    greedy = q_values.argmax(dim=1).cpu().numpy()
    num_envs, num_actions = q_values.shape
    explore = rng.random(num_envs) < epsilon
    if explore.any():
        greedy = np.where(explore, rng.integers(0, num_actions, num_envs), greedy)
    return greedy


# ----------------------------------------------------------------------------- checkpoints


def load_dqn_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a DQN checkpoint (file, or run folder holding latest.pt / best.pt), refusing other kinds."""
    return load_checkpoint(path, kind=CHECKPOINT_KIND, map_location=map_location)


def network_from_checkpoint(checkpoint: dict[str, Any]) -> QNetwork:
    """Rebuild the online Q-network stored in a DQN checkpoint."""
    spec = checkpoint["network"]
    network = build_q_network(
        tuple(spec["observation_shape"]), spec["num_actions"], spec["encoder"], spec["dueling"]
    )
    network.load_state_dict(checkpoint["q_network"])
    return network


def config_from_checkpoint(checkpoint: dict[str, Any], **overrides: Any) -> DQNConfig:
    """The DQNConfig a checkpoint was trained with (fields unknown to this version are ignored)."""
    return settings_from_saved(DQNConfig, checkpoint["config"], **overrides)


# ----------------------------------------------------------------------------- training


def train_dqn(cfg: DQNConfig, logger: Logger | None = None) -> Path:
    """Train a DQN agent; returns the run folder (TensorBoard logs, latest.pt, best.pt)."""
    resumed: dict[str, Any] | None = None
    if cfg.resume:
        run_dir = resolve_resume_dir(cfg.resume, cfg.runs_dir)
        resumed = load_dqn_checkpoint(run_dir / "latest.pt")
        require_keys(resumed, RESUME_KEYS, run_dir / "latest.pt")
        cfg = resumed_settings(DQNConfig, resumed["config"], cfg, RESUME_OVERRIDABLE)
    validate(cfg)
    check_env_id(cfg.env_id)
    device = resolve_device(cfg.device)
    _check_replay_fits(cfg, device)
    if not cfg.resume:
        run_dir = prepare_run_dir(
            cfg.runs_dir,
            cfg.run_name or default_run_name("dqn", cfg.env_id, cfg.seed),
            resume=False,
        )
    with RunLock(run_dir):
        own_logger = logger is None
        if logger is None:
            # Curves a killed session drew after its checkpoint are purged (the points at the
            # checkpoint's own step were logged before it was saved, so they stay); a new run
            # purges those of one killed here before its first checkpoint.
            purge_step = resumed["step"] + 1 if resumed else 0
            logger = TensorBoardLogger(run_dir, purge_step=purge_step)
        try:
            return _train(cfg, run_dir, device, logger, resumed)
        except torch.OutOfMemoryError:
            raise UserError(
                f"out of memory on {device}: lower --batch-size or --num-envs, use "
                "--replay-device cpu, or a smaller --encoder (latest.pt is kept)"
            ) from None
        finally:
            if own_logger:
                logger.close()


def _train(
    cfg: DQNConfig,
    run_dir: Path,
    device: torch.device,
    logger: Logger,
    resumed: dict[str, Any] | None,
) -> Path:
    seed_everything(cfg.seed)
    envs = make_vector_env(cfg.env_id, cfg.num_envs, seed=cfg.seed, frame_stack=cfg.frame_stack)
    observation_space = envs.single_observation_space
    num_actions = int(envs.single_action_space.n)
    observation_shape = tuple(observation_space.shape)
    pixels = is_pixel_space(observation_space)

    # Networks and optimizer.
    q_network = build_q_network(observation_shape, num_actions, cfg.encoder, cfg.dueling).to(device)
    encoder_name = cfg.encoder if cfg.encoder != "auto" else ("nature" if pixels else "mlp")
    if cfg.init_from and resumed is None:
        _load_encoder(q_network, cfg.init_from, encoder_name, observation_shape)
    if cfg.freeze_encoder:
        q_network.encoder.requires_grad_(False)
    target_network = build_q_network(observation_shape, num_actions, cfg.encoder, cfg.dueling).to(
        device
    )
    target_network.load_state_dict(q_network.state_dict())
    target_network.requires_grad_(False)
    trainable = [p for p in q_network.parameters() if p.requires_grad]
    optimizer = make_optimizer(
        cfg.optimizer,
        trainable,
        cfg.learning_rate,
        eps=cfg.adam_eps,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        capturable=cfg.cuda_graph and device.type == "cuda",
    )
    autocast = device.type == "cuda" and cfg.precision == "bf16"
    if cfg.cuda_graph and device.type != "cuda":
        print(f"note: --cuda-graph applies on CUDA only; ignored on {device}", file=sys.stderr)

    replay_device = _replay_device(cfg, device, observation_shape)
    replay = ReplayBuffer(
        cfg.buffer_size,
        cfg.num_envs,
        observation_shape,
        cfg.frame_stack if pixels else 1,
        observation_dtype=torch.uint8 if pixels else torch.float32,
        n_step=cfg.n_step,
        gamma=cfg.gamma,
        device=replay_device,
        num_actions=num_actions,
    )
    rng = np.random.default_rng(cfg.seed)
    step, updates, best_eval = 0, 0, -math.inf
    if resumed is not None:
        q_network.load_state_dict(resumed["q_network"])
        target_network.load_state_dict(resumed["target_network"])
        optimizer.load_state_dict(resumed["optimizer"])
        step, updates, best_eval = resumed["step"], resumed["updates"], resumed["best_eval"]
        set_rng_state(resumed["rng"], rng)
        if resumed.get("replay_step") == step and not _load_replay(replay, run_dir, step):
            print(
                f"note: no replay buffer of step {step} in {run_dir}; it fills again",
                file=sys.stderr,
            )
    network_spec = {
        "observation_shape": list(observation_shape),
        "num_actions": num_actions,
        "encoder": encoder_name,
        "dueling": cfg.dueling,
    }

    def checkpoint_state() -> dict[str, Any]:
        return {
            "kind": CHECKPOINT_KIND,
            "config": dataclasses.asdict(cfg),
            "network": network_spec,
            "q_network": q_network.state_dict(),
            "target_network": target_network.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "updates": updates,
            "best_eval": best_eval,
            "rng": rng_state(rng),
            "replay_step": step if _should_save_replay(cfg, replay) else -1,
        }

    saved_step = step if resumed is not None else None  # step of the newest good latest.pt
    checked_step = step  # the loss and Q-values were last seen finite at this step

    def check_finite() -> None:
        """Stop without saving once the loss, the Q-values or the weights stopped being
        finite, so the last good checkpoint is never overwritten by a diverged network."""
        nonlocal checked_step
        values = torch.stack([loss_sum, q_sum, *(p.detach().sum() for p in q_network.parameters())])
        if not bool(torch.isfinite(values).all()):
            raise UserError(
                _diverged("the TD loss or the Q-values", checked_step, step, saved_step)
            )
        checked_step = step

    def save_latest() -> None:
        nonlocal saved_step
        check_finite()
        logger.flush()  # the curves up to this step are on disk before the checkpoint is
        replay_path, previous_replay = run_dir / "replay.pt", run_dir / "replay.previous.pt"
        if _should_save_replay(cfg, replay):
            # The buffer latest.pt points at is kept until the new latest.pt is in place, so a
            # kill between the two saves still resumes with the matching buffer.
            if replay_path.is_file():
                replay_path.replace(previous_replay)
            save_checkpoint(replay_path, {"kind": "replay", "step": step, **replay.state_dict()})
        save_checkpoint(run_dir / "latest.pt", checkpoint_state())
        previous_replay.unlink(missing_ok=True)
        saved_step = step

    if resumed is None:
        logger.hparams(
            dataclasses.asdict(cfg), {"eval/episodic_return": 0.0, "charts/episodic_return": 0.0}
        )
    # A first evaluation baseline is not needed; the first eval happens after eval_every steps.

    # Sample + update, eager, compiled or captured as a CUDA graph (agents/learner.py).
    learner = DQNLearner(
        replay,
        q_network,
        target_network,
        optimizer,
        cfg,
        device,
        augment=cfg.augment and pixels,
        autocast=autocast,
        compile=cfg.compile,
        cuda_graph=cfg.cuda_graph,
    )

    # Watching while learning: a viewer process plays with weights exported every few seconds.
    policy_path = run_dir / "policy.pt"

    def export_policy() -> None:
        save_checkpoint(
            policy_path,
            {
                "kind": CHECKPOINT_KIND,
                "config": dataclasses.asdict(cfg),
                "network": network_spec,
                "q_network": q_network.state_dict(),
                "step": step,
            },
        )

    watching = False
    next_export = math.inf
    if cfg.watch:
        from agents.watch import display_available, spawn_watcher  # noqa: PLC0415 (imports pygame)

        check(
            display_available(),
            "--watch needs a display; without one, train and then run: "
            "python run.py watch --headless --record out.mp4 --checkpoint RUN",
        )
        export_policy()
        spawn_watcher(policy_path, cfg.env_id, seed=cfg.seed)
        watching = True
        next_export = time.monotonic() + WATCH_EXPORT_SECONDS

    # Signals: Ctrl-C and SIGTERM both end the loop through KeyboardInterrupt, saving first.
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    recent_returns: deque[float] = deque(maxlen=20)
    progress = Progress(cfg.total_steps, initial=step, enabled=cfg.progress)
    observations, infos = envs.reset(seed=cfg.seed + step)
    replay.start(observations)
    previous_lives = infos.get("lives")
    ended = np.zeros(cfg.num_envs, dtype=bool)  # envs whose last step ended an episode
    episode_returns = np.zeros(cfg.num_envs, dtype=np.float64)
    episode_lengths = np.zeros(cfg.num_envs, dtype=np.int64)
    step_async, step_wait = _async_stepping(envs)
    loss_sum = torch.zeros((), device=device)
    q_sum = torch.zeros((), device=device)
    loss_count = 0
    update_credit = 0.0
    last_log_step, last_log_time = step, time.perf_counter()
    next_log, next_eval, next_save = (
        _next(step, cfg.log_every),
        _next(step, cfg.eval_every),
        _next(step, cfg.checkpoint_every),
    )
    target_period = step // cfg.target_update_frequency
    interrupted = False
    replay_ready = False
    try:
        while step < cfg.total_steps:
            # Act.
            epsilon = linear_schedule(
                cfg.start_epsilon, cfg.end_epsilon, cfg.exploration_fraction * cfg.total_steps, step
            )
            if epsilon >= 1.0:
                actions = rng.integers(0, num_actions, cfg.num_envs)
            else:
                with (
                    torch.no_grad(),
                    torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast),
                ):
                    q_values = q_network(torch.as_tensor(observations, device=device))
                actions = epsilon_greedy(q_values, epsilon, rng)
            if step_async is not None:
                step_async(actions)
            else:
                outcome = envs.step(actions)

            # Learn, while the envs step when they can (ale-py's C++ threads): one update per
            # train_frequency env steps, whatever the number of envs. The update samples the
            # buffer as it was before this step's transitions, a one-step lag.
            # (len(replay) syncs with the device, so it is asked only until the buffer is ready.)
            replay_ready = replay_ready or (
                step + cfg.num_envs > cfg.learning_starts and len(replay) >= cfg.batch_size
            )
            if replay_ready:
                update_credit += cfg.num_envs / cfg.train_frequency
                while update_credit >= 1.0:
                    loss, q_mean = learner.step()
                    loss_sum += loss
                    q_sum += q_mean
                    loss_count += 1
                    updates += 1
                    update_credit -= 1.0
                if (step + cfg.num_envs) // cfg.target_update_frequency != target_period:
                    target_period = (step + cfg.num_envs) // cfg.target_update_frequency
                    update_target(target_network, q_network, cfg.tau)
            if step_async is not None:
                outcome = step_wait()
            next_observations, rewards, terminated, truncated, infos = outcome
            step += cfg.num_envs

            # Store. A lost life ends the episode for learning only; the game goes on.
            learning_done = None
            if cfg.life_loss_terminal and previous_lives is not None and "lives" in infos:
                learning_done = (infos["lives"] < previous_lives) & ~ended
                previous_lives = infos["lives"]
            learning_rewards = np.sign(rewards) if cfg.clip_rewards else rewards
            replay.add(
                actions, learning_rewards, terminated, truncated, next_observations, learning_done
            )
            # Episode statistics: true rewards of whole games (a step after a game's end is the
            # autoreset step of the next one, not part of either).
            playing = ~ended
            episode_returns[playing] += rewards[playing]
            episode_lengths[playing] += 1
            ended = np.logical_or(terminated, truncated)
            for index in np.flatnonzero(ended):
                recent_returns.append(float(episode_returns[index]))
                logger.scalar("charts/episodic_return", float(episode_returns[index]), step)
                logger.scalar("charts/episodic_length", float(episode_lengths[index]), step)
            episode_returns[ended] = 0.0
            episode_lengths[ended] = 0
            observations = next_observations

            # Log, evaluate, save.
            if step >= next_log:
                next_log = _next(step, cfg.log_every)
                now = time.perf_counter()
                sps = (step - last_log_step) / max(now - last_log_time, 1e-9)
                last_log_step, last_log_time = step, now
                logger.scalar("charts/epsilon", epsilon, step)
                logger.scalar("charts/sps", sps, step)
                if loss_count:
                    # One host sync per log period, not per update.
                    td_loss = (loss_sum / loss_count).item()
                    q_value = (q_sum / loss_count).item()
                    if not math.isfinite(td_loss):
                        raise UserError(
                            _diverged(f"the TD loss ({td_loss})", checked_step, step, saved_step)
                        )
                    if not math.isfinite(q_value):
                        raise UserError(
                            _diverged(f"the Q-values ({q_value})", checked_step, step, saved_step)
                        )
                    checked_step = step
                    logger.scalar("losses/td_loss", td_loss, step)
                    logger.scalar("losses/q_values", q_value, step)
                    loss_sum.zero_()
                    q_sum.zero_()
                    loss_count = 0
                mean_return = float(np.mean(recent_returns)) if recent_returns else float("nan")
                progress.update(step, sps=sps, ret=mean_return, eps=epsilon)
            if cfg.eval_every and step >= next_eval:
                next_eval = _next(step, cfg.eval_every)
                scores = evaluate_policy(
                    q_network,
                    cfg.env_id,
                    cfg.eval_episodes,
                    cfg.eval_epsilon,
                    cfg.seed + 10_000 + step,
                    device,
                    cfg.frame_stack,
                )
                mean_score = float(np.mean(scores))
                logger.scalar("eval/episodic_return", mean_score, step)
                logger.scalar("eval/episodic_return_std", float(np.std(scores)), step)
                progress.write(
                    f"step {step}: eval return {mean_score:.2f} +- {np.std(scores):.2f} over {len(scores)} games"
                )
                if mean_score > best_eval:
                    best_eval = mean_score
                    check_finite()
                    save_checkpoint(run_dir / "best.pt", checkpoint_state())
                if cfg.eval_video:
                    from agents.watch import game_fps, record_episode  # noqa: PLC0415

                    frames = record_episode(
                        q_network,
                        cfg.env_id,
                        frame_stack=cfg.frame_stack,
                        epsilon=cfg.eval_epsilon,
                        seed=cfg.seed + 20_000 + step,
                        device=device,
                        max_frames=EVAL_VIDEO_FRAMES,
                    )
                    logger.video("eval/video", frames, step, fps=game_fps(cfg.env_id))
            if watching and time.monotonic() >= next_export:
                export_policy()
                next_export = time.monotonic() + WATCH_EXPORT_SECONDS
            if step >= next_save:
                next_save = _next(step, cfg.checkpoint_every)
                save_latest()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        progress.close()
        envs.close()
    save_latest()
    if watching:
        export_policy()  # the final weights; the window stays open until closed
    logger.flush()
    if interrupted:
        print(
            f"Interrupted at step {step}; saved {run_dir / 'latest.pt'}. Continue with: python run.py train-dqn --resume {run_dir}",
            file=sys.stderr,
        )
    return run_dir


def evaluate_policy(
    q_network: QNetwork,
    env_id: str,
    episodes: int,
    epsilon: float,
    seed: int,
    device: torch.device,
    frame_stack: int = 4,
) -> list[float]:
    """Play `episodes` full games with an epsilon-greedy policy; returns the true game scores."""
    envs = make_vector_env(env_id, 1, seed=seed, frame_stack=frame_stack)
    rng = np.random.default_rng(seed)
    scores: list[float] = []
    was_training = q_network.training
    q_network.eval()
    try:
        observations, _ = envs.reset(seed=seed)
        while len(scores) < episodes:
            with torch.no_grad():
                q_values = q_network(torch.as_tensor(observations, device=device))
            actions = epsilon_greedy(q_values, epsilon, rng)
            observations, _, _, _, infos = envs.step(actions)
            if "_episode" in infos and infos["_episode"][0]:
                scores.append(float(infos["episode"]["r"][0]))
    finally:
        envs.close()
        q_network.train(was_training)
    return scores


@dataclass(frozen=True)
class EvaluateConfig:
    """Play full games with a trained DQN agent and report the mean and spread of the score."""

    checkpoint: str
    """A DQN checkpoint file, or a run folder (its best.pt, else latest.pt)."""
    episodes: int = 10
    """Full games to play."""
    epsilon: float = 0.001
    """Epsilon of the evaluation policy."""
    env_id: str = ""
    """Play another game than the one trained on (observation and action spaces must match)."""
    seed: int = 0
    """Seed of the evaluation games."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N | mps."""


def evaluate(cfg: EvaluateConfig) -> dict[str, float]:
    """Play full games with a trained agent and report the mean and spread of the true score."""
    require_positive(episodes=cfg.episodes)
    check(0.0 <= cfg.epsilon <= 1.0, f"--epsilon must lie in [0, 1], got {cfg.epsilon}")
    path = Path(cfg.checkpoint)
    if path.is_dir() and (path / "best.pt").is_file():
        path = path / "best.pt"
    checkpoint = load_dqn_checkpoint(path)
    trained = config_from_checkpoint(checkpoint)
    env_id = cfg.env_id or trained.env_id
    check_env_id(env_id)
    device = resolve_device(cfg.device)
    network = network_from_checkpoint(checkpoint).to(device)
    check_compatible(checkpoint, env_id, trained.frame_stack)
    scores = evaluate_policy(
        network, env_id, cfg.episodes, cfg.epsilon, cfg.seed, device, trained.frame_stack
    )
    result = {
        "episodes": float(len(scores)),
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "min": float(np.min(scores)),
        "max": float(np.max(scores)),
    }
    print(
        f"{env_id}: {result['mean']:.2f} +- {result['std']:.2f} (min {result['min']:.1f}, max "
        f"{result['max']:.1f}) over {len(scores)} games, checkpoint {path} at step {checkpoint['step']}"
    )
    return result


def check_compatible(checkpoint: dict[str, Any], env_id: str, frame_stack: int) -> None:
    """Refuse to run a checkpoint on a game whose observations or actions differ from its own."""
    spec = checkpoint["network"]
    envs = make_vector_env(env_id, 1, seed=0, frame_stack=frame_stack)
    try:
        shape = tuple(envs.single_observation_space.shape)
        actions = int(envs.single_action_space.n)
    finally:
        envs.close()
    trained_on = checkpoint["config"]["env_id"]
    if shape != tuple(spec["observation_shape"]) or actions != spec["num_actions"]:
        raise UserError(
            f"the checkpoint was trained on {trained_on} (observations {tuple(spec['observation_shape'])}, "
            f"{spec['num_actions']} actions); {env_id} has observations {shape} and {actions} actions"
        )


def _load_encoder(
    q_network: QNetwork, source: str, encoder_name: str, observation_shape: tuple[int, ...]
) -> None:
    checkpoint = load_dqn_checkpoint(source)
    spec = checkpoint["network"]
    if spec["encoder"] != encoder_name or tuple(spec["observation_shape"]) != observation_shape:
        raise UserError(
            f"--init-from {source}: its encoder is {spec['encoder']} on observations {tuple(spec['observation_shape'])}, "
            f"this run needs {encoder_name} on {observation_shape}"
        )
    prefix = "encoder."
    weights = {
        key[len(prefix) :]: value
        for key, value in checkpoint["q_network"].items()
        if key.startswith(prefix)
    }
    q_network.encoder.load_state_dict(weights)


def _async_stepping(envs: Any) -> tuple[Any, Any]:
    """The vector env's split step (send actions / receive results) when it has one, so the
    learner can run while the envs step; (None, None) otherwise. It bypasses the vector
    episode-statistics wrapper, which is why the training loop keeps its own statistics."""
    base = envs.unwrapped
    if hasattr(base, "send") and hasattr(base, "recv"):  # ale-py's AtariVectorEnv
        return base.send, base.recv
    if hasattr(base, "step_async") and hasattr(base, "step_wait"):  # gymnasium's AsyncVectorEnv
        return base.step_async, base.step_wait
    return None, None


def _replay_device(
    cfg: DQNConfig, device: torch.device, observation_shape: tuple[int, ...]
) -> torch.device:
    if cfg.replay_device == "cpu" or device.type == "cpu":
        return torch.device("cpu")
    if cfg.replay_device == "same":
        return device
    # auto: keep it on the GPU when it takes at most half of the free memory.
    if len(observation_shape) == 3:  # one uint8 frame per transition
        frame_bytes = int(np.prod(observation_shape[1:]))
    else:  # one float32 observation per transition
        frame_bytes = int(np.prod(observation_shape)) * 4
    needed = cfg.buffer_size * (frame_bytes + 16)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return device if needed < free // 2 else torch.device("cpu")
    return torch.device("cpu")


def _check_replay_fits(cfg: DQNConfig, device: torch.device) -> None:
    """Refuse, before anything is written, a replay buffer bigger than the free RAM (its
    torch.zeros touches every page, so it would otherwise fail, or be killed, while filling)."""
    envs = make_vector_env(cfg.env_id, 1, seed=cfg.seed, frame_stack=cfg.frame_stack)
    try:
        observation_shape = tuple(envs.single_observation_space.shape)
        pixels = is_pixel_space(envs.single_observation_space)
        num_actions = int(envs.single_action_space.n)
    finally:
        envs.close()
    if _replay_device(cfg, device, observation_shape).type != "cpu":
        return
    per_transition = ReplayBuffer.bytes_per_transition(
        observation_shape,
        cfg.frame_stack if pixels else 1,
        torch.uint8 if pixels else torch.float32,
        num_actions,
    )
    check_fits_in_memory(
        cfg.buffer_size * per_transition,
        f"a replay buffer of {cfg.buffer_size:,} transitions ({per_transition} bytes each)",
        "lower --buffer-size",
    )


def _load_replay(replay: ReplayBuffer, run_dir: Path, step: int) -> bool:
    """Restore the replay buffer saved with the checkpoint of `step` (replay.pt, or
    replay.previous.pt when a run was killed between saving the two); False when neither is."""
    for name in ("replay.pt", "replay.previous.pt"):
        path = run_dir / name
        if not path.is_file():
            continue
        try:
            state = load_checkpoint(path, kind="replay", map_location=replay.device)
        except UserError:
            continue
        if state.get("step", step) == step:  # files of older versions carry no step
            replay.load_state_dict(state)
            return True
    return False


def _should_save_replay(cfg: DQNConfig, replay: ReplayBuffer) -> bool:
    if cfg.save_replay == "never":
        return False
    if cfg.save_replay == "always":
        return True
    return replay.nbytes <= 2 * 1024**3


def _diverged(what: str, since_step: int, step: int, saved_step: int | None) -> str:
    """One line for a run whose numbers stopped being finite."""
    kept = (
        f"latest.pt of step {saved_step} is kept (no later state was saved)"
        if saved_step is not None
        else "no checkpoint had been saved yet"
    )
    return (
        f"training diverged: {what} stopped being finite between steps {since_step} and {step}; "
        f"likely cause: a learning rate too high for this game (lower --learning-rate) or no "
        f"gradient clipping (keep --max-grad-norm > 0); {kept}"
    )


def _next(step: int, every: int) -> int:
    """The first multiple of `every` strictly after `step` (or never when every is 0)."""
    if every <= 0:
        return sys.maxsize
    return (step // every + 1) * every


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
