"""Repairs for local copies of llava-hf / Salesforce BLIP-2 checkpoints saved before the 2024 hub
updates, whose processors lack what the model config knows (docs/models.md, "Old local copies")."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("mmr3")


def complete_blip2_processor(processor: Any, config: Any) -> None:
    """Gives a Blip2Processor without `num_query_tokens` the model config's query count.

    A copy saved before the late-2024 hub update has no processor_config.json: its processor would
    add no `<image>` placeholders, and transformers' own generate then ignores the image without a
    word.
    """
    if getattr(processor, "num_query_tokens", None) is not None:
        return
    processor.num_query_tokens = int(config.num_query_tokens)
    logger.warning(
        "this BLIP-2 checkpoint has no processor_config.json (saved before the late-2024 update of the "
        "Salesforce/blip2-* repositories); using num_query_tokens=%d from its config.json. Re-download it "
        "to silence this warning.",
        processor.num_query_tokens,
    )


def complete_llava_processor(processor: Any, config: Any) -> None:
    """Fills what a LlavaProcessor of an old local copy lacks, from the model config.

    llava-hf repositories gained processor_config.json in 2024, in two steps: first `patch_size`
    and `vision_feature_select_strategy`, later `num_additional_image_tokens`. A copy saved before
    the first loads a processor whose `patch_size` is None (processing fails with a bare TypeError);
    one saved between the two counts 575 placeholders for 576 features (transformers #36002). The
    values follow from the model: the vision tower's patch size, the config's selection strategy,
    and one extra token for a CLIP tower's CLS position, which every CLIP-tower checkpoint needs
    (the "default" strategy drops it again: 576 placeholders at 336 px).
    """
    if not hasattr(processor, "patch_size"):
        return
    vision = config.vision_config
    filled = {}
    if processor.patch_size is None:
        filled["patch_size"] = int(vision.patch_size)
    if getattr(processor, "vision_feature_select_strategy", None) is None:
        filled["vision_feature_select_strategy"] = config.vision_feature_select_strategy
    clip_tower = getattr(vision, "model_type", "") == "clip_vision_model"
    if clip_tower and not getattr(processor, "num_additional_image_tokens", 0):
        filled["num_additional_image_tokens"] = 1
    if not filled:
        return
    for name, value in filled.items():
        setattr(processor, name, value)
    logger.warning(
        "this LLaVA checkpoint's processor_config.json lacks %s (a copy saved before the 2024 updates of the "
        "llava-hf repositories); using %s from its config.json. Re-download it to silence this warning.",
        ", ".join(filled),
        ", ".join(f"{name}={value!r}" for name, value in filled.items()),
    )
