"""The DQN update as the training loop calls it: sample a batch, TD target, loss, backward,
optimizer step; eager, compiled, or captured as one CUDA graph.

Most of a DQN update on a GPU is launch and Python overhead: a Nature-CNN step on a batch of 32
is a few hundred small kernels. `--compile` fuses them with torch.compile (on the CPU too);
`--cuda-graph` records the whole update, replay sampling included, once and then replays it
with one launch per update. Both do exactly the arithmetic of `dqn_update`, so they learn the
same thing (the tests compare them with the plain path on the CPU).

    rule = UpdateRule(double_dqn=True, loss="huber", max_grad_norm=10.0)
    update = DQNUpdate(replay, q_network, target_network, optimizer, rule, 32, device)
    result = update.step()  # device tensors (loss, q_mean, ...), valid until the next step()

The pure pieces (`td_target`, `dqn_update`, `update_target`) are plain functions, so tests
check them exactly.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from agents.heads import HeadKind, c51_projection, quantile_huber_loss
from agents.networks import QNetwork, random_intensity, random_shift, random_symmetry
from agents.replay import ReplayBuffer, ReplaySample
from agents.spr import spr_losses
from playground.notes import note

# Eager updates run before a CUDA graph is captured: they allocate the gradients and optimizer
# state, pick the kernels (and compile them, with --compile) outside the capture.
GRAPH_WARMUP_UPDATES = 3


class UpdateResult(NamedTuple):
    """What one update gives back, as device tensors (nothing read back to the host)."""

    loss: torch.Tensor  # the TD (or distributional) loss; SPR's is added to it for the gradient
    q_mean: torch.Tensor  # the mean Q-value of the taken actions
    errors: torch.Tensor  # (B,) what the priorities follow: TD errors, or distributional losses
    spr_loss: torch.Tensor  # SPR's mean loss (0 when off)


@dataclass(frozen=True)
class UpdateRule:
    """The choices that shape one DQN update (the `train-dqn` flags of the same names)."""

    double_dqn: bool = True
    """Pick the next action with the online network, value it with the target network."""
    loss: str = "huber"
    """huber (smooth L1) or mse."""
    max_grad_norm: float = 10.0
    """Clip the gradient norm to this value (0 disables)."""
    stochastic_layers: bool = False
    """The network has batch norm or dropout: the next-state pass of double DQN then runs in
    eval mode, like the target network's, so only the learning pass uses batch statistics."""
    target_is_online: bool = False
    """The target network is a copy of the online one at every update (a hard copy after
    each update, no batch norm or dropout; DrQ(eps)): double DQN's two next-state passes
    would give the same values, so one is made."""
    head: HeadKind = "expected"
    """expected (a Q-value per action), c51 or qr: the network's head, whose loss this is
    (`loss` applies to Q-values only)."""
    spr_weight: float = 0.0
    """The weight of SPR's self-predictive loss beside the TD loss (0: none); the batch then
    carries its future observations, actions and mask."""


@contextlib.contextmanager
def evaluating(network: nn.Module, switch: bool = True) -> Iterator[None]:
    """Run `network` in eval mode inside the block (batch norm's running statistics, no
    dropout), restoring its mode after; does nothing when `switch` is False."""
    if not switch or not network.training:
        yield
        return
    network.eval()
    try:
        yield
    finally:
        network.train()


def td_target(
    returns: torch.Tensor,
    discounts: torch.Tensor,
    dones: torch.Tensor,
    next_q_target: torch.Tensor,
    next_q_online: torch.Tensor | None,
) -> torch.Tensor:
    """r_t + ... + gamma^k * (1 - done) * Q_target(s_{t+k}, a*), where a* is the target network's
    argmax (DQN) or, when `next_q_online` is given, the online network's argmax (double DQN)."""
    if next_q_online is None:
        next_value = next_q_target.max(dim=1).values
    else:
        next_actions = next_q_online.argmax(dim=1, keepdim=True)
        next_value = next_q_target.gather(1, next_actions).squeeze(1)
    return returns + discounts * (1.0 - dones) * next_value


