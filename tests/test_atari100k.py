"""The Atari 100k protocol and DrQ(eps): sticky actions off, the episode cap, epsilon after the
warm-up, intensity noise, one next-state pass when the target is the online copy, the final
evaluation on vector envs, and the benchmark command's bookkeeping."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.config import DQNConfig, env_options, validate
from agents.dqn import exploration_epsilon, train_dqn
from agents.learner import target_is_online
from agents.networks import build_q_network, random_intensity
from agents.presets import PRESETS
from agents.replay import ReplaySample
from agents.rollout import score_games
from agents.training import FINAL_EVAL, protocol_line
from agents.update import UpdateRule, dqn_update
from benchmarks import atari100k
from envs import make_env, make_vector_env
from playground import tags
from playground.errors import UserError
from playground.logger import TensorBoardLogger
from playground.presets import with_preset

ROOT = Path(__file__).resolve().parents[1]

CATCH = "Playground/Catch-v0"


def test_the_preset_is_drq_eps_as_dopamine_configures_it() -> None:
    cfg = with_preset(DQNConfig, sys.modules["agents.presets"], "atari-100k", env_id="ALE/Pong-v5")
    validate(cfg)
    assert (cfg.total_steps, cfg.learning_starts, cfg.train_frequency) == (100_000, 1_600, 1)
    assert (cfg.target_update_frequency, cfg.tau, cfg.n_step, cfg.gamma) == (1, 1.0, 10, 0.99)
    assert (cfg.learning_rate, cfg.adam_eps, cfg.batch_size) == (1e-4, 1.5e-4, 32)
    assert cfg.dueling and cfg.double_dqn and cfg.augment and cfg.intensity_noise == 0.05
    assert (cfg.exploration_steps, cfg.exploration_after_warmup, cfg.end_epsilon) == (
        5_000,
        True,
        0.01,
    )
    assert (cfg.sticky_actions, cfg.max_episode_frames) == ("off", 108_000)
    assert (cfg.final_eval_episodes, cfg.eval_epsilon) == (100, 0.001)
    # Dopamine's start (0 to 30 no-op frames, nothing pressed) and its stack at a lost life.
    assert (cfg.noop_max, cfg.fire_reset, cfg.life_loss_clears_stack) == (30, False, True)
    assert cfg.life_loss_terminal and cfg.clip_rewards
    assert target_is_online(cfg)
    assert cfg.precision == "bf16"  # Dopamine's is fp32: bf16 only where the hardware has it


@pytest.mark.parametrize(
    "name, agent",
    [
        ("atari-100k-spr", {"distributional": "c51", "spr_weight": 2.0, "prioritized": False}),
        (
            "atari-100k-c51-per",
            {"distributional": "c51", "spr_weight": 0.0, "prioritized": True,
             "priority_alpha": 0.5, "policy_ema": 1e-4},
        ),
    ],
)  # fmt: skip
def test_the_other_atari_100k_presets_run_the_first_ones_protocol(
    name: str, agent: dict[str, object]
) -> None:
    """The other Atari 100k presets change the agent, never the benchmark: every setting of the
    protocol (the env, its start and end, the budget and the final evaluation) is
    atari-100k's."""
    presets = sys.modules["agents.presets"]
    first, other = (
        with_preset(DQNConfig, presets, preset, env_id="ALE/Pong-v5")
        for preset in ("atari-100k", name)
    )
    validate(other)
    # The line a run prints at start names every setting of the protocol, whatever is added
    # to it; the observation (what the network is given) is checked beside it. Which of the
    # agent's networks plays the final games (--policy-ema) is the agent's, and the line says it.
    assert protocol_line(dataclasses.replace(other, policy_ema=0.0)) == protocol_line(first)
    assert (other.frame_stack, other.frame_size) == (first.frame_stack, first.frame_size)
    assert {key: getattr(other, key) for key in agent} == agent


def test_epsilon_is_one_through_the_warmup_then_decays_over_its_steps() -> None:
    cfg = DQNConfig(
        learning_starts=1_600, exploration_steps=5_000, exploration_after_warmup=True,
        end_epsilon=0.01, total_steps=100_000,
    )  # fmt: skip
    assert exploration_epsilon(cfg, 0) == 1.0
    assert exploration_epsilon(cfg, 1_599) == 1.0
    assert exploration_epsilon(cfg, 1_600) == 1.0
    assert exploration_epsilon(cfg, 1_600 + 2_500) == pytest.approx(0.505)
    assert exploration_epsilon(cfg, 6_600) == pytest.approx(0.01)
    assert exploration_epsilon(cfg, 90_000) == pytest.approx(0.01)
    # Without the flag the decay starts at step 0, over a fraction of the run unless steps given.
    plain = DQNConfig(learning_starts=1_600, total_steps=100_000, exploration_fraction=0.1)
    assert exploration_epsilon(plain, 5_000) == pytest.approx(1 - 0.99 * 0.5)
    counted = DQNConfig(learning_starts=1_600, total_steps=100_000, exploration_steps=1_000)
    assert exploration_epsilon(counted, 500) == pytest.approx(0.505)


