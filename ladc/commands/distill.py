"""`ladc distill`: LAD (Lin, Chen & Kao, Sensors 2023) and the kd / pkd / none baselines through one training loop."""

from __future__ import annotations

from pathlib import Path

import torch

from ladc.errors import LadcError
from ladc.runs.config import DistillConfig, check_config, to_dict
from ladc.runs.manifest import RunManifest, read_manifest, recorded_dev
from ladc.runs.runs import (
    SAVED_CONFIG,
    build_run_config,
    create_run_dir,
    finalize_run,
    resolve_run_config,
    run_command,
    versions,
)
from ladc.training.methods import METHODS, ModuleContext, distill_terms, get_method
from ladc.training.models import STUDENT_INITS

__all__ = ["build_distill_config", "distill", "teacher_base_model"]


def build_distill_config(yaml_path: str | Path | None, overrides: dict) -> DistillConfig:
    """The config `ladc distill` runs with: defaults < preset < YAML < CLI flags (see ladc.runs.runs.build_run_config)."""
    return build_run_config(DistillConfig, yaml_path, overrides)


def teacher_base_model(teacher_dir: str) -> str:
    """The pretrained checkpoint the teacher was tuned from (its manifest), else the teacher dir itself."""
    manifest = read_manifest(teacher_dir)
    return manifest.base_model if manifest is not None and manifest.base_model else teacher_dir


def _check_config(cfg: DistillConfig) -> None:
    """Every knob's own check (ladc/runs/config.py), then what needs the method and init registries or the disk."""
    check_config(cfg)
    if cfg.method not in METHODS:
        raise LadcError(f"--method '{cfg.method}' is unknown; expected one of {', '.join(METHODS)}")
    if cfg.student_init is not None and cfg.student_init not in STUDENT_INITS:
        raise LadcError(f"--student-init '{cfg.student_init}' is unknown; expected one of {', '.join(STUDENT_INITS)}")
    if not Path(cfg.teacher).is_dir():
        raise LadcError(f"teacher dir {cfg.teacher} does not exist; create it with `ladc tune-teacher`")
    METHODS[cfg.method].layer_choice(cfg.layer_choice)
    _check_teacher_dir(cfg.teacher)
    _check_device(cfg.teacher_device)


def _check_teacher_dir(teacher: str) -> None:
    """A finished teacher run or any fine-tuned HF classifier dir; not a student, not an unfinished run."""
    manifest = read_manifest(teacher) or RunManifest()
    if manifest.kind == "student":
        origin = f" (distilled from {manifest.teacher})" if manifest.teacher else ""
        raise LadcError(
            f"--teacher {teacher} is a distilled student{origin}; pass a `ladc tune-teacher` run dir as the teacher"
        )
    if (Path(teacher) / SAVED_CONFIG).is_file() and not (Path(teacher) / "config.json").is_file():
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
    from ladc.training.models import load_tokenizer

    try:
        init_tokenizer = load_tokenizer(init_from)
    except LadcError:
        return  # no tokenizer beside the weights: build_student still checks the embedding shapes
    if init_tokenizer.get_vocab() != teacher_tokenizer.get_vocab():
        raise LadcError(
            f"tokenizer mismatch: the teacher's vocabulary ({len(teacher_tokenizer)} tokens) differs from that of "
            f"student init '{init_from}' ({len(init_tokenizer)} tokens); pass --init-from with the teacher's base model"
        )


def _narrower(shape, teacher_config) -> bool:
    """A student whose layers cannot take the teacher's weights whole (any of width, FFN or heads smaller)."""
    return (shape.hidden_size, shape.intermediate_size, shape.num_heads) != (
        teacher_config.hidden_size, teacher_config.intermediate_size, teacher_config.num_attention_heads,
    )  # fmt: skip


def _shape_of(config) -> dict:
    return {
        "num_layers": config.num_hidden_layers, "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size, "num_heads": config.num_attention_heads,
    }  # fmt: skip


