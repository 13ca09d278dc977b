"""Which loss term steers a LAD student's encoder (issue 22: "the hard loss stayed at 0.69 while mu * hidden was
nearly all of the loss").

For a teacher run dir and a student built the way `ladc distill` builds it, this takes the first N train batches and
computes, per loss term, the gradient it alone sends to the student's encoder (embeddings and layers; the head only
ever sees the label terms): its norm and its cosine with the gradient of the whole loss. A term whose cosine is ~1
decides the direction of every encoder update; Adam then rescales per parameter, so the others barely move it.

Usage:
    python benchmarks/loss_scale.py --teacher runs/exp/teacher-sst2 --data-dir ../shared/glue --task sst2 \
        --student-layers 3 --mu 1000 1 --batches 8 --json runs/exp/loss_scale_sst2.json
"""

from __future__ import annotations

import argparse
import json
from itertools import islice
from pathlib import Path

import torch


def _encoder_grads(student, loss) -> torch.Tensor:
    params = [p for n, p in student.named_parameters() if n.startswith(student.base_model_prefix + ".")
              and ".pooler." not in n]  # fmt: skip
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


def main() -> None:
    from ladc.commands.distill import _narrower, _pruned_student, _training_logits, teacher_base_model
    from ladc.data.tasks import get_task
    from ladc.data.training_data import prepare_data
    from ladc.runs.config import DataConfig, DistillConfig, LossWeights, OptimConfig
    from ladc.training.lad import layer_map
    from ladc.training.methods import METHODS, ModuleContext, distill_terms
    from ladc.training.models import build_student, load_classifier, load_tokenizer, resolve_student_init
    from ladc.training.pruning import student_shape
    from ladc.training.train import model_inputs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--data-dir")
    parser.add_argument("--train-file")
    parser.add_argument("--dev-file")
    parser.add_argument("--text-fields")
    parser.add_argument("--train-limit", type=int, default=8000)
    parser.add_argument("--student-layers", type=int, default=3)
    parser.add_argument("--student-hidden", type=int)
    parser.add_argument("--mu", type=float, nargs="+", default=[1000.0, 1.0])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    torch.manual_seed(0)
    task = get_task(args.task)
    data = DataConfig(task=args.task, data_dir=args.data_dir, train_file=args.train_file, dev_file=args.dev_file,
                      text_fields=tuple(args.text_fields.split(",")) if args.text_fields else None,
                      train_limit=args.train_limit)  # fmt: skip
    optim = OptimConfig(batch_size=32)
    teacher = load_classifier(args.teacher, task).eval()
    tokenizer = load_tokenizer(args.teacher)
    prepared = prepare_data(data, optim, tokenizer, task, _training_logits)
    layers = layer_map(teacher.config.num_hidden_layers, args.student_layers)
    shape = student_shape(teacher.config, args.student_layers, args.student_hidden, None, None)
    init = resolve_student_init(None, _narrower(shape, teacher.config))
    kept = None
    if init == "prune":
        student, kept = _pruned_student(teacher, shape, layers, prepared, 2048)
    else:
        student = build_student(teacher, args.student_layers, init="even",
                                init_from=teacher_base_model(args.teacher), mapping=layers)  # fmt: skip
    student.train()
    context = ModuleContext(teacher.config, student.config, layers, False, kept)
    modules = {m.name: m.build(context) for m in METHODS["lad"].modules if m.is_needed(context)}
    defaults = DistillConfig()
    rows = []
    for step, batch in enumerate(islice(iter(prepared.make_loader(0)), args.batches)):
        inputs = model_inputs(batch)
        student_out = student(**inputs, output_hidden_states=True)
        with torch.no_grad():
            teacher_out = teacher(**inputs, output_hidden_states=True)
        for mu in args.mu:
            weights = LossWeights(defaults.hard_weight, defaults.soft_weight, defaults.temperature, mu, defaults.beta)
            terms = distill_terms("lad", student_out, teacher_out, batch["labels"], batch["attention_mask"],
                                  weights=weights, mapping=layers, **modules)  # fmt: skip
            total = _encoder_grads(student, terms["loss"])
            row = {"step": step, "mu": mu, "loss": float(terms["loss"])}
            for name, weight in (("hard", weights.hard), ("soft", weights.soft), ("hidden", mu)):
                grad = _encoder_grads(student, weight * terms[name])
                row[f"{name}_value"] = float(terms[name])
                row[f"{name}_grad_norm"] = float(grad.norm())
                row[f"{name}_cosine_with_total"] = float(torch.nn.functional.cosine_similarity(grad, total, dim=0))
            rows.append(row)
    summary = {}
    for mu in args.mu:
        mine = [r for r in rows if r["mu"] == mu]
        summary[str(mu)] = {key: round(sum(r[key] for r in mine) / len(mine), 4) for key in mine[0]
                            if key not in ("step", "mu")}  # fmt: skip
    print(json.dumps({"teacher": args.teacher, "task": args.task, "student_init": init, "shape": shape.name(),
                      "batches": args.batches, "mean_over_batches": summary}, indent=1))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "mean_over_batches": summary}, indent=1))


if __name__ == "__main__":
    main()
