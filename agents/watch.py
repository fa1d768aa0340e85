"""Watch a DQN agent play (or play yourself) in a pygame window, with its Q-values beside the game.

    python run.py watch --checkpoint runs/<name>             # the trained agent
    python run.py watch --checkpoint runs/<name> --saliency  # where it looks
    python run.py watch --env-id ALE/Breakout-v5 --human     # play it yourself
    python run.py watch --checkpoint runs/<name> --headless --record out.mp4 --episodes 3

The window shows the game scaled up with crisp pixels and a side panel: the Q-value of every
action (the chosen one highlighted), the score, episodes played, mean score, epsilon, frames per
second and the checkpoint's training step. Press `h` for the keys. Recordings and screenshots
hold the whole window. `--follow` reloads the checkpoint whenever the file changes, which is
how `train-dqn --watch` shows the agent while it learns (see `spawn_watcher`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
import torch

from agents.dqn import (
    check_compatible,
    config_from_checkpoint,
    load_dqn_checkpoint,
    network_from_checkpoint,
)
from agents.networks import QNetwork, build_q_network
from agents.saliency import saliency_map
from envs import action_names, check_env_id, is_atari, make_env
from playground.device import resolve_device
from playground.errors import UserError, check

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

EPSILON_CYCLE = (0.0, 0.01, 0.05, 1.0)
"""The values `e` steps through."""
UNCAPPED = 0
"""Speed value meaning "as fast as the machine goes"."""
SPEEDS = (1, 2, 5, 10, 15, 20, 30, 60, 120, UNCAPPED)
"""Frames per second that `-` and `+` step through, slowest first."""
FOLLOW_MAX_FPS = 60
"""Speed cap with --follow, so a viewer beside a training run leaves the CPU to it."""
FOLLOW_INTERVAL = 2.0
"""Seconds between checks of the checkpoint's modification time with --follow."""
GIF_FRAME_LIMIT = 2_000
"""GIF recordings keep their frames in memory (one byte a pixel); they stop at this many."""
PAUSED_FPS = 30
"""Redraws per second while paused (the window stays responsive without spinning the CPU)."""
NO_DISPLAY = "no display available; run with --headless --record out.mp4 (or --screenshot out.png)"

# Palette: a dark panel, light text, one accent for the chosen action.
BACKGROUND = (18, 20, 26)
PANEL = (30, 33, 42)
DIVIDER = (52, 56, 70)
TEXT = (226, 229, 236)
MUTED = (140, 147, 163)
BAR = (78, 98, 140)
ACCENT = (255, 181, 71)
RECORDING = (232, 76, 76)
GOOD = (112, 204, 140)

PANEL_WIDTH = 320
PADDING = 16
MAX_GAME_HEIGHT = 640  # the automatic --scale fits the game into this many pixels


@dataclass(frozen=True)
class WatchConfig:
    """Watch an agent play live in a pygame window (or headless, to a video or screenshot)."""

    checkpoint: str = ""
    """DQN checkpoint file or run folder (its best.pt, else latest.pt); empty = an untrained network."""
    env_id: str = ""
    """Game to play; empty = the checkpoint's game. Another game needs the same observations and actions."""
    human: bool = False
    """You play with the keyboard (arrows and space map to the game's actions; p pauses)."""
    headless: bool = False
    """No window: draw off-screen, play --episodes / --max-steps, write --record and --screenshot."""
    record: str = ""
    """Record the window to this .mp4 or .gif file (from the start; `r` toggles it)."""
    screenshot: str = ""
    """Save the window to this .png file (`s`; at the end of a headless run)."""
    episodes: int = 0
    """Stop after this many games (0 = until you quit; a headless run plays 1)."""
    max_steps: int = 0
    """Stop after this many agent steps (0 = no limit)."""
    epsilon: float | None = None
    """Initial exploration epsilon; default 0.01 with a checkpoint, 1 (random play) without."""
    fps: int = 0
    """Initial speed in agent steps per second (0 = the game's real-time speed); `+`/`-` change it."""
    scale: int = 0
    """Screen pixels per game pixel (0 = fit the game into about 640 pixels of height)."""
    seed: int = 0
    """Seed of the games and of the exploration."""
    device: str = "cpu"
    """auto | cpu | cuda | cuda:N | mps (one frame at a time: the CPU is plenty)."""
    follow: bool = False
    """Reload the checkpoint whenever its file changes (every ~2 s): watch a run while it trains."""
    saliency: bool = False
    """Start with the saliency overlay on (`o` toggles it): where the chosen action's value looks."""


# ----------------------------------------------------------------------------- checks


