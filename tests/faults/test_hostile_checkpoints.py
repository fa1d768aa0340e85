"""Hostile and stale checkpoint files, fed to the real command line: a malicious pickle is
refused without running anything, a truncated or foreign file is refused, and a checkpoint of
an older format either loads or says why not, each as one line."""

from __future__ import annotations

import io
import os
import pickle
import random
import re
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from agents.config import DQNConfig, EvaluateConfig
from agents.dqn import train_dqn
from agents.evaluate import evaluate
from playground.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from playground.errors import UserError
from playground.logger import Logger
from tests.faults import helpers

pytestmark = pytest.mark.faults


class _RunsCommand:
    """Unpickling this runs a shell command (the classic pickle payload)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


class _CallsEval:
    def __reduce__(self) -> tuple:
        return (eval, ("__import__('pathlib').Path('PWNED_EVAL').touch()",))


def _malicious_files(marker: Path) -> dict[str, bytes]:
    """Files that would create `marker` if they were unpickled without restriction."""
    payload = _RunsCommand(f"touch {marker}")
    files: dict[str, bytes] = {}
    # A torch zip checkpoint that looks right (kind, format_version) with a payload inside.
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, "kind": "dqn", "step": 1, "x": payload}, buffer)
    files["torch-zip-os-system"] = buffer.getvalue()
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, "kind": "dqn", "x": _CallsEval()}, buffer)
    files["torch-zip-eval"] = buffer.getvalue()
    # A bare pickle (the pre-zip torch format) at every protocol.
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        files[f"raw-pickle-protocol-{protocol}"] = pickle.dumps(payload, protocol=protocol)
    # A real checkpoint whose data.pkl was swapped for the payload.
    clean = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, "kind": "dqn", "step": 1}, clean)
    swapped = io.BytesIO()
    with zipfile.ZipFile(clean) as source, zipfile.ZipFile(swapped, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith("data.pkl"):
                data = pickle.dumps({"kind": "dqn", "x": payload}, protocol=2)
            target.writestr(item, data)
    files["zip-with-swapped-data-pkl"] = swapped.getvalue()
    return files


def _run_dir_with(tmp_path: Path, name: str, content: bytes) -> Path:
    run_dir = tmp_path / "runs" / name
    run_dir.mkdir(parents=True)
    (run_dir / "latest.pt").write_bytes(content)
    return run_dir


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_checkpoints_are_refused_without_running_anything(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    files = _malicious_files(marker)
    for name, content in files.items():
        run_dir = _run_dir_with(tmp_path, name, content)
        with pytest.raises(UserError, match="refused, nothing in it was run"):
            train_dqn(DQNConfig(resume=str(run_dir), progress=False), Logger())
        with pytest.raises(UserError, match="refused"):
            evaluate(EvaluateConfig(checkpoint=str(run_dir / "latest.pt")))
        assert not marker.exists(), f"{name}: the payload ran"
        assert not (helpers.ROOT / "PWNED_EVAL").exists(), f"{name}: the payload ran"
    # Through the command line: one line, exit code 2.
    run_dir = tmp_path / "runs" / "torch-zip-os-system"
    result = helpers.run(helpers.resume_command(run_dir), timeout=120)
    helpers.assert_one_clear_line(result, str(run_dir / "latest.pt"), "posix.system")
    assert not marker.exists()
    print(f"\nmalicious checkpoints refused: {len(files)} files")


def _good_checkpoint(tmp_path: Path) -> Path:
    runs_dir = tmp_path / "good-runs"
    result = helpers.run(helpers.dqn_command(runs_dir, "good", 200))
    assert result.returncode == 0, result.stderr[-2000:]
    return runs_dir / "good" / "latest.pt"


def test_truncated_foreign_and_old_checkpoints_are_each_one_line(tmp_path: Path) -> None:
    good = _good_checkpoint(tmp_path)
    data = good.read_bytes()
    state = torch.load(good, weights_only=True)
    cases: dict[str, tuple[bytes, str]] = {
        "empty": (b"", "truncated or corrupted"),
        "random-bytes": (random.Random(0).randbytes(4096), "not a plain checkpoint"),
        "text": (b"not a checkpoint\n", "not a plain checkpoint"),
    }
    for fraction in (0.01, 0.1, 0.5, 0.9, 0.999):
        cases[f"truncated-{fraction}"] = (data[: int(len(data) * fraction)], "truncated or")
    # Bytes changed inside a tensor's data still load (weights are just numbers) and read
    # back changed; bytes changed in the pickle that describes the file are refused.
    archive = zipfile.ZipFile(io.BytesIO(data))
    tensor_entry = max(
        (info for info in archive.infolist() if "/data/" in info.filename),
        key=lambda info: info.file_size,
    )
    start = _entry_start(data, tensor_entry)
    flipped = bytearray(data)
    flipped[start + 8 : start + 72] = bytes(64)
    pickle_entry = archive.getinfo(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    pickle_start = _entry_start(data, pickle_entry)
    broken = bytearray(data)
    broken[pickle_start : pickle_start + 16] = random.Random(1).randbytes(16)
    cases["pickle-bytes-changed"] = (bytes(broken), "not a plain checkpoint")

    def saved(changes: dict) -> bytes:
        buffer = io.BytesIO()
        torch.save({**state, **changes}, buffer)
        return buffer.getvalue()

    cases["format-0"] = (saved({"format_version": 0}), "older version")
    cases["format-from-the-future"] = (saved({"format_version": 99}), "newer version")
    without = {key: value for key, value in state.items() if key not in ("rng", "updates")}
    buffer = io.BytesIO()
    torch.save(without, buffer)
    cases["missing-entries"] = (buffer.getvalue(), "lacks updates, rng")
    buffer = io.BytesIO()
    torch.save({key: value for key, value in state.items() if key != "format_version"}, buffer)
    cases["no-format-version"] = (buffer.getvalue(), "not a checkpoint written by")
    cases["gan-kind"] = (saved({"kind": "gan"}), "'gan' checkpoint, not a 'dqn'")
    cases["list-not-dict"] = (saved({}) and _torch_bytes([1, 2, 3]), "not a checkpoint")

    changed = _run_dir_with(tmp_path, "tensor-bytes-changed", bytes(flipped))
    loaded = load_checkpoint(changed / "latest.pt", kind="dqn")
    assert any(
        not torch.equal(loaded[group][key], state[group][key])
        for group in ("q_network", "target_network")
        for key in state[group]
    ), "the changed bytes were not in a weight"
    for name, (content, words) in cases.items():
        run_dir = _run_dir_with(tmp_path, name, content)
        with pytest.raises(UserError, match=re.escape(words)):
            train_dqn(DQNConfig(resume=str(run_dir), progress=False, total_steps=400), Logger())
    # Through the command line: one line each, exit code 2.
    for name in ("truncated-0.5", "format-0"):
        result = helpers.run(helpers.resume_command(tmp_path / "runs" / name), timeout=120)
        helpers.assert_one_clear_line(result, cases[name][1])
    print(f"\ndamaged or stale checkpoints tried: {len(cases)}")


def _entry_start(data: bytes, info: zipfile.ZipInfo) -> int:
    """Where a stored (uncompressed) zip entry's bytes begin in `data`."""
    offset = info.header_offset
    name_length, extra_length = struct.unpack("<HH", data[offset + 26 : offset + 30])
    return offset + 30 + name_length + extra_length


