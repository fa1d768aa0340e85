"""A progress bar (tqdm) showing the step, its rate and recent results."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    """Wraps tqdm: `update(step, **postfix)` moves the bar to `step` and shows what the loop
    passes (steps/s, recent return, losses, ...). Notes go above it through playground.notes.
    Disabled when `enabled` is False."""

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

    def update(self, step: int, **postfix: float | str) -> None:
        self._bar.update(step - self._step)
        self._step = step
        if postfix:
            self._bar.set_postfix(
                {key: _short(value) for key, value in postfix.items()}, refresh=False
            )

    def close(self) -> None:
        self._bar.close()


def _short(value: float | str) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
