"""What each learning flag costs per update on this CPU, beside the DrQ(eps) preset's update
(Nature CNN, batch 32, 10-step double-DQN targets, dueling, random shifts and intensity noise,
the target copied every update), from one replay buffer of random frames. The variants are
timed in alternating rounds, so the machine's drift hits all of them alike; the table gives
milliseconds per update and the ratio to the DrQ(eps) update of the same rounds.

    python -m benchmarks.update_cost                 # all variants, 6 rounds of 30 updates
    python -m benchmarks.update_cost --rounds 3 --json-path cost.json

A reset is paid once per --reset-every updates: its row is the reset's own cost spread over
BBF's 20,000 updates, on top of the DrQ(eps) update (it shows the reset, timed alone, too).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from agents.heads import shrink_and_perturb
from agents.networks import build_q_network
from agents.replay import ReplayBuffer
from agents.update import DQNUpdate, UpdateRule, update_target
from playground.device import keep_freed_memory
from playground.optim import make_optimizer

SHAPE = (4, 84, 84)
ACTIONS = 6
FILLED = 2_000  # random transitions in each buffer the updates sample from


@dataclass(frozen=True)
class Variant:
    name: str
    head: str = "expected"
    noisy: bool = False
    schedule: bool = False  # set the n-step horizon and discount before every update
    ema_target: bool = False  # a separate target network, Polyak-averaged after every update
    spr: int = 0  # SPR's loss this many steps ahead, weight 2 (the batch carries as many stacks)
    bf16: bool = False  # bf16 autocast (AMX / AVX-512 BF16)
    prioritized: bool = False  # prioritized replay (alpha 0.5) over a 100,000-slot sum tree
    policy_ema: bool = False  # --policy-ema: an average of the online weights moved every update
    network: dict = field(default_factory=dict)


VARIANTS = [
    Variant("DrQ(eps)"),
    Variant("+ c51 (51 atoms)", head="c51"),
    Variant("+ qr (200 quantiles)", head="qr"),
    Variant("+ noisy", noisy=True),
    Variant("+ n-step / discount schedule", schedule=True),
    Variant("+ EMA target (tau 0.005)", ema_target=True),
    Variant("+ SPR (5 steps ahead)", spr=5),
    Variant("c51 + noisy + schedule + EMA", head="c51", noisy=True, schedule=True, ema_target=True),
    Variant("c51 + SPR + schedule + EMA", head="c51", spr=5, schedule=True, ema_target=True),
    Variant("c51 + SPR + schedule", head="c51", spr=5, schedule=True),
    Variant("c51 + SPR 3 steps + schedule", head="c51", spr=3, schedule=True),
    Variant("c51 + SPR + schedule, bf16", head="c51", spr=5, schedule=True, bf16=True),
    Variant("c51 + SPR 3 steps + schedule, bf16", head="c51", spr=3, schedule=True, bf16=True),
    Variant("DrQ(eps), bf16", bf16=True),
    Variant("c51 + SPR 2 steps, bf16 (atari-100k-spr)", head="c51", spr=2, bf16=True),
    Variant("+ prioritized", prioritized=True),
    Variant("c51, bf16", head="c51", bf16=True),
    Variant("c51 + prioritized, bf16", head="c51", prioritized=True, bf16=True),
    Variant(
        "c51 + prioritized + policy EMA, bf16",
        head="c51",
        prioritized=True,
        bf16=True,
        policy_ema=True,
    ),
]


def filled_replay(
    steps: int, future_steps: int = 0, seed: int = 0, capacity: int = 0,
    priority_alpha: float | None = None,
) -> ReplayBuffer:  # fmt: skip
    """`steps` random transitions in a buffer of `capacity` slots (just enough by default)."""
    rng = np.random.default_rng(seed)
    replay = ReplayBuffer(
        capacity or steps + 64, 1, SHAPE, 4, n_step=10, gamma=0.99, num_actions=ACTIONS,
        future_steps=future_steps, priority_alpha=priority_alpha,
    )  # fmt: skip
    first = np.zeros((1, *SHAPE), dtype=np.uint8)  # a new episode's stack: zero-padded
    first[:, -1] = rng.integers(0, 256, SHAPE[1:], dtype=np.uint8)
    replay.start(first)
    no = np.zeros(1, dtype=bool)
    stack = first
    for _ in range(steps):
        frame = rng.integers(0, 256, (1, 1, *SHAPE[1:]), dtype=np.uint8)
        stack = np.concatenate([stack[:, 1:], frame], axis=1)
        replay.add(
            rng.integers(0, ACTIONS, 1), rng.normal(size=1).astype(np.float32), no, no, stack
        )
    return replay


_REPLAYS: dict[int, ReplayBuffer] = {}


def replay_for(future_steps: int) -> ReplayBuffer:
    """One filled buffer per number of future steps, shared by the variants that use it."""
    if future_steps not in _REPLAYS:
        _REPLAYS[future_steps] = filled_replay(FILLED, future_steps=future_steps)
    return _REPLAYS[future_steps]


def make_update(variant: Variant, replay: ReplayBuffer) -> tuple[Callable[[], None], DQNUpdate]:
    """One update of this variant, as the learner makes it, and the `DQNUpdate` it steps."""
    torch.manual_seed(0)
    options = {
        "dueling": True, "head": variant.head, "noisy": variant.noisy, "spr": variant.spr > 0
    }  # fmt: skip
    online = build_q_network(SHAPE, ACTIONS, **options)
    target = build_q_network(SHAPE, ACTIONS, **options)
    target.load_state_dict(online.state_dict())
    target.eval().requires_grad_(False)
    average = copy.deepcopy(online).eval().requires_grad_(False)  # --policy-ema's
    # As a run builds it (fused Adam: the per-tensor loop would be a tenth of the update).
    optimizer = make_optimizer("adam", online.parameters(), 1e-4, eps=1.5e-4)
    rule = UpdateRule(True, "huber", 10.0, target_is_online=not variant.ema_target)
    rule = replace(rule, head=variant.head, spr_weight=2.0 if variant.spr else 0.0)
    if variant.spr:
        replay = replay_for(variant.spr)
    if variant.prioritized:  # an Atari 100k run's buffer: the sum tree's depth is its size's
        replay = filled_replay(FILLED, capacity=100_000, priority_alpha=0.5)
    update = DQNUpdate(
        replay, online, online if rule.target_is_online else target, optimizer, rule, 32,
        torch.device("cpu"), augment=True, intensity=0.05, autocast=variant.bf16,
    )  # fmt: skip
    count = [0]

    def step() -> None:
        count[0] += 1
        if variant.schedule:
            replay.set_horizon(10 - count[0] % 7, 0.97 + 0.027 * (count[0] % 2))
        update.step()
        if variant.prioritized:  # the env step's new transition enters the tree, as in a run
            slot = torch.tensor([count[0] % FILLED])
            replay.priorities.set(slot, replay.max_priority.reshape(1) ** replay.priority_alpha)
        if variant.ema_target:
            update_target(target, online, 0.005)
        if variant.policy_ema:
            update_target(average, online, 1e-4)

    return step, update


def reset_seconds(repeats: int = 5) -> float:
    """Seconds of one shrink-and-perturb reset (a fresh network built, mixed in, Adam cleared)."""
    network = build_q_network(SHAPE, ACTIONS, dueling=True)
    optimizer = torch.optim.Adam(network.parameters())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fresh = build_q_network(SHAPE, ACTIONS, dueling=True)
        shrink_and_perturb(network, fresh, 0.5)
        optimizer.state.clear()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--updates", type=int, default=30, help="updates per variant per round")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json-path", default="")
    parser.add_argument(
        "--only", nargs="*", default=[], help="variants to time (their names; DrQ(eps) always)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as a training run does (playground.lifecycle.Run)
    chosen = [v for v in VARIANTS if not args.only or v.name in args.only or v.name == "DrQ(eps)"]
    steps = {variant.name: make_update(variant, replay_for(0))[0] for variant in chosen}
    for step in steps.values():  # warm-up: allocations, kernels
        for _ in range(3):
            step()
    timings: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.updates):
                step()
            timings[name].append((time.perf_counter() - start) / args.updates)
    base = statistics.median(timings["DrQ(eps)"])
    reset = reset_seconds()
    rows = [
        {"variant": name, "ms": 1e3 * statistics.median(values),
         "ratio": statistics.median(values) / base}
        for name, values in timings.items()
    ]  # fmt: skip
    rows.append({"variant": "+ reset every 20,000 updates", "ms": 1e3 * (base + reset / 20_000),
                 "ratio": (base + reset / 20_000) / base, "reset_ms": 1e3 * reset})  # fmt: skip
    print(f"{'variant':34s} {'ms / update':>12s} {'x DrQ(eps)':>11s}")
    for row in rows:
        print(f"{row['variant']:34s} {row['ms']:12.1f} {row['ratio']:11.2f}")
    print(f"(one reset alone: {1e3 * reset:.1f} ms; {args.rounds} rounds of {args.updates} "
          f"updates, {args.threads} thread(s), batch 32, {SHAPE})")  # fmt: skip
    if args.json_path:
        with open(args.json_path, "w") as handle:
            json.dump({"rows": rows, "rounds": args.rounds, "updates": args.updates,
                       "threads": args.threads}, handle, indent=1)  # fmt: skip


if __name__ == "__main__":
    main()
