"""Memory checks made before a run starts, so a buffer or dataset that cannot fit is refused
with the numbers instead of the process being killed by the OS hours in."""

from __future__ import annotations

from pathlib import Path

from playground.errors import UserError

GIB = 1024**3


def available_memory_bytes() -> int | None:
    """Memory the kernel can hand out without swapping (MemAvailable in /proc/meminfo, capped
    by a cgroup limit when one is set), or None where that cannot be read."""
    available: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        return None
    limit = _cgroup_room()
    if available is not None and limit is not None:
        available = min(available, limit)
    return available


def check_fits_in_memory(needed_bytes: int, what: str, advice: str) -> None:
    """Refuse to allocate `needed_bytes` for `what` when the machine has less available
    (a 10% margin is kept for everything else the run needs)."""
    available = available_memory_bytes()
    if available is None or needed_bytes <= 0.9 * available:
        return
    raise UserError(
        f"{what} needs {needed_bytes / GIB:.2f} GiB of RAM but only {available / GIB:.2f} GiB "
        f"is available; {advice}"
    )


def _cgroup_room() -> int | None:
    """Bytes left under a cgroup v2 memory limit, or None when there is no limit."""
    try:
        limit_text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit_text == "max":
            return None
        # Page cache counts in memory.current but is given back on demand: count anon only.
        stat = Path("/sys/fs/cgroup/memory.stat").read_text().split()
        used = int(stat[stat.index("anon") + 1])
        return max(int(limit_text) - used, 0)
    except (OSError, ValueError, IndexError):
        return None
