"""The LoRA baseline (PEFT): plain parameter-efficient fine-tuning of the LLM, trained on the same
data by the same loop as the consistency adapter, so the two can be compared.

LoRA goes into the language model's attention projections only (never the vision tower, whose
CLIP layers have `q_proj` / `v_proj` too); the vision encoder, projector and embeddings stay as
they are, so the frozen input sequence of step 2 is the same for both methods. A LoRA folder is
PEFT's own (`adapter_config.json` with `peft_type: LORA`, `adapter_model.safetensors`) plus
`mmr3_lora.json`, which records the backbone it was trained on and the training settings.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmr3_adapters.adapter.checkpoint import PICKLE_SUFFIXES, AdapterCheckpointError, check_compatible
from mmr3_adapters.adapter.config import AdapterConfig, library_versions
from mmr3_adapters.models import VisionLanguageGenerator

SIDECAR = "mmr3_lora.json"
# The LLM's attention query and value projections, as in the LoRA paper.
DEFAULT_TARGETS = {"llava": ("q_proj", "v_proj"), "blip2-opt": ("q_proj", "v_proj"), "blip2-t5": ("q", "v")}


@dataclass
class LoraSettings:
    """LoRA's sizes (PEFT's LoraConfig fields). `target_modules` None: DEFAULT_TARGETS of the backbone."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] | None = field(default=None)

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ValueError(f"lora r must be a positive integer, got {self.r!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"lora dropout must be in [0, 1), got {self.dropout!r}")


def target_pattern(backbone: str, targets: list[str] | None) -> str:
    """A PEFT target regex that matches those projections inside the language model only."""
    names = list(targets or DEFAULT_TARGETS[backbone])
    return rf".*language_model.*\.({'|'.join(re.escape(n) for n in names)})"


def apply_lora(generator: VisionLanguageGenerator, settings: LoraSettings) -> Any:
    """Injects fresh LoRA weights into the generator's model in place; returns the PeftModel.

    Everything but the LoRA weights is frozen (PEFT does so). `generator.model` stays the same
    object: only its language model's projections gained LoRA branches.
    """
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=target_pattern(generator.backbone, settings.target_modules),
        bias="none",
    )
    try:
        return get_peft_model(generator.model, config)
    except ValueError as err:  # PEFT: "Target modules ... not found in the base model"
        raise ValueError(
            f"LoRA target modules {settings.target_modules or list(DEFAULT_TARGETS[generator.backbone])} match no "
            f"layer of this {generator.family} language model ({err}); pass --lora-targets with its projection names"
        ) from err


def save_lora(peft_model: Any, directory: str | Path, generator: VisionLanguageGenerator, training: dict) -> Path:
    """PEFT's files plus our sidecar, each moved into `directory` atomically (the sidecar last)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".lora-save-", dir=out) as tmp:
        peft_model.save_pretrained(tmp)
        sidecar = {
            "backbone": generator.backbone,
            "hidden_size": generator.hidden_size,
            "base_model_name_or_path": str(getattr(generator.model.config, "_name_or_path", "")),
            "training": training,
            "library_versions": library_versions(),
        }
        Path(tmp, SIDECAR).write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        names = sorted(os.listdir(tmp), key=lambda n: n == SIDECAR)
        for name in names:
            src = Path(tmp, name)
            if src.is_dir():  # PEFT writes nothing nested for a single default adapter
                shutil.copytree(src, out / name, dirs_exist_ok=True)
                continue
            with open(src, "rb") as f:
                os.fsync(f.fileno())
            os.replace(src, out / name)
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AdapterCheckpointError(f"{path} is not valid JSON ({err}); the folder is damaged") from err


def read_lora_config(directory: str | Path) -> AdapterConfig | None:
    """Checks a LoRA folder without loading it; returns what its sidecar says it was trained on
    (None for a plain PEFT folder without one).

    Raises:
        AdapterCheckpointError: no such folder, no PEFT LoRA config, a pickle instead of safetensors,
            a damaged config or sidecar.
    """
    folder = Path(directory)
    where = f"lora={folder}"
    if not folder.is_dir():
        raise AdapterCheckpointError(f"{where} does not exist or is not a folder; give the --out folder of a LoRA run")
    config_path = folder / "adapter_config.json"
    if not config_path.is_file():
        raise AdapterCheckpointError(f"{folder} has no adapter_config.json: not a LoRA folder")
    config = _read_json(config_path)
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        hint = (
            " (an MM-R³ consistency adapter: pass it as adapter=...)"
            if isinstance(config, dict) and ("adapter_type" in config)
            else ""
        )
        raise AdapterCheckpointError(f"{config_path} is not a PEFT LoRA config{hint}")
    if not (folder / "adapter_model.safetensors").is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        raise AdapterCheckpointError(
            f"{folder} has no adapter_model.safetensors"
            + (f"; {pickles} are pickles and are never loaded (re-save with safe_serialization)" if pickles else "")
        )
    sidecar_path = folder / SIDECAR
    if not sidecar_path.is_file():
        return None
    sidecar = _read_json(sidecar_path)
    try:
        return AdapterConfig(
            hidden_size=int(sidecar["hidden_size"]),
            backbone=sidecar["backbone"],
            base_model_name_or_path=str(sidecar.get("base_model_name_or_path", "")),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise AdapterCheckpointError(f"{sidecar_path} does not name the backbone it was trained on ({err!r})") from err


def load_lora(generator: VisionLanguageGenerator, directory: str | Path) -> Any:
    """Loads a LoRA folder onto the generator's model (in place), checked first; returns the PeftModel.

    Raises:
        AdapterCheckpointError: what `read_lora_config` refuses, a sidecar that names another backbone
            kind or width, or weights PEFT cannot load.
    """
    from peft import PeftModel
    from safetensors import SafetensorError

    folder = Path(directory)
    where = f"lora={folder}"
    recorded = read_lora_config(folder)
    if recorded is not None:
        check_compatible(recorded, generator.backbone, generator.hidden_size, where)
    try:
        return PeftModel.from_pretrained(generator.model, str(folder), is_trainable=False)
    except (ValueError, KeyError, RuntimeError, SafetensorError, OSError) as err:
        raise AdapterCheckpointError(f"{where} does not fit this model: {type(err).__name__}: {err}") from err
