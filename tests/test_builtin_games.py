"""The built-in pixel games: gymnasium API conformance, determinism, rendering and game rules."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.builtin import BreakoutEnv, CatchEnv, PongEnv, SnakeEnv, game_symmetries, transform_frame
from envs.wrappers import GrayscaleFrame


@pytest.fixture(autouse=True)
def headless_pygame(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any "human" window opens on SDL's dummy video driver, without audio."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")


def rollout(env: gym.Env, seed: int, steps: int) -> tuple[list[np.ndarray], list[float]]:
    """Frames and rewards from `steps` steps of a fixed action sequence, resetting at game end."""
    actions = np.random.default_rng(1234).integers(env.action_space.n, size=steps)
    observation, _ = env.reset(seed=seed)
    frames, rewards = [observation], []
    for action in actions:
        observation, reward, terminated, truncated, _ = env.step(int(action))
        frames.append(observation)
        rewards.append(reward)
        if terminated or truncated:
            observation, _ = env.reset()
            frames.append(observation)
    return frames, rewards


def test_builtin_ids_are_registered_easiest_first() -> None:
    assert envs.BUILTIN_GAMES == (
        "Playground/Catch-v0",
        "Playground/Pong-v0",
        "Playground/Breakout-v0",
        "Playground/Snake-v0",
    )
    for env_id in envs.BUILTIN_GAMES:
        assert env_id in gym.registry
    envs.builtin.register_builtin_games()  # registering again is harmless


@pytest.mark.parametrize("env_id", envs.BUILTIN_GAMES)
def test_passes_gymnasium_env_checker(env_id: str) -> None:
    env = gym.make(env_id)
    # Without a render mode the checker also builds and renders each declared mode, "human"
    # included (on the dummy video driver).
    check_env(env.unwrapped)
    env.close()


@pytest.mark.parametrize("env_id", envs.BUILTIN_GAMES)
def test_spaces_and_action_meanings(env_id: str) -> None:
    env = gym.make(env_id)
    assert env.observation_space == gym.spaces.Box(0, 255, (84, 84, 3), np.uint8)
    meanings = env.unwrapped.get_action_meanings()
    assert isinstance(env.action_space, gym.spaces.Discrete)
    assert len(meanings) == env.action_space.n
    assert meanings[0] == "NOOP"
    assert env.metadata["render_modes"] == ["human", "rgb_array"]
    assert env.metadata["render_fps"] > 0


@pytest.mark.parametrize("env_id", envs.BUILTIN_GAMES)
def test_same_seed_same_game_and_other_seed_differs(env_id: str) -> None:
    frames_a, rewards_a = rollout(gym.make(env_id), seed=7, steps=300)
    frames_b, rewards_b = rollout(gym.make(env_id), seed=7, steps=300)
    frames_c, _ = rollout(gym.make(env_id), seed=8, steps=300)
    assert rewards_a == rewards_b
    assert len(frames_a) == len(frames_b)
    assert all(np.array_equal(a, b) for a, b in zip(frames_a, frames_b, strict=True))
    assert any(not np.array_equal(a, c) for a, c in zip(frames_a, frames_c, strict=False)), (
        "a different seed should give a different game"
    )


@pytest.mark.parametrize("env_id", envs.BUILTIN_GAMES)
def test_rgb_array_render_is_the_observation(env_id: str) -> None:
    env = gym.make(env_id, render_mode="rgb_array")
    observation, _ = env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (84, 84, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, observation)
    observation, *_ = env.step(1)
    np.testing.assert_array_equal(env.render(), observation)
    assert observation.any(), "the frame should show something"


def test_no_render_mode_renders_nothing() -> None:
    env = gym.make("Playground/Catch-v0")
    env.reset(seed=0)
    assert env.unwrapped.render() is None


def test_human_render_opens_and_closes_a_window() -> None:
    import pygame

    env = CatchEnv(render_mode="human")
    env.reset(seed=0)
    env.step(1)
    assert pygame.display.get_init()
    assert pygame.display.get_surface().get_size() == (84 * 6, 84 * 6)
    # Scaled nearest-neighbour: each frame pixel is a crisp 6 x 6 block on screen.
    screen = pygame.surfarray.array3d(pygame.display.get_surface()).swapaxes(0, 1)
    np.testing.assert_array_equal(screen[::6, ::6], env._frame)
    env.close()
    assert not pygame.display.get_init()
    env.close()  # closing twice is harmless


def test_catch_one_ball_scored_plus_one_or_minus_one() -> None:
    env = CatchEnv()
    for seed in range(20):
        env.reset(seed=seed)
        # Follow the ball: always caught, after exactly 11 steps.
        rewards, terminated = [], False
        while not terminated:
            action = {0: 0, -1: 1, 1: 2}[int(np.sign(env.ball_col - env.paddle_col))]
            _, reward, terminated, truncated, _ = env.step(action)
            rewards.append(reward)
            assert not truncated
        assert rewards == [0.0] * 10 + [1.0]
    # Standing still (in column 6) misses every ball that does not fall in column 6.
    for seed in range(20):
        env.reset(seed=seed)
        expected = 1.0 if env.ball_col == 6 else -1.0
        rewards = [env.step(0)[1] for _ in range(11)]
        assert rewards == [0.0] * 10 + [expected]


def test_catch_several_balls_per_episode() -> None:
    env = CatchEnv(num_balls=3)
    env.reset(seed=0)
    steps, terminated = 0, False
    while not terminated:
        _, _, terminated, _, _ = env.step(0)
        steps += 1
    assert steps == 33


def test_pong_scripted_opponent_is_beatable_and_random_play_loses() -> None:
    env = PongEnv()
    returns_following, returns_random = [], []
    rng = np.random.default_rng(0)
    for seed in range(5):
        for follow, returns in ((True, returns_following), (False, returns_random)):
            env.reset(seed=seed)
            total, done = 0.0, False
            while not done:
                if follow:  # keep the paddle's middle cell on the ball's row
                    target = min(max(env.ball_row - 1, 0), env.grid_rows - 3)
                    action = 0 if env.agent_top == target else (1 if env.agent_top > target else 2)
                else:
                    action = int(rng.integers(3))
                _, reward, terminated, _, info = env.step(action)
                total += reward
                done = terminated
            assert total == info["agent_points"] - info["opponent_points"]
            assert max(info["agent_points"], info["opponent_points"]) == env.points_to_win
            returns.append(total)
    assert np.mean(returns_following) > 2
    assert np.mean(returns_random) < -3


def test_breakout_score_counts_bricks_and_lives_end_the_game() -> None:
    env = BreakoutEnv()
    _, info = env.reset(seed=3)
    assert info["lives"] == 3 and env.bricks.sum() == 36
    total, terminated, lives_seen = 0.0, False, [3]
    while not terminated:
        target = min(max(env.ball_col - 1, 0), env.grid_cols - 3)
        action = 0 if env.paddle_left == target else (1 if env.paddle_left > target else 2)
        if len(lives_seen) > 200:
            action = 0  # then stop playing so the game ends
        _, reward, terminated, _, info = env.step(action)
        total += reward
        lives_seen.append(info["lives"])
        assert total == 36 - env.bricks.sum()
    assert total > 0
    assert lives_seen[-1] == 0 and sorted(set(lives_seen)) == [0, 1, 2, 3]


def breakout_with(ball: tuple[int, int, int, int], bricks: list[tuple[int, int]]) -> BreakoutEnv:
    """A Breakout mid-game: the ball at (row, col) heading (row_step, col_step), only `bricks`."""
    env = BreakoutEnv()
    env.reset(seed=0)
    env.bricks[:] = False
    for row, col in bricks:
        env.bricks[row, col] = True
    env.ball_row, env.ball_col, env.ball_row_step, env.ball_col_step = ball
    return env


def test_breakout_ball_bounces_off_a_brick_face_before_its_corner() -> None:
    # Heading up-right from (5, 3): the brick straight above is hit, not the corner one.
    env = breakout_with((5, 3, -1, 1), [(4, 3), (4, 4), (2, 8)])
    _, reward, _, _, _ = env.step(0)
    assert reward == 1 and not env.bricks[4, 3] and env.bricks[4, 4]
    assert (env.ball_row, env.ball_col, env.ball_row_step, env.ball_col_step) == (5, 3, 1, 1)
    # A brick beside the ball (in its own row) turns it back sideways.
    env = breakout_with((3, 3, -1, 1), [(3, 4), (2, 8)])
    _, reward, _, _, _ = env.step(0)
    assert reward == 1 and not env.bricks[3, 4]
    assert (env.ball_row_step, env.ball_col_step) == (-1, -1)
    # With nothing beside its path, the corner brick is hit.
    env = breakout_with((5, 3, -1, 1), [(4, 4), (2, 8)])
    _, reward, _, _, _ = env.step(0)
    assert reward == 1 and not env.bricks[4, 4]


def test_breakout_every_brick_can_be_reached_in_one_life() -> None:
    # A diagonal ball only ever enters cells of one colour of a checkerboard (row + column of
    # one parity); bricks of the other colour must still be knocked out by their faces.
    env = breakout_with((6, 1, -1, 1), [(4, 2), (2, 9)])  # (4, 2) has the other parity
    parity = (env.ball_row + env.ball_col) % 2
    assert parity != (4 + 2) % 2
    for _ in range(3):
        _, reward, _, _, _ = env.step(0)
        if reward:
            break
    assert not env.bricks[4, 2] and env.lives == 3


def test_snake_grows_by_food_eaten_and_dies_at_the_wall() -> None:
    env = SnakeEnv()
    for seed in range(10):
        _, info = env.reset(seed=seed)
        assert info["length"] == 3
        total, steps, terminated = 0.0, 0, False
        while not terminated:
            # LEFT would reverse into the body, so it is ignored: the snake keeps heading right.
            _, reward, terminated, _, info = env.step(4)
            total += reward
            steps += 1
        assert info["length"] == 3 + total
        assert steps == 6  # from column 6 the wall is 6 moves away


def _cell_after(cell: tuple[int, int], mirror: bool, turns: int) -> tuple[int, int]:
    marker = np.zeros((SnakeEnv.grid_rows, SnakeEnv.grid_cols), dtype=np.uint8)
    marker[cell] = 1
    row, col = np.argwhere(transform_frame(marker, mirror, turns))[0]
    return int(row), int(col)


def _set_snake(env: SnakeEnv, body: list, heading: int, food: tuple[int, int]) -> None:
    env.occupied[:] = False
    env.background_layer[:] = env.background
    env.body.clear()
    for cell in body:
        env.body.append(cell)
        env._occupy(cell)
    env.heading, env.food = heading, food


def test_snake_symmetries_turn_every_move_into_the_same_move() -> None:
    """Play a bent snake, and the same snake mirrored or turned (its cells, heading and food
    moved by the symmetry): every action, and the action the symmetry maps it to, give the
    same reward and ending and frames that are each other's transform."""
    symmetries = game_symmetries("Playground/Snake-v0")
    assert len(symmetries) == 7  # the square's 8 symmetries, the identity left out
    assert len({action_map for _, _, action_map in symmetries}) == 7
    body = [(2, 3), (3, 3), (4, 3), (4, 4), (5, 4), (5, 5)]  # head first, heading UP
    for food in ((1, 3), (2, 11), (9, 0)):  # just ahead (eaten on UP or NOOP), to the side, far
        for mirror, turns, action_map in symmetries:
            for action in range(5):
                original, turned = SnakeEnv(), SnakeEnv()
                original.reset(seed=0)
                turned.reset(seed=0)
                _set_snake(original, body, 0, food)
                _set_snake(
                    turned,
                    [_cell_after(cell, mirror, turns) for cell in body],
                    action_map[1] - 1,  # UP's image is the new heading
                    _cell_after(food, mirror, turns),
                )
                frame, reward, ended, _, _ = original.step(action)
                turned_frame, turned_reward, turned_ended, _, _ = turned.step(action_map[action])
                assert (reward, ended) == (turned_reward, turned_ended), (mirror, turns, action)
                if not reward:  # (a meal places new food at random: the frames differ there)
                    np.testing.assert_array_equal(
                        transform_frame(frame.transpose(2, 0, 1), mirror, turns),
                        turned_frame.transpose(2, 0, 1),
                    )
    assert game_symmetries("Playground/Catch-v0") == []  # declares none


def test_grayscale_frame_uses_itu_601_luma() -> None:
    env = GrayscaleFrame(CatchEnv())
    assert env.observation_space.shape == (84, 84)
    colors = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]])
    np.testing.assert_array_equal(env.observation(colors.astype(np.uint8)), [[0, 255, 76, 150, 29]])
    frame = np.random.default_rng(0).integers(0, 256, (84, 84, 3), dtype=np.uint8)
    expected = np.round(frame @ np.array([0.299, 0.587, 0.114]))
    assert np.abs(env.observation(frame).astype(float) - expected).max() <= 1
    with pytest.raises(ValueError, match="uint8"):
        GrayscaleFrame(gym.make("CartPole-v1"))


def test_pong_and_snake_have_a_step_limit() -> None:
    assert gym.spec("Playground/Pong-v0").max_episode_steps is not None
    assert gym.spec("Playground/Snake-v0").max_episode_steps is not None
    assert gym.spec("Playground/Breakout-v0").max_episode_steps is not None
