"""Values that change with the step, computed from the step alone (so a resumed run continues
the same schedule exactly), and "every N steps".

    epsilon = linear_schedule(1.0, 0.05, 10_000, step)
    if due(step, cfg.log_every): ...
"""

from __future__ import annotations

import torch


def linear_schedule(start: float, end: float, duration: float, step: int) -> float:
    """Linear interpolation from `start` to `end` over `duration` steps, then constant."""
    if duration <= 0:
        return end
    return start + (end - start) * min(step / duration, 1.0)


def due(step: int, every: int) -> bool:
    """Whether something done every `every` steps (0: never) is due at `step`."""
    return every > 0 and step % every == 0


def set_learning_rate(optimizer: torch.optim.Optimizer, learning_rate: float) -> None:
    """Set every parameter group's learning rate (what a schedule changes)."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate
