"""The life of a training run, written once for every trainer.

A trainer's loop stays one readable loop; around it, this module does what every run needs:

    previous = None
    if cfg.resume:                                   # settings and state from latest.pt
        run_dir, previous = read_resume(cfg.resume, cfg.runs_dir, "dqn", RESUME_KEYS)
        cfg = resumed_settings(DQNConfig, previous["config"], cfg, RESUME_OVERRIDABLE)
    else:
        run_dir = new_run_dir(cfg.runs_dir, cfg.run_name or default_run_name(...))
    with Run(run_dir, command="train-dqn", step=start_step, resumed=previous is not None) as run:
        while step < total and not run.stop_requested:   # SIGINT / SIGTERM set the flag
            ...
            run.save_latest(state, step, finite=[loss, *weights])
        run.finish(step)

`Run` takes the folder's lock, owns the TensorBoard logger (purging the curves an interrupted
session drew after its last checkpoint), turns SIGINT and SIGTERM into a flag the loop checks
between steps (so a signal never lands inside a replay or checkpoint write; a second signal
acts at once), refuses to save non-finite state, writes latest/best atomically, and prints
notes and the closing lines the same way for every trainer.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from playground.checkpoint import BEST, LATEST, load_checkpoint, require_keys, save_checkpoint
from playground.device import keep_freed_memory
from playground.errors import UserError
from playground.logger import Logger, TensorBoardLogger
from playground.resume import resolve_resume_dir
from playground.rundir import RunLock, prepare_run_dir

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def read_resume(
    resume: str, runs_dir: str, kind: str, required_keys: Iterable[str] = ()
) -> tuple[Path, dict[str, Any]]:
    """The folder `--resume` names and its latest.pt, refused with one line when it is not a
    `kind` checkpoint or lacks an entry this version needs."""
    run_dir = resolve_resume_dir(resume, runs_dir)
    state = load_checkpoint(run_dir / LATEST, kind=kind)
    require_keys(state, required_keys, run_dir / LATEST)
    return run_dir, state


def new_run_dir(runs_dir: str, run_name: str) -> Path:
    """A fresh run folder `runs_dir/run_name` (never one that holds another run)."""
    return prepare_run_dir(runs_dir, run_name)


class StopSignals:
    """While entered (in the main thread), the first SIGINT or SIGTERM sets `requested`
    instead of interrupting; the previous handlers are back for a second signal and on exit."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if threading.current_thread() is threading.main_thread():
            for number, handler in self._previous.items():
                signal.signal(number, handler)
        self._previous = {}


class Run:
    """One training run's folder, lock, logger, stop signals and saves (see the module doc).

    `step` is where the run starts (the checkpoint's step when resumed). `logger`, when given,
    is used instead of the run's own TensorBoard files (tests, benchmarks). A process other
    than the main one of a distributed run (`main=False`) takes no lock, logs nothing and
    writes nothing. `divergence_advice` ends the line printed when the numbers stop being
    finite ("lower --learning-rate", ...)."""

    def __init__(
        self,
        run_dir: Path,
        *,
        command: str,
        step: int = 0,
        resumed: bool = False,
        logger: Logger | None = None,
        main: bool = True,
        divergence_advice: str = "try a lower learning rate",
    ) -> None:
        self.dir = Path(run_dir)
        self.command = command
        self.main = main
        self.resumed = resumed
        self.divergence_advice = divergence_advice
        self.saved_step: int | None = step if resumed else None  # newest good latest.pt
        self.checked_step = step  # the numbers were last seen finite here
        self._given_logger = logger
        self.logger: Logger = Logger()
        self._lock: RunLock | None = None
        self._signals = StopSignals()
        self._start_step = step

    # ------------------------------------------------------------------ context

    def __enter__(self) -> Run:
        keep_freed_memory()  # each step's megabyte tensors reuse the last step's memory
        if self.main:
            self._lock = RunLock(self.dir).acquire()
        try:
            if self._given_logger is not None:
                self.logger = self._given_logger
            elif self.main:
                # Curves a killed session drew after its checkpoint are dropped (the points at
                # the checkpoint's own step were logged before it was saved, so they stay); a
                # new run drops those of one killed here before its first checkpoint.
                purge_step = self._start_step + 1 if self.resumed else 0
                self.logger = TensorBoardLogger(self.dir, purge_step=purge_step)
            self._signals.__enter__()
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._signals.__exit__()
        try:
            if self._given_logger is None:
                self.logger.close()
            else:
                self.logger.flush()
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # ------------------------------------------------------------------ stopping

    @property
    def stop_requested(self) -> bool:
        """Whether SIGINT or SIGTERM asked the run to stop (after the current step)."""
        return self._signals.requested

    def request_stop(self) -> None:
        """Stop after the current step, as a signal would (used when ranks agree to stop)."""
        self._signals.requested = True

    # ------------------------------------------------------------------ saving

    def check_finite(self, values: Iterable[torch.Tensor], what: str, step: int) -> None:
        """Stop the run with one line once any of `values` (losses, weights) holds a NaN or an
        infinity, or a boolean flag among them is False, so a diverged state is never saved
        over the last good checkpoint. One host sync for all of them."""
        sums = [
            torch.where(value.all(), 0.0, math.nan).to(value.device)
            if value.dtype == torch.bool
            else value.detach().float().sum()
            for value in values
        ]
        if sums and not bool(torch.isfinite(torch.stack(sums)).all()):
            kept = (
                f"{LATEST} of step {self.saved_step} is kept (no later state was saved)"
                if self.saved_step is not None
                else "no checkpoint had been saved yet"
            )
            raise UserError(
                f"training diverged: {what} stopped being finite between steps "
                f"{self.checked_step} and {step}; likely cause: {self.divergence_advice}; {kept}"
            )
        self.checked_step = step

    def save_latest(
        self,
        state: dict[str, Any],
        step: int,
        finite: Iterable[torch.Tensor] = (),
        what: str = "the losses or the weights",
    ) -> Path | None:
        """Write latest.pt atomically after checking `finite`; the curves up to `step` reach
        disk first, so a resumed run's purge never drops a point the checkpoint covers."""
        self.check_finite(finite, what, step)
        if not self.main:
            return None
        self.logger.flush()
        path = save_checkpoint(self.dir / LATEST, state)
        self.saved_step = step
        return path

    def save_best(
        self,
        state: dict[str, Any],
        step: int,
        finite: Iterable[torch.Tensor] = (),
        what: str = "the losses or the weights",
    ) -> Path | None:
        """Write best.pt atomically after checking `finite`."""
        self.check_finite(finite, what, step)
        if not self.main:
            return None
        return save_checkpoint(self.dir / BEST, state)

    # ------------------------------------------------------------------ closing

    def finish(self, step: int, runs_dir: str | Path | None = None) -> None:
        """The closing lines: where the run is and how to continue or look at it."""
        if not self.main:
            return
        if self.stop_requested:
            print(
                f"Stopped by {self._signals.signal_name or 'request'} at step {step}; saved "
                f"{self.dir / LATEST}. Continue with: python run.py {self.command} --resume "
                f"{self.dir}",
                file=sys.stderr,
            )
            return
        print(f"run folder: {self.dir} ({LATEST}, {BEST}, TensorBoard events)")
        print(f"view the logs: tensorboard --logdir {runs_dir or self.dir.parent}")