def _pruned_student(teacher, shape, mapping, data, samples: int):
    """The teacher sliced to `shape` at its most active units on `samples` train rows (Minitron), and the teacher
    channel of each student channel (the projection starts from that selection)."""
    from itertools import islice

    from ladc.training.pruning import measure_importance, select_kept, slice_teacher

    loader = data.make_loader(0)
    batches = -(-min(samples, len(data.train)) // max(1, loader.batch_size or 1))
    importance = measure_importance(teacher, islice(iter(loader), batches))
    kept = select_kept(importance, shape, mapping)
    return slice_teacher(teacher, shape, kept), kept.hidden


def _extra_modules(method, context: ModuleContext, fixed_projection: bool):
    """(the method's modules this student trains, {name: module} it only reads): with `fixed_projection` the
    projection stays the kept channels' selection, frozen and without an optimizer."""
    extras = [extra for extra in method.modules if extra.is_needed(context)]
    fixed = {}
    if fixed_projection:
        for extra in [extra for extra in extras if extra.name == "projection"]:
            extras.remove(extra)
            fixed[extra.name] = extra.build(context).requires_grad_(False)
    return extras, fixed


def _make_loss_fn(cfg: DistillConfig, task, teacher, loss_mapping, weights, fixed_modules=None):
    """loss_fn(modules, batch) -> named terms. The teacher runs under inference_mode, once per batch.

    `fixed_modules`: extra modules the loss reads but nothing trains (`--projection fixed`)."""
    from ladc.training.train import model_inputs

    method = get_method(cfg.method)
    needs_hidden = method.needs_hidden

    def loss_fn(modules, batch):
        inputs = model_inputs(batch)
        student_out = modules["model"](**inputs, output_hidden_states=needs_hidden)
        teacher_out = None
        if method.needs_teacher:
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
        extra = {m.name: modules[m.name] for m in method.modules if m.name in modules}
        for name, module in (fixed_modules or {}).items():
            extra[name] = module.to(student_out.logits.device)
        return distill_terms(
            method, student_out, teacher_out, batch["labels"], batch["attention_mask"], weights=weights,
            mapping=loss_mapping, is_regression=task.is_regression, reverse=cfg.reverse_gates, **extra,
        )  # fmt: skip

    return loss_fn


@run_command("ladc distill")  # default output, and one process per run dir
def distill(cfg: DistillConfig) -> dict:
    """Distil `cfg.teacher` into a `cfg.student_layers`-layer student with `cfg.method`.

    Writes an HF model dir to `cfg.output` plus one NAME.safetensors per extra module of the method (LAD's
    gates.safetensors), ladc.json and metrics.json.

    Returns:
        The metrics dict written to metrics.json.
    """
    from ladc.data.tasks import get_task
    from ladc.training.lad import layer_map

    cfg = resolve_run_config(cfg)  # read-only; on --resume the saved config wins
    _check_config(cfg)
    task = get_task(cfg.data.task)
    weights = cfg.loss_weights

    from accelerate.utils import set_seed  # after the checks above: a bad flag fails in a second
    from safetensors.torch import save_file

    from ladc.data.training_data import prepare_data
    from ladc.training.lr import resolve_lr
    from ladc.training.models import (
        build_student,
        check_inputs_fit,
        load_classifier,
        load_tokenizer,
        resolve_student_init,
    )
    from ladc.training.optimizer import OptimizerSpec
    from ladc.training.pruning import student_config, student_shape
    from ladc.training.train import TrainPlan, fit, result_metrics

    teacher = load_classifier(cfg.teacher, task)
    teacher_layers = teacher.config.num_hidden_layers
    student_layers = cfg.student_layers or max(1, teacher_layers // 2)
    mapping = layer_map(teacher_layers, student_layers)  # raises for S >= T; the even init copies these layers
    method = get_method(cfg.method)
    loss_mapping = method.loss_layer_map(cfg.layer_choice, teacher_layers, student_layers)
    tokenizer = load_tokenizer(cfg.teacher)
    check_inputs_fit(tokenizer, teacher.config, cfg.data.max_seq_len, cfg.teacher)
    shape = student_shape(
        teacher.config, student_layers, cfg.student_hidden, cfg.student_intermediate, cfg.student_heads
    )
    init = resolve_student_init(cfg.student_init, _narrower(shape, teacher.config), cfg.init_from)
    if cfg.projection == "fixed" and init != "prune":
        raise LadcError(
            f"--projection fixed compares the channels a pruned student kept; --student-init {init} keeps none"
        )
    init_from = cfg.init_from or teacher_base_model(cfg.teacher)
    if init in ("even", "first"):
        _check_vocab(tokenizer, init_from)
    optim = cfg.optim
    set_seed(optim.seed)  # once per command: student head and gate init are part of the seeded run
    # seeded by itself (draws nothing from the global RNG); warns when the teacher trained on our holdout rows
    data = prepare_data(cfg.data, optim, tokenizer, task, _training_logits, teacher=cfg.teacher)
    kept_channels = None
    if init == "prune":
        student, kept_channels = _pruned_student(teacher, shape, mapping, data, cfg.prune_samples)
    else:
        student = build_student(
            teacher, student_layers, init=init, init_from=init_from if init in ("even", "first") else None,
            mapping=mapping, config=student_config(teacher.config, shape) if init == "random" else None,
        )  # fmt: skip
    trainable = {"model": student}
    lr, lr_source = resolve_lr(optim.lr, student.config.hidden_size, "student")
    optimizers = [OptimizerSpec("student", ("model",), lr, optim.weight_decay, optim.max_grad_norm)]
    context = ModuleContext(teacher.config, student.config, loss_mapping or mapping, cfg.reverse_gates, kept_channels)
    extras, fixed_modules = _extra_modules(method, context, fixed_projection=cfg.projection == "fixed")
    for extra in extras:
        trainable[extra.name] = extra.build(context)
        optimizers.append(
            OptimizerSpec(extra.name, (extra.name,), getattr(cfg, extra.lr_field), 0.0, optim.max_grad_norm)
        )

    run_dir = create_run_dir(cfg)

    def save_fn(modules, directory: Path) -> None:
        modules["model"].save_pretrained(directory, safe_serialization=True)
        tokenizer.save_pretrained(directory)
        for extra in extras:  # training-only: not part of the deployed model, kept for analysis / resume
            state = {k: v.contiguous() for k, v in modules[extra.name].state_dict().items()}
            save_file(state, directory / f"{extra.name}.safetensors")

    loss_fn = _make_loss_fn(cfg, task, teacher, loss_mapping, weights, fixed_modules)
    plan = TrainPlan(
        trainable=trainable, optimizers=optimizers, loss_fn=loss_fn, save_fn=save_fn, frozen={"teacher": teacher},
        frozen_device=cfg.teacher_device,
    )  # fmt: skip
    result = fit(
        plan, make_loader=data.make_loader, evaluate=data.select, optim=optim,
        run_dir=run_dir, task=task, resume=cfg.resume, select_split=data.select_split, score_dev=data.score_dev,
        select_examples=data.select_examples,
    )  # fmt: skip
    teacher_dev = recorded_dev(cfg.teacher)
    headline = task.headline_metric
    retention = None
    if teacher_dev and teacher_dev.get(headline):
        retention = result.dev[headline] / teacher_dev[headline]
    metrics = {
        **result_metrics(result, task, len(data.train), data.holdout_examples),
        "lr": lr,
        "lr_source": lr_source,
        "method": cfg.method,
        "teacher_dev": teacher_dev,
        "retention": retention,
    }
    manifest = RunManifest(
        kind="student", task=task.name, teacher=str(cfg.teacher), base_model=init_from, method=cfg.method,
        teacher_layers=teacher_layers, student_layers=student_layers,
        layer_map=list(loss_mapping) if method.records_layer_map else None, student_init=init,
        student_shape=shape.as_dict(), teacher_shape=_shape_of(teacher.config),
        init_from=init_from, seed=optim.seed, data=to_dict(cfg.data), config=to_dict(cfg), dev=result.dev,
        teacher_dev=teacher_dev, retention=retention, lr=lr, lr_source=lr_source,
        mixed_precision=result.mixed_precision, versions=versions(), holdout=data.holdout,
    )  # fmt: skip
    finalize_run(run_dir, manifest, metrics)
    return metrics


def _training_logits(model, accelerator, loader):
    """Training's evaluators run the model through the deploy runner, as export parity, bench and evaluate do."""
    from ladc.deploy.runners import predict_logits
    from ladc.engines.torch_engine import TorchRunner

    return predict_logits(TorchRunner(model, accelerator=accelerator), loader)
