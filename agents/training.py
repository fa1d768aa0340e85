"""What both DQN training loops (`agents.dqn`, one process; `agents.apex`, actors on Ray) do
besides learning: place the replay buffer, evaluate and log a scored game as a video, and run
the viewer beside the trainer."""

from __future__ import annotations

import subprocess
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from agents import checkpoint as saved
from agents.config import DQNConfig
from agents.learning import POLICY
from agents.rollout import play_games, score_games
from envs import game_fps, is_atari
from playground import tags
from playground.checkpoint import write_json_atomic
from playground.display import display_available, start_viewer
from playground.errors import check
from playground.lifecycle import Run, say
from playground.media import caption_frames

WATCH_EXPORT_SECONDS = 3.0  # with --watch, seconds between exports of the latest weights
EVAL_VIDEO_FRAMES = 1_000  # each evaluation logs a video of one game up to this length


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
        env_options=saved.env_options(cfg),
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
            env_options=saved.env_options(cfg),
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
    return start_viewer(arguments)


def replay_device(
    cfg: DQNConfig, device: torch.device, observation_shape: tuple[int, ...]
) -> torch.device:
    """Where the replay buffer lives: --replay-device, or on the GPU when it fits (auto)."""
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


FINAL_EVAL = "final_eval.json"  # the end-of-training evaluation's scores, in the run folder


def final_evaluation(
    cfg: DQNConfig, run: Run, q_network: torch.nn.Module, device: torch.device, step: int
) -> None:
    """The evaluation at the end of training (--final-eval-episodes full games, the Atari 100k
    protocol's 100): logged as eval/final_return and written to final_eval.json with every
    game's score, once per run (a resumed run that had it does not play it again)."""
    path = run.dir / FINAL_EVAL
    if not cfg.final_eval_episodes or path.is_file() or run.stop_requested:
        return
    games = score_games(
        q_network,
        cfg.env_id,
        cfg.final_eval_episodes,
        epsilon=cfg.eval_epsilon,
        seed=cfg.seed + 1_000_000,
        device=device,
        env_options=saved.env_options(cfg),
        num_envs=cfg.eval_envs,
        should_stop=lambda: run.stop_requested,
    )
    if len(games.scores) < cfg.final_eval_episodes:
        return
    mean_score = float(np.mean(games.scores))
    run.logger.scalar(tags.FINAL_RETURN, mean_score, step)
    say(
        f"step {step}: final evaluation {mean_score:.2f} +- {np.std(games.scores):.2f} over "
        f"{len(games.scores)} games (epsilon {cfg.eval_epsilon})"
    )
    record = {
        "env_id": cfg.env_id,
        "step": step,
        "epsilon": cfg.eval_epsilon,
        "mean": mean_score,
        "std": float(np.std(games.scores)),
        "scores": games.scores,
        "lengths": games.lengths,
    }
    write_json_atomic(path, record)


def protocol_line(cfg: DQNConfig) -> str | None:
    """For ALE games, one line saying how the game is played and scored in this run."""
    if not is_atari(cfg.env_id):
        return None
    sticky = saved.env_options(cfg)["repeat_action_probability"]
    if sticky is None:
        sticky = gym.spec(cfg.env_id).kwargs.get("repeat_action_probability", 0.0)
    parts = [
        f"sticky actions {sticky:g}" if sticky else "no sticky actions",
        f"episodes capped at {cfg.max_episode_frames:,} frames",
        "a lost life ends an episode for learning only" if cfg.life_loss_terminal else "",
        "rewards clipped for learning only" if cfg.clip_rewards else "",
        f"{cfg.total_steps:,} agent steps ({4 * cfg.total_steps:,} frames)",
    ]
    if cfg.final_eval_episodes:
        parts.append(
            f"scored by {cfg.final_eval_episodes} full games at epsilon {cfg.eval_epsilon:g} "
            "at the end"
        )
    return f"protocol on {cfg.env_id}: " + ", ".join(part for part in parts if part)
