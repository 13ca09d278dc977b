"""Data stage: GLUE sources, the task registry, tokenized datasets and loaders, the train holdout, task metrics."""
