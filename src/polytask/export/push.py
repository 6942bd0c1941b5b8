"""Publish an exported run on the Hugging Face Hub (``polytask push RUN REPO_ID``).

The run is exported with ``export_hf`` into a folder (kept, so it can be inspected or uploaded
later), then that folder is uploaded with ``huggingface_hub``. Without a network the command
fails at once, before exporting: ``HF_HUB_OFFLINE`` set, or no route to the Hub's host within a
few seconds.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from polytask.errors import PolytaskError
from polytask.hub import hub_endpoint, offline_reason


class HubError(PolytaskError):
    """The Hub cannot be reached, or refused the upload."""


@dataclass
class PushResult:
    """Attributes: folder (what was, or would be, uploaded); files (its files, relative paths);
    url (the repository's address, None for a dry run)."""

    folder: Path
    files: list[str]
    url: str | None


def check_online(timeout: float = 3.0) -> None:
    """Raise HubError at once when the Hub cannot be reached (offline mode, or no route)."""
    reason = offline_reason(timeout)
    if reason is None:
        return
    if "offline mode" in reason:
        raise HubError(
            f"cannot push: {reason}; unset it on a machine with a network, or upload the folder "
            "from `polytask export hf RUN DIR` later"
        )
    raise HubError(
        f"cannot push: {reason}; this machine seems to be offline. Export with "
        "`polytask export hf RUN DIR` and upload DIR from a machine with a network"
    )


def push_run(
    run_dir: str | Path,
    repo_id: str,
    folder: str | Path | None = None,
    checkpoint: str = "best",
    private: bool = False,
    dry_run: bool = False,
    token: str | None = None,
) -> PushResult:
    """Export ``run_dir`` and upload it to the Hub repository ``repo_id`` (created if absent).

    Args:
        run_dir: the run directory.
        repo_id: ``user/name`` on the Hub.
        folder: where to write the export (default: a new temporary folder, kept).
        checkpoint: ``best`` or ``last``.
        private: create the repository private.
        dry_run: export only, upload nothing (no network needed): the folder that would go up.
        token: a Hub token (default: huggingface_hub's login).
    """
    if "/" not in repo_id or repo_id.count("/") > 1 or not all(repo_id.split("/")):
        raise HubError(f"repository id {repo_id!r} must look like user/name")
    if not dry_run:
        check_online()
    from polytask.export.hf import export_hf

    out = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="polytask-push-"))
    export_hf(run_dir, out, checkpoint)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    if dry_run:
        return PushResult(out, files, None)
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_endpoint(), token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(out), repo_id=repo_id, commit_message="polytask export")
    except Exception as exc:  # the client raises many kinds (HTTP, auth, validation)
        raise HubError(f"the Hub refused the upload to {repo_id}: {exc} (the export is kept in {out})") from exc
    return PushResult(out, files, f"{hub_endpoint()}/{repo_id}")
