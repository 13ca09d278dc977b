"""The learning rate a run uses when the user gives none (`--lr auto`, the default), chosen from the model's size.

BERT-base's fine-tuning lr (2e-5) is far too low for a small encoder on a few thousand examples: the offline
all-MiniLM-L6-v2 teacher (hidden 384) reached 65.4 % on a QNLI split at 2e-5 and 76.6 % after one epoch at 1e-4
(issue 12). Narrower models take larger steps, so the fine-tuning rate follows the hidden size, with the published
recipes at the ends of the table: BERT-large 1e-5 and BERT-base 2e-5 (Devlin et al.), MiniLM-size models 1e-4. A
distilled student starts from the same pretrained layers but learns from the teacher's soft targets, whose gradients
are smaller than the labels'; the LAD paper distils BERT-base-wide students at 1e-4 on its large tasks (QNLI, SST-2;
7e-4 on the small MRPC and RTE with `--preset paper`), and students keep that rate at every width. `benchmarks/lr_grid.py` measures the choice
against the grid {2e-5, 5e-5, 1e-4, 2e-4} (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from ladc.runs.config import AUTO, parse_lr

__all__ = ["TEACHER_LR_BY_HIDDEN", "STUDENT_LR", "auto_lr", "resolve_lr"]

# (smallest hidden size, fine-tuning lr), widest first: the first row whose size the model reaches applies
TEACHER_LR_BY_HIDDEN = ((1024, 1e-5), (768, 2e-5), (512, 5e-5), (0, 1e-4))
STUDENT_LR = 1e-4  # LAD paper, QNLI and SST-2 (students of BERT-base width); measured for MiniLM width in lr_grid.py


def auto_lr(hidden_size: int, role: str) -> tuple[float, str]:
    """(lr, why) for a `role` ('teacher' fine-tuning or 'student' distillation) model of width `hidden_size`."""
    if role == "student":
        return STUDENT_LR, f"auto: distillation default {STUDENT_LR:g} (LAD paper's QNLI/SST-2 rate, any width)"
    if role != "teacher":
        raise ValueError(f"role must be teacher or student, got {role!r}")
    for smallest, lr in TEACHER_LR_BY_HIDDEN:
        if hidden_size >= smallest:
            return lr, f"auto: fine-tuning default {lr:g} for hidden size {hidden_size} (>= {smallest})"
    raise AssertionError("the table ends with a row for every size")


def resolve_lr(lr: float | str, hidden_size: int, role: str) -> tuple[float, str]:
    """(the lr to train with, how it was chosen): the given number, or `auto_lr` for `auto`."""
    lr = parse_lr(lr)
    if lr == AUTO:
        return auto_lr(hidden_size, role)
    return float(lr), "given"