def dqn_update(
    batch: ReplaySample,
    q_network: QNetwork,
    target_network: QNetwork,
    optimizer: torch.optim.Optimizer,
    rule: UpdateRule,
    *,
    augment: bool = False,
    intensity: float = 0.0,
    symmetries: tuple[torch.Tensor, torch.Tensor] | None = None,
    autocast: bool = False,
    autocast_cache: bool = True,
) -> UpdateResult:
    """One gradient step on a batch: TD target, loss (weighted by the batch's importance
    weights, all ones unless prioritized), backward, clipping, optimizer step. Returns the
    loss, the mean Q-value of the taken actions, the TD errors (B,) and SPR's loss as device
    tensors (no sync): nothing in it reads a value back to the host, so it can be compiled and
    captured."""
    observations, next_observations = batch.observations, batch.next_observations
    actions = batch.actions
    if symmetries is not None:
        observations, next_observations, actions = random_symmetry(
            observations, next_observations, actions, symmetries
        )
    if augment:
        observations, next_observations = (
            random_shift(observations),
            random_shift(next_observations),
        )
    if intensity > 0:
        observations, next_observations = (
            random_intensity(observations, intensity),
            random_intensity(next_observations, intensity),
        )
    device_type = observations.device.type
    with torch.autocast(
        device_type, dtype=torch.bfloat16, enabled=autocast, cache_enabled=autocast_cache
    ):
        latent = q_network.latent(observations) if rule.spr_weight > 0 else None
        predictions, targets = _predictions_and_targets(
            batch, observations, next_observations, actions, q_network, target_network, rule,
            latent,
        )  # fmt: skip
        if latent is not None:
            self_predictive = _spr_losses(
                batch, latent, q_network, target_network, augment, intensity
            )
    losses, q_taken, errors = _losses(predictions, targets, q_network, rule)
    loss = (batch.weights * losses).mean()
    spr_loss = torch.zeros((), device=losses.device)
    total = loss
    if latent is not None:
        total = loss + rule.spr_weight * (batch.weights * self_predictive).mean()
        spr_loss = self_predictive.detach().mean()
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if rule.max_grad_norm > 0:
        nn.utils.clip_grad_norm_(
            [p for p in q_network.parameters() if p.requires_grad], rule.max_grad_norm
        )
    optimizer.step()
    return UpdateResult(loss.detach(), q_taken.detach().mean(), errors, spr_loss)


def _next_actions(
    next_observations: torch.Tensor,
    next_q_target: torch.Tensor,
    q_network: QNetwork,
    rule: UpdateRule,
) -> torch.Tensor | None:
    """The online network's next-state Q-values for double DQN (None without it)."""
    if not rule.double_dqn:
        return None
    if rule.target_is_online:
        return next_q_target
    with evaluating(q_network, rule.stochastic_layers):
        return q_network(next_observations).float()


