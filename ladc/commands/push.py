"""`ladc push DIR REPO` and `ladc export --push-to-hub REPO`: a teacher, student or export dir to the Hugging Face
Hub through `huggingface_hub` (one commit, so the hub never holds half an upload).

Checkpoints, temp files and locks stay local. Without a network the push fails with one line and writes nothing.
"""

from __future__ import annotations

from pathlib import Path

from ladc.errors import LadcError
from ladc.runs.export_manifest import is_export_dir

__all__ = ["PUSH_IGNORE", "push_to_hub"]

# training state and ladc's own temp and lock files are never part of a published model
PUSH_IGNORE = ["checkpoints/*", "best/*", ".*", "*.tmp", "*.lock"]


def _check_dir(directory: Path) -> None:
    if not directory.is_dir():
        raise LadcError(f"push: {directory} is not a directory; expected a teacher, student or export dir")
    if not ((directory / "config.json").is_file() or is_export_dir(directory)):
        raise LadcError(
            f"push: {directory} has neither config.json nor export.json; expected a teacher, student or export dir"
        )
    if not (directory / "README.md").is_file():
        raise LadcError(f"push: {directory} has no model card (README.md); finish the run first")


def push_to_hub(directory: str | Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Create `repo_id` if needed and upload `directory` as one commit; returns the commit URL.

    Raises:
        LadcError: not a ladc model dir, a malformed repo id, or any hub or network error (one line).
    """
    directory = Path(directory)
    _check_dir(directory)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise LadcError(f"push: repo '{repo_id}' is not a hub repo id; expected OWNER/NAME")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            folder_path=str(directory), repo_id=repo_id, repo_type="model", ignore_patterns=PUSH_IGNORE,
            commit_message=f"ladc: upload {directory.name}",
        )  # fmt: skip
    except Exception as exc:  # requests/httpx connection errors, HfHubHTTPError, auth errors: all one line
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise LadcError(f"push: cannot upload {directory} to the hub repo {repo_id}: {first}") from None
    return str(getattr(commit, "commit_url", commit))
