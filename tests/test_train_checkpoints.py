"""Tests for the checkpoints of the shared training loop (ladc/training/train.py's fit): continuing mid-epoch, Ctrl-C, the
kept checkpoint, what picked it and the dev scores of the kept and the last model."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from ladc.errors import LadcError
from tests.helpers import _examples, _fit, _scripted, _tiny_classifier


def test_fit_continues_mid_epoch_from_a_checkpoint_like_the_uninterrupted_run(tmp_path, tiny_bert_config, capsys):
    """In-process resume: a run dir holding only the step-6 checkpoint (and best/) of a 12-step run, as a run killed
    after that checkpoint leaves it, continues to the uninterrupted run's weights, history and kept checkpoint.

    32 examples, micro-batch 4, grad_accum 2: 4 steps per epoch, so step 6 is mid-epoch (4 micro-batches to skip).
    """
    from transformers import BertForSequenceClassification

    from ladc.training.checkpoints import KEEP_CHECKPOINTS

    common = {"micro_batch": 4, "grad_accum": 2, "max_steps": 12, "save_steps": 3, "eval_steps": 6,
              "warmup_steps": 2, "weight_decay": 0.1, "max_grad_norm": 1.0}  # fmt: skip
    full_model = _tiny_classifier(tiny_bert_config)
    full = _fit(full_model, tmp_path / "full", _examples(), evaluate=_scripted(0.9, 0.7), **common)
    # checkpoints at steps 3, 6 and 9 (none at the last step); the newest KEEP_CHECKPOINTS are kept
    assert KEEP_CHECKPOINTS == 2 and sorted(p.name for p in (tmp_path / "full" / "checkpoints").iterdir()) == [
        "step-6", "step-9",
    ]  # fmt: skip
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step-6", cut / "checkpoints" / "step-6")
    shutil.copytree(tmp_path / "full" / "best", cut / "best")  # best/ was written at step 6, before the checkpoint

    resumed_model = _tiny_classifier(tiny_bert_config, seed=1)  # other initial weights: all come from the checkpoint
    again = tmp_path / "again"
    shutil.copytree(cut, again)
    capsys.readouterr()
    resumed = _fit(resumed_model, cut, _examples(), evaluate=_scripted(0.7), resume=True, **common)
    captured = capsys.readouterr()
    assert f"resuming from {cut / 'checkpoints' / 'step-6'} (step 6 of 12)" in captured.out
    assert " 6/12 [" in captured.err  # the progress bar starts at the resumed step
    fresh = _fit(_tiny_classifier(tiny_bert_config), again, _examples(), evaluate=_scripted(0.9, 0.7), **common)
    assert fresh.resumed_from_step is None  # a checkpoint is there, but without --resume the run starts over
    assert (resumed.resumed_from_step, resumed.final_step, full.resumed_from_step) == (6, 12, None)
    assert (resumed.best_step, resumed.best_metrics) == (full.best_step, full.best_metrics) == (6, {"accuracy": 0.9})
    for (name, got), expected in zip(resumed_model.state_dict().items(), full_model.state_dict().values()):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=name)
    # the same log (steps, dev entries) and the same loss and lr at every step; only samples/s is timing
    assert [(h["step"], h.get("dev")) for h in resumed.history] == [(h["step"], h.get("dev")) for h in full.history]
    numbers = lambda history: [h[k] for h in history for k in ("loss", "lr") if k in h]  # noqa: E731
    assert numbers(resumed.history) == pytest.approx(numbers(full.history), rel=1e-5)
    kept = BertForSequenceClassification.from_pretrained(cut / "best").state_dict()  # step 6's, not the last step's
    assert any(not torch.equal(kept[name], tensor) for name, tensor in resumed_model.state_dict().items())


def test_resume_with_another_world_size_is_refused_naming_both(tmp_path, tiny_bert_config):
    """A checkpoint records the world size and the global batch it was trained with; a launch with another number of
    processes would count the same step as another number of samples, so it is refused before anything loads.

    The other launch is stood in for by the recorded value (a 2-process checkpoint), so the run here is one process.
    """
    from ladc.runs.checkpoint_files import STATE_FILE, latest_checkpoint

    common = {"micro_batch": 4, "batch_size": 4, "grad_accum": 2, "max_steps": 4, "save_steps": 2, "eval_steps": 4}
    run_dir = tmp_path / "run"
    _fit(_tiny_classifier(tiny_bert_config), run_dir, _examples(), **common)
    (run_dir / "metrics.json").unlink(missing_ok=True)  # fit alone writes none; the step-2 checkpoint is kept
    shutil.copytree(run_dir, tmp_path / "copy")
    state_path = latest_checkpoint(run_dir) / STATE_FILE
    state = json.loads(state_path.read_text())
    assert (state["world_size"], state["global_batch"]) == (1, 8)  # 1 process x micro-batch 4 x grad_accum 2
    state_path.write_text(json.dumps({**state, "world_size": 2, "global_batch": 16}))
    with pytest.raises(LadcError) as error:
        _fit(_tiny_classifier(tiny_bert_config), run_dir, _examples(), resume=True, **common)
    message = str(error.value)
    assert "world size 2 (global batch 16)" in message and "world size 1 (global batch 8)" in message
    assert "\n" not in message
    # the same world size resumes from the same checkpoint
    resumed = _fit(_tiny_classifier(tiny_bert_config), tmp_path / "copy", _examples(), resume=True, **common)
    assert resumed.resumed_from_step == 2 and resumed.final_step == 4


def test_ctrl_c_checkpoints_the_current_step_and_stops(tmp_path, tiny_bert_config, monkeypatch):
    """Ctrl-C lands after step 5 (save_steps 3): fit saves step 5 as well, raises KeyboardInterrupt, and a resume from
    there ends on the uninterrupted run's weights. The run passes its kill points in order, with the step."""
    import signal

    import ladc.training.train

    passed = []

    def record(name, step=None):
        passed.append((name, step))
        if name == "train-step" and sum(n == "train-step" for n, _ in passed) == 5 and not resuming:
            # as a Ctrl-C arriving during step 5: fit's own SIGINT handler is called directly, not through the OS,
            # so a test process whose SIGINT is handled otherwise (a pytest-xdist worker) cannot be killed by it
            handler = signal.getsignal(signal.SIGINT)
            assert callable(handler) and handler is not signal.default_int_handler, handler
            handler(signal.SIGINT, None)

    monkeypatch.setattr(ladc.training.train, "kill_point", record)
    common = {"micro_batch": 4, "grad_accum": 2, "max_steps": 8, "save_steps": 3, "eval_steps": 4}
    resuming = False
    with pytest.raises(KeyboardInterrupt):
        _fit(_tiny_classifier(tiny_bert_config), tmp_path / "cut", _examples(), **common)
    assert sorted(p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()) == ["step-3", "step-5"]
    state = json.loads((tmp_path / "cut" / "checkpoints" / "step-5" / "trainer_state.json").read_text())
    assert (state["step"], state["best_step"], state["best_metrics"]) == (5, 4, {"accuracy": 0.5})
    checkpoint = [("checkpoint-write", None), ("checkpoint-rename", None)]
    assert passed == [
        ("train-step", None), ("train-step", None), ("train-step", None), *checkpoint, ("checkpoint-done", 3),
        ("train-step", None), ("best-write", None), ("train-step", None), *checkpoint, ("checkpoint-done", 5),
    ]  # fmt: skip

    resuming = True
    resumed_model = _tiny_classifier(tiny_bert_config, seed=1)
    resumed = _fit(resumed_model, tmp_path / "cut", _examples(), resume=True, **common)
    full_model = _tiny_classifier(tiny_bert_config)
    _fit(full_model, tmp_path / "full", _examples(), **common)
    assert resumed.resumed_from_step == 5 and resumed.final_step == 8
    # a Ctrl-C during the last step: nothing is left to resume, so the run ends normally
    passed.clear()
    resuming = False
    last_step = {**common, "max_steps": 5}
    assert _fit(_tiny_classifier(tiny_bert_config), tmp_path / "last", _examples(), **last_step).final_step == 5
    for (name, got), expected in zip(resumed_model.state_dict().items(), full_model.state_dict().values()):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6, msg=name)


