"""The one channel for what a run tells its user besides its results: lines on stderr,
written above a progress bar (stdout keeps the results: scores, tables, where files went).

    note("resuming runs/x at step 5000")   # -> "note: resuming runs/x at step 5000"
    say("4 actors x 2 envs")               # a plain line
"""

from __future__ import annotations

import sys


def say(message: str) -> None:
    """One line for the user, above the progress bar (stderr: stdout keeps the results)."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def note(message: str) -> None:
    """A note: something the run chose or noticed that the user should know."""
    say(f"note: {message}")
