"""The family-independent part of our batched BLIP-2 and LLaVA-1.5 models. No lmms-eval import.

Every batch goes the same three steps, so that the consistency adapter (mmr3_adapters.adapter)
slots in between the second and the third without reshaping anything:

1. `build_batch`: prompts in the family's format (`prompts`), tokenised one by one, left-padded
   here (BLIP-2's processor would put its query tokens *before* the padding), images stacked.
2. `input_embeddings`: the frozen LLM's input sequence, i.e. token embeddings with the image
   features (LLaVA's projected patches, BLIP-2's projected Q-Former queries) written into the
   `<image>` placeholder positions, and its attention mask. Shapes (B, L, H) and (B, L).
3. `generate_from_embeddings`: the LLM decodes from that sequence and returns only new tokens.

`transform_embeddings` sits between 2 and 3: the identity, or the `embedding_transform` attached
to the generator (the adapter prepends its prefix there). Step 3 from step 2's output gives the
same greedy tokens as the model's own `generate(input_ids, pixel_values)` (`reference_generate`,
which tests and benchmarks compare with).

Training takes steps 1-2 the same way, then `answer_logits`: the LLM's logits over the ground-truth
answer tokens, teacher-forced, with the positions `generate` would use (tests check that the
argmax of these logits reproduces the greedy answer token for token).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from mmr3_adapters.models import prompts
from mmr3_adapters.models.generation import GenerationError, GenerationSettings, plan_batches, truncate_at_stop
from mmr3_tasks.errors import MMR3Error

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
    prompts: list[str] = field(default_factory=list)  # the rendered prompt texts, one per row


@dataclass
class TrainingBatch:
    """A batch with its targets: the prompts as generation builds them, and the answer tokens.

    `labels` (B, T) holds each row's answer token ids, ending with the checkpoint's stop id, padded
    on the right with IGNORE_INDEX; T is the longest answer of the batch.
    """

    prompt: Batch
    labels: torch.Tensor


IGNORE_INDEX = -100  # cross-entropy's ignore_index, as Hugging Face labels use it
EmbeddingTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _dtype_keyword() -> str:
    """`from_pretrained`'s dtype keyword: `dtype` since transformers 4.56, `torch_dtype` before."""
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


class ModelLoadError(MMR3Error, ValueError):
    """A checkpoint (or load setting) this model family cannot load: another kind, no config, a bad dtype."""