def _weights_digest(model) -> float:
    """A fingerprint of every parameter's exact bits, as a float in [0, 1): any change of any weight changes it.

    Not a sum of weights: with 2 classes, cross-entropy gives the classifier's two rows opposite gradients and Adam
    keeps them so, so `classifier.weight.sum()` stays put under training up to rounding, which differs by CPU (it
    failed on AVX2 and passed on AVX-512)."""
    import hashlib

    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(parameter.detach().cpu().contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest()[:6], "big") / 2**48  # 48 bits: exact in a float64


def test_dev_is_scored_once_after_training_for_the_kept_and_the_last_model(tmp_path, tiny_bert_config):
    """Selection on a holdout keeps step 4 of 8; dev is then scored on best/ (step 4's weights) and on the last model.
    The score here is a fingerprint of the weights, so each dev figure says which model it came from."""
    from transformers import BertForSequenceClassification

    calls = []

    def fingerprint(model, accelerator):
        assert accelerator is not None and accelerator.mixed_precision == "no"
        calls.append(_weights_digest(accelerator.unwrap_model(model)))
        return {"accuracy": calls[-1]}

    model = _tiny_classifier(tiny_bert_config)
    initial = _weights_digest(model)
    common = {"micro_batch": 4, "max_steps": 8, "eval_steps": 4}
    result = _fit(model, tmp_path / "a", _examples(), evaluate=_scripted(0.9, 0.7), score_dev=fingerprint, **common)
    best = BertForSequenceClassification.from_pretrained(tmp_path / "a" / "best")
    last = calls[0]
    assert result.best_step == 4 and len(calls) == 2 and len({initial, last, calls[1]}) == 3
    assert result.dev == {"accuracy": _weights_digest(best)}  # the same bits as best/ on disk
    assert result.dev_last == {"accuracy": last}
    assert _weights_digest(model) == result.dev["accuracy"]  # the model is left holding the kept weights
    # the kept model is the last one: one dev pass, reported twice
    calls.clear()
    result = _fit(_tiny_classifier(tiny_bert_config), tmp_path / "b", _examples(), evaluate=_scripted(0.7, 0.9),
                  score_dev=fingerprint, **common)  # fmt: skip
    assert result.best_step == 8 and len(calls) == 1 and result.dev == result.dev_last == {"accuracy": calls[0]}


