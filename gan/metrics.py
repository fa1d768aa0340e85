"""Sample quality for the GAN: FID and KID (torchmetrics) over a pluggable feature network.

Two feature networks:

- ``"inception"``: the Inception-v3 of the FID paper (torch-fidelity's port, used by
  torchmetrics), loaded from a local weights file such as ``pt_inception-2015-12-05-6726825d.pth``.
  Nothing is ever downloaded: without the file, or without the ``torch-fidelity`` package,
  a ``UserError`` says what to supply.
- ``"classifier"``: the offline fallback. A small CNN is trained for a few seconds on the real
  images: on their labels when there are at least two classes (MNIST digits, the game each
  Atari frame came from), otherwise on a self-supervised proxy task (predict which of four
  rotations, 0/90/180/270 degrees, was applied). Its penultimate activations, scaled so the
  real ones have unit mean variance per dimension, are the features. Scores are comparable between runs only with the same data and seed, never with
  published Inception FIDs.

``"auto"`` picks inception when a weights file is given, else the classifier.

The feature network runs once per image set; torchmetrics receives the finished (N, D)
features through an identity module, so FID and KID share one pass and the real features
are computed once, in ``__init__``. KID is the mean over ``kid_subsets`` random subsets of
``kid_subset_size`` (shrunk to the number of images when fewer are given).

Example::

    metric = QualityMetric(real_uint8, labels, feature="classifier", device="cpu")
    scores = metric.compute(fake_in_minus_one_one)   # {"fid": ..., "kid": ...}
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from gan.config import GanConfig
from gan.data import ImageDataset
from gan.models import Generator, generate
from playground.errors import UserError
from playground.media import to_float, to_uint8
from playground.notes import note
from playground.seeding import rng_state, set_rng_state

FEATURE_CHOICES = ("auto", "inception", "classifier")
INCEPTION_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
CLASSIFIER_INPUT_SIZE = 32
"""Images are resized to this side before the fallback classifier sees them."""
CHUNK_SIZE = 256
"""Images per forward pass when extracting features (bounds memory, not a Python loop
over images)."""


class FeatureClassifier(nn.Module):
    """A small CNN whose penultimate layer gives the features; ``forward`` returns them and
    ``logits`` adds the classification head used only for training."""

    def __init__(self, channels: int, num_classes: int, feature_size: int = 128) -> None:
        super().__init__()
        self.num_features = feature_size
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            # 16 x 16 x 16
            nn.Conv2d(16, 32, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            # 32 x 8 x 8
            nn.Conv2d(32, 64, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            # 64 x 4 x 4
            nn.Flatten(),
        )
        with torch.no_grad():
            dummy = torch.zeros(1, channels, CLASSIFIER_INPUT_SIZE, CLASSIFIER_INPUT_SIZE)
            flat_size = self.body(dummy).shape[1]
        self.embed = nn.Sequential(nn.Linear(flat_size, feature_size), nn.LeakyReLU(0.2))
        # feature_size
        self.head = nn.Linear(feature_size, num_classes)
        # Set after training so real features have unit mean variance per dimension, which keeps
        # FID and KID in a readable range whatever the activations' scale.
        self.register_buffer("feature_scale", torch.tensor(1.0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], (N, C, H, W) of any square size -> features (N, feature_size)."""
        return self.embed(self.body(_resize(images, CLASSIFIER_INPUT_SIZE))) * self.feature_scale

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(self.body(_resize(images, CLASSIFIER_INPUT_SIZE))))


class InceptionFeatures(nn.Module):
    """torch-fidelity's FID Inception-v3 (2048 pool features) taking images in [-1, 1].

    Grey images are repeated to three channels; the network resizes to 299 x 299 itself."""

    num_features = 2048

    def __init__(self, weights_path: str | Path) -> None:
        super().__init__()
        weights_path = Path(weights_path)
        if not weights_path.is_file():
            raise UserError(
                f"Inception weights not found at {weights_path}: download {INCEPTION_WEIGHTS_NAME} "
                "(torch-fidelity release) to that path, or use the offline feature 'classifier'"
            )
        try:
            # Read with weights_only=True first: torch-fidelity itself unpickles the file
            # without that guard, so only a plain state dict may reach it.
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
        except MemoryError:
            raise
        except Exception as error:
            raise UserError(
                f"{weights_path} is not a usable FID Inception weights file "
                f"({type(error).__name__}); expected {INCEPTION_WEIGHTS_NAME}"
            ) from None
        if not isinstance(state, dict):
            raise UserError(
                f"{weights_path} holds no state dict; expected {INCEPTION_WEIGHTS_NAME}"
            )
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3

            self.network = NoTrainInceptionV3(
                name="inception-v3-compat",
                features_list=["2048"],
                feature_extractor_weights_path=str(weights_path),
            )
        except ModuleNotFoundError:
            raise UserError(
                "the 'inception' feature needs the torch-fidelity package "
                "(pip install torch-fidelity) plus a local weights file; "
                "or use the offline feature 'classifier'"
            ) from None
        except (RuntimeError, KeyError) as error:
            raise UserError(
                f"{weights_path} does not fit the FID Inception network "
                f"({type(error).__name__}); expected {INCEPTION_WEIGHTS_NAME}"
            ) from None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = to_uint8(images)
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        return self.network(pixels)


