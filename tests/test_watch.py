"""The live viewer: keys drive it, it records and screenshots the whole window, it runs headless,
and it refuses bad paths, foreign games and a missing display with one line."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import pygame
import pytest
import torch
import tyro
from PIL import Image

import playground.display
from agents import training
from agents.config import DQNConfig
from agents.networks import build_q_network
from agents.rollout import play_games
from agents.saliency import gaussian_blur, saliency_map
from envs import action_names, game_fps, make_env
from playground.checkpoint import save_checkpoint
from playground.errors import UserError
from viewer import window as watch_module
from viewer.config import WatchConfig
from viewer.heatmap import blend_heat_map, heat_map_rgba
from viewer.session import EPSILON_CYCLE, FOLLOW_MAX_FPS, UNCAPPED
from viewer.window import NO_DISPLAY, Viewer, watch

CATCH = "Playground/Catch-v0"


def save_untrained_checkpoint(
    path: Path, env_id: str = CATCH, step: int = 1234, seed: int = 0, **head: Any
) -> Path:
    """A DQN checkpoint in the trainer's format holding an untrained network for `env_id`
    (`head`: build_q_network's head options, e.g. head="c51", atoms=11)."""
    env = make_env(env_id)
    shape, actions = tuple(env.observation_space.shape), int(env.action_space.n)
    env.close()
    torch.manual_seed(seed)
    network = build_q_network(shape, actions, **head)
    encoder = "nature" if len(shape) == 3 else "mlp"
    return save_checkpoint(
        path,
        {
            "kind": "dqn",
            "config": dataclasses.asdict(DQNConfig(env_id=env_id)),
            "network": {
                "observation_shape": list(shape),
                "num_actions": actions,
                "encoder": encoder,
                "dueling": False,
                **head,
            },
            "q_network": network.state_dict(),
            "step": step,
        },
    )


@pytest.fixture(scope="module")
def catch_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_untrained_checkpoint(tmp_path_factory.mktemp("checkpoint") / "policy.pt")


def press(viewer: Viewer, *keys: int) -> None:
    """Post key presses as pygame events and let the viewer handle them (without stepping)."""
    for key in keys:
        pygame.event.post(
            pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0)
        )
    viewer.process_events()


@pytest.fixture
def viewer(catch_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Viewer:
    monkeypatch.chdir(tmp_path)  # `r` without --record writes watch-<time>.mp4 here
    cfg = WatchConfig(
        checkpoint=str(catch_checkpoint), record="", screenshot=str(tmp_path / "shot.png")
    )
    viewer = Viewer(cfg)
    yield viewer
    viewer.close()


def test_keys_pause_step_speed_epsilon_saliency_quit(viewer: Viewer) -> None:
    assert (
        viewer.training_step == 1234 and viewer.epsilon == 0.01
    )  # a checkpoint plays almost greedily
    viewer.tick()
    assert viewer.frames == 1

    press(viewer, pygame.K_SPACE)
    assert viewer.paused
    for _ in range(3):
        viewer.tick()
    assert viewer.frames == 1  # paused: no steps
    press(viewer, pygame.K_RIGHT)
    viewer.tick()
    assert viewer.frames == 2  # exactly one step
    viewer.tick()
    assert viewer.frames == 2
    press(viewer, pygame.K_SPACE)
    viewer.tick()
    assert not viewer.paused and viewer.frames == 3

    assert viewer.speed == 10  # Catch's real-time speed
    press(viewer, pygame.K_PLUS)
    assert viewer.speed == 15
    press(viewer, pygame.K_MINUS, pygame.K_MINUS)
    assert viewer.speed == 5
    for _ in range(12):
        press(viewer, pygame.K_EQUALS)
    assert viewer.speed == UNCAPPED
    press(viewer, pygame.K_MINUS)
    assert viewer.speed == 120

    seen = []
    for _ in range(5):
        press(viewer, pygame.K_e)
        seen.append(viewer.epsilon)
    assert seen == [0.05, 1.0, 0.0, 0.01, 0.05]
    assert EPSILON_CYCLE == (0.0, 0.01, 0.05, 1.0)

    assert not viewer.saliency_on and viewer.saliency is None
    press(viewer, pygame.K_o)
    assert viewer.saliency_on
    assert viewer.saliency.shape == (84, 84) and viewer.saliency.min() >= 0
    assert viewer.saliency.max() == pytest.approx(1.0)
    viewer.tick()
    press(viewer, pygame.K_o)
    assert not viewer.saliency_on

    press(viewer, pygame.K_h)
    assert viewer.show_help
    viewer.draw()  # the help overlay draws
    assert not viewer.quit_requested
    press(viewer, pygame.K_q)
    assert viewer.quit_requested


def test_panel_labels_are_the_action_names(viewer: Viewer) -> None:
    env = make_env(CATCH)
    assert viewer.action_labels == action_names(env) == ["NOOP", "LEFT", "RIGHT"]
    env.close()
    assert viewer.q_values.shape == (3,)
    viewer.epsilon = 0.0  # greedy: the highlighted action is the best valued one, every step
    for _ in range(20):
        viewer.step()
        assert viewer.action == int(viewer.q_values.argmax())


def test_recording_and_screenshot_hold_the_whole_window(viewer: Viewer, tmp_path: Path) -> None:
    width, height = viewer.size
    assert width == 84 * viewer.scale + watch_module.PANEL_WIDTH
    press(viewer, pygame.K_r)
    assert viewer.recording
    for _ in range(4):
        viewer.tick()
    press(viewer, pygame.K_r)
    assert not viewer.recording
    video = viewer.saved[-1]
    assert video.name.startswith("watch-") and video.suffix == ".mp4"
    assert (tmp_path / video).stat().st_size > 0
    frames = np.stack(list(_ffmpeg_frames(tmp_path / video)))
    assert frames.shape == (4, height, width, 3)  # one frame per step

    press(viewer, pygame.K_s)
    screenshot = tmp_path / "shot.png"
    assert viewer.saved[-1] == screenshot
    with Image.open(screenshot) as image:
        assert image.format == "PNG" and image.size == (width, height)
        pixels = np.asarray(image.convert("RGB"))
    assert np.array_equal(pixels, viewer.capture())


def _ffmpeg_frames(path: Path):
    import imageio.v2 as imageio

    with imageio.get_reader(str(path), format="FFMPEG") as reader:
        yield from reader


def test_headless_run_writes_gif_and_png(catch_checkpoint: Path, tmp_path: Path) -> None:
    gif, png = tmp_path / "out.gif", tmp_path / "out.png"
    watch(
        WatchConfig(
            checkpoint=str(catch_checkpoint),
            headless=True,
            record=str(gif),
            screenshot=str(png),
            max_steps=5,
            saliency=True,
        )
    )
    frames = iio.imread(gif, index=None)
    with Image.open(png) as image:
        size = image.size
    assert frames.shape[0] == 6  # the first frame and 5 steps
    assert frames.shape[1:3] == (size[1], size[0])


def test_window_loop_plays_the_requested_games(
    catch_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    watch(WatchConfig(checkpoint=str(catch_checkpoint), episodes=2, fps=120))
    assert "over 2 games" in capsys.readouterr().out


def test_untrained_agent_plays_cartpole_from_its_rendering(tmp_path: Path) -> None:
    png = tmp_path / "cartpole.png"
    viewer = Viewer(
        WatchConfig(env_id="CartPole-v1", headless=True, max_steps=3, screenshot=str(png))
    )
    try:
        assert viewer.epsilon == 1.0 and viewer.training_step is None  # no checkpoint: random play
        assert viewer.frame.shape == (400, 600, 3)
        assert viewer.action_labels == ["ACTION_0", "ACTION_1"]
        while not viewer.finished:
            viewer.tick()
        viewer.handle_key(pygame.K_o)  # saliency is for pixel games: the key only says so
        assert viewer.saliency is None
        viewer.draw()
        viewer.save_screenshot()
    finally:
        viewer.close()
    assert viewer.total_steps == 3
    with Image.open(png) as image:
        assert image.size == viewer.size


def test_another_game_needs_the_same_spaces(catch_checkpoint: Path) -> None:
    with pytest.raises(UserError, match="--env-id") as error:
        Viewer(WatchConfig(checkpoint=str(catch_checkpoint), env_id="CartPole-v1", headless=True))
    assert "\n" not in str(error.value)
    # Breakout-v0 shows (4, 84, 84) frames and has 3 actions, like Catch: allowed.
    viewer = Viewer(
        WatchConfig(
            checkpoint=str(catch_checkpoint), env_id="Playground/Breakout-v0", headless=True
        )
    )
    assert viewer.env_id == "Playground/Breakout-v0"
    viewer.close()


@pytest.mark.parametrize(
    ("field", "name", "message"),
    [
        ("record", "missing/out.mp4", "does not exist"),
        ("record", "out.avi", r"\.mp4 or \.gif"),
        ("screenshot", "out.jpg", r"\.png"),
        ("screenshot", "file.txt/out.png", "is a file, so nothing can be written under it"),
    ],
)
def test_bad_output_paths_are_refused_before_anything_runs(
    tmp_path: Path, field: str, name: str, message: str
) -> None:
    (tmp_path / "file.txt").write_text("not a folder")
    cfg = WatchConfig(env_id=CATCH, headless=True, **{field: str(tmp_path / name)})
    with pytest.raises(UserError, match=message):
        watch(cfg)
    assert list(tmp_path.iterdir()) == [tmp_path / "file.txt"]


def test_missing_checkpoint_and_missing_display(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UserError, match="--checkpoint: .*none.pt not found"):
        watch(WatchConfig(checkpoint=str(tmp_path / "none.pt"), headless=True))
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(playground.display.sys, "platform", "linux")
    with pytest.raises(UserError) as error:
        watch(WatchConfig(env_id=CATCH))
    assert str(error.value) == NO_DISPLAY


def test_follow_reloads_a_rewritten_checkpoint(tmp_path: Path) -> None:
    path = save_untrained_checkpoint(tmp_path / "policy.pt", step=100, seed=0)
    viewer = Viewer(WatchConfig(checkpoint=str(path), follow=True, headless=True))
    try:
        before = viewer.q_values.copy()
        assert not viewer.reload_if_changed(force=True)  # unchanged file
        save_untrained_checkpoint(path, step=200, seed=1)
        stamp = path.stat().st_mtime + 5
        os.utime(path, (stamp, stamp))
        assert viewer.reload_if_changed(force=True)
        assert viewer.training_step == 200
        assert not np.allclose(before, viewer.q_values)
        assert viewer.speed <= FOLLOW_MAX_FPS
    finally:
        viewer.close()


def test_human_keys_map_to_action_names(tmp_path: Path) -> None:
    viewer = Viewer(WatchConfig(env_id="Playground/Snake-v0", human=True))
    try:
        names = viewer.action_labels  # NOOP, UP, RIGHT, DOWN, LEFT
        press(viewer, pygame.K_SPACE)  # space is a game key for a player, not pause
        assert not viewer.paused
        viewer.step()
        assert names[viewer.action] == "NOOP"  # Snake has no FIRE
        press(viewer, pygame.K_DOWN)
        viewer.step()
        assert names[viewer.action] == "DOWN"
        pygame.event.post(
            pygame.event.Event(pygame.KEYUP, key=pygame.K_DOWN, mod=0, unicode="", scancode=0)
        )
        press(viewer, pygame.K_LEFT)
        viewer.step()
        assert names[viewer.action] == "LEFT"
        press(viewer, pygame.K_p)
        assert viewer.paused
    finally:
        viewer.close()


def test_game_fps_is_real_time() -> None:
    assert game_fps("ALE/Pong-v5") == 15  # 60 Hz, 4 frames per step
    assert game_fps(CATCH) == 10
    assert game_fps("CartPole-v1") == 50


def test_the_recorded_game_is_the_first_scored_game() -> None:
    torch.manual_seed(0)
    network = build_q_network((4, 84, 84), 3)
    games = play_games(network, CATCH, 3, epsilon=0.0, seed=3, record_frames=1_000)
    assert len(games.scores) == 3 and games.lengths == [11, 11, 11]
    assert len(games.frames) == 12  # a Catch game is 11 steps: 12 frames with the first
    assert all(frame.shape == (84, 84, 3) and frame.dtype == np.uint8 for frame in games.frames)
    # The caption of the last frame is the first game's final score.
    assert games.frame_scores[0] == 0.0 and games.frame_scores[-1] == games.scores[0]
    short = play_games(network, CATCH, 1, epsilon=0.0, seed=3, record_frames=5)
    assert len(short.frames) == 5 and short.scores == games.scores[:1]


def test_a_vector_games_video_on_a_machine_without_display_prints_no_sdl_error() -> None:
    # CartPole draws its frames with pygame; on a machine with no display SDL looked for one
    # and printed "error: XDG_RUNTIME_DIR is invalid ..." at every evaluation video.
    import subprocess
    import sys

    script = (
        "import os; from agents.networks import build_q_network; "
        "from agents.rollout import play_games; "
        "games = play_games(build_q_network((4,), 2), 'CartPole-v1', 1, epsilon=1.0, seed=0, "
        "record_frames=3); print(len(games.frames), os.environ.get('SDL_VIDEODRIVER'))"
    )
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER", "XDG_RUNTIME_DIR")
    }
    environment["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "dummy"]
    assert "XDG_RUNTIME_DIR" not in result.stderr and "error" not in result.stderr.lower()


def test_saliency_and_heat_map() -> None:
    image = torch.zeros(9, 9)
    image[4, 4] = 1.0
    blurred = gaussian_blur(image, sigma=1.0)
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5)  # mass kept away from the edges
    assert torch.equal(blurred, blurred.T) and blurred.argmax().item() == 4 * 9 + 4
    assert torch.allclose(gaussian_blur(torch.full((5, 5), 3.0), 2.0), torch.full((5, 5), 3.0))

    torch.manual_seed(0)
    network = build_q_network((4, 84, 84), 3)
    frames = np.random.default_rng(0).integers(0, 256, (4, 84, 84), dtype=np.uint8)
    saliency = saliency_map(network, frames, action=2)
    assert saliency.shape == (84, 84) and saliency.dtype == np.float32
    assert saliency.min() >= 0 and saliency.max() == pytest.approx(1.0)

    frame = np.random.default_rng(1).integers(0, 256, (210, 160, 3), dtype=np.uint8)
    assert np.array_equal(blend_heat_map(frame, np.zeros((84, 84), np.float32)), frame)
    hot = blend_heat_map(frame, np.ones((84, 84), np.float32))
    expected = (frame * 0.3 + np.array([255, 245, 170]) * 0.7).round()  # the top colour at 70 %
    assert np.abs(hot.astype(int) - expected).max() <= 1

    colours = heat_map_rgba(np.array([[0.0, 0.2, 0.5, 1.0]]))
    assert colours.shape == (1, 4, 4)
    assert colours[0, 0, 3] == 0 and colours[0, 1, 3] == 0  # weak saliency stays transparent
    assert 0 < colours[0, 2, 3] < colours[0, 3, 3] == round(0.7 * 255)


def test_training_starts_the_viewer_as_a_module_following_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    started = {}

    class FakePopen:
        def __init__(self, command: list[str], **kwargs: object) -> None:
            started.update(command=command, **kwargs)

    monkeypatch.setattr(playground.display.subprocess, "Popen", FakePopen)
    cfg = DQNConfig(env_id=CATCH, seed=7, watch="window")
    training.spawn_viewer(cfg, tmp_path)
    command = started["command"]
    repo_root = Path(training.__file__).resolve().parents[1]
    assert command[1:3] == ["-m", "viewer"]
    # The arguments as the viewer's own parser reads them (python -m viewer: tyro over
    # WatchConfig), so a flag it does not know, or a wrong value, fails here.
    seen = tyro.cli(WatchConfig, args=command[3:])
    assert seen == WatchConfig(
        checkpoint=str(tmp_path / "policy.pt"), follow=True, env_id=CATCH, seed=7, device="cpu"
    )
    assert started["env"]["PLAYGROUND_VIEWER_PARENT"] == str(os.getpid())
    web = dataclasses.replace(cfg, watch="web", watch_port=9999)
    training.spawn_viewer(web, tmp_path)
    seen = tyro.cli(WatchConfig, args=started["command"][3:])
    assert (seen.web, seen.run_dir, seen.host, seen.port) == (
        True, str(tmp_path.resolve()), "127.0.0.1", 9999,
    )  # fmt: skip
    assert started["cwd"] == repo_root and started["env"]["OMP_NUM_THREADS"] == "1"


@pytest.mark.parametrize("kind", ["c51", "qr"])
def test_a_distributional_head_shows_its_mean_and_the_chosen_actions_returns(
    kind: str, tmp_path: Path
) -> None:
    """The bars are the distributions' means, and the panel draws the chosen action's
    distribution under them (in the space it was given)."""
    checkpoint = save_untrained_checkpoint(tmp_path / "policy.pt", head=kind, atoms=11)
    png = tmp_path / "shot.png"
    viewer = Viewer(WatchConfig(checkpoint=str(checkpoint), headless=True, screenshot=str(png)))
    try:
        # The window has room for the panel with the distribution in it.
        needed = 330 + 3 * viewer.row_height + watch_module.DISTRIBUTION_HEIGHT
        assert viewer.size[1] >= needed
        distribution = viewer.distribution
        assert distribution is not None and distribution.kind == kind
        assert distribution.weights.shape == (3, 11)
        with torch.no_grad():
            observation = torch.as_tensor(viewer.observation)[None]
            outputs = viewer.network.outputs(observation)[0]
        if kind == "c51":
            means = (outputs.softmax(-1) * torch.linspace(-10, 10, 11)).sum(-1)
        else:
            means = outputs.mean(-1)
        assert viewer.q_values == pytest.approx(means.tolist(), abs=1e-5)
        returns, mass = distribution.histogram(viewer.action)
        assert mass.sum() == pytest.approx(1.0)
        assert float((returns * mass).sum()) == pytest.approx(
            float(viewer.q_values[viewer.action]), abs=0.5 if kind == "qr" else 1e-5
        )
        viewer.draw()
        pixels = pygame.surfarray.array3d(viewer.surface)
        left = viewer.game_size[0]
        accent = np.all(pixels[left:] == watch_module.ACCENT, axis=-1)
        assert accent.any()  # the mean's marker (and the chosen action's bar)
    finally:
        viewer.close()
