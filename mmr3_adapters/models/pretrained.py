"""The one check of a `pretrained` value before anything loads it: a local folder, or a hub id.

transformers takes any string that is not an existing folder for a hub id, so a mistyped local
path fails with "Repo id must be in the form 'repo_name' or 'namespace/repo_name'" and a folder
without config.json with "Should have a `model_type` key in its config.json". Both name the wrong
problem. `mmr3_llava` / `mmr3_blip2` (`pretrained=`) and `mmr3 train-adapter` (`--pretrained`)
call `check_pretrained` first; hub ids (`org/name`) pass through to the hub loader unchanged.
"""

from __future__ import annotations

from pathlib import Path

from mmr3_tasks.errors import MMR3Error

HUB_EXAMPLE = "llava-hf/llava-1.5-7b-hf"


class PretrainedNotFoundError(MMR3Error, FileNotFoundError):
    """A local-looking `pretrained` that is not a checkpoint folder."""


def looks_local(pretrained: str) -> bool:
    """True for a value that can only mean a path: it starts with /, ./, ../ or ~, has more than
    one '/' (a hub id has exactly one: `org/name`), or names something that exists here."""
    return (
        pretrained in (".", "..", "~")
        or pretrained.startswith(("/", "./", "../", "~"))
        or pretrained.count("/") > 1
        or Path(pretrained).expanduser().exists()
    )


def check_pretrained(pretrained: str, flag: str) -> str:
    """The value to load: `pretrained` itself, with a leading ~ expanded.

    Args:
        pretrained: A hub id or a local checkpoint folder.
        flag: How the user gave it, for the message: "pretrained=" or "--pretrained ".

    Raises:
        PretrainedNotFoundError: a local-looking value that does not exist, is a file, or is a
            folder without config.json.
    """
    if not looks_local(pretrained):
        return pretrained
    path = Path(pretrained).expanduser()
    where = f"{flag}{pretrained}"
    if not path.exists():
        raise PretrainedNotFoundError(
            f"{where}: no such folder (give a checkpoint folder that exists, or a hub id like {HUB_EXAMPLE})"
        )
    if not path.is_dir():
        raise PretrainedNotFoundError(f"{where} is a file; give the checkpoint folder that holds config.json")
    if not (path / "config.json").is_file():
        raise PretrainedNotFoundError(
            f"{where}: the folder holds no config.json, so it is not a transformers checkpoint "
            "(a folder written by save_pretrained, or a hub snapshot, has one)"
        )
    return str(path) if pretrained.startswith("~") else pretrained
