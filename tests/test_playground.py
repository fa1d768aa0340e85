"""The shared layer: devices, checkpoints, logging, run folders."""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import random
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from playground.checkpoint import load_checkpoint, save_checkpoint
from playground.device import keep_freed_memory, resolve_device, use_bf16
from playground.errors import UserError, require_positive
from playground.logger import NullLogger, TensorBoardLogger
from playground.optim import make_optimizer
from playground.resume import resolve_resume_dir
from playground.rundir import RunLock, prepare_run_dir
from tests.conftest import hparams_tags, read_event_tags, read_scalars


def test_device_choices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        expected = "cuda"
    elif torch.backends.mps.is_available():
        expected = "mps"
    else:
        expected = "cpu"
    assert resolve_device("auto").type == expected  # the best device there is
    with pytest.raises(UserError, match="not one of"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda:0")


def test_bf16_without_the_hardware_runs_fp32_with_a_note_on_how_to_ask_for_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A preset's bf16 default on a CPU without bf16 instructions: fp32, and the note names the
    # precision rather than a flag the user never typed, and says how to ask for fp32 outright.
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not use_bf16("bf16", torch.device("cpu"))
    err = capsys.readouterr().err.strip()
    assert err.startswith("note: precision bf16: this CPU has no bf16 instructions")
    assert err.endswith("it runs fp32 (--precision fp32 says so and drops this note)")
    assert not use_bf16("fp32", torch.device("cpu"))
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert use_bf16("bf16", torch.device("cpu"))
    assert use_bf16("bf16", torch.device("cuda"))  # no CUDA call is made to decide


def test_require_positive_names_the_flag() -> None:
    require_positive(batch_size=1)
    with pytest.raises(UserError, match="--batch-size must be positive, got 0"):
        require_positive(batch_size=0)


def test_checkpoint_round_trip_and_kind(tmp_path: Path) -> None:
    path = save_checkpoint(
        tmp_path / "ck.pt", {"kind": "dqn", "weights": torch.arange(3), "step": 7}
    )
    state = load_checkpoint(path, kind="dqn")
    assert state["step"] == 7 and torch.equal(state["weights"], torch.arange(3))
    assert not list(tmp_path.glob("*.tmp")), "temporary file left behind"
    with pytest.raises(UserError, match="'dqn' checkpoint, not a 'gan'"):
        load_checkpoint(path, kind="gan")


def test_checkpoint_save_failure_keeps_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint(tmp_path / "ck.pt", {"kind": "dqn", "step": 1})

    def broken_save(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(UserError, match="no space left on the device"):
        save_checkpoint(path, {"kind": "dqn", "step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert not list(tmp_path.glob(".*.tmp"))


def test_truncated_and_garbage_checkpoints_are_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "ck.pt", {"kind": "dqn", "weights": torch.zeros(1000)})
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupted"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(random.Random(2).randbytes(256))
    with pytest.raises(UserError):
        load_checkpoint(garbage)
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


class _Payload:
    def __reduce__(self) -> tuple:
        return (os.system, ("touch PWNED_MARKER",))


def test_malicious_pickle_is_refused_without_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "kind": "dqn", "payload": _Payload()}, path)
    with pytest.raises(UserError, match="refused"):
        load_checkpoint(path)
    assert not (tmp_path / "PWNED_MARKER").exists()
    # A raw pickle (not a torch zip file) is refused too.
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(UserError):
        load_checkpoint(raw)
    assert not (tmp_path / "PWNED_MARKER").exists()
    assert zipfile.is_zipfile(path)


def test_tensorboard_logger_writes_every_kind(tmp_path: Path) -> None:
    with TensorBoardLogger(tmp_path) as logger:
        logger.scalar("charts/x", 1.5, step=3)
        logger.image("samples/grid", np.zeros((3, 8, 8), dtype=np.uint8), step=3)
        logger.video("eval/video", np.zeros((4, 8, 8, 3), dtype=np.uint8), step=3, fps=10)
        logger.text("notes", "hello", step=0)
        logger.hparams({"lr": 1e-3, "name": "x", "path": tmp_path}, {"charts/x": 0.0})
    tags = read_event_tags(tmp_path)
    assert "charts/x" in tags["scalars"]
    assert {"samples/grid", "eval/video"} <= set(tags["images"])
    assert read_scalars(tmp_path, "charts/x") == [(3, 1.5)]
    assert "_hparams_/experiment" in hparams_tags(tmp_path)


def test_a_resumed_runs_events_read_as_the_resumed_run_without_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Steps 0-40 logged, then the run resumed from its checkpoint at 20: the reader keeps the
    first session's points before 20 and the second's from 20 on, and says nothing of it."""
    import time

    from playground.logger import EventReader

    with TensorBoardLogger(tmp_path) as logger:
        for step in range(0, 50, 10):
            logger.scalar("charts/x", 1.0, step)
    time.sleep(1.1)  # a second event file (its name carries the time)
    with TensorBoardLogger(tmp_path, purge_step=20) as logger:
        for step in range(20, 40, 10):
            logger.scalar("charts/x", 2.0, step)
    with caplog.at_level(logging.WARNING):
        points = [
            (step, value) for step, value, _ in EventReader(tmp_path).reload().scalars("charts/x")
        ]
    assert points == [(0, 1.0), (10, 1.0), (20, 2.0), (30, 2.0)]
    assert not caplog.records


def test_null_logger_accepts_everything_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    logger = NullLogger()
    with logger:
        logger.scalar("a", 1.0, 0)
        logger.scalars({"b": 2.0}, 1)
        logger.image("c", np.zeros((8, 8)), 0)
        logger.video("d", np.zeros((2, 8, 8, 3), np.uint8), 0)
        logger.text("e", "text")
        logger.hparams({"a": 1})
        logger.flush()
    assert logger.log_dir is None
    assert list(tmp_path.iterdir()) == []


def test_run_dir_never_reused_and_lock(tmp_path: Path) -> None:
    run_dir = prepare_run_dir(tmp_path, "exp")
    (run_dir / "latest.pt").write_bytes(b"x")
    with pytest.raises(UserError, match="already holds a run"):
        prepare_run_dir(tmp_path, "exp")
    assert resolve_resume_dir("exp", str(tmp_path)) == run_dir
    assert resolve_resume_dir(str(run_dir / "latest.pt"), "elsewhere") == run_dir
    (tmp_path / "other").mkdir()
    with pytest.raises(UserError, match="no checkpoint to resume"):
        resolve_resume_dir(str(tmp_path / "other"), str(tmp_path))
    with pytest.raises(UserError, match="letters, digits"):
        prepare_run_dir(tmp_path, "../escape")
    with RunLock(run_dir), pytest.raises(UserError, match="in use"):
        RunLock(run_dir).acquire()
    RunLock(run_dir).acquire().release()


@pytest.mark.parametrize("name", ["adam", "rmsprop", "sgd", "adagrad", "adadelta"])
def test_every_optimizer_takes_a_step(name: str) -> None:
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = make_optimizer(
        name, [weight], 0.1, momentum=0.9 if name == "sgd" else 0.0, nesterov=name == "sgd"
    )
    (weight**2).sum().backward()
    optimizer.step()
    assert (weight < 1).all()
    with pytest.raises(UserError):
        make_optimizer("lion", [weight], 0.1)


_MAPPED_BY_AN_8_MB_TENSOR = """
import ctypes, torch
from playground.device import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
def mapped_by_a_tensor():
    before = libc.mallinfo2().hblkhd
    tensor = torch.empty(8 << 20, dtype=torch.uint8)
    return libc.mallinfo2().hblkhd - before
print(mapped_by_a_tensor(), keep_freed_memory(), mapped_by_a_tensor())
"""


def test_keeping_freed_memory_serves_megabyte_tensors_from_the_heap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """glibc maps an 8 MB block fresh from the OS (and unmaps it when freed); once the run
    keeps freed memory, the same block comes from the process's heap. A fresh interpreter, so
    that no earlier test has set the allocator. A user's own glibc variables win."""
    try:
        ctypes.CDLL("libc.so.6").mallinfo2  # noqa: B018
    except (OSError, AttributeError):
        pytest.skip("needs Linux with glibc 2.33 or later (mallinfo2)")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", _MAPPED_BY_AN_8_MB_TENSOR],
        cwd=root, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    before, applied, after = result.stdout.split()
    assert int(before) >= 8 << 20 and applied == "True" and int(after) == 0
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setattr("sys.platform", "darwin")
    assert keep_freed_memory() is False


# A trainer's stop, as playground.lifecycle.Run takes it: the first SIGINT asks it to save and
# exit; its save takes a while, and a second SIGINT then would interrupt it.
SAVING_TRAINER = """
import sys, time
from pathlib import Path
from playground.lifecycle import StopSignals
folder = Path(sys.argv[1])
with StopSignals() as stop:
    (folder / "started").write_text("")
    while not stop.requested:
        time.sleep(0.01)
    time.sleep(1.0)  # the save
    (folder / "saved").write_text("")
"""


def test_stopped_trainers_get_one_sigint_each_and_finish_their_save(tmp_path: Path) -> None:
    from playground.trainers import Trainers

    trainers = Trainers()
    folders = [tmp_path / name for name in ("a", "b")]
    processes = []
    for folder in folders:
        folder.mkdir()
        argv = [sys.executable, "-c", SAVING_TRAINER, str(folder)]
        processes.append(trainers.start(argv, cwd=Path(__file__).parent.parent))
    while not all((folder / "started").exists() for folder in folders):
        assert all(process.poll() is None for process in processes)
        time.sleep(0.05)
    for _ in range(4):  # a command's loop asks again and again while its trainers save
        trainers.stop()
        time.sleep(0.2)
    assert [trainers.wait(process) for process in processes] == [0, 0]
    assert all((folder / "saved").exists() for folder in folders)
    assert trainers.start([sys.executable, "-c", "pass"]) is None  # nothing starts after a stop
