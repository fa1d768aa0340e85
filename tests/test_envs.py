"""The env factory: preprocessing as training sees it, vector envs, episode statistics, errors."""

from __future__ import annotations

import cv2
import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.wrappers import FireReset
from playground.errors import UserError


def wrapper_chain(env: gym.Env) -> list[gym.Env]:
    """The env and every env it wraps, outermost first."""
    chain = [env]
    while isinstance(chain[-1], gym.Wrapper):
        chain.append(chain[-1].env)
    return chain


def wrapper_types(env: gym.Env) -> list[type]:
    return [type(layer) for layer in wrapper_chain(env)]


@pytest.mark.parametrize(
    ("env_id", "shape", "dtype"),
    [
        ("Playground/Catch-v0", (4, 84, 84), np.uint8),
        ("ALE/Breakout-v5", (4, 84, 84), np.uint8),
        ("PongNoFrameskip-v4", (4, 84, 84), np.uint8),
        ("CartPole-v1", (4,), np.float32),
    ],
)
def test_make_env_observation_shapes(env_id: str, shape: tuple[int, ...], dtype: type) -> None:
    env = envs.make_env(env_id, seed=0)
    assert env.observation_space.shape == shape and env.observation_space.dtype == dtype
    observation, _ = env.reset()
    assert observation.shape == shape and observation.dtype == dtype
    observation, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(observation)
    assert envs.is_pixel_space(env.observation_space) == (len(shape) == 3)
    env.close()


def test_make_env_frame_stack_is_zero_padded_and_shifts() -> None:
    env = envs.make_env("Playground/Catch-v0", seed=0, frame_stack=4)
    observation, _ = env.reset()
    assert not observation[:3].any(), "frames before the episode start must be zero"
    np.testing.assert_array_equal(observation[3], cv2.cvtColor(env.render(), cv2.COLOR_RGB2GRAY))
    next_observation, *_ = env.step(1)
    np.testing.assert_array_equal(next_observation[:3], observation[1:])
    np.testing.assert_array_equal(
        next_observation[3], cv2.cvtColor(env.render(), cv2.COLOR_RGB2GRAY)
    )
    assert envs.make_env("Playground/Catch-v0", frame_stack=2).observation_space.shape[0] == 2


def test_make_env_atari_preprocessing_chain() -> None:
    env = envs.make_env("ALE/Breakout-v5", seed=0)
    types = wrapper_types(env)
    assert FireReset in types
    assert gym.wrappers.RecordEpisodeStatistics in types
    assert gym.wrappers.ClipReward not in types
    preprocessing = next(
        w for w in wrapper_chain(env) if isinstance(w, gym.wrappers.AtariPreprocessing)
    )
    assert preprocessing.frame_skip == 4 and preprocessing.noop_max == 30
    assert not preprocessing.terminal_on_life_loss
    assert env.unwrapped._frameskip == 1
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    no_sticky = envs.make_env("BreakoutNoFrameskip-v4")
    assert no_sticky.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    observation, _ = env.reset()
    assert not observation[:3].any() and observation[3].any()
    assert env.render().shape == (210, 160, 3)
    # No FIRE in Catch, so no FireReset.
    assert FireReset not in wrapper_types(envs.make_env("Playground/Catch-v0"))


def test_make_env_is_reproducible_under_a_seed() -> None:
    def play(seed: int) -> list[np.ndarray]:
        env = envs.make_env("ALE/Breakout-v5", seed=seed)
        observations = [env.reset()[0]]
        for action in [1, 2, 3, 2, 0, 3, 3, 1] * 5:
            observations.append(env.step(action)[0])
        return observations

    assert all(np.array_equal(a, b) for a, b in zip(play(5), play(5), strict=True))


def test_make_env_builtin_render_is_the_rgb_frame() -> None:
    env = envs.make_env("Playground/Snake-v0", seed=0)
    env.reset()
    frame = env.render()
    assert frame.shape == (84, 84, 3) and frame.dtype == np.uint8


def test_catch_vector_env_reports_true_episode_returns() -> None:
    num_envs = 3
    vector_env = envs.make_vector_env("Playground/Catch-v0", num_envs, seed=0)
    assert vector_env.single_observation_space.shape == (4, 84, 84)
    assert vector_env.observation_space.shape == (num_envs, 4, 84, 84)
    assert vector_env.single_action_space == gym.spaces.Discrete(3)
    observations, _ = vector_env.reset(seed=0)
    assert not observations[:, :3].any()
    running = np.zeros(num_envs)
    previous_done = np.zeros(num_envs, dtype=bool)
    reported = []
    for _ in range(60):
        _, rewards, terminated, truncated, info = vector_env.step(vector_env.action_space.sample())
        # NEXT_STEP autoreset: the step after a game ends is a reset step, not part of a game.
        running = np.where(previous_done, 0.0, running + rewards)
        done = terminated | truncated
        if done.any():
            assert np.array_equal(info["_episode"], done)
            for index in np.flatnonzero(done):
                assert info["episode"]["r"][index] == running[index]
                assert info["episode"]["l"][index] == 11
                reported.append(info["episode"]["r"][index])
        else:
            assert "episode" not in info
        previous_done = done
    assert len(reported) >= 12 and set(reported) <= {-1.0, 1.0}


