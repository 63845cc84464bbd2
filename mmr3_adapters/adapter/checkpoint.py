"""Adapter checkpoints in the Hugging Face manner: `adapter_config.json` + `adapter_model.safetensors`.

The weights file holds the adapter's tensors only (never the backbone's), saved with safetensors'
`{"format": "pt"}` metadata as PEFT does. The config records the backbone kind and width, every
size, the training settings and the library versions, and the sha256 of the weights file, so a
config and weights from two different saves are told apart. Loading checks all of it and never
unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from mmr3_adapters.adapter.config import (
    ADAPTER_TYPE,
    CONFIG_NAME,
    WEIGHTS_NAME,
    AdapterConfig,
    AdapterConfigError,
    library_versions,
)
from mmr3_adapters.adapter.module import ConsistencyAdapter
from mmr3_tasks.builder.atomic import atomic_target, write_text_atomic
from mmr3_tasks.errors import MMR3Error

logger = logging.getLogger("mmr3")

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class AdapterCheckpointError(MMR3Error, ValueError):
    """An adapter folder that cannot be loaded as asked; the message says what is wrong and the fix."""


def save_adapter(adapter: ConsistencyAdapter, directory: str | Path) -> Path:
    """Writes the adapter into `directory` (created if needed); each file is written atomically.

    The weights go first and the config, which names the weights' sha256, last: a save killed in
    between leaves a folder that `load_adapter` refuses with a clear message, never a silent mix.
    """
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in adapter.state_dict().items()}
    with atomic_target(out / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    config = adapter.config
    config.library_versions = library_versions()
    data = config.to_dict()
    data["weights_sha256"] = _sha256(out / WEIGHTS_NAME)
    write_text_atomic(out / CONFIG_NAME, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return out


def read_adapter_config(directory: str | Path, argument: str = "adapter") -> tuple[AdapterConfig, str | None]:
    """The config of an adapter folder and the weights sha256 it names; refuses what is no adapter."""
    folder = Path(directory)
    if not folder.exists():
        raise AdapterCheckpointError(
            f"{argument}={str(folder)!r} does not exist; give the --out folder of mmr3 train-adapter"
        )
    if not folder.is_dir():
        raise AdapterCheckpointError(f"{argument}={str(folder)!r} is a file; give the folder that holds {CONFIG_NAME}")
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        hint = (
            f"; it holds {pickles}, which are pickles and are never loaded (save adapters with mmr3 train-adapter)"
            if pickles
            else ""
        )
        raise AdapterCheckpointError(f"{folder} has no {CONFIG_NAME}: not an adapter folder{hint}")
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AdapterCheckpointError(f"{config_path} is not valid JSON ({err}); the checkpoint is damaged") from err
    if not isinstance(raw, dict):
        raise AdapterCheckpointError(f"{config_path} holds {type(raw).__name__}, not a JSON object")
    if "peft_type" in raw:
        raise AdapterCheckpointError(
            f"{folder} is a PEFT {raw.get('peft_type')} checkpoint, not an MM-R³ consistency adapter: pass it as "
            f"lora={folder}"
        )
    if raw.get("adapter_type") != ADAPTER_TYPE:
        raise AdapterCheckpointError(
            f"{config_path}: adapter_type {raw.get('adapter_type')!r}, expected {ADAPTER_TYPE!r}; not an MM-R³ adapter"
        )
    sha = raw.pop("weights_sha256", None)
    try:
        return AdapterConfig.from_dict(raw, source=str(config_path)), sha
    except AdapterConfigError as err:
        raise AdapterCheckpointError(str(err)) from err


def check_compatible(config: AdapterConfig, backbone: str | None, hidden_size: int | None, where: str) -> None:
    """Raises AdapterCheckpointError when the adapter was built for another backbone kind or width
    (None: not checked)."""
    if backbone is not None and config.backbone != backbone:
        raise AdapterCheckpointError(
            f"{where} was trained on a {config.backbone} backbone ({config.base_model_name_or_path or 'unknown'}), "
            f"but the model is {backbone}; use an adapter trained on this model, or the model it was trained on"
        )
    if hidden_size is not None and config.hidden_size != hidden_size:
        raise AdapterCheckpointError(
            f"{where} expects hidden size {config.hidden_size} ({config.base_model_name_or_path or 'unknown'}), "
            f"but the model's language model has hidden size {hidden_size}: the adapter's weights would be "
            "meaningless here; use an adapter trained on this model"
        )


def load_adapter(
    directory: str | Path,
    *,
    backbone: str | None = None,
    hidden_size: int | None = None,
    base_model: str | None = None,
    device: str | torch.device | None = None,
    argument: str = "adapter",
) -> ConsistencyAdapter:
    """Loads a saved adapter, checking it against the backbone it will run on.

    Args:
        directory: The folder `save_adapter` wrote.
        backbone, hidden_size: What the model is; a mismatch raises (None skips the check).
        base_model: The model's checkpoint id; a different one only warns (a hub id and a local
            copy of it differ by name, as in PEFT).
        device: Where the adapter goes (default CPU).
        argument: How error messages name the folder ("adapter" for the model argument).

    Raises:
        AdapterCheckpointError: naming what the checkpoint expects and what it found.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(directory)
    config, sha = read_adapter_config(folder, argument)
    where = f"{argument}={folder}"
    check_compatible(config, backbone, hidden_size, where)
    if base_model and config.base_model_name_or_path and _name(base_model) != _name(config.base_model_name_or_path):
        logger.warning(
            "%s was trained on %s, the model is %s: fine if they are the same checkpoint under two names",
            where,
            config.base_model_name_or_path,
            base_model,
        )
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise AdapterCheckpointError(f"{folder} has {CONFIG_NAME} but no {WEIGHTS_NAME}; the save did not finish")
    if sha is not None and _sha256(weights) != sha:
        raise AdapterCheckpointError(
            f"{weights} does not match the sha256 its {CONFIG_NAME} names: the two files come from different saves "
            "(a save interrupted, or a file copied over); save the adapter again"
        )
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as err:
        raise AdapterCheckpointError(f"{weights} is not a readable safetensors file ({err})") from err
    with torch.device("meta"):  # the shapes the config implies, before anything is allocated
        expected = ConsistencyAdapter(config).state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise AdapterCheckpointError(
            f"{weights} does not fit the adapter its config describes: missing tensors {missing}, unexpected "
            f"tensors {extra}; the checkpoint is damaged or was written by other code"
        )
    wrong = [
        f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape
    ]
    if wrong:
        raise AdapterCheckpointError(f"{weights}: tensors of the wrong shape for its config ({'; '.join(wrong)})")
    not_float = sorted(k for k, t in state.items() if not t.is_floating_point())
    if not_float:
        raise AdapterCheckpointError(f"{weights}: tensors {not_float} are not floating point; not adapter weights")
    adapter = ConsistencyAdapter(config)
    adapter.load_state_dict(state)
    adapter.eval()
    return adapter.to(device or "cpu")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _name(model: str) -> str:
    return str(model).rstrip("/").split("/")[-1]
