"""The one training loop (accelerate) shared by tune-teacher and distill: AdamW + warm-up, eval, best, resume.

The kept checkpoint is picked by an evaluator on a selection split (a train holdout by default, or dev), or is the
last step's; dev is then scored once, after training, for the kept and the last model (`TrainResult.dev`, `dev_last`).

The method is supplied as a `loss_fn(modules, batch) -> dict of named loss terms` (with a total under 'loss'); the loop
never branches on the method name. Checkpoints are accelerate states written atomically every `save_steps`, so an
interrupted run continues from the saved step with `--resume`, in the same data order.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ladc.data.tasks import TaskSpec
from ladc.runs.checkpoint_files import (
    CHECKPOINT_DIR,
    STATE_FILE,
    complete_checkpoints,
    latest_checkpoint,
    remove_stale_temps,
)
from ladc.runs.config import OptimConfig
from ladc.runs.faults import kill_point
from ladc.runs.io import atomic_dir, atomic_write_json
from ladc.training.checkpoints import KEEP_CHECKPOINTS, check_world_size, graceful_sigint, kept_index
from ladc.training.optimizer import OptimizerSpec, apply_gradients, build_optimizer, make_accelerator, schedule_lengths

__all__ = ["TrainPlan", "TrainResult", "fit", "model_inputs", "result_metrics"]


@dataclass
class TrainPlan:
    """What a method hands to `fit`: modules, optimizers, the loss and how to save the deployable model.

    Attributes:
        trainable: modules trained jointly, e.g. {'model': student, 'gates': gate_chain}.
        optimizers: one spec per parameter set (own lr, decay, clip norm); every trainable key in exactly one.
        loss_fn: (prepared trainable modules, batch) -> {'loss': total, other named terms...}.
        save_fn: (unwrapped trainable modules, directory) -> None; writes the HF model dir (+ extras).
        eval_key: which trainable module produces logits for dev evaluation.
        frozen: modules used but never trained (the teacher); placed on `frozen_device` or the accelerator's device.
    """

    trainable: dict[str, nn.Module]
    optimizers: list[OptimizerSpec]
    loss_fn: Callable[[dict[str, nn.Module], dict], dict[str, torch.Tensor]]
    save_fn: Callable[[dict[str, nn.Module], Path], None]
    eval_key: str = "model"
    frozen: dict[str, nn.Module] = field(default_factory=dict)
    frozen_device: str | None = None


@dataclass
class TrainResult:
    """What `fit` returns.

    Attributes:
        best_step: the step of the kept checkpoint (`best/`).
        best_metrics: its metrics on the selection split ({} when the last step is kept without selection).
        dev: dev metrics of the kept checkpoint, scored after training (= best_metrics when selecting on dev).
        dev_last: dev metrics of the last step's model.
        selected_on: train-holdout | dev | last.
        mixed_precision: the precision trained in (`auto` resolved for this machine): no | bf16 | fp16.
    """

    best_step: int
    best_metrics: dict[str, float]
    final_step: int
    history: list[dict]
    train_samples_per_s: float
    resumed_from_step: int | None
    dev: dict[str, float] = field(default_factory=dict)
    dev_last: dict[str, float] = field(default_factory=dict)
    selected_on: str = "dev"
    mixed_precision: str = "no"


def model_inputs(batch: dict) -> dict:
    """The keys a BERT forward takes (drops labels and idx)."""
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


class _Loop:
    """State of one `fit` call; split out so each phase (setup, step, eval, checkpoint) stays small."""

    def __init__(self, plan, make_loader, evaluate, optim, run_dir, task, select_split, select_examples, clock):
        from transformers import get_linear_schedule_with_warmup

        self.plan, self.optim, self.run_dir, self.task, self.clock = plan, optim, Path(run_dir), task, clock
        self.make_loader, self.evaluate = make_loader, evaluate
        self.select_split, self.select_examples = select_split, select_examples
        self.accelerator = make_accelerator(optim)
        covered = [k for spec in plan.optimizers for k in spec.module_keys]
        if sorted(covered) != sorted(plan.trainable):
            raise ValueError(f"optimizer specs cover {covered}, trainable modules are {list(plan.trainable)}")
        # the loop runs over the loader as sharded across processes: count steps on that one, not the full loader
        sharded_batches = len(self.accelerator.prepare(make_loader(0)))
        self.steps_per_epoch, self.total_steps, warmup = schedule_lengths(optim, sharded_batches)
        keys = list(plan.trainable)
        prepared = self.accelerator.prepare(*[plan.trainable[k] for k in keys])
        prepared = prepared if isinstance(prepared, tuple) else (prepared,)
        self.modules = dict(zip(keys, prepared, strict=True))
        optimizer = build_optimizer(plan.optimizers, self.modules)
        scheduler = get_linear_schedule_with_warmup(optimizer, warmup, self.total_steps)  # scales each group's lr
        self.optimizer, self.scheduler = self.accelerator.prepare(optimizer, scheduler)
        self.clip_groups = [
            ([p for k in spec.module_keys for p in self.modules[k].parameters()], spec.max_grad_norm)
            for spec in plan.optimizers
        ]
        device = plan.frozen_device or self.accelerator.device
        for module in plan.frozen.values():
            module.to(device).eval().requires_grad_(False)
        self.global_batch = optim.batch_size * optim.grad_accum * self.accelerator.num_processes  # samples per step
        self.step, self.best_step, self.best_metrics, self.history = 0, 0, {}, []
        self.resumed_from = None

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> None:
        if not self.accelerator.is_main_process:
            return
        final = self.run_dir / CHECKPOINT_DIR / f"step-{self.step}"
        with atomic_dir(final) as tmp:
            self.accelerator.save_state(str(tmp))
            kill_point("checkpoint-write")
            state = {"step": self.step, "best_step": self.best_step, "best_metrics": self.best_metrics}
            state.update(world_size=self.accelerator.num_processes, global_batch=self.global_batch)
            atomic_write_json(tmp / STATE_FILE, {**state, "history": self.history})
            kill_point("checkpoint-rename")
        kill_point("checkpoint-done", step=self.step)
        # a BERT-base state is ~1.3 GB: keep the newest two, so a damaged newest one still leaves one to resume from
        for old in complete_checkpoints(self.run_dir)[KEEP_CHECKPOINTS:]:
            (old / STATE_FILE).unlink()  # first: a prune cut short leaves an incomplete checkpoint, never a bad one
            shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, checkpoint: Path) -> None:
        state = json.loads((checkpoint / STATE_FILE).read_text())
        check_world_size(state, checkpoint, self.accelerator.num_processes, self.global_batch)
        self.accelerator.load_state(str(checkpoint))
        self.step, self.best_step = state["step"], state["best_step"]
        self.best_metrics, self.history = state["best_metrics"], state["history"]
        self.resumed_from = self.step

    # ------------------------------------------------------------------ evaluation
    def run_eval(self) -> dict:
        """Score the selection split; keep this step as `best/` unless an earlier one beat it by more than the noise
        (`kept_index`)."""
        model = self.modules[self.plan.eval_key]
        metrics = self.evaluate(model, self.accelerator)
        headline = self.task.headline_metric
        earlier = [entry[self.select_split][headline] for entry in self.history if self.select_split in entry]
        if kept_index([*earlier, metrics[headline]], self.select_examples) == len(earlier):
            self.keep(metrics)
        for module in self.modules.values():
            module.train()
        return metrics

    def keep(self, metrics: dict) -> None:
        """Write the current modules to `best/` as the kept checkpoint."""
        self.best_step, self.best_metrics = self.step, metrics
        if self.accelerator.is_main_process:
            unwrapped = {k: self.accelerator.unwrap_model(m) for k, m in self.modules.items()}
            with atomic_dir(self.run_dir / "best") as tmp:
                self.plan.save_fn(unwrapped, tmp)
                kill_point("best-write")

    def score_dev(self, score: Callable) -> tuple[dict, dict]:
        """(dev metrics of the kept checkpoint, of the last step's model), each scored once, after training."""
        model = self.modules[self.plan.eval_key]
        last = score(model, self.accelerator)
        if self.best_step == self.step:
            return last, last
        self.accelerator.wait_for_everyone()  # best/ is written by the main process
        unwrapped = self.accelerator.unwrap_model(model)
        kept = type(unwrapped).from_pretrained(self.run_dir / "best")  # the kept checkpoint is an HF model dir
        unwrapped.load_state_dict(kept.state_dict())
        return score(model, self.accelerator), last

    # ------------------------------------------------------------------ training
    def train_step(self, batch: dict) -> dict[str, float]:
        with self.accelerator.accumulate(*self.modules.values()):
            with self.accelerator.autocast():
                terms = self.plan.loss_fn(self.modules, batch)
            self.accelerator.backward(terms["loss"])  # one backward over the summed loss
            if self.accelerator.sync_gradients:
                if apply_gradients(self.accelerator, self.optimizer, self.clip_groups):
                    self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return {k: float(v.detach()) for k, v in terms.items()}

    def run(self) -> TrainResult:
        with graceful_sigint(self.accelerator.num_processes == 1) as interrupted:
            return self._run(interrupted)

    def _run(self, interrupted: Callable[[], bool]) -> TrainResult:
        from tqdm.auto import tqdm

        optim, accelerator = self.optim, self.accelerator
        eval_steps = optim.eval_steps or self.steps_per_epoch
        save_steps = optim.save_steps or eval_steps
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not accelerator.is_main_process, unit="step")
        for module in self.modules.values():
            module.train()
        samples, started, paused = 0, self.clock(), 0.0  # paused: eval + checkpoint time, not training
        running: dict[str, list[float]] = {}
        epoch = self.step // self.steps_per_epoch
        while self.step < self.total_steps:
            loader = accelerator.prepare(self.make_loader(epoch))
            # accelerate's wrapper re-seeds the sampler with its own iteration count on __iter__: pin it to the epoch
            loader.set_epoch(epoch)
            done_in_epoch = (self.step - epoch * self.steps_per_epoch) * optim.grad_accum
            for index, batch in enumerate(loader):
                if index < done_in_epoch:
                    continue  # replaying the saved epoch's order; skipped batches cost a collate, no forward
                # dropout masks depend only on (seed, micro-batch), not on the global RNG stream, which every new
                # DataLoader iterator advances: this is what makes a resumed run match an uninterrupted one
                torch.manual_seed(optim.seed * 1_000_003 + epoch * 100_003 + index)
                terms = self.train_step(batch)
                samples += batch["input_ids"].shape[0] * accelerator.num_processes
                for k, v in terms.items():
                    running.setdefault(k, []).append(v)
                if not accelerator.sync_gradients:
                    continue
                self.step += 1
                bar.update(1)
                kill_point("train-step")
                if self.step % optim.log_steps == 0 or self.step == self.total_steps:
                    rate = samples / max(self.clock() - started - paused, 1e-9)
                    means = {k: float(np.mean(v)) for k, v in running.items()}
                    lr = self.scheduler.get_last_lr()[0]
                    self.history.append({"step": self.step, **means, "lr": lr, "samples_per_s": rate})
                    bar.set_postfix(
                        {**{k: f"{v:.4g}" for k, v in means.items()}, "lr": f"{lr:.2e}", "samples/s": f"{rate:.1f}"}
                    )
                    running = {}
                pause_started = self.clock()
                evaluating = self.step % eval_steps == 0 or self.step == self.total_steps
                if evaluating and self.evaluate is not None:
                    metrics = self.run_eval()
                    self.history.append({"step": self.step, self.select_split: metrics})
                    shown = json.dumps({k: round(v, 4) for k, v in metrics.items()})
                    if accelerator.is_main_process:  # tqdm.write prints whether or not the bar is disabled
                        bar.write(f"step {self.step}: {self.select_split} {shown}")
                elif self.evaluate is None and self.step == self.total_steps:
                    self.keep({})  # select_on last: no selection pass, the last step is the kept one
                saving = self.step < self.total_steps and (self.step % save_steps == 0 or interrupted())
                if saving:
                    self.save_checkpoint()
                if interrupted() and self.step < self.total_steps:
                    bar.close()
                    raise KeyboardInterrupt  # after the checkpoint of this step: --resume loses nothing
                paused += self.clock() - pause_started
                if self.step >= self.total_steps:
                    break
            epoch += 1
        bar.close()
        elapsed = self.clock() - started - paused
        selected_on = (
            "last" if self.evaluate is None else ("train-holdout" if self.select_split == "holdout" else "dev")
        )
        return TrainResult(
            best_step=self.best_step,
            best_metrics=self.best_metrics,
            final_step=self.step,
            history=self.history,
            train_samples_per_s=samples / max(elapsed, 1e-9),
            resumed_from_step=self.resumed_from,
            selected_on=selected_on,
            mixed_precision=str(self.accelerator.mixed_precision),
        )