def test_what_picked_the_kept_checkpoint_is_recorded(tmp_path, tiny_bert_config, monkeypatch):
    """No evaluator: the last step is kept, with no selection figures and no dev figures from the loop. A holdout
    evaluator is `train-holdout`; a dev one is `dev`, and then dev's last evaluation is the last model's dev score."""
    from transformers import BertForSequenceClassification

    common = {"micro_batch": 4, "max_steps": 8, "eval_steps": 4}
    import ladc.training.train

    points: list[str] = []
    monkeypatch.setattr(ladc.training.train, "kill_point", lambda name, step=None: points.append(name))
    model = _tiny_classifier(tiny_bert_config)
    last = _fit(model, tmp_path / "last", _examples(), evaluate=False, **common)
    assert points.count("best-write") == 1  # best/ written once, at the last step
    assert (last.selected_on, last.best_step, last.best_metrics, last.dev, last.dev_last) == ("last", 8, {}, {}, {})
    assert last.mixed_precision == "no" and not any("dev" in h for h in last.history)
    kept = BertForSequenceClassification.from_pretrained(tmp_path / "last" / "best").state_dict()
    assert all(torch.equal(kept[name], tensor) for name, tensor in model.state_dict().items())

    holdout = _fit(_tiny_classifier(tiny_bert_config), tmp_path / "holdout", _examples(),
                   evaluate=_scripted(0.9, 0.7), select_split="holdout", **common)  # fmt: skip
    assert holdout.selected_on == "train-holdout" and [h["holdout"] for h in holdout.history if "holdout" in h] == [
        {"accuracy": 0.9}, {"accuracy": 0.7},
    ]  # fmt: skip
    dev = _fit(_tiny_classifier(tiny_bert_config), tmp_path / "dev", _examples(), evaluate=_scripted(0.9, 0.7),
               **common)  # fmt: skip
    assert (dev.selected_on, dev.dev, dev.dev_last) == ("dev", {"accuracy": 0.9}, {"accuracy": 0.7})
    bf16 = _fit(_tiny_classifier(tiny_bert_config), tmp_path / "bf16", _examples(), mixed_precision="bf16", **common)
    assert bf16.mixed_precision == "bf16"  # the precision trained in is recorded
