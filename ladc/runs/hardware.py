"""What this machine's CPU (or GPU) can do natively, read once from /proc/cpuinfo: the ISA flags that decide which
precision and engine are fast here (AVX-512 VNNI/BF16, AMX), and the `auto` mixed-precision choice built on them.

Measured on a 2-core AMD EPYC with AVX2 only: a 4096x384x1536 matmul ran at 49 GFLOP/s in fp32 and 1.2 GFLOP/s in
bf16 (emulated). bf16 is a 2-3x win only where the CPU has it natively, so nothing here is hard-wired.
"""

from __future__ import annotations

import platform
from pathlib import Path

__all__ = ["ISA_FLAGS", "cpu_model", "cpu_flags", "cuda_native_bf16", "native_bf16", "resolve_mixed_precision"]

# flags recorded with every timing; the last four decide whether int8/bf16 kernels are native
ISA_FLAGS = ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def _cpuinfo_field(name: str, cpuinfo: str | None = None) -> str:
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.is_file() else ""
    return next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith(name)), "")


def cpu_model(cpuinfo: str | None = None) -> str:
    """`model name` from /proc/cpuinfo (what `lscpu` prints as Model name), else the platform's processor string."""
    return _cpuinfo_field("model name", cpuinfo) or platform.processor() or platform.machine()


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The ISA_FLAGS this CPU reports, in ISA_FLAGS order (empty off Linux)."""
    present = set(_cpuinfo_field("flags", cpuinfo).split())
    return [flag for flag in ISA_FLAGS if flag in present]


def native_bf16(flags: list[str] | None = None) -> bool:
    """True when the CPU computes bf16 in hardware (AVX-512 BF16 or AMX-BF16)."""
    flags = cpu_flags() if flags is None else flags
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cuda_native_bf16() -> bool:
    """True when this machine's CUDA GPU computes bf16 in hardware (Ampere and later), False without CUDA.

    `torch.cuda.is_bf16_supported()` also says yes, by default, where bf16 is only emulated (pre-Ampere GPUs such as
    V100 or T4), where it is slower than fp32: ask without emulation.
    """
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def resolve_mixed_precision(
    requested: str, cuda: bool | None = None, flags: list[str] | None = None, cuda_bf16: bool | None = None
) -> str:
    """`auto` -> `bf16` on a CUDA GPU or a CPU with native bf16, else `no`; other values unchanged.

    Args:
        requested: no | bf16 | fp16 | auto.
        cuda: whether training runs on CUDA (None: torch.cuda.is_available()).
        flags: CPU flags (None: this machine's).
        cuda_bf16: whether that GPU computes bf16 natively (None: `cuda_native_bf16()`).
    """
    if requested != "auto":
        return requested
    import torch

    cuda = torch.cuda.is_available() if cuda is None else cuda
    if cuda:
        return "bf16" if (cuda_native_bf16() if cuda_bf16 is None else cuda_bf16) else "no"
    return "bf16" if native_bf16(flags) else "no"
