"""The settings of `watch` (one frozen dataclass, tyro's `--help`) and the checks made before
anything opens. Importing it loads no GUI, game or network code."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from playground.errors import check
from playground.settings import InputPath, NonNegativeInt, OutputFile, Port, Seed, check_settings


@dataclass(frozen=True)
class WatchConfig:
    """Watch an agent play live in a pygame window (or headless, to a video or screenshot)."""

    checkpoint: InputPath = ""
    """DQN checkpoint file or run folder (its best.pt, or latest.pt while it has none); empty =
    an untrained network."""
    env_id: str = ""
    """Game to play; empty = the checkpoint's game. Another game needs the same observations and actions."""
    human: bool = False
    """You play with the keyboard (arrows and space map to the game's actions; p pauses)."""
    headless: bool = False
    """No window: draw off-screen, play --episodes / --max-steps, write --record and --screenshot."""
    record: OutputFile = ""
    """Record the window to this .mp4 or .gif file (from the start; `r` toggles it)."""
    screenshot: OutputFile = ""
    """Save the window to this .png file (`s`; at the end of a headless run)."""
    episodes: NonNegativeInt = 0
    """Stop after this many games (0 = until you quit; a headless run plays 1)."""
    max_steps: NonNegativeInt = 0
    """Stop after this many agent steps (0 = no limit)."""
    epsilon: float | None = None
    """Initial exploration epsilon; default 0.01 with a checkpoint, 1 (random play) without."""
    fps: NonNegativeInt = 0
    """Initial speed in agent steps per second (0 = the game's real-time speed); `+`/`-` change it."""
    scale: NonNegativeInt = 0
    """Screen pixels per game pixel (0 = fit the game into about 640 pixels of height)."""
    seed: Seed = 0
    """Seed of the games and of the exploration."""
    device: str = "cpu"
    """auto | cpu | cuda | cuda:N | mps (one frame at a time: the CPU is plenty)."""
    follow: bool = False
    """Reload the checkpoint whenever its file changes (every ~2 s): watch a run while it trains."""
    saliency: bool = False
    """Start with the saliency overlay on (`o` toggles it): where the chosen action's value looks."""
    web: bool = False
    """Serve the viewer as a web page instead of a window (for a machine you reach over SSH)."""
    host: str = "127.0.0.1"
    """With --web: the address to listen on; anything beyond loopback needs the printed token."""
    port: Port = 8765
    """With --web: the port to listen on (0: any free port)."""
    run_dir: InputPath = ""
    """With --web: also show the training curves and images of this run folder (live)."""


def check_output_path(path: str, flag: str, suffixes: tuple[str, ...]) -> Path:
    """Refuse an output file whose folder is missing or read-only, or whose type is wrong, with
    one line naming the flag, before anything runs."""
    target = Path(path).expanduser()
    folder = target.parent
    check(
        target.suffix.lower() in suffixes,
        f"--{flag} {path}: the file name must end in {' or '.join(suffixes)}",
    )
    check(folder.is_dir(), f"--{flag} {path}: the folder {folder} does not exist; create it first")
    check(not target.is_dir(), f"--{flag} {path} is a folder; give a file name")
    check(
        os.access(folder, os.W_OK | os.X_OK)
        and (not target.exists() or os.access(target, os.W_OK)),
        f"--{flag} {path}: {folder} is not writable; pick another folder",
    )
    return target


def validate(cfg: WatchConfig) -> None:
    """Refuse contradictory or out-of-range settings with one clear line."""
    check_settings(cfg)
    check(not (cfg.human and cfg.headless), "--human needs a window; drop --headless")
    check(not (cfg.human and cfg.web), "--human plays in the window; drop --web")
    check(
        bool(cfg.checkpoint or cfg.env_id or (cfg.web and cfg.run_dir)),
        "watch needs --checkpoint (a trained agent) or --env-id (an untrained one, or --human)",
    )
    check(0 <= cfg.port <= 65535, f"--port must lie in 0..65535, got {cfg.port}")
    check(not cfg.run_dir or Path(cfg.run_dir).is_dir(), f"--run-dir {cfg.run_dir}: no such folder")
    check(cfg.episodes >= 0, f"--episodes must be >= 0, got {cfg.episodes}")
    check(cfg.max_steps >= 0, f"--max-steps must be >= 0, got {cfg.max_steps}")
    check(cfg.fps >= 0, f"--fps must be >= 0, got {cfg.fps}")
    check(cfg.scale >= 0, f"--scale must be >= 0, got {cfg.scale}")
    if cfg.epsilon is not None:
        check(0.0 <= cfg.epsilon <= 1.0, f"--epsilon must lie in [0, 1], got {cfg.epsilon}")
    if cfg.record:
        check_output_path(cfg.record, "record", (".mp4", ".gif"))
    if cfg.screenshot:
        check_output_path(cfg.screenshot, "screenshot", (".png",))
