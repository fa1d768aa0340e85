"""Ray scenarios for tests/test_apex.py, each run in a private network namespace (only
loopback exists there): `python tests/ray_scenarios.py NAME TMP_DIR RESULT_JSON`."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from agents.checkpoint import load_dqn_checkpoint
from agents.config import DQNConfig
from agents.dqn import train_dqn
from agents.presets import PRESETS
from playground.logger import MemoryLogger

torch.set_num_threads(1)


def catch(tmp: Path, **changes) -> DQNConfig:
    """The catch preset, with actors."""
    settings = {
        **PRESETS["catch"].settings,
        "env_id": "Playground/Catch-v0",
        "runs_dir": str(tmp),
        "run_name": "apex",
        "device": "cpu",
        "progress": False,
        "actors": 2,
        "envs_per_actor": 2,
        "chunk_steps": 50,
        **changes,
    }
    return DQNConfig(**settings)


def last(logger: MemoryLogger, tag: str) -> float:
    return logger.values[tag][-1][1]


def local(tmp: Path) -> dict:
    logger = MemoryLogger()
    cfg = catch(tmp, total_steps=4_000, learning_starts=1_000, weight_sync_every=20, eval_every=0)
    run_dir = train_dqn(cfg, logger=logger)
    state = load_dqn_checkpoint(run_dir / "latest.pt")
    round_size = cfg.actors * cfg.envs_per_actor * cfg.chunk_steps
    first_learning_round_end = (cfg.learning_starts // round_size + 1) * round_size
    return {
        "step": state["step"],
        "total_steps": cfg.total_steps,
        "updates": state["updates"],
        "first_learning_step": first_learning_round_end - round_size,
        "actor_versions": [last(logger, f"actors/weights_version_{i}") for i in range(2)],
        "bytes_per_transition": last(logger, "charts/bytes_per_transition"),
    }


def benchmark_args(address: str, tmp: Path, *steps: str) -> argparse.Namespace:
    """`benchmarks.atari100k`'s arguments for short atari-100k runs on the "runner" resource,
    one CPU each, scored on 2 short games; `steps`: their step flags."""
    extra = [
        *steps, "--eval-every", "0", "--final-eval-episodes", "2", "--eval-envs", "2",
        "--max-episode-frames", "2000", "--buffer-size", "1000",
    ]  # fmt: skip
    return argparse.Namespace(
        ray_address=address, cpus_per_run=1.0, gpus_per_run=0.0, resource="runner",
        runs_dir=tmp / "runs", preset="atari-100k", threads=1, extra=extra,
    )  # fmt: skip


def atari100k(tmp: Path) -> dict:
    """The Atari 100k benchmark's runs as Ray tasks on a 2-node cluster: placed by the custom
    resource, each brought to its final evaluation (short runs, a few games)."""
    from ray.cluster_utils import Cluster

    from benchmarks import atari100k as benchmark

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    second = nodes.add_node(num_cpus=2, resources={"runner": 2})
    try:
        args = benchmark_args(
            nodes.address, tmp, "--total-steps", "300", "--checkpoint-every", "100"
        )
        placed = benchmark.train_on_ray([("Pong", 1), ("Boxing", 1)], args)
        finals = {
            name: json.loads((tmp / "runs" / name / "final_eval.json").read_text())
            for name in placed
        }
        return {
            "nodes": sorted(set(placed.values())),
            "second_node": second.node_id,
            "final_games": {name: len(record["scores"]) for name, record in finals.items()},
            "steps": {name: record["step"] for name, record in finals.items()},
        }
    finally:
        nodes.shutdown()


def atari100k_node_loss(tmp: Path) -> dict:
    """A run lost with its node: Ray retries its task once another node offers the resource,
    and the retry resumes the run from its last checkpoint."""
    from ray.cluster_utils import Cluster

    from benchmarks import atari100k as benchmark

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    first = nodes.add_node(num_cpus=1, resources={"runner": 1})
    run_dir = tmp / "runs" / "Pong-s1"
    latest = run_dir / "latest.pt"
    args = benchmark_args(
        nodes.address, tmp, "--total-steps", "1000", "--learning-starts", "500",
        "--checkpoint-every", "200",
    )  # fmt: skip
    placed: dict = {}

    def drive() -> None:  # the benchmark's driver; the cluster is changed from the main thread
        try:
            placed.update(benchmark.train_on_ray([("Pong", 1)], args))
        except BaseException as error:  # seen in the result instead of a hang
            placed["error"] = repr(error)

    driver = threading.Thread(target=drive, daemon=True)
    try:
        driver.start()
        deadline = time.monotonic() + 300
        while not (latest.is_file() and load_dqn_checkpoint(latest)["step"] >= 400):
            if time.monotonic() > deadline or not driver.is_alive():
                raise RuntimeError(f"the run did not reach step 400: {placed}")
            time.sleep(0.5)
        checkpoint_step = load_dqn_checkpoint(latest)["step"]
        nodes.remove_node(first)  # its raylet and its workers die, the trainer with them
        benchmark.wait_until_free(run_dir, timeout=120)
        lost_at = load_dqn_checkpoint(latest)["step"]
        second = nodes.add_node(num_cpus=1, resources={"runner": 1})
        driver.join(timeout=600)
        final = json.loads((run_dir / "final_eval.json").read_text())
        return {
            "checkpoint_step": checkpoint_step,
            "lost_at": lost_at,
            "placed": placed,
            "first_node": first.node_id,
            "second_node": second.node_id,
            "final_step": final["step"],
            "final_games": len(final["scores"]),
            "updates": load_dqn_checkpoint(latest)["updates"],
            "log": (tmp / "runs" / "Pong-s1.log").read_text()[-6000:],
        }
    finally:
        nodes.shutdown()


def cluster(tmp: Path) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    second = nodes.add_node(num_cpus=2, resources={"actor_node": 2})
    ray.init(address=nodes.address, logging_level="ERROR", log_to_driver=False)
    try:
        cfg = catch(
            tmp,
            total_steps=30_000,  # the bar is 50,000; the catch preset gets there by 20,000
            actor_resource="actor_node",
            eval_every=5_000,
            eval_episodes=20,
            chunk_steps=100,
        )
        logger = MemoryLogger()
        run_dir = train_dqn(cfg, logger=logger)
        placements = json.loads((run_dir / "actors.json").read_text())
        best = load_dqn_checkpoint(run_dir / "best.pt")
        return {
            "actor_nodes": [placement["node"] for placement in placements],
            "second_node": second.node_id,
            "best_eval": best["best_eval"],
            "step": best["step"],
            "last_step": load_dqn_checkpoint(run_dir / "latest.pt")["step"],
            "total_steps": cfg.total_steps,
        }
    finally:
        ray.shutdown()
        nodes.shutdown()


def kill(tmp: Path) -> dict:
    cfg = catch(tmp, total_steps=6_000, eval_every=0, chunk_steps=50)
    run_dir = tmp / cfg.run_name
    killed = {"done": False, "version": 0}
    logger = MemoryLogger()
    version_tag = "actors/weights_version_1"

    def killer() -> None:
        # Killed once it acts with newer weights than its constructor's: Ray's restart must
        # still find the constructor's (first) weights in the object store.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            versions = list(logger.values.get(version_tag, []))
            if (run_dir / "actors.json").is_file() and versions and versions[-1][1] >= 1:
                killed["version"] = versions[-1][1]
                break
            time.sleep(0.2)
        placements = json.loads((run_dir / "actors.json").read_text())
        os.kill(placements[1]["pid"], signal.SIGKILL)
        killed["done"] = True

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    log = io.StringIO()
    with contextlib.redirect_stderr(log):
        train_dqn(cfg, logger=logger)
    thread.join(timeout=5)
    state = load_dqn_checkpoint(run_dir / "latest.pt")
    return {
        "killed": killed["done"],
        "killed_at_version": killed["version"],
        "restarts": last(logger, "actors/restarts") if "actors/restarts" in logger.values else 0,
        "step": state["step"],
        "total_steps": cfg.total_steps,
        "log": log.getvalue()[-4000:],
    }


if __name__ == "__main__":
    name, tmp, output = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    result = {
        "local": local,
        "cluster": cluster,
        "kill": kill,
        "atari100k": atari100k,
        "atari100k_node_loss": atari100k_node_loss,
    }[name](tmp)
    output.write_text(json.dumps(result))
