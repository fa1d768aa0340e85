"""FID/KID quality metric (gan.metrics) on the real MNIST test split: real held-out digits must
score far better than degraded digits, noise and a mode-collapsed set."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gan.metrics import QualityMetric, train_feature_classifier
from playground.errors import UserError
from tests.conftest import MNIST_RAW

IMAGES_FILE = MNIST_RAW / "t10k-images-idx3-ubyte"
LABELS_FILE = MNIST_RAW / "t10k-labels-idx1-ubyte"
REFERENCE_COUNT = 3000
HELD_OUT_COUNT = 2000

pytestmark = pytest.mark.skipif(
    not (IMAGES_FILE.is_file() and LABELS_FILE.is_file()),
    reason=f"MNIST test split (IDX) not found in {MNIST_RAW}",
)


def to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1


@pytest.fixture(scope="module")
def mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """The 10,000 test digits as uint8 (N, 1, 32, 32) (zero-padded from 28) and labels (N,)."""
    images = np.fromfile(IMAGES_FILE, dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    labels = np.fromfile(LABELS_FILE, dtype=np.uint8, offset=8).astype(np.int64)
    return F.pad(torch.from_numpy(images), (2, 2, 2, 2)), torch.from_numpy(labels)


@pytest.fixture(scope="module")
def metric(mnist) -> QualityMetric:
    images, labels = mnist
    return QualityMetric(images[:REFERENCE_COUNT], labels[:REFERENCE_COUNT], feature="auto")


@pytest.fixture(scope="module")
def held_out(mnist) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = mnist
    end = REFERENCE_COUNT + HELD_OUT_COUNT
    return to_float(images[REFERENCE_COUNT:end]), labels[REFERENCE_COUNT:end]


def blurred(images: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(images, 5, stride=1, padding=2, count_include_pad=False)


def collapsed(images: torch.Tensor, labels: torch.Tensor, digit: int = 1) -> torch.Tensor:
    """As many images as `images`, all copies of the few held-out examples of one digit."""
    one_class = images[labels == digit][:50]
    return one_class.repeat(math.ceil(len(images) / len(one_class)), 1, 1, 1)[: len(images)]


def test_auto_without_weights_uses_the_classifier(metric):
    assert metric.feature_name == "classifier"


def test_real_digits_rank_far_better_than_degraded_noise_and_collapsed(metric, held_out):
    images, labels = held_out
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    scores = {
        "real": metric.compute(images),
        "blurred": metric.compute(blurred(images)),
        "noise": metric.compute(noise),
        "collapsed": metric.compute(collapsed(images, labels)),
    }
    fid = {name: values["fid"] for name, values in scores.items()}
    kid = {name: values["kid"] for name, values in scores.items()}
    assert fid["real"] < 2.0, fid
    assert 10 * fid["real"] < fid["blurred"] < fid["noise"], fid
    assert 10 * fid["real"] < fid["collapsed"], fid
    assert kid["real"] < 0.05 < kid["blurred"] < kid["noise"], kid
    assert kid["real"] < 0.05 < kid["collapsed"], kid


def test_fid_of_the_reference_set_against_itself_is_zero(metric, mnist):
    images, _ = mnist
    scores = metric.compute(to_float(images[:REFERENCE_COUNT]))
    assert abs(scores["fid"]) < 1e-3
    assert abs(scores["kid"]) < 0.05


def test_compute_is_repeatable_and_leaves_the_global_rng_alone(metric, held_out):
    images, _ = held_out
    before = torch.get_rng_state()
    first = metric.compute(images[:300])
    second = metric.compute(images[:300])
    assert first == second
    assert torch.equal(torch.get_rng_state(), before)


def test_kid_subset_shrinks_for_a_few_samples(metric, held_out):
    images, _ = held_out
    scores = metric.compute(images[:8])
    assert math.isfinite(scores["fid"]) and math.isfinite(scores["kid"])


def test_rejects_wrong_fake_shape(metric, held_out):
    images, _ = held_out
    with pytest.raises(ValueError, match="fake_images"):
        metric.compute(images.repeat(1, 3, 1, 1)[:10])
    with pytest.raises(ValueError, match="at least 2"):
        metric.compute(images[:1])


def test_without_labels_the_rotation_proxy_still_ranks(mnist, held_out):
    images, _ = mnist
    held, labels = held_out
    metric = QualityMetric(images[:1000], None, feature="classifier", classifier_steps=150)
    noise = torch.rand(held[:1000].shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    real = metric.compute(held[:1000])["fid"]
    assert 10 * real < metric.compute(noise)["fid"]
    assert 10 * real < metric.compute(collapsed(held, labels)[:1000])["fid"]


def test_colour_and_larger_images_are_accepted(mnist):
    images, labels = mnist
    colour = F.interpolate(images[:400].float(), size=64).round().to(torch.uint8).repeat(1, 3, 1, 1)
    metric = QualityMetric(colour, labels[:400], classifier_steps=20, kid_subset_size=100)
    scores = metric.compute(to_float(colour[:100]))
    assert set(scores) == {"fid", "kid"}
    assert metric.state_dict()["body.0.weight"].shape[1] == 3


def test_classifier_is_deterministic_for_a_seed(mnist):
    images, labels = mnist
    first = train_feature_classifier(images[:500], labels[:500], seed=3, steps=10)
    second = train_feature_classifier(images[:500], labels[:500], seed=3, steps=10)
    other = train_feature_classifier(images[:500], labels[:500], seed=4, steps=10)
    for name, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[name]), name
    assert not torch.equal(first.state_dict()["head.weight"], other.state_dict()["head.weight"])


def test_inception_without_weights_is_a_user_error(mnist, tmp_path):
    images, labels = mnist
    with pytest.raises(UserError, match="nothing is downloaded"):
        QualityMetric(images[:10], labels[:10], feature="inception")
    missing = tmp_path / "pt_inception.pth"
    with pytest.raises(UserError, match="not found"):
        QualityMetric(images[:10], labels[:10], feature="inception", inception_weights=str(missing))
    # A file that is not a weights file is refused before anything else looks at it.
    missing.write_bytes(b"not a weights file")
    with pytest.raises(UserError, match="not a usable"):
        QualityMetric(images[:10], labels[:10], feature="auto", inception_weights=str(missing))
    # Garbage that makes the safe unpickler raise IndexError (seed 2) or KeyError (seed 20).
    for seed in (2, 20):
        missing.write_bytes(random.Random(seed).randbytes(4096))
        with pytest.raises(UserError, match="not a usable"):
            QualityMetric(images[:10], labels[:10], feature="auto", inception_weights=str(missing))


def test_unknown_feature_is_a_user_error(mnist):
    images, labels = mnist
    with pytest.raises(UserError, match="auto|inception|classifier"):
        QualityMetric(images[:10], labels[:10], feature="vgg")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_ranks_like_cpu(mnist, held_out):
    images, labels = mnist
    held, _ = held_out
    metric = QualityMetric(images[:REFERENCE_COUNT], labels[:REFERENCE_COUNT], device="cuda")
    noise = torch.rand(held.shape, device="cuda") * 2 - 1
    assert 10 * metric.compute(held.cuda())["fid"] < metric.compute(noise)["fid"]
