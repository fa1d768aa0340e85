"""A progress bar (tqdm) showing the step, steps per second and recent results."""

from __future__ import annotations

import sys
import time
from collections import deque

from tqdm import tqdm


class Progress:
    """Wraps tqdm: `update(step, **postfix)` moves the bar to `step` and shows steps/s plus
    whatever the loop passes (recent return, losses, ...). Disabled when `enabled` is False."""

    def __init__(
        self, total: int, initial: int = 0, unit: str = "step", enabled: bool = True
    ) -> None:
        self._bar = tqdm(
            total=total,
            initial=initial,
            unit=unit,
            unit_scale=True,
            dynamic_ncols=True,
            disable=not enabled,
            file=sys.stderr,
            mininterval=0.5,
        )
        self._step = initial
        self._times: deque[tuple[float, int]] = deque(maxlen=20)
        self._times.append((time.perf_counter(), initial))

    def update(self, step: int, **postfix: float | str) -> None:
        self._bar.update(step - self._step)
        self._step = step
        self._times.append((time.perf_counter(), step))
        if postfix:
            self._bar.set_postfix(
                {key: _short(value) for key, value in postfix.items()}, refresh=False
            )

    def rate(self) -> float:
        """Steps per second over the recent window of updates."""
        (t0, s0), (t1, s1) = self._times[0], self._times[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0

    def write(self, message: str) -> None:
        self._bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()


def _short(value: float | str) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
