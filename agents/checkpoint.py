"""DQN checkpoints: what one holds, how its network is rebuilt, and the replay buffer saved
beside it so a resumed run continues exactly.

A DQN checkpoint is one plain dict: `kind` "dqn", `config` (the settings), `network` (how to
rebuild the Q-network), `q_network`, `target_network`, `optimizer`, `step`, `updates`,
`best_eval`, `rng` and `replay_step` (the step of the replay.pt saved with it, or -1); with
--policy-ema also `policy_network`, the averaged weights that play (`playing_weights`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from agents.config import DQNConfig, env_options
from agents.networks import QNetwork, build_q_network
from agents.replay import ReplayBuffer
from envs import make_env
from playground.checkpoint import load_checkpoint, save_checkpoint
from playground.errors import UserError
from playground.resume import settings_from_saved

CHECKPOINT_KIND = "dqn"
# Entries --resume needs; a checkpoint lacking one is refused with its name.
RESUME_KEYS = (
    "config", "q_network", "target_network", "optimizer", "step", "updates", "best_eval", "rng"
)  # fmt: skip
POLICY_WEIGHTS = "policy_network"  # --policy-ema's average of the online weights
REPLAY = "replay.pt"
PREVIOUS_REPLAY = "replay.previous.pt"
REPLAY_AUTO_LIMIT = 2 * 1024**3  # --save-replay auto saves buffers up to this size


def load_dqn_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a DQN checkpoint (a file, or a run folder: its best.pt, else latest.pt)."""
    return load_checkpoint(path, kind=CHECKPOINT_KIND, map_location=map_location)