def display_available() -> bool:
    """Whether a window can be opened: on Linux an X11 or Wayland display, or SDL's dummy or
    offscreen video driver (used by tests)."""
    if not sys.platform.startswith("linux"):
        return True
    if os.environ.get("SDL_VIDEODRIVER", "") in ("dummy", "offscreen"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


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
    check(not (cfg.human and cfg.headless), "--human needs a window; drop --headless")
    check(
        bool(cfg.checkpoint or cfg.env_id),
        "watch needs --checkpoint (a trained agent) or --env-id (an untrained one, or --human)",
    )
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


def resolve_checkpoint_path(checkpoint: str, follow: bool) -> Path:
    """A run folder means its best.pt (latest.pt when following a run, or when there is no best)."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        names = ("latest.pt", "best.pt") if follow else ("best.pt", "latest.pt")
        for name in names:
            if (path / name).is_file():
                return path / name
    return path


def game_fps(env_id: str) -> int:
    """Agent steps per second at a game's real-time speed: 15 for ALE games (60 frames a second,
    4 per agent step), else the env's `render_fps` (30 when it has none)."""
    if is_atari(env_id):
        return 15
    check_env_id(env_id)
    env = gym.make(env_id)
    try:
        return int(env.metadata.get("render_fps") or 30)
    finally:
        env.close()


# ----------------------------------------------------------------------------- recording


