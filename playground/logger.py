"""The logging layer: the one place in the project that knows TensorBoard.

Training loops are handed a `Logger` and call `scalar`, `image`, `video`, `text` and
`hparams` on it; tags are grouped (`charts/`, `losses/`, `eval/`, `gan/`, `perf/`).
`NullLogger` does nothing and is what tests use when they don't inspect logs.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from playground import tags
from playground.errors import UserError
from playground.media import encode_gif

_Method = TypeVar("_Method", bound=Callable[..., Any])


class Logger:
    """Interface shared by every logger. All methods are no-ops here: this is the null logger."""

    log_dir: Path | None = None

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One point on the curve `tag`."""

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """Several scalars at one step."""
        for tag, value in values.items():
            self.scalar(tag, value, step)

    def image(self, tag: str, image: np.ndarray | torch.Tensor, step: int) -> None:
        """An image as (C, H, W) or (H, W) uint8 / float in [0, 1]."""

    def video(self, tag: str, frames: np.ndarray | torch.Tensor, step: int, fps: int = 30) -> None:
        """A clip of frames (T, H, W, C) or (T, H, W) uint8, shown as an animated image."""

    def text(self, tag: str, text: str, step: int = 0) -> None:
        """Markdown text."""

    def hparams(
        self, params: Mapping[str, Any], metrics: Mapping[str, float] | None = None
    ) -> None:
        """The run's hyperparameters (and metric tags to show beside them in the HParams tab)."""

    def flush(self) -> None:
        """Push buffered events to disk."""

    def close(self) -> None:
        """Flush and release the files."""

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


NullLogger = Logger


class MemoryLogger(Logger):
    """Keeps scalars in memory (`values[tag] -> [(step, value), ...]`): for benchmarks and tests."""

    def __init__(self) -> None:
        self.values: dict[str, list[tuple[int, float]]] = {}

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.values.setdefault(tag, []).append((step, float(value)))


def _reporting_write_errors(method: _Method) -> _Method:
    """Turn a failed write of the event file (full disk, lost mount) into one clear line.
    The SummaryWriter writes from a background thread, which hands its error to the next call."""

    @functools.wraps(method)
    def wrapper(self: TensorBoardLogger, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except OSError as error:
            reason = error.strerror or str(error) or type(error).__name__
            raise UserError(
                f"cannot write the TensorBoard logs in {self.log_dir}: {reason}; the run stopped "
                "here and the checkpoints already saved are intact: free some space, then --resume"
            ) from None

    return wrapper  # type: ignore[return-value]


_quiet_hook_installed = False


def _quiet_event_writer_errors() -> None:
    """Keep the event writer thread from printing a traceback for an OSError: the error is
    raised again on the training thread, as one line, by the next logging call."""
    global _quiet_hook_installed
    if _quiet_hook_installed:
        return
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if type(args.thread).__name__ == "_AsyncWriterThread" and issubclass(
            args.exc_type, OSError
        ):
            return
        previous(args)

    threading.excepthook = hook
    _quiet_hook_installed = True


class TensorBoardLogger(Logger):
    """Writes TensorBoard event files under `log_dir`.

    `purge_step` drops events at or after that step from an earlier, interrupted session, so
    a resumed run's curves continue without duplicated points.
    """

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        _quiet_event_writer_errors()
        self._writer = SummaryWriter(str(self.log_dir), purge_step=purge_step, flush_secs=10)

    @_reporting_write_errors
    def scalar(self, tag: str, value: float, step: int) -> None:
        self._writer.add_scalar(tag, float(value), step)

    @_reporting_write_errors
    def image(self, tag: str, image: np.ndarray | torch.Tensor, step: int) -> None:
        array = _to_numpy(image)
        dataformats = "HW" if array.ndim == 2 else "CHW"
        if array.dtype != np.uint8:
            array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
        self._writer.add_image(tag, array, step, dataformats=dataformats)

    @_reporting_write_errors
    def video(self, tag: str, frames: np.ndarray | torch.Tensor, step: int, fps: int = 30) -> None:
        # TensorBoard shows videos as animated GIFs inside an image summary; encoding the GIF
        # with Pillow here avoids SummaryWriter.add_video's dependency on moviepy.
        from tensorboard.compat.proto.summary_pb2 import Summary

        array = _to_numpy(frames)
        if array.dtype != np.uint8:
            array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
        if array.ndim == 4 and array.shape[-1] == 1:
            array = array[..., 0]
        height, width = array.shape[1:3]
        colorspace = 3 if array.ndim == 4 else 1
        summary_image = Summary.Image(
            height=height,
            width=width,
            colorspace=colorspace,
            encoded_image_string=encode_gif(array, fps),
        )
        summary = Summary(value=[Summary.Value(tag=tag, image=summary_image)])
        self._writer._get_file_writer().add_summary(summary, step)

    @_reporting_write_errors
    def text(self, tag: str, text: str, step: int = 0) -> None:
        self._writer.add_text(tag, text, step)

    @_reporting_write_errors
    def hparams(
        self, params: Mapping[str, Any], metrics: Mapping[str, float] | None = None
    ) -> None:
        # Written into this run's own event file (SummaryWriter.add_hparams would open a
        # second run directory), so the HParams tab links them to this run's curves.
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        clean = {key: _hparam_value(value) for key, value in params.items()}
        experiment, session_start, session_end = hparams_summary(clean, dict(metrics or {}))
        file_writer = self._writer._get_file_writer()
        for summary in (experiment, session_start, session_end):
            file_writer.add_summary(summary)
        self.text(tags.CONFIG, markdown_table(clean))

    @_reporting_write_errors
    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a write error was reported already; keep it seen
            self._writer.close()


def markdown_table(params: Mapping[str, Any]) -> str:
    """A two-column Markdown table of settings (TensorBoard's Text tab renders it)."""
    rows = "\n".join(f"|{key}|{value}|" for key, value in params.items())
    return "|setting|value|\n|-|-|\n" + rows


def _hparam_value(value: Any) -> bool | int | float | str:
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Path):
        return str(value)
    if value is None:
        return "None"
    if isinstance(value, Sequence):
        return ",".join(str(item) for item in value)
    return str(value)


