"""Image data sets for the GAN, held in memory as uint8 tensors.

`--dataset` takes one of:

    atari           (default, needs no network) frames of Pong, Breakout, SpaceInvaders and
                    Freeway played by a random policy, collected on the fly from the ROMs that
                    ship inside ale-py; the label is the game
    mnist, fashion-mnist, cifar10, celeba
                    torchvision data sets under --data-dir; downloaded only when they are
                    missing and the download host can be reached
    idx:PATH        MNIST-format IDX files: an images file (…-images-idx3-ubyte, optionally .gz)
                    or a folder holding such files; labels are read when their file is beside it
    folder:PATH     every readable image under PATH (recursive); files in sub-folders get the
                    sub-folder as label

Images are converted to the requested channels (grey <-> RGB) and resized to the model's
square size once, at load time. Batches are drawn by random index and normalised to [-1, 1]
on the device the images live on, so a batch costs no host-to-device copy.
"""

from __future__ import annotations

import gzip
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from playground.device import memory_home
from playground.errors import UserError
from playground.media import to_float
from playground.notes import note
from playground.resources import check_fits_in_memory

TORCHVISION_DATASETS = ("mnist", "fashion-mnist", "cifar10", "celeba")
EMBEDDED_DATASETS = ("rendered-digits", "games", "atari", "fake")
DATASET_HELP = (
    "rendered-digits, games, atari, mnist, fashion-mnist, cifar10, celeba, idx:PATH, "
    "folder:PATH or fake"
)
# A data set is kept on a GPU (uint8, batches indexed there) when it takes at most this share of
# the GPU's free memory; a larger one stays in pinned host memory and each batch is copied over.

ATARI_GAMES = ("Pong", "Breakout", "SpaceInvaders", "Freeway")
ATARI_FRAMES_PER_GAME = 1024
GAME_FRAMES_PER_GAME = 2048
RENDERED_DIGITS = 20_000


@dataclass
class ImageDataset:
    """A data set in memory: `images` uint8 (N, C, H, W), optional int64 `labels` (N,)."""

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    label_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    def to(self, device: torch.device) -> ImageDataset:
        labels = None if self.labels is None else self.labels.to(device)
        return ImageDataset(self.images.to(device), labels, self.name, self.label_names)

    @property
    def nbytes(self) -> int:
        return self.images.nbytes + (0 if self.labels is None else self.labels.nbytes)

    def sample(self, batch_size: int) -> torch.Tensor:
        """A random batch (with replacement) as float in [-1, 1], on the images' device."""
        indices = torch.randint(len(self), (batch_size,), device=self.images.device)
        return to_float(self.images[indices])


def data_device(nbytes: int, device: torch.device, free_bytes: int | None = None) -> torch.device:
    """Where to keep a data set of `nbytes` for training on `device`: the project's one rule,
    `playground.device.memory_home`."""
    return memory_home(nbytes, device, free_bytes)


def native_channels(spec: str) -> int | None:
    """The channels a data set has before any conversion (None: only known after loading)."""
    if spec in ("rendered-digits", "mnist", "fashion-mnist") or spec.startswith("idx:"):
        return 1
    if spec in ("cifar10", "celeba", "games", "atari", "fake"):
        return 3
    return None


def check_dataset_spec(spec: str) -> None:
    """Refuse an unknown `--dataset` value before anything is loaded."""
    known = spec in EMBEDDED_DATASETS or spec in TORCHVISION_DATASETS
    prefixed = spec.startswith(("idx:", "folder:")) and len(spec.split(":", 1)[1]) > 0
    if not (known or prefixed):
        raise UserError(f"--dataset {spec!r} is not known; use one of {DATASET_HELP}")


