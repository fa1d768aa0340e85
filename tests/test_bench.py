"""`run.py bench`: every row is measured and written to JSON (speed itself is never asserted)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.suite import BenchConfig, run_bench
from playground.errors import UserError

QUICK = dict(
    device="cpu",
    env_id="Playground/Catch-v0",
    num_envs=2,
    seconds=0.2,
    dqn_steps=300,
    gan_steps=1,
    fast_paths=False,
)


def test_bench_measures_every_part_and_writes_json(tmp_path: Path) -> None:
    json_path = tmp_path / "bench.json"
    rows = run_bench(BenchConfig(**QUICK, json_path=str(json_path)))
    names = [row.name for row in rows]
    expected = [
        "env steps/s, 1 env (Playground/Catch-v0)",
        "env steps/s, 2 envs (Playground/Catch-v0)",
        "replay bytes per transition",
        "replay sample rate, batch 32",
        "replay sample rate, batch 32, sync-free",
        "DQN learner updates/s, batch 32, eager",
        "DQN training steps/s (Playground/Catch-v0), eager",
        "DCGAN training images/s, 64x64",
        "DCGAN training images/s, 32x32",
    ]
    for part in expected:
        assert any(part in name for name in names), f"no row for {part!r} in {names}"
    assert len(names) == len(set(names)) == len(expected)
    assert all(math.isfinite(row.value) and row.value > 0 for row in rows)
    payload = json.loads(json_path.read_text())
    assert payload["device"] == "cpu"
    assert [result["name"] for result in payload["results"]] == names


@pytest.mark.slow
def test_bench_times_the_compiled_update() -> None:
    rows = run_bench(BenchConfig(**{**QUICK, "fast_paths": True}, parts=("learner",)))
    assert [row.name for row in rows] == [
        "DQN learner updates/s, batch 32, eager",
        "DQN learner updates/s, batch 32, compiled",
    ]
    assert "compiling took" in rows[1].detail


def test_unknown_bench_part_is_refused() -> None:
    with pytest.raises(UserError, match="--parts: unknown gpu"):
        run_bench(BenchConfig(**QUICK, parts=("gpu",)))


def test_a_presets_run_is_rescored_from_the_checkpoint_its_folder_means(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # benchmarks.presets re-scores the checkpoint a run hands over (best.pt) on fresh games, at
    # the run's own evaluation epsilon, apart from the evaluations that chose it.
    from agents import evaluate as evaluate_module
    from agents.config import DQNConfig
    from agents.dqn import train_dqn
    from benchmarks import presets

    run_dir = train_dqn(
        DQNConfig(
            env_id="CartPole-v1", total_steps=300, learning_starts=100, batch_size=8,
            buffer_size=1_000, eval_every=150, eval_episodes=2, eval_epsilon=0.25,
            eval_video=False, checkpoint_every=150, runs_dir=str(tmp_path), run_name="run",
            device="cpu", progress=False,
        )
    )  # fmt: skip
    asked = []

    def fake_evaluate(config):
        asked.append(config)
        return {"mean": 123.456}

    monkeypatch.setattr(evaluate_module, "evaluate", fake_evaluate)
    assert presets.rescore(run_dir) == 123.46
    (config,) = asked
    assert (config.checkpoint, config.episodes, config.epsilon) == (str(run_dir), 100, 0.25)
    assert config.seed == presets.RESCORE_SEED
    monkeypatch.undo()
    # For real: three random-ish games of the run's best.pt at epsilon 0.25.
    score = presets.rescore(run_dir, games=3)
    assert 8 <= score <= 500


def test_every_update_cost_variant_builds_and_its_update_moves_the_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # benchmarks.update_cost is run by hand: this keeps each variant it times building and
    # learning, so a flag that stops composing with the others fails here, not in a report.
    import torch

    from benchmarks import update_cost

    monkeypatch.setattr(update_cost, "FILLED", 200)  # enough for batches of 32, 10-step returns
    monkeypatch.setattr(update_cost, "_REPLAYS", {})
    for variant in update_cost.VARIANTS:
        step, update = update_cost.make_update(variant, update_cost.replay_for(0))
        before = [p.detach().clone() for p in update.q_network.parameters()]
        tree = update.replay.priorities
        total = float(tree.total) if tree is not None else None
        step()
        after = list(update.q_network.parameters())
        moved = [not torch.equal(a, b) for a, b in zip(before, after, strict=True)]
        assert any(moved), f"{variant.name}: one update left every weight as it was"
        assert (tree is not None) == variant.prioritized, variant.name
        if tree is not None:  # the sampled transitions' priorities were set from their loss
            assert float(tree.total) != total, f"{variant.name}: the sum tree did not change"


def test_weight_average_takes_the_mean_of_the_float_weights_and_plays_it(tmp_path: Path) -> None:
    import shutil

    import torch

    from agents.config import DQNConfig
    from agents.dqn import train_dqn
    from benchmarks import weight_average

    first = {"q_network": {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}}
    second = {"q_network": {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(5)}}
    mean = weight_average.mean_weights([first, second])
    assert torch.equal(mean["w"], torch.tensor([2.0, 4.0])) and int(mean["n"]) == 5

    settings = dict(
        env_id="Playground/Catch-v0", preset="none", total_steps=120, learning_starts=40,
        buffer_size=500, batch_size=8, eval_every=0, frame_size=12, encoder="vgg",
        encoder_width=8, runs_dir=str(tmp_path), run_name="run", device="cpu", progress=False,
    )  # fmt: skip
    run_dir = train_dqn(DQNConfig(**settings))
    shutil.copy(run_dir / "latest.pt", tmp_path / "early.pt")
    train_dqn(DQNConfig(resume=str(run_dir), total_steps=200, progress=False))
    checkpoints = weight_average.load_run([str(run_dir / "latest.pt"), str(tmp_path / "early.pt")])
    assert [c["step"] for c in checkpoints] == [120, 200]  # ordered by step
    scores = weight_average.score(
        checkpoints[-1], weight_average.mean_weights(checkpoints), games=3, seed=0, envs=2
    )
    assert len(scores) == 3 and set(scores) <= {-1.0, 1.0}
    other = train_dqn(DQNConfig(**{**settings, "run_name": "other", "env_id": "CartPole-v1",
                                   "encoder": "mlp"}))  # fmt: skip
    with pytest.raises(UserError, match="one network on one game"):
        weight_average.load_run([str(run_dir / "latest.pt"), str(other / "latest.pt")])
