"""Prioritized replay (Schaul et al., 2016, proportional): a sum tree over the replay buffer's
slots, sampled in O(log n) per draw with nothing read back to the host, so on a GPU it runs
ahead of the device like the uniform sync-free sampler.

    tree = SumTree(capacity)
    tree.set(slots, priorities)              # leaf values, e.g. |TD error| ** alpha
    slots = tree.sample(32, generator)       # each slot drawn with probability value / total
    weights = importance_weights(tree, slots, beta)
"""

from __future__ import annotations

import math

import torch


class SumTree:
    """A complete binary tree in one tensor: leaves hold the slots' values, every inner node the
    sum of its two children, the root (index 1) the total. Leaves start at `leaf_start` (a
    power of two at least the capacity); unused leaves stay zero and are never drawn."""

    def __init__(self, capacity: int, device: torch.device | str = "cpu") -> None:
        self.capacity = capacity
        self.depth = max(1, math.ceil(math.log2(max(capacity, 2))))
        self.leaf_start = 1 << self.depth
        self.device = torch.device(device)
        # float64: sums over a million leaves stay exact enough to draw from.
        self.nodes = torch.zeros(2 * self.leaf_start, dtype=torch.float64, device=self.device)

    @property
    def total(self) -> torch.Tensor:
        return self.nodes[1]

    def values(self, slots: torch.Tensor) -> torch.Tensor:
        return self.nodes[self.leaf_start + slots]

    def set(self, slots: torch.Tensor, values: torch.Tensor) -> None:
        """Set the leaves of `slots` (B,) to `values` (B,) and update the sums above them, one
        level at a time (duplicate slots: the last value wins)."""
        if slots.numel() == 0:
            return
        nodes = self.leaf_start + slots.to(torch.int64)
        self.nodes.index_put_((nodes,), values.to(torch.float64))
        for _ in range(self.depth):
            nodes = torch.unique(nodes // 2)
            self.nodes[nodes] = self.nodes[2 * nodes] + self.nodes[2 * nodes + 1]

    def sample(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`count` slots, stratified: the i-th is drawn uniformly from the i-th of `count` equal
        segments of the total mass, then found by descending from the root. No host read."""
        segment = self.total / count
        targets = (
            torch.arange(count, dtype=torch.float64, device=self.device)
            + torch.rand(count, dtype=torch.float64, generator=generator, device=self.device)
        ) * segment
        nodes = torch.ones(count, dtype=torch.int64, device=self.device)
        for _ in range(self.depth):
            left = 2 * nodes
            left_mass = self.nodes[left]
            # Right when the target lies past the left mass, unless the right side is empty
            # (rounding): every step then goes to a child with mass, so a drawn leaf has mass.
            go_right = (targets >= left_mass) & (self.nodes[left + 1] > 0)
            targets = torch.where(go_right, targets - left_mass, targets)
            nodes = torch.where(go_right, left + 1, left)
        return (nodes - self.leaf_start).clamp_(max=self.capacity - 1)


def importance_weights(
    tree: SumTree, slots: torch.Tensor, beta: float, count: torch.Tensor | int
) -> torch.Tensor:
    """(N * P(i)) ** -beta for the sampled slots, divided by their maximum so the updates only
    shrink (Schaul et al.); `count` is the number of slots that can be drawn (N)."""
    probabilities = tree.values(slots) / tree.total
    weights = (probabilities * count).clamp_min(1e-12) ** -beta
    return (weights / weights.max()).to(torch.float32)
