"""DQN (Mnih et al. 2015) with the usual improvements, in one training loop that reads top to
bottom like CleanRL's `dqn_atari.py`: act, learn, store, log, evaluate, save.

    train_dqn(DQNConfig(env_id="Playground/Catch-v0", total_steps=20_000))  # -> runs/dqn-.../

The settings are `agents.config.DQNConfig`; the update is `agents.update`; acting and
evaluation go through `agents.rollout`; the run folder, logger, stop signals and saves are
`playground.lifecycle.Run`, shared with every trainer.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents import checkpoint as dqn_checkpoint
from agents import presets
from agents.config import IDLE_WITHOUT, RESUME_OVERRIDABLE, DQNConfig, env_options, validate
from agents.heads import explore_with_noise
from agents.learner import Learner, build_learner
from agents.replay import ReplayBuffer
from agents.rollout import epsilon_greedy
from agents.training import (
    EpisodeTracker,
    Every,
    LiveViewer,
    evaluate_during_training,
    final_evaluation,
    protocol_line,
    replay_device,
)
from agents.update import evaluating
from envs import GameSpaces, check_env_id, game_spaces, make_vector_env
from envs.builtin import game_symmetries
from envs.wrappers import stack_clearing
from playground import tags
from playground.checkpoint import run_complete
from playground.device import resolve_device
from playground.errors import UserError, check
from playground.lifecycle import Run, new_run_dir, read_resume
from playground.logger import Logger
from playground.notes import note
from playground.presets import changed_settings, describe
from playground.progress import Progress
from playground.resources import check_fits_in_memory
from playground.resume import resumed_settings
from playground.rundir import default_run_name
from playground.schedules import linear_schedule
from playground.seeding import seed_everything
from playground.settings import idle_settings

DIVERGENCE_ADVICE = (
    "a learning rate too high for this game (lower --learning-rate) or no gradient clipping "
    "(keep --max-grad-norm > 0)"
)


def train_dqn(
    cfg: DQNConfig, logger: Logger | None = None, *, given: Collection[str] | None = None
) -> Path:
    """Train a DQN agent; returns the run folder (TensorBoard logs, latest.pt, best.pt).
    `given`: the fields the command line set (what a resumed run takes from it; None: those
    that differ from their defaults)."""
    previous: dict[str, Any] | None = None
    if cfg.resume:
        run_dir, previous = read_resume(cfg.resume, cfg.runs_dir, "dqn", dqn_checkpoint.RESUME_KEYS)
        cfg = resumed_settings(DQNConfig, previous["config"], cfg, RESUME_OVERRIDABLE, given)
        if cfg.policy_ema > 0 and dqn_checkpoint.POLICY_WEIGHTS not in previous:
            raise UserError(
                f"{run_dir}: the run keeps --policy-ema's average, but its checkpoint has none "
                f"({dqn_checkpoint.POLICY_WEIGHTS}); it cannot be resumed"
            )
        step = int(previous["step"])
        if run_complete(run_dir, step, cfg.total_steps, cfg.final_eval_episodes):
            raise UserError(
                f"{run_dir} is already at step {step}; pass --total-steps above it to continue"
            )
    validate(cfg)
    check_env_id(cfg.env_id)
    if cfg.symmetry_augment and not game_symmetries(cfg.env_id):
        raise UserError(
            f"--symmetry-augment: {cfg.env_id} declares no symmetries (of the built-in games, "
            "Playground/Snake-v0 does); leave the flag out"
        )
    spaces = _spaces(cfg)  # the game is made here first: one it cannot be is refused now
    _check_network(cfg, spaces)
    if (line := describe(presets, cfg)) is not None:
        note(line)
    changed = given if given is not None else changed_settings(presets, cfg)
    for line in idle_settings(cfg, changed, IDLE_WITHOUT):
        note(line)
    if (line := protocol_line(cfg)) is not None:
        note(line)
    if previous is not None:
        note(f"resuming {run_dir} at step {int(previous['step']):,} of {cfg.total_steps:,}")
    device = resolve_device(cfg.device)
    _check_replay_fits(cfg, device, spaces)
    if previous is None:
        run_dir = new_run_dir(
            cfg.runs_dir, cfg.run_name or default_run_name("dqn", cfg.env_id, cfg.seed)
        )
    start_step = int(previous["step"]) if previous is not None else 0
    with Run(
        run_dir,
        command="train-dqn",
        step=start_step,
        resumed=previous is not None,
        logger=logger,
        divergence_advice=DIVERGENCE_ADVICE,
    ) as run:
        try:
            if cfg.actors:
                from agents.apex import train_apex  # Ray, only when asked

                train_apex(cfg, run, device, previous, spaces)
            else:
                _train(cfg, run, device, previous, spaces)
        except (torch.OutOfMemoryError, MemoryError):
            raise UserError(
                f"out of memory on {device}: lower --batch-size, --buffer-size or --num-envs, "
                "use --replay-device cpu, or a smaller --encoder (latest.pt is kept)"
            ) from None
    return run_dir


def _train(
    cfg: DQNConfig,
    run: Run,
    device: torch.device,
    previous: dict[str, Any] | None,
    spaces: GameSpaces,
) -> None:
    logger = run.logger
    seed_everything(cfg.seed)
    envs = make_vector_env(cfg.env_id, cfg.num_envs, seed=cfg.seed, **env_options(cfg))
    num_actions = spaces.num_actions
    # Networks, optimizer, replay buffer, the update and the counters (agents/learner.py).
    learner = build_learner(
        cfg,
        run,
        device,
        previous,
        spaces,
        lanes=cfg.num_envs,
        replay_device=replay_device(
            cfg.replay_device, device, cfg.buffer_size, spaces.observation_shape, cfg.frame_stack
        ),
    )
    replay = learner.replay
    viewer = LiveViewer(cfg, learner, run.dir)  # with --watch, a viewer beside the run

    step = learner.step
    recent_returns: deque[float] = deque(maxlen=20)
    progress = Progress(cfg.total_steps, initial=step, enabled=cfg.progress)
    observations, infos = envs.reset(seed=cfg.seed + step)
    replay.start(observations)
    games = EpisodeTracker(cfg.num_envs, cfg.life_loss_terminal, infos.get("lives"))
    clearing = stack_clearing(envs)
    step_async, step_wait = _async_stepping(envs)
    last_log_step, last_log_time = step, time.perf_counter()
    log, evaluation, save = (
        Every(cfg.log_every, step),
        Every(cfg.eval_every, step),
        Every(cfg.checkpoint_every, step),
    )
    replay_ready = False
    try:
        # SIGINT / SIGTERM set run.stop_requested; the loop ends between two steps.
        while step < cfg.total_steps and not run.stop_requested:
            # Act.
            epsilon = exploration_epsilon(cfg, step)
            actions = _act(learner, observations, epsilon, num_actions, device)
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
                learner.learn(cfg.num_envs)
            else:
                learner.advance(cfg.num_envs)
            if step_async is not None:
                outcome = step_wait()
            next_observations, rewards, terminated, truncated, infos = outcome
            step = learner.step

            # Store. A lost life ends the episode for learning only; the game goes on.
            learning_done, finished = games.step(rewards, terminated, truncated, infos)
            learning_rewards = np.sign(rewards) if cfg.clip_rewards else rewards
            replay.add(
                actions, learning_rewards, terminated, truncated, next_observations, learning_done,
                stack_restart=None if clearing is None else clearing.lost,
            )  # fmt: skip
            for score, length in finished:  # true rewards of whole games
                recent_returns.append(score)
                logger.scalar(tags.EPISODIC_RETURN, score, step)
                logger.scalar(tags.EPISODIC_LENGTH, length, step)
            observations = next_observations

            # Log, evaluate, save.
            if log.due(step):
                now = time.perf_counter()
                sps = (step - last_log_step) / max(now - last_log_time, 1e-9)
                last_log_step, last_log_time = step, now
                logger.scalar(tags.EPSILON, epsilon, step)
                logger.scalar(tags.SPS, sps, step)
                learner.log_losses(run, step)
                mean_return = float(np.mean(recent_returns)) if recent_returns else float("nan")
                progress.update(step, sps=sps, ret=mean_return, eps=epsilon)
            if evaluation.due(step):
                mean_score = evaluate_during_training(
                    cfg, run, learner.playing_network, device, step
                )
                if mean_score is not None:
                    learner.save_best(run, mean_score)
            viewer.tick()
            if save.due(step):
                learner.save_latest(run)
    finally:
        progress.close()
        envs.close()
    learner.save_latest(run)
    if step >= cfg.total_steps:
        final_evaluation(cfg, run, learner, device)
    viewer.close()
    run.finish(step, cfg.runs_dir)


def _act(
    learner: Learner, observations: np.ndarray, epsilon: float, num_actions: int,
    device: torch.device,
) -> np.ndarray:  # fmt: skip
    """One action per env: uniform while epsilon is 1 (before learning starts), else
    epsilon-greedy on the Q-values, under the update's autocast, with --noisy's layers drawing
    fresh noise and batch norm / dropout in evaluation mode."""
    if epsilon >= 1.0:
        return learner.rng.integers(0, num_actions, len(observations))
    q_network = learner.q_network
    with (
        torch.no_grad(),
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=learner.autocast),
        evaluating(q_network, learner.stochastic_layers),
    ):
        explore_with_noise(q_network)  # --noisy with batch norm or dropout
        q_values = q_network(torch.as_tensor(observations, device=device))
    return epsilon_greedy(q_values, epsilon, learner.rng)


def exploration_epsilon(cfg: DQNConfig, step: int) -> float:
    """Epsilon at env step `step`: --start-epsilon decayed linearly to --end-epsilon over
    --exploration-steps (or --exploration-fraction of the run), from step 0 (Nature DQN,
    CleanRL) or, with --exploration-after-warmup, from --learning-starts (Dopamine). With
    --noisy the noise explores: random play before --learning-starts, then epsilon 0."""
    if cfg.noisy:
        return 1.0 if step < cfg.learning_starts else 0.0
    decay_steps = cfg.exploration_steps or cfg.exploration_fraction * cfg.total_steps
    decay_start = cfg.learning_starts if cfg.exploration_after_warmup else 0
    return linear_schedule(
        cfg.start_epsilon, cfg.end_epsilon, decay_steps, max(step - decay_start, 0)
    )


def _check_network(cfg: DQNConfig, spaces: GameSpaces) -> None:
    """Build the network once on the CPU, so one these settings cannot make (frames too small
    for the encoder, SPR without a pixel encoder) is one line before anything is written."""
    spec = dqn_checkpoint.spec_for(cfg, spaces.observation_shape, spaces.num_actions)
    try:
        dqn_checkpoint.build_from_spec(spec)
    except ValueError as error:
        raise UserError(str(error)) from None


def _spaces(cfg: DQNConfig) -> GameSpaces:
    """The game's spaces as this run preprocesses it (the one time a run reads them); refuses
    an encoder that cannot read its observations."""
    spaces = game_spaces(cfg.env_id, cfg.seed, **env_options(cfg))
    check(
        spaces.pixels or cfg.encoder in ("auto", "mlp"),
        f"--encoder {cfg.encoder} reads image observations; {cfg.env_id} gives vectors of shape "
        f"{spaces.observation_shape}: use --encoder mlp (or auto)",
    )
    return spaces


def _async_stepping(envs: Any) -> tuple[Any, Any]:
    """The vector env's split step (send actions / receive results) when it has one, so the
    learner can run while the envs step; (None, None) otherwise. It bypasses the vector
    episode-statistics wrapper, which is why `EpisodeTracker` sums the games itself."""
    base = envs.unwrapped
    if hasattr(base, "send") and hasattr(base, "recv"):  # ale-py's AtariVectorEnv
        clearing = stack_clearing(envs)
        if clearing is not None:  # --life-loss-clears-stack: its clearing after each step
            return base.send, lambda: clearing.after_step(base.recv())
        return base.send, base.recv
    if hasattr(base, "step_async") and hasattr(base, "step_wait"):  # gymnasium's AsyncVectorEnv
        return base.step_async, base.step_wait
    return None, None


def _check_replay_fits(cfg: DQNConfig, device: torch.device, spaces: GameSpaces) -> None:
    """Refuse, before anything is written, a replay buffer bigger than the free RAM (its
    torch.zeros touches every page, so it would otherwise fail, or be killed, while filling)."""
    if (
        replay_device(
            cfg.replay_device, device, cfg.buffer_size, spaces.observation_shape, cfg.frame_stack
        ).type
        != "cpu"
    ):
        return
    per_transition = ReplayBuffer.bytes_per_transition(
        spaces.observation_shape,
        cfg.frame_stack if spaces.pixels else 1,
        torch.uint8 if spaces.pixels else torch.float32,
        spaces.num_actions,
    )
    check_fits_in_memory(
        cfg.buffer_size * per_transition,
        f"a replay buffer of {cfg.buffer_size:,} transitions ({per_transition} bytes each)",
        "lower --buffer-size",
    )