class Recorder:
    """Writes RGB frames (H, W, 3) uint8 to an .mp4 (H.264 through imageio's ffmpeg, streamed)
    or a .gif (Pillow; frames kept in memory, palette-quantised, until `close`)."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = max(1.0, float(fps))
        self.frames_written = 0
        self._gif_frames: list[Any] = []
        self._writer: Any = None
        if path.suffix.lower() == ".mp4":
            import imageio.v2 as imageio

            # The window's size is kept even, which H.264 in yuv420p needs.
            self._writer = imageio.get_writer(
                str(path),
                format="FFMPEG",
                mode="I",
                fps=self.fps,
                codec="libx264",
                quality=8,
                pixelformat="yuv420p",
                macro_block_size=2,
                ffmpeg_log_level="error",
            )

    @property
    def full(self) -> bool:
        """A GIF stops taking frames at GIF_FRAME_LIMIT."""
        return self._writer is None and len(self._gif_frames) >= GIF_FRAME_LIMIT

    def add(self, frame: np.ndarray) -> None:
        if self._writer is not None:
            self._writer.append_data(frame)
        elif not self.full:
            from PIL import Image

            self._gif_frames.append(Image.fromarray(frame).quantize(256, Image.Quantize.FASTOCTREE))
        else:
            return
        self.frames_written += 1

    def close(self) -> Path:
        if self._writer is not None:
            self._writer.close()
        elif self._gif_frames:
            first, *rest = self._gif_frames
            duration = max(20, round(1000 / self.fps / 10) * 10)  # GIF delays are centiseconds
            first.save(self.path, save_all=True, append_images=rest, duration=duration, loop=0)
            self._gif_frames = []
        return self.path


def _numbered(path: Path, index: int) -> Path:
    """out.mp4, out-2.mp4, out-3.mp4, ...: repeated recordings never overwrite each other."""
    return path if index <= 1 else path.with_name(f"{path.stem}-{index}{path.suffix}")


# ----------------------------------------------------------------------------- the viewer


class Viewer:
    """One game, one agent (or a person), drawn onto a pygame surface with a side panel.

    `watch()` is a loop over `tick()`, which is `process_events()`, `step()` when not paused,
    `reload_if_changed()` and `draw()`. Tests drive the same methods with synthetic key events.
    With `headless=True` it draws onto an off-screen Surface and never opens a window.
    """

    def __init__(self, cfg: WatchConfig, headless: bool | None = None) -> None:
        validate(cfg)
        self.cfg = cfg
        self.headless = cfg.headless if headless is None else headless
        self.device = resolve_device(cfg.device)
        self.human = cfg.human
        self.follow = cfg.follow

        # The agent: a checkpoint, or an untrained network for the game.
        self.checkpoint_path: Path | None = None
        self.checkpoint_mtime = 0
        self.training_step: int | None = None
        checkpoint: dict[str, Any] | None = None
        frame_stack = 4
        if cfg.checkpoint:
            self.checkpoint_path = resolve_checkpoint_path(cfg.checkpoint, cfg.follow)
            checkpoint = load_dqn_checkpoint(self.checkpoint_path)
            self.checkpoint_mtime = self.checkpoint_path.stat().st_mtime_ns
            trained = config_from_checkpoint(checkpoint)
            frame_stack = trained.frame_stack
            self.env_id = cfg.env_id or trained.env_id
            check_env_id(self.env_id)
            if self.env_id != trained.env_id:
                try:
                    check_compatible(checkpoint, self.env_id, frame_stack)
                except UserError as error:
                    raise UserError(
                        f"{error}; pick a game with the same observations and actions with "
                        f"--env-id, or leave --env-id out to watch {trained.env_id}"
                    ) from None
            self.training_step = int(checkpoint["step"])
        else:
            self.env_id = cfg.env_id
            check_env_id(self.env_id)

        self.env = make_env(
            self.env_id, seed=cfg.seed, render_mode="rgb_array", frame_stack=frame_stack
        )
        space = self.env.action_space
        check(
            isinstance(space, gym.spaces.Discrete),
            f"{self.env_id} has a {type(space).__name__} action space; watch plays discrete actions",
        )
        self.action_labels = action_names(self.env)
        self.action_index = {name: index for index, name in enumerate(self.action_labels)}
        if self.human:
            check(
                bool({"UP", "DOWN", "LEFT", "RIGHT", "FIRE"} & set(self.action_labels)),
                f"--human: the actions of {self.env_id} ({', '.join(self.action_labels)}) have no "
                "keys; play a built-in or ALE game",
            )
        self.pixels = len(self.env.observation_space.shape) == 3
        self.network_spec: dict[str, Any] = checkpoint["network"] if checkpoint is not None else {}
        if checkpoint is not None:
            self.network: QNetwork = network_from_checkpoint(checkpoint)
        else:
            torch.manual_seed(cfg.seed)
            self.network = build_q_network(tuple(self.env.observation_space.shape), int(space.n))
        self.network.to(self.device).eval()

        # Settings the keys change.
        self.paused = False
        self.pending_steps = 0
        default_epsilon = 0.01 if checkpoint is not None else 1.0
        self.epsilon = default_epsilon if cfg.epsilon is None else cfg.epsilon
        self.speed = cfg.fps or self.real_time_fps()
        if self.follow and (self.speed == UNCAPPED or self.speed > FOLLOW_MAX_FPS):
            self.speed = FOLLOW_MAX_FPS
        self.saliency_on = cfg.saliency
        self.show_help = False
        self.quit_requested = False

        # Game and score state.
        self.rng = np.random.default_rng(cfg.seed)
        self.observation, _ = self.env.reset()
        self.frame = self.env.render()
        self.episode_over = False
        self.episode_score = 0.0
        self.episode_steps = 0
        self.episode_count = 0
        self.scores: list[float] = []
        self.total_steps = 0  # agent steps taken in the game
        self.frames = 0  # calls to step(): agent steps plus the resets after game over
        self.q_values = np.zeros(len(self.action_labels), dtype=np.float32)
        self.action = 0
        self.saliency: np.ndarray | None = None
        self._held_keys: set[int] = set()
        self._tapped_keys: set[int] = set()
        self._step_times: deque[float] = deque(maxlen=120)
        self._message = ""
        self._message_until = 0.0
        self._next_follow_check = time.monotonic() + FOLLOW_INTERVAL
        self._recorder: Recorder | None = None
        self._recordings = 0
        self._screenshots = 0
        self._fresh_frame = True
        self.saved: list[Path] = []
        self._think()

        # Layout: the game scaled by a whole number, the panel on its right, an even-sized window.
        frame_height, frame_width = self.frame.shape[:2]
        self.scale = cfg.scale or max(1, MAX_GAME_HEIGHT // frame_height)
        self.game_size = (frame_width * self.scale, frame_height * self.scale)
        pygame.font.init()
        self.fonts = {
            "title": pygame.font.Font(None, 30),
            "body": pygame.font.Font(None, 24),
            "small": pygame.font.Font(None, 20),
        }
        # Many actions (up to 18 in ALE games) get compact rows, so the window stays short.
        self.compact = len(self.action_labels) > 9
        self.row_height = 20 if self.compact else 26
        panel_height = 330 + len(self.action_labels) * self.row_height  # with a one-line key legend
        width = self.game_size[0] + PANEL_WIDTH
        height = max(self.game_size[1], panel_height)
        self.size = (width + width % 2, height + height % 2)
        if self.headless:
            self.surface = pygame.Surface(self.size)
        else:
            if not display_available():
                raise UserError(NO_DISPLAY)
            try:
                pygame.display.init()
                self.surface = pygame.display.set_mode(self.size)
            except pygame.error:
                raise UserError(NO_DISPLAY) from None
            pygame.display.set_caption(f"watch {self.env_id}")
            pygame.key.set_repeat()  # held keys are tracked, not repeated

        if cfg.record:
            self.start_recording()

    # -- speed ---------------------------------------------------------------------------------

    def real_time_fps(self) -> int:
        """Agent steps per second at the game's own speed."""
        return game_fps(self.env_id)

    def faster(self) -> None:
        speeds = [
            speed
            for speed in SPEEDS
            if not (self.follow and (speed == UNCAPPED or speed > FOLLOW_MAX_FPS))
        ]
        if self.speed == UNCAPPED:
            return
        higher = [speed for speed in speeds if speed == UNCAPPED or speed > self.speed]
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

    # -- input ---------------------------------------------------------------------------------

    GAME_KEYS = (pygame.K_UP, pygame.K_DOWN, pygame.K_LEFT, pygame.K_RIGHT, pygame.K_SPACE)

    def handle_key(self, key: int, pressed: bool = True) -> None:
        """React to one key press (or release, which only matters for the game keys of --human)."""
        if self.human and key in self.GAME_KEYS:
            if pressed:
                self._held_keys.add(key)
                self._tapped_keys.add(key)
            else:
                self._held_keys.discard(key)
            return
        if not pressed:
            return
        if key in (pygame.K_q, pygame.K_ESCAPE):
            self.quit_requested = True
        elif key in (pygame.K_SPACE, pygame.K_p):
            self.paused = not self.paused
            self.pending_steps = 0
        elif key in (pygame.K_RIGHT, pygame.K_n, pygame.K_PERIOD):
            if self.paused:
                self.pending_steps += 1
        elif key in (pygame.K_PLUS, pygame.K_EQUALS, pygame.K_KP_PLUS):
            self.faster()
        elif key in (pygame.K_MINUS, pygame.K_KP_MINUS):
            self.slower()
        elif key == pygame.K_e:
            self.cycle_epsilon()
        elif key == pygame.K_o:
            self.saliency_on = not self.saliency_on
            if self.saliency_on and not self.pixels:
                self._say("saliency needs a pixel game")
            self._think()
        elif key == pygame.K_r:
            if self.recording:
                self.stop_recording()
            else:
                self.start_recording()
        elif key == pygame.K_s:
            self.save_screenshot()
        elif key == pygame.K_h:
            self.show_help = not self.show_help

    def process_events(self) -> None:
        """Handle every queued pygame event (keys and the window's close button)."""
        if self.headless:
            return  # no window, no events
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                self.quit_requested = True
            elif event.type == pygame.KEYDOWN:
                self.handle_key(event.key, pressed=True)
            elif event.type == pygame.KEYUP:
                self.handle_key(event.key, pressed=False)

    def _human_action(self) -> int:
        """The action named by the arrows and space held (or tapped) since the last step, most
        specific name first: UP+RIGHT+space -> UPRIGHTFIRE, else UPRIGHT, UPFIRE, ..., NOOP."""
        keys = self._held_keys | self._tapped_keys
        self._tapped_keys.clear()
        vertical = "UP" if pygame.K_UP in keys else "DOWN" if pygame.K_DOWN in keys else ""
        horizontal = "RIGHT" if pygame.K_RIGHT in keys else "LEFT" if pygame.K_LEFT in keys else ""
        fire = "FIRE" if pygame.K_SPACE in keys else ""
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

    # -- the game ------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Whether --episodes or --max-steps (a headless run: one game by default) are done."""
        episodes = self.cfg.episodes or (1 if self.headless and not self.cfg.max_steps else 0)
        if episodes and self.episode_count >= episodes:
            return True
        return bool(self.cfg.max_steps) and self.total_steps >= self.cfg.max_steps

    def _think(self) -> None:
        """Q-values of the observation on screen, the action the agent will take, and the
        saliency of that action's value when the overlay is on."""
        with torch.no_grad():
            observation = torch.as_tensor(self.observation, device=self.device)[None]
            self.q_values = self.network(observation)[0].float().cpu().numpy()
        if not self.human:
            if self.rng.random() < self.epsilon:
                self.action = int(self.rng.integers(len(self.action_labels)))
            else:
                self.action = int(self.q_values.argmax())
        self.saliency = None
        if self.saliency_on and self.pixels:
            self.saliency = saliency_map(self.network, self.observation, self.action)

    def step(self) -> None:
        """Advance one agent step; after game over, one step starts the next game (so the last
        frame of a game is shown)."""
        if self.episode_over:
            self.observation, _ = self.env.reset()
            self.episode_over = False
            self.episode_score = 0.0
            self.episode_steps = 0
        else:
            if self.human:
                self.action = self._human_action()
            self.observation, reward, terminated, truncated, _ = self.env.step(self.action)
            self.episode_score += float(reward)
            self.episode_steps += 1
            self.total_steps += 1
            self._step_times.append(time.perf_counter())
            if terminated or truncated:
                self.episode_over = True
                self.episode_count += 1
                self.scores.append(self.episode_score)
        self.frame = self.env.render()
        self.frames += 1
        self._fresh_frame = True
        self._think()

    def should_step(self) -> bool:
        if not self.paused:
            return True
        if self.pending_steps:
            self.pending_steps -= 1
            return True
        return False

    def tick(self) -> None:
        """One pass of the loop: events, a step unless paused, a reload with --follow, a redraw."""
        self.process_events()
        if self.quit_requested:
            return
        if self.should_step():
            self.step()
        if self.follow:
            self.reload_if_changed()
        self.draw()

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
            if checkpoint["network"] != self.network_spec:
                self._say("the new checkpoint has another network; not reloaded")
                self.checkpoint_mtime = mtime
                return False
            self.network.load_state_dict(checkpoint["q_network"])
        except UserError:
            return False  # being replaced right now; the next check will see the new file
        self.checkpoint_mtime = mtime
        self.training_step = int(checkpoint["step"])
        self._say(f"reloaded: step {self.training_step:,}")
        self._think()
        return True

    # -- output --------------------------------------------------------------------------------

    @property
    def recording(self) -> bool:
        return self._recorder is not None

    def capture(self) -> np.ndarray:
        """The whole window (game and panel) as an (H, W, 3) uint8 RGB array."""
        width, height = self.surface.get_size()
        data = pygame.image.tobytes(self.surface, "RGB")
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3).copy()

    def start_recording(self, path: str | Path | None = None) -> Path:
        """Start writing every new frame of the window to a video (--record, or watch-<time>.mp4)."""
        self._recordings += 1
        if path is None:
            base = Path(self.cfg.record) if self.cfg.record else Path(_timestamped("mp4"))
            path = _numbered(base, self._recordings)
        path = check_output_path(str(path), "record", (".mp4", ".gif"))
        fps = self.speed if self.speed != UNCAPPED else 30
        self._recorder = Recorder(path, fps)
        self._fresh_frame = True  # the frame on screen is the recording's first
        self._say(f"recording to {path.name}")
        return path

    def stop_recording(self) -> Path | None:
        """Finish the video file; returns its path."""
        if self._recorder is None:
            return None
        recorder, self._recorder = self._recorder, None
        path = recorder.close()
        if recorder.frames_written:
            self.saved.append(path)
            self._say(f"saved {path.name} ({recorder.frames_written} frames)")
        return path

    def save_screenshot(self, path: str | Path | None = None) -> Path:
        """Save the window as a PNG (--screenshot, or watch-<time>.png)."""
        self._screenshots += 1
        if path is None:
            base = Path(self.cfg.screenshot) if self.cfg.screenshot else Path(_timestamped("png"))
            path = _numbered(base, self._screenshots)
        path = check_output_path(str(path), "screenshot", (".png",))
        pygame.image.save(self.surface, str(path))
        self.saved.append(path)
        self._say(f"saved {path.name}")
        return path

    def _say(self, message: str, seconds: float = 2.5) -> None:
        self._message = message
        self._message_until = time.monotonic() + seconds

    def close(self) -> None:
        self.stop_recording()
        self.env.close()
        if not self.headless:
            pygame.display.quit()

    # -- drawing -------------------------------------------------------------------------------

    def measured_fps(self) -> float:
        """Agent steps per second over the last second or so."""
        times = [t for t in self._step_times if t >= time.perf_counter() - 1.5]
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-6)

    def draw(self) -> None:
        """Redraw the window (game, saliency, panel, help) and feed a recording."""
        surface = self.surface
        surface.fill(BACKGROUND)
        game_top = (self.size[1] - self.game_size[1]) // 2
        self._draw_game(surface, (0, game_top))
        self._draw_panel(surface, self.game_size[0])
        if self.show_help:
            self._draw_help(surface)
        if self._recorder is not None and self._fresh_frame:
            self._recorder.add(self.capture())
            if self._recorder.full:
                self._say(f"GIF limit of {GIF_FRAME_LIMIT} frames reached")
                self.stop_recording()
        self._fresh_frame = False
        if not self.headless:
            pygame.display.flip()

    def _draw_game(self, surface: pygame.Surface, top_left: tuple[int, int]) -> None:
        frame = self.frame
        if self.saliency_on and self.saliency is not None:
            frame = blend_heat_map(frame, self.saliency)
        frame = np.ascontiguousarray(frame)
        height, width = frame.shape[:2]
        image = pygame.image.frombuffer(frame.tobytes(), (width, height), "RGB")
        surface.blit(pygame.transform.scale(image, self.game_size), top_left)  # nearest neighbour

    def _text(
        self,
        surface: pygame.Surface,
        text: str,
        position: tuple[int, int],
        font: str = "body",
        color: tuple[int, int, int] = TEXT,
        align: str = "left",
    ) -> int:
        """Draw one line; returns its width."""
        image = self.fonts[font].render(text, True, color)
        x, y = position
        if align == "right":
            x -= image.get_width()
        surface.blit(image, (x, y))
        return image.get_width()

    def _fit(self, text: str, font: str, width: int) -> str:
        """Shorten `text` from the left with '...' until it fits `width` pixels."""
        if self.fonts[font].size(text)[0] <= width:
            return text
        while text and self.fonts[font].size("..." + text)[0] > width:
            text = text[1:]
        return "..." + text

    def _divider(self, surface: pygame.Surface, left: int, y: int) -> int:
        pygame.draw.line(surface, DIVIDER, (left + PADDING, y), (left + PANEL_WIDTH - PADDING, y))
        return y + 12

    def _draw_panel(self, surface: pygame.Surface, left: int) -> None:
        pygame.draw.rect(surface, PANEL, (left, 0, PANEL_WIDTH, self.size[1]))
        x, right = left + PADDING, left + PANEL_WIDTH - PADDING
        inner = PANEL_WIDTH - 2 * PADDING
        y = PADDING

        # Who is playing what.
        self._text(surface, self._fit(self.env_id, "title", inner), (x, y), "title")
        y += 28
        if self.checkpoint_path is not None:
            source = f"{self.checkpoint_path.parent.name}/{self.checkpoint_path.name}"
            self._text(surface, self._fit(source, "small", inner), (x, y), "small", MUTED)
            y += 18
            self._text(surface, f"trained {self.training_step:,} steps", (x, y), "small", MUTED)
        else:
            self._text(surface, "untrained network", (x, y), "small", MUTED)
        y += 18
        if self.human:
            y += 4
            self._text(surface, "you are playing", (x, y), "small", ACCENT)
            y += 18
        y = self._divider(surface, left, y + 8)

        # Q-values: one row per action, bars scaled from the lowest to the highest value.
        self._text(surface, "ACTION VALUES (Q)", (x, y), "small", MUTED)
        y += 22
        font = "small" if self.compact else "body"
        bar_height = self.row_height - 8
        label_width = max(self.fonts[font].size(name)[0] for name in self.action_labels)
        value_width = self.fonts[font].size("-000.00")[0]
        bar_left = x + label_width + 10
        bar_width = max(40, right - value_width - 8 - bar_left)
        low, high = float(self.q_values.min()), float(self.q_values.max())
        for index, name in enumerate(self.action_labels):
            chosen = index == self.action
            value = float(self.q_values[index])
            value = 0.0 if abs(value) < 0.005 else value  # no "-0.00"
            fraction = 1.0 if high - low < 1e-6 else 0.06 + 0.94 * (value - low) / (high - low)
            color = ACCENT if chosen else TEXT
            self._text(surface, name, (x, y), font, color)
            bar_top = y + 1
            pygame.draw.rect(
                surface, BACKGROUND, (bar_left, bar_top, bar_width, bar_height), border_radius=3
            )
            pygame.draw.rect(
                surface,
                ACCENT if chosen else BAR,
                (bar_left, bar_top, max(3, round(bar_width * fraction)), bar_height),
                border_radius=3,
            )
            self._text(surface, f"{value:.2f}", (right, y), font, color, align="right")
            y += self.row_height
        y = self._divider(surface, left, y + 2)

        # Score and speed.
        mean = f"{np.mean(self.scores):.2f}   (last {self.scores[-1]:g})" if self.scores else "-"
        target = "max" if self.speed == UNCAPPED else f"{self.speed}"
        if self.headless:  # runs flat out; the speed is the recording's frame rate
            speed = f"{target} (video)"
        else:
            measured = self.measured_fps() if not self.paused else 0.0
            speed = f"{measured:.0f}   (target {target})"
        rows = [
            ("score", f"{self.episode_score:g}"),
            (
                "game",
                f"{self.episode_count + (0 if self.episode_over else 1)}   (step {self.episode_steps})",
            ),
            (f"mean of {len(self.scores)}" if self.scores else "mean score", mean),
            ("epsilon", "-" if self.human else f"{self.epsilon:g}"),
            ("steps / s", speed),
        ]
        for label, value in rows:
            self._text(surface, label, (x, y), "body", MUTED)
            self._text(surface, value, (right, y), "body", TEXT, align="right")
            y += 24
        y = self._divider(surface, left, y + 2)

        # Status: paused, recording, saliency, messages.
        chips: list[tuple[str, tuple[int, int, int]]] = []
        if self.paused:
            chips.append(("PAUSED", ACCENT))
        if self.recording:
            chips.append(("REC", RECORDING))
        if self.saliency_on:
            chips.append(("SALIENCY", GOOD))
        if self.episode_over:
            chips.append(("GAME OVER", MUTED))
        chip_x = x
        for label, color in chips:
            width = self.fonts["small"].size(label)[0] + 14
            if label == "REC":
                width += 10
            pygame.draw.rect(surface, color, (chip_x, y, width, 20), width=1, border_radius=4)
            text_x = chip_x + 7
            if label == "REC":
                pygame.draw.circle(surface, color, (chip_x + 10, y + 10), 4)
                text_x += 10
            self._text(surface, label, (text_x, y + 4), "small", color)
            chip_x += width + 6
        y += 28
        if self._message and time.monotonic() < self._message_until:
            self._text(surface, self._fit(self._message, "small", inner), (x, y), "small", TEXT)

        # The keys, at the bottom: all of them where there is room, else where to find them.
        pause = "p" if self.human else "space"
        step = "n" if self.human else "right"
        legend = [
            [(pause, "pause"), (step, "step"), ("+ -", "speed")],
            [("e", "epsilon"), ("o", "saliency"), ("r", "record")],
            [("s", "screenshot"), ("h", "help"), ("q", "quit")],
        ]
        if self.size[1] - y < 60 + len(legend) * 20:
            legend = [[("h", "help"), (pause, "pause"), ("q", "quit")]]
        y = self.size[1] - PADDING - len(legend) * 20 + 4
        for row in legend:
            for column, (key, action) in enumerate(row):
                key_x = x + column * (inner // 3)
                width = self._text(surface, key, (key_x, y), "small", ACCENT)
                self._text(surface, action, (key_x + width + 6, y), "small", MUTED)
            y += 20

    def _draw_help(self, surface: pygame.Surface) -> None:
        rows = [
            ("space  /  p" if not self.human else "p", "pause / resume"),
            ("right  /  n" if not self.human else "n", "one step while paused"),
            ("+  /  -", "faster / slower"),
            ("e", "epsilon  0 > 0.01 > 0.05 > 1"),
            ("o", "saliency overlay"),
            ("r", "start / stop recording"),
            ("s", "screenshot"),
            ("h", "this help"),
            ("q  /  Esc", "quit"),
        ]
        if self.human:
            rows.insert(0, ("arrows, space", "move, FIRE"))
        font = self.fonts["body"]
        key_width = max(font.size(key)[0] for key, _ in rows)
        text_width = max(font.size(text)[0] for _, text in rows)
        width = key_width + text_width + 3 * 24
        height = 56 + len(rows) * 28 + 16
        # Over the game when it fits there, so the panel stays readable.
        area = self.game_size[0] if width + 2 * PADDING <= self.game_size[0] else self.size[0]
        left = (area - width) // 2
        top = (self.size[1] - height) // 2
        box = pygame.Surface((width, height), pygame.SRCALPHA)
        box.fill((*BACKGROUND, 240))
        surface.blit(box, (left, top))
        pygame.draw.rect(surface, DIVIDER, (left, top, width, height), width=1, border_radius=6)
        self._text(surface, "Keys", (left + 24, top + 18), "title", TEXT)
        y = top + 56
        for key, text in rows:
            self._text(surface, key, (left + 24, y), "body", ACCENT)
            self._text(surface, text, (left + 48 + key_width, y), "body", TEXT)
            y += 28


# A small heat colour map: transparent dark purple -> red -> orange -> pale yellow.
_HEAT_STOPS = np.array([0.0, 0.35, 0.7, 1.0])
_HEAT_COLORS = np.array(
    [[40, 10, 90], [200, 30, 60], [255, 140, 20], [255, 245, 170]], dtype=np.float32
)


def heat_map_rgba(saliency: np.ndarray, max_alpha: float = 0.7) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 4) uint8 colours whose opacity grows with the value, so
    the game stays visible where the agent does not look."""
    values = np.clip(saliency, 0.0, 1.0)
    rgb = np.stack(
        [np.interp(values, _HEAT_STOPS, _HEAT_COLORS[:, channel]) for channel in range(3)], axis=-1
    )
    # Below a quarter of the peak stays clear: the map marks regions instead of tinting everything.
    alpha = max_alpha * np.clip((values - 0.25) / 0.75, 0.0, 1.0) * 255
    return np.concatenate([rgb, alpha[..., None]], axis=-1).round().astype(np.uint8)


def blend_heat_map(frame: np.ndarray, saliency: np.ndarray) -> np.ndarray:
    """Lay the (84, 84) saliency over an (H, W, 3) game frame. The observation is the whole
    screen resized to 84x84, so the map is resized back over the whole frame. Blending at the
    frame's own resolution (before the nearest-neighbour scale-up) costs about a millisecond."""
    height, width = frame.shape[:2]
    heat = cv2.resize(saliency, (width, height), interpolation=cv2.INTER_LINEAR)
    colours = heat_map_rgba(heat).astype(np.float32)
    alpha = colours[..., 3:] / 255.0
    blended = frame.astype(np.float32) * (1.0 - alpha) + colours[..., :3] * alpha
    return blended.round().astype(np.uint8)


