"""An independent judge of generated digits, separate from the FID/KID used during training.

Trains its own LeNet-style classifier (a different network from gan.metrics' feature CNN) on
8,000 digits of the MNIST test split, reports its accuracy on the other 2,000, then classifies
generated digits (resized to 28 x 28) and prints:

- the fraction classified with confidence > 0.9 (recognisable digits),
- the histogram over the ten classes,
- the number of classes holding at least 5% of the samples (10 = no mode collapse), also
  counting confident predictions only,
- the Fréchet distance between the samples' features (the classifier's last hidden layer) and
  those of its 8,000 training digits,

and the same for as many held-out real digits put through what train-gan does to its images
(28 -> `--image-size` -> 28), with the two ratios samples / real digits: the confidence ratio
(1.0 = as recognisable as real digits) and the distance ratio (1.0 = as close as real digits).

Generated images come from a GAN checkpoint (`--checkpoint`, a train-gan file or run
directory; the moving-average generator when present), or from a file (`--images`): a tensor
saved with torch.save, (N, 1, H, W) in [-1, 1] or uint8, or a PNG grid as written by
torchvision's make_grid (`--grid-cell`, `--grid-padding`). `--sanity held-out|noise` judges the
2,000 held-out real digits or uniform noise instead, to see what the numbers look like at
the two extremes.

    python -m benchmarks.gan_digits --checkpoint runs/gan-mnist --json runs/gan_digits.json
    python -m benchmarks.gan_digits --images samples.png --grid-cell 32
    python -m benchmarks.gan_digits --sanity held-out
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from playground.device import resolve_device
from playground.errors import UserError
from playground.media import to_float

TRAIN_COUNT = 8000
CONFIDENCE = 0.9
CLASS_SHARE = 0.05


class LeNet(nn.Module):
    """LeNet-5 with ReLU and max pooling: (N, 1, 28, 28) in [-1, 1] -> logits (N, 10)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            # 6 x 14 x 14
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            # 16 x 5 x 5
            nn.Flatten(),
        )
        with torch.no_grad():
            flat_size = self.features(torch.zeros(1, 1, 28, 28)).shape[1]
        self.classifier = nn.Sequential(
            nn.Linear(flat_size, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images))

    def embedding(self, images: torch.Tensor) -> torch.Tensor:
        """The 84 features before the last layer: where the feature distance is measured."""
        return self.classifier[:-1](self.features(images))


