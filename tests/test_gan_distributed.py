"""DCGAN training with torchrun + DDP: 2 Gloo processes on the CPU train the model 1 process would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gan.distributed import Distributed, ProcessGroupBatchNorm2d, local_batch_size
from gan.train import train_gan
from playground.checkpoint import load_checkpoint
from playground.errors import UserError
from tests.test_gan import read_events, tiny_config

REPOSITORY = Path(__file__).resolve().parents[1]


def test_global_batch_splits_evenly_or_is_refused():
    assert local_batch_size(128, 1) == 128
    assert local_batch_size(128, 4) == 32
    with pytest.raises(UserError, match="--batch-size 10 is the global batch.*multiple of 4"):
        local_batch_size(10, 4)
    assert Distributed(rank=1, world_size=2).shard(8) == slice(4, 8)
    assert Distributed(rank=3, world_size=4).seed(7) == 3007


def test_process_group_batch_norm_is_batch_norm_in_one_process():
    torch.manual_seed(0)
    plain, synced = torch.nn.BatchNorm2d(3), ProcessGroupBatchNorm2d(3)
    images = torch.randn(4, 3, 5, 5)
    torch.testing.assert_close(synced(images), plain(images))
    torch.testing.assert_close(synced.running_var, plain.running_var)


def torchrun(nproc: int, cfg_args: list[str]) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}", "run.py", "train-gan", *cfg_args,
    ]  # fmt: skip
    return subprocess.run(
        command, cwd=REPOSITORY, capture_output=True, text=True, timeout=300, check=False
    )


def assert_same_weights(expected: dict, actual: dict) -> None:
    for part in ("generator", "discriminator", "ema_generator"):
        for name, tensor in expected[part].items():
            torch.testing.assert_close(
                actual[part][name].float(), tensor.float(), rtol=1e-5, atol=1e-6,
                msg=f"{part}.{name}",
            )  # fmt: skip


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_and_resume_as_one(tmp_path: Path):
    # No augmentation (its draws are per rank) and global-batch batch norm: then 2 processes
    # with 4 images each compute what 1 process does with 8.
    # Conditional, as the digit presets train: the labels are sharded with the images.
    settings = dict(diff_augment="", sync_batch_norm=True, ema_decay=0.9, steps=4, conditional=True)
    cfg = tiny_config(tmp_path, run_name="two", **settings)
    result = torchrun(
        2,
        [
            "--dataset", cfg.dataset, "--latent-size", "8", "--generator-width", "4",
            "--discriminator-width", "4", "--batch-size", "8", "--steps", "4",
            "--log-every", "2", "--sample-every", "3", "--metric-every", "0",
            "--checkpoint-every", "2", "--num-samples", "4", "--runs-dir", cfg.runs_dir,
            "--run-name", "two", "--no-progress", "--device", "cpu", "--seed", "5",
            "--diff-augment", "", "--sync-batch-norm", "--ema-decay", "0.9",
            "--preset", "none", "--conditional",  # a GanConfig made in Python has no preset
        ],
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    # Each rank checks after training that all hold bit-identical weights (else it raises).
    assert "2 processes hold identical weights" in result.stderr  # notes go to stderr
    assert result.stdout.count("run folder:") == 1

    # Rank 0 alone wrote: one run folder, one event file, the checkpoints.
    two = Path(cfg.runs_dir) / "two"
    assert [path.name for path in Path(cfg.runs_dir).iterdir()] == ["two"]
    events = list(two.glob("events.out.tfevents.*"))
    assert len(events) == 1
    written = {path.name for path in two.iterdir()}
    assert written == {".lock", "best.pt", "latest.pt", events[0].name}
    assert [event.step for event in read_events(two).Scalars("losses/d_loss")] == [2, 4]

    # The same global batch in one process gives the same model.
    one = train_gan(tiny_config(tmp_path, run_name="one", **settings))
    assert load_checkpoint(two / "latest.pt")["architecture"]["num_classes"] == 4
    assert_same_weights(load_checkpoint(one / "latest.pt"), load_checkpoint(two / "latest.pt"))

    # A 2-process checkpoint resumes in 1 process, and continues as the 1-process run does.
    resumed_two = train_gan(tiny_config(tmp_path, steps=6, resume=str(two)))
    resumed_one = train_gan(tiny_config(tmp_path, steps=6, resume=str(one)))
    latest = load_checkpoint(resumed_two / "latest.pt")
    assert latest["step"] == 6
    assert_same_weights(load_checkpoint(resumed_one / "latest.pt"), latest)
    assert [event.step for event in read_events(two).Scalars("losses/d_loss")] == [2, 4, 6]
