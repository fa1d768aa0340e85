"""`run.py bench`: measure this machine and print numbers a user can compare across machines.

Each figure is measured on purpose here, never in unit tests. Rows: env steps/s (one env and a
vector env), replay bytes per transition and sample rate, DQN learner updates/s, end-to-end DQN
training steps/s at the Nature / CleanRL settings (batch 32, one update per 4 env steps) and
DCGAN training images/s at 64x64 and 32x32, batch 128; the DQN and DCGAN ones plain and with
their fast paths (`--fast-paths`: torch.compile, CUDA graphs, bf16). GPU work is timed up to a
device synchronisation.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from playground import tags
from playground.device import resolve_device
from playground.errors import UserError, require_positive
from playground.settings import OutputFile, PositiveFloat, PositiveInt

PARTS = ("env", "replay", "learner", "dqn", "gan")


@dataclass(frozen=True)
class BenchConfig:
    """Measure env, replay, DQN and DCGAN speed on this machine; print a table, write JSON."""

    device: str = "auto"
    """auto | cpu | cuda | cuda:N | mps."""
    env_id: str = "ALE/Breakout-v5"
    """Game for the env and end-to-end DQN figures."""
    num_envs: PositiveInt = 8
    """Size of the vector env measured beside the single env."""
    seconds: PositiveFloat = 3.0
    """Seconds spent on each env / replay / learner measurement."""
    dqn_steps: PositiveInt = 2_000
    """End-to-end DQN steps timed after learning starts (at 1,000 steps)."""
    dqn_num_envs: PositiveInt = 1
    """Environments of the end-to-end DQN run (the replay ratio stays 1 update per 4 steps)."""
    gan_steps: PositiveInt = 20
    """DCGAN training steps timed per image size (after 3 warm-up steps)."""
    fast_paths: bool = True
    """Also time the DQN update and run compiled (on CUDA also as a CUDA graph) and, on CUDA,
    the DCGAN in bf16 compiled (compiling takes a minute or so)."""
    parts: tuple[str, ...] = PARTS
    """Which measurements to run: env, replay, learner, dqn, gan."""
    json_path: OutputFile = ""
    """Also write the results to this JSON file."""


@dataclass
class Row:
    name: str
    value: float
    unit: str
    detail: str = ""


def run_bench(cfg: BenchConfig) -> list[Row]:
    """Run the selected measurements, print them as a table, optionally save JSON."""
    require_positive(
        num_envs=cfg.num_envs, seconds=cfg.seconds, dqn_steps=cfg.dqn_steps, gan_steps=cfg.gan_steps
    )
    unknown = set(cfg.parts) - set(PARTS)
    if unknown:
        raise UserError(
            f"--parts: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}"
        )
    device = resolve_device(cfg.device)
    measures: dict[str, Callable[[BenchConfig, torch.device], list[Row]]] = {
        "env": bench_envs,
        "replay": bench_replay,
        "learner": bench_learner,
        "dqn": bench_dqn,
        "gan": bench_gan,
    }
    rows: list[Row] = []
    print(
        f"device {device}, torch {torch.__version__}, {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}"
    )
    for part in PARTS:
        if part in cfg.parts:
            for row in measures[part](cfg, device):
                rows.append(row)
                print(
                    f"  {row.name:<56} {row.value:>12,.1f} {row.unit:<14} {row.detail}", flush=True
                )
    if cfg.json_path:
        payload = {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor(),
            "cpu_cores": os.cpu_count(),
            "torch": torch.__version__,
            "config": asdict(cfg),
            "results": [asdict(row) for row in rows],
        }
        Path(cfg.json_path).write_text(json.dumps(payload, indent=2))
        print(f"wrote {cfg.json_path}")
    return rows


def _rate(
    step: Callable[[], int],
    seconds: float,
    warmup: int = 3,
    synchronize: torch.device | None = None,
) -> float:
    """Units per second of `step()` (which returns the units it did), over about `seconds`.
    With `synchronize` a CUDA device, the clock stops when the device has done the work queued,
    not when the host has queued it."""

    def wait() -> None:
        if synchronize is not None and synchronize.type == "cuda":
            torch.cuda.synchronize(synchronize)

    for _ in range(warmup):
        step()
    wait()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += step()
    wait()
    return done / (time.perf_counter() - start)


def bench_envs(cfg: BenchConfig, device: torch.device) -> list[Row]:
    from envs import make_env, make_vector_env

    rows = []
    for env_id in dict.fromkeys(("Playground/Catch-v0", cfg.env_id)):  # each game once
        env = make_env(env_id, seed=0)
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        count = int(env.action_space.n)

        def single_step(env=env, rng=rng, count=count) -> int:
            _, _, terminated, truncated, _ = env.step(int(rng.integers(count)))
            if terminated or truncated:
                env.reset()
            return 1

        rows.append(
            Row(f"env steps/s, 1 env ({env_id})", _rate(single_step, cfg.seconds), "steps/s")
        )
        env.close()
    envs = make_vector_env(cfg.env_id, cfg.num_envs, seed=0)
    envs.reset(seed=0)
    rng = np.random.default_rng(0)

    def vector_step() -> int:
        envs.step(rng.integers(0, envs.single_action_space.n, cfg.num_envs))
        return cfg.num_envs

    rows.append(
        Row(
            f"env steps/s, {cfg.num_envs} envs ({cfg.env_id})",
            _rate(vector_step, cfg.seconds),
            "steps/s",
            "vector env",
        )
    )
    envs.close()
    return rows


def _filled_replay(device: torch.device, capacity: int = 50_000, num_envs: int = 8):
    from agents.replay import ReplayBuffer

    replay = ReplayBuffer(capacity, num_envs, (4, 84, 84), 4, device=device, num_actions=18)
    rng = np.random.default_rng(0)
    observations = np.zeros((num_envs, 4, 84, 84), dtype=np.uint8)
    observations[:, -1] = rng.integers(0, 256, (num_envs, 84, 84), dtype=np.uint8)
    replay.start(observations)
    for step in range(capacity // num_envs + 10):
        observations = np.roll(observations, -1, axis=1)
        observations[:, -1] = rng.integers(0, 256, (num_envs, 84, 84), dtype=np.uint8)
        ended = np.zeros(num_envs, dtype=bool)
        ended[step % num_envs] = step % 97 == 0
        replay.add(
            rng.integers(0, 18, num_envs),
            rng.standard_normal(num_envs),
            ended,
            np.zeros(num_envs, dtype=bool),
            observations,
        )
        if ended.any():
            observations[ended] = 0
    return replay


def bench_replay(cfg: BenchConfig, device: torch.device) -> list[Row]:
    from agents.replay import ReplayBuffer

    per_transition = ReplayBuffer.bytes_per_transition((4, 84, 84), 4, num_actions=18)
    replay = _filled_replay(device)
    exact = _rate(lambda: (replay.sample(32), 32)[1], cfg.seconds, synchronize=device)
    sync_free = _rate(lambda: (replay.sample_sync_free(32), 32)[1], cfg.seconds, synchronize=device)
    chosen = "used on GPUs" if device.type == "cuda" else "used on GPUs, not here"
    return [
        Row(
            "replay bytes per transition (4x84x84)",
            per_transition,
            "bytes",
            f"{per_transition * 1e6 / 2**30:.2f} GiB per 1M",
        ),
        Row("replay sample rate, batch 32", exact, "transitions/s", f"on {replay.device}"),
        Row(
            "replay sample rate, batch 32, sync-free",
            sync_free,
            "transitions/s",
            f"on {replay.device}, {replay.capacity:,} slots; {chosen}",
        ),
    ]


def learner_variants(cfg: BenchConfig, device: torch.device) -> list[tuple[str, dict[str, bool]]]:
    """The update paths timed here: eager always; compiled with --fast-paths; on CUDA the CUDA
    graph alone and with compile."""
    variants = [("eager", {})]
    if cfg.fast_paths:
        variants.append(("compiled", {"compile": True}))
        if device.type == "cuda":
            variants.append(("CUDA graph", {"cuda_graph": True}))
            variants.append(("compiled + CUDA graph", {"compile": True, "cuda_graph": True}))
    return variants


def bench_learner(cfg: BenchConfig, device: torch.device) -> list[Row]:
    from agents.config import DQNConfig
    from agents.networks import build_q_network
    from agents.update import DQNUpdate, UpdateRule
    from playground.optim import make_optimizer

    replay = _filled_replay(device)
    dqn = DQNConfig()
    rows = []
    for name, options in learner_variants(cfg, device):
        q_network = build_q_network((4, 84, 84), 18).to(device)
        target_network = build_q_network((4, 84, 84), 18).to(device).requires_grad_(False)
        optimizer = make_optimizer(
            "adam",
            q_network.parameters(),
            1e-4,
            capturable=options.get("cuda_graph", False) and device.type == "cuda",
        )
        rule = UpdateRule(dqn.double_dqn, dqn.loss, dqn.max_grad_norm)
        learner = DQNUpdate(
            replay, q_network, target_network, optimizer, rule, dqn.batch_size, device, **options
        )
        started = time.perf_counter()
        learner.step()  # compiles, with compile
        setup = time.perf_counter() - started

        def update(learner=learner) -> int:
            learner.step()
            return 1

        # Warm-up covers a CUDA graph's capture; the rate is timed up to a device sync.
        rate = _rate(update, cfg.seconds, warmup=5, synchronize=device)
        detail = "sample + double-DQN target + huber + adam"
        if options.get("compile"):
            detail += f"; compiling took {setup:.0f} s"
        rows.append(Row(f"DQN learner updates/s, batch 32, {name}", rate, "updates/s", detail))
    return rows


def dqn_training_rate(**settings: Any) -> float:
    """Mean training steps/s of a `train_dqn` run with these DQNConfig settings (timing
    settings filled in), over the 100-step log periods after learning starts, the first one
    (which holds any compiling) left out."""
    from agents.config import DQNConfig
    from agents.dqn import train_dqn
    from playground.logger import MemoryLogger

    logger = MemoryLogger()
    with tempfile.TemporaryDirectory() as runs_dir:
        cfg = DQNConfig(
            eval_every=0,
            checkpoint_every=10**9,
            save_replay="never",
            log_every=100,
            runs_dir=runs_dir,
            progress=False,
            **settings,
        )
        train_dqn(cfg, logger=logger)
    rates = [value for step, value in logger.values[tags.SPS] if step > cfg.learning_starts + 200]
    return float(np.mean(rates))


def bench_dqn(cfg: BenchConfig, device: torch.device) -> list[Row]:
    learning_starts = 1_000
    variants: list[tuple[str, dict[str, bool]]] = [("eager", {})]
    if cfg.fast_paths:
        fastest = {"compile": True, "cuda_graph": device.type == "cuda"}
        variants.append(("compiled + CUDA graph" if device.type == "cuda" else "compiled", fastest))
    rows = []
    for name, options in variants:
        rate = dqn_training_rate(
            env_id=cfg.env_id,
            total_steps=learning_starts + cfg.dqn_steps,
            learning_starts=learning_starts,
            buffer_size=10_000,
            num_envs=cfg.dqn_num_envs,
            device=str(device),
            **options,
        )
        rows.append(
            Row(
                f"DQN training steps/s ({cfg.env_id}), {name}",
                rate,
                "steps/s",
                f"batch 32, 1 update / 4 steps, {cfg.dqn_num_envs} env(s), after learning starts",
            )
        )
    return rows


def bench_gan(cfg: BenchConfig, device: torch.device) -> list[Row]:
    from gan.config import GanConfig
    from gan.train import train_gan
    from playground.logger import MemoryLogger

    variants: list[tuple[str, dict[str, object]]] = [("", {})]
    if cfg.fast_paths and device.type == "cuda":
        # On a 2-core CPU compiling gained nothing (84 vs 82 images/s at 64x64, 431 vs 470
        # at 32x32, 2026-11-22), so it is timed on GPUs only.
        variants.append((", bf16 + compiled", {"precision": "bf16", "compile": True}))
    rows = []
    for image_size in (64, 32):
        for name, options in variants:
            logger = MemoryLogger()
            warmup = 3
            with tempfile.TemporaryDirectory() as runs_dir:
                train_gan(
                    GanConfig(
                        dataset="fake",
                        image_size=image_size,
                        batch_size=128,
                        steps=warmup + cfg.gan_steps,
                        log_every=warmup,  # the first window holds the warm-up (and compiling)
                        sample_every=0,
                        metric_every=0,
                        checkpoint_every=10**9,
                        ema_decay=0.0,
                        diff_augment="",
                        device=str(device),
                        runs_dir=runs_dir,
                        progress=False,
                        **options,
                    ),
                    logger=logger,
                )
            rates = [value for step, value in logger.values[tags.IMAGES_PER_SEC] if step > warmup]
            rows.append(
                Row(
                    f"DCGAN training images/s, {image_size}x{image_size}, batch 128{name}",
                    float(np.mean(rates)),
                    "images/s",
                    "3 channels, widths 64, no EMA / DiffAugment (as the PyTorch example)",
                )
            )
    return rows
