"""Whether a window can be opened here (asked without importing any GUI library), and a
helper process started beside a training run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PARENT_VARIABLE = "PLAYGROUND_VIEWER_PARENT"
"""Set for a viewer started by a trainer: the trainer's pid, so the viewer ends with it."""


def display_available() -> bool:
    """On Linux an X11 or Wayland display, or SDL's dummy or offscreen video driver (tests);
    elsewhere always."""
    if not sys.platform.startswith("linux"):
        return True
    if os.environ.get("SDL_VIDEODRIVER", "") in ("dummy", "offscreen"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def start_beside(module: str, arguments: list[str]) -> subprocess.Popen:
    """Start `python -m MODULE ARGUMENTS` (the viewer, for a trainer's --watch) in its own
    process beside a training run, single-threaded so it leaves the cores to training; it
    ends when the trainer does (`parent_gone`)."""
    root = Path(__file__).resolve().parents[1]
    environment = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        PARENT_VARIABLE: str(os.getpid()),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.Popen([sys.executable, "-m", module, *arguments], cwd=root, env=environment)


def parent_gone() -> bool:
    """For a viewer a trainer started: whether that trainer has ended (killed, even)."""
    parent = os.environ.get(PARENT_VARIABLE)
    return parent is not None and str(os.getppid()) != parent
