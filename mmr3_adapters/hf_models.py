"""Batched BLIP-2 and LLaVA-1.5 generation on Hugging Face transformers. No lmms-eval import.

Every batch goes the same three steps, so that a consistency adapter (DESIGN.md, "The adapter")
can later slot in between the second and the third without reshaping anything:

1. `build_batch`: prompts in the family's format (mmr3_adapters.prompts), tokenised one by one,
   left-padded here (BLIP-2's processor would put its query tokens *before* the padding), images
   stacked.
2. `input_embeddings`: the frozen LLM's input sequence, i.e. token embeddings with the image
   features (LLaVA's projected patches, BLIP-2's projected Q-Former queries) written into the
   `<image>` placeholder positions, and its attention mask. Shapes (B, L, H) and (B, L).
3. `generate_from_embeddings`: the LLM decodes from that sequence and returns only new tokens.

`transform_embeddings` sits between 2 and 3 and is the identity today; the adapter will prepend its
prefix embeddings there. Step 3 from step 2's output gives the same greedy tokens as the model's
own `generate(input_ids, pixel_values)` (tests/test_models_generation.py checks it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from mmr3_adapters import prompts
from mmr3_adapters.generation import GenerationError, GenerationSettings, plan_batches, truncate_at_stop

logger = logging.getLogger("mmr3")

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


@dataclass(frozen=True)
class Sample:
    """One query, ready to encode: the id errors name, the task's text and the images."""

    sample_id: str
    context: str
    images: Sequence[Any] = ()


@dataclass(frozen=True)
class Query:
    """One request before its doc is read; `load` reads it (image decoding happens there).

    `where` names the request while its row id is still unknown (e.g. "mmr3_rephrase/12").
    """

    context: str
    settings: GenerationSettings
    load: Callable[[], Sample]
    where: str


@dataclass(frozen=True)
class Generated:
    """One answer and its token counts."""

    text: str
    input_tokens: int
    output_tokens: int


@dataclass
class Batch:
    """Model inputs for a batch, left-padded. `pixel_values` holds all images of the batch in order."""

    sample_ids: list[str]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pixel_values: torch.Tensor | None = None


def _dtype_keyword() -> str:
    """`from_pretrained`'s dtype keyword: `dtype` since transformers 4.56, `torch_dtype` before."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def resolve_dtype(dtype: str | torch.dtype | None) -> str | torch.dtype:
    """`from_pretrained`'s dtype from a model_args value: "auto", a torch dtype or its name."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return "auto" if dtype is None else dtype
    name = str(dtype).lower().removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; use auto, {', '.join(sorted(DTYPES))}")
    return DTYPES[name]