def _timestamped(extension: str) -> str:
    return f"watch-{time.strftime('%Y%m%d-%H%M%S')}.{extension}"


# ----------------------------------------------------------------------------- entry points


def watch(cfg: WatchConfig) -> None:
    """Show an agent (or a person, with --human) playing until quit, or run headless and write
    --record / --screenshot. See the module docstring for the keys."""
    torch.set_num_threads(1)  # one frame at a time; leave the other cores to training
    headless = cfg.headless
    if headless:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    elif not display_available():
        validate(cfg)
        raise UserError(NO_DISPLAY)
    viewer = Viewer(cfg, headless=headless)
    clock = pygame.time.Clock()
    try:
        viewer.draw()
        while not viewer.quit_requested and not viewer.finished:
            viewer.tick()
            if not headless:
                if viewer.paused:
                    clock.tick(PAUSED_FPS)
                else:
                    clock.tick(viewer.speed)  # UNCAPPED (0) means no limit
        if cfg.screenshot and headless:
            viewer.save_screenshot()
    finally:
        viewer.close()
    for path in viewer.saved:
        print(f"saved {path}")
    if viewer.scores:
        print(
            f"{viewer.env_id}: mean score {np.mean(viewer.scores):.2f} over {len(viewer.scores)} "
            f"games (last {viewer.scores[-1]:g})"
        )