def test_sticky_actions_follow_the_setting_on_single_and_vector_envs() -> None:
    def repeat_probability(env) -> float:
        return env.unwrapped.ale.getFloat("repeat_action_probability")

    for setting, expected in (("auto", 0.25), ("off", 0.0), ("on", 0.25)):
        options = env_options(DQNConfig(sticky_actions=setting))
        env = make_env("ALE/Pong-v5", seed=0, **options)
        try:
            assert repeat_probability(env) == pytest.approx(expected)
        finally:
            env.close()
    env = make_env("PongNoFrameskip-v4", seed=0, **env_options(DQNConfig()))
    try:
        assert repeat_probability(env) == 0.0  # auto: v4 ids have none
    finally:
        env.close()


def test_games_start_after_the_no_ops_and_fire_asked_for_on_single_and_vector_envs() -> None:
    def start_frames(options: dict) -> tuple[list[int], list[int]]:
        """Emulator frames already played when each game hands over its first observation."""
        singles = []
        for seed in range(4):
            env = make_env("ALE/Breakout-v5", seed=seed, **options)
            try:
                singles.append(int(env.reset(seed=seed)[1]["episode_frame_number"]))
            finally:
                env.close()
        envs = make_vector_env("ALE/Breakout-v5", 4, seed=0, **options)
        try:
            vector = envs.reset(seed=0)[1]["episode_frame_number"].tolist()
        finally:
            envs.close()
        return singles, vector

    # The ALE's own reset, nothing pressed: every game starts at frame 0.
    ale_reset = env_options(DQNConfig(sticky_actions="off", noop_max=0, fire_reset=False))
    assert (ale_reset["noop_max"], ale_reset["fire_reset"]) == (0, False)
    assert start_frames(ale_reset) == ([0, 0, 0, 0], [0, 0, 0, 0])
    # Dopamine's start (the atari-100k presets'): up to 30 no-op frames, nothing pressed.
    dopamine = env_options(with_preset(DQNConfig, sys.modules["agents.presets"], "atari-100k"))
    singles, vector = start_frames(dopamine)
    assert all(0 <= frames <= 30 for frames in singles + vector) and len(set(singles)) > 1
    # FIRE alone: the single env presses FIRE and UP (2 steps of 4 frames), the vector env FIRE
    # for one frame.
    fire_only = {**ale_reset, "fire_reset": True}
    assert start_frames(fire_only) == ([8, 8, 8, 8], [1, 1, 1, 1])
    # The default: up to 30 no-op frames drawn per game before FIRE, so starts differ.
    singles, vector = start_frames(env_options(DQNConfig(sticky_actions="off")))
    assert all(8 <= frames <= 38 for frames in singles) and len(set(singles)) > 1
    assert all(1 <= frames <= 31 for frames in vector) and len(set(vector)) > 1
    with pytest.raises(UserError, match="--noop-max must be at least 0"):
        make_env("ALE/Pong-v5", noop_max=-1)
    line = protocol_line(DQNConfig(env_id="ALE/Pong-v5", noop_max=0, fire_reset=False))
    assert line is not None and "games start at the ALE's reset (no no-ops)" in line
    assert "FIRE" not in line
    assert "0 to 30 no-op frames, FIRE pressed" in protocol_line(DQNConfig(env_id="ALE/Pong-v5"))