def read_mnist_test(raw_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The MNIST test split from its IDX files: uint8 (10000, 1, 28, 28) and int64 labels."""
    images_file = raw_dir / "t10k-images-idx3-ubyte"
    labels_file = raw_dir / "t10k-labels-idx1-ubyte"
    if not (images_file.is_file() and labels_file.is_file()):
        raise UserError(
            f"MNIST test split not found in {raw_dir}: put t10k-images-idx3-ubyte and "
            "t10k-labels-idx1-ubyte there (uncompressed) or pass --mnist-dir"
        )
    images = np.fromfile(images_file, dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    labels = np.fromfile(labels_file, dtype=np.uint8, offset=8).astype(np.int64)
    return torch.from_numpy(images), torch.from_numpy(labels)


def to_digits(images: torch.Tensor) -> torch.Tensor:
    """uint8 or [-1, 1] float (N, C, H, W) -> float (N, 1, 28, 28) in [-1, 1]."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise UserError(f"expected images (N, 1|3, H, W), got shape {tuple(images.shape)}")
    images = to_float(images) if images.dtype == torch.uint8 else images.float()
    images = images.mean(dim=1, keepdim=True).clamp(-1, 1)
    if images.shape[-2:] != (28, 28):
        images = F.interpolate(
            images, size=(28, 28), mode="bilinear", antialias=True, align_corners=False
        )
    return images


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random small affine warps (scale 0.85-1.15, rotation +-10 degrees, shift +-10%), so
    digits drawn a little larger, smaller or off-centre (as resized GAN output is) still
    classify."""
    count = images.shape[0]
    scale = torch.empty(count).uniform_(0.85, 1.15, generator=generator)
    angle = torch.empty(count).uniform_(-0.17, 0.17, generator=generator)
    shift = torch.empty(count, 2).uniform_(-0.1, 0.1, generator=generator)
    cosine, sine = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cosine, -sine, shift[:, 0]], dim=1),
            torch.stack([sine, cosine, shift[:, 1]], dim=1),
        ],
        dim=1,
    ).to(images.device)
    # (N, 2, 3) maps output coordinates to input coordinates
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images + 1, grid, align_corners=False, padding_mode="zeros") - 1


def outliers(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Non-digits the classifier should be unsure about: each training digit's pixels shuffled
    (same ink, no shape) or smooth random blobs."""
    count = images.shape[0]
    flat = images.flatten(1)
    order = torch.argsort(torch.rand(flat.shape, generator=generator), dim=1)
    shuffled = flat.gather(1, order).reshape(images.shape)
    blobs = torch.rand(count, 1, 7, 7, generator=generator) * 2 - 1
    blobs = F.interpolate(blobs, size=images.shape[-2:], mode="bicubic", align_corners=False)
    use_blobs = torch.rand(count, 1, 1, 1, generator=generator) < 0.5
    return torch.where(use_blobs, blobs.clamp(-1, 1), shuffled)


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    seed: int,
    device: torch.device,
    batch_size: int = 128,
) -> LeNet:
    """Train LeNet on float (N, 1, 28, 28) `images` in [-1, 1] with Adam, augmented.

    A quarter-batch of outliers (see `outliers`) is trained towards the uniform distribution
    ("outlier exposure"), so that a confident prediction means a digit-like image: without
    it, a plain classifier calls most noise an 8 with confidence > 0.9."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = LeNet().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    steps_per_epoch = images.shape[0] // batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=2e-3, total_steps=epochs * steps_per_epoch
    )
    model.train()
    for _ in range(epochs):
        order = torch.randperm(images.shape[0], generator=generator)
        for step in range(steps_per_epoch):
            index = order[step * batch_size : (step + 1) * batch_size]
            batch = augment(images[index], generator).to(device)
            strange = outliers(images[index[: batch_size // 4]], generator).to(device)
            loss = F.cross_entropy(model(batch), labels[index].to(device))
            # cross-entropy towards the uniform distribution over the ten classes
            loss = loss - 0.25 * model(strange).log_softmax(dim=1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def probabilities(model: LeNet, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Class probabilities (N, 10) of float (N, 1, 28, 28) images, on the CPU."""
    return torch.cat([model(chunk.to(device)).softmax(dim=1).cpu() for chunk in images.split(1024)])


