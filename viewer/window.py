"""The pygame window: a `ViewerSession` drawn as the game scaled up with crisp pixels and a side
panel (the Q-value of every action, the chosen one highlighted; score, games, mean score,
epsilon, steps per second, the checkpoint's training step), driven by keys, recorded and
screenshotted as a whole.

    python run.py watch --checkpoint runs/<name>             # the trained agent
    python run.py watch --checkpoint runs/<name> --saliency  # where it looks
    python run.py watch --env-id ALE/Breakout-v5 --human     # play it yourself
    python run.py watch --checkpoint runs/<name> --headless --record out.mp4 --episodes 3

Press `h` for the keys. `--follow` reloads the checkpoint whenever its file changes, which is
how `train-dqn --watch` shows the agent while it learns.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from playground.display import display_available
from playground.errors import UserError
from playground.media import GIF_FRAME_LIMIT, VideoWriter
from viewer.config import WatchConfig, check_output_path, validate
from viewer.heatmap import blend_heat_map
from viewer.session import UNCAPPED, ViewerSession

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame

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
DISTRIBUTION_HEIGHT = 104  # the chosen action's return distribution, under the Q-values


GAME_KEY_NAMES = {
    pygame.K_UP: "UP",
    pygame.K_DOWN: "DOWN",
    pygame.K_LEFT: "LEFT",
    pygame.K_RIGHT: "RIGHT",
    pygame.K_SPACE: "FIRE",
}
"""The keys a person plays with (--human) and the action-name parts they stand for."""


def _numbered(path: Path, index: int) -> Path:
    """out.mp4, out-2.mp4, out-3.mp4, ...: repeated recordings never overwrite each other."""
    return path if index <= 1 else path.with_name(f"{path.stem}-{index}{path.suffix}")


def _timestamped(extension: str) -> str:
    return f"watch-{time.strftime('%Y%m%d-%H%M%S')}.{extension}"


class Viewer(ViewerSession):
    """A `ViewerSession` in a pygame window (or on an off-screen surface with `headless`).

    `watch()` is a loop over `tick()`: `process_events()`, `step()` when not paused,
    `reload_if_changed()` and `draw()`. Tests drive the same methods with synthetic key events.
    """

    def __init__(self, cfg: WatchConfig, headless: bool | None = None) -> None:
        super().__init__(cfg)
        self.headless = cfg.headless if headless is None else headless
        self.show_help = False
        self._recorder: VideoWriter | None = None
        self._recordings = 0
        self._screenshots = 0
        self._fresh_frame = True
        self.saved: list[Path] = []

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
        if self.distribution is not None:
            panel_height += DISTRIBUTION_HEIGHT
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

    def step(self) -> None:
        super().step()
        self._fresh_frame = True  # a recording takes the next drawing

    # -- input ---------------------------------------------------------------------------------

    def handle_key(self, key: int, pressed: bool = True) -> None:
        """React to one key press (or release, which only matters for the game keys of --human)."""
        if self.human and key in GAME_KEY_NAMES:
            self.press_game_key(GAME_KEY_NAMES[key], pressed)
            return
        if not pressed:
            return
        if key in (pygame.K_q, pygame.K_ESCAPE):
            self.quit_requested = True
        elif key in (pygame.K_SPACE, pygame.K_p):
            self.toggle_pause()
        elif key in (pygame.K_RIGHT, pygame.K_n, pygame.K_PERIOD):
            self.step_once()
        elif key in (pygame.K_PLUS, pygame.K_EQUALS, pygame.K_KP_PLUS):
            self.faster()
        elif key in (pygame.K_MINUS, pygame.K_KP_MINUS):
            self.slower()
        elif key == pygame.K_e:
            self.cycle_epsilon()
        elif key == pygame.K_o:
            self.toggle_saliency()
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
        self._recorder = VideoWriter(path, fps)
        self._fresh_frame = True  # the frame on screen is the recording's first
        self.say(f"recording to {path.name}")
        return path

    def stop_recording(self) -> Path | None:
        """Finish the video file; returns its path."""
        if self._recorder is None:
            return None
        recorder, self._recorder = self._recorder, None
        path = recorder.close()
        if recorder.frames_written:
            self.saved.append(path)
            self.say(f"saved {path.name} ({recorder.frames_written} frames)")
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
        self.say(f"saved {path.name}")
        return path

    def close(self) -> None:
        self.stop_recording()
        super().close()
        if not self.headless:
            pygame.display.quit()

    # -- drawing -------------------------------------------------------------------------------

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
                self.say(f"GIF limit of {GIF_FRAME_LIMIT} frames reached")
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
        elif align == "center":
            x -= image.get_width() // 2
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
        """The side panel, top to bottom: who plays what, the action values (and a
        distributional head's returns), score and speed, status chips, the keys."""
        pygame.draw.rect(surface, PANEL, (left, 0, PANEL_WIDTH, self.size[1]))
        x, right = left + PADDING, left + PANEL_WIDTH - PADDING
        inner = PANEL_WIDTH - 2 * PADDING
        y = self._divider(surface, left, self._draw_source(surface, x, PADDING, inner) + 8)
        y = self._divider(surface, left, self._draw_action_values(surface, x, right, y) + 2)
        if self.distribution is not None:
            y = self._divider(surface, left, self._draw_distribution(surface, x, y, inner) + 2)
        y = self._divider(surface, left, self._draw_score(surface, x, right, y) + 2)
        y = self._draw_status(surface, x, y, inner)
        self._draw_keys(surface, x, y, inner)

    def _draw_source(self, surface: pygame.Surface, x: int, y: int, inner: int) -> int:
        """Who is playing what: the game, the checkpoint and its training steps."""
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
        return y

    def _draw_action_values(self, surface: pygame.Surface, x: int, right: int, y: int) -> int:
        """One row per action, bars scaled from the lowest to the highest value, the chosen
        action highlighted."""
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
        return y

    def _draw_score(self, surface: pygame.Surface, x: int, right: int, y: int) -> int:
        """Score, game, mean score, epsilon and speed, one labelled row each."""
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
        return y

    def _draw_status(self, surface: pygame.Surface, x: int, y: int, inner: int) -> int:
        """Chips for paused, recording, saliency and game over, then the current message."""
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
        if self.message:
            self._text(surface, self._fit(self.message, "small", inner), (x, y), "small", TEXT)
        return y

    def _draw_keys(self, surface: pygame.Surface, x: int, y: int, inner: int) -> None:
        """The keys, at the bottom: all of them where there is room below `y`, else where to
        find them."""
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

    def _draw_distribution(self, surface: pygame.Surface, x: int, y: int, width: int) -> int:
        """The chosen action's distribution of returns (a distributional head: its Q-value is
        this distribution's mean, marked): probability mass over returns, from the lowest to
        the highest drawn. Returns the y below it."""
        assert self.distribution is not None
        name = self.action_labels[self.action]
        kind = "C51" if self.distribution.kind == "c51" else "QUANTILES"
        self._text(surface, self._fit(f"RETURNS OF {name.upper()} ({kind})", "small", width),
                   (x, y), "small", MUTED)  # fmt: skip
        y += 20
        returns, mass = self.distribution.histogram(self.action)
        height = DISTRIBUTION_HEIGHT - 46
        pygame.draw.rect(surface, BACKGROUND, (x, y, width, height), border_radius=3)
        low, high = float(returns.min()), float(returns.max())
        span = max(high - low, 1e-6)
        peak = max(float(mass.max()), 1e-6)
        bar = max(1, width // max(len(returns), 1) - 1)
        for value, weight in zip(returns, mass, strict=True):
            left = x + round((float(value) - low) / span * (width - bar))
            tall = round(float(weight) / peak * (height - 4))
            if tall > 0:
                pygame.draw.rect(surface, BAR, (left, y + height - 2 - tall, bar, tall))
        mean = float(self.q_values[self.action])
        mean_x = x + round(min(max((mean - low) / span, 0.0), 1.0) * (width - 1))
        pygame.draw.line(surface, ACCENT, (mean_x, y), (mean_x, y + height - 1), 2)
        y += height + 4
        self._text(surface, f"{low:.2f}", (x, y), "small", MUTED)
        self._text(
            surface, f"mean {mean:.2f}", (x + width // 2, y), "small", ACCENT, align="center"
        )
        self._text(surface, f"{high:.2f}", (x + width, y), "small", MUTED, align="right")
        return y + 18

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