def result_metrics(result: TrainResult, task: TaskSpec, train_examples: int, holdout_examples: int = 0) -> dict:
    """The metrics.json fields every training command writes (dev metrics, selection, steps, speed, resume, the
    precision trained in, history).

    `dev` is the kept checkpoint's dev score and `dev_last` the last step's; `selection` says what picked the kept
    checkpoint (`on`: train-holdout | dev | last), on how many examples, and its score there.
    """
    return {
        "task": task.name,
        "dev": result.dev,
        "dev_last": result.dev_last,
        "selection": {"on": result.selected_on, "examples": holdout_examples, "best": result.best_metrics},
        "best_step": result.best_step,
        "final_step": result.final_step,
        "train_examples": train_examples,
        "train_samples_per_s": result.train_samples_per_s,
        "resumed_from_step": result.resumed_from_step,
        "mixed_precision": result.mixed_precision,
        "history": result.history,
    }


def fit(
    plan: TrainPlan,
    *,
    make_loader: Callable[[int], object],
    evaluate: Callable[[nn.Module, object], dict[str, float]] | None,
    optim: OptimConfig,
    run_dir: Path,
    task: TaskSpec,
    resume: bool = False,
    select_split: str = "dev",
    select_examples: int = 0,
    score_dev: Callable[[nn.Module, object], dict[str, float]] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> TrainResult:
    """Train `plan` and keep the best checkpoint in `run_dir/best` (an HF model dir written by plan.save_fn).

    Args:
        plan: modules, optimizers, loss and save function of the method.
        make_loader: epoch -> a deterministic train DataLoader for that epoch (same order on every call).
        evaluate: (model, accelerator) -> metrics on the selection split, which pick the kept checkpoint; None keeps
            the last step.
        optim: optimisation settings (lr is per OptimizerSpec; the rest comes from here).
        run_dir: run directory; checkpoints go to run_dir/checkpoints/step-N.
        task: the task, for the headline metric used to pick the best checkpoint.
        resume: continue from the newest complete checkpoint when there is one.
        select_split: the selection split's name in the history (`holdout` or `dev`).
        select_examples: its rows, for the noise margin an earlier checkpoint must win by (0: unknown, no margin).
        score_dev: (model, accelerator) -> dev metrics, run once after training on the kept and the last model
            (needs an HF model as plan.trainable[plan.eval_key]); None when `evaluate` already scores dev.
        clock: seconds, for samples/s (training time only: evaluation and checkpoints are left out); tests pass a
            fake one.

    The caller seeds the run (once, before building its models) with `accelerate.utils.set_seed`.

    Returns:
        TrainResult with the best step, its metrics, the history and the measured samples/s.
    """
    loop = _Loop(plan, make_loader, evaluate, optim, run_dir, task, select_split, select_examples, clock)
    if loop.accelerator.is_main_process:
        remove_stale_temps(run_dir)
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        loop.load_checkpoint(checkpoint)
        loop.accelerator.print(f"resuming from {checkpoint} (step {loop.step} of {loop.total_steps})")
    result = loop.run()
    if score_dev is not None:
        result.dev, result.dev_last = loop.score_dev(score_dev)
    else:  # selection was on dev: the kept score is dev's, and the last step was always evaluated
        evals = [entry[select_split] for entry in result.history if select_split in entry]
        result.dev, result.dev_last = result.best_metrics, (evals[-1] if evals else {})
    loop.accelerator.wait_for_everyone()
    return result
