"""LLaVA-1.5 (and the other llava-hf `llava` checkpoints): prompts, square padding, features."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mmr3_adapters.models import prompts
from mmr3_adapters.models.base import VisionLanguageGenerator
from mmr3_adapters.models.generation import GenerationSettings
from mmr3_adapters.models.old_checkpoints import complete_llava_processor

IMAGE_ASPECTS = ("pad", "crop")


def check_image_aspect(image_aspect: str) -> None:
    """ValueError unless `image_aspect` is one of IMAGE_ASPECTS: the one check and message of it.

    `mmr3_llava` calls it before loading the model, LlavaGenerator when it is built directly.
    """
    if image_aspect not in IMAGE_ASPECTS:
        raise ValueError(
            f"image_aspect must be 'pad' or 'crop', got {image_aspect!r}: 'pad' squares each image with the "
            "processor's mean colour first (LLaVA-1.5's own evaluation), 'crop' leaves it to the processor's "
            "centre crop (llava-hf's processor, lmms-eval's llava_hf); see docs/models.md"
        )


def pad_to_square(image: Any, colour: tuple[int, ...]) -> Any:
    """`image` (PIL) centred on a square of `colour`, its longer side long: nothing is cut off.

    LLaVA-1.5 was trained and evaluated this way (`image_aspect_ratio: pad`, expand2square); the
    llava-hf processor instead resizes the short side and centre-crops, which drops the outer parts
    of the long side.
    """
    from PIL import Image

    image = image.convert("RGB")
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = Image.new("RGB", (side, side), colour)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    return square


class LlavaGenerator(VisionLanguageGenerator):
    """LLaVA-1.5 and the other `LlavaForConditionalGeneration` checkpoints of llava-hf.

    Args:
        use_chat_template: Prompt with the processor's chat template when it has one (default);
            False, or a processor without one, uses `prompts.LLAVA_FALLBACK_PROMPT`.
    """

    family = "LLaVA"
    model_types = ("llava",)
    backbone = "llava"

    def __init__(
        self, model: torch.nn.Module, processor: Any, use_chat_template: bool = True, image_aspect: str = "pad"
    ) -> None:
        check_image_aspect(image_aspect)
        complete_llava_processor(processor, model.config)
        super().__init__(model, processor)
        template = getattr(processor, "chat_template", None) if use_chat_template else None
        self.chat_template: str | None = template or None
        self.image_aspect = image_aspect
        self.use_chat_template = bool(use_chat_template)
        mean = getattr(processor.image_processor, "image_mean", None) or (0.0, 0.0, 0.0)
        # As LLaVA's expand2square: tuple(int(x * 255) for x in image_processor.image_mean).
        self.pad_colour = tuple(int(x * 255) for x in mean)

    def prepare_images(self, images: Sequence[Any]) -> list[Any]:
        if self.image_aspect == "crop":
            return list(images)
        return [pad_to_square(image, self.pad_colour) for image in images]

    @staticmethod
    def _model_class() -> type:
        from transformers import LlavaForConditionalGeneration

        return LlavaForConditionalGeneration

    @property
    def options(self) -> dict[str, Any]:
        return {"use_chat_template": self.use_chat_template, "image_aspect": self.image_aspect}

    @property
    def language_model(self) -> torch.nn.Module:
        # LlavaForConditionalGeneration reads inputs_embeds (no pixel_values) and runs its lm_head.
        return self.model

    def prompt(self, context: str, n_images: int) -> str:
        return prompts.llava_prompt(context, n_images, self.chat_template, self.processor.apply_chat_template)

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        config = self.model.config
        out = self.model.get_image_features(
            pixel_values=pixel_values,
            vision_feature_layer=config.vision_feature_layer,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
        )
        # transformers 5 returns a ModelOutput whose pooler_output is a per-image list; 4.x a tensor.
        features = getattr(out, "pooler_output", out)
        if isinstance(features, (list, tuple)):
            features = torch.stack(list(features))
        return features

    def generate_from_embeddings(
        self, embeds: torch.Tensor, attention_mask: torch.Tensor, settings: GenerationSettings
    ) -> torch.Tensor:
        # No input_ids: generate returns the new tokens only, and nothing re-reads the prompt ids,
        # so a prefix added by transform_embeddings needs no fake token ids.
        return self.model.generate(
            inputs_embeds=embeds, attention_mask=attention_mask, **self._generate_kwargs(settings)
        )