class _Precomputed(nn.Module):
    """Hands already-extracted features to torchmetrics (which calls ``feature(images)``)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class QualityMetric:
    """FID and KID of generated images against a fixed set of real images.

    ``real_images``: uint8 (N, C, H, W), C in {1, 3}, square. ``labels``: (N,) integer class per
    image or None. At most ``max_real`` real images (a seeded random subset) are used, both
    to train the fallback classifier and as the reference distribution. The caller's RNG
    state is left untouched: everything random here draws from forked, seeded generators.
    """

    def __init__(
        self,
        real_images: torch.Tensor,
        labels: torch.Tensor | None,
        *,
        feature: str = "auto",
        inception_weights: str | None = None,
        device: torch.device | str = "cpu",
        seed: int = 0,
        max_real: int = 5000,
        classifier_steps: int = 200,
        kid_subsets: int = 50,
        kid_subset_size: int = 500,
    ) -> None:
        if feature not in FEATURE_CHOICES:
            raise UserError(f"metric feature {feature!r} is not one of {'|'.join(FEATURE_CHOICES)}")
        if real_images.dtype != torch.uint8 or real_images.dim() != 4:
            raise ValueError(
                f"real_images must be uint8 (N, C, H, W), got {real_images.dtype} "
                f"{tuple(real_images.shape)}"
            )
        count, channels, height, width = real_images.shape
        if channels not in (1, 3) or height != width or count < 2:
            raise ValueError(
                f"real_images must be (N>=2, 1|3, S, S), got {tuple(real_images.shape)}"
            )
        if labels is not None and labels.shape != (count,):
            raise ValueError(f"labels must have shape ({count},), got {tuple(labels.shape)}")
        if feature == "inception" and inception_weights is None:
            raise UserError(
                f"the 'inception' metric feature needs local weights: pass the path of "
                f"{INCEPTION_WEIGHTS_NAME} (nothing is downloaded), or use 'classifier'"
            )

        self.device = torch.device(device)
        self.channels = channels
        self.seed = seed
        self.kid_subset_size = kid_subset_size
        generator = torch.Generator().manual_seed(seed)
        if count > max_real:
            keep = torch.randperm(count, generator=generator)[:max_real]
            real_images = real_images[keep]
            labels = labels[keep] if labels is not None else None

        if feature == "inception" or (feature == "auto" and inception_weights is not None):
            self.feature_name = "inception"
            self.network: nn.Module = InceptionFeatures(inception_weights)
        else:
            self.feature_name = "classifier"
            self.network = train_feature_classifier(
                real_images, labels, seed=seed, device=self.device, steps=classifier_steps
            )
        self.network = self.network.to(self.device).eval().requires_grad_(False)

        num_features = int(self.network.num_features)
        # One process computes the metric on all its samples: never all-gather states, even
        # when a process group exists (torchrun), where only rank 0 evaluates.
        self._fid = FrechetInceptionDistance(
            feature=_Precomputed(num_features), reset_real_features=False, sync_on_compute=False
        ).to(self.device)
        with warnings.catch_warnings():
            # KID warns that it stores every feature; a few thousand rows of D floats is small.
            warnings.simplefilter("ignore", UserWarning)
            self._kid = KernelInceptionDistance(
                feature=_Precomputed(num_features),
                subsets=kid_subsets,
                subset_size=kid_subset_size,
                reset_real_features=False,
                sync_on_compute=False,
            ).to(self.device)
        real_features = self.features(real_images)
        self.real_count = real_features.shape[0]
        self._fid.update(real_features, real=True)
        self._kid.update(real_features, real=True)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W), uint8 or floats in [-1, 1] -> features (N, D) on this metric's
        device. Converted chunk by chunk, so a large uint8 set never exists as floats."""
        chunks = []
        for chunk in images.detach().split(CHUNK_SIZE):
            chunk = chunk.to(self.device)
            chunk = to_float(chunk) if chunk.dtype == torch.uint8 else chunk.float()
            chunks.append(self.network(chunk))
        return torch.cat(chunks)

    def compute(self, fake_images: torch.Tensor) -> dict[str, float]:
        """FID and KID (mean over subsets) of ``fake_images``, floats in [-1, 1], (N, C, H, W)."""
        if fake_images.dim() != 4 or fake_images.shape[1] != self.channels:
            raise ValueError(
                f"fake_images must be (N, {self.channels}, H, W), got {tuple(fake_images.shape)}"
            )
        if fake_images.shape[0] < 2:
            raise ValueError("FID needs at least 2 generated images")
        fake_features = self.features(fake_images.clamp(-1, 1))
        self._fid.reset()
        self._kid.reset()
        self._fid.update(fake_features, real=False)
        self._kid.update(fake_features, real=False)
        self._kid.subset_size = min(self.kid_subset_size, self.real_count, fake_features.shape[0])
        fid = float(self._fid.compute())
        # KID draws its subsets with the global CPU generator; fork it so the result is
        # repeatable and the caller's stream is not consumed.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            kid_mean, _kid_std = self._kid.compute()
        return {"fid": fid, "kid": float(kid_mean)}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Weights of the feature network (e.g. to store the trained classifier alongside a run)."""
        return self.network.state_dict()


def train_feature_classifier(
    images: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    steps: int = 200,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
) -> FeatureClassifier:
    """Train the fallback feature network on uint8 (N, C, H, W) ``images``.

    With ``labels`` holding at least two distinct values it learns those classes; otherwise it
    learns to tell which of four rotations was applied (self-supervised). Deterministic for a
    seed on CPU; the caller's RNG state is not touched."""
    device = torch.device(device)
    inputs = torch.cat(
        [_resize(to_float(chunk.to(device)), CLASSIFIER_INPUT_SIZE) for chunk in images.split(1024)]
    )
    # (N, C, 32, 32) in [-1, 1]
    use_labels = labels is not None and torch.unique(labels).numel() >= 2
    if use_labels:
        classes, targets = torch.unique(labels, return_inverse=True)
        num_classes = int(classes.numel())
        targets = targets.to(device)
    else:
        num_classes = 4
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked):
        torch.manual_seed(seed)
        network = FeatureClassifier(images.shape[1], num_classes).to(device)
        optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
        generator = torch.Generator().manual_seed(seed)
        network.train()
        for _ in range(steps):
            index = torch.randint(inputs.shape[0], (batch_size,), generator=generator).to(device)
            batch = inputs[index]
            if use_labels:
                batch_targets = targets[index]
            else:
                batch_targets = torch.randint(4, (batch_size,), generator=generator).to(device)
                rotations = torch.stack([torch.rot90(batch, k, dims=(2, 3)) for k in range(4)])
                # (4, B, C, S, S) -> pick each image's own rotation
                batch = rotations[batch_targets, torch.arange(batch_size, device=device)]
            loss = F.cross_entropy(network.logits(batch), batch_targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    network.eval()
    with torch.no_grad():
        features = torch.cat([network(chunk) for chunk in inputs.split(CHUNK_SIZE)])
        network.feature_scale.fill_(features.var(dim=0).mean().clamp_min(1e-12).rsqrt().item())
    return network


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(
        images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )


def make_quality_metric(cfg: GanConfig, data: ImageDataset, device: torch.device) -> QualityMetric:
    """FID/KID against the real images of `data`, with the features `cfg` asks for."""
    metric = QualityMetric(
        data.images,
        data.labels,
        feature=cfg.metric_feature,
        inception_weights=cfg.inception_weights or None,
        device=device,
        seed=cfg.seed,
        max_real=max(cfg.metric_samples, 2),
    )
    note(f"quality metric: FID/KID on {metric.feature_name} features")
    return metric


def measure_quality(
    metric: QualityMetric, generator: Generator, cfg: GanConfig, device: torch.device, step: int
) -> dict[str, float]:
    """FID/KID of `metric_samples` fresh images. The training RNG streams are saved and
    restored around it, so evaluating does not change what training draws next."""
    state = rng_state()
    noise = torch.randn(
        cfg.metric_samples,
        cfg.latent_size,
        generator=torch.Generator().manual_seed(cfg.seed + step),
    ).to(device)
    scores = metric.compute(generate(generator, noise))
    set_rng_state(state)
    return scores
