"""How this process was launched (alone, or as one rank of torchrun / `accelerate launch`): the world size, the `cpu`
flag accelerate needs to form a process group on a CUDA-less machine, and letting the main process go first."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["launched_world_size", "cpu_process_group", "main_process_first"]


def launched_world_size() -> int:
    """WORLD_SIZE as torchrun / `accelerate launch` export it (1 when launched alone)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE") or 1))
    except ValueError:
        return 1


def cpu_process_group() -> bool:
    """Whether accelerate must be told `cpu=True`: without it, it forms no gloo group on a CUDA-less machine and every
    torchrun rank would train alone."""
    import torch

    return launched_world_size() > 1 and not torch.cuda.is_available()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Run the block on the main process first, then on the others (e.g. build a cache once, then read it); a plain
    block when launched alone.

    The process group is formed here as the Accelerator will form it later (same `cpu` flag), so accelerate's one
    distributed state serves both.
    """
    if launched_world_size() == 1:
        yield
        return
    from accelerate import PartialState

    with PartialState(cpu=cpu_process_group()).main_process_first():
        yield