class VisionLanguageGenerator:
    """A frozen image-text model that answers batches of queries. Subclasses set the family details.

    Args:
        model: The loaded `*ForConditionalGeneration`, in eval mode, on its device(s).
        processor: Its processor (tokenizer + image processor).
    """

    family: ClassVar[str] = ""
    model_types: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: torch.nn.Module, processor: Any) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.pad_token_id = self._pad_token_id()
        self.image_token_id = self._image_token_id()
        self.stop_token_ids = self._stop_token_ids()

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(
        cls,
        pretrained: str | Path,
        *,
        revision: str | None = None,
        dtype: str | torch.dtype | None = "auto",
        device: str | torch.device | None = None,
        device_map: str | dict | None = None,
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
        **init_kwargs: Any,
    ) -> VisionLanguageGenerator:
        """Loads a checkpoint (hub id or folder) of this family.

        Args:
            pretrained: Hub id or local folder.
            revision: Hub revision (branch, tag or commit).
            dtype: "auto" (the checkpoint's), or float32 / float16 / bfloat16.
            device: Where to put the whole model when `device_map` is not given.
            device_map: Passed to `from_pretrained` (e.g. "auto" to spread over GPUs); the model
                is then left where accelerate put it.
            attn_implementation: "sdpa", "eager", "flash_attention_2"; None lets transformers choose.
            trust_remote_code: Passed to `from_pretrained`.
            **init_kwargs: Family options (BLIP-2 `prompt`, LLaVA `use_chat_template`).
        """
        from transformers import AutoConfig, AutoProcessor

        hub = {"revision": revision, "trust_remote_code": trust_remote_code}
        hub = {k: v for k, v in hub.items() if v is not None}
        config = AutoConfig.from_pretrained(pretrained, **hub)
        model_type = getattr(config, "model_type", None)
        if model_type not in cls.model_types:
            raise ValueError(
                f"{pretrained!r} is a {model_type!r} checkpoint, not {cls.family} "
                f"(model_type {' or '.join(cls.model_types)}); {_suggest_model(model_type)}"
            )
        load: dict[str, Any] = {_dtype_keyword(): resolve_dtype(dtype), **hub}
        if device_map not in (None, ""):
            load["device_map"] = device_map
        if attn_implementation:
            load["attn_implementation"] = attn_implementation
        model = cls._model_class().from_pretrained(pretrained, **load)
        if "device_map" not in load:
            model.to(device or "cpu")
        model.eval()
        processor = AutoProcessor.from_pretrained(pretrained, **hub)
        return cls(model, processor, **init_kwargs)

    @staticmethod
    def _model_class() -> type:
        raise NotImplementedError

    # ------------------------------------------------------------------ the three steps

    def prompt(self, context: str, n_images: int) -> str:
        """The family's prompt text for a task's text and its image count."""
        raise NotImplementedError

    def check_images(self, sample: Sample) -> None:
        """Raises ValueError (naming the sample) when its image count does not suit the family."""

    def prepare_images(self, images: Sequence[Any]) -> list[Any]:
        """The images as the processor should get them; unchanged here (LLaVA may pad them)."""
        return list(images)

    def build_batch(self, samples: Sequence[Sample]) -> Batch:
        """Step 1: prompts, tokens (left-padded to the longest) and pixel values of a batch."""
        rows, pixels = [], []
        for s in samples:
            self.check_images(s)
            text = self.prompt(s.context, len(s.images))
            enc = self.processor(text=text, images=self.prepare_images(s.images) or None, return_tensors="pt")
            rows.append(enc["input_ids"][0])
            if "pixel_values" in enc:
                pixels.append(enc["pixel_values"])
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, width - len(r) :] = r
            attention_mask[i, width - len(r) :] = 1
        return Batch(
            sample_ids=[s.sample_id for s in samples],
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=torch.cat(pixels) if pixels else None,
        )

    def input_embeddings(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Step 2: the LLM's input embeddings (B, L, H) and attention mask (B, L)."""
        device = self.input_device
        input_ids = batch.input_ids.to(device)
        embeds = self.model.get_input_embeddings()(input_ids)
        image_mask = input_ids == self.image_token_id
        if batch.pixel_values is None:
            if image_mask.any():
                raise ValueError(f"samples {batch.sample_ids} have {prompts.IMAGE_TOKEN} tokens but no image")
            return embeds, batch.attention_mask.to(device)
        features = self.image_features(batch.pixel_values.to(device, self.vision_dtype))
        features = features.reshape(-1, features.shape[-1]).to(embeds.device, embeds.dtype)
        n_slots = int(image_mask.sum())
        if n_slots != features.shape[0]:
            raise ValueError(
                f"samples {batch.sample_ids}: the prompts hold {n_slots} image token(s) but the images give "
                f"{features.shape[0]} feature vector(s); the processor and model configs disagree "
                f"({type(self.processor).__name__}, image_token_id {self.image_token_id})"
            )
        embeds = embeds.masked_scatter(image_mask.unsqueeze(-1), features)
        return embeds, batch.attention_mask.to(device)

    def transform_embeddings(
        self, embeds: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Between steps 2 and 3; the identity. The consistency adapter overrides it to add its prefix."""
        return embeds, attention_mask

    def generate_from_embeddings(
        self, embeds: torch.Tensor, attention_mask: torch.Tensor, settings: GenerationSettings
    ) -> torch.Tensor:
        """Step 3: new token ids (B, T) decoded from the input sequence, padded with the pad id."""
        raise NotImplementedError

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Image features in the LLM's embedding space, (n_images, tokens_per_image, H)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ batches and request lists

    @torch.inference_mode()
    def generate(self, samples: Sequence[Sample], settings: GenerationSettings) -> list[Generated]:
        """Answers one batch (all with the same settings).

        Raises:
            GenerationError: for any failure, naming every sample id of the batch; never an empty answer.
        """
        try:
            batch = self.build_batch(samples)
            embeds, mask = self.input_embeddings(batch)
            embeds, mask = self.transform_embeddings(embeds, mask)
            new_tokens = self.generate_from_embeddings(embeds, mask, settings)
        except Exception as err:
            ids = [s.sample_id for s in samples]
            raise GenerationError(
                f"{self.family} generation failed for sample(s) {ids}: {type(err).__name__}: {err}"
            ) from err
        return self._decode(new_tokens, batch, settings)

    def reference_generate(self, samples: Sequence[Sample], settings: GenerationSettings) -> list[str]:
        """The model's own `generate(input_ids, pixel_values)`, one sample at a time. For tests."""
        out = []
        with torch.inference_mode():
            for s in samples:
                batch = self.build_batch([s])
                ids = self.model.generate(**self._reference_inputs(batch), **self._generate_kwargs(settings))
                ids = self._strip_reference_prompt(ids, batch)
                out.append(self._decode(ids, batch, settings)[0].text)
        return out

    def prompt_length(self, context: str) -> int:
        """Tokens in a task's text: the sort key for batching (images add the same to each prompt)."""
        return len(self.tokenizer(context, add_special_tokens=False)["input_ids"])

    def generate_all(
        self,
        queries: Sequence[Query],
        batch_size: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[Generated]:
        """Answers queries in batches of `batch_size`, grouped by settings and sorted by prompt length.

        Args:
            queries: The requests; each doc is read (`load`) only when its batch runs.
            batch_size: Samples per `generate` call.
            on_batch: Called with the batch's size after each batch (progress bars).

        Returns:
            One Generated per query, in the order of `queries`.

        Raises:
            GenerationError: naming the failing sample(s).
        """
        lengths = [self.prompt_length(q.context) for q in queries]
        plan = plan_batches(lengths, [q.settings for q in queries], batch_size)
        answers: list[Generated | None] = [None] * len(queries)
        for indices in plan:
            samples = []
            for i in indices:
                try:
                    samples.append(queries[i].load())
                except Exception as err:
                    raise GenerationError(
                        f"could not read sample {queries[i].where}: {type(err).__name__}: {err}"
                    ) from err
            for i, answer in zip(indices, self.generate(samples, queries[indices[0]].settings), strict=True):
                answers[i] = answer
            if on_batch is not None:
                on_batch(len(indices))
        missing = [queries[i].where for i, a in enumerate(answers) if a is None]
        if missing:  # plan_batches covers every index; this guards the invariant, not user input
            raise GenerationError(f"no answer was produced for {missing}")
        return answers  # type: ignore[return-value]

    # ------------------------------------------------------------------ helpers

    @property
    def input_device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def vision_dtype(self) -> torch.dtype:
        return self.model.dtype

    def _image_token_id(self) -> int:
        """The `<image>` placeholder id: the model config's, else the tokenizer's (BLIP-2 copies saved
        before the late-2024 hub update have no image_token_index in config.json)."""
        config = self.model.config
        token_id = getattr(config, "image_token_id", None)
        if token_id is None:
            token_id = getattr(config, "image_token_index", None)
        if token_id is None:
            token_id = self.tokenizer.convert_tokens_to_ids(prompts.IMAGE_TOKEN)
            if token_id is None or token_id == self.tokenizer.unk_token_id:
                raise ValueError(
                    f"{type(config).__name__} defines no image_token_id and the tokenizer has no "
                    f"{prompts.IMAGE_TOKEN} token; cannot place image features. Re-download the checkpoint "
                    "(current llava-hf / Salesforce repositories define both)"
                )
            rows = self.model.get_input_embeddings().num_embeddings
            if token_id >= rows:
                raise ValueError(
                    f"the tokenizer's {prompts.IMAGE_TOKEN} id {token_id} is outside the language model's "
                    f"{rows} embedding rows; re-download the checkpoint (current repositories have the token)"
                )
        return int(token_id)

    def _stop_token_ids(self) -> frozenset[int]:
        """Ids that end an answer: the tokenizer's EOS and the generation configs' (BLIP-2 OPT stops at "\n")."""
        ids = {self.tokenizer.eos_token_id}
        for module in (self.model, getattr(self.model, "language_model", None)):
            eos = getattr(getattr(module, "generation_config", None), "eos_token_id", None)
            ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
        return frozenset(int(i) for i in ids if i is not None)

    def _pad_token_id(self) -> int:
        for token_id in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id):
            if token_id is not None:
                return int(token_id)
        raise ValueError(f"the tokenizer of this {self.family} checkpoint has neither a pad nor an eos token")

    def _generate_kwargs(self, settings: GenerationSettings) -> dict[str, Any]:
        kw = settings.generate_kwargs()
        kw["pad_token_id"] = self.pad_token_id
        return kw

    def _reference_inputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if batch.pixel_values is not None:
            inputs["pixel_values"] = batch.pixel_values.to(self.vision_dtype)
        return {k: v.to(self.input_device) for k, v in inputs.items()}

    def _strip_reference_prompt(self, ids: torch.Tensor, batch: Batch) -> torch.Tensor:
        return ids[:, batch.input_ids.shape[1] :]

    def _decode(self, new_tokens: torch.Tensor, batch: Batch, settings: GenerationSettings) -> list[Generated]:
        out = []
        for row, mask in zip(new_tokens.tolist(), batch.attention_mask.tolist(), strict=True):
            stop = next((i for i, t in enumerate(row) if t in self.stop_token_ids), None)
            if stop is not None:
                row = row[:stop]
            row = [t for t in row if t != self.pad_token_id]
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            text = truncate_at_stop(text, settings.until).strip()
            out.append(Generated(text=text, input_tokens=int(sum(mask)), output_tokens=len(row)))
        return out


class LlavaGenerator(VisionLanguageGenerator):
    """LLaVA-1.5 and the other `LlavaForConditionalGeneration` checkpoints of llava-hf.

    Args:
        use_chat_template: Prompt with the processor's chat template when it has one (default);
            False, or a processor without one, uses `prompts.LLAVA_FALLBACK_PROMPT`.
    """

    family = "LLaVA"
    model_types = ("llava",)

    def __init__(
        self, model: torch.nn.Module, processor: Any, use_chat_template: bool = True, image_aspect: str = "pad"
    ) -> None:
        if image_aspect not in IMAGE_ASPECTS:
            raise ValueError(
                f"image_aspect must be 'pad' or 'crop', got {image_aspect!r}: 'pad' squares each image with the "
                "processor's mean colour first (LLaVA-1.5's own evaluation), 'crop' leaves it to the processor's "
                "centre crop (llava-hf's processor, lmms-eval's llava_hf)"
            )
        _complete_llava_processor(processor, model.config)
        super().__init__(model, processor)
        template = getattr(processor, "chat_template", None) if use_chat_template else None
        self.chat_template: str | None = template or None
        self.image_aspect = image_aspect
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
        if getattr(processor, "num_query_tokens", None) is None:
            # A copy saved before the late-2024 hub update has no processor_config.json: its processor
            # would add no `<image>` placeholders, and transformers' own generate then ignores the image
            # without a word. The model config knows the query count.
            processor.num_query_tokens = int(model.config.num_query_tokens)
            logger.warning(
                "this BLIP-2 checkpoint has no processor_config.json (saved before the late-2024 update of the "
                "Salesforce/blip2-* repositories); using num_query_tokens=%d from its config.json. Re-download it "
                "to silence this warning.",
                processor.num_query_tokens,
            )
        super().__init__(model, processor)
        self.encoder_decoder = bool(model.language_model.config.is_encoder_decoder)

    @staticmethod
    def _model_class() -> type:
        from transformers import Blip2ForConditionalGeneration

        return Blip2ForConditionalGeneration

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


IMAGE_ASPECTS = ("pad", "crop")


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


def _complete_llava_processor(processor: Any, config: Any) -> None:
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


FAMILIES: dict[str, type[VisionLanguageGenerator]] = {"blip2": Blip2Generator, "llava": LlavaGenerator}


def _suggest_model(model_type: str | None) -> str:
    if model_type == "blip-2":
        return "use --model mmr3_blip2"
    if model_type == "llava":
        return "use --model mmr3_llava"
    if model_type in ("llava_next", "llava_onevision"):
        return "this wrapper covers LLaVA-1.5-style checkpoints; use lmms-eval's llava_hf for it"
    return "pass a BLIP-2 (Salesforce/blip2-*) or LLaVA-1.5 (llava-hf/llava-1.5-*) checkpoint"


@dataclass(frozen=True)
class Placement:
    """Where one process puts its model, and its share of a data-parallel run.

    Attributes:
        device: The device the whole model goes to, or the inputs' device under a device_map.
        device_map: Passed to `from_pretrained`, or None.
        rank: This process's index among the data-parallel processes.
        world_size: Number of data-parallel processes (1 without `accelerate launch`).
    """

    device: str
    device_map: str | None
    rank: int = 0
    world_size: int = 1


def resolve_placement(
    device: str | None,
    device_map: str | None,
    *,
    num_processes: int = 1,
    process_index: int = 0,
    process_device: str | None = None,
    cuda_available: bool = False,
) -> Placement:
    """Decides device, device_map and rank from the model_args and the accelerate launch state.

    Under `accelerate launch` with N processes each process holds a full copy of the model on its
    own device (`process_device`, e.g. cuda:3) and answers every N-th request (lmms-eval shards
    them); a `device` from the command line is overridden, as lmms-eval's llava_hf does. A
    device_map cannot be combined with that.

    Raises:
        ValueError: device_map given together with several processes.
    """
    device_map = None if device_map in (None, "") else str(device_map)
    if num_processes > 1:
        if device_map is not None:
            raise ValueError(
                f"device_map={device_map!r} spreads one model over devices, which cannot be combined with "
                f"data parallelism over {num_processes} processes; drop device_map under accelerate launch, "
                "or run one process with device_map=auto"
            )
        return Placement(
            device=process_device or ("cuda" if cuda_available else "cpu"),
            device_map=None,
            rank=process_index,
            world_size=num_processes,
        )
    return Placement(device=str(device) if device else ("cuda" if cuda_available else "cpu"), device_map=device_map)
