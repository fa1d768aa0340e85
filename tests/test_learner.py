"""The DQN update's fast paths (torch.compile, CUDA graph, sync-free sampling) against the plain
eager path: same results for a fixed seed over a few updates."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.checkpoint import load_dqn_checkpoint
from agents.config import DQNConfig, validate
from agents.dqn import train_dqn
from agents.networks import build_q_network
from agents.replay import ReplayBuffer
from agents.update import DQNUpdate, UpdateRule
from playground.errors import UserError
from playground.logger import NullLogger
from playground.optim import make_optimizer
from tests.test_train_dqn import tiny

OBSERVATION_SHAPE = (4, 44, 44)  # the smallest frames a Nature CNN takes, rounded up
NUM_ACTIONS = 5
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def filled_replay(device: torch.device | str = "cpu") -> ReplayBuffer:
    """A buffer holding a few hundred random transitions with episode ends and n-step 3."""
    replay = ReplayBuffer(
        600, 2, OBSERVATION_SHAPE, 4, n_step=3, gamma=0.99, device=device, num_actions=NUM_ACTIONS
    )
    rng = np.random.default_rng(0)
    observations = np.zeros((2, *OBSERVATION_SHAPE), dtype=np.uint8)
    observations[:, -1] = rng.integers(0, 256, (2, *OBSERVATION_SHAPE[1:]), dtype=np.uint8)
    replay.start(observations)
    for step in range(250):
        ended = np.array([step % 37 == 36, step % 53 == 52])
        observations = np.roll(observations, -1, axis=1)
        observations[:, -1] = rng.integers(0, 256, (2, *OBSERVATION_SHAPE[1:]), dtype=np.uint8)
        replay.add(
            rng.integers(0, NUM_ACTIONS, 2), rng.standard_normal(2), ended, [False, False],
            observations,
        )  # fmt: skip
        observations[ended] = 0
    return replay


def make_learner(
    replay: ReplayBuffer, device: torch.device, cfg: DQNConfig, **options: bool
) -> DQNUpdate:
    """A learner on freshly seeded networks (the same weights for every call)."""
    torch.manual_seed(0)
    q_network = build_q_network(OBSERVATION_SHAPE, NUM_ACTIONS, "nature", cfg.dueling).to(device)
    target_network = copy.deepcopy(q_network).requires_grad_(False)
    with torch.no_grad():  # a target that differs from the online network
        for parameter in target_network.parameters():
            parameter.mul_(0.9)
    optimizer = make_optimizer(
        cfg.optimizer,
        q_network.parameters(),
        cfg.learning_rate,
        capturable=options.get("cuda_graph", False) and device.type == "cuda",
    )
    rule = UpdateRule(cfg.double_dqn, cfg.loss, cfg.max_grad_norm)
    return DQNUpdate(
        replay, q_network, target_network, optimizer, rule, cfg.batch_size, device, **options
    )


def run_updates(learner: DQNUpdate, updates: int, seed: int = 1) -> list[tuple[float, float]]:
    """Loss and mean Q of each update (the replay is sampled with the global generator)."""
    torch.manual_seed(seed)
    if learner.device.type == "cuda":
        torch.cuda.manual_seed(seed)
    results = []
    for _ in range(updates):
        loss, q_mean = learner.step()[:2]
        results.append((float(loss), float(q_mean)))
    return results


def assert_same_parameters(first: torch.nn.Module, second: torch.nn.Module, atol: float) -> None:
    for (name, a), b in zip(first.named_parameters(), second.parameters(), strict=True):
        torch.testing.assert_close(
            a, b, atol=atol, rtol=1e-4, msg=lambda text, n=name: f"{n}: {text}"
        )


CFG = DQNConfig(batch_size=16, learning_rate=1e-3, n_step=3, double_dqn=True, loss="huber")


def test_cuda_graph_is_ignored_on_the_cpu() -> None:
    replay = filled_replay()
    plain = make_learner(replay, torch.device("cpu"), CFG)
    graphed = make_learner(replay, torch.device("cpu"), CFG, cuda_graph=True)
    assert not graphed.use_graph
    assert run_updates(plain, 3) == run_updates(graphed, 3)
    assert_same_parameters(plain.q_network, graphed.q_network, atol=0.0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "cfg",
    [CFG, dataclasses.replace(CFG, dueling=True, double_dqn=False, loss="mse", max_grad_norm=0.0)],
    ids=["double-huber-clipped", "dueling-mse"],
)
def test_compiled_update_matches_the_eager_one_on_the_cpu(cfg: DQNConfig) -> None:
    replay = filled_replay()
    eager = make_learner(replay, torch.device("cpu"), cfg)
    compiled = make_learner(replay, torch.device("cpu"), cfg, compile=True)
    eager_results = run_updates(eager, 4)
    compiled_results = run_updates(compiled, 4)
    np.testing.assert_allclose(compiled_results, eager_results, rtol=1e-4, atol=1e-6)
    # The weights moved, and both paths moved them the same way.
    initial = make_learner(replay, torch.device("cpu"), cfg).q_network
    assert not torch.equal(next(initial.parameters()), next(eager.q_network.parameters()))
    assert_same_parameters(eager.q_network, compiled.q_network, atol=1e-5)


@needs_cuda
@pytest.mark.parametrize("compile", [False, True], ids=["graph", "compile+graph"])
def test_cuda_graph_matches_the_eager_update(compile: bool) -> None:
    # The replay stays on the CPU, so both paths draw the very same batches there.
    device = torch.device("cuda")
    replay = filled_replay("cpu")
    eager = make_learner(replay, device, CFG)
    graphed = make_learner(replay, device, CFG, cuda_graph=True, compile=compile)
    # Warm-up updates, the capture and eight replays: twelve updates on each side.
    eager_results = run_updates(eager, 12)
    graph_results = run_updates(graphed, 12)
    assert graphed.use_graph and graphed._graph is not None
    np.testing.assert_allclose(graph_results, eager_results, rtol=1e-3, atol=1e-5)
    assert_same_parameters(eager.q_network, graphed.q_network, atol=1e-4)


@needs_cuda
def test_a_graph_sampling_on_the_gpu_updates_every_step_without_host_reads() -> None:
    device = torch.device("cuda")
    learner = make_learner(filled_replay("cuda"), device, CFG, cuda_graph=True)
    before = [parameter.detach().clone() for parameter in learner.q_network.parameters()]
    run_updates(learner, 5)  # three warm-up updates, the capture and its first replay
    assert learner._graph is not None
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        outputs = [learner.step() for _ in range(5)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isfinite(out.loss) and torch.isfinite(out.q_mean) for out in outputs)
    steps = {float(state["step"]) for state in learner.optimizer.state.values()}
    assert steps == {10.0}  # every call, replays included, stepped the optimizer once
    after = list(learner.q_network.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_a_failed_capture_falls_back_to_the_eager_update(monkeypatch, capsys) -> None:
    """The CUDA-graph bookkeeping, on the CPU: warm-up updates are real updates, and a capture
    that fails leaves a note and an eager run with the same results as one never captured."""

    class Stream:
        def __init__(self, device=None) -> None:
            pass

        def wait_stream(self, other) -> None:
            pass

    def failing_capture(graph):
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: object())
    monkeypatch.setattr(torch.cuda, "graph", failing_capture)
    replay = filled_replay()
    plain = make_learner(replay, torch.device("cpu"), CFG)
    graphed = make_learner(replay, torch.device("cpu"), CFG, cuda_graph=True)
    graphed.use_graph = True  # as on a GPU
    assert run_updates(graphed, 6) == run_updates(plain, 6)
    assert not graphed.use_graph
    err = capsys.readouterr().err
    assert err.count("capturing the DQN update as a CUDA graph failed") == 1
    assert "(operation not permitted when stream is capturing)" in err
    assert_same_parameters(plain.q_network, graphed.q_network, atol=0.0)


def test_adagrad_cannot_be_captured() -> None:
    with pytest.raises(UserError, match="--cuda-graph cannot capture --optimizer adagrad"):
        validate(DQNConfig(cuda_graph=True, optimizer="adagrad"))


@pytest.mark.slow
def test_a_compiled_run_trains_and_resumes(tmp_path: Path, capsys) -> None:
    run_dir = train_dqn(tiny(tmp_path, total_steps=200, eval_every=0), logger=NullLogger())
    first = load_dqn_checkpoint(run_dir / "latest.pt")
    assert first["step"] == 200 and first["updates"] == 25
    # Speed flags may be switched on when resuming: they do not change what is learned.
    resumed = tiny(tmp_path, total_steps=300, resume=str(run_dir), compile=True, cuda_graph=True)
    train_dqn(resumed, logger=NullLogger())
    assert "--cuda-graph applies on CUDA only" in capsys.readouterr().err
    second = load_dqn_checkpoint(run_dir / "latest.pt")
    assert second["step"] == 300 and second["updates"] == 50
    assert second["config"]["compile"] is True
    assert all(torch.isfinite(value).all() for value in second["q_network"].values())


@pytest.mark.parametrize("double_dqn", [True, False])
def test_the_update_uses_double_dqn_targets_only_when_asked(double_dqn: bool) -> None:
    """With weights set by hand the online and target networks disagree on the best next
    action; the loss the update returns is the one of the rule asked for."""
    from agents.networks import QNetwork
    from agents.replay import ReplaySample
    from agents.update import dqn_update

    def network(next_values: list[float]) -> QNetwork:
        # Q-values that do not depend on the observation: the head's bias only.
        encoder = torch.nn.Flatten()
        encoder.output_size = 2  # type: ignore[assignment]
        net = QNetwork(encoder, num_actions=3)
        with torch.no_grad():
            net.head.weight.zero_()
            net.head.bias.copy_(torch.tensor(next_values))
        return net

    online = network([1.0, 5.0, 2.0])  # prefers action 1
    target = network([4.0, 0.5, 3.0])  # prefers action 0, values action 1 at 0.5
    batch = ReplaySample(
        observations=torch.zeros(2, 2),
        actions=torch.tensor([0, 2]),
        returns=torch.tensor([1.0, 0.0]),
        next_observations=torch.zeros(2, 2),
        dones=torch.tensor([0.0, 0.0]),
        discounts=torch.tensor([0.5, 0.5]),
        weights=torch.ones(2),
    )
    optimizer = torch.optim.SGD(online.parameters(), lr=0.0)
    rule = UpdateRule(double_dqn=double_dqn, loss="mse", max_grad_norm=0.0)
    loss, q_mean, errors, _ = dqn_update(batch, online, target, optimizer, rule)
    next_value = 0.5 if double_dqn else 4.0  # target's value of online's choice / target's max
    targets = torch.tensor([1.0, 0.0]) + 0.5 * next_value
    taken = torch.tensor([1.0, 2.0])  # online's values of actions 0 and 2
    assert loss.item() == pytest.approx(((taken - targets) ** 2).mean().item())
    assert q_mean.item() == pytest.approx(1.5)
    assert errors.tolist() == pytest.approx((targets - taken).tolist())
