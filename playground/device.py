"""Device choice: `auto` picks cuda, then mps, then cpu."""

from __future__ import annotations

import re

import torch

from playground.errors import UserError

DEVICE_CHOICES = "auto|cpu|cuda|cuda:N|mps"


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether `--precision bf16` runs in bf16 autocast on `device`: on CUDA, and on CPUs with
    bf16 instructions (AVX-512 BF16 or AMX); elsewhere a note says it runs fp32."""
    if precision != "bf16":
        return False
    if device.type == "cuda":
        return True
    if device.type == "cpu":
        cpu = torch.cpu
        if cpu._is_avx512_bf16_supported() or getattr(cpu, "_is_amx_tile_supported", bool)():
            return True
        _note("--precision bf16: this CPU has no bf16 instructions (AVX-512 BF16 or AMX); fp32")
        return False
    _note(f"--precision bf16 applies on CUDA and bf16 CPUs; {device.type} runs fp32")
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
