"""The settings of `train-dqn`: one frozen dataclass (tyro makes it the command line, each
field's docstring its `--help`), and `validate`, which refuses impossible combinations with
one line each. Importing this module loads no game, network or GUI code.

Defaults reproduce the Nature / CleanRL Atari setup: Adam 1e-4, replay 1M, batch 32, one update
per 4 env steps, target copy every 1,000 steps, epsilon 1 -> 0.01 over 10% of training,
learning starts at 80,000 steps, rewards clipped to their sign, life loss ends an episode for
learning only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

import tyro

from playground.errors import check
from playground.optim import CAPTURABLE_OPTIMIZERS, OptimizerName, check_optimizer
from playground.resume import resume_help
from playground.settings import (
    InputPath,
    Needs,
    NonNegativeFloat,
    NonNegativeInt,
    OutputFolder,
    Port,
    PositiveFloat,
    PositiveInt,
    Seed,
    UnitFloat,
    at_least,
    between,
    check_settings,
)

# Settings a resumed run may change: none of them changes what is learned.
RESUME_OVERRIDABLE = (
    "total_steps", "device", "progress", "watch", "watch_host", "watch_port", "compile",
    "cuda_graph", "final_eval_episodes", "eval_envs",
)  # fmt: skip
ResumeFolder = Annotated[str, tyro.conf.arg(help=resume_help(RESUME_OVERRIDABLE), metavar="RUN")]

Fraction = between(float, 0, 1, high_open=True)  # dropout, momentum: [0, 1)
Rate = between(float, 0, 1, low_open=True)  # tau, the Ape-X epsilon base: (0, 1]
Noise = between(float, 0, 0.5, high_open=True)  # --intensity-noise: [0, 0.5)
Support = between(float, -1e6, 1e6)  # --v-min, --v-max: finite returns

EncoderName = Literal["auto", "nature", "resnet", "impala", "vgg", "inception", "densenet", "mlp"]
ENCODERS: tuple[str, ...] = get_args(EncoderName)
PaddingName = Literal["valid", "same"]
PADDINGS: tuple[str, ...] = get_args(PaddingName)  # --encoder-padding
InitName = Literal["torch", "xavier"]
INITS: tuple[str, ...] = get_args(InitName)  # --weight-init


@dataclass(frozen=True)
class DQNConfig:
    """Train a DQN agent on an Atari, built-in or vector-observation game."""

    env_id: str = "ALE/Breakout-v5"
    """Game to learn: an ALE id (ALE/Pong-v5, ...), a built-in game (Playground/Catch-v0, ...)
    or a vector-observation gymnasium id (CartPole-v1)."""
    preset: str = "auto"
    """Settings made for a game, under the flags given here: auto (the one --env-id picks),
    none (the defaults shown by --help without --env-id), or a name: atari, atari-100k, catch,
    pong, breakout, snake, classic-control (the README has the table)."""
    total_steps: Annotated[PositiveInt, tyro.conf.arg(aliases=("--steps",))] = 10_000_000
    """Environment steps to train for (summed over all parallel envs); --steps, as train-gan
    names it, works too."""
    num_envs: PositiveInt = 1
    """Environments stepped together in one vector env."""
    seed: Seed = 1
    """Seed for the environments, the network initialisation and exploration."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N | mps (auto picks the best available)."""

    # Network
    encoder: EncoderName = "auto"
    """Observation encoder: nature (the Nature DQN CNN: 8x8/4, 4x4/2, 3x3); resnet (residual
    stacks, as IMPALA's; impala is the same); vgg (stacks of 3x3, suits small frames); inception
    (parallel 1x1 / 3x3 / 5x5 / pool branches); densenet (dense blocks, transitions); mlp
    (vectors, or flattened pixels); auto: nature for pixels, mlp for vectors."""
    encoder_width: NonNegativeInt = 0
    """Channels of the CNN encoder's first layer, later layers scale with it (0: the
    encoder's own: nature 32, resnet 16, vgg 32, inception 16, densenet 12 growth); for mlp
    the units of its two hidden layers (0: 128)."""
    encoder_padding: PaddingName = "valid"
    """The nature encoder's padding: valid (none: the Nature DQN's and the PyTorch ports', a 64
    x 7 x 7 latent on 84 x 84 frames) or same (TensorFlow's and Flax's default, as Dopamine's
    DrQ(eps) and SPR networks run it: 64 x 11 x 11, 2.5x the features into the linear layer)."""
    weight_init: InitName = "torch"
    """Initial weights: torch (PyTorch's default, uniform in +-1/sqrt(fan_in), biases too) or
    xavier (Glorot-uniform weights and zero biases, as Dopamine's DrQ(eps) and SPR networks)."""
    batch_norm: bool = False
    """Batch norm after every convolution of the encoder (the target network, acting and
    evaluation use its running statistics)."""
    dropout: Fraction = 0.0
    """Dropout on the encoder's features during updates (off when acting and evaluating)."""
    renormalize: bool = False
    """Rescale a pixel encoder's spatial latent to [0, 1] per observation (min-max, as SPR,
    BBF and MuZero do), for the Q-values and for SPR's transition model, whose every step is
    rescaled the same way."""
    weight_decay: NonNegativeFloat = 0.0
    """Weight decay; with adam it is decoupled (AdamW), with the others added to the gradient."""
    dueling: bool = False
    """Use a dueling head (V + A - mean A)."""
    distributional: Literal["none", "c51", "qr"] = "none"
    """Learn each action's distribution of returns instead of its mean: c51 (Bellemare et al.
    2017: probabilities on --atoms fixed values from --v-min to --v-max, a cross-entropy loss)
    or qr (QR-DQN, Dabney et al. 2018: --atoms quantiles, the quantile Huber loss). Acting, the
    evaluation and the viewer use the distribution's mean; --loss applies to none only."""
    atoms: NonNegativeInt = 0
    """Atoms of the distribution (0: the paper's, 51 for c51, 200 for qr)."""
    v_min: Support = -10.0
    """With --distributional c51: the lowest return of the support (clipped rewards: -10)."""
    v_max: Support = 10.0
    """With --distributional c51: the highest return of the support."""
    noisy: bool = False
    """Noisy nets (Fortunato et al. 2018): the head's layers and the encoder's last linear layer
    get learned factorised Gaussian noise, drawn afresh at every step and update; it does the
    exploring, so epsilon is 0 from --learning-starts on (the warm-up before it plays at
    random). Evaluation and `watch` play the noise's mean."""
    frame_stack: PositiveInt = 4
    """Frames stacked into one observation for pixel games."""
    frame_size: PositiveInt = 84
    """Side of the square grayscale frames of pixel games (84 as in the Nature DQN)."""
    sticky_actions: Literal["auto", "on", "off"] = "auto"
    """ALE games: auto (as the id registers it: ALE/...-v5 repeats the last action with
    probability 0.25, ...NoFrameskip-v4 never), on (0.25, Machado et al. 2018), off (the Atari
    100k protocol). Training, evaluation and the viewer all play with it."""
    max_episode_frames: PositiveInt = 108_000
    """ALE games: an episode is cut (truncated) after this many emulator frames (108,000 = 30
    minutes of play = 27,000 agent steps, the field's cap)."""
    noop_max: NonNegativeInt = 30
    """ALE games: each game starts after a random 0 to this many no-op frames (30: the Nature
    DQN's and the PyTorch libraries' start, and that of Dopamine's and SPR's Atari 100k runs; 0: the
    ALE's own reset, where every game without sticky actions starts the same)."""
    fire_reset: bool = True
    """ALE games that have FIRE: press it at each game's start (SB3's FireResetEnv; games such
    as Breakout wait for it). --no-fire-reset leaves the serve to the agent, as Dopamine does."""
    life_loss_clears_stack: bool = False
    """ALE games: after a lost life the frame stack starts anew (the frames from before it
    zeroed), as Dopamine's agents begin each life as an episode; playing, learning (the replay
    rebuilds the same stacks), evaluation and the viewer alike."""

    # Learning
    learning_rate: PositiveFloat = 1e-4
    """Optimizer learning rate."""
    learning_rate_decay: Literal["none", "linear"] = "none"
    """none, or linear: the learning rate falls linearly to a tenth of itself at --total-steps
    (a steadier policy at the end of a fixed budget)."""
    optimizer: OptimizerName = "adam"
    """Optimizer."""
    adam_eps: PositiveFloat = 1e-8
    """Epsilon of adam / rmsprop / adagrad / adadelta (Nature RMSProp used 0.01)."""
    momentum: Fraction = 0.0
    """Momentum for sgd and rmsprop."""
    nesterov: bool = False
    """Nesterov momentum for sgd."""
    gamma: UnitFloat = 0.99
    """Discount factor."""
    n_step: PositiveInt = 1
    """Steps of reward summed into the TD target (n-step returns)."""
    n_step_end: NonNegativeInt = 0
    """Anneal n from --n-step to this over --schedule-updates updates (BBF: 10 -> 3), again
    after every reset; 0: n stays --n-step."""
    gamma_end: UnitFloat = 0.0
    """Anneal the discount from --gamma to this over --schedule-updates updates (BBF: 0.97 ->
    0.997; 1 - gamma moves geometrically), again after every reset; 0: gamma stays."""
    schedule_updates: PositiveInt = 10_000
    """Updates over which --n-step-end and --gamma-end are reached (n and 1 - gamma move
    geometrically, as in BBF)."""
    reset_every: NonNegativeInt = 0
    """Shrink-and-perturb resets every this many updates (Nikishin et al. 2022, D'Oro et al.
    2023, BBF): the head is re-initialised, the encoder moved to --reset-shrink x itself +
    (1 - --reset-shrink) x a fresh initialisation, the optimizer's state cleared; 0: never."""
    spr_weight: NonNegativeFloat = 0.0
    """SPR's self-predictive loss (Schwarzer et al. 2021) beside the TD loss, with this weight
    (SPR: 2, BBF: 5; 0 off): a transition model predicts the encoder's latents --spr-steps
    ahead from the actions taken, matched (cosine) to the target network's projections of the
    frames seen then. Pixel encoders only."""
    spr_steps: PositiveInt = 5
    """With --spr-weight: steps predicted ahead (SPR and BBF: 5)."""
    reset_shrink: UnitFloat = 0.5
    """With --reset-every: how much of the encoder's weights a reset keeps (BBF: 0.5; 0 resets
    it fully, 1 leaves it)."""
    double_dqn: bool = True
    """Pick the next action with the online network, evaluate it with the target (van Hasselt 2016)."""
    loss: Literal["huber", "mse"] = "huber"
    """TD loss: huber (smooth L1, the Nature error clipping) or mse (CleanRL)."""
    max_grad_norm: NonNegativeFloat = 10.0
    """Clip the gradient norm to this value (0 disables)."""
    batch_size: PositiveInt = 32
    """Transitions per update."""
    buffer_size: PositiveInt = 1_000_000
    """Replay capacity in transitions (each frame is stored once, uint8)."""
    prioritized: bool = False
    """Prioritized replay (Schaul et al. 2016, proportional): draw transitions by |TD error|,
    correct with importance weights."""
    priority_alpha: UnitFloat = 0.6
    """With --prioritized: how much priorities count (0 uniform, 1 fully proportional)."""
    priority_beta: UnitFloat = 0.4
    """With --prioritized: the importance-weight exponent at the start, annealed to 1."""
    replay_device: Literal["auto", "cpu", "same"] = "auto"
    """Where the replay buffer lives: same = the training device; auto = the training device
    when it has room for it, else cpu."""
    learning_starts: NonNegativeInt = 80_000
    """Environment steps of random-ish play before learning starts."""
    train_frequency: PositiveInt = 4
    """Environment steps per round of updates (the replay ratio is --gradient-steps / this)."""
    gradient_steps: PositiveInt = 1
    """Updates made together every --train-frequency env steps (SB3's gradient_steps: RL Zoo
    collects 256 CartPole steps, then makes 128 updates)."""
    target_update_frequency: PositiveInt = 1_000
    """Environment steps between target network updates."""
    tau: Rate = 1.0
    """Target update rate: 1.0 copies the weights, < 1 is Polyak averaging (an EMA target: with
    --target-update-frequency 1 and --train-frequency 1, BBF's is --tau 0.005)."""
    policy_ema: Fraction = 0.0
    """Score and show the agent with an average of its recent weights (0: off, the online
    network plays): after every update a copy of the online network moves this far towards
    it (Polyak averaging of the iterates; 0.0001 averages over about the last 10,000 updates).
    The evaluations, the final games, best.pt, `evaluate`, `watch` and the viewer play the
    average; the training games are still played by the online network, which learns as
    before."""
    start_epsilon: UnitFloat = 1.0
    """Exploration epsilon at the start."""
    end_epsilon: UnitFloat = 0.01
    """Exploration epsilon after the decay."""
    exploration_fraction: UnitFloat = 0.10
    """Fraction of total_steps over which epsilon decays linearly (unless --exploration-steps)."""
    exploration_steps: NonNegativeInt = 0
    """Steps over which epsilon decays linearly (0: --exploration-fraction of --total-steps)."""
    exploration_after_warmup: bool = False
    """Start the epsilon decay at --learning-starts, after the random warm-up (Dopamine's
    schedule), instead of at step 0 (Nature DQN, CleanRL)."""
    clip_rewards: bool = True
    """Clip rewards to their sign for learning (logged returns are always the true score)."""
    life_loss_terminal: bool = True
    """Treat a lost life as the end of an episode for learning (Atari); the game goes on."""
    augment: bool = False
    """Random-shift image augmentation (DrQ): sampled frames padded by 4 pixels (edge
    replicated) and cropped back at a random offset."""
    intensity_noise: Noise = 0.0
    """DrQ's intensity augmentation: each sampled observation multiplied by
    1 + s * clip(N(0, 1), -2, 2) for this s (0 off; DrQ(eps) uses 0.05)."""
    symmetry_augment: bool = False
    """Learn each sampled transition as seen through one of the game's symmetries, drawn at
    random (Snake: the board's 4 turns and their mirror images, the action turned with it);
    only for built-in games that declare symmetries."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """bf16 autocast for the network, on CUDA and on CPUs with bf16 instructions (AVX-512 BF16,
    AMX; elsewhere a note says it runs fp32)."""
    compile: bool = False
    """torch.compile the update (fused kernels; the first update compiles for a minute or so)."""
    cuda_graph: bool = False
    """On CUDA, capture the whole update, replay sampling included, as one CUDA graph replayed
    once per update (ignored on the CPU; adagrad cannot be captured)."""

    # Beyond one process: Ape-X-style actors on Ray (agents/apex.py)
    actors: NonNegativeInt = 0
    """Actor processes (Ray actors) that play and send transitions to this learner (0: one
    process, the loop above)."""
    envs_per_actor: PositiveInt = 1
    """Environments in each actor's vector env (each one a lane of the replay buffer)."""
    actor_epsilon: Rate = 0.4
    """The Ape-X ladder's base: actor i explores with eps ** (1 + alpha * i / (N - 1))."""
    actor_alpha: NonNegativeFloat = 7.0
    """The Ape-X ladder's exponent alpha."""
    chunk_steps: PositiveInt = 50
    """Steps each actor plays per round before sending them."""
    weight_sync_every: PositiveInt = 100
    """Updates between sending fresh weights to the actors (through Ray's object store)."""
    replay_ratio: Literal["fixed", "free"] = "fixed"
    """fixed: one update per --train-frequency env steps over all actors (actors wait for the
    learner); free: both run flat out, as in Ape-X, and the resulting ratio is logged."""
    ray_address: str = ""
    """Join a running Ray cluster (auto, or HOST:PORT); empty: start a local Ray on 127.0.0.1."""
    actor_resource: str = ""
    """A Ray custom resource each actor needs (places the actors on the nodes that offer it)."""

    # Transfer learning
    init_from: InputPath = ""
    """Start from the encoder of another DQN checkpoint (file or run dir)."""
    freeze_encoder: bool = False
    """With --init-from: keep the loaded encoder fixed and train only the head."""

    # Evaluation, logging, checkpoints
    eval_every: NonNegativeInt = 100_000
    """Environment steps between evaluations (0 disables)."""
    eval_episodes: PositiveInt = 10
    """Full games per evaluation."""
    eval_epsilon: UnitFloat = 0.001
    """Epsilon of the evaluation policy."""
    eval_envs: PositiveInt = 16
    """Games played at once in an evaluation (a vector env; each plays its share of the games
    to the end, so long games count as much as short ones)."""
    final_eval_episodes: NonNegativeInt = 0
    """Full games of one more evaluation at the end of training, logged as eval/final_return
    (0: none; the Atari 100k protocol plays 100)."""
    checkpoint_every: PositiveInt = 100_000
    """Environment steps between saves of latest.pt."""
    save_replay: Literal["auto", "always", "never"] = "auto"
    """Save the replay buffer beside latest.pt so --resume continues exactly; auto saves it when
    it takes at most 2 GiB."""
    log_every: PositiveInt = 1_000
    """Environment steps between logged training scalars (losses, sps, epsilon)."""
    eval_video: bool = True
    """Log one evaluation game as a video (eval/video in TensorBoard) at every evaluation."""
    watch: Literal["none", "window", "web"] = "none"
    """Watch the agent play with its latest weights while it trains, in a window or a web page
    with the training curves (a separate process, the weights refreshed every few seconds)."""
    watch_host: str = "127.0.0.1"
    """With --watch web: the address to serve on; beyond loopback the printed token is needed."""
    watch_port: Port = 8765
    """With --watch web: the port to serve on."""
    runs_dir: OutputFolder = "runs"
    """Folder holding one sub-folder per run."""
    run_name: str = ""
    """Name of this run's folder (default: dqn-<game>-s<seed>-<time>)."""
    resume: ResumeFolder = ""
    progress: bool = True
    """Show a progress bar."""


