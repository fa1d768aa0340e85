"""What both DQN training loops (`agents.dqn`, one process; `agents.apex`, actors on Ray) do
besides learning: place the replay buffer, evaluate and log a scored game as a video, and run
the viewer beside the trainer."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import torch

from agents import checkpoint as saved
from agents.config import DQNConfig
from agents.learning import POLICY
from agents.rollout import play_games
from envs import game_fps
from playground.display import display_available, start_viewer
from playground.errors import check
from playground.lifecycle import Run, say
from playground.media import caption_frames

WATCH_EXPORT_SECONDS = 3.0  # with --watch, seconds between exports of the latest weights
EVAL_VIDEO_FRAMES = 1_000  # the first evaluation game is logged as a video up to this length


def evaluate_during_training(
    cfg: DQNConfig, run: Run, q_network: torch.nn.Module, device: torch.device, step: int
) -> float | None:
    """Play `eval_episodes` full games, log their mean and spread and (with --eval-video) the
    first of them as a video captioned with its score; None when a stop signal cut it short."""
    games = play_games(
        q_network,
        cfg.env_id,
        cfg.eval_episodes,
        epsilon=cfg.eval_epsilon,
        seed=cfg.seed + 10_000 + step,
        device=device,
        env_options=saved.env_options(cfg),
        record_frames=EVAL_VIDEO_FRAMES if cfg.eval_video else 0,
        should_stop=lambda: run.stop_requested,
    )
    if len(games.scores) < cfg.eval_episodes:
        return None
    mean_score = float(np.mean(games.scores))
    run.logger.scalar("eval/episodic_return", mean_score, step)
    run.logger.scalar("eval/episodic_return_std", float(np.std(games.scores)), step)
    say(
        f"step {step}: eval return {mean_score:.2f} +- {np.std(games.scores):.2f} over "
        f"{len(games.scores)} games"
    )
    if games.frames:
        first = games.scores[0]
        captions = [
            f"game 1 of {len(games.scores)}  score {score:g}" for score in games.frame_scores
        ]
        run.logger.video(
            "eval/video",
            caption_frames(np.stack(games.frames), captions),
            step,
            fps=game_fps(cfg.env_id),
        )
        run.logger.text(
            "eval/video_score",
            f"step {step}: the video is game 1 of {len(games.scores)}, score {first:g} "
            f"(mean {mean_score:.2f})",
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
