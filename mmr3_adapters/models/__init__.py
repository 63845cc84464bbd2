"""The model wrappers: batched BLIP-2 and LLaVA-1.5 generation (and training forwards) on Hugging
Face transformers. `mmr3_adapters.lmms_models` registers them with lmms-eval; docs/models.md
describes them.

- `base`: the three steps every batch goes through, and the training forward.
- `llava`, `blip2`: the two families. `old_checkpoints`: repairs for old local copies.
- `generation`: decoding settings and batch planning (pure Python). `prompts`: the prompt formats.
- `placement`: devices under `accelerate launch`. `tiny`: tiny random checkpoints, built offline.
- `pretrained`: the check of a `pretrained` value (a local folder or a hub id) before it loads.

Imports: torch, transformers and `mmr3_tasks.errors`; never lmms_eval, nor `mmr3_adapters.adapter`,
which builds on these wrappers (`mmr3_adapters.lmms_models` puts a trained adapter on them).
"""

from mmr3_adapters.models.base import (
    IGNORE_INDEX,
    Batch,
    Generated,
    Query,
    Sample,
    TrainingBatch,
    VisionLanguageGenerator,
    generation_positions,
    resolve_dtype,
)
from mmr3_adapters.models.blip2 import Blip2Generator
from mmr3_adapters.models.llava import IMAGE_ASPECTS, LlavaGenerator, check_image_aspect, pad_to_square
from mmr3_adapters.models.placement import Placement, resolve_placement

FAMILIES: dict[str, type[VisionLanguageGenerator]] = {"blip2": Blip2Generator, "llava": LlavaGenerator}

__all__ = [
    "FAMILIES",
    "IGNORE_INDEX",
    "IMAGE_ASPECTS",
    "Batch",
    "Blip2Generator",
    "Generated",
    "LlavaGenerator",
    "Placement",
    "Query",
    "Sample",
    "TrainingBatch",
    "VisionLanguageGenerator",
    "check_image_aspect",
    "generation_positions",
    "pad_to_square",
    "resolve_dtype",
    "resolve_placement",
]