def validate(cfg: DQNConfig) -> None:
    """Refuse impossible settings with one clear line each: every field outside the range its
    type declares, then the combinations that cannot work."""
    check_settings(cfg)
    check(
        cfg.buffer_size >= cfg.batch_size,
        f"--buffer-size ({cfg.buffer_size}) must be at least --batch-size ({cfg.batch_size})",
    )
    check(
        cfg.buffer_size
        >= (cfg.actors * cfg.envs_per_actor or cfg.num_envs)
        * (cfg.frame_stack + max(cfg.n_step, cfg.n_step_end, cfg.spr_steps) + 2),
        "--buffer-size is too small for --num-envs",
    )
    check(
        not cfg.ray_address or cfg.ray_address == "auto" or _is_address(cfg.ray_address),
        f"--ray-address {cfg.ray_address!r}: use auto, HOST:PORT (port 1-65535) or ray://HOST:PORT",
    )
    check(cfg.encoder in ENCODERS, f"--encoder {cfg.encoder!r} is not one of {', '.join(ENCODERS)}")
    check_optimizer(cfg.optimizer)
    check(
        cfg.encoder_padding == "valid" or cfg.encoder in ("auto", "nature"),
        f"--encoder-padding {cfg.encoder_padding} is the nature encoder's; "
        f"--encoder {cfg.encoder} has no such choice",
    )
    check(not cfg.freeze_encoder or bool(cfg.init_from), "--freeze-encoder needs --init-from CKPT")
    check(
        not cfg.n_step_end or cfg.n_step_end != cfg.n_step,
        f"--n-step-end {cfg.n_step_end} equals --n-step: leave it out (0) for a fixed n",
    )
    check(
        cfg.gamma_end < 1.0,
        "--gamma-end 1 cannot be reached geometrically; use at most 0.9999",
    )
    check(
        cfg.distributional != "c51" or cfg.v_min < cfg.v_max,
        f"--v-min ({cfg.v_min:g}) must be below --v-max ({cfg.v_max:g})",
    )
    check(
        cfg.distributional == "none" or cfg.atoms != 1,
        "--atoms 1 is no distribution: use at least 2, or 0 for the paper's",
    )
    check(
        not (cfg.cuda_graph and cfg.reset_every),
        "--cuda-graph keeps the optimizer state it captured, which a reset clears; "
        "leave out one of --cuda-graph and --reset-every",
    )
    check(
        not (cfg.cuda_graph and cfg.learning_rate_decay != "none"),
        "--cuda-graph keeps the learning rate it captured; leave out --learning-rate-decay",
    )
    check(
        not (cfg.cuda_graph and cfg.prioritized),
        "--cuda-graph does not capture --prioritized updates yet; leave out one of the two",
    )
    check(
        not cfg.cuda_graph or cfg.optimizer in CAPTURABLE_OPTIMIZERS,
        f"--cuda-graph cannot capture --optimizer {cfg.optimizer}; "
        f"use {', '.join(CAPTURABLE_OPTIMIZERS)}, or leave out --cuda-graph",
    )


