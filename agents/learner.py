"""The DQN update as the training loop calls it: sample a batch, TD target, loss, backward,
optimizer step; eager, compiled, or captured as one CUDA graph.

Most of a DQN update on a GPU is launch and Python overhead: a Nature-CNN step on a batch of 32
is a few hundred small kernels. `--compile` fuses them with torch.compile (on the CPU too);
`--cuda-graph` records the whole update, replay sampling included, once and then replays it
with one launch per update. Both do exactly the arithmetic of `dqn_update`, so they learn the
same thing (the tests compare them with the plain path on the CPU).

    learner = DQNLearner(replay, q_network, target_network, optimizer, cfg, device)
    loss, q_mean = learner.step()  # device tensors, valid until the next step()
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from agents.networks import QNetwork
from agents.replay import ReplayBuffer, ReplaySample

if TYPE_CHECKING:
    from agents.dqn import DQNConfig

# Eager updates run before a CUDA graph is captured: they allocate the gradients and optimizer
# state, pick the kernels (and compile them, with --compile) outside the capture.
GRAPH_WARMUP_UPDATES = 3


class DQNLearner:
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
        cfg: DQNConfig,
        device: torch.device,
        *,
        augment: bool = False,
        autocast: bool = False,
        compile: bool = False,
        cuda_graph: bool = False,
    ) -> None:
        from agents.dqn import dqn_update  # noqa: PLC0415 (agents.dqn imports this module)

        self.replay = replay
        self.q_network = q_network
        self.target_network = target_network
        self.optimizer = optimizer
        self.cfg = cfg
        self.device = device
        self.augment = augment
        self.autocast = autocast
        self.use_graph = cuda_graph and device.type == "cuda"
        # On a GPU the buffer is sampled without reading anything back; on the CPU a host
        # read costs nothing and the exact sampler is faster.
        self.sync_free = replay.device.type == "cuda"
        self._update: Callable[..., tuple[torch.Tensor, torch.Tensor]] = (
            torch.compile(dqn_update, dynamic=False) if compile else dqn_update
        )
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_outputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self._static_batch: ReplaySample | None = None  # graph input when the replay is elsewhere
        self._warmup_left = GRAPH_WARMUP_UPDATES

    # ------------------------------------------------------------------ one update

    def step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One update; returns the loss and mean Q of the taken actions as device tensors.
        With a CUDA graph they are the graph's outputs, overwritten by the next step."""
        self.replay.refresh_validity()  # host-side bookkeeping, never part of a graph
        if not self.use_graph:
            return self._sample_and_update()
        if self._graph is None:
            if self._warmup_left > 0:
                self._warmup_left -= 1
                return self._on_side_stream(self._sample_and_update)
            self._capture()
            if self._graph is None:  # capture failed: carry on eagerly
                return self._sample_and_update()
        if self._static_batch is not None:
            self._copy_into_static_batch()
        assert self._graph is not None and self._graph_outputs is not None
        self._graph.replay()
        return self._graph_outputs

    def _sample(self) -> ReplaySample:
        if self.sync_free:
            return self.replay.sample_sync_free(self.cfg.batch_size)
        return self.replay.sample(self.cfg.batch_size)

    def _sample_and_update(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self._sample()
        if self.replay.device != self.device:
            batch = ReplaySample(*(tensor.to(self.device, non_blocking=True) for tensor in batch))
        return self._run_update(batch)

    def _run_update(self, batch: ReplaySample) -> tuple[torch.Tensor, torch.Tensor]:
        return self._update(
            batch,
            self.q_network,
            self.target_network,
            self.optimizer,
            self.cfg,
            augment=self.augment,
            autocast=self.autocast,
            # The autocast weight cache must not outlive a graph capture.
            autocast_cache=not self.use_graph,
        )

    # ------------------------------------------------------------------ CUDA graph

    def _on_side_stream(
        self, work: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
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
            shape_batch = self.replay.sample(self.cfg.batch_size, torch.Generator().manual_seed(0))
            self._static_batch = ReplaySample(*(tensor.to(self.device) for tensor in shape_batch))
            static_batch = self._static_batch

            def work() -> tuple[torch.Tensor, torch.Tensor]:
                return self._run_update(static_batch)

        try:
            torch.cuda.synchronize(self.device)
            with torch.cuda.graph(graph):
                self._graph_outputs = work()
        except RuntimeError as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else "error"
            print(
                f"note: capturing the DQN update as a CUDA graph failed ({first_line}); "
                "training goes on without --cuda-graph",
                file=sys.stderr,
            )
            self.use_graph = False
            self._static_batch = None
            self._graph_outputs = None
            self.optimizer.zero_grad(set_to_none=True)
            return
        self._graph = graph

    def _copy_into_static_batch(self) -> None:
        assert self._static_batch is not None
        batch = self.replay.sample(self.cfg.batch_size)
        for static, fresh in zip(self._static_batch, batch, strict=True):
            static.copy_(fresh, non_blocking=True)