def test_a_lost_life_clears_the_stack_on_single_and_vector_envs() -> None:
    options = {"repeat_action_probability": 0.0, "noop_max": 0, "fire_reset": False}

    def play_to_a_lost_life(clear: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Breakout on both kinds of env, FIRE then random moves, until a life is lost: the
        observations of that step and the next one, single env and vector lane 0."""
        env = make_env("ALE/Breakout-v5", seed=0, life_loss_clears_stack=clear, **options)
        envs = make_vector_env(
            "ALE/Breakout-v5", 1, seed=0, life_loss_clears_stack=clear, **options
        )
        try:
            _, info = env.reset(seed=0)
            envs.reset(seed=0)
            rng = np.random.default_rng(0)
            lives = info["lives"]
            for t in range(2_000):
                action = 1 if t % 20 == 0 else int(rng.integers(0, 4))
                single, _, _, _, info = env.step(action)
                vector, _, _, _, infos = envs.step(np.array([action]))
                np.testing.assert_array_equal(single, vector[0])  # the same game, frame by frame
                if info["lives"] < lives:
                    lost = (single, vector[0])
                    if clear:  # the clearing wrapper (under the statistics) names the lane
                        assert envs.env.lost.tolist() == [True]
                    after = (env.step(0)[0], envs.step(np.array([0]))[0][0])
                    if clear:
                        assert envs.env.lost.tolist() == [False]
                    return lost[0], lost[1], after[0], after[1]
            raise AssertionError("no life lost in 2,000 steps")
        finally:
            env.close()
            envs.close()

    single, vector, single_after, vector_after = play_to_a_lost_life(clear=True)
    for lost, after in ((single, single_after), (vector, vector_after)):
        assert not lost[:3].any() and lost[3].any()  # the new life's first frame alone
        assert not after[:2].any() and after[2].any() and after[3].any()
        np.testing.assert_array_equal(after[2], lost[3])
    single, vector, _, _ = play_to_a_lost_life(clear=False)
    assert single[:3].any() and vector[:3].any()  # without the flag the stack carries on
    line = protocol_line(DQNConfig(env_id="ALE/Breakout-v5", life_loss_clears_stack=True))
    assert line is not None and "a lost life clears the frame stack" in line
    validate(DQNConfig(life_loss_clears_stack=True, actors=2))  # Ape-X actors clear theirs too


def test_the_episode_cap_truncates_games_in_frames() -> None:
    # 40 frames = 10 agent steps of 4 frames (the no-op starts and FIRE take some of them).
    env = make_env("ALE/Pong-v5", seed=0, max_episode_frames=200, repeat_action_probability=0.0)
    try:
        env.reset()
        terminated = truncated = False
        steps = 0
        while not (terminated or truncated) and steps < 100:
            _, _, terminated, truncated, _ = env.step(0)
            steps += 1
        assert truncated and not terminated and steps <= 50
    finally:
        env.close()
    envs = make_vector_env(
        "ALE/Pong-v5", 2, seed=0, max_episode_frames=200, repeat_action_probability=0.0
    )
    try:
        ended = np.zeros(2, dtype=bool)
        for _ in range(100):
            _, _, terminated, truncated, _ = envs.step(np.zeros(2, dtype=np.int64))
            ended |= truncated
            assert not terminated.any()
        assert ended.all()
    finally:
        envs.close()
    with pytest.raises(UserError, match="--max-episode-frames must be positive"):
        validate(DQNConfig(max_episode_frames=0))


def test_intensity_noise_scales_each_observation_by_one_clipped_factor() -> None:
    generator = torch.Generator().manual_seed(0)
    frames = torch.full((64, 4, 8, 8), 100, dtype=torch.uint8)
    noisy = random_intensity(frames, 0.05, generator)
    assert noisy.dtype == torch.float32 and noisy.shape == frames.shape
    factors = noisy[:, 0, 0, 0] / 100.0
    # One factor per observation, shared by all its pixels and frames.
    assert torch.allclose(noisy / 100.0, factors[:, None, None, None].expand_as(noisy))
    assert factors.min() >= 1 - 0.1 - 1e-6 and factors.max() <= 1 + 0.1 + 1e-6
    assert factors.std() > 0.02  # 64 draws of 0.05 * N(0, 1)
    with pytest.raises(UserError, match="--intensity-noise"):
        validate(DQNConfig(intensity_noise=-0.1))


def test_one_next_state_pass_gives_the_update_of_two_when_the_target_is_the_online_copy() -> None:
    torch.manual_seed(0)
    shape = (4, 44, 44)
    online = build_q_network(shape, 4, "nature", dueling=True)
    batch = ReplaySample(
        observations=torch.randint(0, 256, (8, *shape), dtype=torch.uint8),
        actions=torch.randint(0, 4, (8,)),
        returns=torch.randn(8),
        next_observations=torch.randint(0, 256, (8, *shape), dtype=torch.uint8),
        dones=torch.zeros(8),
        discounts=torch.full((8,), 0.9),
        weights=torch.ones(8),
    )
    results = []
    for shared in (False, True):
        network = copy.deepcopy(online)
        target = copy.deepcopy(online).requires_grad_(False)
        optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
        rule = UpdateRule(double_dqn=True, max_grad_norm=0.0, target_is_online=shared)
        loss, _, errors, _ = dqn_update(batch, network, target, optimizer, rule)
        results.append((loss, errors, [p.detach().clone() for p in network.parameters()]))
    (loss_a, errors_a, weights_a), (loss_b, errors_b, weights_b) = results
    assert torch.equal(loss_a, loss_b) and torch.equal(errors_a, errors_b)
    assert all(torch.equal(a, b) for a, b in zip(weights_a, weights_b, strict=True))
    # The shortcut is only taken where the target really is the online network's copy.
    assert not target_is_online(DQNConfig(target_update_frequency=1_000))
    assert not target_is_online(DQNConfig(train_frequency=1, target_update_frequency=1, tau=0.5))
    assert not target_is_online(
        DQNConfig(train_frequency=1, target_update_frequency=1, batch_norm=True)
    )
    assert not target_is_online(DQNConfig(train_frequency=1, target_update_frequency=1, num_envs=2))


def test_score_games_plays_each_env_its_share_of_whole_games() -> None:
    torch.manual_seed(0)
    network = build_q_network((4, 84, 84), 3, "nature")
    games = score_games(network, CATCH, 7, epsilon=1.0, seed=3, num_envs=3)
    assert len(games.scores) == len(games.lengths) == 7
    # Catch: one ball per game, +1 or -1, and every game lasts the ball's fall.
    assert set(games.scores) <= {-1.0, 1.0}
    assert len(set(games.lengths)) == 1
    again = score_games(network, CATCH, 7, epsilon=1.0, seed=3, num_envs=3)
    assert again.scores == games.scores  # reproducible under a seed


def test_a_run_ends_with_its_final_evaluation_once(tmp_path: Path, capsys) -> None:
    cfg = DQNConfig(
        env_id=CATCH, preset="none", total_steps=400, learning_starts=200, buffer_size=1_000,
        frame_size=12, encoder="vgg", encoder_width=8, eval_every=0, final_eval_episodes=5,
        eval_envs=2, checkpoint_every=200, runs_dir=str(tmp_path), run_name="final",
        progress=False, device="cpu",
    )  # fmt: skip
    run_dir = train_dqn(cfg)
    record = json.loads((run_dir / FINAL_EVAL).read_text())
    assert record["step"] == 400 and len(record["scores"]) == 5
    assert record["mean"] == pytest.approx(np.mean(record["scores"]))
    assert "online" not in record  # only a run with --policy-ema plays its online network too
    assert "final evaluation" in capsys.readouterr().err
    before = (run_dir / FINAL_EVAL).stat().st_mtime_ns
    with pytest.raises(UserError, match="already at step 400; pass --total-steps above it"):
        train_dqn(DQNConfig(resume=str(run_dir), total_steps=400, progress=False))
    assert (run_dir / FINAL_EVAL).stat().st_mtime_ns == before
    # A run stopped after its last step but before its final evaluation plays only that.
    (run_dir / FINAL_EVAL).unlink()
    train_dqn(DQNConfig(resume=str(run_dir), total_steps=400, progress=False))
    assert len(json.loads((run_dir / FINAL_EVAL).read_text())["scores"]) == 5


def test_an_atari_run_names_its_protocol() -> None:
    cfg = with_preset(DQNConfig, sys.modules["agents.presets"], "atari-100k", env_id="ALE/Pong-v5")
    line = protocol_line(cfg)
    assert line is not None and "no sticky actions" in line and "108,000 frames" in line
    assert "100 full games at epsilon 0.001" in line
    assert "sticky actions 0.25" in protocol_line(DQNConfig(env_id="ALE/Pong-v5"))
    assert protocol_line(DQNConfig(env_id=CATCH)) is None
    assert "atari-100k" in PRESETS


def test_the_benchmark_resumes_skips_and_starts_runs(tmp_path: Path) -> None:
    start = atari100k.run_command("Pong", 1, tmp_path, "atari-100k", ["--threads-test"])
    assert start is not None and "--env-id" in start and "ALE/Pong-v5" in start
    assert start[-1] == "--threads-test" and "Pong-s1" in start
    (tmp_path / "Pong-s1").mkdir()
    (tmp_path / "Pong-s1" / "latest.pt").write_bytes(b"")
    resume = atari100k.run_command("Pong", 1, tmp_path, "atari-100k", [])
    assert resume is not None and resume[-2:] == ["--resume", str(tmp_path / "Pong-s1")]
    (tmp_path / "Pong-s1" / FINAL_EVAL).write_text("{}")
    assert atari100k.run_command("Pong", 1, tmp_path, "atari-100k", []) is None


def test_a_stopped_benchmark_has_every_run_save_and_says_how_to_continue(tmp_path: Path) -> None:
    """SIGTERM (or a Ctrl-C) to the harness: each running trainer gets one SIGINT, saves its
    latest.pt and stops; the harness says how to continue, with no traceback, and exits 0."""
    command = [
        sys.executable, "-m", "benchmarks.atari100k", "--games", "Pong", "Breakout",
        "--seeds", "1", "--parallel", "2", "--threads", "1", "--runs-dir", str(tmp_path),
        "--", "--learning-starts", "50", "--log-every", "50", "--checkpoint-every", "100000",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    # Both trainers are past their start once their event files exist (signals are theirs).
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not all(
        any((tmp_path / f"{game}-s1").glob("events.out.tfevents.*"))
        for game in ("Pong", "Breakout")
    ):
        time.sleep(0.5)
    time.sleep(3)  # into their first steps
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr
    assert "SIGTERM: stopping every run" in stdout
    assert "stopped; run the same command again to continue" in stdout
    for game in ("Pong", "Breakout"):
        assert (tmp_path / f"{game}-s1" / "latest.pt").is_file()
        assert "Stopped by SIGINT" in (tmp_path / f"{game}-s1.log").read_text()
        resume = atari100k.run_command(game, 1, tmp_path, "atari-100k", [])
        assert resume is not None and "--resume" in resume


def test_the_benchmark_report_normalises_and_aggregates() -> None:
    assert atari100k.human_normalised("Pong", -20.7) == 0.0
    assert atari100k.human_normalised("Pong", 14.6) == pytest.approx(1.0)
    # DrQ(eps)'s published means over Pong, Breakout and Boxing: 0.57 human-normalised.
    drq = np.mean([atari100k.human_normalised(g, atari100k.PUBLISHED[g]["DrQ(eps)"])
                   for g in ("Pong", "Breakout", "Boxing")])  # fmt: skip
    assert drq == pytest.approx(0.57, abs=0.005)
    records = [
        {"game": game, "seed": seed, "final": score, "curve": []}
        for game, scores in (("Pong", (-10.0, -8.0)), ("Boxing", (9.0, 11.0)))
        for seed, score in zip((1, 2), scores, strict=True)
    ]
    table = atari100k.report(records, ["Pong", "Boxing"], "atari-100k", reps=500)
    assert "| Pong | 2 | -9.0 | -10.0 / -8.0 |" in table
    assert "| Boxing | 2 | 10.0 |" in table
    assert "| mean |" in table and "| IQM |" in table
    pong, boxing = (
        atari100k.human_normalised("Pong", -9.0),
        atari100k.human_normalised("Boxing", 10),
    )
    assert f"all 4 runs: {(pong + boxing) / 2:.2f}" in table
    uneven = atari100k.report(
        [*records, {**records[0], "seed": 3}], ["Pong", "Boxing"], "x", reps=500
    )
    assert "2 run(s) each (the first of each game's" in uneven and "all 5 runs" in uneven
    aggregate = atari100k.aggregates(
        np.array([[atari100k.human_normalised("Pong", -10.0), 9.0 / 12.0]]), reps=200
    )
    point, low, high = aggregate["mean"]
    assert low <= point <= high


def test_the_published_runs_are_those_behind_the_published_means() -> None:
    for agent in ("DrQ(eps)", "SPR"):
        for game in atari100k.RANDOM_HUMAN:
            runs = atari100k.published_runs(agent, game)
            assert runs is not None and runs.shape == (100,), (agent, game)
            if agent in atari100k.PUBLISHED.get(game, {}):
                assert runs.mean() == pytest.approx(atari100k.PUBLISHED[game][agent], abs=0.051)
    assert atari100k.published_runs("BBF", "Pong") is None


def test_a_run_is_placed_among_the_published_runs_and_improvement_is_their_pairwise_wins() -> None:
    assert atari100k.share_beaten(2.0, np.array([1.0, 2.0, 3.0, 4.0])) == 0.375
    drq_pong = atari100k.published_runs("DrQ(eps)", "Pong")
    assert drq_pong is not None
    median = float(np.median(drq_pong))
    assert 0.4 <= atari100k.share_beaten(median, drq_pong) <= 0.6
    # A Boxing run above every published one, a Pong run below every one: 1 and 0, averaged.
    assert atari100k.probability_of_improvement({"Boxing": [1000.0]}, "DrQ(eps)", reps=50) == (
        1.0,
        1.0,
        1.0,
    )
    point, low, high = atari100k.probability_of_improvement(
        {"Boxing": [1000.0], "Pong": [-1000.0]}, "DrQ(eps)", reps=50
    )
    assert (point, low, high) == (0.5, 0.5, 0.5)
    point, low, high = atari100k.probability_of_improvement(
        {"Pong": [median - 5, median + 5]}, "DrQ(eps)", reps=500
    )
    expected = (
        atari100k.share_beaten(median - 5, drq_pong) + atari100k.share_beaten(median + 5, drq_pong)
    ) / 2
    assert point == pytest.approx(expected) and low < point < high
    records = [
        {"game": "Pong", "seed": seed, "final": score, "curve": []}
        for seed, score in ((1, median - 5), (2, median + 5))
    ]
    table = atari100k.report(records, ["Pong"], "atari-100k", reps=500)
    shares = " / ".join(
        f"{atari100k.share_beaten(score, drq_pong):.0%}" for score in (median - 5, median + 5)
    )
    assert f"| Pong | {median:.1f}, {drq_pong.mean():.1f} | {shares} |" in table
    assert f"P(atari-100k > DrQ(eps)) = **{expected:.2f}**" in table


def test_kept_scores_count_where_the_folder_has_no_final_and_gather_the_new_ones(
    tmp_path: Path,
) -> None:
    """`--scores`: a run finished elsewhere counts by its kept score; one finished here wins
    over a kept one and is added to the file; another preset's scores are left out."""
    kept = tmp_path / "scores.json"
    kept.write_text(json.dumps([
        {"preset": "atari-100k", "game": "Pong", "seed": 1, "final": -8.3, "games": 100,
         "commit": "0fd70d4"},
        {"preset": "atari-100k", "game": "Pong", "seed": 2, "final": -16.0, "games": 100},
        {"preset": "atari-100k-spr", "game": "Pong", "seed": 3, "final": 5.0, "games": 100},
    ]))  # fmt: skip
    here = [
        {"game": "Pong", "seed": 2, "final": -12.0, "final_games": 100, "curve": [(1, -21.0)]},
        {"game": "Pong", "seed": 3, "final": None, "final_games": 0, "curve": [(1, -20.0)]},
    ]
    merged = atari100k.with_kept_scores(here, kept, "atari-100k", ["Pong"], [1, 2, 3])
    assert [(r["seed"], r["final"], bool(r.get("kept"))) for r in merged] == [
        (1, -8.3, True),
        (2, -12.0, False),
        (3, None, False),
    ]
    rows = {(e["preset"], e["seed"]): e for e in json.loads(kept.read_text())}
    assert rows["atari-100k", 2]["final"] == -12.0  # the run finished here replaces it
    assert rows["atari-100k", 1]["commit"] == "0fd70d4"  # what it said of itself is kept
    assert rows["atari-100k-spr", 3]["final"] == 5.0
    assert rows["atari-100k", 2]["curve"] == [[1, -21.0]]
    again = atari100k.with_kept_scores([], kept, "atari-100k", ["Pong"], [2])
    assert again[0]["final"] == -12.0 and again[0]["curve"] == [(1, -21.0)]
    assert again[0]["steps"] == 1  # no final step known: the last training game's
    table = atari100k.report(merged, ["Pong"], "atari-100k", reps=500)
    assert "| Pong | 2 | -10.2 | -8.3 / -12.0 |" in table


def test_a_kept_run_is_placed_at_its_final_step_once_its_folder_is_gone(tmp_path: Path) -> None:
    """The file keeps a finished run's final step, so the plot and the per-run line put a run
    known only from the file where its final evaluation was, not at its last training game."""
    kept = tmp_path / "scores.json"
    here = [
        {"game": "Pong", "seed": 1, "final": -9.0, "final_games": 100, "steps": 100_000,
         "curve": [(50_000, -20.0), (98_284, -11.0)]},
    ]  # fmt: skip
    atari100k.with_kept_scores(here, kept, "atari-100k", ["Pong"], [1])
    assert json.loads(kept.read_text())[0]["step"] == 100_000
    (gone,) = atari100k.with_kept_scores([], kept, "atari-100k", ["Pong"], [1])
    assert (gone["steps"], gone["final"], gone["kept"]) == (100_000, -9.0, True)


def test_runs_with_more_flags_are_kept_apart_from_the_plain_preset(tmp_path: Path) -> None:
    """A run of the preset with flags after `--` is another setting: its score neither takes
    the plain preset's place for the same game and seed in the file nor counts for it."""
    kept = tmp_path / "scores.json"
    kept.write_text(json.dumps(
        [{"preset": "atari-100k", "game": "Pong", "seed": 1, "final": -8.3, "games": 100}]
    ))  # fmt: skip
    setting = atari100k.setting_name("atari-100k", ["--encoder-padding", "same"])
    assert setting == "atari-100k --encoder-padding same"
    assert atari100k.setting_name("atari-100k", []) == "atari-100k"
    assert atari100k.setting_name("atari-100k", ["--seed", "1"], "old head") == "old head"
    here = [{"game": "Pong", "seed": 1, "final": -3.0, "final_games": 100, "curve": [(1, -21.0)]}]
    merged = atari100k.with_kept_scores(here, kept, setting, ["Pong"], [1])
    assert [(r["final"], bool(r.get("kept"))) for r in merged] == [(-3.0, False)]
    rows = {(e["preset"], e["seed"]): e["final"] for e in json.loads(kept.read_text())}
    assert rows == {("atari-100k", 1): -8.3, (setting, 1): -3.0}
    plain = atari100k.with_kept_scores([], kept, "atari-100k", ["Pong"], [1])
    assert [r["final"] for r in plain] == [-8.3]


def test_report_only_reads_the_runs_kept_under_the_setting_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--setting` picks which of the file's runs the report is of, whatever the preset."""
    kept = tmp_path / "scores.json"
    kept.write_text(json.dumps([
        {"preset": "atari-100k", "game": "Pong", "seed": 1, "final": -8.3, "games": 100},
        {"preset": "old head", "game": "Pong", "seed": 1, "final": -15.5, "games": 100},
    ]))  # fmt: skip
    report = tmp_path / "report.md"
    monkeypatch.setattr(atari100k, "report", functools.partial(atari100k.report, reps=500))
    argv = ["atari100k", "--report-only", "--games", "Pong", "--seeds", "1", "--runs-dir",
            str(tmp_path / "runs"), "--scores", str(kept), "--report", str(report), "--plot",
            str(tmp_path / "curves.png")]  # fmt: skip
    monkeypatch.setattr(sys, "argv", [*argv, "--setting", "old head"])
    atari100k.main()
    assert "-15.5" in report.read_text() and "-8.3" not in report.read_text()
    monkeypatch.setattr(sys, "argv", argv)
    atari100k.main()
    assert "-8.3" in report.read_text() and "-15.5" not in report.read_text()


def test_the_report_and_plot_go_beside_the_runs_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from a checkout with no --report or --plot, the benchmark leaves its docs alone."""
    kept = tmp_path / "scores.json"
    kept.write_text(json.dumps([
        {"preset": "atari-100k", "game": "Pong", "seed": 1, "final": -8.3, "games": 100,
         "curve": [[s * 1000, -21.0 + s / 10] for s in range(1, 100)]},
    ]))  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(atari100k, "report", functools.partial(atari100k.report, reps=500))
    monkeypatch.setattr(sys, "argv", [
        "atari100k", "--report-only", "--games", "Pong", "--seeds", "1", "--runs-dir",
        "elsewhere", "--scores", str(kept),
    ])  # fmt: skip
    atari100k.main()
    assert "-8.3" in (tmp_path / "elsewhere" / "atari100k.md").read_text()
    assert (tmp_path / "elsewhere" / "atari100k.png").stat().st_size > 0
    assert not (tmp_path / "docs").exists()


def test_a_finished_run_is_reported_at_its_last_step_not_its_last_games(tmp_path: Path) -> None:
    """The report's step of a finished run is the final evaluation's, though its last training
    game ended earlier; an unfinished run's is its last game's."""
    for seed, final in ((1, True), (2, False)):
        run_dir = tmp_path / f"Pong-s{seed}"
        logger = TensorBoardLogger(run_dir)
        logger.scalar(tags.EPISODIC_RETURN, -20.0, 97_000)
        logger.scalar(tags.EPISODIC_RETURN, -18.0, 98_284)
        logger.close()
        if final:
            (run_dir / FINAL_EVAL).write_text(
                json.dumps({"step": 100_000, "mean": -17.0, "scores": [-17.0] * 4})
            )
    records = {r["seed"]: r for r in atari100k.collect(tmp_path, ["Pong"], [1, 2])}
    assert (records[1]["steps"], records[1]["final"]) == (100_000, -17.0)
    assert (records[2]["steps"], records[2]["final"]) == (98_284, None)


@pytest.mark.parametrize("preset", ["atari-100k", "atari-100k-spr", "atari-100k-c51-per"])
def test_an_atari_100k_preset_trains_on_the_real_game_then_evaluates_watches_and_resumes(
    preset: str, tmp_path: Path
) -> None:
    """The user's path on a real ALE game, shortened: train-dqn with the preset, then watch
    the run folder (headless, recorded), evaluate it and resume it, each through the CLI."""
    import run

    short = ["--total-steps", "40", "--learning-starts", "24", "--batch-size", "4"]
    common = ["--runs-dir", str(tmp_path), "--run-name", "x", "--no-progress"]
    train = ["train-dqn", "--env-id", "ALE/Pong-v5", "--preset", preset, *short, *common]
    quick = ["--eval-every", "0", "--final-eval-episodes", "0", "--checkpoint-every", "20"]
    assert run.main([*train, *quick]) == 0
    run_dir = tmp_path / "x"
    checkpoint = torch.load(run_dir / "latest.pt", map_location="cpu", weights_only=False)
    assert checkpoint["step"] == 40
    assert checkpoint["network"]["head"] == ("expected" if preset == "atari-100k" else "c51")
    gif = tmp_path / "pong.gif"
    watch = ["watch", "--checkpoint", str(run_dir), "--headless", "--max-steps", "6"]
    assert run.main([*watch, "--record", str(gif)]) == 0
    assert gif.stat().st_size > 0
    evaluate = ["evaluate", "--checkpoint", str(run_dir), "--episodes", "1"]
    assert run.main(evaluate) == 0
    assert run.main(["train-dqn", "--resume", str(run_dir), "--total-steps", "60"]) == 0
    resumed = torch.load(run_dir / "latest.pt", map_location="cpu", weights_only=False)
    assert resumed["step"] == 60


def test_the_arms_plot_draws_each_kept_setting_of_the_game(tmp_path: Path) -> None:
    """`benchmarks.atari100k_arms` draws one panel per setting the scores file keeps runs of on
    the game, at each run's final step, and names none it has no run of."""
    from benchmarks.atari100k_arms import plot_arms

    kept = tmp_path / "scores.json"
    curve = [[20_000 * step, float(step)] for step in range(1, 6)]
    entries = [
        {"preset": "a", "game": "Boxing", "seed": 2, "final": 9.0, "curve": curve, "step": 100_000},
        {"preset": "a", "game": "Boxing", "seed": 1, "final": 7.0, "curve": curve},
        {"preset": "b", "game": "Pong", "seed": 1, "final": -20.0, "curve": curve},
    ]  # fmt: skip
    kept.write_text(json.dumps(entries))
    runs = atari100k.kept_runs(kept, "a", "Boxing")
    assert [(run["seed"], run["steps"], run["final"]) for run in runs] == [
        (1, 100_000, 7.0),  # no "step" kept: its last training game's
        (2, 100_000, 9.0),
    ]
    png = tmp_path / "arms.png"
    assert plot_arms(kept, "Boxing", ["a", "b", "c"], png) == ["a"]
    assert png.read_bytes().startswith(b"\x89PNG")
    assert plot_arms(kept, "Boxing", ["b"], tmp_path / "none.png") == []
    assert not (tmp_path / "none.png").exists()


def test_evaluate_scores_a_run_with_the_start_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`evaluate --noop-max N` plays the games with N no-op frames at most at their start, the
    rest as the run trained (a run of the preset trained without: --noop-max 0); without the
    flag, as trained; on a game the ALE does not play, a note and the trained start."""
    import agents.evaluate
    import run

    common = ["--runs-dir", str(tmp_path), "--no-progress", "--eval-every", "0"]
    short = ["--total-steps", "30", "--learning-starts", "24", "--batch-size", "4", *common]
    quick = ["--final-eval-episodes", "0", "--checkpoint-every", "30"]
    pong = ["--env-id", "ALE/Pong-v5", "--preset", "atari-100k", "--noop-max", "0"]
    assert run.main(["train-dqn", *pong, "--run-name", "pong", *short, *quick]) == 0
    catch = ["--env-id", "Playground/Catch-v0", "--preset", "catch", "--noop-max", "5"]
    assert run.main(["train-dqn", *catch, "--run-name", "catch", *short, *quick]) == 0
    played = []

    def record(network, env_id, episodes, **kwargs):
        played.append((env_id, kwargs["env_options"]))
        return types.SimpleNamespace(scores=[1.0] * episodes)

    monkeypatch.setattr(agents.evaluate, "score_games", record)
    capsys.readouterr()
    asks = (("pong", ["--noop-max", "30"]), ("pong", []), ("catch", ["--noop-max", "30"]))
    for run_name, extra in asks:
        checkpoint = str(tmp_path / run_name / "latest.pt")
        assert run.main(["evaluate", "--checkpoint", checkpoint, "--episodes", "2", *extra]) == 0
    (_, asked), (_, trained), (catch_id, catch_options) = played
    assert (asked["noop_max"], trained["noop_max"]) == (30, 0)
    assert {**asked, "noop_max": 0} == trained  # nothing else changed
    assert trained["fire_reset"] is False and trained["life_loss_clears_stack"] is True
    assert catch_id == "Playground/Catch-v0" and catch_options["noop_max"] == 5  # as trained
    assert capsys.readouterr().err.count("--noop-max has no effect on Playground/Catch-v0") == 1
