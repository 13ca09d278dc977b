"""The deployable variants `ladc export` can build, as one table: export builds the rows, parity checks them against
each row's tolerance, bench and `--select fastest` time them, the compression report shows them.

The rows and their builders belong to their engines (ladc/engines/): the table is every registered engine's rows, in
registry order, read at call time. A new precision is one row (and builder) in its engine's module; a new engine is one
module and one registry entry.
"""

from __future__ import annotations

from ladc.engines import ENGINES
from ladc.engines.base import Artifact, Tolerance
from ladc.errors import LadcError
from ladc.runs.config import ExportConfig

__all__ = ["TOLERANCES", "artifact_table", "artifact", "tolerance_of", "wanted_artifacts"]


# per precision an engine ran in (see ladc/deploy/parity.py for why these bounds); a row may carry its own instead
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_abs_diff=1e-4),
    "fp16": Tolerance(min_agreement_pct=97.0, max_metric_drop_points=1.0, min_score_correlation=0.99),
    "bf16": Tolerance(min_agreement_pct=97.0, max_metric_drop_points=1.0, min_score_correlation=0.99),
    "int8": Tolerance(min_agreement_pct=97.0, max_metric_drop_points=1.0, min_score_correlation=0.99),
}


def artifact_table() -> tuple[Artifact, ...]:
    """Every engine's rows, in build order (the registry is read at each call: a test may register an engine)."""
    return tuple(row for engine in ENGINES.values() for row in engine.artifacts)


def artifact(name: str) -> Artifact:
    """The table row called `name` (KeyError if none)."""
    return {row.name: row for row in artifact_table()}[name]


def tolerance_of(entry: dict) -> Tolerance:
    """The parity bounds of an export.json artifact entry: its row's own, else those of the precision it ran in
    (`inference_precision` when the engine chose, e.g. OpenVINO's default).

    Raises:
        LadcError: neither its row nor its precision has a tolerance.
    """
    row = {row.name: row for row in artifact_table()}.get(entry.get("name"))
    if row is not None and row.tolerance is not None:
        return row.tolerance
    precision = entry.get("inference_precision", entry["precision"])
    if precision not in TOLERANCES:
        raise LadcError(f"artifact {entry.get('name')!r} ran in {precision!r}, which has no parity tolerance; "
                        f"expected one of {', '.join(TOLERANCES)} or a table row with its own")  # fmt: skip
    return TOLERANCES[precision]


def wanted_artifacts(cfg: ExportConfig, table: tuple[Artifact, ...] | None = None) -> list[Artifact]:
    """Rows this config builds, in table order: the required ones always, the rest by backend and their own flags."""
    rows = artifact_table() if table is None else table
    return [row for row in rows if row.required or (row.engine in cfg.backends and row.wanted(cfg))]