def load_dataset(
    spec: str,
    image_size: int,
    channels: int | None = None,
    data_dir: str = "data",
    seed: int = 0,
    max_images: int = 0,
) -> ImageDataset:
    """Load the data set named by `spec` (see the module docstring) as uint8 (N, C, size, size).

    `channels` None keeps the data set's own; `max_images` > 0 keeps a seeded random subset."""
    check_dataset_spec(spec)
    if spec == "rendered-digits":
        images, labels = render_digits(RENDERED_DIGITS, seed)
        label_names = tuple(str(digit) for digit in range(10))
    elif spec == "games":
        images, labels, label_names = collect_game_frames(seed)
    elif spec == "atari":
        images, labels, label_names = collect_atari_frames(image_size, seed)
    elif spec == "fake":
        # 1,000 random colour images, like the PyTorch DCGAN example's `--dataset fake`: for
        # measuring speed, not for learning anything.
        generator = torch.Generator().manual_seed(seed)
        images = torch.randint(
            0, 256, (1000, 3, image_size, image_size), dtype=torch.uint8, generator=generator
        )
        labels, label_names = None, ()
    elif spec in TORCHVISION_DATASETS:
        images, labels, label_names = _load_torchvision(spec, data_dir, image_size)
    elif spec.startswith("idx:"):
        images, labels, label_names = _load_idx(Path(spec[4:]).expanduser())
    else:
        images, labels, label_names = _load_folder(Path(spec[7:]).expanduser(), image_size)
    if max_images > 0 and images.shape[0] > max_images:
        generator = torch.Generator().manual_seed(seed)
        keep = torch.randperm(images.shape[0], generator=generator)[:max_images].sort().values
        images = images[keep]
        labels = None if labels is None else labels[keep]
    images = resize_images(convert_channels(images, channels or images.shape[1]), image_size)
    return ImageDataset(images.contiguous(), labels, spec, label_names)


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) grey <-> RGB; RGB to grey uses the ITU-R 601 luma weights."""
    if images.shape[1] == channels:
        return images
    if images.shape[1] == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if images.shape[1] == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
        grey = (images.float() * weights).sum(dim=1, keepdim=True)
        return grey.round().clamp(0, 255).to(torch.uint8)
    raise UserError(f"cannot convert {images.shape[1]}-channel images to {channels} channels")


def resize_images(images: torch.Tensor, size: int, chunk: int = 1024) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, size, size), antialiased bilinear (non-square
    images are squeezed, as Atari screens are)."""
    if images.shape[-2:] == (size, size):
        return images
    pieces = []
    for start in range(0, images.shape[0], chunk):
        piece = images[start : start + chunk].float()
        piece = F.interpolate(
            piece, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        pieces.append(piece.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(pieces)


# ---- atari: frames from the ROMs in ale-py -------------------------------------------------


def render_digits(count: int, seed: int = 0, size: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` handwriting-like digits (uint8 (N, 1, size, size), white on black, labels 0-9),
    made on the spot: each digit is drawn with Pillow's built-in font at three stroke widths,
    then bent by a random affine map (rotation, shear, scale, shift) and a smooth random
    elastic warp (Simard et al., 2003), so no two are alike. A few seconds for 20,000; no file
    and no download."""
    from PIL import Image, ImageDraw, ImageFont

    canvas = 2 * size  # drawn large, shrunk at the end (anti-aliased)
    font = ImageFont.load_default(size=int(canvas * 0.62))
    templates = []
    for digit in range(10):
        for stroke in (0, 1, 2):
            image = Image.new("L", (canvas, canvas), 0)
            ImageDraw.Draw(image).text(
                (canvas / 2, canvas / 2), str(digit), fill=255, font=font, anchor="mm",
                stroke_width=stroke, stroke_fill=255,
            )  # fmt: skip
            templates.append(np.asarray(image))
    templates_t = torch.from_numpy(np.stack(templates)).float()[:, None] / 255.0  # (30, 1, H, W)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (count,), generator=generator)
    strokes = torch.randint(0, 3, (count,), generator=generator)
    chosen = templates_t[labels * 3 + strokes]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(count, generator=generator)

    angle, shear = uniform(-0.25, 0.25), uniform(-0.3, 0.3)
    scale_x, scale_y = uniform(0.95, 1.35), uniform(0.95, 1.2)
    shift_x, shift_y = uniform(-0.08, 0.08), uniform(-0.08, 0.08)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([cos * scale_x, (-sin + shear) * scale_x, shift_x], dim=1),
            torch.stack([sin * scale_y, cos * scale_y, shift_y], dim=1),
        ],
        dim=1,
    )  # (N, 2, 3): output -> input coordinates
    grid = F.affine_grid(theta, list(chosen.shape), align_corners=False)
    # Elastic warp: a coarse random displacement field, smoothly upsampled.
    coarse = (torch.rand(count, 2, 4, 4, generator=generator) - 0.5) * 0.2
    field = F.interpolate(coarse, size=(canvas, canvas), mode="bicubic", align_corners=False)
    warped = F.grid_sample(
        chosen, grid + field.permute(0, 2, 3, 1), align_corners=False, padding_mode="zeros"
    )
    small = F.interpolate(warped, size=(size, size), mode="area")
    return (small.clamp(0, 1) * 255).round().to(torch.uint8), labels


def collect_game_frames(
    seed: int = 0, frames_per_game: int = GAME_FRAMES_PER_GAME
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Frames (84 x 84 RGB) of the playground's own games (Catch, Pong, Breakout, Snake) played by
    a seeded random policy that repeats each move a few steps, as a person would, so paddles and
    snakes travel; label = index of the game. Takes a second or two and needs nothing but numpy."""
    from envs.builtin import BreakoutEnv, CatchEnv, PongEnv, SnakeEnv

    games = (CatchEnv, PongEnv, BreakoutEnv, SnakeEnv)
    rng = np.random.default_rng(seed)
    all_frames, all_labels = [], []
    for index, game in enumerate(games):
        env = game()
        observation, _ = env.reset(seed=seed + index)
        frames = []
        action, repeat = 0, 0
        while len(frames) < frames_per_game:
            if repeat == 0:
                action, repeat = int(rng.integers(env.action_space.n)), int(rng.integers(1, 6))
            repeat -= 1
            observation, _, terminated, truncated, _ = env.step(action)
            frames.append(observation)
            if terminated or truncated:
                observation, _ = env.reset()
        all_frames.append(torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2))
        all_labels.append(torch.full((frames_per_game,), index, dtype=torch.int64))
    names = tuple(game.__name__.removesuffix("Env") for game in games)
    return torch.cat(all_frames), torch.cat(all_labels), names


def collect_atari_frames(
    image_size: int,
    seed: int = 0,
    games: tuple[str, ...] = ATARI_GAMES,
    frames_per_game: int = ATARI_FRAMES_PER_GAME,
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Play each game with a seeded random policy and keep every observation, resized to
    `image_size`; label = index of the game."""
    try:
        import ale_py
        import gymnasium
    except ImportError as error:
        raise UserError(
            f"--dataset atari needs ale-py and gymnasium ({error}); pip install -r requirements.txt"
        ) from None
    gymnasium.register_envs(ale_py)
    all_frames, all_labels = [], []
    for index, game in enumerate(games):
        env = gymnasium.make(f"ALE/{game}-v5", render_mode=None)
        env.action_space.seed(seed + index)
        observation, _ = env.reset(seed=seed + index)
        frames = []
        for _ in range(frames_per_game):
            frames.append(observation)  # (210, 160, 3) uint8
            observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                observation, _ = env.reset()
        env.close()
        screens = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # (N, 3, 210, 160)
        all_frames.append(resize_images(screens, image_size))
        all_labels.append(torch.full((frames_per_game,), index, dtype=torch.int64))
    return torch.cat(all_frames), torch.cat(all_labels), games


# ---- torchvision data sets -----------------------------------------------------------------


def _load_torchvision(
    spec: str, data_dir: str, image_size: int
) -> tuple[torch.Tensor, torch.Tensor | None, tuple[str, ...]]:
    import torchvision.datasets as datasets

    def open_dataset(download: bool):
        if spec == "mnist":
            return datasets.MNIST(data_dir, train=True, download=download)
        if spec == "fashion-mnist":
            return datasets.FashionMNIST(data_dir, train=True, download=download)
        if spec == "cifar10":
            return datasets.CIFAR10(data_dir, train=True, download=download)
        return datasets.CelebA(data_dir, split="train", download=download)

    missing = (
        f"--dataset {spec}: the files are not under --data-dir {data_dir} and cannot be downloaded "
        f"here; put them there (torchvision layout) or use an offline data set such as atari, "
        f"idx:PATH or folder:PATH"
    )
    try:
        dataset = open_dataset(download=False)
    except (RuntimeError, OSError):
        # torchvision downloads from its own mirrors; offline, or blocked, it fails here.
        try:
            dataset = open_dataset(download=True)
        except Exception:
            raise UserError(missing) from None

    if spec in ("mnist", "fashion-mnist"):
        images = dataset.data.unsqueeze(1)  # (N, 1, 28, 28) uint8
        return images, dataset.targets.long(), tuple(dataset.classes)
    if spec == "cifar10":
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2)  # (N, 3, 32, 32)
        return images, torch.tensor(dataset.targets, dtype=torch.int64), tuple(dataset.classes)
    # CelebA: the usual DCGAN crop (centre 178 x 178 of the 178 x 218 photos), then resize.
    import torchvision.transforms as transforms

    transform = transforms.Compose([transforms.CenterCrop(178), transforms.Resize(image_size)])
    images = [torch.from_numpy(np.asarray(transform(dataset[i][0]))) for i in range(len(dataset))]
    return torch.stack(images).permute(0, 3, 1, 2), None, ()


# ---- idx:PATH (MNIST format) ---------------------------------------------------------------

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (the MNIST format), plain or gzip-compressed."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise UserError(f"cannot read IDX file {path}: {error}") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_TYPES:
        raise UserError(f"{path} is not an IDX file (bad magic number)")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_TYPES[data[2]])
    count = int(np.prod(shape))
    offset = 4 + 4 * ndim
    if len(data) < offset + count * dtype.itemsize:
        raise UserError(f"{path} is truncated: expected {count} values of shape {shape}")
    return (
        np.frombuffer(data, dtype, count=count, offset=offset)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def _idx_image_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserError(f"--dataset idx:{path}: no such file or folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and "idx3" in p.name)
    # Keep the plain file where both it and its .gz are present.
    names = {p.name for p in files}
    files = [p for p in files if not (p.suffix == ".gz" and p.name[:-3] in names)]
    if not files:
        raise UserError(
            f"--dataset idx:{path}: no IDX images file (…-images-idx3-ubyte[.gz]) there"
        )
    return files


def _idx_label_file(images_file: Path) -> Path | None:
    name = images_file.name.replace("images-idx3", "labels-idx1").replace(
        "images.idx3", "labels.idx1"
    )
    if name == images_file.name:
        return None
    for candidate in (
        images_file.with_name(name),
        images_file.with_name(name + ".gz"),
        images_file.with_name(name.removesuffix(".gz")),
    ):
        if candidate.is_file():
            return candidate
    return None


def _load_idx(path: Path) -> tuple[torch.Tensor, torch.Tensor | None, tuple[str, ...]]:
    image_parts, label_parts = [], []
    for images_file in _idx_image_files(path):
        array = read_idx(images_file)
        if array.ndim != 3 or array.dtype != np.uint8:
            raise UserError(
                f"{images_file} does not hold uint8 images (N, H, W); got {array.dtype} {array.shape}"
            )
        image_parts.append(torch.from_numpy(array).unsqueeze(1))  # (N, 1, H, W)
        label_file = _idx_label_file(images_file)
        labels = read_idx(label_file) if label_file is not None else None
        label_parts.append(
            None if labels is None or len(labels) != len(array) else torch.from_numpy(labels).long()
        )
    images = torch.cat(image_parts)
    labels = torch.cat(label_parts) if all(part is not None for part in label_parts) else None
    label_names = tuple(str(i) for i in range(int(labels.max()) + 1)) if labels is not None else ()
    return images, labels, label_names


# ---- folder:PATH ---------------------------------------------------------------------------


def _to_rgb(image: Any) -> Any:
    """An RGB copy of any Pillow image. 16- and 32-bit grey is scaled to 8 bits (`convert`
    would clip it to white); transparent pixels are composited onto black."""
    from PIL import Image

    if image.mode.startswith("I"):
        array = np.asarray(image).astype(np.float64) / 257.0  # 0..65535 -> 0..255
        image = Image.fromarray(np.clip(array, 0, 255).round().astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return image.convert("RGB")


def _load_folder(
    root: Path, image_size: int
) -> tuple[torch.Tensor, torch.Tensor | None, tuple[str, ...]]:
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not root.is_dir():
        raise UserError(f"--dataset folder:{root}: no such folder")
    paths = sorted(p for p in root.rglob("*") if p.is_file())
    # The decoded images are held twice for a moment (the list, then the stacked tensor).
    check_fits_in_memory(
        2 * len(paths) * 3 * image_size**2,
        f"--dataset folder:{root} ({len(paths):,} files at {image_size} x {image_size})",
        "use a smaller --image-size or fewer files",
    )
    images, folders, skipped, all_grey = [], [], 0, True
    for path in paths:
        try:
            with warnings.catch_warnings():
                # Images above Pillow's pixel limit (89 M) are skipped, not just warned about.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    image.load()
                    grey = image.mode in ("1", "L", "LA", "I", "I;16", "F")
                    # Centre-crop to a square, then resize (as torchvision's Resize + CenterCrop).
                    square = ImageOps.fit(
                        _to_rgb(image), (image_size, image_size), Image.Resampling.BICUBIC
                    )
        except (
            UnidentifiedImageError,
            OSError,
            ValueError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ):
            skipped += 1
            continue
        all_grey = all_grey and grey
        images.append(
            torch.from_numpy(np.asarray(square).copy()).permute(2, 0, 1)
        )  # (3, size, size)
        relative = path.relative_to(root)
        folders.append(relative.parts[0] if len(relative.parts) > 1 else "")
    if skipped:
        note(f"folder:{root}: skipped {skipped} file(s) that are not readable images")
    if not images:
        raise UserError(f"--dataset folder:{root}: no readable images there")
    stacked = torch.stack(images)
    if all_grey:
        stacked = stacked[:, :1].contiguous()
    if all(folders):
        label_names = tuple(sorted(set(folders)))
        labels = torch.tensor([label_names.index(folder) for folder in folders], dtype=torch.int64)
        return stacked, labels, label_names
    return stacked, None, ()
