"""DCGAN: networks, losses, DiffAugment, data sets, the training loop (logs, checkpoints,
resume, NaN stop, Ctrl-C) and sampling."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import math
import signal
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan.augment import diff_augment, parse_policy, random_cutout, random_translation
from gan.config import GanConfig, SampleConfig
from gan.data import data_device, load_dataset, read_idx
from gan.losses import discriminator_loss, generator_loss
from gan.models import Discriminator, Generator
from gan.sample import sample
from gan.train import train_gan
from playground.checkpoint import load_checkpoint
from playground.errors import UserError
from playground.logger import Logger
from tests.conftest import MNIST_RAW

# ---- networks ------------------------------------------------------------------------------


@pytest.mark.parametrize("image_size", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("spectral_norm", [False, True])
def test_generator_and_discriminator_shapes(image_size: int, channels: int, spectral_norm: bool):
    generator = Generator(image_size, channels, latent_size=16, width=4)
    discriminator = Discriminator(image_size, channels, width=4, spectral_norm=spectral_norm)
    images = generator(torch.randn(3, 16))
    assert images.shape == (3, channels, image_size, image_size)
    assert images.abs().max() <= 1.0  # tanh output
    logits = discriminator(images)
    assert logits.shape == (3,)
    has_batch_norm = any(isinstance(m, torch.nn.BatchNorm2d) for m in discriminator.modules())
    assert has_batch_norm != spectral_norm


@pytest.mark.parametrize("image_size", [16, 48, 256])
def test_unsupported_image_size_names_the_supported_ones(image_size: int):
    with pytest.raises(UserError, match="32, 64, 128"):
        Generator(image_size, 3)
    with pytest.raises(UserError, match="32, 64, 128"):
        Discriminator(image_size, 3)


def test_number_of_blocks_follows_the_image_size():
    def transposed_convs(size: int) -> int:
        return sum(
            isinstance(m, torch.nn.ConvTranspose2d) for m in Generator(size, 3, 8, 4).modules()
        )

    # projection to 4 x 4, then one doubling per block: 4 -> 32 is three doublings.
    assert [transposed_convs(size) for size in (32, 64, 128)] == [4, 5, 6]
    # The widths double towards 4 x 4: (width * 8) x 4 x 4 for 64 px.
    assert Generator(64, 3, 100, 64).net[0].out_channels == 512
    assert Discriminator(64, 3, 64).net[-1].in_channels == 512


def test_initialisation_follows_the_paper():
    torch.manual_seed(0)
    generator = Generator(64, 3, 100, 64)
    conv_weights = torch.cat(
        [m.weight.flatten() for m in generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    )
    bn_weights = torch.cat(
        [m.weight for m in generator.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    )
    bn_biases = torch.cat(
        [m.bias for m in generator.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    )
    assert abs(conv_weights.mean().item()) < 1e-3
    assert conv_weights.std().item() == pytest.approx(0.02, rel=0.02)
    assert bn_weights.mean().item() == pytest.approx(1.0, abs=0.005)
    assert bn_weights.std().item() == pytest.approx(0.02, rel=0.15)
    assert torch.all(bn_biases == 0)


# ---- losses --------------------------------------------------------------------------------


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_nonsaturating_loss_exact_values():
    real, fake = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 3.0])
    d_loss_real, d_loss_fake = discriminator_loss(real, fake, "nonsaturating")
    # -log sigmoid(x) = softplus(-x);  -log(1 - sigmoid(x)) = softplus(x)
    assert d_loss_real.item() == pytest.approx((softplus(-1.0) + softplus(2.0)) / 2, rel=1e-6)
    assert d_loss_fake.item() == pytest.approx((softplus(0.5) + softplus(3.0)) / 2, rel=1e-6)
    assert generator_loss(fake, "nonsaturating").item() == pytest.approx(
        (softplus(-0.5) + softplus(-3.0)) / 2, rel=1e-6
    )
    # A discriminator that cannot tell (logit 0 everywhere) costs log 2 per part.
    zeros = torch.zeros(4)
    assert sum(discriminator_loss(zeros, zeros)).item() == pytest.approx(2 * math.log(2), rel=1e-6)


def test_nonsaturating_loss_is_finite_for_extreme_half_precision_logits():
    logits = torch.tensor([-60000.0, 60000.0], dtype=torch.float16)
    d_loss_real, d_loss_fake = discriminator_loss(logits, logits)
    assert torch.isfinite(d_loss_real) and torch.isfinite(d_loss_fake)
    assert d_loss_real.dtype == torch.float32


def test_hinge_loss_exact_values():
    real, fake = torch.tensor([0.5, 2.0]), torch.tensor([-2.0, 0.5])
    d_loss_real, d_loss_fake = discriminator_loss(real, fake, "hinge")
    assert d_loss_real.item() == pytest.approx(0.25)  # mean(relu(0.5), relu(-1))
    assert d_loss_fake.item() == pytest.approx(0.75)  # mean(relu(-1), relu(1.5))
    assert generator_loss(fake, "hinge").item() == pytest.approx(0.75)  # -mean(-2, 0.5)


# ---- DiffAugment ---------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diff_augment_keeps_shape_and_is_differentiable(policy: str):
    torch.manual_seed(0)
    images = torch.randn(5, 3, 32, 32, requires_grad=True)
    augmented = diff_augment(images, parse_policy(policy))
    assert augmented.shape == images.shape
    augmented.square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert not torch.equal(augmented.detach(), images.detach())


def test_translation_shifts_and_fills_with_zeros():
    torch.manual_seed(1)
    ones = torch.ones(64, 1, 32, 32)
    shifted = random_translation(ones)
    # Each image is a block of ones of (32 - |dy|) x (32 - |dx|), |d| <= 4, the rest zeros.
    for image in shifted[:, 0]:
        rows = int(image.any(dim=1).sum())
        cols = int(image.any(dim=0).sum())
        assert 28 <= rows <= 32 and 28 <= cols <= 32
        assert image.sum() == rows * cols
    assert (shifted.sum(dim=(1, 2, 3)) < 32 * 32).any()


def test_cutout_zeroes_one_square_at_most_half_the_side():
    torch.manual_seed(2)
    cut = random_cutout(torch.ones(16, 3, 32, 32))
    for image in cut[:, 0]:
        zero_rows = int((image == 0).any(dim=1).sum())
        zero_cols = int((image == 0).any(dim=0).sum())
        assert 0 < zero_rows <= 16 and 0 < zero_cols <= 16
        assert int((image == 0).sum()) == zero_rows * zero_cols


def test_unknown_augmentation_is_a_user_error():
    assert parse_policy("") == ()
    with pytest.raises(UserError, match="unknown augmentation 'flip'"):
        parse_policy("color,flip")


# ---- data sets -----------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    code = {np.uint8: 0x08}[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as handle:
        handle.write(header + array.tobytes())


def tiny_idx_dataset(folder: Path, count: int = 64) -> str:
    """An MNIST-like IDX pair: bright squares whose position is the label."""
    folder.mkdir(parents=True, exist_ok=True)
    images = np.zeros((count, 28, 28), np.uint8)
    labels = (np.arange(count) % 4).astype(np.uint8)
    for index, label in enumerate(labels):
        row, col = divmod(int(label), 2)
        images[index, 4 + 12 * row : 12 + 12 * row, 4 + 12 * col : 12 + 12 * col] = 255
    write_idx(folder / "train-images-idx3-ubyte", images)
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels)
    return f"idx:{folder}"


def test_idx_round_trip_plain_and_gzip(tmp_path: Path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a-images-idx3-ubyte", array)
    write_idx(tmp_path / "b-images-idx3-ubyte.gz", array)
    assert np.array_equal(read_idx(tmp_path / "a-images-idx3-ubyte"), array)
    assert np.array_equal(read_idx(tmp_path / "b-images-idx3-ubyte.gz"), array)
    (tmp_path / "bad").write_bytes(b"\x12\x34\x08\x01")
    with pytest.raises(UserError, match="not an IDX file"):
        read_idx(tmp_path / "bad")


def test_idx_dataset_reads_images_and_labels(tmp_path: Path):
    data = load_dataset(tiny_idx_dataset(tmp_path / "idx"), image_size=32)
    assert data.images.shape == (64, 1, 32, 32) and data.images.dtype == torch.uint8
    assert data.labels.tolist() == [i % 4 for i in range(64)]
    batch = data.sample(8)
    assert batch.shape == (8, 1, 32, 32) and batch.min() >= -1 and batch.max() <= 1


@pytest.mark.skipif(not MNIST_RAW.is_dir(), reason=f"MNIST test split not found at {MNIST_RAW}")
def test_idx_dataset_reads_the_mnist_test_split():
    data = load_dataset(f"idx:{MNIST_RAW}", image_size=32)
    assert data.images.shape == (10_000, 1, 32, 32)
    assert data.images.dtype == torch.uint8
    assert sorted(data.labels.unique().tolist()) == list(range(10))
    assert data.label_names == tuple(str(d) for d in range(10))
    rgb = load_dataset(f"idx:{MNIST_RAW}", image_size=64, channels=3, max_images=100)
    assert rgb.images.shape == (100, 3, 64, 64)


def test_folder_dataset_skips_unreadable_files(tmp_path: Path, capsys: pytest.CaptureFixture):
    folder = tmp_path / "pictures"
    (folder / "nested").mkdir(parents=True)
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(folder / "nested" / "wide.png")
    Image.fromarray(np.full((20, 20), 50, np.uint8)).save(folder / "grey.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    data = load_dataset(f"folder:{folder}", image_size=32)
    assert "skipped 2 file(s)" in capsys.readouterr().err  # a note, on stderr
    assert data.images.shape == (2, 3, 32, 32)  # one colour image -> all colour
    assert data.labels is None  # not every image sits in a sub-folder
    grey = load_dataset(f"folder:{folder}", image_size=32, channels=1)
    assert grey.images.shape == (2, 1, 32, 32)
    assert set(grey.images.unique().tolist()) == {50, 200}


def test_empty_or_missing_folder_is_a_user_error(tmp_path: Path):
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(UserError, match="no readable images"):
        load_dataset(f"folder:{tmp_path}", image_size=32)
    with pytest.raises(UserError, match="no such folder"):
        load_dataset(f"folder:{tmp_path / 'absent'}", image_size=32)
    with pytest.raises(UserError, match="is not known"):
        load_dataset("imagenet", image_size=32)


def test_torchvision_dataset_offline_is_a_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import socket

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    # No network: torchvision's own download fails, whichever mirror it tries.
    monkeypatch.setattr(socket, "getaddrinfo", offline)
    monkeypatch.setattr(socket.socket, "connect", offline)
    with pytest.raises(UserError, match="--data-dir"):
        load_dataset("cifar10", image_size=32, data_dir=str(tmp_path))


def test_data_sets_stay_on_the_gpu_only_when_they_fit():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    gib = 2**30
    assert data_device(3 * gib, cuda, free_bytes=10 * gib) == cuda
    assert data_device(6 * gib, cuda, free_bytes=10 * gib) == cpu  # over half the free memory
    assert data_device(6 * gib, cpu) == cpu
    assert data_device(6 * gib, torch.device("mps")) == torch.device("mps")


def test_atari_frames_are_collected_offline_and_seeded():
    from gan.data import collect_atari_frames

    frames, labels, games = collect_atari_frames(
        32, seed=3, games=("Pong", "Breakout"), frames_per_game=40
    )
    again, _, _ = collect_atari_frames(32, seed=3, games=("Pong", "Breakout"), frames_per_game=40)
    assert frames.shape == (80, 3, 32, 32) and frames.dtype == torch.uint8
    assert labels.tolist() == [0] * 40 + [1] * 40 and games == ("Pong", "Breakout")
    assert torch.equal(frames, again)
    assert frames.float().std() > 10  # real screens, not blank


# ---- training ------------------------------------------------------------------------------


def tiny_config(tmp_path: Path, **overrides) -> GanConfig:
    settings = dict(
        dataset=tiny_idx_dataset(tmp_path / "idx"),
        latent_size=8,
        generator_width=4,
        discriminator_width=4,
        batch_size=8,
        steps=6,
        log_every=2,
        sample_every=3,
        metric_every=0,
        checkpoint_every=2,
        num_samples=4,
        runs_dir=str(tmp_path / "runs"),
        run_name="tiny",
        progress=False,
        device="cpu",
        seed=5,
    )
    settings.update(overrides)
    return GanConfig(**settings)


def read_events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_short_training_run_writes_logs_and_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import gan.metrics

    # A briefly trained feature classifier: this test is about the loop, not the metric.
    quick_metric = functools.partial(gan.metrics.QualityMetric, classifier_steps=20)
    monkeypatch.setattr(gan.metrics, "QualityMetric", quick_metric)
    cfg = tiny_config(
        tmp_path, metric_every=3, metric_samples=32, diff_augment="color,translation,cutout"
    )
    run_dir = train_gan(cfg)
    assert run_dir == tmp_path / "runs" / "tiny"
    events = read_events(run_dir)
    scalars = events.Tags()["scalars"]
    for tag in (
        "losses/d_loss",
        "losses/g_loss",
        "gan/d_real",
        "gan/d_fake",
        "perf/images_per_sec",
    ):
        assert [event.step for event in events.Scalars(tag)] == [2, 4, 6], tag
    assert 0 < events.Scalars("gan/d_real")[0].value < 1
    assert [event.step for event in events.Scalars("metrics/fid")] == [3, 6]
    assert "metrics/kid" in scalars
    assert [event.step for event in events.Images("samples/fixed_noise")] == [3, 6]
    assert [event.step for event in events.Images("samples/real")] == [0]
    latest = load_checkpoint(run_dir / "latest.pt", kind="gan")
    best = load_checkpoint(run_dir / "best.pt", kind="gan")
    fids = events.Scalars("metrics/fid")
    lowest = min(fids, key=lambda event: event.value)
    assert latest["step"] == 6 and best["step"] == lowest.step  # best.pt is the lowest FID's
    assert best["best_fid"] == pytest.approx(lowest.value)
    assert latest["config"]["generator_width"] == 4 and latest["fixed_noise"].shape == (4, 8)


def test_resume_continues_exactly(tmp_path: Path):
    settings = dict(
        diff_augment="color,translation,cutout", ema_decay=0.9, steps=8, checkpoint_every=4
    )
    whole = train_gan(tiny_config(tmp_path / "a", **settings))
    half = train_gan(tiny_config(tmp_path / "b", **{**settings, "steps": 4}))
    resumed = train_gan(tiny_config(tmp_path / "b", steps=8, resume=str(half)))
    assert resumed == half
    expected, actual = load_checkpoint(whole / "latest.pt"), load_checkpoint(resumed / "latest.pt")
    assert actual["step"] == 8
    assert torch.equal(expected["fixed_noise"], actual["fixed_noise"])
    for part in ("generator", "discriminator", "ema_generator"):
        for name, tensor in expected[part].items():
            torch.testing.assert_close(
                actual[part][name], tensor, rtol=1e-5, atol=1e-6, msg=f"{part}.{name}"
            )
    # The curves continue without a duplicate point.
    assert [event.step for event in read_events(resumed).Scalars("losses/d_loss")] == [2, 4, 6, 8]


def test_linear_learning_rate_decay_follows_the_step_across_a_resume(tmp_path: Path):
    # --learning-rate-decay linear: step k trains at rate * (1 - (k - 1) / steps), for both
    # networks; a resumed run sets its rate from its own step and --steps.
    rates = {"generator": 2e-4, "discriminator": 1e-4}
    settings = dict(learning_rate_decay="linear", checkpoint_every=4)
    settings.update({f"{name}_learning_rate": rate for name, rate in rates.items()})
    half = train_gan(tiny_config(tmp_path, steps=4, **settings))
    saved = load_checkpoint(half / "latest.pt")
    for name, rate in rates.items():
        (group,) = saved[f"{name}_optimizer"]["param_groups"]
        assert group["lr"] == pytest.approx(rate * (1 - 3 / 4)), name  # step 4 of 4
    train_gan(tiny_config(tmp_path, steps=8, resume=str(half)))
    resumed = load_checkpoint(half / "latest.pt")
    for name, rate in rates.items():
        (group,) = resumed[f"{name}_optimizer"]["param_groups"]
        assert group["lr"] == pytest.approx(rate * (1 - 7 / 8)), name  # step 8 of 8


def test_resume_keeps_the_saved_network_and_refuses_a_finished_run(tmp_path: Path):
    run_dir = train_gan(tiny_config(tmp_path, steps=2))
    # The saved settings win over the command line's, except the steps (and device, progress).
    train_gan(tiny_config(tmp_path, steps=4, generator_width=8, resume=str(run_dir)))
    latest = load_checkpoint(run_dir / "latest.pt", kind="gan")
    assert latest["step"] == 4 and latest["config"]["generator_width"] == 4
    with pytest.raises(UserError, match="already at step 4"):
        train_gan(tiny_config(tmp_path, steps=4, resume=str(run_dir)))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import gan.train

    calls = {"count": 0}
    real_loss = gan.train.generator_loss

    def poisoned(fake_logits, loss="nonsaturating"):
        calls["count"] += 1
        value = real_loss(fake_logits, loss)
        return value * float("nan") if calls["count"] >= 3 else value

    monkeypatch.setattr(gan.train, "generator_loss", poisoned)
    # The loss turns NaN at step 3; it is seen at the next log step (4) and nothing is saved.
    with pytest.raises(UserError, match="losses stopped being finite between steps 2 and 4"):
        train_gan(tiny_config(tmp_path, steps=10, log_every=4))
    latest = load_checkpoint(tmp_path / "runs" / "tiny" / "latest.pt", kind="gan")
    assert latest["step"] == 2
    assert all(
        torch.isfinite(t).all() for t in latest["generator"].values() if t.is_floating_point()
    )


class InterruptAt(Logger):
    """Sends Ctrl-C to this process when the loop logs `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def scalar(self, tag: str, value: float, step: int) -> None:
        if step == self.step and tag == "losses/d_loss":
            signal.raise_signal(signal.SIGINT)


def test_ctrl_c_saves_latest_and_returns(tmp_path: Path):
    # The handler in force before (the default one, or SIG_IGN in a background job) comes back.
    handler_before = signal.getsignal(signal.SIGINT)
    run_dir = train_gan(
        tiny_config(tmp_path, steps=50, log_every=1, checkpoint_every=100), InterruptAt(3)
    )
    assert load_checkpoint(run_dir / "latest.pt", kind="gan")["step"] == 3
    assert signal.getsignal(signal.SIGINT) is handler_before


def test_impossible_settings_are_refused_up_front(tmp_path: Path):
    for overrides, message in [
        ({"image_size": 48}, "32, 64, 128"),
        ({"batch_size": 0}, "--batch-size must be positive"),
        ({"ema_decay": 1.0}, "--ema-decay"),
        ({"nesterov": True}, "--nesterov needs --momentum"),
        ({"diff_augment": "blur"}, "unknown augmentation"),
        ({"channels": 2}, "--channels 2"),
    ]:
        with pytest.raises(UserError, match=message):
            train_gan(tiny_config(tmp_path, **overrides))
    assert not (tmp_path / "runs").exists()


def test_half_precision_on_cpu_falls_back_to_fp32(tmp_path: Path, capsys: pytest.CaptureFixture):
    train_gan(tiny_config(tmp_path, steps=2, precision="bf16"))
    assert "running fp32 on cpu" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_mixed_precision_channels_last(tmp_path: Path, precision: str):
    run_dir = train_gan(
        tiny_config(tmp_path, device="cuda", precision=precision, channels_last=True, steps=4)
    )
    state = load_checkpoint(run_dir / "latest.pt", kind="gan")
    assert state["step"] == 4
    assert all(
        torch.isfinite(t).all() for t in state["generator"].values() if t.is_floating_point()
    )


# ---- sampling ------------------------------------------------------------------------------


def test_sample_writes_grid_pngs_and_walks(tmp_path: Path):
    run_dir = train_gan(tiny_config(tmp_path, steps=2))
    grid_path = sample(SampleConfig(checkpoint=str(run_dir), num_images=9, device="cpu"))
    assert grid_path == run_dir / "samples.png"
    assert Image.open(grid_path).size == (
        3 * 32 + 4 * 2,
        3 * 32 + 4 * 2,
    )  # 3 x 3 grid, 2 px padding

    folder = sample(
        SampleConfig(
            checkpoint=str(run_dir / "latest.pt"),
            output=str(tmp_path / "many"),
            num_images=5,
            grid=False,
        )
    )
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == 5 and Image.open(pngs[0]).size == (32, 32)

    gif = sample(
        SampleConfig(checkpoint=str(run_dir), output=str(tmp_path / "walk.gif"), num_images=1,
                     interpolate=True, interpolation_steps=3)
    )  # fmt: skip
    with Image.open(gif) as animation:
        assert animation.n_frames == 4 * 3  # four keyframes, three steps each, looping

    with pytest.raises(UserError, match=".gif or .mp4"):
        sample(
            SampleConfig(
                checkpoint=str(run_dir), output=str(tmp_path / "walk.png"), interpolate=True
            )
        )
    with pytest.raises(UserError, match="not found"):
        sample(SampleConfig(checkpoint=str(tmp_path / "absent.pt")))


def test_sample_refuses_a_checkpoint_of_another_kind(tmp_path: Path):
    from playground.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "dqn.pt", {"kind": "dqn"})
    with pytest.raises(UserError, match="not a 'gan' one"):
        sample(SampleConfig(checkpoint=str(tmp_path / "dqn.pt")))


def test_walk_passes_through_its_keyframes():
    from gan.sample import latent_walk

    keyframes = torch.randn(4, 2, 8)
    walk = latent_walk(keyframes, steps=5)
    assert walk.shape == (20, 2, 8)
    torch.testing.assert_close(walk[0], keyframes[0])
    torch.testing.assert_close(walk[5], keyframes[1], rtol=1e-5, atol=1e-5)


def test_config_fields_all_have_defaults():
    for field in dataclasses.fields(GanConfig):
        assert field.default is not dataclasses.MISSING, field.name
    for field in dataclasses.fields(SampleConfig):
        assert field.default is not dataclasses.MISSING, field.name


def test_rendered_digits_are_varied_labelled_and_seeded():
    from gan.data import render_digits

    images, labels = render_digits(500, seed=3)
    assert images.shape == (500, 1, 28, 28) and images.dtype == torch.uint8
    assert set(labels.tolist()) == set(range(10))
    again, again_labels = render_digits(500, seed=3)
    assert torch.equal(images, again) and torch.equal(labels, again_labels)
    assert not torch.equal(images, render_digits(500, seed=4)[0])
    ink = images.float().mean(dim=(1, 2, 3))
    assert (ink > 2).all() and (ink < 80).all()  # every one drawn (a thin 1 too), no white blob
    # No two of the same digit are alike (random warps), but the class means differ.
    ones = images[labels == 1].float()
    assert (ones[0] - ones[1]).abs().mean() > 1
    assert (images[labels == 0].float().mean(0) - ones.mean(0)).abs().mean() > 10


def test_game_frames_come_from_the_four_builtin_games():
    data = load_dataset("games", image_size=32, seed=0)
    assert data.label_names == ("Catch", "Pong", "Breakout", "Snake")
    assert data.images.shape[1:] == (3, 32, 32)
    assert torch.bincount(data.labels).tolist() == [len(data) // 4] * 4


def test_top_k_keeps_the_logits_d_finds_most_real():
    from gan.losses import top_k

    logits = torch.tensor([0.1, 3.0, -2.0, 1.5, 0.7, -0.3])
    assert torch.equal(top_k(logits, 1.0), logits)
    assert top_k(logits, 0.5).tolist() == pytest.approx([3.0, 1.5, 0.7])
    assert top_k(logits, 0.01).tolist() == [3.0]  # at least one


def test_one_sided_label_smoothing_moves_only_the_real_target():
    from gan.losses import discriminator_loss

    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    smoothed_real, smoothed_fake = discriminator_loss(real, fake, label_smoothing=0.1)
    plain_real, plain_fake = discriminator_loss(real, fake)
    expected = -(0.9 * torch.log(torch.sigmoid(real)) + 0.1 * torch.log(1 - torch.sigmoid(real)))
    assert smoothed_real.item() == pytest.approx(expected.mean().item(), rel=1e-5)
    assert smoothed_fake.item() == pytest.approx(plain_fake.item())
    assert smoothed_real.item() > plain_real.item()


# ---- the class-conditional DCGAN -----------------------------------------------------------


def test_conditional_networks_read_the_label():
    torch.manual_seed(0)
    generator = Generator(32, 1, latent_size=8, width=4, num_classes=3).eval()
    discriminator = Discriminator(32, 1, width=4, num_classes=3).eval()
    noise = torch.randn(6, 8)
    with torch.no_grad():
        zeros = generator(noise, torch.zeros(6, dtype=torch.int64))
        twos = generator(noise, torch.full((6,), 2))
        # Without labels the classes come in turn: 0, 1, 2, 0, 1, 2.
        balanced = generator(noise)
        in_turn = generator(noise, torch.tensor([0, 1, 2, 0, 1, 2]))
        images = zeros
        logits_zero = discriminator(images, torch.zeros(6, dtype=torch.int64))
        logits_two = discriminator(images, torch.full((6,), 2))
    assert zeros.shape == (6, 1, 32, 32)
    assert not torch.allclose(zeros, twos)  # the same noise, another class: another image
    assert torch.equal(balanced, in_turn)
    assert logits_zero.shape == (6,) and not torch.allclose(logits_zero, logits_two)
    with pytest.raises(ValueError, match="needs the images' labels"):
        discriminator(images)


def test_conditional_run_draws_the_class_asked_for(tmp_path: Path):
    run_dir = train_gan(tiny_config(tmp_path, conditional=True, num_samples=8))
    latest = load_checkpoint(run_dir / "latest.pt", kind="gan")
    assert latest["architecture"]["num_classes"] == 4  # the tiny set's labels 0-3
    assert latest["discriminator"]["net.0.weight"].shape[1] == 1 + 4  # image + label planes
    grid = sample(
        SampleConfig(checkpoint=str(run_dir), output=str(tmp_path / "all.png"), num_images=8)
    )
    # Every class in turn, one per column: 4 columns, 2 rows.
    assert Image.open(grid).size == (4 * 32 + 5 * 2, 2 * 32 + 3 * 2)
    threes = sample(
        SampleConfig(
            checkpoint=str(run_dir), output=str(tmp_path / "threes"), num_images=3, label=3,
            grid=False,
        )
    )  # fmt: skip
    assert len(list(threes.glob("*.png"))) == 3
    with pytest.raises(UserError, match="classes 0 to 3"):
        sample(SampleConfig(checkpoint=str(run_dir), output=str(tmp_path / "x.png"), label=4))
    # Resuming rebuilds the same conditional networks from the saved settings.
    resumed = train_gan(GanConfig(resume=str(run_dir), steps=8, progress=False, device="cpu"))
    assert load_checkpoint(resumed / "latest.pt", kind="gan")["step"] == 8


def test_conditional_needs_labels_and_unconditional_refuses_a_label(tmp_path: Path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for index in range(4):
        Image.fromarray(np.full((20, 20), 60 * index, np.uint8)).save(folder / f"{index}.png")
    with pytest.raises(UserError, match="--conditional needs a labelled data set"):
        train_gan(tiny_config(tmp_path, dataset=f"folder:{folder}", conditional=True))
    assert not (tmp_path / "runs" / "tiny").exists()  # refused before a run folder was made
    run_dir = train_gan(tiny_config(tmp_path, steps=2, run_name="plain"))
    with pytest.raises(UserError, match="unconditional generator"):
        sample(SampleConfig(checkpoint=str(run_dir), label=1))


def test_a_checkpoint_from_before_conditioning_resumes_and_samples(tmp_path: Path):
    from playground.checkpoint import save_checkpoint

    run_dir = train_gan(tiny_config(tmp_path, steps=2, checkpoint_every=2))
    state = load_checkpoint(run_dir / "latest.pt", kind="gan")
    # As written before --conditional existed: no num_classes, no conditional setting.
    del state["architecture"]["num_classes"], state["config"]["conditional"]
    save_checkpoint(run_dir / "latest.pt", state)
    (run_dir / "best.pt").unlink()
    assert sample(SampleConfig(checkpoint=str(run_dir), num_images=4, device="cpu")).is_file()
    train_gan(GanConfig(resume=str(run_dir), steps=4, progress=False, device="cpu"))
    assert load_checkpoint(run_dir / "latest.pt", kind="gan")["step"] == 4
