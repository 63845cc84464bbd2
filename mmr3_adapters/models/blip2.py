"""BLIP-2 with an OPT (decoder-only) or Flan-T5 (encoder-decoder) language model."""

from __future__ import annotations

from typing import Any

import torch

from mmr3_adapters.models import prompts
from mmr3_adapters.models.base import Batch, Sample, VisionLanguageGenerator
from mmr3_adapters.models.generation import GenerationSettings
from mmr3_adapters.models.old_checkpoints import complete_blip2_processor


class Blip2Generator(VisionLanguageGenerator):
    """BLIP-2 with an OPT (decoder-only) or Flan-T5 (encoder-decoder) language model.

    Args:
        prompt: A format with one `{question}` field; default `prompts.BLIP2_PROMPT`.
    """

    family = "BLIP-2"
    model_types = ("blip-2",)

    def __init__(self, model: torch.nn.Module, processor: Any, prompt: str = prompts.BLIP2_PROMPT) -> None:
        if "{question}" not in prompt:
            raise ValueError(f"prompt must contain {{question}}, got {prompt!r} (default {prompts.BLIP2_PROMPT!r})")
        self.prompt_template = prompt
        complete_blip2_processor(processor, model.config)
        super().__init__(model, processor)
        self.encoder_decoder = bool(model.language_model.config.is_encoder_decoder)

    @staticmethod
    def _model_class() -> type:
        from transformers import Blip2ForConditionalGeneration

        return Blip2ForConditionalGeneration

    @property
    def backbone(self) -> str:
        return "blip2-t5" if self.encoder_decoder else "blip2-opt"

    @property
    def options(self) -> dict[str, Any]:
        return {"prompt": self.prompt_template}

    @property
    def language_model(self) -> torch.nn.Module:
        # OPTForCausalLM / T5ForConditionalGeneration: Blip2ForConditionalGeneration.generate would
        # re-run the vision encoder and knows no prefix, so step 3 and training call the LLM directly.
        return self.model.language_model

    def prompt(self, context: str, n_images: int) -> str:
        return prompts.blip2_prompt(context, self.prompt_template)

    def check_images(self, sample: Sample) -> None:
        if len(sample.images) != 1:
            raise ValueError(
                f"sample {sample.sample_id}: BLIP-2 answers about exactly one image, got {len(sample.images)}; "
                "use a task whose doc_to_visual returns one image per doc"
            )

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # As Blip2ForConditionalGeneration.generate: ViT -> Q-Former queries -> projection into the LLM.
        model = self.model
        image_embeds = model.vision_model(pixel_values=pixel_values, return_dict=True).last_hidden_state
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
        query_output = model.qformer(
            query_embeds=queries,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
            return_dict=True,
        ).last_hidden_state
        if query_output.dtype != image_embeds.dtype:  # the Q-Former is kept in fp32
            query_output = query_output.to(image_embeds.dtype)
        return model.language_projection(query_output)

    def generate_from_embeddings(
        self, embeds: torch.Tensor, attention_mask: torch.Tensor, settings: GenerationSettings
    ) -> torch.Tensor:
        ids = self.model.language_model.generate(
            inputs_embeds=embeds, attention_mask=attention_mask, **self._generate_kwargs(settings)
        )
        return ids[:, 1:] if self.encoder_decoder else ids  # T5 output starts with its decoder start token

    def _strip_reference_prompt(self, ids: torch.Tensor, batch: Batch) -> torch.Tensor:
        # Blip2ForConditionalGeneration.generate: OPT returns prompt + new tokens, T5 start token + new.
        return ids[:, 1:] if self.encoder_decoder else ids[:, batch.input_ids.shape[1] :]

    # ------------------------------------------------------------------ training (T5: the encoder reads the prefix)

    def answer_token_ids(self, prompt: str, answer: str) -> list[int]:
        if not self.encoder_decoder:
            return super().answer_token_ids(prompt, answer)
        if not answer.strip():
            raise ValueError(f"empty training answer after prompt {prompt[-80:]!r}")
        # The decoder writes the answer on its own, from its start token.
        return self._end_with_stop(self.tokenizer(answer.strip())["input_ids"])

    def answer_logits(self, embeds: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not self.encoder_decoder:
            return super().answer_logits(embeds, attention_mask, labels)
        # T5 shifts the labels right behind its decoder start token, as generate starts from it.
        out = self.language_model(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            labels=labels.to(embeds.device).contiguous(),
            use_cache=False,
        )
        return out.logits
