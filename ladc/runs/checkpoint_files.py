"""The checkpoint dirs inside a training run dir, as files: which are complete, the newest intact one (a damaged file
is named before anything loads it), and the temp files a killed process leaves behind.

What is in a checkpoint, when one is written and which to keep is the training loop's (ladc.training); `--resume`
checks and run-dir cleanup need only the files, so they live here, below every stage.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from ladc.errors import LadcError

__all__ = ["CHECKPOINT_DIR", "STATE_FILE", "TEMP_PATTERNS", "check_checkpoint", "complete_checkpoints",
           "latest_checkpoint", "remove_stale_temps"]  # fmt: skip

_log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"  # the loop's state; a checkpoint without it is incomplete (pruning deletes it first)
TEMP_PATTERNS = (".*.tmp-*", ".*.old-*", ".*.tmp")  # what ladc.runs.io's atomic writes leave when killed


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints under run_dir/checkpoints that were renamed into place (they hold trainer_state.json), newest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    done = [p for p in root.glob("step-*") if p.name[5:].isdigit() and (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name[5:]), reverse=True) if root.is_dir() else []


def latest_checkpoint(run_dir: Path, warn: bool = True) -> Path | None:
    """The newest checkpoint under run_dir/checkpoints whose files are intact; None when there is none at all.

    A damaged newest checkpoint (truncated or overwritten file) is skipped for the one before it, with a warning
    unless `warn` is False (a check before the run, which warns once it resumes).

    Raises:
        LadcError: checkpoints exist but every one is damaged (each is named with its first bad file).
    """
    damaged = []
    for checkpoint in complete_checkpoints(run_dir):
        try:
            check_checkpoint(checkpoint)
        except LadcError as exc:
            damaged.append(str(exc).split("; pass --overwrite")[0])
            continue
        for reason in damaged if warn else ():
            _log.warning("ladc: %s; resuming from %s instead", reason, checkpoint.name)
        return checkpoint
    if damaged:
        raise LadcError(
            f"no usable checkpoint to resume: {'; '.join(damaged)}; pass --overwrite instead of --resume to start again"
        )
    return None


def check_checkpoint(checkpoint: Path) -> None:
    """Raise LadcError when a file --resume would load from `checkpoint` is damaged (truncated, overwritten).

    Reads headers and checksums only (safetensors header, zip CRCs of torch.save files, JSON), so a bad file is named
    before any model loads instead of failing inside accelerate's load_state.
    """
    import zipfile

    from safetensors import SafetensorError, safe_open

    for path in sorted(checkpoint.iterdir()):
        try:
            if path.suffix == ".safetensors":
                with safe_open(str(path), "pt") as handle:
                    handle.keys()
            elif path.suffix in (".bin", ".pkl"):  # torch.save writes zip archives whatever the extension
                with zipfile.ZipFile(path) as archive:
                    broken = archive.testzip()
                if broken:
                    raise ValueError(f"{broken} fails its checksum")
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, SafetensorError) as exc:
            reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            raise LadcError(
                f"checkpoint {checkpoint} is damaged ({path.name}: {reason}); pass --overwrite instead of --resume "
                "to start the run again"
            ) from None


def remove_stale_temps(run_dir: Path) -> None:
    """Delete the temp dirs and files a killed process left in a run dir (its lock says no live process writes)."""
    run_dir = Path(run_dir)
    for parent in (run_dir, run_dir / CHECKPOINT_DIR):
        for pattern in TEMP_PATTERNS:
            for path in parent.glob(pattern):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