def network_spec(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Everything that shapes the checkpoint's Q-network. Checkpoints from before a setting was
    saved in the spec (batch_norm, dropout, width) read it from the saved settings."""
    spec = dict(checkpoint["network"])
    settings = checkpoint.get("config", {})
    spec.setdefault("width", settings.get("encoder_width", 0))
    spec.setdefault("batch_norm", bool(settings.get("batch_norm", False)))
    spec.setdefault("dropout", float(settings.get("dropout", 0.0)))
    return spec


HEAD_KINDS = {"none": "expected", "c51": "c51", "qr": "qr"}  # --distributional -> head kind


def spec_for(
    cfg: DQNConfig, observation_shape: tuple[int, ...], num_actions: int
) -> dict[str, Any]:
    """The network a run with these settings trains, as its checkpoints describe it: the one
    description the learner, the Ape-X actors, `evaluate`, `watch` and the viewer build from."""
    pixels = len(observation_shape) == 3
    return {
        "observation_shape": list(observation_shape),
        "num_actions": num_actions,
        "encoder": cfg.encoder if cfg.encoder != "auto" else ("nature" if pixels else "mlp"),
        "dueling": cfg.dueling,
        "width": cfg.encoder_width,
        "batch_norm": cfg.batch_norm,
        "dropout": cfg.dropout,
        "renormalize": cfg.renormalize,
        "padding": cfg.encoder_padding,
        "init": cfg.weight_init,
        "head": HEAD_KINDS[cfg.distributional],
        "atoms": cfg.atoms,
        "v_min": cfg.v_min,
        "v_max": cfg.v_max,
        "noisy": cfg.noisy,
        "spr": cfg.spr_weight > 0,
    }


def build_from_spec(spec: dict[str, Any]) -> QNetwork:
    """A fresh Q-network of the shape `spec` (a checkpoint's `network` entry) describes
    (entries a checkpoint from before them lacks take their defaults)."""
    return build_q_network(
        tuple(spec["observation_shape"]),
        spec["num_actions"],
        spec["encoder"],
        spec["dueling"],
        spec.get("width", 0),
        batch_norm=spec.get("batch_norm", False),
        dropout=spec.get("dropout", 0.0),
        renormalize=spec.get("renormalize", False),
        padding=spec.get("padding", "valid"),
        init=spec.get("init", "torch"),
        head=spec.get("head", "expected"),
        atoms=spec.get("atoms", 0),
        noisy=spec.get("noisy", False),
        v_min=spec.get("v_min", -10.0),
        v_max=spec.get("v_max", 10.0),
        spr=spec.get("spr", False),
    )


def load_weights(network: torch.nn.Module, weights: dict[str, Any], source: str | Path) -> None:
    """`network.load_state_dict(weights)`, or one line saying the checkpoint does not fit."""
    try:
        network.load_state_dict(weights)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        raise UserError(
            f"{source}: its weights do not fit the network its settings describe ({first_line}); "
            "was it written by another version of the playground?"
        ) from None


def playing_weights(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The weights a trained agent plays with: --policy-ema's average when the run kept one,
    else the online network's."""
    averaged = checkpoint.get(POLICY_WEIGHTS)
    return checkpoint["q_network"] if averaged is None else averaged


def network_from_checkpoint(
    checkpoint: dict[str, Any], source: str | Path = "the checkpoint"
) -> QNetwork:
    """Rebuild the Q-network a DQN checkpoint plays with (`playing_weights`), in eval mode
    (batch norm's running statistics, no dropout: how a trained agent plays)."""
    network = build_from_spec(network_spec(checkpoint))
    load_weights(network, playing_weights(checkpoint), source)
    return network.eval()


def config_from_checkpoint(checkpoint: dict[str, Any], **overrides: Any) -> DQNConfig:
    """The DQNConfig a checkpoint was trained with (fields unknown to this version are ignored)."""
    return settings_from_saved(DQNConfig, checkpoint["config"], **overrides)


def check_same_game(checkpoint: dict[str, Any], env_id: str) -> None:
    """Refuse to play a checkpoint on a game whose observations or actions differ from its own."""
    spec = checkpoint["network"]
    trained = config_from_checkpoint(checkpoint)
    env = make_env(env_id, seed=0, **env_options(trained))
    try:
        shape = tuple(env.observation_space.shape)
        actions = int(env.action_space.n)
    finally:
        env.close()
    if shape != tuple(spec["observation_shape"]) or actions != spec["num_actions"]:
        raise UserError(
            f"the checkpoint was trained on {trained.env_id} (observations "
            f"{tuple(spec['observation_shape'])}, {spec['num_actions']} actions); {env_id} has "
            f"observations {shape} and {actions} actions"
        )


def load_encoder(
    q_network: QNetwork, source: str, encoder_name: str, observation_shape: tuple[int, ...]
) -> None:
    """Copy the encoder of another run's checkpoint into `q_network` (--init-from)."""
    checkpoint = load_dqn_checkpoint(source)
    spec = checkpoint["network"]
    if spec["encoder"] != encoder_name or tuple(spec["observation_shape"]) != observation_shape:
        raise UserError(
            f"--init-from {source}: its encoder is {spec['encoder']} on observations "
            f"{tuple(spec['observation_shape'])}, this run needs {encoder_name} on "
            f"{observation_shape}"
        )
    prefix = "encoder."
    weights = {
        key[len(prefix) :]: value
        for key, value in checkpoint["q_network"].items()
        if key.startswith(prefix)
    }
    try:
        q_network.encoder.load_state_dict(weights)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        raise UserError(f"--init-from {source}: its encoder does not fit ({first_line})") from None


# ----------------------------------------------------------------------------- replay.pt


def should_save_replay(save_replay: str, replay: ReplayBuffer) -> bool:
    """--save-replay: always, never, or auto (buffers up to 2 GiB)."""
    if save_replay == "never":
        return False
    if save_replay == "always":
        return True
    return replay.nbytes <= REPLAY_AUTO_LIMIT


def save_replay(run_dir: Path, replay: ReplayBuffer, step: int) -> None:
    """Write replay.pt for the checkpoint of `step`, keeping the one the current latest.pt
    points at (as replay.previous.pt) until `replay_saved` is called after latest.pt is
    replaced, so a kill between the two saves still resumes with a matching buffer."""
    path, previous = run_dir / REPLAY, run_dir / PREVIOUS_REPLAY
    if path.is_file():
        path.replace(previous)
    save_checkpoint(path, {"kind": "replay", "step": step, **replay.state_dict()})


def replay_saved(run_dir: Path) -> None:
    """The new latest.pt is in place: the buffer of the one before is no longer needed."""
    (run_dir / PREVIOUS_REPLAY).unlink(missing_ok=True)


def load_replay(replay: ReplayBuffer, run_dir: Path, step: int) -> bool:
    """Restore the replay buffer saved with the checkpoint of `step` (replay.pt, or
    replay.previous.pt when a run was killed between saving the two); False when neither is."""
    for name in (REPLAY, PREVIOUS_REPLAY):
        path = run_dir / name
        if not path.is_file():
            continue
        try:
            state = load_checkpoint(path, kind="replay", map_location=replay.device)
        except UserError:
            continue
        if state.get("step", step) == step:  # files of older versions carry no step
            replay.load_state_dict(state)
            return True
    return False
