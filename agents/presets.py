"""The DQN presets, picked by `--env-id` (or named with `--preset`); see `playground.presets`.

Like RL Zoo's per-game hyperparameter files, but applied for you. A preset may change anything
that is not the game itself: frame size, frame stack, encoder and its width, replay ratio,
learning rate, schedules, run length. What each reaches, and in how long, is measured by
`python -m benchmarks.presets` and written in the README's table (the `reaches` texts below).
"""

from __future__ import annotations

from typing import Any

from playground.presets import NONE, Preset

SELECTOR = "--env-id"

# The built-in games on a laptop CPU: frames shrunk to one pixel per cell of the game's grid,
# a small VGG-style encoder, 3-step returns, a short exploration phase.
_BUILTIN: dict[str, Any] = dict(
    total_steps=150_000,
    frame_stack=2,
    encoder="vgg",
    encoder_width=16,
    buffer_size=100_000,
    learning_starts=5_000,
    exploration_fraction=0.1,
    end_epsilon=0.02,
    learning_rate=5e-4,
    target_update_frequency=1_000,
    n_step=3,
    eval_every=10_000,
    eval_episodes=10,
    checkpoint_every=10_000,
    log_every=1_000,
)

# Vector-observation games at RL Zoo's budget: its tuned DQN settings (hyperparams/dqn.yml),
# played as SB3 plays them (no double DQN, Huber loss, gradient norm 10, unclipped rewards),
# an MLP of 256 x 256, scored greedily as RL Zoo's benchmark is.
_RL_ZOO: dict[str, Any] = dict(
    encoder="mlp",
    encoder_width=256,
    double_dqn=False,
    loss="huber",
    max_grad_norm=10.0,
    clip_rewards=False,
    eval_epsilon=0.0,
    eval_episodes=10,
    # The last weights scored on 100 games: 10 games of LunarLander vary by 20 to 30 points
    # about their mean, so a run's last 10-game evaluation could fall 40 under its 100-game one.
    final_eval_episodes=100,
    checkpoint_every=10_000,
    log_every=1_000,
)

# Acrobot-v1 and LunarLander: RL Zoo tunes them alike.
_RL_ZOO_ACROBOT: dict[str, Any] = {
    **_RL_ZOO,
    "total_steps": 100_000,
    "learning_rate": 6.3e-4,
    "batch_size": 128,
    "buffer_size": 50_000,
    "learning_starts": 0,
    "gamma": 0.99,
    "target_update_frequency": 250,
    "train_frequency": 4,
    "gradient_steps": 4,
    "exploration_fraction": 0.12,
    "end_epsilon": 0.1,
    "eval_every": 5_000,
}

# RL Zoo's settings with the learning rate falling linearly to a tenth by the end
# (docs/learning.md). LunarLander: 3 seeds ended at 192.8 / 163.9 / 148.6 over 100 games (RL
# Zoo: 154.4), their checkpoints at 170 to 209; with RL Zoo's constant rate seed 1 ended at -4.2
# one day and 160 another. Acrobot: -77.2 / -70.7 / -76.0 over 100 games (RL Zoo: -76.6), with
# the constant rate -80.5 / -73.4 / -82.7. MountainCar (below): -100.7 / -100.0 / -151.2 (RL
# Zoo: -100.8), with the constant rate -119.2 / -153.1 / -152.9.
_RL_ZOO_DECAYED: dict[str, Any] = {**_RL_ZOO_ACROBOT, "learning_rate_decay": "linear"}