def _predictions_and_targets(
    batch: ReplaySample,
    observations: torch.Tensor,
    next_observations: torch.Tensor,
    actions: torch.Tensor,
    q_network: QNetwork,
    target_network: QNetwork,
    rule: UpdateRule,
    latent: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """What the taken actions' values are and what they should be: Q-values (B,) and TD
    targets (B,) for a Q-value head; for a distributional one, the taken action's outputs
    (B, K) and C51's projected target distribution or QR's target quantiles (B, K)."""
    with torch.no_grad():
        next_outputs = target_network.outputs(next_observations).float()  # (B, A, K)
        next_q_target = target_network.expected(next_outputs)
        next_q_online = _next_actions(next_observations, next_q_target, q_network, rule)
        if rule.head == "expected":
            targets = td_target(
                batch.returns, batch.discounts, batch.dones, next_q_target, next_q_online
            )
        else:
            chooser = next_q_target if next_q_online is None else next_q_online
            index = chooser.argmax(dim=1)[:, None, None].expand(-1, 1, next_outputs.shape[2])
            next_chosen = next_outputs.gather(1, index).squeeze(1)  # (B, K)
            if rule.head == "c51":
                targets = c51_projection(
                    next_chosen.softmax(dim=-1), batch.returns, batch.discounts, batch.dones,
                    q_network.head.support,
                )  # fmt: skip
            else:
                scale = (batch.discounts * (1.0 - batch.dones))[:, None]
                targets = batch.returns[:, None] + scale * next_chosen
    if latent is None:
        outputs = q_network.outputs(observations).float()
    else:  # SPR's pass made the latent already
        outputs = q_network.outputs_from_latent(latent).float()
    taken = outputs.gather(1, actions[:, None, None].expand(-1, 1, outputs.shape[2])).squeeze(1)
    if rule.head == "expected":
        taken = taken.squeeze(1)
    return taken, targets


def _spr_losses(
    batch: ReplaySample,
    latent: torch.Tensor,
    q_network: QNetwork,
    target_network: QNetwork,
    augment: bool,
    intensity: float,
) -> torch.Tensor:
    """SPR's loss per transition (B,), on the batch's future observations augmented as its
    observations are (each frame stack on its own draw)."""
    assert batch.future_observations is not None and batch.future_actions is not None
    assert batch.future_mask is not None
    future = batch.future_observations
    shape = future.shape
    flat = future.flatten(0, 1)
    if augment:
        flat = random_shift(flat)
    if intensity > 0:
        flat = random_intensity(flat, intensity)
    return spr_losses(
        q_network, target_network, latent, flat.view(shape), batch.future_actions,
        batch.future_mask,
    )  # fmt: skip


def _losses(
    predictions: torch.Tensor, targets: torch.Tensor, q_network: QNetwork, rule: UpdateRule
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loss of each transition (B,), the taken actions' Q-values (B,) and the errors the
    priorities follow: the TD errors of a Q-value head; a distributional head's own losses
    (Rainbow prioritises by the distributional loss)."""
    if rule.head == "c51":
        losses = -(targets * predictions.log_softmax(dim=-1)).sum(dim=-1)
        q_taken = (predictions.softmax(dim=-1) * q_network.head.support).sum(dim=-1)
        return losses, q_taken, losses.detach()
    if rule.head == "qr":
        losses = quantile_huber_loss(predictions, targets, q_network.head.fractions)
        return losses, predictions.mean(dim=-1), losses.detach()
    if rule.loss == "huber":
        losses = nn.functional.smooth_l1_loss(predictions, targets, reduction="none")
    else:
        losses = nn.functional.mse_loss(predictions, targets, reduction="none")
    return losses, predictions, (targets - predictions).detach()


@torch.no_grad()
def update_target(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Hard copy (tau = 1) or Polyak averaging: target <- tau * online + (1 - tau) * target."""
    target_params = list(target.parameters())
    online_params = list(online.parameters())
    if tau >= 1.0:
        # One fused copy (load_state_dict took 4% of an update that copies after every step).
        torch._foreach_copy_(target_params, online_params)
    else:
        torch._foreach_lerp_(target_params, online_params, tau)
    for target_buffer, online_buffer in zip(target.buffers(), online.buffers(), strict=True):
        target_buffer.copy_(online_buffer)  # batch norm's running statistics, as they are


class DQNUpdate:
    """One DQN update per `step()` on batches drawn from `replay`.

    The replay buffer may live on the training device (sampled there without host syncs) or
    on the CPU (sampled there, copied over). `compile` wraps `dqn_update` in torch.compile;
    `cuda_graph` captures sampling + update as one CUDA graph when the device is CUDA and is
    ignored elsewhere. The optimizer must be one of `playground.optim.CAPTURABLE_OPTIMIZERS`,
    built with `capturable=True`, for a graph.
    """

    def __init__(
        self,
        replay: ReplayBuffer,
        q_network: QNetwork,
        target_network: QNetwork,
        optimizer: torch.optim.Optimizer,
        rule: UpdateRule,
        batch_size: int,
        device: torch.device,
        *,
        augment: bool = False,
        intensity: float = 0.0,
        symmetries: tuple[torch.Tensor, torch.Tensor] | None = None,
        autocast: bool = False,
        compile: bool = False,
        cuda_graph: bool = False,
    ) -> None:
        self.replay = replay
        self.q_network = q_network
        self.target_network = target_network
        self.optimizer = optimizer
        self.rule = rule
        self.batch_size = batch_size
        self.device = device
        self.augment = augment
        self.intensity = intensity
        self.symmetries = symmetries
        self.autocast = autocast
        self.use_graph = cuda_graph and device.type == "cuda"
        # On a GPU the buffer is sampled without reading anything back; on the CPU a host
        # read costs nothing and the exact sampler is faster.
        self.sync_free = replay.device.type == "cuda"
        self._update: Callable[..., UpdateResult] = (
            torch.compile(dqn_update, dynamic=False) if compile else dqn_update
        )
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_outputs: UpdateResult | None = None
        self.prioritized = replay.priorities is not None
        self.beta = 0.4  # importance-sampling exponent, annealed by the training loop
        self.priority_epsilon = 1e-6
        self._static_batch: ReplaySample | None = None  # graph input when the replay is elsewhere
        self._warmup_left = GRAPH_WARMUP_UPDATES

    # ------------------------------------------------------------------ one update

    def step(self) -> UpdateResult:
        """One update; returns its loss, mean Q of the taken actions, errors and SPR loss as
        device tensors. With a CUDA graph they are the graph's outputs, overwritten by the
        next step."""
        self.replay.refresh_validity()  # host-side bookkeeping, never part of a graph
        if self.prioritized:
            return self._prioritized_update()
        if not self.use_graph:
            return self._sample_and_update()
        if self._graph is None:
            if self._warmup_left > 0:
                self._warmup_left -= 1
                return self._on_side_stream(self._sample_and_update)  # type: ignore[return-value]
            self._capture()
            if self._graph is None:  # capture failed: carry on eagerly
                return self._sample_and_update()
        if self._static_batch is not None:
            self._copy_into_static_batch()
        assert self._graph is not None and self._graph_outputs is not None
        self._graph.replay()
        return self._graph_outputs

    def _prioritized_update(self) -> UpdateResult:
        """Draw by priority, learn with importance weights, give the drawn transitions their
        new priorities (|TD error|): all on the buffer's device, no host read."""
        batch, slots = self.replay.sample_prioritized(self.batch_size, self.beta)
        if self.replay.device != self.device:
            batch = batch.to(self.device)
        result = self._run_update(batch)
        self.replay.update_priorities(
            slots, result.errors.to(self.replay.device), self.priority_epsilon
        )
        return result

    def _sample(self) -> ReplaySample:
        if self.sync_free:
            return self.replay.sample_sync_free(self.batch_size)
        return self.replay.sample(self.batch_size)

    def _sample_and_update(self) -> UpdateResult:
        batch = self._sample()
        if self.replay.device != self.device:
            batch = batch.to(self.device)
        return self._run_update(batch)

    def _run_update(self, batch: ReplaySample) -> UpdateResult:
        return self._update(
            batch,
            self.q_network,
            self.target_network,
            self.optimizer,
            self.rule,
            augment=self.augment,
            intensity=self.intensity,
            symmetries=self.symmetries,
            autocast=self.autocast,
            # The autocast weight cache must not outlive a graph capture.
            autocast_cache=not self.use_graph,
        )

    # ------------------------------------------------------------------ CUDA graph

    def _on_side_stream(
        self, work: Callable[[], tuple[torch.Tensor, ...]]
    ) -> tuple[torch.Tensor, ...]:
        """Run `work` on a side stream (the warm-up a later capture needs), ordered with the
        current stream on both sides."""
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(current)
        with torch.cuda.stream(side), warnings.catch_warnings():
            # A capturable optimizer warns when stepped outside a capture, as it is here.
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            outputs = work()
        current.wait_stream(side)
        return outputs

    def _capture(self) -> None:
        """Record sampling + update as one graph. The capture itself updates nothing; the
        caller replays it once for this step. On failure, warn and stay eager."""
        graph = torch.cuda.CUDAGraph()
        if self.replay.device == self.device:
            work = self._sample_and_update
        else:
            # Sampling stays on the host; the graph reads the batch from fixed device tensors,
            # shaped by a draw from a private generator (the run's own stream is left alone).
            shape_batch = self.replay.sample(self.batch_size, torch.Generator().manual_seed(0))
            self._static_batch = shape_batch.to(self.device)
            static_batch = self._static_batch

            def work() -> UpdateResult:
                return self._run_update(static_batch)

        try:
            torch.cuda.synchronize(self.device)
            with torch.cuda.graph(graph):
                self._graph_outputs = work()
        except RuntimeError as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else "error"
            note(
                f"capturing the DQN update as a CUDA graph failed ({first_line}); "
                "training goes on without --cuda-graph"
            )
            self.use_graph = False
            self._static_batch = None
            self._graph_outputs = None
            self.optimizer.zero_grad(set_to_none=True)
            return
        self._graph = graph

    def _copy_into_static_batch(self) -> None:
        assert self._static_batch is not None
        batch = self.replay.sample(self.batch_size)
        for static, fresh in zip(self._static_batch, batch, strict=True):
            if static is not None:
                static.copy_(fresh, non_blocking=True)