def test_atari_vector_env_matches_single_env_and_reports_full_games() -> None:
    vector_env = envs.make_vector_env("ALE/Breakout-v5", 2, seed=0)
    single_env = envs.make_env("ALE/Breakout-v5", seed=0)
    assert vector_env.single_observation_space == single_env.observation_space
    assert vector_env.single_action_space == single_env.action_space
    assert envs.action_names(vector_env) == envs.action_names(single_env)
    assert envs.action_names(single_env) == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    observations, info = vector_env.reset(seed=0)
    assert observations.shape == (2, 4, 84, 84) and observations.dtype == np.uint8
    assert not observations[:, :3].any(), "AtariVectorEnv zero-pads the stack at reset"
    assert info["lives"].tolist() == [5, 5]
    running = np.zeros(2)
    previous_done = np.zeros(2, dtype=bool)
    lives_seen: set[int] = set()
    for _ in range(3000):
        _, rewards, terminated, truncated, info = vector_env.step(vector_env.action_space.sample())
        running = np.where(previous_done, 0.0, running + rewards)
        assert np.issubdtype(info["lives"].dtype, np.integer)
        lives_seen.update(info["lives"].tolist())
        previous_done = terminated | truncated
        if info.get("_episode", np.zeros(2, bool)).any():
            index = int(np.flatnonzero(info["_episode"])[0])
            # A whole game over all five lives, not a single life.
            assert info["lives"][index] == 0 and terminated[index]
            assert info["episode"]["r"][index] == running[index]
            break
    else:
        pytest.fail("no Breakout game ended in 3000 random steps")
    assert lives_seen >= {5, 4, 0}


@pytest.mark.parametrize("asynchronous", [False, True])
def test_vector_env_for_vector_observations(asynchronous: bool) -> None:
    vector_env = envs.make_vector_env("CartPole-v1", 2, seed=0, asynchronous=asynchronous)
    observations, _ = vector_env.reset(seed=0)
    assert observations.shape == (2, 4) and observations.dtype == np.float32
    assert envs.action_names(vector_env) == ["ACTION_0", "ACTION_1"]
    vector_env.step(np.array([0, 1]))
    vector_env.close()


def test_async_vector_builtin_has_action_names() -> None:
    vector_env = envs.make_vector_env("Playground/Snake-v0", 2, seed=0, asynchronous=True)
    assert envs.action_names(vector_env) == ["NOOP", "UP", "RIGHT", "DOWN", "LEFT"]
    vector_env.close()


def test_vector_env_is_reproducible_under_a_seed() -> None:
    def play() -> list[np.ndarray]:
        vector_env = envs.make_vector_env("Playground/Pong-v0", 2, seed=11)
        observations = [vector_env.reset(seed=11)[0]]
        for _ in range(50):
            observations.append(vector_env.step(np.array([1, 2]))[0])
        return observations

    assert all(np.array_equal(a, b) for a, b in zip(play(), play(), strict=True))


def test_check_env_id_suggests_close_matches_in_one_line() -> None:
    envs.check_env_id("ALE/Pong-v5")
    envs.check_env_id("Playground/Catch-v0")
    with pytest.raises(UserError) as error:
        envs.check_env_id("ALE/Pongg-v5")
    message = str(error.value)
    assert "\n" not in message
    assert "'ALE/Pongg-v5'" in message and "ALE/Pong-v5" in message
    assert all(env_id in message for env_id in envs.BUILTIN_GAMES)
    with pytest.raises(UserError, match="Playground/Catch-v0"):
        envs.make_env("Playground/Cach-v0")
    with pytest.raises(UserError, match="unknown environment id"):
        envs.make_vector_env("NoSuchGame-v9", 2, seed=0)


def test_bad_sizes_are_user_errors() -> None:
    with pytest.raises(UserError, match="--frame-stack"):
        envs.make_env("Playground/Catch-v0", frame_stack=0)
    with pytest.raises(UserError, match="--num-envs"):
        envs.make_vector_env("Playground/Catch-v0", 0, seed=0)


def test_is_pixel_space() -> None:
    assert envs.is_pixel_space(gym.spaces.Box(0, 255, (84, 84, 3), np.uint8))
    assert envs.is_pixel_space(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8))
    assert not envs.is_pixel_space(gym.spaces.Box(0, 255, (84, 84), np.uint8))
    assert not envs.is_pixel_space(gym.spaces.Box(0.0, 1.0, (4, 84, 84), np.float32))
    assert not envs.is_pixel_space(gym.spaces.Discrete(3))


def test_action_names_single_envs() -> None:
    assert envs.action_names(envs.make_env("Playground/Catch-v0")) == ["NOOP", "LEFT", "RIGHT"]
    assert envs.action_names(envs.make_env("CartPole-v1")) == ["ACTION_0", "ACTION_1"]
    pong_names = envs.action_names(envs.make_vector_env("ALE/Pong-v5", 1, seed=0))
    assert pong_names == ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
