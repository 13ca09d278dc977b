"""What tune-teacher and distill hand the training loop: the tokenized train set, an epoch -> DataLoader factory and
the dev evaluator (kept out of both commands so neither imports the other)."""

from __future__ import annotations

from ladc.config import DataConfig, OptimConfig

__all__ = ["make_evaluator", "prepare_data"]


def make_evaluator(data: DataConfig, tokenizer, task, batch_size: int):
    """(model, accelerator) -> dev metrics on the task's first dev split, tokenized once."""
    from ladc.data import dev_loader
    from ladc.metrics import metrics_from_logits
    from ladc.runners import TorchRunner, predict_logits

    loader = dev_loader(data, tokenizer, task, batch_size)

    def evaluate(model, accelerator) -> dict[str, float]:
        prepared = accelerator.prepare(loader) if accelerator is not None else loader
        logits, labels = predict_logits(TorchRunner(model, accelerator=accelerator), prepared)
        return metrics_from_logits(task, logits, labels)

    return evaluate


def prepare_data(data: DataConfig, optim: OptimConfig, tokenizer, task):
    """Tokenize train and dev once; returns (train dataset, epoch -> train DataLoader, dev evaluator)."""
    from ladc.data import load_tokenized, make_collator, make_dataloader

    train = load_tokenized(data, tokenizer, "train")
    collator = make_collator(tokenizer, task)
    evaluate = make_evaluator(data, tokenizer, task, optim.eval_batch_size)

    def make_loader(epoch: int):
        return make_dataloader(
            train, collator, optim.batch_size, shuffle=True, seed=optim.seed, epoch=epoch,
            group_by_length=optim.group_by_length, num_workers=optim.num_workers,
        )  # fmt: skip

    return train, make_loader, evaluate
