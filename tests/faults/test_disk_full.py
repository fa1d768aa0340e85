"""A full disk while a checkpoint or a log is written: the previous checkpoint stays intact
and the run stops with one clear line.

The real test mounts a 4 MiB tmpfs in a private user + mount namespace (`unshare`), runs the
CLI on it and fills it up; where namespaces are not allowed it is skipped, and the injected
tests below (ENOSPC raised at the write call) still run."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from playground.checkpoint import load_checkpoint, save_checkpoint
from playground.errors import UserError
from playground.logger import TensorBoardLogger
from tests.faults import helpers

pytestmark = pytest.mark.faults


def _can_mount_tmpfs(tmp_path: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    result = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
         f"mount -t tmpfs -o size=1m tmpfs {probe}"],
        capture_output=True,
    )  # fmt: skip
    return result.returncode == 0


@pytest.mark.parametrize("mode", ["checkpoint", "log"])
def test_real_full_filesystem_stops_the_run_cleanly(tmp_path: Path, mode: str) -> None:
    if not _can_mount_tmpfs(tmp_path):
        pytest.skip("unshare cannot mount a tmpfs here (no user namespaces)")
    disk, out = tmp_path / "disk", tmp_path / "report.json"
    disk.mkdir()
    script = (
        f"mount -t tmpfs -o size=4m tmpfs {disk} && "
        f"exec {helpers.PYTHON} -m tests.faults.disk_full_driver {disk} {mode} {out}"
    )
    result = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        cwd=helpers.ROOT,
        env=helpers.environment(),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["step_before"] >= 200, report
    assert report["free_bytes"] < 64 * 1024, report
    stopped = subprocess.CompletedProcess([], report["returncode"], "", report["stderr"])
    line = helpers.assert_one_clear_line(stopped, "no space left")
    if mode == "log":
        assert "TensorBoard logs" in line
    assert report["latest_loads"] is True, report
    assert report["step_after"] >= report["step_before"]
    assert report["temporary_files"] == [], report
    print(f"\n{mode}: {line}")


def _full_disk(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_injected_enospc_while_saving_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_checkpoint(tmp_path / "latest.pt", {"kind": "dqn", "step": 100})
    before = path.read_bytes()

    class FullFile:
        """A file object whose every write fails as on a full disk."""

        def __init__(self, descriptor: int, mode: str) -> None:
            self._handle = open(descriptor, mode)  # noqa: SIM115 (closed by __exit__)

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name: str) -> object:
            return getattr(self._handle, name)

        def __enter__(self) -> FullFile:
            return self

        def __exit__(self, *exc: object) -> None:
            self._handle.close()

    monkeypatch.setattr("playground.checkpoint.os.fdopen", FullFile)
    with pytest.raises(
        UserError, match="no space left on the device; the checkpoints saved before are intact"
    ):
        save_checkpoint(path, {"kind": "dqn", "step": 200, "weights": torch.zeros(1000)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 100
    assert not list(tmp_path.glob(".*.tmp"))


def test_injected_enospc_in_the_event_writer_thread_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = TensorBoardLogger(tmp_path)
    logger.scalar("charts/x", 1.0, 1)
    logger.flush()
    record_writer = logger._writer._get_file_writer().event_writer._general_file_writer
    monkeypatch.setattr(record_writer, "write", _full_disk)
    with pytest.raises(UserError, match="cannot write the TensorBoard logs .*No space left"):
        for step in range(2, 1000):  # the writer thread fails; a later call reports it
            logger.scalar("charts/x", float(step), step)
            logger.flush()
    logger.close()  # closing after the failure raises nothing more
