"""Uploading a finished build to a hub dataset repository."""

from __future__ import annotations

from pathlib import Path

from mmr3_tasks.builder.manifest import STATE_DIR


def push_to_hub(out: str | Path, repo_id: str, private: bool = False) -> str:
    """Uploads the build (shards, manifest, card; not the resume state) to a hub dataset repo."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    info = api.upload_folder(
        folder_path=str(out),
        repo_id=repo_id,
        repo_type="dataset",
        ignore_patterns=[f"{STATE_DIR}/**", "**/.*.tmp", ".*"],
        commit_message="mmr3 build",
    )
    return str(getattr(info, "commit_url", info))
