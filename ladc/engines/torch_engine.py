"""The PyTorch engine: the HF model itself, in fp32 or under bf16 autocast (the baseline an exported artifact has to
beat), and `TorchRunner`, the runner every PyTorch classifier in ladc runs through (training eval, parity's
reference). Its file in an export dir:

- model.safetensors      --backend torch: the HF model itself, run under bf16 autocast (`torch_bf16`).
"""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

import numpy as np
import torch

from ladc.engines.base import (
    MODEL_INPUTS,
    WEIGHT_FILES,
    Artifact,
    BenchTarget,
    BuildContext,
    Engine,
    LoadOptions,
    check_tokenizer,
    has_weights,
    size_mb,
)
from ladc.runs.config import ExportConfig

__all__ = ["NAME", "ENGINE", "TorchRunner"]

NAME = "torch"


class TorchRunner:
    """A PyTorch sequence classifier as a runner (optionally under bf16 autocast, or under an accelerate
    Accelerator during training, whose mixed precision and cross-process gathering it then uses)."""

    def __init__(self, model: torch.nn.Module, device: str | None = None, bf16: bool = False, accelerator=None):
        self.accelerator = accelerator
        if accelerator is not None:
            self.device = accelerator.device  # the model is already prepared (and maybe DDP-wrapped): leave it there
            self.model = model.eval()
        else:
            self.device = torch.device(device) if device else next(model.parameters()).device
            self.model = model.to(self.device).eval()
        self.bf16 = bf16

    def prepare(self, batch: dict) -> dict[str, torch.Tensor]:
        tensors = {k: v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
                   for k, v in batch.items() if k in MODEL_INPUTS}  # fmt: skip
        return {k: v.to(self.device) for k, v in tensors.items()}

    def _contexts(self):
        if self.accelerator is not None:
            # no_grad, not inference_mode: DDP syncs buffers in forward, and inference tensors would leak into training
            return torch.no_grad(), self.accelerator.autocast()
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        return torch.inference_mode(), autocast

    def run(self, prepared: dict[str, torch.Tensor]) -> torch.Tensor:
        grad_mode, autocast = self._contexts()
        with grad_mode, autocast:
            logits = self.model(**prepared).logits
        if self.device.type == "cuda":
            torch.cuda.synchronize()  # kernels are asynchronous; without this we would time the launch only
        return logits

    def gather(self, output: torch.Tensor, labels):
        """Logits and labels of every process, the sampler's padding rows dropped (identity without accelerate)."""
        if self.accelerator is None:
            return output, labels
        return self.accelerator.gather_for_metrics((output, labels))

    def to_numpy(self, output: torch.Tensor) -> np.ndarray:
        return output.float().cpu().numpy()

    def __call__(self, batch: dict) -> np.ndarray:
        return self.to_numpy(self.run(self.prepare(batch)))


# ----------------------------------------------------------------------------- export


def _build_torch(ctx: BuildContext) -> dict:
    ctx.model.save_pretrained(ctx.build, safe_serialization=True)  # config.json is rewritten identically
    return {}


ROWS = (Artifact("torch_bf16", NAME, "model.safetensors", "bf16", _build_torch),)


def _select_skip(cfg: ExportConfig) -> str | None:
    from ladc.runs.hardware import native_bf16

    if cfg.device == "cpu" and not native_bf16() and NAME not in cfg.backends:  # unless asked for by --backend
        # emulated bf16 ran a 4096x384x1536 matmul 40x slower than fp32 on an AVX2-only EPYC (ladc/runs/hardware.py)
        return "bf16 autocast: this CPU has no native bf16 (avx512_bf16/amx)"
    return None


# ----------------------------------------------------------------------------- opening


def _missing(build: bool = False) -> str | None:
    lacking = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    return f"{' and '.join(lacking)} not installed; pip install ladc" if lacking else None


def _open_artifact(path: Path, entry: dict, threads, spinning, expected_inputs) -> TorchRunner:
    from transformers import AutoModelForSequenceClassification

    from ladc.training.models import load_config

    model = AutoModelForSequenceClassification.from_pretrained(path.parent, config=load_config(str(path.parent)))
    return TorchRunner(model, device="cpu", bf16=entry.get("precision") == "bf16")


def _load(target: BenchTarget, task, tokenizer, options: LoadOptions):
    from ladc.training.models import load_classifier

    if options.threads:  # torch's intra-op pool is per process, not per model
        torch.set_num_threads(options.threads)
    model = load_classifier(target.model_dir, task)
    check_tokenizer(tokenizer, model.config, target)
    runner = TorchRunner(model, device=options.provider, bf16=target.precision == "bf16-autocast")
    settings = {"engine": f"torch {torch.__version__}", "device": options.provider, "threads": torch.get_num_threads()}
    return runner, model.config, settings


def _cuda_problems(tensorrt: bool) -> list[str]:
    return [] if torch.cuda.is_available() else ["PyTorch sees no CUDA device"]


# ----------------------------------------------------------------------------- targets


def _export_target(export_dir: Path, entry: dict, path: Path, name: str) -> BenchTarget:
    precision = str(entry.get("precision", "fp32"))
    precision = "bf16-autocast" if precision == "bf16" else precision
    return BenchTarget(name, NAME, str(export_dir), str(export_dir), precision, size_mb([path]))


def _dir_targets(path: Path, arg: str, torch_bf16: bool) -> list[BenchTarget]:
    """An HF model dir (config.json + weights): fp32, and with `torch_bf16` also under bf16 autocast."""
    if not (path / "config.json").is_file() or not has_weights(path):
        return []
    weights_mb = size_mb(path / f for f in WEIGHT_FILES)
    targets = [BenchTarget(path.name, NAME, arg, arg, "fp32", weights_mb)]
    if torch_bf16:
        targets.append(BenchTarget(f"{path.name}+bf16", NAME, arg, arg, "bf16-autocast", weights_mb))
    return targets


ENGINE = Engine(
    name=NAME,
    label="PyTorch",
    artifacts=ROWS,
    missing=_missing,
    open_artifact=_open_artifact,
    load=_load,
    export_target=_export_target,
    dir_targets=_dir_targets,
    cuda_problems=_cuda_problems,
    select_skip=_select_skip,
    no_profile="PyTorch targets: use torch.profiler; ladc profiles the onnxruntime and OpenVINO engines",
    bench_runtime=lambda cfg, threads: {"torch_threads": threads},
    packages=("torch",),
)
