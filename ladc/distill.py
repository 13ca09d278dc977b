"""`ladc distill`: LAD (Lin, Chen & Kao, Sensors 2023) and the kd / pkd / none baselines through one training loop."""

from __future__ import annotations

from pathlib import Path

import torch

from ladc.config import (
    DistillConfig,
    build_config,
    check_resume,
    dotted_keys,
    from_yaml_dict,
    load_yaml,
    replace,
    to_dict,
)
from ladc.errors import LadcError
from ladc.io import read_json
from ladc.lad import METHODS
from ladc.runlock import locked_run

__all__ = ["PAPER_PRESETS", "build_distill_config", "distill", "merge_dicts", "preset_dict", "teacher_base_model"]

# LAD paper, Table of hyperparameters (6-layer student, batch 32, hard_w = soft_w = 0.5, seed 42).
PAPER_PRESETS: dict[str, dict] = {
    "qnli": {"lr": 1e-4, "gate_lr": 1e-6, "epochs": 4, "warmup_ratio": 0.1, "temperature": 10, "mu": 1000},
    "sst2": {"lr": 1e-4, "gate_lr": 1e-6, "epochs": 20, "warmup_ratio": 0.3, "temperature": 20, "mu": 1000},
    "mrpc": {"lr": 7e-4, "gate_lr": 5e-6, "epochs": 20, "warmup_ratio": 0.1, "temperature": 10, "mu": 500},
    "rte": {"lr": 7e-4, "gate_lr": 3e-5, "epochs": 10, "warmup_ratio": 0.1, "temperature": 10, "mu": 1000},
}
STUDENT_INITS = ("even", "first", "teacher", "random")


def preset_dict(preset: str | None, task: str) -> dict:
    """The preset as a nested config dict (other tasks fall back to the QNLI row, as the paper does)."""
    if preset is None:
        return {}
    if preset != "paper":
        raise LadcError(f"unknown preset '{preset}'; expected 'paper'")
    row = PAPER_PRESETS.get(task, PAPER_PRESETS["qnli"])
    optim = {
        "lr": row["lr"],
        "epochs": row["epochs"],
        "warmup_ratio": row["warmup_ratio"],
        "batch_size": 32,
        "seed": 42,
    }
    return {
        "gate_lr": row["gate_lr"], "temperature": row["temperature"], "mu": row["mu"],
        "hard_weight": 0.5, "soft_weight": 0.5, "optim": optim,
    }  # fmt: skip


