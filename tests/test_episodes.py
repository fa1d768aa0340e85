"""The training loop's game records: true returns and lengths summed from the rewards, the
reset step after a game not counted, life losses ended for learning only, and on ALE's split
step (which gymnasium's episode-statistics wrapper never sees) the games are recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agents.training import EpisodeTracker


def test_games_are_summed_from_the_rewards_and_the_reset_step_is_skipped() -> None:
    games = EpisodeTracker(2, life_loss=True, lives=np.array([3, 3]))
    no = np.zeros(2, dtype=bool)
    lost, finished = games.step(np.array([1.0, 0.0]), no, no, {"lives": np.array([3, 3])})
    assert lost.tolist() == [False, False] and finished == []
    lost, finished = games.step(np.array([2.0, 5.0]), no, no, {"lives": np.array([2, 3])})
    assert lost.tolist() == [True, False] and finished == []
    done = np.array([True, False])
    lost, finished = games.step(np.array([4.0, 1.0]), done, no, {"lives": np.array([0, 3])})
    assert finished == [(7.0, 3)]  # 1 + 2 + 4 over three steps, every life
    # Lane 0's next step is its reset step: its reward is not a game's.
    lost, finished = games.step(np.array([9.0, 1.0]), no, np.array([False, True]),
                                {"lives": np.array([3, 3])})  # fmt: skip
    assert finished == [(7.0, 4)]  # lane 1: 0 + 5 + 1 + 1, truncated
    lost, finished = games.step(np.array([1.0, 0.0]), np.array([True, False]), no,
                                {"lives": np.array([3, 3])})  # fmt: skip
    assert finished == [(1.0, 1)]  # lane 0's new game: the reset step's 9 left out


def test_an_atari_run_records_its_games(tmp_path: Path) -> None:
    from agents.config import DQNConfig
    from agents.dqn import train_dqn
    from playground import tags
    from playground.logger import MemoryLogger

    logger = MemoryLogger()
    cfg = DQNConfig(
        env_id="ALE/Breakout-v5",
        preset="none",
        total_steps=1_000,
        learning_starts=600,
        buffer_size=2_000,
        eval_every=0,
        runs_dir=str(tmp_path),
        run_name="b",
        device="cpu",
        progress=False,
        eval_video=False,
        sticky_actions="off",
        end_epsilon=1.0,
    )  # fmt: skip  (random play: an untrained network may never serve the ball)
    train_dqn(cfg, logger=logger)
    games = logger.values.get(tags.EPISODIC_RETURN, [])
    assert len(games) >= 2  # random Breakout games last about 150-250 steps
    assert all(0 <= score <= 20 for _, score in games)
    lengths = [length for _, length in logger.values[tags.EPISODIC_LENGTH]]
    assert all(length > 10 for length in lengths)