# The Atari 100k benchmark as Dopamine runs it, with DrQ(eps)'s agent
# (docs/atari100k.md has each setting beside Dopamine's gin file).
_ATARI_100K: dict[str, Any] = dict(
    total_steps=100_000,
    sticky_actions="off",
    max_episode_frames=108_000,
    buffer_size=100_000,
    learning_starts=1_600,
    train_frequency=1,
    target_update_frequency=1,
    n_step=10,
    learning_rate=1e-4,
    adam_eps=1.5e-4,
    max_grad_norm=0.0,
    dueling=True,
    double_dqn=True,
    augment=True,
    intensity_noise=0.05,
    exploration_steps=5_000,
    exploration_after_warmup=True,
    end_epsilon=0.01,
    eval_epsilon=0.001,
    # Dopamine's start (since 2026-12-07): a game starts after 0 to 30 no-op frames and nothing
    # is pressed for the agent, as Dopamine's Atari 100k runner (`MaxEpisodeEvalRunner`,
    # max_noops=30) and SPR's env (max_start_noops=30) start every game, training and
    # evaluation alike. From 2026-12-06 to 07 the preset started at the ALE's own reset, which
    # with no sticky actions makes every game start the same, so the 100 final games at
    # epsilon 0.001 were nearly one game played 100 times (docs/atari100k.md). A lost life
    # clears the frame stack as Dopamine's agent begins each life as an episode (since
    # 2026-12-06).
    noop_max=30,
    fire_reset=False,
    life_loss_clears_stack=True,
    eval_every=20_000,
    eval_episodes=8,
    eval_envs=8,
    final_eval_episodes=100,
    eval_video=False,
    checkpoint_every=5_000,
    log_every=1_000,
    # bf16 autocast on CUDA and on CPUs with AVX-512 BF16 or AMX (fp32 elsewhere, with a note):
    # a training step in 0.73x the time on a 2-core EPYC, and the three games' seed-1 runs
    # scored within or above their fp32 seeds' (docs/benchmarks.md); `--precision fp32` keeps
    # the preset's runs before 2026-12-03.
    precision="bf16",
)

# The same protocol with SPR's agent (Schwarzer et al. 2021) on top: C51 and SPR's
# self-predictive loss 2 steps ahead (5 in the paper: 4.1x the update here), n-step 10 and
# gamma 0.99, the target kept equal to the online network (SPR's tau = 0, which it pairs with
# augmentation). What BBF adds besides (n-step and discount schedules, resets, weight decay;
# each a flag) is left off: with them the preset played Boxing at -25.0 at 20,000 steps and
# -29.8 at 80,000, without them -3.7 at 20,000 (docs/rainbow.md), and weight decay 0.1 alone
# took the DrQ(eps) preset from 3.1 to -14.3 there.
_ATARI_100K_SPR: dict[str, Any] = {
    **_ATARI_100K,
    "distributional": "c51",
    "spr_weight": 2.0,
    # 2 steps ahead (SPR's and BBF's 5 cost 4.1x the DrQ(eps) update): with 3 a run's training
    # step took 2.21x the atari-100k one's, with 2 1.78x (benchmarks/preset_speed.py, bf16).
    "spr_steps": 2,
    # The protocol is atari-100k's, Dopamine's start and its stack at a lost life included
    # (the start since 2026-12-07; from 2026-12-06 to 07 the runs started at the ALE's reset,
    # before with 30 no-ops and FIRE: docs/atari100k.md).
    # bf16 comes from atari-100k: SPR's extra passes make the update (3 steps ahead) 3.1x
    # DrQ(eps)'s in fp32 on a 2-core CPU and 2.0x in bf16, which learned Catch as fp32 does
    # (docs/benchmarks.md).
}

