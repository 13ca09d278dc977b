"""Training stage: the one accelerate loop, methods as data, LAD's maths, student building, checkpoints and lr."""
