"""ladc: Layer-wise Adaptive Distillation (Lin, Chen & Kao, Sensors 2023) for BERT classifiers."""

__version__ = "0.1.0"
__all__ = ["__version__"]
