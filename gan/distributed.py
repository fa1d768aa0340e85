"""Data-parallel training across processes, GPUs and machines with `torchrun` and DDP.

`torchrun` starts one process per GPU (or per CPU share) and tells each its place through
the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); `Distributed.from_env`
reads it and joins the process group: NCCL for CUDA tensors, Gloo for CPU tensors. Without
torchrun (or with one process) nothing is initialised and every method is a cheap no-op, so
the training loop reads the same either way:

    torchrun --standalone --nproc_per_node=2 run.py train-gan --dataset fake --batch-size 128

Rank 0 alone writes (run folder, logs, checkpoints); the others follow its decisions through
`run_on_main`, which also carries a `UserError` raised there to every rank so none waits forever.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from playground.errors import UserError

Result = TypeVar("Result")

RANK_SEED_STRIDE = 1000
"""rank r draws its own randomness (augmentation) from seed + RANK_SEED_STRIDE * r"""


@dataclass(frozen=True)
class Distributed:
    """This process's place among the `world_size` processes training one model."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Distributed:
        """Join the process group torchrun describes in the environment (once per process)."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            # One group, two backends: collectives on CUDA tensors go through NCCL, on CPU
            # tensors through Gloo, so a run on the CPU of a GPU machine works as well.
            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
            if torch.cuda.is_available():
                torch.cuda.set_device(local_rank % torch.cuda.device_count())
            dist.init_process_group(backend=backend)
        return cls(rank, world_size, local_rank)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and logs."""
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """This rank's own seed, derived from the run's seed."""
        return seed + RANK_SEED_STRIDE * self.rank

    def local_batch_size(self, batch_size: int) -> int:
        """Each rank's share of the global `batch_size`."""
        return local_batch_size(batch_size, self.world_size)

    def shard(self, batch_size: int) -> slice:
        """This rank's slice of a global batch of `batch_size` items."""
        size = self.local_batch_size(batch_size)
        return slice(self.rank * size, (self.rank + 1) * size)

    def device(self, device: torch.device) -> torch.device:
        """The device this rank trains on: its own GPU (LOCAL_RANK) when training on CUDA."""
        if not self.enabled or device.type != "cuda":
            return device
        if device.index not in (None, self.local_rank):
            raise UserError(
                f"--device {device}: under torchrun each process uses cuda:LOCAL_RANK; "
                "pass --device cuda or auto"
            )
        return torch.device("cuda", self.local_rank)

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """`module` in DistributedDataParallel (gradients averaged across ranks), or as is."""
        if not self.enabled:
            return module
        device_ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def run_on_main(self, function: Callable[[], Result]) -> Result:
        """Call `function` on rank 0 only and hand its result to every rank; a `UserError`
        raised there is raised on every rank."""
        if not self.enabled:
            return function()
        message: list[Any] = [None, None]
        if self.is_main:
            try:
                message = [function(), None]
            except UserError as error:
                message = [None, str(error)]
        dist.broadcast_object_list(message, src=0)
        result, error = message
        if error is not None:
            raise UserError(error)
        return result

    def mean_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Average `tensor` over the ranks, in place."""
        if self.enabled:
            dist.all_reduce(tensor)
            tensor /= self.world_size
        return tensor

    def max_(self, tensor: torch.Tensor) -> torch.Tensor:
        """The largest value of `tensor` over the ranks, in place."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when `flag` is true on some rank."""
        if not self.enabled:
            return flag
        return bool(self.max_(torch.tensor([int(flag)], device=device)).item())

    def check_identical(self, module: nn.Module, what: str) -> None:
        """Raise if `module`'s parameters differ between ranks (DDP keeps them bit-identical;
        a difference means the ranks trained different models)."""
        if not self.enabled:
            return
        checksum = parameter_checksum(module)
        gathered = [torch.zeros_like(checksum) for _ in range(self.world_size)]
        dist.all_gather(gathered, checksum)
        different = [
            rank for rank, other in enumerate(gathered) if not torch.equal(other, checksum)
        ]
        if different:
            raise RuntimeError(f"the {what} of rank {self.rank} differs from ranks {different}")

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def local_batch_size(batch_size: int, world_size: int) -> int:
    """`batch_size` (the global batch) split evenly over `world_size` processes."""
    if batch_size % world_size:
        raise UserError(
            f"--batch-size {batch_size} is the global batch and must split evenly over "
            f"{world_size} processes; pass a multiple of {world_size}"
        )
    return batch_size // world_size


@torch.no_grad()
def parameter_checksum(module: nn.Module) -> torch.Tensor:
    """(2,) float64: the sum and the position-weighted sum of every parameter value."""
    sums = torch.zeros(2, dtype=torch.float64, device=next(module.parameters()).device)
    for index, parameter in enumerate(module.parameters(), start=1):
        values = parameter.detach().double()
        sums[0] += values.sum()
        sums[1] += index * (values * values).sum()
    return sums


class AllReduceSum(torch.autograd.Function):
    """Sum a tensor over the ranks; the gradient of each rank's input is the sum over ranks of
    the gradients of the result (every rank's loss depends on every rank's input)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        grad = grad_output.clone()
        dist.all_reduce(grad)
        return grad


class ProcessGroupBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose training statistics are those of the global batch, for any device.

    `nn.SyncBatchNorm` runs on CUDA only; this one all-reduces the per-channel sums with a
    differentiable all-reduce (Gloo on the CPU), so 2 CPU processes with 4 images each
    normalise exactly like 1 process with 8. Its state dict is a BatchNorm2d's."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        channels = input.shape[1]
        local = torch.cat([input.sum(dim=(0, 2, 3)), (input * input).sum(dim=(0, 2, 3))])
        total = AllReduceSum.apply(local)  # (2 * channels,), summed over ranks
        count = input.numel() // channels * dist.get_world_size()
        mean = total[:channels] / count
        variance = (total[channels:] / count - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 0.1
                unbiased = variance * count / max(count - 1, 1)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(unbiased.detach(), momentum)
        scale = torch.rsqrt(variance + self.eps)
        if self.affine:
            shift = self.bias - mean * scale * self.weight
            scale = scale * self.weight
        else:
            shift = -mean * scale
        return input * scale[None, :, None, None] + shift[None, :, None, None]


def sync_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """`module` with every BatchNorm2d computing global-batch statistics: nn.SyncBatchNorm
    on CUDA, ProcessGroupBatchNorm2d elsewhere. Parameter and buffer names are unchanged."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = ProcessGroupBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine,
                child.track_running_stats, device=device,
            )  # fmt: skip
            replacement.load_state_dict(child.state_dict())
            replacement.train(child.training)
            setattr(module, name, replacement)
        else:
            sync_batch_norm(child, device)
    return module
