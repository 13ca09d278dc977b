"""Parity of every export artifact (onnxruntime, OpenVINO, PyTorch bf16) with the PyTorch fp32 source model on real
dev data: |Δlogit|, label agreement, metric.

Each artifact is judged by its table row's `Tolerance` (ladc/deploy/artifacts.py), by default the one of its precision:

- fp32 graphs (model.onnx, model_fused.onnx) must reproduce PyTorch's logits: max |Δlogit| <= 1e-4 (the DESIGN
  identity case). Fusion replaces sub-graphs by kernels with another summation order, which we measured at a few
  1e-6 on MiniLM, far below the bound, so fused fp32 shares the bound.
- reduced precision (int8, fp16, bf16) cannot match logits; it must keep predictions and quality: label agreement >= 97 %
  and a headline-metric drop <= 1 point (100 x the metric, e.g. accuracy 91.2 -> 90.2). Regression tasks (STS-B)
  have no labels to agree on: their scores must correlate with PyTorch's at Pearson r >= 0.99 instead.
- every artifact: no NaN or inf in its logits, and a headline metric that is a number. A comparison with NaN is
  false, so without these checks a NaN drop passed "drop > 1" and an all-NaN STS-B artifact passed as a whole.

`--allow-drop X` relaxes the metric drop only ("at most X points below PyTorch's"), for when a user has read the numbers
and accepts the drift; logit, agreement, correlation and NaN checks still apply, and the manifest records the miss.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ladc.deploy.artifacts import TOLERANCES, tolerance_of
from ladc.engines.base import Tolerance
from ladc.errors import LadcError
from ladc.runs.export_manifest import ExportManifest

__all__ = [
    "Tolerance",
    "TOLERANCES",
    "ParitySet",
    "load_parity_set",
    "parity_figures",
    "judge",
    "run_parity",
    "raise_on_failure",
    "print_parity_table",
]


@dataclass
class ParitySet:
    """Dev examples, padded per batch (so batches have varied lengths), as numpy arrays for both runtimes.

    Attributes:
        batches: list of {input_ids, attention_mask[, token_type_ids]: (B, S_batch) int64}.
        labels: (N,) int64 class ids, or float32 scores for regression.
        lengths: (N,) real token counts (without padding).
        split: the dev split name the examples come from.
    """

    batches: list[dict[str, np.ndarray]]
    labels: np.ndarray
    lengths: np.ndarray
    split: str

    def describe(self) -> dict:
        return {
            "split": self.split,
            "examples": int(len(self.labels)),
            "batches": len(self.batches),
            "tokens_min": int(self.lengths.min()),
            "tokens_mean": round(float(self.lengths.mean()), 1),
            "tokens_max": int(self.lengths.max()),
        }


def load_parity_set(data, tokenizer, task, batch_size: int = 32) -> ParitySet:
    """The task's first dev split (capped by `data.dev_limit`) from the dev loader, as numpy batches.

    Args:
        data: a DataConfig (task, data_dir, dev_limit, max_seq_len).
        tokenizer: the model dir's tokenizer.
        task: its TaskSpec.
        batch_size: rows per padded batch.

    Raises:
        LadcError: the dev split is empty.
    """
    from ladc.data.data import dev_loader

    batches, labels, lengths = [], [], []
    for batch in dev_loader(data, tokenizer, task, batch_size):
        labels.append(batch.pop("labels").numpy())
        lengths.append(batch["attention_mask"].sum(dim=1).numpy())
        batches.append({name: tensor.numpy().astype(np.int64) for name, tensor in batch.items()})
    return ParitySet(batches, np.concatenate(labels), np.concatenate(lengths), task.dev_split("dev"))


def parity_figures(task, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray) -> dict:
    """Compare an artifact's logits with PyTorch's.

    Args:
        task: TaskSpec (its metrics and headline metric).
        reference: (N, C) PyTorch fp32 logits.
        candidate: (N, C) artifact logits.
        labels: (N,) gold labels.

    Returns:
        {examples, max_abs_diff, mean_abs_diff, nonfinite_logits (NaN/inf values in the artifact's logits),
        label_agreement_pct (None for regression), score_correlation (None for classification), metrics,
        headline_metric, metric_drop_points}. NaN logits give NaN differences, metrics and drop: judge fails them.

    Raises:
        LadcError: the artifact's logits have another shape than PyTorch's.
    """
    from ladc.data.metrics import metrics_from_logits

    if candidate.shape != reference.shape:
        raise LadcError(f"ONNX logits have shape {candidate.shape}, PyTorch's {reference.shape}; inputs do not match")
    diff = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
    agreement = correlation = None
    if task.is_regression:
        correlation = _correlation(candidate.reshape(-1), reference.reshape(-1))
    else:
        agreement = float((candidate.argmax(-1) == reference.argmax(-1)).mean() * 100)
    with np.errstate(invalid="ignore"):  # NaN scores: the metric is NaN, which judge fails
        metrics = metrics_from_logits(task, candidate, labels)
        reference_metric = metrics_from_logits(task, reference, labels)[task.headline_metric]
    return {
        "examples": int(len(labels)),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "nonfinite_logits": int((~np.isfinite(candidate)).sum()),
        "label_agreement_pct": agreement,
        "score_correlation": correlation,
        "metrics": metrics,
        "headline_metric": task.headline_metric,
        "metric_drop_points": round((reference_metric - metrics[task.headline_metric]) * 100, 4),
    }


def _correlation(candidate: np.ndarray, reference: np.ndarray) -> float:
    """Pearson r of two score vectors; NaN when either holds a non-finite value or is constant (nothing to compare)."""
    candidate, reference = candidate.astype(np.float64), reference.astype(np.float64)
    if not (np.isfinite(candidate).all() and np.isfinite(reference).all()):
        return math.nan
    if candidate.std() == 0 or reference.std() == 0:
        return math.nan
    return float(np.corrcoef(candidate, reference)[0, 1])


def judge(figures: dict, tolerance: Tolerance, allow_drop: float | None = None) -> dict:
    """Add `tolerance`, `within_tolerance`, `accepted` and `reason` to an artifact's parity figures.

    `within_tolerance` compares against `tolerance`; `accepted` is what decides the exit code: the same, except that
    `allow_drop`, when given, replaces the tolerance's bound on the metric drop. Every other check still applies.
    """
    failures = _failures_besides_drop(figures, tolerance)
    drop, headline = figures["metric_drop_points"], figures["headline_metric"]
    if not math.isfinite(drop):  # a NaN metric: every comparison with it is false, so say it outright
        failures.append(f"{headline} drop is {drop} (the metric is not a number)")
    drop_failure = None
    if math.isfinite(drop) and tolerance.max_metric_drop_points is not None:
        if not drop <= tolerance.max_metric_drop_points:
            drop_failure = f"{headline} drop {drop:.2f} points > {tolerance.max_metric_drop_points:g}"
    if allow_drop is None:
        accepted = not failures and drop_failure is None
    else:
        accepted = not failures and drop <= allow_drop
    failures += [drop_failure] if drop_failure else []
    reason = "; ".join(failures) or "within tolerance"
    if allow_drop is not None:
        reason += (
            f" (--allow-drop {allow_drop:g}: drop {drop:.2f} {'<=' if drop <= allow_drop else '>'} {allow_drop:g})"
        )
    return {
        **figures,
        "tolerance": asdict(tolerance),
        "within_tolerance": not failures,
        "accepted": accepted,
        "reason": reason,
    }


def _failures_besides_drop(figures: dict, tolerance: Tolerance) -> list[str]:
    """What `--allow-drop` never relaxes: non-finite logits, |Δlogit|, label agreement, score correlation."""
    failures = []
    nonfinite = figures.get("nonfinite_logits", 0)
    if nonfinite:
        failures.append(f"{nonfinite} logits are NaN or inf")
    if tolerance.max_abs_diff is not None and not figures["max_abs_diff"] <= tolerance.max_abs_diff:
        failures.append(f"max|Δlogit| {figures['max_abs_diff']:.3g} > {tolerance.max_abs_diff:g}")
    agreement = figures["label_agreement_pct"]
    if (
        tolerance.min_agreement_pct is not None
        and agreement is not None
        and not agreement >= tolerance.min_agreement_pct
    ):
        failures.append(f"label agreement {agreement:.2f}% < {tolerance.min_agreement_pct:g}%")
    correlation = figures.get("score_correlation")
    if tolerance.min_score_correlation is not None and correlation is not None:
        if not correlation >= tolerance.min_score_correlation:
            failures.append(f"score correlation with PyTorch {correlation:.4f} < {tolerance.min_score_correlation:g}")
    return failures


def run_parity(manifest: ExportManifest, root: Path, model, parity_set, task, allow_drop: float | None) -> None:
    """Fill `manifest.pytorch`, `manifest.passed` and each artifact's `parity` (figures + verdict) in place.

    Args:
        manifest: the export manifest whose `artifacts` have `path` (relative to `root`), `precision`, `provider`.
        root: the export directory.
        model: the PyTorch source classifier (the fp32 CPU reference).
        parity_set: dev examples from `load_parity_set`.
        task: TaskSpec.
        allow_drop: see `judge`.
    """
    from ladc.deploy.runners import open_artifact, predict_logits
    from ladc.engines.torch_engine import TorchRunner

    reference, _ = predict_logits(TorchRunner(model.float(), device="cpu"), parity_set.batches)
    if not np.isfinite(reference).all():  # nothing can be judged against NaN: the source model itself is broken
        rows = int((~np.isfinite(reference)).any(axis=-1).sum())
        raise LadcError(f"the PyTorch model's own logits are NaN or inf on {rows} of {len(reference)} dev examples; "
                        "its weights are broken, so no export can be checked against it")  # fmt: skip
    reference_metrics = parity_figures(task, reference, reference, parity_set.labels)["metrics"]
    manifest.pytorch = {"precision": "fp32", "metrics": reference_metrics, "headline_metric": task.headline_metric}
    manifest.parity_set = {**manifest.parity_set, **parity_set.describe()}
    feeds = list(parity_set.batches[0])
    for entry in manifest.artifacts:
        runner = open_artifact(root, entry, expected_inputs=feeds)  # one-line error for graphs the tokenizer can't feed
        logits, _ = predict_logits(runner, parity_set.batches)
        figures = parity_figures(task, reference, logits, parity_set.labels)
        if entry["precision"] == "auto":  # the engine chose (OpenVINO: bf16 on AMX CPUs, f32 elsewhere): judge that
            entry["inference_precision"] = runner.inference_precision
        entry["parity"] = judge(figures, tolerance_of(entry), allow_drop)
    manifest.passed = all(entry["parity"]["accepted"] for entry in manifest.artifacts)


def raise_on_failure(manifest: ExportManifest, output: Path) -> None:
    """Raise one LadcError naming every artifact whose parity verdict was not accepted, with its numbers."""
    failed = [entry for entry in manifest.artifacts if not entry["parity"]["accepted"]]
    if not failed:
        return
    headline = manifest.pytorch["headline_metric"]
    reference = manifest.pytorch["metrics"][headline] * 100
    details = "; ".join(
        f"{entry['path']}: {entry['parity']['reason']} ({headline} {entry['parity']['metrics'][headline] * 100:.2f} "
        f"vs PyTorch {reference:.2f}, max|Δlogit| {entry['parity']['max_abs_diff']:.3g})"
        for entry in failed
    )
    raise LadcError(
        f"parity check failed on {manifest.parity_set['examples']} dev examples: {details}. "
        f"Artifacts and export.json kept in {output}; for INT8 try --keep-head-fp32 or --exclude-nodes (and --per-channel if you chose --per-tensor), "
        "or pass --allow-drop POINTS to accept the drop"
    )


def print_parity_table(manifest: ExportManifest, console=None) -> None:
    """Rich table: one row per artifact with |Δlogit|, agreement, metric and verdict."""
    import sys

    from rich.console import Console
    from rich.table import Table

    # rich falls back to 80 columns off a terminal (CI logs, pipes), which truncates the artifact names
    console = console or Console(width=None if sys.stdout.isatty() else 130)
    headline = manifest.pytorch["headline_metric"]
    table = Table(title=f"ONNX parity vs PyTorch fp32 ({manifest.task}, {manifest.parity_set['examples']} dev)")
    columns = ("artifact", "file", "precision", "size MB", "max |Δ|", "mean |Δ|", "agree %", headline, "drop pts", "ok")
    for column in columns:
        table.add_column(column, justify="left" if column in ("artifact", "file", "precision", "ok") else "right")
    reference = f"{manifest.pytorch['metrics'][headline] * 100:.2f}"
    table.add_row("pytorch", "", "fp32", "", "", "", "", reference, "", "")
    for artifact in manifest.artifacts:
        parity = artifact["parity"]
        agreement = parity["label_agreement_pct"]
        verdict = (
            "[green]pass" if parity["within_tolerance"] else "[yellow]accepted" if parity["accepted"] else "[red]FAIL"
        )
        precision = artifact["precision"]
        if "inference_precision" in artifact:  # the engine chose: show what it ran
            precision = f"{precision}: {artifact['inference_precision']}"
        table.add_row(
            artifact.get("name", ""),
            artifact["path"],
            precision,
            f"{artifact['size_mb']:.1f}",
            f"{parity['max_abs_diff']:.2e}",
            f"{parity['mean_abs_diff']:.2e}",
            "-" if agreement is None else f"{agreement:.2f}",
            f"{parity['metrics'][headline] * 100:.2f}",
            f"{parity['metric_drop_points']:+.2f}",
            verdict,
        )
    console.print(table)
