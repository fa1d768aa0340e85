"""Pictures and clips: the one place that writes GIF, MP4 and PNG files (and image grids).

    write_png("grid.png", image_grid(images))          # (N, C, H, W) in [-1, 1] -> one PNG
    write_video("walk.gif", frames, fps=20)            # (T, H, W[, C]) uint8 -> GIF or MP4
    with VideoWriter("game.mp4", fps=15) as video:     # frames streamed one at a time
        video.add(frame)

GIFs are written with Pillow, MP4 (H.264) with imageio's ffmpeg; both are imported only when
a file is written, so importing this module costs nothing.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

VIDEO_SUFFIXES = (".mp4", ".gif")
GIF_FRAME_LIMIT = 2_000
"""A GIF keeps its frames in memory until it is closed (one byte a pixel); it stops here."""


def _gif_duration_ms(fps: float) -> int:
    # GIF frame delays are whole centiseconds; browsers treat delays under 20 ms as 100 ms.
    return max(20, round(1000 / max(fps, 1.0) / 10) * 10)


def encode_gif(frames: np.ndarray, fps: float) -> bytes:
    """(T, H, W[, 3]) uint8 frames as the bytes of a looping GIF."""
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=_gif_duration_ms(fps),
        loop=0,
    )
    return buffer.getvalue()


class VideoWriter:
    """Writes (H, W, 3) uint8 frames one at a time to an .mp4 (H.264, streamed to disk) or a
    .gif (palette-quantised, kept in memory until `close`, at most GIF_FRAME_LIMIT frames).
    Odd frame sides are padded by one pixel for H.264."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        self.fps = max(1.0, float(fps))
        self.frames_written = 0
        self._gif_frames: list[Any] = []
        self._writer: Any = None
        if self.path.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(f"a video file must end in .mp4 or .gif, got {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.suffix.lower() == ".mp4":
            import imageio.v2 as imageio

            self._writer = imageio.get_writer(
                str(self.path),
                format="FFMPEG",
                mode="I",
                fps=self.fps,
                codec="libx264",
                quality=8,
                pixelformat="yuv420p",
                macro_block_size=1,
                ffmpeg_log_level="error",
            )

    @property
    def full(self) -> bool:
        """A GIF takes no more frames after GIF_FRAME_LIMIT."""
        return self._writer is None and len(self._gif_frames) >= GIF_FRAME_LIMIT

    def add(self, frame: np.ndarray) -> None:
        frame = _rgb(np.asarray(frame))
        if self._writer is not None:
            pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
            if pad_h or pad_w:
                frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)))
            self._writer.append_data(frame)
        elif not self.full:
            from PIL import Image

            self._gif_frames.append(Image.fromarray(frame).quantize(256, Image.Quantize.FASTOCTREE))
        else:
            return
        self.frames_written += 1

    def close(self) -> Path:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        elif self._gif_frames:
            first, *rest = self._gif_frames
            first.save(
                self.path,
                save_all=True,
                append_images=rest,
                duration=_gif_duration_ms(self.fps),
                loop=0,
            )
            self._gif_frames = []
        return self.path

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """(T, H, W[, C]) uint8 frames as a looping GIF or an MP4, by the file's suffix."""
    with VideoWriter(path, fps) as video:
        for frame in frames:
            video.add(frame)
    return Path(path)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]: how the GAN's networks see images. The one pair of
    conversions between the two (with `to_uint8`)."""
    return images.float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] (clamped) -> uint8 [0, 255]."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def image_grid(images: torch.Tensor, padding: int = 2, columns: int | None = None) -> torch.Tensor:
    """(N, C, H, W) floats in [-1, 1] -> one uint8 (C, H', W') image, about square unless
    `columns` is given."""
    import torchvision.utils

    nrow = columns or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    grid = torchvision.utils.make_grid(
        images.float().cpu(), nrow=nrow, padding=padding, pad_value=-1.0
    )
    return to_uint8(grid)


def write_png(path: str | Path, image: np.ndarray | torch.Tensor) -> Path:
    """A uint8 image, (C, H, W) tensor or (H, W[, C]) array, as a PNG."""
    from PIL import Image

    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().permute(1, 2, 0).numpy() if image.ndim == 3 else image.numpy()
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _rgb(frame: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) uint8 -> (H, W, 3)."""
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    return np.ascontiguousarray(frame)


def caption_frames(frames: np.ndarray, captions: list[str], min_width: int = 240) -> np.ndarray:
    """(T, H, W, 3) uint8 frames enlarged (nearest neighbour, so pixels stay crisp) to at least
    `min_width` wide, each with a strip below holding its caption (the score so far, say)."""
    import cv2

    scale = max(1, math.ceil(min_width / frames.shape[2]))
    frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    strip = 18
    captioned = np.zeros(
        (frames.shape[0], frames.shape[1] + strip, frames.shape[2], 3), dtype=np.uint8
    )
    captioned[:, : frames.shape[1]] = frames
    for index, text in enumerate(captions):
        cv2.putText(
            captioned[index],
            text,
            (4, frames.shape[1] + strip - 5),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.42,
            (235, 235, 235),
            1,
            cv2.LINE_AA,
        )
    return captioned