def _to_numpy(value: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


# ---- reading a run's event files back (compare, the web page, the benchmarks) ----


def _purge_warning(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Detected out of order event.step")


def _quiet_purge_warnings() -> None:
    """A resumed run logs again from its checkpoint's step, so its folder's events go back in
    step; TensorBoard drops the ones the resumed run redid (what it should) and warns of a
    "TensorFlow restart" on every read. That is expected here: drop the warning, keep others."""
    tensorboard_logger = logging.getLogger("tensorboard")
    if _purge_warning not in tensorboard_logger.filters:
        tensorboard_logger.addFilter(_purge_warning)


class EventReader:
    """The scalars and images of a run folder's TensorBoard event files. `reload` reads what
    was written since the last call (a run still writing them is read as far as it got)."""

    def __init__(self, run_dir: str | Path, images: int = 4) -> None:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        _quiet_purge_warnings()
        # size_guidance 0: every scalar point; `images`: the newest that many of each tag.
        self._events = EventAccumulator(
            str(run_dir), size_guidance={"scalars": 0, "images": images}
        )
        self._tags: dict[str, list[str]] = {}

    def reload(self) -> EventReader:
        self._events.Reload()
        self._tags = self._events.Tags()
        return self

    def scalar_tags(self) -> list[str]:
        return list(self._tags.get("scalars", []))

    def scalars(self, tag: str) -> list[tuple[int, float, float]]:
        """(step, value, wall time) of every point of `tag`; [] when the run has none."""
        if tag not in self._tags.get("scalars", []):
            return []
        return [(event.step, event.value, event.wall_time) for event in self._events.Scalars(tag)]

    def images(self, tag: str) -> list[tuple[int, bytes]]:
        """(step, PNG bytes) of the images of `tag` kept; [] when the run has none."""
        if tag not in self._tags.get("images", []):
            return []
        return [(event.step, event.encoded_image_string) for event in self._events.Images(tag)]


def read_scalars(run_dir: str | Path, tag: str) -> list[tuple[int, float, float]]:
    """(step, value, wall time) of one scalar of a run folder, read once."""
    return EventReader(run_dir).reload().scalars(tag)
