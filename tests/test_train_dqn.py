"""End-to-end DQN runs: TensorBoard tags, checkpoints, resume, evaluation, transfer, learning."""

from __future__ import annotations

import copy
import dataclasses
import json
import signal
from pathlib import Path

import pytest
import torch

from agents.checkpoint import load_dqn_checkpoint, network_from_checkpoint
from agents.config import DQNConfig, EvaluateConfig, env_options
from agents.dqn import train_dqn
from agents.evaluate import evaluate
from agents.rollout import score_games
from playground.checkpoint import FINAL_EVAL, save_checkpoint
from playground.errors import UserError
from playground.logger import NullLogger
from tests.conftest import hparams_tags, read_event_tags, read_scalars

REQUIRED_TAGS = {
    "charts/episodic_return",
    "charts/episodic_length",
    "charts/epsilon",
    "charts/sps",
    "losses/td_loss",
    "losses/q_values",
    "eval/episodic_return",
}


def tiny(tmp_path: Path, **changes: object) -> DQNConfig:
    """A run that takes seconds: Catch, small buffer, early learning, frequent logs."""
    settings = dict(
        env_id="Playground/Catch-v0",
        total_steps=400,
        learning_starts=100,
        buffer_size=1_000,
        batch_size=8,
        target_update_frequency=50,
        eval_every=200,
        eval_episodes=2,
        checkpoint_every=200,
        log_every=50,
        runs_dir=str(tmp_path),
        run_name="run",
        device="cpu",
        progress=False,
    )
    settings.update(changes)
    return DQNConfig(**settings)


def test_short_run_writes_every_tag_and_checkpoints(tmp_path: Path) -> None:
    run_dir = train_dqn(tiny(tmp_path))
    tags = read_event_tags(run_dir)
    assert set(tags["scalars"]) >= REQUIRED_TAGS, REQUIRED_TAGS - set(tags["scalars"])
    assert "_hparams_/experiment" in hparams_tags(run_dir)
    for name in ("latest.pt", "best.pt", "replay.pt"):
        assert (run_dir / name).is_file(), name
    checkpoint = load_dqn_checkpoint(run_dir / "latest.pt")
    assert checkpoint["step"] == 400
    assert checkpoint["updates"] == (400 - 100) // 4
    assert {"q_network", "target_network", "optimizer", "rng", "config"} <= set(checkpoint)
    assert checkpoint["config"]["env_id"] == "Playground/Catch-v0"
    # Returns logged are the true game score: Catch gives +1 or -1 per one-ball game.
    returns = {value for _, value in read_scalars(run_dir, "charts/episodic_return")}
    assert returns <= {-1.0, 1.0}


def test_resume_continues_where_the_run_stopped(tmp_path: Path) -> None:
    first = train_dqn(tiny(tmp_path, total_steps=200))
    before = load_dqn_checkpoint(first / "latest.pt")
    assert before["step"] == 200
    # Resuming takes the saved settings; extend the run by editing its saved total.
    before["config"]["total_steps"] = 400
    save_checkpoint(first / "latest.pt", before)
    resumed = train_dqn(dataclasses.replace(tiny(tmp_path), resume=str(first)))
    assert resumed == first
    after = load_dqn_checkpoint(first / "latest.pt")
    assert after["step"] == 400
    assert after["updates"] == (400 - 100) // 4  # updates counted across the two sessions
    # The optimizer state was restored and moved on (Adam's step count grows).
    adam_steps = lambda checkpoint: next(iter(checkpoint["optimizer"]["state"].values()))["step"]  # noqa: E731
    assert adam_steps(after) == adam_steps(before) + (400 - 200) // 4
    # The curves continue: no step logged twice, nothing missing after the resume point.
    epsilon_steps = [step for step, _ in read_scalars(first, "charts/epsilon")]
    assert epsilon_steps == sorted(set(epsilon_steps))
    assert epsilon_steps[-1] == 400 and 250 in epsilon_steps


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_saves_the_step_it_arrived_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signal_number: int
) -> None:
    """Ctrl-C or SIGTERM during step 150 ends the loop after that step, which is saved; the
    handlers in place before the run are back afterwards."""
    import agents.dqn as dqn

    calls = {"count": 0}
    real_linear_schedule = dqn.linear_schedule

    def signalling_schedule(*args: object) -> float:
        calls["count"] += 1
        if calls["count"] == 150:
            signal.raise_signal(signal_number)
        return real_linear_schedule(*args)

    handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    monkeypatch.setattr(dqn, "linear_schedule", signalling_schedule)
    run_dir = train_dqn(tiny(tmp_path, checkpoint_every=10_000, eval_every=0), logger=NullLogger())
    checkpoint = load_dqn_checkpoint(run_dir / "latest.pt")
    assert checkpoint["step"] == 150 and calls["count"] == 150
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers


