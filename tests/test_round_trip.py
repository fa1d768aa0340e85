"""Every knob that shapes a network survives the whole round trip: train a few steps with it,
then evaluate, watch --headless, --init-from and --resume (DQN); train, sample and resume
(DCGAN). A checkpoint that does not fit its network is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agents.checkpoint import load_dqn_checkpoint, network_from_checkpoint
from agents.config import DQNConfig, EvaluateConfig
from agents.dqn import train_dqn
from agents.evaluate import evaluate
from gan.config import GanConfig, SampleConfig
from gan.sample import sample
from gan.train import train_gan
from playground.checkpoint import save_checkpoint
from playground.errors import UserError
from viewer.config import WatchConfig
from viewer.window import watch

CATCH = "Playground/Catch-v0"

# Each knob that changes the Q-network's shape or layers, with settings small frames can take.
DQN_KNOBS = {
    "nature-batch-norm": dict(encoder="nature", frame_size=44, batch_norm=True),
    "nature-same-padding-xavier": dict(
        encoder="nature", frame_size=44, encoder_padding="same", weight_init="xavier"
    ),
    "resnet-batch-norm": dict(encoder="resnet", frame_size=16, batch_norm=True),
    "densenet-batch-norm-dropout": dict(
        encoder="densenet", frame_size=16, batch_norm=True, dropout=0.1
    ),
    "vgg-width-dropout": dict(encoder="vgg", frame_size=12, encoder_width=8, dropout=0.2),
    "inception-dueling": dict(encoder="inception", frame_size=16, dueling=True),
    "mlp-width": dict(encoder="mlp", frame_size=8, encoder_width=32),
    "frame-stack-2": dict(encoder="vgg", frame_size=12, frame_stack=2, encoder_width=8),
    "c51-dueling-noisy": dict(
        encoder="vgg", frame_size=12, encoder_width=8, distributional="c51", atoms=21,
        v_min=-2.0, v_max=2.0, dueling=True, noisy=True,
    ),
    "spr-c51-augment": dict(
        encoder="vgg", frame_size=12, encoder_width=8, spr_weight=2.0, spr_steps=3,
        distributional="c51", augment=True, prioritized=True, renormalize=True,
    ),
    # Not a shape: the weights that play are an average kept beside the online ones.
    "policy-ema": dict(encoder="vgg", frame_size=12, encoder_width=8, policy_ema=0.1),
    "qr-schedules-resets": dict(
        encoder="mlp", frame_size=8, distributional="qr", atoms=16, n_step=4, n_step_end=2,
        gamma_end=0.995, schedule_updates=10, reset_every=15,
    ),
}  # fmt: skip


def small_run(tmp_path: Path, name: str, **knobs: object) -> DQNConfig:
    settings = dict(
        env_id=CATCH, preset="none", total_steps=120, learning_starts=40, buffer_size=500,
        batch_size=8, target_update_frequency=20, eval_every=0, checkpoint_every=60,
        log_every=30, runs_dir=str(tmp_path), run_name=name, device="cpu", progress=False,
        eval_video=False,
    )  # fmt: skip
    settings.update(knobs)
    return DQNConfig(**settings)


@pytest.mark.parametrize("knob", list(DQN_KNOBS))
def test_a_dqn_knob_survives_evaluate_watch_init_from_and_resume(knob: str, tmp_path: Path) -> None:
    knobs = DQN_KNOBS[knob]
    run_dir = train_dqn(small_run(tmp_path, "first", **knobs))
    checkpoint = load_dqn_checkpoint(run_dir / "latest.pt")
    shape_settings = ("batch_norm", "dropout", "dueling", "noisy", "atoms", "v_min", "v_max")
    for setting in (*shape_settings, "renormalize"):
        expected = knobs.get(setting, DQNConfig.__dataclass_fields__[setting].default)
        assert checkpoint["network"][setting] == expected
    head = {"none": "expected", "c51": "c51", "qr": "qr"}[knobs.get("distributional", "none")]
    assert checkpoint["network"]["head"] == head
    assert checkpoint["network"]["spr"] == (knobs.get("spr_weight", 0) > 0)
    assert checkpoint["network"]["padding"] == knobs.get("encoder_padding", "valid")
    assert checkpoint["network"]["init"] == knobs.get("weight_init", "torch")
    # The rebuilt network is the trained one: same weights, same outputs.
    network = network_from_checkpoint(checkpoint)
    assert not network.training
    assert set(network.state_dict()) == set(checkpoint["q_network"])

    result = evaluate(EvaluateConfig(checkpoint=str(run_dir), episodes=2, device="cpu"))
    assert result["episodes"] == 2
    gif = tmp_path / "watch.gif"
    watch(WatchConfig(checkpoint=str(run_dir), headless=True, max_steps=3, record=str(gif)))
    assert gif.stat().st_size > 0

    transferred = train_dqn(small_run(tmp_path, "second", init_from=str(run_dir), **knobs))
    copied = load_dqn_checkpoint(transferred / "latest.pt")
    assert copied["network"] == checkpoint["network"]

    resumed = train_dqn(DQNConfig(resume=str(run_dir), total_steps=180, progress=False))
    assert load_dqn_checkpoint(resumed / "latest.pt")["step"] == 180


def test_an_old_checkpoint_without_the_shape_settings_in_its_spec_still_loads(
    tmp_path: Path,
) -> None:
    run_dir = train_dqn(small_run(tmp_path, "old", **DQN_KNOBS["resnet-batch-norm"]))
    checkpoint = load_dqn_checkpoint(run_dir / "latest.pt")
    for key in ("batch_norm", "dropout"):
        del checkpoint["network"][key]  # as checkpoints before 2026-12-01 were written
    old = tmp_path / "old.pt"
    save_checkpoint(old, checkpoint)
    result = evaluate(EvaluateConfig(checkpoint=str(old), episodes=1, device="cpu"))
    assert result["episodes"] == 1


def test_weights_that_do_not_fit_their_network_are_one_line(tmp_path: Path) -> None:
    run_dir = train_dqn(small_run(tmp_path, "misfit", **DQN_KNOBS["vgg-width-dropout"]))
    checkpoint = load_dqn_checkpoint(run_dir / "latest.pt")
    checkpoint["network"]["width"] = 16  # says another width than its weights have
    broken = tmp_path / "broken.pt"
    save_checkpoint(broken, checkpoint)
    with pytest.raises(UserError, match="do not fit") as caught:
        evaluate(EvaluateConfig(checkpoint=str(broken), episodes=1, device="cpu"))
    assert "\n" not in str(caught.value)
    with pytest.raises(UserError, match="do not fit"):
        watch(WatchConfig(checkpoint=str(broken), headless=True, max_steps=1))


# Each GAN knob that shapes the generator or the discriminator.
GAN_KNOBS = {
    "widths-latent": dict(generator_width=8, discriminator_width=8, latent_size=16),
    "spectral-norm": dict(generator_width=8, discriminator_width=8, spectral_norm=True),
    "image-64": dict(generator_width=4, discriminator_width=4, image_size=64),
    "conditional": dict(generator_width=8, discriminator_width=8, conditional=True),
    "no-batch-norm-dropout": dict(
        generator_width=8, discriminator_width=8, batch_norm=False, dropout=0.2
    ),
}


@pytest.mark.parametrize("knob", list(GAN_KNOBS))
def test_a_gan_knob_survives_sample_and_resume(knob: str, tmp_path: Path) -> None:
    settings = dict(
        dataset="fake", preset="none", steps=4, batch_size=8, metric_every=0, sample_every=0,
        checkpoint_every=2, log_every=2, runs_dir=str(tmp_path), run_name="gan", device="cpu",
        progress=False, ema_decay=0.9,
    )  # fmt: skip
    if GAN_KNOBS[knob].get("conditional"):
        settings["dataset"] = "games"
    run_dir = train_gan(GanConfig(**{**settings, **GAN_KNOBS[knob]}))
    grid = tmp_path / "grid.png"
    sample(SampleConfig(checkpoint=str(run_dir), output=str(grid), num_images=4, device="cpu"))
    assert grid.stat().st_size > 0
    resumed = train_gan(GanConfig(resume=str(run_dir), steps=6, progress=False))
    state = torch.load(resumed / "latest.pt", weights_only=True)
    assert state["step"] == 6