def record_episode(
    network: QNetwork | None,
    env_id: str,
    *,
    frame_stack: int = 4,
    epsilon: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    max_frames: int = 2_000,
) -> np.ndarray:
    """The game frames (env.render(), T x H x W x 3 uint8) of one game played epsilon-greedily
    by `network` (uniformly random actions when it is None), at most `max_frames` of them;
    for evaluation videos in TensorBoard."""
    env = make_env(env_id, seed=seed, render_mode="rgb_array", frame_stack=frame_stack)
    rng = np.random.default_rng(seed)
    device = torch.device(device)
    frames: list[np.ndarray] = []
    was_training = network.training if network is not None else False
    if network is not None:
        network.eval()
    try:
        observation, _ = env.reset()
        frames.append(env.render())
        num_actions = int(env.action_space.n)
        while len(frames) < max_frames:
            if network is None or rng.random() < epsilon:
                action = int(rng.integers(num_actions))
            else:
                with torch.no_grad():
                    q_values = network(torch.as_tensor(observation, device=device)[None])
                action = int(q_values.argmax(dim=1).item())
            observation, _, terminated, truncated, _ = env.step(action)
            frames.append(env.render())
            if terminated or truncated:
                break
    finally:
        env.close()
        if network is not None:
            network.train(was_training)
    return np.stack(frames)


def spawn_watcher(
    policy_path: Path, env_id: str, *, seed: int, device: str = "cpu"
) -> subprocess.Popen:
    """Start `run.py watch --follow` on `policy_path` in its own process (a window beside a
    training run, reloading the weights whenever the trainer rewrites the file)."""
    repo_root = Path(__file__).resolve().parents[1]
    command = [
        sys.executable,
        str(repo_root / "run.py"),
        "watch",
        "--checkpoint",
        str(Path(policy_path).resolve()),
        "--follow",
        "--env-id",
        env_id,
        "--seed",
        str(seed),
        "--device",
        device,
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=repo_root, env=environment)
