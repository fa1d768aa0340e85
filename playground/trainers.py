"""Trainer processes started by another command (`run.py compare`, `benchmarks.atari100k`),
stopped together and cleanly.

Each trainer runs in a session of its own, so a Ctrl-C in the terminal reaches the command
that started it alone. That command, stopping, sends every trainer still running one SIGINT:
the trainer saves its last step and exits (`playground.lifecycle.Run`). A second SIGINT would
cut that save short, so none is sent; and no trainer starts once stopping has begun.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Sequence
from typing import Any


class Trainers:
    """The trainer processes of one command; safe to use from several threads."""

    def __init__(self) -> None:
        self.stopping = False
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def start(self, argv: Sequence[str], **popen: Any) -> subprocess.Popen | None:
        """Start `argv` in a session of its own (`popen`: Popen's other arguments); None once
        stopping has begun."""
        with self._lock:
            if self.stopping:
                return None
            process = subprocess.Popen(list(argv), start_new_session=True, **popen)
            self._running.add(process)
            return process

    def finished(self, process: subprocess.Popen) -> int | None:
        """The process's exit status once it has exited (it is then forgotten), else None."""
        returncode = process.poll()
        if returncode is not None:
            with self._lock:
                self._running.discard(process)
        return returncode

    def wait(self, process: subprocess.Popen) -> int:
        """Wait for the process to exit; its exit status."""
        process.wait()
        returncode = self.finished(process)
        assert returncode is not None
        return returncode

    def stop(self) -> None:
        """Send every running trainer one SIGINT (each saves and exits); start no more. Only
        the first call signals."""
        with self._lock:
            if self.stopping:
                return
            self.stopping = True
            for process in self._running:
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
