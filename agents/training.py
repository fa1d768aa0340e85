"""What both DQN training loops (`agents.dqn`, one process; `agents.apex`, actors on Ray) do
besides learning: count the games of a vector env (with Atari's life loss), time what is done
every N steps, place the replay buffer, evaluate and log a scored game as a video, and run the
viewer beside the trainer."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.config import DQNConfig, env_options
from agents.learner import POLICY, Learner
from agents.replay import ReplayBuffer
from agents.rollout import Games, play_games, score_games
from envs import game_fps, is_atari
from playground import tags
from playground.checkpoint import FINAL_EVAL, write_json_atomic
from playground.device import memory_home
from playground.display import display_available, start_beside
from playground.errors import check
from playground.lifecycle import Run
from playground.media import caption_frames
from playground.notes import say

WATCH_EXPORT_SECONDS = 3.0  # with --watch, seconds between exports of the latest weights
EVAL_VIDEO_FRAMES = 1_000  # each evaluation logs a video of one game up to this length


class Every:
    """Something done every `period` steps (0: never), from any starting step (a resume):
    `due(step)` is True once each time `step` reaches or passes the next multiple."""

    def __init__(self, period: int, step: int) -> None:
        self.period = period
        self.next = self._after(step)

    def _after(self, step: int) -> int:
        return (step // self.period + 1) * self.period if self.period > 0 else sys.maxsize

    def due(self, step: int) -> bool:
        if step < self.next:
            return False
        self.next = self._after(step)
        return True


class EpisodeTracker:
    """The games on the lanes of a vector env (from `envs.make_vector_env`, autoreset
    NEXT_STEP) as it steps: each game's true return and length, summed here from the rewards
    (the training loop steps ALE's and gymnasium's async vector envs through their split
    step, which bypasses gymnasium's RecordEpisodeStatistics wrapper). The step after a game
    ends is its lane's reset step and counts for nothing. With `life_loss`, a lane that loses
    a life ends its episode for learning only while the game goes on (Mnih et al. 2015);
    `step` returns those lanes."""

    def __init__(self, lanes: int, life_loss: bool, lives: np.ndarray | None) -> None:
        self.life_loss, self.lives = life_loss, lives
        self.ended = np.zeros(lanes, dtype=bool)  # lanes whose last step ended a game
        self.returns = np.zeros(lanes, dtype=np.float64)
        self.lengths = np.zeros(lanes, dtype=np.int64)

    def step(
        self,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        infos: dict[str, Any],
    ) -> tuple[np.ndarray | None, list[tuple[float, int]]]:
        """Record one step of every lane (its true, unclipped rewards). Returns (the lanes
        whose episode ends for learning only, or None without life loss; (return, length) of
        each game that ended)."""
        learning_done = None
        if self.life_loss and self.lives is not None and "lives" in infos:
            learning_done = (infos["lives"] < self.lives) & ~self.ended
            self.lives = infos["lives"]
        played = ~self.ended  # the others were reset by this step
        self.returns[played] += np.asarray(rewards, dtype=np.float64)[played]
        self.lengths[played] += 1
        ends = np.logical_or(terminated, truncated)
        finished = [
            (float(self.returns[lane]), int(self.lengths[lane]))
            for lane in np.flatnonzero(ends & played)
        ]
        self.returns[ends] = 0.0
        self.lengths[ends] = 0
        self.ended = ends
        return learning_done, finished


class LiveViewer:
    """The viewer beside a training run (--watch window / web): a process of its own that
    plays with policy.pt, which `tick` rewrites every few seconds; nothing without --watch."""

    def __init__(self, cfg: DQNConfig, learner: Learner, run_dir: Path) -> None:
        self.cfg, self.learner, self.run_dir = cfg, learner, run_dir
        self.process: subprocess.Popen | None = None
        self.next_export = math.inf
        if cfg.watch != "none":
            learner.export_policy(run_dir)
            self.process = spawn_viewer(cfg, run_dir)
            self.next_export = time.monotonic() + WATCH_EXPORT_SECONDS

    def tick(self) -> None:
        """Export the weights when a few seconds have passed since the last export."""
        if self.process is not None and time.monotonic() >= self.next_export:
            self.learner.export_policy(self.run_dir)
            self.next_export = time.monotonic() + WATCH_EXPORT_SECONDS

    def close(self) -> None:
        """The final weights; a window stays open until closed, the page's server ends with
        the training run."""
        if self.process is None:
            return
        self.learner.export_policy(self.run_dir)
        if self.cfg.watch == "web":
            self.process.terminate()


def evaluate_during_training(
    cfg: DQNConfig,
    run: Run,
    q_network: torch.nn.Module,
    device: torch.device,
    step: int,
) -> float | None:
    """Play --eval-episodes full games on --eval-envs vector envs, log their mean and spread,
    and (with --eval-video) one more game's first
    EVAL_VIDEO_FRAMES frames as a video captioned with its score so far; None when a stop
    signal cut it short."""
    episodes = cfg.eval_episodes

    def should_stop() -> bool:
        return run.stop_requested

    games = score_games(
        q_network,
        cfg.env_id,
        episodes,
        epsilon=cfg.eval_epsilon,
        seed=cfg.seed + 10_000 + step,
        device=device,
        env_options=env_options(cfg),
        num_envs=cfg.eval_envs,
        should_stop=should_stop,
    )
    if len(games.scores) < episodes:
        return None
    mean_score = float(np.mean(games.scores))
    run.logger.scalar(tags.EVAL_RETURN, mean_score, step)
    run.logger.scalar(tags.EVAL_RETURN_STD, float(np.std(games.scores)), step)
    say(
        f"step {step}: eval return {mean_score:.2f} +- {np.std(games.scores):.2f} over {len(games.scores)} games"
    )
    if cfg.eval_video:
        video = play_games(
            q_network,
            cfg.env_id,
            1,
            epsilon=cfg.eval_epsilon,
            seed=cfg.seed + 20_000 + step,
            device=device,
            env_options=env_options(cfg),
            record_frames=EVAL_VIDEO_FRAMES,
            max_steps=EVAL_VIDEO_FRAMES,
            should_stop=should_stop,
        )
        if video.frames:
            captions = [f"score {score:g}" for score in video.frame_scores]
            run.logger.video(
                tags.EVAL_VIDEO,
                caption_frames(np.stack(video.frames), captions),
                step,
                fps=game_fps(cfg.env_id),
            )
            ending = (
                f"a whole game, score {video.scores[0]:g}"
                if video.scores
                else f"its first {len(video.frames) - 1} steps, score {video.frame_scores[-1]:g}"
            )
            run.logger.text(
                tags.EVAL_VIDEO_SCORE,
                f"step {step}: the video is one more game of the same policy ({ending}); "
                f"the evaluation's mean was {mean_score:.2f} over {len(games.scores)} games",
                step,
            )
    return mean_score


def spawn_viewer(cfg: DQNConfig, run_dir: Path) -> subprocess.Popen:
    """Start the viewer on the run's policy.pt in its own process (`python -m viewer --follow`),
    reloading the weights whenever the trainer rewrites them: a window, or with --watch web a
    page that also shows the run's curves."""
    check(
        cfg.watch == "web" or display_available(),
        "--watch window needs a display; without one use --watch web (a page to open in a "
        "browser, over an SSH port forward) or train, then: python run.py watch --headless "
        "--record out.mp4 --checkpoint RUN",
    )
    arguments = [
        "--checkpoint", str((run_dir / POLICY).resolve()),
        "--follow",
        "--env-id", cfg.env_id,
        "--seed", str(cfg.seed),
        "--device", "cpu",
    ]  # fmt: skip
    if cfg.watch == "web":
        arguments += [
            "--web", "--run-dir", str(run_dir.resolve()),
            "--host", cfg.watch_host, "--port", str(cfg.watch_port),
        ]  # fmt: skip
    return start_beside("viewer", arguments)


def replay_device(
    choice: str,
    device: torch.device,
    buffer_size: int,
    observation_shape: tuple[int, ...],
    frame_stack: int,
) -> torch.device:
    """Where a replay buffer of `buffer_size` transitions lives: `choice` (--replay-device) cpu
    or same, or (auto) the project's one rule for training data,
    `playground.device.memory_home`, on the buffer's own size."""
    if choice == "cpu" or device.type == "cpu":
        return torch.device("cpu")
    if choice == "same":
        return device
    pixels = len(observation_shape) == 3
    needed = buffer_size * ReplayBuffer.bytes_per_transition(
        observation_shape,
        frame_stack if pixels else 1,
        torch.uint8 if pixels else torch.float32,
    )
    return memory_home(needed, device)


def final_evaluation(cfg: DQNConfig, run: Run, learner: Learner, device: torch.device) -> None:
    """The evaluation at the end of training (--final-eval-episodes full games, the Atari 100k
    protocol's 100): logged as eval/final_return and written to final_eval.json with every
    game's score, once per run (a resumed run that had it does not play it again), played by
    the learner's playing network. With --policy-ema the online network plays the same games
    too: its score is logged as eval/final_return_online and kept under "online", to show what
    the average changed."""
    path = run.dir / FINAL_EVAL
    if not cfg.final_eval_episodes or path.is_file() or run.stop_requested:
        return
    step = learner.step
    averaged = learner.policy_network is not None
    games = _final_games(cfg, run, learner.playing_network, device)
    online = _final_games(cfg, run, learner.q_network, device) if averaged else None
    if games is None or (averaged and online is None):
        return
    mean_score = float(np.mean(games.scores))
    run.logger.scalar(tags.FINAL_RETURN, mean_score, step)
    say(
        f"step {step}: final evaluation {mean_score:.2f} +- {np.std(games.scores):.2f} over "
        f"{len(games.scores)} games (epsilon {cfg.eval_epsilon})"
        + (f"; the online network: {np.mean(online.scores):.2f}" if online is not None else "")
    )
    record: dict[str, Any] = {
        "env_id": cfg.env_id, "step": step, "epsilon": cfg.eval_epsilon, **_summary(games)
    }  # fmt: skip
    if online is not None:
        run.logger.scalar(tags.FINAL_RETURN_ONLINE, float(np.mean(online.scores)), step)
        record["online"] = _summary(online)
    write_json_atomic(path, record)


def _summary(games: Games) -> dict[str, Any]:
    """final_eval.json's record of one network's games."""
    return {
        "mean": float(np.mean(games.scores)),
        "std": float(np.std(games.scores)),
        "scores": games.scores,
        "lengths": games.lengths,
    }


def _final_games(
    cfg: DQNConfig, run: Run, network: torch.nn.Module, device: torch.device
) -> Games | None:
    """The final evaluation's games (the same starts for every network), or None when a stop
    cut them short."""
    games = score_games(
        network,
        cfg.env_id,
        cfg.final_eval_episodes,
        epsilon=cfg.eval_epsilon,
        seed=cfg.seed + 1_000_000,
        device=device,
        env_options=env_options(cfg),
        num_envs=cfg.eval_envs,
        should_stop=lambda: run.stop_requested,
    )
    return games if len(games.scores) == cfg.final_eval_episodes else None


def protocol_line(cfg: DQNConfig) -> str | None:
    """For ALE games, one line saying how the game is played and scored in this run."""
    if not is_atari(cfg.env_id):
        return None
    sticky = env_options(cfg)["repeat_action_probability"]
    if sticky is None:
        sticky = gym.spec(cfg.env_id).kwargs.get("repeat_action_probability", 0.0)
    parts = [
        f"sticky actions {sticky:g}" if sticky else "no sticky actions",
        f"episodes capped at {cfg.max_episode_frames:,} frames",
        (
            f"games start after 0 to {cfg.noop_max} no-op frames"
            if cfg.noop_max
            else "games start at the ALE's reset (no no-ops)"
        )
        + (", FIRE pressed at the start where the game has it" if cfg.fire_reset else ""),
        "a lost life ends an episode for learning only" if cfg.life_loss_terminal else "",
        "a lost life clears the frame stack" if cfg.life_loss_clears_stack else "",
        "rewards clipped for learning only" if cfg.clip_rewards else "",
        f"{cfg.total_steps:,} agent steps ({4 * cfg.total_steps:,} frames)",
    ]
    if cfg.final_eval_episodes:
        parts.append(
            f"scored by {cfg.final_eval_episodes} full games at epsilon {cfg.eval_epsilon:g} "
            "at the end"
            + (
                f", played by the weights' average (--policy-ema {cfg.policy_ema:g})"
                if cfg.policy_ema
                else ""
            )
        )
    return f"protocol on {cfg.env_id}: " + ", ".join(part for part in parts if part)