@torch.no_grad()
def embeddings(model: LeNet, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.cat([model.embedding(chunk.to(device)).cpu() for chunk in images.split(1024)])


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D), as FID does:
    |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)."""
    a, b = a.double(), b.double()
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    middle = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float((mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * middle)


def like_training_images(digits: torch.Tensor, image_size: int) -> torch.Tensor:
    """Real uint8 digits through what train-gan does to them (resized to `image_size`, as in
    gan.data), then what this judge does to every image (back to 28 x 28)."""
    from gan.data import resize_images

    return to_digits(resize_images(digits, image_size))


def judge(probs: torch.Tensor) -> dict:
    """Confidence and class spread of classified samples."""
    confidence, predicted = probs.max(dim=1)
    histogram = torch.bincount(predicted, minlength=10)
    shares = histogram.float() / probs.shape[0]
    confident = predicted[confidence > CONFIDENCE]
    confident_shares = torch.bincount(confident, minlength=10).float() / probs.shape[0]
    return {
        "samples": int(probs.shape[0]),
        "confident_fraction": float((confidence > CONFIDENCE).float().mean()),
        "mean_confidence": float(confidence.mean()),
        "histogram": histogram.tolist(),
        "classes_at_least_5_percent": int((shares >= CLASS_SHARE).sum()),
        # the same count over confident predictions only: garbage spread over all classes
        # does not pass for variety
        "confident_classes_at_least_5_percent": int((confident_shares >= CLASS_SHARE).sum()),
    }


def load_image_file(path: Path, cell: int, padding: int) -> torch.Tensor:
    """Generated images from a torch.save'd tensor or a make_grid PNG."""
    if not path.is_file():
        raise UserError(f"--images {path}: file not found")
    if path.suffix == ".pt":
        images = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(images, torch.Tensor):
            raise UserError(
                f"--images {path}: expected a saved tensor, got {type(images).__name__}"
            )
        return images
    if path.suffix.lower() != ".png":
        raise UserError(f"--images {path}: expected a .pt tensor or a .png grid")
    from PIL import Image

    grid = torch.from_numpy(np.asarray(Image.open(path).convert("L")).copy())
    # (H, W) uint8; cells of `cell` pixels separated (and surrounded) by `padding` pixels
    stride = cell + padding
    rows, columns = (grid.shape[0] - padding) // stride, (grid.shape[1] - padding) // stride
    if rows < 1 or columns < 1:
        raise UserError(f"--images {path}: {tuple(grid.shape)} holds no {cell} px cells")
    cells = grid[padding : padding + rows * stride, padding : padding + columns * stride]
    cells = cells.reshape(rows, stride, columns, stride)[:, :cell, :, :cell]
    images = cells.permute(0, 2, 1, 3).reshape(rows * columns, 1, cell, cell)
    # make_grid fills the unused cells of the last row with a flat colour.
    return images[images.flatten(1).float().std(dim=1) > 0]


