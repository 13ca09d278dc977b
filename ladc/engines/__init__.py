"""Engines stage: one module per engine (onnxruntime, openvino, torch), declaring all ladc does with it."""

from __future__ import annotations

from ladc.engines import onnxruntime_engine, openvino_engine, torch_engine
from ladc.engines.base import Engine
from ladc.errors import LadcError

__all__ = ["Engine", "ENGINES", "get_engine", "engine_names", "entry_engine"]

# name -> record, in build order (the artifact table lists each engine's rows in this order). A plain dict filled
# here, not by registration on import: a test adds an engine with monkeypatch.setitem(ENGINES, name, record)
ENGINES: dict[str, Engine] = {
    engine.name: engine for engine in (onnxruntime_engine.ENGINE, openvino_engine.ENGINE, torch_engine.ENGINE)
}


def engine_names() -> tuple[str, ...]:
    """Every registered engine's name, in registry order (what `--backend` accepts)."""
    return tuple(ENGINES)


def get_engine(name: str) -> Engine:
    """The engine called `name`.

    Raises:
        LadcError: no engine has that name.
    """
    if name not in ENGINES:
        raise LadcError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")
    return ENGINES[name]


def entry_engine(entry: dict) -> str:
    """The engine name of an export.json artifact entry (entries written before they recorded one were ONNX graphs)."""
    return str(entry.get("engine", onnxruntime_engine.NAME))
