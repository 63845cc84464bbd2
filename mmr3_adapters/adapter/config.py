"""The consistency adapter's configuration: a dataclass that round-trips to `adapter_config.json`.

Which field is the paper's and which fills a gap it leaves (docs/adapter.md, "Every setting"):

| field | default | from |
|---|---|---|
| `prefix_length` | 3 | the paper ("same setting as in Newman et al. (2022)") |
| `lstm_layers` | 2 | the paper ("2 recurrent layers") |
| `lstm_dropout` | 0.0 | the paper ("dropout 0") |
| `lstm_hidden_size` | H // 2 per direction | P-Adapter; the paper's "hidden size 4096" does not say per direction |
| `mlp_hidden_size` | H | P-Adapter (Linear(H, H) -> ReLU -> Linear(H, 3H)); the paper gives no MLP sizes |
| `mlp_activation` | relu | P-Adapter |
| pooling | max over the real tokens | the paper ("max-pooling"); pads never take part (ours) |

H is the width of the backbone's LLM input embeddings (4096 for Vicuna-7B and T5-XXL).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mmr3_tasks.errors import MMR3Error

logger = logging.getLogger("mmr3")

ADAPTER_TYPE = "mmr3-prefix-lstm"
FORMAT_VERSION = 1
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
BACKBONES = ("llava", "blip2-opt", "blip2-t5")
ACTIVATIONS = ("relu", "gelu", "tanh")


class AdapterConfigError(MMR3Error, ValueError):
    """An adapter configuration that cannot describe a working adapter; the message names the field."""


@dataclass(kw_only=True)
class AdapterSizes:
    """The adapter's sizes; what `mmr3 train-adapter` lets you set (TrainConfig.adapter).

    Attributes:
        prefix_length: Prefix embeddings placed in front of each row's first real token.
        lstm_layers: Layers of the bidirectional LSTM.
        lstm_hidden_size: Units per direction; None means H // 2 (P-Adapter), so the output is H wide.
        lstm_dropout: Dropout between LSTM layers.
        mlp_hidden_size: Width of the MLP's hidden layer; None means H (P-Adapter).
        mlp_activation: "relu" (P-Adapter), "gelu" or "tanh".
    """

    prefix_length: int = 3
    lstm_layers: int = 2
    lstm_hidden_size: int | None = None
    lstm_dropout: float = 0.0
    mlp_hidden_size: int | None = None
    mlp_activation: str = "relu"

    def __post_init__(self) -> None:
        for name in ("prefix_length", "lstm_layers"):
            _positive(name, getattr(self, name))
        for name in ("lstm_hidden_size", "mlp_hidden_size"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        if self.mlp_activation not in ACTIVATIONS:
            raise AdapterConfigError(f"mlp_activation must be one of {ACTIVATIONS}, got {self.mlp_activation!r}")
        dropout = self.lstm_dropout
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise AdapterConfigError(f"lstm_dropout must be a number in [0, 1), got {dropout!r}")

    def sizes(self) -> dict[str, Any]:
        """Just the size fields (an AdapterConfig's, too), as keyword arguments."""
        return {f.name: getattr(self, f.name) for f in fields(AdapterSizes)}


@dataclass(kw_only=True)
class AdapterConfig(AdapterSizes):
    """Sizes of one consistency adapter (AdapterSizes) and what it was built for.

    Attributes:
        hidden_size: H, the backbone LLM's input-embedding width. Loading onto another width fails.
        backbone: "llava", "blip2-opt" or "blip2-t5". Loading onto another kind fails.
        base_model_name_or_path: The checkpoint the adapter was trained on (hub id or folder).
        revision: Its hub revision, when one was given.
        generator_options: The wrapper options the adapter was trained with (BLIP-2 `prompt`, LLaVA
            `use_chat_template`, `image_aspect`): evaluation warns when they differ.
        training: The training configuration (`TrainConfig.to_dict()`), for the record.
        library_versions: torch, transformers, lmms-eval-mmr3 (and peft) at save time.
    """

    hidden_size: int
    backbone: str
    base_model_name_or_path: str = ""
    revision: str | None = None
    generator_options: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)
    adapter_type: str = ADAPTER_TYPE
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("hidden_size", self.hidden_size)
        for name, kind in (("generator_options", dict), ("training", dict), ("library_versions", dict)):
            if not isinstance(getattr(self, name), kind):
                raise AdapterConfigError(f"{name} must be a JSON object, got {getattr(self, name)!r}")
        if not isinstance(self.base_model_name_or_path, str) or not isinstance(self.revision, (str, type(None))):
            raise AdapterConfigError(
                f"base_model_name_or_path and revision must be strings, got {self.base_model_name_or_path!r}, "
                f"{self.revision!r}"
            )
        _positive("format_version", self.format_version)
        if self.backbone not in BACKBONES:
            raise AdapterConfigError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.adapter_type != ADAPTER_TYPE:
            raise AdapterConfigError(f"adapter_type {self.adapter_type!r} is not an MM-R³ adapter ({ADAPTER_TYPE!r})")
        if self.format_version > FORMAT_VERSION:
            raise AdapterConfigError(
                f"format_version {self.format_version} is newer than this lmms-eval-mmr3 reads ({FORMAT_VERSION}); "
                "upgrade lmms-eval-mmr3"
            )

    @property
    def lstm_width(self) -> int:
        """Units per LSTM direction."""
        return self.lstm_hidden_size or max(1, self.hidden_size // 2)

    @property
    def mlp_width(self) -> int:
        return self.mlp_hidden_size or self.hidden_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "adapter config") -> AdapterConfig:
        """Reads a config dict; unknown keys are warned about and ignored (as PEFT does)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            logger.warning("%s: ignoring unknown keys %s (written by a newer lmms-eval-mmr3?)", source, unknown)
        missing = [name for name in ("hidden_size", "backbone") if name not in data]
        if missing:
            raise AdapterConfigError(f"{source} lacks {missing}: not an MM-R³ adapter config")
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except AdapterConfigError as err:
            raise AdapterConfigError(f"{source}: {err}") from err
        except (TypeError, ValueError) as err:  # a value of the wrong type met in a comparison
            raise AdapterConfigError(f"{source}: {err}") from err


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AdapterConfigError(f"{name} must be a positive integer, got {value!r}")


def library_versions() -> dict[str, str]:
    """Versions recorded in every saved adapter."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("lmms-eval-mmr3", "torch", "transformers", "peft", "accelerate"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "absent"
    return out