def merge_dicts(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = merge_dicts(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def build_distill_config(yaml_path: str | Path | None, overrides: dict) -> DistillConfig:
    """defaults < preset < YAML < CLI flags: a preset fills only what the user did not set."""
    raw = load_yaml(yaml_path) if yaml_path else {}
    from_yaml = from_yaml_dict(DistillConfig, raw, yaml_path)  # validates keys and types before anything else
    preset = overrides.get("preset") or from_yaml.preset
    task = overrides.get("data.task") or from_yaml.data.task
    if not preset:
        return build_config(DistillConfig, yaml_path, overrides)
    merged = from_yaml_dict(DistillConfig, merge_dicts(preset_dict(preset, task), raw), yaml_path)
    cfg = replace(merged, overrides)
    check_resume(cfg, [*dotted_keys(raw), *(key for key, value in overrides.items() if value is not None)])
    return cfg


def teacher_base_model(teacher_dir: str) -> str:
    """The pretrained checkpoint the teacher was tuned from (ladc.json), else the teacher dir itself."""
    base = _manifest(teacher_dir).get("base_model")
    return base if isinstance(base, str) and base else teacher_dir


def _manifest(run_dir: str) -> dict:
    """A run dir's ladc.json ({} when there is none); a corrupted one is a LadcError naming the file."""
    path = Path(run_dir) / "ladc.json"
    manifest = read_json(path) if path.is_file() else {}
    return manifest if isinstance(manifest, dict) else {}


def _check_config(cfg: DistillConfig) -> None:
    if cfg.method not in METHODS:
        raise LadcError(f"--method '{cfg.method}' is unknown; expected one of {', '.join(METHODS)}")
    if cfg.student_init not in STUDENT_INITS:
        raise LadcError(f"--student-init '{cfg.student_init}' is unknown; expected one of {', '.join(STUDENT_INITS)}")
    if not Path(cfg.teacher).is_dir():
        raise LadcError(f"teacher dir {cfg.teacher} does not exist; create it with `ladc tune-teacher`")
    if cfg.gate_lr <= 0:
        raise LadcError(f"gate_lr must be positive, got {cfg.gate_lr}")
    if cfg.student_layers is not None and cfg.student_layers < 1:
        raise LadcError(f"--student-layers must be at least 1, got {cfg.student_layers}")
    _check_teacher_dir(cfg.teacher)
    _check_device(cfg.teacher_device)


def _check_teacher_dir(teacher: str) -> None:
    """A finished teacher run or any fine-tuned HF classifier dir; not a student, not an unfinished run."""
    manifest = _manifest(teacher)
    if manifest.get("kind") == "student":
        origin = f" (distilled from {manifest['teacher']})" if manifest.get("teacher") else ""
        raise LadcError(
            f"--teacher {teacher} is a distilled student{origin}; pass a `ladc tune-teacher` run dir as the teacher"
        )
    if (Path(teacher) / "config.yaml").is_file() and not (Path(teacher) / "config.json").is_file():
        raise LadcError(
            f"--teacher {teacher} is an unfinished run (no model written yet); finish it with --resume first"
        )


def _check_device(device: str | None) -> None:
    if device is None:
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise LadcError(f"--teacher-device '{device}' is not a device; expected e.g. cpu or cuda:1") from None
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise LadcError(f"--teacher-device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if parsed.type not in ("cpu", "cuda"):
        raise LadcError(f"--teacher-device '{device}' is not supported; expected cpu or cuda[:N]")


def _check_vocab(teacher_tokenizer, init_from: str) -> None:
    """Student layers copied from `init_from` must share the teacher's WordPiece vocabulary."""
    from ladc.models import load_tokenizer

    try:
        init_tokenizer = load_tokenizer(init_from)
    except LadcError:
        return  # no tokenizer beside the weights: build_student still checks the embedding shapes
    if init_tokenizer.get_vocab() != teacher_tokenizer.get_vocab():
        raise LadcError(
            f"tokenizer mismatch: the teacher's vocabulary ({len(teacher_tokenizer)} tokens) differs from that of "
            f"student init '{init_from}' ({len(init_tokenizer)} tokens); pass --init-from with the teacher's base model"
        )


def _freeze_unused_gates(gates, mapping: tuple[int, ...], cfg: DistillConfig):
    """Freeze the gates the loss never reaches (gates[0] always; in reverse also those below the lowest mapped layer).

    DDP (accelerate, several processes) expects a gradient for every trainable parameter and raises on the
    second step otherwise; a gate without a gradient is never updated anyway, so freezing it changes nothing else.
    """
    # aggregate() uses gates[1..n] in processing order; n is set by the last aggregate the layer map reads
    used = len(gates.gates) - min(mapping) if cfg.reverse_gates else max(mapping) - 1
    for index, gate in enumerate(gates.gates):
        gate.requires_grad_(1 <= index <= used)
    return gates


def _make_loss_fn(cfg: DistillConfig, task, teacher, mapping, weights):
    """loss_fn(modules, batch) -> named terms. The teacher runs under inference_mode, once per batch."""
    from ladc.lad import distill_terms
    from ladc.train import model_inputs

    needs_teacher = cfg.method != "none"
    needs_hidden = cfg.method in ("lad", "pkd")

    def loss_fn(modules, batch):
        inputs = model_inputs(batch)
        student_out = modules["model"](**inputs, output_hidden_states=needs_hidden)
        teacher_out = None
        if needs_teacher:
            teacher_device = next(teacher.parameters()).device
            with torch.inference_mode():
                teacher_out = teacher(
                    **{k: v.to(teacher_device) for k, v in inputs.items()}, output_hidden_states=needs_hidden
                )
            # inference tensors cannot be saved for backward (the gates multiply them), so copy them out once
            device = student_out.logits.device
            teacher_out.logits = teacher_out.logits.to(device).clone()
            if needs_hidden:
                teacher_out.hidden_states = tuple(h.to(device).clone() for h in teacher_out.hidden_states)
        return distill_terms(
            cfg.method, student_out, teacher_out, batch["labels"], attention_mask=batch["attention_mask"],
            gates=modules.get("gates"), weights=weights, mapping=mapping, is_regression=task.is_regression,
            reverse=cfg.reverse_gates,
        )  # fmt: skip

    return loss_fn


@locked_run("ladc distill")  # one process per run dir: a second one is refused, naming this one
def distill(cfg: DistillConfig) -> dict:
    """Distil `cfg.teacher` into a `cfg.student_layers`-layer student with `cfg.method`.

    Writes an HF model dir to `cfg.output` plus gates.safetensors (lad), ladc.json and metrics.json.

    Returns:
        The metrics dict written to metrics.json.
    """
    from ladc.lad import GateChain, LossWeights, layer_map
    from ladc.tasks import get_task
    from ladc.teacher import check_optim, create_run_dir, finalize_run, prepare_data, resolve_run_config, versions

    cfg = resolve_run_config(cfg, DistillConfig)  # read-only; on --resume the saved config wins
    _check_config(cfg)
    task = get_task(cfg.data.task)
    check_optim(cfg.optim)
    weights = LossWeights(cfg.hard_weight, cfg.soft_weight, cfg.temperature, cfg.mu, cfg.beta)

    from accelerate.utils import set_seed  # after the checks above: a bad flag fails in a second
    from safetensors.torch import save_file

    from ladc.models import build_student, check_inputs_fit, load_classifier, load_tokenizer
    from ladc.train import OptimizerSpec, TrainPlan, fit, result_metrics

    teacher = load_classifier(cfg.teacher, task)
    teacher_layers = teacher.config.num_hidden_layers
    student_layers = cfg.student_layers or max(1, teacher_layers // 2)
    mapping = layer_map(teacher_layers, student_layers)  # raises for S >= T
    tokenizer = load_tokenizer(cfg.teacher)
    check_inputs_fit(tokenizer, teacher.config, cfg.data.max_seq_len, cfg.teacher)
    init_from = cfg.init_from or teacher_base_model(cfg.teacher)
    if cfg.student_init in ("even", "first"):
        _check_vocab(tokenizer, init_from)
    optim = cfg.optim
    set_seed(optim.seed)  # once per command: student head and gate init are part of the seeded run
    student = build_student(
        teacher, student_layers, init=cfg.student_init,
        init_from=init_from if cfg.student_init in ("even", "first") else None, mapping=mapping,
    )  # fmt: skip
    trainable = {"model": student}
    optimizers = [OptimizerSpec("student", ("model",), optim.lr, optim.weight_decay, optim.max_grad_norm)]
    if cfg.method == "lad":
        trainable["gates"] = _freeze_unused_gates(GateChain(teacher_layers, teacher.config.hidden_size), mapping, cfg)
        optimizers.append(OptimizerSpec("gates", ("gates",), cfg.gate_lr, 0.0, optim.max_grad_norm))

    train, make_loader, evaluate = prepare_data(cfg.data, optim, tokenizer, task)
    run_dir = create_run_dir(cfg)

    def save_fn(modules, directory: Path) -> None:
        modules["model"].save_pretrained(directory, safe_serialization=True)
        tokenizer.save_pretrained(directory)
        if "gates" in modules:  # training-only: not part of the deployed model, kept for analysis / resume
            save_file(
                {k: v.contiguous() for k, v in modules["gates"].state_dict().items()}, directory / "gates.safetensors"
            )

    plan = TrainPlan(
        trainable=trainable, optimizers=optimizers, loss_fn=_make_loss_fn(cfg, task, teacher, mapping, weights),
        save_fn=save_fn, frozen={"teacher": teacher}, frozen_device=cfg.teacher_device,
    )  # fmt: skip
    result = fit(
        plan, train_dataset=train, make_loader=make_loader, evaluate=evaluate, optim=optim,
        run_dir=run_dir, task=task, resume=cfg.resume,
    )  # fmt: skip
    teacher_dev = _teacher_dev(cfg.teacher)
    headline = task.headline_metric
    retention = None
    if teacher_dev and teacher_dev.get(headline):
        retention = result.best_metrics[headline] / teacher_dev[headline]
    metrics = {
        **result_metrics(result, task, len(train)),
        "method": cfg.method,
        "teacher_dev": teacher_dev,
        "retention": retention,
    }
    manifest = {
        "kind": "student",
        "task": task.name,
        "teacher": str(cfg.teacher),
        "base_model": init_from,
        "method": cfg.method,
        "teacher_layers": teacher_layers,
        "student_layers": student_layers,
        "layer_map": list(mapping) if cfg.method == "lad" else None,
        "student_init": cfg.student_init,
        "init_from": init_from,
        "seed": optim.seed,
        "data": to_dict(cfg.data),
        "config": to_dict(cfg),
        "dev": result.best_metrics,
        "teacher_dev": teacher_dev,
        "retention": retention,
        "versions": versions(),
    }
    finalize_run(run_dir, manifest, metrics)
    return metrics


def _teacher_dev(teacher_dir: str) -> dict | None:
    path = Path(teacher_dir) / "metrics.json"
    if not path.is_file():
        return None
    metrics = read_json(path)
    return metrics.get("dev") if isinstance(metrics, dict) else None
