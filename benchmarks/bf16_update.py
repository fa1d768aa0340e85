"""bf16 against fp32 on this CPU: seconds per DQN update (forward of online and target networks,
Huber loss, backward, Adam step) for an encoder on a batch of observations, the two precisions
timed in alternating rounds so the machine's drift hits both alike.

    python -m benchmarks.bf16_update                                   # Nature CNN, 4x84x84
    python -m benchmarks.bf16_update --encoder vgg --shape 2 12 12 --width 16
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F

from agents.networks import build_q_network
from playground.notes import note


def seconds_per_update(network, target, optimizer, observations, actions, autocast, updates):
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    start = time.perf_counter()
    for _ in range(updates):
        with context:
            with torch.no_grad():
                target_values = target(observations).max(dim=1).values
            chosen = network(observations).gather(1, actions[:, None]).squeeze(1)
            loss = F.smooth_l1_loss(chosen.float(), target_values.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="nature")
    parser.add_argument("--shape", type=int, nargs=3, default=[4, 84, 84])
    parser.add_argument("--width", type=int, default=0, help="encoder width (0: published)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--updates", type=int, default=50, help="updates per timing")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    if not torch.cpu._is_avx512_bf16_supported():
        note("this CPU has no AVX-512 BF16; bf16 would be emulated (the trainer runs fp32)")
    shape, actions_count = tuple(args.shape), 4
    torch.manual_seed(0)
    network = build_q_network(shape, actions_count, encoder=args.encoder, width=args.width)
    target = build_q_network(shape, actions_count, encoder=args.encoder, width=args.width)
    target.load_state_dict(network.state_dict())
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    observations = torch.randint(0, 256, (args.batch_size, *shape), dtype=torch.uint8)
    actions = torch.randint(0, actions_count, (args.batch_size,))
    timings: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for name in timings:  # warm-up
        seconds_per_update(network, target, optimizer, observations, actions, name == "bf16", 5)
    for _ in range(args.rounds):
        for name in timings:
            timings[name].append(
                seconds_per_update(
                    network, target, optimizer, observations, actions, name == "bf16", args.updates
                )
            )
    fp32, bf16 = min(timings["fp32"]), min(timings["bf16"])
    print(f"{args.encoder} on {shape}, batch {args.batch_size}, {torch.get_num_threads()} threads")
    print(
        f"fp32: {1 / fp32:.1f} updates/s   bf16: {1 / bf16:.1f} updates/s   bf16/fp32: {fp32 / bf16:.2f}x"
    )


if __name__ == "__main__":
    main()