def resolve_dtype(dtype: str | torch.dtype | None) -> str | torch.dtype:
    """`from_pretrained`'s dtype from a model_args value: "auto", a torch dtype or its name."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return "auto" if dtype is None else dtype
    name = str(dtype).lower().removeprefix("torch.")
    if name not in DTYPES:
        raise ModelLoadError(f"dtype={dtype!r} is not supported; use auto, {', '.join(sorted(DTYPES))}")
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
        # Applied by transform_embeddings between steps 2 and 3 (the consistency adapter's prefix).
        self.embedding_transform: EmbeddingTransform | None = None

    @property
    def backbone(self) -> str:
        """What an adapter checkpoint must match: "llava", "blip2-opt" or "blip2-t5"."""
        raise NotImplementedError

    @property
    def options(self) -> dict[str, Any]:
        """The family options this generator runs with (what `from_pretrained` took as **init_kwargs)."""
        return {}

    @property
    def hidden_size(self) -> int:
        """Width H of the language model's input embeddings, the sequence steps 2 and 3 share."""
        return int(self.model.get_input_embeddings().embedding_dim)

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
        try:
            config = AutoConfig.from_pretrained(pretrained, **hub)
        except (OSError, ValueError) as err:  # not on the hub or offline (OSError); no model_type (ValueError)
            raise ModelLoadError(
                f"{pretrained!r}: its config.json could not be loaded ({err}); give a local checkpoint folder, "
                "or a hub id this machine can reach"
            ) from err
        model_type = getattr(config, "model_type", None)
        if model_type not in cls.model_types:
            raise ModelLoadError(
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
        rows, pixels, texts = [], [], []
        for s in samples:
            self.check_images(s)
            text = self.prompt(s.context, len(s.images))
            enc = self.processor(text=text, images=self.prepare_images(s.images) or None, return_tensors="pt")
            rows.append(enc["input_ids"][0])
            texts.append(text)
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
            prompts=texts,
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
        """Between steps 2 and 3: `embedding_transform` (the adapter's prefix) when one is attached."""
        if self.embedding_transform is None:
            return embeds, attention_mask
        return self.embedding_transform(embeds, attention_mask)

    def generate_from_embeddings(
        self, embeds: torch.Tensor, attention_mask: torch.Tensor, settings: GenerationSettings
    ) -> torch.Tensor:
        """Step 3: new token ids (B, T) decoded from the input sequence, padded with the pad id."""
        raise NotImplementedError

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Image features in the LLM's embedding space, (n_images, tokens_per_image, H)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ training

    @property
    def language_model(self) -> torch.nn.Module:
        """The module that reads the input-embedding sequence in step 3 and in training."""
        raise NotImplementedError

    @property
    def answer_stop_id(self) -> int:
        """The id a training target ends with: the first stop id of the generating module's config
        (LLaVA-1.5: `</s>`; BLIP-2 OPT: "\\n", as its answers end at a newline), else the tokenizer's EOS."""
        eos = getattr(getattr(self.language_model, "generation_config", None), "eos_token_id", None)
        if isinstance(eos, (list, tuple)):
            eos = eos[0] if eos else None
        eos = self.tokenizer.eos_token_id if eos is None else eos
        if eos is None:
            raise ValueError(f"this {self.family} checkpoint defines no EOS token; training targets need one")
        return int(eos)

    def answer_token_ids(self, prompt: str, answer: str) -> list[int]:
        """The token ids the model should produce after `prompt` to answer `answer`, ending with
        `answer_stop_id`.

        Decoder-only models read the answer after the prompt, so it is tokenised in that context:
        the tokens of `prompt + " " + answer` past those of `prompt` (no space after a prompt that
        ends in whitespace). When the two tokenisations do not share that boundary, the answer is
        tokenised on its own.
        """
        if not answer.strip():
            raise ValueError(f"empty training answer after prompt {prompt[-80:]!r}")
        sep = "" if not prompt or prompt[-1].isspace() else " "
        head = self.tokenizer(prompt)["input_ids"]
        full = self.tokenizer(prompt + sep + answer.strip())["input_ids"]
        if full[: len(head)] == head and len(full) > len(head):
            ids = full[len(head) :]
        else:
            ids = self.tokenizer(sep + answer.strip(), add_special_tokens=False)["input_ids"]
        return self._end_with_stop(ids)

    def _end_with_stop(self, ids: list[int]) -> list[int]:
        while ids and ids[-1] in self.stop_token_ids:
            ids = ids[:-1]
        return [*ids, self.answer_stop_id]

    def build_training_batch(
        self, samples: Sequence[Sample], answers: Sequence[str], max_answer_tokens: int = 64
    ) -> TrainingBatch:
        """Step 1 for training: the prompts exactly as generation builds them, and the answer tokens.

        Args:
            samples: The queries.
            answers: One target text per sample (the variants of an item share one).
            max_answer_tokens: Targets are cut to this many tokens, stop id included.
        """
        if len(answers) != len(samples):
            raise ValueError(f"{len(samples)} samples but {len(answers)} answers")
        batch = self.build_batch(samples)
        targets = [
            self.answer_token_ids(prompt, answer)[:max_answer_tokens]
            for prompt, answer in zip(batch.prompts, answers, strict=True)
        ]
        labels = torch.full((len(targets), max(len(t) for t in targets)), IGNORE_INDEX, dtype=torch.long)
        for i, target in enumerate(targets):
            labels[i, : len(target)] = torch.tensor(target, dtype=torch.long)
        return TrainingBatch(prompt=batch, labels=labels)

    def answer_logits(self, embeds: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) over the answer tokens `labels` (B, T), from the input
        sequence of steps 2 (and the adapter): the training forward.

        Decoder-only: the answer embeddings follow the left-padded sequence, right-padded, and the
        position ids are `generate`'s (`generation_positions`), so that the logits at answer step t
        are those greedy decoding sees after t answer tokens.
        """
        labels = labels.to(embeds.device)
        n_answer = labels.shape[1]
        answer_mask = (labels != IGNORE_INDEX).to(attention_mask.dtype)
        answer_ids = labels.masked_fill(labels == IGNORE_INDEX, self.pad_token_id)
        answer_embeds = self.model.get_input_embeddings()(answer_ids).to(embeds.dtype)
        inputs = torch.cat([embeds, answer_embeds], dim=1)
        mask = torch.cat([attention_mask, answer_mask], dim=1)
        out = self.language_model(
            inputs_embeds=inputs,
            attention_mask=mask,
            position_ids=generation_positions(mask),
            use_cache=False,
            **self._logits_to_keep(n_answer + 1),
        )
        # The logits at position p predict token p + 1: the last prompt position predicts answer token 0.
        return out.logits[:, -(n_answer + 1) : -1]

    def _logits_to_keep(self, n: int) -> dict[str, int]:
        """`logits_to_keep=n` where the forward takes it (transformers >= 4.50): no logits for the prompt."""
        import inspect

        accepts = "logits_to_keep" in inspect.signature(self.language_model.forward).parameters
        return {"logits_to_keep": n} if accepts else {}

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


def generation_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """The position ids `generate` gives a left-padded batch: counted from each row's first real
    token, 0 on pads. A training forward must pass them: it would otherwise count from the pads."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 0)


def _suggest_model(model_type: str | None) -> str:
    if model_type == "blip-2":
        return "use --model mmr3_blip2"
    if model_type == "llava":
        return "use --model mmr3_llava"
    if model_type in ("llava_next", "llava_onevision"):
        return "this wrapper covers LLaVA-1.5-style checkpoints; use lmms-eval's llava_hf for it"
    return "pass a BLIP-2 (Salesforce/blip2-*) or LLaVA-1.5 (llava-hf/llava-1.5-*) checkpoint"
