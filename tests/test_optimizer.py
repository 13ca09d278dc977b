"""Tests for ladc/training/optimizer.py: AdamW's parameter groups, the schedule's length in optimizer steps, and the
Accelerator each precision gets."""

from __future__ import annotations

import pytest
import torch
from transformers import BertForSequenceClassification

from ladc.errors import LadcError
from ladc.runs.config import OptimConfig
from ladc.training.optimizer import OptimizerSpec, build_optimizer, make_accelerator, schedule_lengths


def test_build_optimizer_gives_each_spec_its_lr_and_decays_only_matrices(tiny_bert_config):
    """One AdamW: per spec, a decay group (the 2-D weights) and a no-decay group (biases and LayerNorm), at the spec's
    own lr; frozen parameters are left out wherever they sit."""
    from ladc.training.lad import GateChain

    model = BertForSequenceClassification(tiny_bert_config(num_layers=2))
    model.bert.embeddings.word_embeddings.requires_grad_(False)  # frozen, and the first parameter of the model
    gates = GateChain(3, model.config.hidden_size)
    specs = [OptimizerSpec("model", ("model",), lr=1e-3, weight_decay=0.1),
             OptimizerSpec("gates", ("gates",), lr=5e-2, weight_decay=0.0)]  # fmt: skip
    optimizer = build_optimizer(specs, {"model": model, "gates": gates})

    def ids(params):
        return sorted(id(p) for p in params)

    trainable = [p for p in model.parameters() if p.requires_grad]
    expected = [
        (ids(p for p in trainable if p.ndim == 2), 0.1, 1e-3),
        (ids(p for p in trainable if p.ndim == 1), 0.0, 1e-3),
        (ids(p for p in gates.parameters() if p.ndim == 2), 0.0, 5e-2),
        (ids(p for p in gates.parameters() if p.ndim == 1), 0.0, 5e-2),
    ]
    got = [(ids(g["params"]), g["weight_decay"], g["lr"]) for g in optimizer.param_groups]
    assert got == expected and optimizer.defaults["fused"]
    layer_norm = model.bert.encoder.layer[0].output.LayerNorm.weight
    assert id(layer_norm) in expected[1][0] and id(model.bert.embeddings.word_embeddings.weight) not in expected[0][0]


def test_schedule_lengths_count_optimizer_steps():
    # 9 micro-batches, grad_accum 2: 5 optimizer steps per epoch (the last one short); 3 epochs; warm-up 25 % of 15
    assert schedule_lengths(OptimConfig(epochs=3, grad_accum=2, warmup_ratio=0.25), 9) == (5, 15, 3)
    assert schedule_lengths(OptimConfig(epochs=3, max_steps=7, warmup_steps=4), 9) == (9, 7, 4)  # explicit wins
    # at least one step per epoch and in all, however small the loader or the epoch fraction
    assert schedule_lengths(OptimConfig(epochs=0.1, warmup_ratio=0.5), 3) == (3, 1, 0)
    assert schedule_lengths(OptimConfig(epochs=2, grad_accum=4), 0) == (1, 2, 0)


@pytest.mark.parametrize("requested", ["no", "bf16", "fp16", "auto", "BF16", "fp8"])
def test_make_accelerator_takes_each_precision_or_says_why_not(requested):
    from ladc.runs.hardware import resolve_mixed_precision

    optim = OptimConfig(mixed_precision=requested, grad_accum=3)
    if requested in ("BF16", "fp8"):
        with pytest.raises(LadcError) as caught:
            make_accelerator(optim)
        assert str(caught.value) == f"mixed_precision '{requested}' is not one of: no, bf16, fp16, auto"
    elif requested == "fp16" and not torch.cuda.is_available():
        with pytest.raises(LadcError) as caught:
            make_accelerator(optim)
        assert str(caught.value) == "mixed_precision fp16 needs a CUDA GPU; on CPU use bf16 (AVX-512 BF16) or no"
    else:
        accelerator = make_accelerator(optim)
        assert str(accelerator.mixed_precision) == resolve_mixed_precision(requested)
        assert accelerator.gradient_accumulation_steps == 3
