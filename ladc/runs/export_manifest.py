"""`export.json`, the manifest of a `ladc export` dir, as one typed record with one reader and one writer.

Export writes it; parity, select, bench targets, compression, the frontier, the model card and predict/serve read it
through `read_export_manifest`. Keys this version does not know are kept and written back unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladc.errors import LadcError
from ladc.runs.io import atomic_write_json, read_json

__all__ = ["EXPORT_MANIFEST", "ExportManifest", "is_export_dir", "read_export_manifest", "write_export_manifest"]

EXPORT_MANIFEST = "export.json"
# written only once set (an export without --select has no selection; verified: after `verify_export`)
_OPTIONAL = ("skipped_backends", "export_s", "pytorch", "passed", "selection", "created", "verified")


@dataclass
class ExportManifest:
    """What an export dir holds and how each artifact fared; fields in the order export.json lists them.

    Attributes:
        kind: always "onnx-export" (tells an export dir from a run dir).
        source_model: the PyTorch classifier dir the artifacts were exported from (absolute).
        task: the GLUE task name.
        opset, device: the ONNX export settings.
        config: the ExportConfig as a dict (`ladc export` reruns from it).
        versions: package versions.
        parity_set: where the parity examples came from and how many (filled in by parity).
        backends: the backends built.
        artifacts: one entry per artifact (name, engine, path, precision, provider, size_mb, runtime, ...; `parity`
            once checked), in artifact-table order.
        skipped_backends: backends `--select fastest` could not build here, with the reason.
        export_s: seconds the build took.
        pytorch: the fp32 source model's metrics on the parity set.
        passed: whether every artifact passed parity.
        selection: what `--select fastest` measured and chose.
        created, verified: timestamps of the export and of the last `verify_export`.
        extra: keys this version does not know, written back unchanged.
    """

    kind: str = "onnx-export"
    source_model: str = ""
    task: str = ""
    opset: int | None = None
    device: str = "cpu"
    config: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    parity_set: dict = field(default_factory=dict)
    backends: list[str] = field(default_factory=list)
    artifacts: list[dict] = field(default_factory=list)
    skipped_backends: list[dict] | None = None
    export_s: float | None = None
    pytorch: dict | None = None
    passed: bool | None = None
    selection: dict | None = None
    created: str | None = None
    verified: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def chosen(self) -> str | None:
        """The artifact `--select fastest` chose, if it ran."""
        return (self.selection or {}).get("chosen")

    def names(self) -> list[str]:
        return [str(entry.get("name")) for entry in self.artifacts]

    def artifact(self, name: str) -> dict | None:
        """The entry named `name`, or None."""
        return next((entry for entry in self.artifacts if entry.get("name") == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The export.json content (unset optional keys left out, unknown keys last)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        data = {key: value for key, value in data.items() if not (key in _OPTIONAL and value is None)}
        return {**data, **self.extra}

    @classmethod
    def from_dict(cls, data: Any, where: str = EXPORT_MANIFEST) -> ExportManifest:
        """Raises LadcError when `data` is not a JSON object or its 'artifacts' is not a list (a missing one is empty:
        the task alone is enough for `infer_task`; bench refuses an export dir without artifacts)."""
        if not isinstance(data, dict) or not isinstance(data.get("artifacts", []), list):
            raise LadcError(f"{where} has no 'artifacts' list; re-run `ladc export`")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        extra = {key: value for key, value in data.items() if key not in known}
        return cls(**{key: value for key, value in data.items() if key in known}, extra=extra)


def is_export_dir(path: str | Path) -> bool:
    return (Path(path) / EXPORT_MANIFEST).is_file()


def read_export_manifest(export_dir: str | Path) -> ExportManifest:
    """The manifest of `export_dir`.

    Raises:
        LadcError: no export.json (not a `ladc export` dir), invalid JSON, or an 'artifacts' that is not a list.
    """
    path = Path(export_dir) / EXPORT_MANIFEST
    if not path.is_file():
        raise LadcError(f"{export_dir} is not a `ladc export` dir (no {EXPORT_MANIFEST})")
    return ExportManifest.from_dict(read_json(path), str(path))


def write_export_manifest(export_dir: str | Path, manifest: ExportManifest) -> Path:
    """Write `export_dir`/export.json atomically; returns its path."""
    path = Path(export_dir) / EXPORT_MANIFEST
    atomic_write_json(path, manifest.to_dict())
    return path
