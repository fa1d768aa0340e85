"""Ape-X on Ray: the epsilon ladder; actors' rounds enter the buffer exactly (every stored frame
stack equals what the actor's env returned, across episode ends, a restarted actor and the
ring's wrap-around); and, in a private network namespace (loopback only), real Ray runs: two
local actors whose weights arrive and whose replay ratio holds, a 2-node cluster that learns
Catch, and an actor killed with SIGKILL that is replaced while the run finishes."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.apex import ActorWorker, add_round, epsilon_ladder, wire_bytes
from agents.networks import build_q_network
from agents.replay import ReplayBuffer
from tests.test_train_dqn import tiny

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "tests" / "ray_scenarios.py"


def test_the_epsilon_ladder() -> None:
    ladder = epsilon_ladder(8, 0.4, 7.0)
    assert ladder[0] == pytest.approx(0.4) and ladder[-1] == pytest.approx(0.4**8)
    assert all(a > b for a, b in zip(ladder, ladder[1:], strict=False))
    assert ladder[3] == pytest.approx(0.4 ** (1 + 7 * 3 / 7))
    assert epsilon_ladder(1) == [0.4]


class RecordingActor(ActorWorker):
    """An in-process actor that also keeps every full observation its envs returned."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[np.ndarray] = [self.observations.copy()]
        real_step = self.envs.step

        def step(actions):
            outcome = real_step(actions)
            self.seen.append(outcome[0].copy())
            return outcome

        self.envs.step = step


@pytest.mark.parametrize(
    ("game", "rounds", "slots"),
    [
        # Catch, with a small ring (30 slots per lane) so the rounds wrap around it several times.
        ({"env_id": "Playground/Catch-v0"}, 12, 30),
        # Breakout with --life-loss-clears-stack: stacks that start anew at each lost life, the
        # whole history kept so every lost life in it is checked.
        (
            {
                "env_id": "ALE/Breakout-v5", "life_loss_clears_stack": True, "noop_max": 0,
                "sticky_actions": "off",
            },
            60,
            600,
        ),
    ],
    ids=["catch", "breakout-clearing-stacks"],
)  # fmt: skip
def test_rounds_from_actors_enter_the_buffer_exactly(
    tmp_path: Path, game: dict, rounds: int, slots: int
) -> None:
    cfg = tiny(tmp_path, envs_per_actor=2, frame_size=12, frame_stack=3, encoder="vgg", **game)
    lanes, actors_count = 2, 2
    shape = (3, 12, 12)
    actions = 4 if "Breakout" in cfg.env_id else 3
    weights = {"q_network": build_q_network(shape, actions, "vgg").state_dict(), "version": 0}
    settings = dataclasses.asdict(cfg)
    actors = [RecordingActor(settings, index, 0.5, weights) for index in range(actors_count)]
    replay = ReplayBuffer(
        slots * actors_count * lanes, actors_count * lanes, shape, 3, n_step=2, gamma=0.9,
        num_actions=actions,
    )  # fmt: skip
    replay.start_frames(np.concatenate([actor.first_frames() for actor in actors]))
    history: list[list[np.ndarray]] = [[] for _ in range(actors_count * lanes)]
    for index, actor in enumerate(actors):  # per lane: the observations in the buffer's order
        for lane in range(lanes):
            history[index * lanes + lane].append(actor.seen[0][lane])
    restarts = 0
    for round_index in range(rounds):
        if round_index == 5:
            # Actor 1 is "restarted": new envs, new episodes; its lanes are cut.
            actors[1] = RecordingActor(settings, 1, 0.5, weights)
        chunks = [actor.collect(9) for actor in actors]
        assert wire_bytes(chunks[0]) == 9 * lanes * (144 + 8 + 4 + 4)
        add_round(replay, chunks, lanes, clip_rewards=True)
        restarts += sum(int(chunk["stack_restart"].sum()) for chunk in chunks)
        for index, actor in enumerate(actors):
            observations = actor.seen[-9:]
            if chunks[index]["fresh"]:  # its first frames stand in for step 0
                observations = [actor.seen[0], *actor.seen[1:][-8:]]
            for t in range(9):
                for lane in range(lanes):
                    history[index * lanes + lane].append(observations[t][lane])
    if cfg.life_loss_clears_stack:
        assert restarts >= 4  # lives were lost, and their stacks cleared, in the checked steps
    else:
        assert restarts == 0
    # Every frame stack the buffer can rebuild equals what the env returned at that position.
    size, position = replay.slots_per_env, replay.position
    checked = 0
    for lane in range(actors_count * lanes):
        for stored in range(max(position - size + 3, 0), position):
            rebuilt = replay._stacks(torch.tensor([lane]), torch.tensor([stored]))[0].numpy()
            assert np.array_equal(rebuilt, history[lane][stored]), (lane, stored)
            checked += 1
    assert checked > 80
    batch = replay.sample(64)
    assert batch.observations.shape == (64, *shape)