def test_a_resumed_run_restores_networks_optimizer_and_rng_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agents.dqn as dqn

    first = train_dqn(tiny(tmp_path, total_steps=200, eval_every=0), logger=NullLogger())
    saved = load_dqn_checkpoint(first / "latest.pt")
    seen: dict[str, object] = {}
    import agents.learner as learning

    real_learner, real_epsilon_greedy = learning.DQNUpdate, dqn.epsilon_greedy

    def spy_learner(replay, q_network, target_network, optimizer, *args, **kwargs):
        seen["q_network"] = {k: v.clone() for k, v in q_network.state_dict().items()}
        seen["target_network"] = {k: v.clone() for k, v in target_network.state_dict().items()}
        seen["optimizer"] = copy.deepcopy(optimizer.state_dict())
        return real_learner(replay, q_network, target_network, optimizer, *args, **kwargs)

    def spy_epsilon_greedy(q_values, epsilon, rng):
        if "rng" not in seen:  # the first draw of the resumed run
            seen["rng"] = copy.deepcopy(rng.bit_generator.state)
            seen["torch_rng"] = torch.get_rng_state()
        return real_epsilon_greedy(q_values, epsilon, rng)

    monkeypatch.setattr(learning, "DQNUpdate", spy_learner)
    monkeypatch.setattr(dqn, "epsilon_greedy", spy_epsilon_greedy)
    saved["config"]["total_steps"] = 240
    save_checkpoint(first / "latest.pt", saved)
    train_dqn(dataclasses.replace(tiny(tmp_path), resume=str(first)), logger=NullLogger())

    for name in ("q_network", "target_network"):
        assert seen[name].keys() == saved[name].keys()
        for key, value in saved[name].items():
            assert torch.equal(seen[name][key], value), (name, key)
    assert seen["optimizer"]["param_groups"] == saved["optimizer"]["param_groups"]
    for index, state in saved["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(seen["optimizer"]["state"][index][key]), value)
    assert seen["rng"] == saved["rng"]["generator"]
    assert torch.equal(seen["torch_rng"], saved["rng"]["torch"])


def test_n_step_returns_reach_the_update(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agents.update

    discounts: list[torch.Tensor] = []
    real_update = agents.update.dqn_update

    def recording_update(batch, *args, **kwargs):
        discounts.append(batch.discounts.clone())
        return real_update(batch, *args, **kwargs)

    monkeypatch.setattr(agents.update, "dqn_update", recording_update)
    gamma = 0.9
    for n_step in (1, 3):
        discounts.clear()
        train_dqn(
            tiny(tmp_path, run_name=f"n{n_step}", n_step=n_step, gamma=gamma, eval_every=0),
            logger=NullLogger(),
        )
        seen = torch.cat(discounts)
        assert len(discounts) == (400 - 100) // 4
        allowed = torch.tensor([gamma**k for k in range(1, n_step + 1)])
        assert torch.isclose(seen[:, None], allowed[None]).any(dim=1).all()
        # Most sums run the full n steps (a Catch game is 11 steps long).
        assert torch.isclose(seen, torch.tensor(gamma**n_step)).float().mean() > 0.5


def test_vector_envs_keep_the_replay_ratio(tmp_path: Path) -> None:
    run_dir = train_dqn(tiny(tmp_path, num_envs=4, eval_every=0), logger=NullLogger())
    checkpoint = load_dqn_checkpoint(run_dir / "latest.pt")
    assert checkpoint["step"] == 400
    assert checkpoint["updates"] == (400 - 100) // 4


@pytest.mark.parametrize(
    "changes",
    [
        {"encoder": "impala", "dueling": True, "n_step": 3, "double_dqn": False, "loss": "mse"},
        {"optimizer": "rmsprop", "tau": 0.05, "target_update_frequency": 4, "augment": True},
        {"env_id": "CartPole-v1", "optimizer": "sgd", "momentum": 0.9, "nesterov": True},
        {
            "env_id": "Playground/Snake-v0",
            "frame_size": 12,
            "encoder": "vgg",
            "symmetry_augment": True,
        },
    ],
)
def test_variants_train(tmp_path: Path, changes: dict) -> None:
    run_dir = train_dqn(
        tiny(tmp_path, total_steps=240, eval_every=0, **changes), logger=NullLogger()
    )
    assert load_dqn_checkpoint(run_dir / "latest.pt")["step"] == 240


def test_a_vector_game_is_evaluated_and_filmed(tmp_path: Path) -> None:
    """CartPole has no frames unless asked for them: the evaluation's video still gets them."""
    run_dir = train_dqn(tiny(tmp_path, env_id="CartPole-v1", total_steps=200, eval_episodes=1))
    assert read_scalars(run_dir, "eval/episodic_return")
    assert "eval/video" in read_event_tags(run_dir)["images"]


def test_transfer_loads_the_encoder_and_freezing_keeps_it_through_updates(
    tmp_path: Path,
) -> None:
    source = train_dqn(
        tiny(tmp_path, run_name="source", total_steps=200, eval_every=0), logger=NullLogger()
    )
    source_encoder = load_dqn_checkpoint(source / "latest.pt")["q_network"]
    target = train_dqn(
        tiny(
            tmp_path,
            run_name="target",
            env_id="Playground/Breakout-v0",
            total_steps=200,
            learning_starts=50,
            target_update_frequency=100_000,  # the target network keeps the starting weights
            eval_every=0,
            init_from=str(source),
            freeze_encoder=True,
        ),
        logger=NullLogger(),
    )
    checkpoint = load_dqn_checkpoint(target / "latest.pt")
    assert checkpoint["updates"] == (200 - 50) // 4  # real updates happened
    trained, start = checkpoint["q_network"], checkpoint["target_network"]
    encoder_keys = [key for key in source_encoder if key.startswith("encoder.")]
    assert encoder_keys
    for key in encoder_keys:
        assert torch.equal(trained[key], source_encoder[key]), key  # loaded, then frozen
        assert torch.equal(start[key], source_encoder[key]), key
    head_keys = [key for key in trained if key.startswith("head.")]
    assert any(not torch.equal(trained[key], start[key]) for key in head_keys)  # the head learned
    with pytest.raises(UserError, match="encoder is"):
        train_dqn(
            tiny(tmp_path, run_name="bad", env_id="CartPole-v1", init_from=str(source)),
            logger=NullLogger(),
        )


def test_evaluate_reports_true_scores_and_refuses_foreign_games(tmp_path: Path) -> None:
    run_dir = train_dqn(tiny(tmp_path, total_steps=200, eval_every=0), logger=NullLogger())
    result = evaluate(EvaluateConfig(checkpoint=str(run_dir), episodes=5, device="cpu"))
    # Five whole Catch games score +1 or -1 each: the sum is odd, min and max are +-1.
    assert result["episodes"] == 5
    total = round(result["mean"] * 5)
    assert total == pytest.approx(result["mean"] * 5) and total % 2 == 1
    assert {result["min"], result["max"]} <= {-1.0, 1.0}
    assert result["std"] == pytest.approx((1 - result["mean"] ** 2) ** 0.5)
    # The same seed plays the same games.
    assert evaluate(EvaluateConfig(checkpoint=str(run_dir), episodes=5, device="cpu")) == result
    with pytest.raises(UserError, match="trained on Playground/Catch-v0"):
        evaluate(EvaluateConfig(checkpoint=str(run_dir), env_id="Playground/Snake-v0", episodes=1))


def test_unknown_game_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown environment id"):
        train_dqn(tiny(tmp_path, env_id="ALE/Pongg-v5"))
    with pytest.raises(UserError, match="declares no symmetries"):
        train_dqn(tiny(tmp_path, symmetry_augment=True))  # Catch
    assert not any(tmp_path.iterdir())
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_dqn_learns_catch_within_50k_steps(tmp_path: Path) -> None:
    """The easiest built-in game to near-optimal play (a mean score >= 0.9 of a possible 1.0)
    with its preset (20,000 steps)."""
    import agents.presets
    from playground.presets import with_preset

    cfg = with_preset(
        DQNConfig,
        agents.presets,
        "catch",
        env_id="Playground/Catch-v0",
        runs_dir=str(tmp_path),
        run_name="learn",
        device="cpu",
        progress=False,
    )
    assert cfg.total_steps <= 50_000
    run_dir = train_dqn(cfg, logger=NullLogger())
    result = evaluate(
        EvaluateConfig(checkpoint=str(run_dir / "best.pt"), episodes=50, epsilon=0.0, device="cpu")
    )
    assert result["mean"] >= 0.9


def test_learning_rate_decay_follows_the_step(tmp_path: Path) -> None:
    run_dir = train_dqn(
        tiny(tmp_path, learning_rate_decay="linear", learning_rate=1e-3, eval_every=0),
        logger=NullLogger(),
    )
    checkpoint = load_dqn_checkpoint(run_dir / "latest.pt")
    rate = checkpoint["optimizer"]["param_groups"][0]["lr"]
    # Set before the last update, at step 399 of 400: 1e-3 * (1 - 0.9 * 399 / 400).
    assert rate == pytest.approx(1e-3 * (1 - 0.9 * 399 / 400))


def test_policy_ema_plays_the_average_of_the_online_weights_and_resumes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--policy-ema: after every update the average moves the rate towards the online weights
    (worked out here from the online weights after each of the run's updates); evaluations,
    the checkpoint's playing weights and `evaluate` use it; a resumed run continues it."""
    import agents.dqn as dqn
    import agents.learner as learning

    rate = 0.2
    online_after: list[dict[str, torch.Tensor]] = []
    evaluated: list[torch.nn.Module] = []
    real_step, real_evaluate = learning.DQNUpdate.step, dqn.evaluate_during_training

    def spy_step(self):
        if not online_after:  # the weights the average starts from
            online_after.append(_parameters(self.q_network))
        result = real_step(self)
        online_after.append(_parameters(self.q_network))
        return result

    def spy_evaluate(cfg, run, network, device, step):
        evaluated.append(network)
        return real_evaluate(cfg, run, network, device, step)

    monkeypatch.setattr(learning.DQNUpdate, "step", spy_step)
    monkeypatch.setattr(dqn, "evaluate_during_training", spy_evaluate)
    cfg = tiny(tmp_path, total_steps=200, eval_every=200, policy_ema=rate, final_eval_episodes=4)
    run_dir = train_dqn(cfg)
    saved = load_dqn_checkpoint(run_dir / "latest.pt")

    def average(start: dict[str, torch.Tensor], updates: list[dict[str, torch.Tensor]]):
        mean = {name: value.clone() for name, value in start.items()}
        for online in updates:
            for name in mean:
                mean[name] += rate * (online[name] - mean[name])
        return mean

    expected = average(online_after[0], online_after[1:])
    assert len(online_after) - 1 == 25  # one update every 4 steps after learning_starts
    for name, value in expected.items():
        assert torch.allclose(saved["policy_network"][name], value, atol=1e-6), name
        assert not torch.allclose(saved["q_network"][name], value, atol=1e-6), name
    # The evaluation played the average, and so does every saved policy.
    assert evaluated and all(
        torch.equal(evaluated[-1].state_dict()[name], saved["policy_network"][name])
        for name in expected
    )
    played = network_from_checkpoint(saved)
    assert all(torch.equal(played.state_dict()[k], v) for k, v in saved["policy_network"].items())
    # The final games: the average's, and the same games by the online network beside them.
    record = json.loads((run_dir / FINAL_EVAL).read_text())
    online = network_from_checkpoint({**saved, "policy_network": None})

    def final_games(network: torch.nn.Module) -> list[float]:
        return score_games(
            network, cfg.env_id, 4, epsilon=cfg.eval_epsilon, seed=cfg.seed + 1_000_000,
            env_options=env_options(cfg), num_envs=cfg.eval_envs,
        ).scores  # fmt: skip

    assert record["scores"] == final_games(played)
    assert record["online"]["scores"] == final_games(online)
    assert evaluate(EvaluateConfig(checkpoint=str(run_dir), episodes=2))["episodes"] == 2

    # A resumed run starts from the saved average, not from a copy of the online network.
    online_after.clear()
    resumed = train_dqn(DQNConfig(resume=str(run_dir), total_steps=240, progress=False))
    continued = load_dqn_checkpoint(resumed / "latest.pt")
    expected = average({name: saved["policy_network"][name] for name in expected}, online_after[1:])
    assert len(online_after) - 1 == 10
    for name, value in expected.items():
        assert torch.allclose(continued["policy_network"][name], value, atol=1e-6), name
    # A checkpoint that lost the average is one line, not a KeyError.
    del continued["policy_network"]
    save_checkpoint(resumed / "latest.pt", continued)
    with pytest.raises(UserError, match="its checkpoint has none"):
        train_dqn(DQNConfig(resume=str(resumed), total_steps=280, progress=False))


def _parameters(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in network.named_parameters()}
