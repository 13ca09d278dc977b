"""How one optimizer step is taken: the Accelerator (precision, gradient accumulation, process group), one fused AdamW
over every parameter set with BERT's decay groups, clipping per set, and the warm-up schedule's length in steps.

Kept apart from the loop (ladc.training.train) so each can be read alone; methods declare their parameter sets as
`OptimizerSpec`s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ladc.errors import LadcError
from ladc.runs.config import OptimConfig
from ladc.runs.launch import cpu_process_group

__all__ = ["OptimizerSpec", "make_accelerator", "build_optimizer", "apply_gradients", "schedule_lengths"]


@dataclass(frozen=True)
class OptimizerSpec:
    """The lr, weight decay and clipping norm of some of the trainable modules (param groups of the one AdamW)."""

    name: str
    module_keys: tuple[str, ...]
    lr: float
    weight_decay: float = 0.01
    max_grad_norm: float | None = 1.0


def make_accelerator(optim: OptimConfig):
    from accelerate import Accelerator

    from ladc.runs.hardware import resolve_mixed_precision

    if optim.mixed_precision not in ("no", "bf16", "fp16", "auto"):
        raise LadcError(f"mixed_precision '{optim.mixed_precision}' is not one of: no, bf16, fp16, auto")
    mixed_precision = resolve_mixed_precision(optim.mixed_precision)
    if mixed_precision == "fp16" and not torch.cuda.is_available():
        raise LadcError("mixed_precision fp16 needs a CUDA GPU; on CPU use bf16 (AVX-512 BF16) or no")
    from accelerate.state import AcceleratorState, GradientState

    # accelerate keeps process-wide singletons; one process may train several stages (`ladc pipeline`: teacher, then
    # student) with different precision or accumulation, so start each from a clean state. The distributed setup
    # (PartialState) is kept.
    AcceleratorState._reset_state()
    GradientState._reset_state()
    return Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=optim.grad_accum,
        cpu=cpu_process_group(),  # without it, no gloo group on a CUDA-less machine: every rank would train alone
        # the schedule is counted in optimizer steps of the sharded loader; accelerate's default would step it
        # num_processes times per optimizer step
        step_scheduler_with_optimizer=False,
    )


def _param_groups(modules: list[nn.Module], weight_decay: float, lr: float) -> list[dict]:
    """No weight decay on biases and LayerNorm weights (BERT recipe): exactly the 1-D parameters."""
    decay, no_decay = [], []
    for module in modules:
        for param in module.parameters():
            if param.requires_grad:
                (no_decay if param.ndim < 2 else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "lr": lr},
        {"params": no_decay, "weight_decay": 0.0, "lr": lr},
    ]
    return [group for group in groups if group["params"]]


def build_optimizer(specs: list[OptimizerSpec], modules: dict[str, nn.Module]) -> torch.optim.AdamW:
    """One AdamW over every spec's modules, with the spec's lr and weight decay per param group.

    One optimizer, not one per spec: under fp16 each `optimizer.step()` of accelerate also updates the GradScaler,
    so a second optimizer would be unscaled again after that update and the scale would move twice per step.
    """
    groups = [
        g for spec in specs for g in _param_groups([modules[k] for k in spec.module_keys], spec.weight_decay, spec.lr)
    ]
    # fused AdamW: one kernel over all tensors instead of a Python loop (~7x faster step on CPU here)
    devices = {p.device.type for group in groups for p in group["params"]}
    return torch.optim.AdamW(groups, fused=devices <= {"cpu", "cuda"})


def apply_gradients(accelerator, optimizer, clip_groups: list[tuple[list[nn.Parameter], float | None]]) -> bool:
    """Unscale (fp16) once, clip each group to its own norm, step once; returns False when the scaler skipped it.

    Args:
        accelerator: the run's Accelerator (its GradScaler, if any, is the one the optimizer was prepared with).
        optimizer: the prepared optimizer holding every group's parameters.
        clip_groups: (parameters, max_grad_norm or None) per optimizer spec.
    """
    accelerator.unscale_gradients()  # no-op unless fp16; clipping must see true gradients, and only once
    for params, max_norm in clip_groups:
        if max_norm:
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], max_norm)
    optimizer.step()  # with fp16: scaler.step (skips on inf/nan) then scaler.update, once per optimizer step
    return not optimizer.step_was_skipped


def schedule_lengths(optim: OptimConfig, batches_per_epoch: int) -> tuple[int, int, int]:
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / optim.grad_accum))
    total = optim.max_steps if optim.max_steps else max(1, math.ceil(optim.epochs * steps_per_epoch))
    warmup = optim.warmup_steps if optim.warmup_steps is not None else int(optim.warmup_ratio * total)
    return steps_per_epoch, total, warmup
