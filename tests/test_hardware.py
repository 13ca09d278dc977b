"""Tests of ladc/runs/hardware.py: the CPU model and ISA flags, and `auto` mixed precision on CPUs and CUDA."""

from __future__ import annotations

import torch

from ladc.runs.hardware import cuda_native_bf16, resolve_mixed_precision


def test_auto_on_cuda_takes_bf16_only_where_the_gpu_has_it_natively():
    # a pre-Ampere GPU (V100, T4) emulates bf16, slower than fp32: auto must train in fp32 there
    assert resolve_mixed_precision("auto", cuda=True, cuda_bf16=False) == "no"
    assert resolve_mixed_precision("auto", cuda=True, cuda_bf16=True) == "bf16"
    assert resolve_mixed_precision("bf16", cuda=True, cuda_bf16=False) == "bf16"  # an explicit choice wins
    # on CPU the GPU's capability does not count
    assert resolve_mixed_precision("auto", cuda=False, flags=["avx2"], cuda_bf16=True) == "no"


def test_native_cuda_bf16_means_ampere_or_later_and_no_without_cuda():
    """On this machine's hardware: False without CUDA; on a GPU, what its compute capability says (8.0+ computes
    bf16; is_bf16_supported() with its default would also say yes on 7.x, by emulation)."""
    expected = torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8
    assert cuda_native_bf16() is expected
    if not torch.cuda.is_available():
        assert resolve_mixed_precision("auto", flags=["avx2"]) == "no"


def test_cpu_flags_and_auto_mixed_precision_follow_the_isa():
    from ladc.runs.hardware import cpu_flags, cpu_model, native_bf16, resolve_mixed_precision

    amx = "model name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8\n"
    epyc = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse avx2 fma\n"
    assert cpu_model(amx) == "Intel(R) Xeon(R) Platinum 8488C"
    assert cpu_flags(amx) == ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"]
    assert cpu_flags(epyc) == ["avx2"] and not native_bf16(cpu_flags(epyc)) and native_bf16(cpu_flags(amx))
    assert resolve_mixed_precision("auto", cuda=False, flags=cpu_flags(amx)) == "bf16"
    assert resolve_mixed_precision("auto", cuda=False, flags=cpu_flags(epyc)) == "no"
    assert resolve_mixed_precision("bf16", cuda=False, flags=cpu_flags(epyc)) == "bf16"  # explicit wins
