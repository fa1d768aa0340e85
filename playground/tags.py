"""The TensorBoard tags: the contract between the trainers that write them and everything that
reads them back (the web page, `run.py compare`, the benchmarks).

Write and read a tag through these names only; `tests/test_architecture.py` refuses a tag
spelled anywhere else in the project. A new tag goes here, and into `WEB_CHARTS` /
`WEB_IMAGES` if the web page should draw it. Tests spell the tags out on purpose: they pin
what users see in TensorBoard.
"""

from __future__ import annotations

CONFIG = "config"  # text: every setting of the run, as a table (both trainers)

# ---- DQN (train-dqn, one process or Ape-X) ----
MODEL_SUMMARY = "model"  # text: the Q-network's encoder, input, size and cost
MODEL_PARAMETERS = "model/parameters"
MODEL_MULTIPLY_ADDS = "model/multiply_adds"  # per observation
EPISODIC_RETURN = "charts/episodic_return"  # each training episode's return, as it ends
EPISODIC_LENGTH = "charts/episodic_length"
EPSILON = "charts/epsilon"
SPS = "charts/sps"  # environment steps per second
UPDATES_PER_SEC = "charts/updates_per_sec"  # Ape-X: the learner's gradient steps per second
REPLAY_RATIO = "charts/replay_ratio"  # Ape-X: sampled transitions per stored transition
QUEUE_DEPTH = "charts/queue_depth"  # Ape-X: actor batches waiting
BYTES_PER_TRANSITION = "charts/bytes_per_transition"  # Ape-X: what an actor sends a step
ACTOR_RESTARTS = "actors/restarts"  # Ape-X: actors restarted after a failure
ACTOR_EPSILON = "actors/epsilon_"  # + the actor's index: its fixed epsilon
ACTOR_SPS = "actors/sps_"  # + the index: that actor's environment steps per second
ACTOR_WEIGHTS_VERSION = "actors/weights_version_"  # + the index: the weights it acts with
TD_LOSS = "losses/td_loss"
Q_VALUES = "losses/q_values"  # the mean Q-value of the sampled actions
SPR_LOSS = "losses/spr_loss"  # SPR's self-predictive loss (minus the summed cosine similarity)
EVAL_RETURN = "eval/episodic_return"  # the mean score of an evaluation's full games
EVAL_RETURN_STD = "eval/episodic_return_std"
FINAL_RETURN = "eval/final_return"  # the final evaluation (--final-eval-episodes)
FINAL_RETURN_ONLINE = "eval/final_return_online"  # the same games by the online network
EVAL_VIDEO = "eval/video"  # one evaluation game as a clip
EVAL_VIDEO_SCORE = "eval/video_score"  # that game's score

# ---- DCGAN (train-gan) ----
D_LOSS = "losses/d_loss"
G_LOSS = "losses/g_loss"
D_REAL = "gan/d_real"  # the mean sigmoid of D's logits on real images
D_FAKE = "gan/d_fake"  # ... and on generated ones
IMAGES_PER_SEC = "perf/images_per_sec"
FID = "metrics/fid"
KID = "metrics/kid"
SAMPLES = "samples/fixed_noise"  # a grid from one fixed batch of noise
REAL_IMAGES = "samples/real"  # a grid of the data set, logged once


def actor(tag: str, index: int) -> str:
    """The per-actor tag `tag` (ACTOR_EPSILON, ACTOR_SPS, ...) of Ape-X actor `index`."""
    return f"{tag}{index}"


def metric(name: str) -> str:
    """The tag of the image-quality metric `name` ("fid", "kid")."""
    return f"metrics/{name}"


# What the web page draws beside a run, with the caption of each.
WEB_CHARTS = {
    EPISODIC_RETURN: "episodic return",
    EVAL_RETURN: "evaluation return",
    TD_LOSS: "TD loss",
    SPR_LOSS: "SPR loss",
    EPSILON: "epsilon",
    SPS: "steps / s",
    D_LOSS: "D loss",
    G_LOSS: "G loss",
    D_REAL: "D(x)",
    D_FAKE: "D(G(z))",
    IMAGES_PER_SEC: "images / s",
}
WEB_IMAGES = {SAMPLES: "samples (fixed noise)", REAL_IMAGES: "real images"}