@dataclass(frozen=True)
class EvaluateConfig:
    """Play full games with a trained DQN agent and report the mean and spread of the score."""

    checkpoint: str
    """A DQN checkpoint file, or a run folder (its best.pt, or latest.pt while it has none)."""
    episodes: PositiveInt = 10
    """Full games to play."""
    epsilon: UnitFloat = 0.001
    """Epsilon of the evaluation policy."""
    envs: PositiveInt = 16
    """Games played at once (a vector env)."""
    env_id: str = ""
    """Play another game than the one trained on (observation and action spaces must match)."""
    seed: Seed = 0
    """Seed of the evaluation games."""
    noop_max: at_least(int, -1) = -1
    """ALE games: start each game after 0 to this many no-op frames; -1 starts them as the run
    trained (30 is the Atari 100k protocol's start, as Dopamine and SPR play it; 0 the ALE's
    own reset, where nearly every game at a low epsilon is the same game)."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N | mps."""


def _is_address(address: str) -> bool:
    """HOST:PORT or ray://HOST:PORT with a port in 1..65535."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return bool(host) and port.isdigit() and 1 <= int(port) <= 65535


def _is_ale(env_id: str) -> bool:
    from envs.factory import is_atari  # gymnasium and ale-py, only when a run starts

    return is_atari(env_id)


def _has_pixels(env_id: str) -> bool:
    from envs.factory import is_pixel_game

    return is_pixel_game(env_id)


_EXPLORATION = (
    "start_epsilon", "end_epsilon", "exploration_fraction", "exploration_steps",
    "exploration_after_warmup",
)  # fmt: skip
# Settings that do nothing without another (a run notes each one the command line set in
# vain): without these notes `--v-min 5 --distributional qr` would train as if never typed.
IDLE_WITHOUT: tuple[Needs, ...] = (
    Needs(("v_min", "v_max"), lambda c: c.distributional != "c51", "without --distributional c51"),
    Needs(("atoms",), lambda c: c.distributional == "none", "without --distributional c51 or qr"),
    Needs(
        ("loss",),
        lambda c: c.distributional != "none",
        "with --distributional {distributional}, which has its own loss",
    ),
    Needs(
        ("priority_alpha", "priority_beta"), lambda c: not c.prioritized, "without --prioritized"
    ),
    Needs(("spr_steps",), lambda c: c.spr_weight == 0, "without --spr-weight"),
    Needs(("reset_shrink",), lambda c: c.reset_every == 0, "without --reset-every"),
    Needs(
        ("schedule_updates",),
        lambda c: not c.n_step_end and not c.gamma_end,
        "without --n-step-end or --gamma-end",
    ),
    Needs(
        (
            "envs_per_actor",
            "actor_epsilon",
            "actor_alpha",
            "chunk_steps",
            "weight_sync_every",
            "replay_ratio",
            "ray_address",
            "actor_resource",
        ),
        lambda c: c.actors == 0,
        "without --actors",
    ),
    Needs(
        (*_EXPLORATION, "actor_epsilon", "actor_alpha"),
        lambda c: c.noisy,
        "with --noisy: the noise explores, and epsilon is 0 after --learning-starts",
    ),
    Needs(
        _EXPLORATION,
        lambda c: c.actors > 0,
        "with --actors: each actor explores with its own fixed epsilon (--actor-epsilon, "
        "--actor-alpha)",
    ),
    Needs(
        ("exploration_fraction",),
        lambda c: c.exploration_steps > 0,
        "with --exploration-steps, which sets how long epsilon decays",
    ),
    Needs(
        ("momentum",),
        lambda c: c.optimizer not in ("sgd", "rmsprop"),
        "with --optimizer {optimizer} (sgd and rmsprop use it)",
    ),
    Needs(
        ("nesterov",), lambda c: c.optimizer != "sgd", "with --optimizer {optimizer} (sgd uses it)"
    ),
    Needs(("adam_eps",), lambda c: c.optimizer == "sgd", "with --optimizer sgd"),
    Needs(("watch_host", "watch_port"), lambda c: c.watch != "web", "without --watch web"),
    Needs(
        (
            "sticky_actions",
            "max_episode_frames",
            "noop_max",
            "fire_reset",
            "life_loss_clears_stack",
        ),
        lambda c: not _is_ale(c.env_id),
        "on {env_id}, which is no ALE game",
    ),
    Needs(
        ("augment", "intensity_noise"),
        lambda c: not _has_pixels(c.env_id),
        "on {env_id}, which has no frames",
    ),
)

# evaluate's: its game is the trained one unless --env-id names another.
EVALUATE_IDLE_WITHOUT: tuple[Needs, ...] = (
    Needs(("noop_max",), lambda c: not _is_ale(c.env_id), "on {env_id}, which is no ALE game"),
)


STICKY_ACTIONS = {"auto": None, "on": 0.25, "off": 0.0}  # --sticky-actions -> repeat probability


def env_options(cfg: DQNConfig) -> dict[str, Any]:
    """How this agent's game is played and preprocessed (make_env's options)."""
    return {
        "frame_stack": cfg.frame_stack,
        "frame_size": cfg.frame_size,
        "repeat_action_probability": STICKY_ACTIONS[cfg.sticky_actions],
        "max_episode_frames": cfg.max_episode_frames,
        "noop_max": cfg.noop_max,
        "fire_reset": cfg.fire_reset,
        "life_loss_clears_stack": cfg.life_loss_clears_stack,
    }