def _torch_bytes(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def test_any_random_bytes_are_refused_with_one_line(tmp_path: Path) -> None:
    """Garbage makes torch's safe unpickler fail in many ways (UnpicklingError, but also
    IndexError, KeyError, UnicodeDecodeError, ...); every one must end as the one-line error."""
    path = tmp_path / "latest.pt"
    causes = set()
    for seed in range(300):
        path.write_bytes(random.Random(seed).randbytes(4096))
        with pytest.raises(UserError) as refused:
            load_checkpoint(path, kind="dqn")
        message = str(refused.value)
        assert "\n" not in message
        assert "not a plain checkpoint" in message or "truncated or corrupted" in message
        causes.add(message.rsplit("(", 1)[-1].rstrip(")").split(": ")[-1])
    # The seeds cover the failures that once escaped as tracebacks.
    assert {"IndexError", "KeyError"} <= causes


def test_an_older_checkpoint_with_fewer_config_fields_still_resumes(tmp_path: Path) -> None:
    """Settings added since a checkpoint was written take their defaults; unknown ones are
    ignored: the run resumes."""
    good = _good_checkpoint(tmp_path)
    state = torch.load(good, weights_only=True)
    config = dict(state["config"])
    config.pop("augment")  # a setting this checkpoint's version did not have
    config["a_setting_removed_since"] = 3
    config["total_steps"] = 400
    run_dir = tmp_path / "runs" / "older"
    run_dir.mkdir(parents=True)
    save_checkpoint(run_dir / "latest.pt", {**state, "config": config})
    result = helpers.run(helpers.resume_command(run_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    assert torch.load(run_dir / "latest.pt", weights_only=True)["step"] == 400
