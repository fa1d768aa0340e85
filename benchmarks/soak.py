"""Memory soak: does a long DQN run's resident memory stay flat?

Starts `run.py train-dqn` as a child process on the CPU (a built-in game, a small replay
buffer that fills within the first minutes, TensorBoard logging, periodic evaluations and
checkpoints, as in a real run), samples the child's resident memory (VmRSS from
/proc/PID/status) every `--interval` seconds for `--minutes`, then stops it with SIGTERM
(which saves latest.pt) and reports the growth measured after the replay buffer was full.

    python -m benchmarks.soak                          # 25 minutes on Playground/Catch-v0
    python -m benchmarks.soak --minutes 2 --json runs/soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def resident_kib(pid: int) -> int | None:
    """VmRSS of process `pid` in KiB, or None once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def current_step(run_dir: Path) -> int | None:
    """The step of the newest latest.pt (read without loading the weights' values)."""
    import torch

    path = run_dir / "latest.pt"
    if not path.is_file():
        return None
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["step"])
    except Exception:  # a file being replaced; the next sample reads it
        return None


def slope_kib_per_minute(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of resident memory against time."""
    count = len(samples)
    if count < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / count
    mean_r = sum(r for _, r in samples) / count
    covariance = sum((t - mean_t) * (r - mean_r) for t, r in samples)
    variance = sum((t - mean_t) ** 2 for t, _ in samples)
    return covariance / variance * 60.0 if variance else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=25.0, help="length of the soak")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--env-id", default="Playground/Catch-v0", help="game to train on")
    parser.add_argument("--buffer-size", type=int, default=20_000, help="replay capacity")
    parser.add_argument(
        "--warmup-minutes",
        type=float,
        default=5.0,
        help="minutes excluded from the growth figure (replay filling, allocator warm-up)",
    )
    parser.add_argument("--json", default="", help="also write the samples and figures here")
    args = parser.parse_args()

    runs_dir = Path(tempfile.mkdtemp(prefix="soak-"))
    run_dir = runs_dir / "soak"
    command = [
        sys.executable,
        str(ROOT / "run.py"),
        "train-dqn",
        "--env-id", args.env_id,
        "--device", "cpu",
        "--total-steps", "100000000",
        "--buffer-size", str(args.buffer_size),
        "--learning-starts", "1000",
        "--exploration-fraction", "0.0001",
        "--log-every", "500",
        "--eval-every", "25000",
        "--eval-episodes", "5",
        "--checkpoint-every", "10000",
        "--runs-dir", str(runs_dir),
        "--run-name", "soak",
        "--no-progress",
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(command, cwd=ROOT, env=environment)
    start = time.monotonic()
    samples: list[tuple[float, int]] = []  # (seconds since start, VmRSS KiB)
    steps: list[tuple[float, int]] = []
    try:
        while time.monotonic() - start < args.minutes * 60:
            time.sleep(args.interval)
            rss = resident_kib(child.pid)
            if rss is None or child.poll() is not None:
                raise SystemExit(f"the training process ended early (exit {child.poll()})")
            elapsed = time.monotonic() - start
            samples.append((elapsed, rss))
            step = current_step(run_dir)
            if step is not None and (not steps or steps[-1][1] != step):
                steps.append((elapsed, step))
            print(f"{elapsed / 60:6.1f} min  VmRSS {rss / 1024:8.1f} MiB  step {step}", flush=True)
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            child.wait(timeout=120)
    warm = [(t, r) for t, r in samples if t >= args.warmup_minutes * 60]
    step_at_warmup = next((s for t, s in steps if t >= args.warmup_minutes * 60), None)
    final_step = current_step(run_dir)
    figures = {
        "env_id": args.env_id,
        "buffer_size": args.buffer_size,
        "minutes": samples[-1][0] / 60 if samples else 0.0,
        "final_step": final_step,
        "step_at_warmup_end": step_at_warmup,
        "rss_first_mib": samples[0][1] / 1024,
        "rss_at_warmup_end_mib": warm[0][1] / 1024,
        "rss_last_mib": samples[-1][1] / 1024,
        "rss_max_mib": max(r for _, r in samples) / 1024,
        "growth_after_warmup_mib": (warm[-1][1] - warm[0][1]) / 1024,
        "slope_after_warmup_kib_per_minute": slope_kib_per_minute(warm),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({**figures, "samples": samples, "steps": steps}))


if __name__ == "__main__":
    main()