def generate_from_checkpoint(
    path: Path, samples: int, seed: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`samples` images from a checkpoint's generator, and for a conditional one the digits
    asked for (every class in turn, so all ten equally often; None otherwise)."""
    from gan.checkpoint import generator_from_checkpoint, load_gan_checkpoint
    from gan.models import balanced_labels, generate

    generator = generator_from_checkpoint(load_gan_checkpoint(path)).to(device)
    noise = torch.randn(
        samples, generator.latent_size, generator=torch.Generator().manual_seed(seed)
    )
    asked = balanced_labels(samples, generator.num_classes) if generator.num_classes else None
    with torch.no_grad():
        images = generate(generator, noise.to(device), None if asked is None else asked.to(device))
    return images.cpu(), asked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="GAN checkpoint file or run directory")
    source.add_argument("--images", type=Path, help="generated images: tensor .pt or grid .png")
    source.add_argument(
        "--sanity", choices=["held-out", "noise"], help="judge real held-out digits or noise"
    )
    parser.add_argument("--samples", type=int, default=1000, help="images drawn from a checkpoint")
    parser.add_argument(
        "--image-size",
        type=int,
        default=32,
        help="the side the GAN was trained at (for the reference)",
    )
    parser.add_argument("--grid-cell", type=int, default=32, help="side of one image in a PNG grid")
    parser.add_argument("--grid-padding", type=int, default=2, help="pixels between grid cells")
    parser.add_argument(
        "--mnist-dir",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "data" / "MNIST" / "raw",
        help="folder holding the MNIST test split IDX files",
    )
    parser.add_argument("--epochs", type=int, default=6, help="classifier training epochs")
    parser.add_argument("--seed", type=int, default=0, help="seed for training and sampling")
    parser.add_argument("--device", default="auto", help="auto|cpu|cuda|cuda:N|mps")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()

    try:
        device = resolve_device(args.device)
        raw_digits, labels = read_mnist_test(args.mnist_dir)
        digits = to_digits(raw_digits)
        # The yardstick: held-out real digits through the GAN's own preprocessing.
        reference = like_training_images(raw_digits[TRAIN_COUNT:], args.image_size)
        # The images first, so a wrong path fails before the classifier trains.
        asked = None  # the digits a conditional generator was asked to draw
        if args.checkpoint is not None:
            source_name = str(args.checkpoint)
            images, asked = generate_from_checkpoint(
                args.checkpoint, args.samples, args.seed, device
            )
        elif args.images is not None:
            source_name = str(args.images)
            images = load_image_file(args.images, args.grid_cell, args.grid_padding)
        elif args.sanity == "held-out":
            source_name, images = "held-out real digits", digits[TRAIN_COUNT:]
        else:
            source_name = "uniform noise"
            noise_generator = torch.Generator().manual_seed(args.seed)
            images = torch.rand(2000, 1, 28, 28, generator=noise_generator) * 2 - 1
        images = to_digits(images)
        start = time.perf_counter()
        model = train_classifier(
            digits[:TRAIN_COUNT],
            labels[:TRAIN_COUNT],
            epochs=args.epochs,
            seed=args.seed,
            device=device,
        )
        train_seconds = time.perf_counter() - start
        held_out = probabilities(model, digits[TRAIN_COUNT:], device)
        accuracy = float((held_out.argmax(dim=1) == labels[TRAIN_COUNT:]).float().mean())
        print(
            f"classifier: LeNet, {TRAIN_COUNT} training digits, held-out accuracy "
            f"{accuracy:.4f} on {len(held_out)} ({train_seconds:.1f} s)"
        )

        sample_probabilities = probabilities(model, images, device)
        results = judge(sample_probabilities)
        if asked is not None:
            # A conditional generator: how often the judge reads the digit that was asked for.
            results["asked_digit_fraction"] = float(
                (sample_probabilities.argmax(dim=1) == asked).float().mean()
            )
        real = judge(probabilities(model, reference, device))
        # Distances to the classifier's training digits, for as many real digits as samples.
        count = min(images.shape[0], reference.shape[0])
        anchor = embeddings(
            model, like_training_images(raw_digits[:TRAIN_COUNT], args.image_size), device
        )
        distance = frechet_distance(embeddings(model, images[:count], device), anchor)
        real_distance = frechet_distance(embeddings(model, reference[:count], device), anchor)
    except UserError as error:
        raise SystemExit(f"error: {error}") from None

    results = {
        "source": source_name,
        "classifier_held_out_accuracy": accuracy,
        **results,
        "feature_distance": distance,
        "real_digits": {**real, "feature_distance": real_distance, "count": count},
        "confidence_ratio": results["confident_fraction"] / max(real["confident_fraction"], 1e-9),
        "distance_ratio": distance / max(real_distance, 1e-9),
    }
    print(f"samples: {results['samples']} from {source_name}")
    print(
        f"confident (> {CONFIDENCE}): {results['confident_fraction']:.3f}   "
        f"mean confidence {results['mean_confidence']:.3f}"
    )
    print("histogram: " + "  ".join(f"{d}:{n}" for d, n in enumerate(results["histogram"])))
    print(
        f"classes with >= 5% of samples: {results['classes_at_least_5_percent']} / 10 "
        f"(confident ones only: {results['confident_classes_at_least_5_percent']} / 10)"
    )
    if "asked_digit_fraction" in results:
        print(f"read as the digit asked for: {results['asked_digit_fraction']:.3f}")
    real = results["real_digits"]
    print(
        f"real held-out digits (28 -> {args.image_size} -> 28): confident "
        f"{real['confident_fraction']:.3f}, feature distance {real['feature_distance']:.3f}"
    )
    print(
        f"samples vs real: confidence {results['confidence_ratio']:.2f}x, feature distance "
        f"{results['distance_ratio']:.2f}x ({results['feature_distance']:.3f})"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
