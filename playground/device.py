"""Device choice: `auto` picks cuda, then mps, then cpu."""

from __future__ import annotations

import ctypes
import os
import re
import sys

import torch

from playground.errors import UserError

DEVICE_CHOICES = "auto|cpu|cuda|cuda:N|mps"


_FP32 = "it runs fp32 (--precision fp32 says so and drops this note)"


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether precision bf16 (the flag's, or a preset's default) runs in bf16 autocast on
    `device`: on CUDA, and on CPUs with bf16 instructions (AVX-512 BF16 or AMX); elsewhere a
    note says it runs fp32, and how to ask for fp32 outright."""
    if precision != "bf16":
        return False
    if device.type == "cuda":
        return True
    if device.type == "cpu":
        cpu = torch.cpu
        if cpu._is_avx512_bf16_supported() or getattr(cpu, "_is_amx_tile_supported", bool)():
            return True
        _note(f"precision bf16: this CPU has no bf16 instructions (AVX-512 BF16 or AMX); {_FP32}")
        return False
    _note(f"precision bf16 applies on CUDA and bf16 CPUs; on {device.type} {_FP32}")
    return False


def _note(message: str) -> None:
    from playground.notes import note

    note(message)


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn a `--device` value into a `torch.device`, refusing ones this machine lacks."""
    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", spec)
    if match:
        if not torch.cuda.is_available():
            raise UserError(
                f"--device {spec}: no CUDA GPU is available here; use --device cpu or auto"
            )
        index = int(match.group(1) or 0)
        if index >= torch.cuda.device_count():
            raise UserError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        return torch.device("cuda", index)
    if spec == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError(
                "--device mps: Apple MPS is not available here; use --device cpu or auto"
            )
        return torch.device("mps")
    raise UserError(f"--device {spec!r} is not one of {DEVICE_CHOICES}")


ACCELERATOR_SHARE = 0.5  # what a data set or replay buffer may take of the GPU's free memory


def memory_home(nbytes: int, device: torch.device, free_bytes: int | None = None) -> torch.device:
    """Where to keep `nbytes` of training data (a GAN's data set, a replay buffer) for
    training on `device`: on a CUDA device when it takes at most ACCELERATOR_SHARE of the
    free memory (`free_bytes`, asked of the device when not given), else in host memory;
    other devices (the CPU, MPS's memory shared with the host) keep it themselves."""
    if device.type != "cuda":
        return device
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    return device if nbytes <= ACCELERATOR_SHARE * free_bytes else torch.device("cpu")


# glibc's mallopt parameters (malloc.h) and the values set: blocks up to 32 MiB (glibc's most)
# come from the heap, and up to 512 MiB of freed heap stays with the process.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD, _TRIM_THRESHOLD = 32 << 20, 512 << 20
_GLIBC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep the memory a training step frees for the next step's tensors.

    By default glibc maps each block over its (adaptive) threshold fresh from the OS and hands
    it back when freed, and trims the heap's free top: on the CPU a step's megabyte-sized
    tensors (a batch of frame stacks as floats: 3.6 MB, SPR's future stacks 7.2 MB) then
    page-fault anew every step. Measured side by side on a 2-core EPYC (docs/benchmarks.md):
    the atari-100k-spr preset's training step 1.22x faster with the memory kept, atari-100k's
    1.01x. What PyTorch's CPU tuning guide gets from jemalloc or tcmalloc, with nothing to
    install or preload.
    Linux with glibc only; a user's own MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ win.
    Returns whether it applied."""
    if not sys.platform.startswith("linux") or any(v in os.environ for v in _GLIBC_VARIABLES):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