def _ray_available() -> str | None:
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed"
    if shutil.which("unshare") is None:
        return "no unshare to make a private network namespace"
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link set lo up && true"], capture_output=True
    )
    if probe.returncode != 0:
        return "private network namespaces are not allowed here (unshare -n needs root)"
    return None


def run_scenario(name: str, tmp_path: Path, timeout: float, env: dict | None = None) -> dict:
    """A Ray scenario in its own private network namespace, where only loopback exists
    (`env`: variables to set for it)."""
    reason = _ray_available()
    if reason:
        pytest.skip(reason)
    output = tmp_path / "result.json"
    before = _ray_processes()
    command = (
        f"ip link set lo up && OMP_NUM_THREADS=1 {sys.executable} {SCENARIOS} {name} "
        f"{tmp_path} {output}"
    )
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    # Only this scenario's own Ray processes count (another Ray on the machine is not ours).
    leftovers = _ray_processes() - before
    assert not leftovers, f"Ray processes left running: {sorted(leftovers)}"
    return json.loads(output.read_text())


def _ray_processes() -> set[int]:
    """PIDs of the Ray daemons now running (raylet, gcs_server)."""
    found = subprocess.run(["pgrep", "-f", "raylet|gcs_server"], capture_output=True, text=True)
    return {int(pid) for pid in found.stdout.split()}


@pytest.mark.slow
def test_two_local_actors_get_weights_and_keep_the_replay_ratio(tmp_path: Path) -> None:
    # A cluster address in the environment (as `ray start` leaves one on the machine) is not
    # joined: a run without --ray-address starts a Ray of its own.
    result = run_scenario("local", tmp_path, timeout=600, env={"RAY_ADDRESS": "127.0.0.1:9"})
    assert result["step"] == result["total_steps"]
    # One update per 4 env steps from the round learning started in, to the end.
    assert result["updates"] == (result["total_steps"] - result["first_learning_step"]) // 4
    assert min(result["actor_versions"]) >= 2  # fresh weights reached both actors
    assert result["bytes_per_transition"] == pytest.approx(144 + 8 + 4 + 3, abs=1)


@pytest.mark.slow
def test_a_two_node_cluster_learns_catch(tmp_path: Path) -> None:
    result = run_scenario("cluster", tmp_path, timeout=900)
    assert result["actor_nodes"] == [result["second_node"]] * 2  # placed by the resource
    assert result["best_eval"] >= 0.9  # Catch learned (the bar is 0.9)
    # ... within its run of 30,000 steps, which ends there to within one step of each lane.
    assert result["total_steps"] == 30_000
    assert result["total_steps"] <= result["last_step"] < result["total_steps"] + 4


@pytest.mark.slow
def test_an_actor_killed_mid_run_is_replaced_and_the_run_finishes(tmp_path: Path) -> None:
    result = run_scenario("kill", tmp_path, timeout=600)
    assert result["killed"] and result["restarts"] >= 1
    # It died after a weight sync had replaced the weights it was built with.
    assert result["killed_at_version"] >= 1
    # The run ends at its step count, to within one step of every lane (2 actors x 2 envs).
    assert result["total_steps"] <= result["step"] < result["total_steps"] + 4
    assert "died at step" in result["log"]


@pytest.mark.slow
def test_the_atari_100k_runs_are_placed_as_ray_tasks_by_their_resource(tmp_path: Path) -> None:
    result = run_scenario("atari100k", tmp_path, timeout=900)
    assert result["nodes"] == [result["second_node"]]  # only that node offers "runner"
    assert result["final_games"] == {"Pong-s1": 2, "Boxing-s1": 2}
    assert result["steps"] == {"Pong-s1": 300, "Boxing-s1": 300}


@pytest.mark.slow
def test_an_atari_100k_run_lost_with_its_node_resumes_on_another(tmp_path: Path) -> None:
    result = run_scenario("atari100k_node_loss", tmp_path, timeout=900)
    assert "error" not in result["placed"], result["placed"]
    # The node went after the checkpoint at step 400; the retry, placed on the node added
    # after (the only other one with the resource), resumed there, from the step on disk.
    assert result["lost_at"] >= result["checkpoint_step"] >= 400
    assert (
        f"resuming {tmp_path / 'runs' / 'Pong-s1'} at step {result['lost_at']:,}" in result["log"]
    )
    assert result["placed"]["Pong-s1"] == result["second_node"] != result["first_node"]
    assert result["final_step"] == 1000 and result["final_games"] == 2
    # One update per step after the warm-up: the resumed run's counters and replay continued.
    assert result["updates"] == 1000 - 500
