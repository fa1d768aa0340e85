"""Hostile and unusual image files in a `folder:` GAN data set: each is loaded correctly or
skipped with a count, and none crashes the loader."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gan.data import load_dataset
from playground.errors import UserError

pytestmark = pytest.mark.faults

SIZE = 16


def _png(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _rgb_square(value: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (32, 32), value)


def _files() -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(files that must load, files that must be skipped), by name."""
    good: dict[str, bytes] = {}
    good["rgb.png"] = _png(_rgb_square((200, 100, 50)))
    jpeg = io.BytesIO()
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(jpeg, format="JPEG")  # pure red in CMYK
    good["cmyk.jpg"] = jpeg.getvalue()
    gradient16 = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)
    good["grey16.png"] = _png(Image.fromarray(gradient16))
    good["palette.png"] = _png(_rgb_square((10, 200, 30)).convert("P", palette=Image.ADAPTIVE))
    rgba = Image.new("RGBA", (32, 32), (255, 255, 255, 0))  # fully transparent white
    rgba.paste((0, 0, 255, 255), (8, 8, 24, 24))  # an opaque blue square in the middle
    good["transparent.png"] = _png(rgba)
    palette_transparent = _rgb_square((255, 0, 0)).convert("P")
    good["palette-transparent.png"] = _png(palette_transparent, transparency=0)
    gif = io.BytesIO()
    frames = [_rgb_square((255 * (i % 2), 0, 0)).convert("P") for i in range(5)]
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    good["animated.gif"] = gif.getvalue()
    good["one-bit.png"] = _png(Image.new("1", (32, 32), 1))
    good["wide.png"] = _png(Image.new("RGB", (300, 20), (0, 255, 0)))  # extreme aspect ratio

    bad: dict[str, bytes] = {}
    bad["zero-bytes.png"] = b""
    bad["truncated.png"] = good["rgb.png"][: len(good["rgb.png"]) // 2]
    bad["truncated.jpg"] = good["cmyk.jpg"][:200]
    bad["not-an-image.png"] = b"hello, this is text\n" * 10
    bad["notes.txt"] = b"a text file beside the images\n"
    # Decompression bombs: a few kB on disk, 100 M and 225 M pixels once decoded.
    bad["bomb-100mpx.png"] = _png(Image.new("1", (10_000, 10_000)), optimize=True)
    bad["bomb-225mpx.png"] = _png(Image.new("1", (15_000, 15_000)), optimize=True)
    return good, bad


def test_every_kind_of_file_loads_correctly_or_is_skipped_with_a_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = _files()
    for name, content in {**good, **bad}.items():
        (tmp_path / name).write_bytes(content)
    assert max(len(content) for content in bad.values()) < 2_000_000
    data = load_dataset(f"folder:{tmp_path}", SIZE)
    assert data.images.shape == (len(good), 3, SIZE, SIZE)
    assert f"skipped {len(bad)} file(s)" in capsys.readouterr().err  # a note, on stderr
    images = {
        name: data.images[index].permute(1, 2, 0).numpy().astype(int)
        for index, name in enumerate(sorted(good))
    }
    assert np.abs(images["rgb.png"] - [200, 100, 50]).max() <= 1
    assert np.abs(images["cmyk.jpg"] - [255, 0, 0]).max() <= 8  # JPEG rounding
    assert np.abs(images["palette.png"] - [10, 200, 30]).max() <= 4
    # 16-bit grey is scaled to 8 bits, not clipped: a gradient, not a white square.
    grey = images["grey16.png"][..., 0]
    assert grey.min() < 40 and grey.max() > 200 and len(np.unique(grey)) > 50
    # Transparent pixels are composited onto black: the opaque blue square on black.
    transparent = images["transparent.png"]
    assert np.abs(transparent[SIZE // 2, SIZE // 2] - [0, 0, 255]).max() <= 4
    assert transparent[0, 0].max() <= 4
    assert np.abs(images["animated.gif"][SIZE // 2, SIZE // 2] - [0, 0, 0]).max() <= 4  # frame 0
    assert np.abs(images["wide.png"] - [0, 255, 0]).max() <= 1
    print(f"\nimage files tried: {len(good)} loaded, {len(bad)} skipped")


def test_a_folder_of_nothing_but_broken_files_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_bytes(b"text")
    with pytest.raises(UserError, match="no readable images"):
        load_dataset(f"folder:{tmp_path}", SIZE)
