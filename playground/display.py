"""Whether a window can be opened here, asked without importing any GUI library."""

from __future__ import annotations

import os
import sys


def display_available() -> bool:
    """On Linux an X11 or Wayland display, or SDL's dummy or offscreen video driver (tests);
    elsewhere always."""
    if not sys.platform.startswith("linux"):
        return True
    if os.environ.get("SDL_VIDEODRIVER", "") in ("dummy", "offscreen"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