# The first preset's protocol and agent with the two parts of Rainbow that SPR's and BBF's agents
# are built on: C51's return distribution (51 atoms on [-10, 10]) and prioritized replay,
# proportional with alpha 0.5 (Dopamine's and SPR's; beta 0.4 annealed to 1 over the run, SPR's),
# the priorities C51's own losses. Nothing of SPR's or BBF's additions: started at the ALE's reset
# (2026-12-07), over Pong, Breakout and Boxing its mean HNS was 1.19 over three seeds a game
# (1.337 over the first two; SPR 1.34); with Dopamine's start its first runs make 0.65, DrQ(eps)'s
# level (docs/atari100k.md). At the ALE's reset it was above
# DrQ(eps)'s 0.57 and the first preset's 0.69; an update is 1.0x to 1.27x the first preset's,
# where SPR's loss 2 steps ahead cost 2.1x (docs/atari100k.md, docs/rainbow.md).
# Since 2026-12-07 it plays with an average of its weights (--policy-ema 0.0001, about the last
# 10,000 updates; learning is unchanged): over the same six runs with the field's start the
# average made a mean HNS of 1.54 [1.24, 1.85] where the last weights made 1.13 (docs/atari100k.md).
_ATARI_100K_C51_PER: dict[str, Any] = {
    **_ATARI_100K,
    "distributional": "c51",
    "prioritized": True,
    "priority_alpha": 0.5,
    "policy_ema": 1e-4,
}

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "atari",
            "ALE games: the Nature / CleanRL DQN (84x84 frames, 10M steps, replay 1M)",
            {},
            "not measured here (10M steps need a GPU and about a day)",
        ),
        Preset(
            "atari-100k",
            "ALE games, the Atari 100k benchmark as Dopamine runs it (100,000 agent steps, no "
            "sticky actions, 100 games scored at the end) with DrQ(eps): replay ratio 1, "
            "10-step double-DQN targets, the target copied every update, dueling, random shifts "
            "and intensity noise, epsilon to 0.01 over 5,000 steps after 1,600 random ones, "
            "games started after 0 to 30 no-op frames with nothing pressed and the frame stack "
            "cleared at a lost life, bf16 where the hardware has it",
            _ATARI_100K,
            "with the ALE's reset start and the stack cleared at a lost life (2026-12-06 to 07; Dopamine's start since, not yet run), 3 seeds each: Pong -12.7 (-0.6 / -20.9 / -16.7), Breakout 27.4 (23.6 / 27.8 / 30.9), Boxing 11.3 (8.3 / 12.0 / 13.8), mean HNS 0.69 [0.57, 0.82], above DrQ(eps) on Breakout and Boxing and on the mean (DrQ(eps): -9.1, 19.8, 9.0, HNS 0.57); with 30 no-ops and FIRE at reset before it, 2 seeds each, mean HNS 0.48 [0.41, 0.54] (bf16), 0.82 [0.75, 0.90] (the head in bf16), 0.60 (fp32); outside the three: Krull 4781 (1 seed), above DrQ(eps)'s 4402, and Freeway 0.0 / 22.1 / 26.8 (3 seeds, mean 16.3), under its 20.3 (before: 2908 and 0.0); 100 games each (docs/atari100k.md); in bf16 a run trains in 27-36 min beside another on one core each (47-71 min in earlier sessions of the same VM), under 40 min alone on 2",
        ),
        Preset(
            "atari-100k-spr",
            "ALE games, the Atari 100k protocol of atari-100k with SPR's agent: C51 and SPR's "
            "self-predictive loss 2 steps ahead, 10-step targets, the target equal to the "
            "online network",
            _ATARI_100K_SPR,
            "with the first preset's protocol and the ALE's reset start (2026-12-06 to 07; Dopamine's start since, not yet run), 2 seeds a game over 100 games: Boxing 15.5 / 11.7 (SPR: 35.7, DrQ(eps): 9.0), Breakout 18.6 / 30.0 (SPR: 19.6, DrQ(eps): 19.8), Pong -19.7 / -17.8 (SPR: -5.4, DrQ(eps): -9.1), mean HNS 0.65 [0.54, 0.77] (SPR: 1.34, DrQ(eps): 0.57, atari-100k: 0.69); with 30 no-ops and FIRE at reset before it, seed 1: Boxing 23.6, Breakout 18.7, Pong -11.2, mean HNS 0.94 (docs/atari100k.md); an update takes 2.1x the atari-100k one's in bf16 and a whole run 2.1x to 2.4x, over the 2x aimed at (docs/benchmarks.md)",
        ),
        Preset(
            "atari-100k-c51-per",
            "ALE games, the Atari 100k protocol of atari-100k with C51 and prioritized replay "
            "(alpha 0.5) added to its agent, played by an average of its last weights "
            "(--policy-ema 0.0001)",
            _ATARI_100K_C51_PER,
            "with Dopamine's start and the average (2026-12-07), 2 seeds a game over 100 games: Boxing 35.5 / 54.7 (seeds 1 / 3; SPR: 35.7, DrQ(eps): 9.0), Breakout 19.4 / 24.3 (seeds 1 / 2; SPR: 19.6), Pong -18.3 / -10.6 (seeds 1 / 3; SPR: -5.4), mean HNS 1.54 [1.24, 1.85] (SPR: 1.34, DrQ(eps): 0.57), IQM 1.16 (SPR: 0.81), P(> SPR) 0.58 [0.43, 0.72]; the same runs' last weights: 1.13, and seeds 1 and 2 without the average 0.74 [0.64, 0.83]; 53 to 80 min of training a run beside another on one core each; with the ALE's reset start and no average (2026-12-07), 3 seeds a game: mean HNS 1.19 [1.02, 1.36]; outside the three, without the average, 2 seeds each: Krull 4172 / 3909 (DrQ(eps): 4402, SPR: 3682), Freeway 26.7 / 24.1 (DrQ(eps): 20.3, SPR: 19.3); a training step takes 1.22x the atari-100k one's side by side (docs/atari100k.md)",
        ),
        Preset(
            "catch",
            "Playground/Catch-v0: 12x12 frames, vgg encoder, 20,000 steps",
            {
                **_BUILTIN,
                "frame_size": 12,
                "total_steps": 20_000,
                "buffer_size": 20_000,
                "learning_starts": 1_000,
                "exploration_fraction": 0.25,
                "learning_rate": 1e-3,
                "target_update_frequency": 500,
                "eval_every": 2_000,
                "eval_episodes": 20,
                "checkpoint_every": 2_000,
                "log_every": 500,
            },
            "1.00 on 3 seeds of 3 (bar 0.9), 0.9 min",
        ),
        Preset(
            "pong",
            "Playground/Pong-v0: 21x21 frames, vgg encoder, 150,000 steps",
            {**_BUILTIN, "frame_size": 21},
            "+4.3 / +4.2 / +4.2 on 3 seeds (bar +4), 14 min",
        ),
        Preset(
            "breakout",
            "Playground/Breakout-v0: 12x12 frames, vgg encoder, 150,000 steps",
            {**_BUILTIN, "frame_size": 12},
            "30.2 / 33.3 / 34.7 of 36 bricks on 3 seeds (bar 30), 14.5 min on shared cores",
        ),
        Preset(
            "snake",
            "Playground/Snake-v0: 12x12 frames, vgg encoder of width 32, the board's 8 "
            "symmetries, an update every 2 steps, 120,000 steps",
            {
                **_BUILTIN,
                "frame_size": 12,
                "encoder_width": 32,
                "symmetry_augment": True,
                "train_frequency": 2,
                "total_steps": 120_000,
            },
            "14.2 / 17.5 / 20.1 foods on 3 seeds (bar 10), 13.6 to 15.1 min",
        ),
        Preset(
            "classic-control",
            "vector observations (CartPole-v1, Acrobot-v1): CleanRL's dqn.py settings, an MLP",
            dict(
                total_steps=500_000,
                learning_rate=2.5e-4,
                buffer_size=10_000,
                batch_size=128,
                learning_starts=10_000,
                train_frequency=10,
                target_update_frequency=500,
                end_epsilon=0.05,
                exploration_fraction=0.5,
                loss="mse",
                clip_rewards=False,
                eval_every=50_000,
                checkpoint_every=50_000,
            ),
            "CartPole-v1: 500 (the maximum) on 3 seeds of 3, 6 to 9.5 min",
        ),
        Preset(
            "cartpole",
            "CartPole-v1 at RL Zoo's budget: its tuned DQN (50,000 steps; 128 updates after "
            "every 256 steps), an MLP of 256 x 256",
            {
                **_RL_ZOO,
                "total_steps": 50_000,
                "learning_rate": 2.3e-3,
                "batch_size": 64,
                "buffer_size": 100_000,
                "learning_starts": 1_000,
                "gamma": 0.99,
                "target_update_frequency": 10,
                "train_frequency": 256,
                "gradient_steps": 128,
                "exploration_fraction": 0.16,
                "end_epsilon": 0.04,
                "eval_every": 2_500,
            },
            "171.7 / 500 / 497.3 over 100 games at 50,000 steps (RL Zoo: 500), each seed's checkpoint 500 over 100 fresh games, each seed at 500 by step 45,000; 2.8 to 3.4 min",
        ),
        Preset(
            "acrobot",
            "Acrobot-v1 at RL Zoo's budget: its tuned DQN (100,000 steps, replay ratio 1), an "
            "MLP of 256 x 256, the learning rate falling to a tenth",
            _RL_ZOO_DECAYED,
            "-77.2 / -70.7 / -76.0 over 100 games at 100,000 steps, mean -74.6 (RL Zoo: -76.6); each seed's checkpoint -74.8 to -79.4 over 100 fresh games, each seed past it by step 55,000; 5 to 7 min of training",
        ),
        Preset(
            "mountaincar",
            "MountainCar-v0 at RL Zoo's budget: its tuned DQN (120,000 steps; 8 updates after "
            "every 16 steps), an MLP of 256 x 256, the learning rate falling to a tenth, "
            "3-step targets",
            {
                **_RL_ZOO,
                "learning_rate_decay": "linear",
                "total_steps": 120_000,
                "learning_rate": 4e-3,
                "batch_size": 128,
                "buffer_size": 10_000,
                "learning_starts": 1_000,
                "gamma": 0.98,
                # 3-step targets (RL Zoo's are 1-step): with them every seed ended above RL
                # Zoo's -100.8 over 100 games (-98.7 / -98.8 / -98.2), without them seed 3
                # never reached it (-151.2; double DQN instead: -104.9) (docs/learning.md).
                "n_step": 3,
                "target_update_frequency": 600,
                "train_frequency": 16,
                "gradient_steps": 8,
                "exploration_fraction": 0.2,
                "end_epsilon": 0.07,
                "eval_every": 5_000,
            },
            "-98.7 / -98.8 / -98.2 over 100 games at 120,000 steps, mean -98.6 (RL Zoo: -100.8): every seed; each seed's checkpoint -100.4 / -100.6 / -99.8 over 100 fresh games; each seed past it by step 70,000; 5 min of training (1-step targets before 2026-12-06: -100.7 / -100.0 / -151.2)",
        ),
        Preset(
            "lunarlander",
            "LunarLander-v3 (needs Box2D) at RL Zoo's budget: its tuned DQN (100,000 steps, "
            "replay ratio 1), an MLP of 256 x 256, the learning rate falling to a tenth",
            _RL_ZOO_DECAYED,
            "192.8 / 163.9 / 148.6 over 100 games at 100,000 steps, mean 168.4 (RL Zoo: 154.4); each seed's checkpoint 170.3 to 209.0 over 100 fresh games, each seed past it by step 45,000; 9.8 to 13.0 min",
        ),
    )
}

_BUILTIN_GAMES = {
    "Playground/Catch-v0": "catch",
    "Playground/Pong-v0": "pong",
    "Playground/Breakout-v0": "breakout",
    "Playground/Snake-v0": "snake",
}
_VECTOR_GAMES = {
    "CartPole-v0": "cartpole",
    "CartPole-v1": "cartpole",
    "Acrobot-v1": "acrobot",
    "MountainCar-v0": "mountaincar",
    "LunarLander-v3": "lunarlander",
}


def preset_for(env_id: str) -> str:
    """The preset an `--env-id` picks: its own for a built-in game and for the vector games RL
    Zoo tunes, `atari` for ALE games, `none` (the plain defaults) otherwise."""
    if env_id in _BUILTIN_GAMES:
        return _BUILTIN_GAMES[env_id]
    if env_id.startswith("ALE/") or "NoFrameskip" in env_id:
        return "atari"
    if env_id in _VECTOR_GAMES:
        return _VECTOR_GAMES[env_id]
    return NONE
