"""Saliency as a heat map laid over a game frame (the viewer's `o` overlay)."""

from __future__ import annotations

import cv2
import numpy as np

# A small heat colour map: transparent dark purple -> red -> orange -> pale yellow.
_HEAT_STOPS = np.array([0.0, 0.35, 0.7, 1.0])
_HEAT_COLORS = np.array(
    [[40, 10, 90], [200, 30, 60], [255, 140, 20], [255, 245, 170]], dtype=np.float32
)


def heat_map_rgba(saliency: np.ndarray, max_alpha: float = 0.7) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 4) uint8 colours whose opacity grows with the value, so
    the game stays visible where the agent does not look."""
    values = np.clip(saliency, 0.0, 1.0)
    rgb = np.stack(
        [np.interp(values, _HEAT_STOPS, _HEAT_COLORS[:, channel]) for channel in range(3)], axis=-1
    )
    # Below a quarter of the peak stays clear: the map marks regions instead of tinting everything.
    alpha = max_alpha * np.clip((values - 0.25) / 0.75, 0.0, 1.0) * 255
    return np.concatenate([rgb, alpha[..., None]], axis=-1).round().astype(np.uint8)


def blend_heat_map(frame: np.ndarray, saliency: np.ndarray) -> np.ndarray:
    """Lay the (84, 84) saliency over an (H, W, 3) game frame. The observation is the whole
    screen resized to 84x84, so the map is resized back over the whole frame. Blending at the
    frame's own resolution (before the nearest-neighbour scale-up) costs about a millisecond."""
    height, width = frame.shape[:2]
    heat = cv2.resize(saliency, (width, height), interpolation=cv2.INTER_LINEAR)
    colours = heat_map_rgba(heat).astype(np.float32)
    alpha = colours[..., 3:] / 255.0
    blended = frame.astype(np.float32) * (1.0 - alpha) + colours[..., :3] * alpha
    return blended.round().astype(np.uint8)
