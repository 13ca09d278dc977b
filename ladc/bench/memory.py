"""Memory of a benchmark target: peak resident-set growth of this process (exact on Linux) and GPU memory in use."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import torch

__all__ = ["MEMORY_METHOD", "PeakRss", "gpu_used_mb"]

MEMORY_METHOD = (
    "peak RSS growth of the bench process while loading the target and running one batch of the largest shape "
    "(Linux VmHWM reset via /proc/self/clear_refs, else a 1 ms psutil sampler); GPU: device memory in use after "
    "that warm-up minus before (cudaMemGetInfo), which covers PyTorch's and onnxruntime's allocators"
)


class PeakRss:
    """Peak resident-set growth (MB) of this process inside a `with` block: `delta_mb` = peak - RSS on entry.

    Linux: the kernel's high-water mark VmHWM is reset to the current RSS on entry (/proc/self/clear_refs = 5), so
    the peak is exact. Elsewhere a 1 ms psutil sampler thread approximates it.
    """

    def __enter__(self) -> PeakRss:
        import psutil

        gc.collect()
        self._process = psutil.Process()
        self._exact = _reset_hwm()
        self.start_mb = self._process.memory_info().rss / 1e6
        self._sampled_mb = self.start_mb
        self._stop = False
        if not self._exact:
            import threading

            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop:
            self._sampled_mb = max(self._sampled_mb, self._process.memory_info().rss / 1e6)
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        self._stop = True
        if not self._exact:
            self._thread.join()
        current_mb = self._process.memory_info().rss / 1e6
        self.peak_mb = max(_read_hwm_mb() if self._exact else self._sampled_mb, current_mb)
        self.delta_mb = round(max(self.peak_mb - self.start_mb, 0.0), 1)


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _read_hwm_mb() is not None
    except OSError:
        return False


def _read_hwm_mb() -> float | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    return None


def gpu_used_mb() -> float | None:
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    return (total - free) / 1e6
