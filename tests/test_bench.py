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
