"""Our lmms-eval models, registered through the `lmms_eval.models` entry point (`manifests`).

The only module of mmr3_adapters that imports lmms_eval: wrappers here are thin, the work
(prompts, batching, generation) lives in lmms-eval-free modules.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms
from lmms_eval.models.registry_v2 import ModelManifest

from mmr3_adapters.models import (
    IMAGE_ASPECTS,
    Blip2Generator,
    LlavaGenerator,
    Query,
    Sample,
    VisionLanguageGenerator,
    prompts,
    resolve_placement,
)
from mmr3_adapters.models.generation import GenerationSettings, sample_id

logger = logging.getLogger("mmr3")

MODEL_IDS = {
    "mmr3_replay": "mmr3_adapters.lmms_models.Replay",
    "mmr3_blip2": "mmr3_adapters.lmms_models.Blip2",
    "mmr3_llava": "mmr3_adapters.lmms_models.Llava",
}


def manifests() -> list[ModelManifest]:
    """The `lmms_eval.models` entry point."""
    return [ModelManifest(model_id=model_id, simple_class_path=path) for model_id, path in MODEL_IDS.items()]


class Replay(lmms):
    """Answers every query from a file of responses recorded elsewhere, keyed by row id.

    For scoring responses that some other system produced (an API batch job, another harness)
    with exactly the same tasks and metrics: `--model mmr3_replay --model_args responses=FILE`.
    FILE is JSON lines, `{"id": "<row id>", "response": "..."}`, or `"responses": [...]` for the
    Sampling protocol's repeated queries. A line with `"task": "<lmms-eval task>"` answers only that
    task, ahead of lines without one: the All and Sampling tasks ask the same first variant of each
    group, and separately sampled answers can then be replayed for both. A query whose id the file
    lacks stops the run with that id: a missing answer is never scored as an empty one.
    """

    def __init__(self, responses: str, batch_size: int | str = 1, device: str | None = None, **kwargs) -> None:
        super().__init__()
        if kwargs:
            raise TypeError(f"mmr3_replay got unknown model_args {sorted(kwargs)}; it takes only responses=FILE")
        self.path = Path(responses)
        if not self.path.is_file():
            raise FileNotFoundError(f"mmr3_replay: responses file {str(self.path)!r} does not exist")
        self.answers: dict[tuple[str | None, str], list[str]] = {}
        with self.path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    texts = row["responses"] if "responses" in row else [row["response"]]
                    self.answers[(row.get("task"), str(row["id"]))] = [str(t) for t in texts]
                except (json.JSONDecodeError, KeyError, TypeError) as err:
                    raise ValueError(
                        f"{self.path}:{n}: expected {{'id': ..., 'response': ...}} or 'responses': [...], "
                        f"got {line.strip()[:200]!r} ({err})"
                    ) from err
        self._ids: dict[tuple[str, str], list[str]] = {}

    def _row_id(self, task: str, split: str, doc_id: int) -> str:
        key = (task, split)
        if key not in self._ids:
            self._ids[key] = self.task_dict[task][split]["id"]  # a column read: no image decoding
        return self._ids[key][doc_id]

    def generate_until(self, requests: list[Instance]) -> list[str]:
        served: dict[int, int] = defaultdict(int)  # repeated Instance -> how many answers given
        out = []
        for req in requests:
            _, _, _, doc_id, task, split = req.args
            row_id = self._row_id(task, split, doc_id)
            texts = self.answers.get((task, row_id)) or self.answers.get((None, row_id))
            if texts is None:
                raise KeyError(f"mmr3_replay: no response for row {row_id!r} (task {task}) in {self.path}")
            k = served[id(req)]
            served[id(req)] += 1
            if k >= len(texts):
                raise ValueError(
                    f"mmr3_replay: row {row_id!r} asked {k + 1} times but {self.path} holds {len(texts)} responses"
                )
            out.append(texts[k])
        return out

    def loglikelihood(self, requests):
        raise NotImplementedError("mmr3_replay only answers generation tasks")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("mmr3_replay only answers single-round generation tasks")


class _BatchedVLM(lmms):
    """Shared lmms-eval side of mmr3_blip2 / mmr3_llava: arguments, accelerate, requests -> queries.

    The generation itself is `models.VisionLanguageGenerator`'s; this class only translates.
    """

    model_id: ClassVar[str] = ""
    generator_class: ClassVar[type[VisionLanguageGenerator]]
    example: ClassVar[str] = ""

    def _setup(
        self,
        *,
        pretrained: str | None,
        revision: str | None,
        device: str | None,
        dtype: str | None,
        device_map: str | None,
        attn_implementation: str | None,
        batch_size: int | str,
        trust_remote_code: bool,
        adapter: str | None,
        lora: str | None,
        unknown: dict[str, Any],
        family_kwargs: dict[str, Any],
    ) -> None:
        if unknown:
            raise TypeError(
                f"{self.model_id} got unknown model_args {sorted(unknown)}; see docs/models.md for the accepted ones"
            )
        # lmms-eval turns a numeric value into a number; an empty `adapter=` (an unset shell variable) adapts nothing.
        adapter, lora = (None if v in (None, "") else str(v) for v in (adapter, lora))
        if adapter is not None and lora is not None:
            raise _setup_error(
                f"{self.model_id}: adapter= and lora= together; evaluate one trained method per run (docs/adapter.md)"
            )
        if adapter is not None or lora is not None:  # before the model loads: a wrong folder fails in a second
            from mmr3_adapters.adapter.checkpoint import AdapterCheckpointError, read_adapter_config
            from mmr3_adapters.adapter.lora import read_lora_config

            try:
                if adapter is not None:
                    read_adapter_config(adapter)
                else:
                    read_lora_config(lora)
            except AdapterCheckpointError as err:
                raise _setup_error(f"{self.model_id}: {err}") from None
        if not pretrained:
            raise ValueError(
                f"{self.model_id} needs pretrained=<hub id or local folder>, "
                f"e.g. --model_args pretrained={self.example}"
            )
        self.batch_size_per_gpu = _positive_int(f"{self.model_id}: batch_size", batch_size)

        import torch
        from accelerate import Accelerator

        accelerator = Accelerator()
        placement = resolve_placement(
            device,
            device_map,
            num_processes=accelerator.num_processes,
            process_index=accelerator.process_index,
            process_device=str(accelerator.device),
            cuda_available=torch.cuda.is_available(),
        )
        self.accelerator = accelerator
        self.pretrained = str(pretrained)
        self.adapter = adapter
        self.lora = lora
        self.generator = self.generator_class.from_pretrained(
            pretrained,
            revision=revision,
            dtype=dtype,
            device=placement.device,
            device_map=placement.device_map,
            attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code,
            **family_kwargs,
        )
        if adapter is not None or lora is not None:
            self._attach_trained(adapter, lora)
        if placement.world_size > 1:
            # Moves the model to this process's device and applies accelerate's mixed precision;
            # evaluation_mode: no DDP wrapper (nothing trains, every rank generates on its own shard).
            self.generator.model = accelerator.prepare_model(self.generator.model, evaluation_mode=True)
        self._device = torch.device(placement.device)
        self._rank = placement.rank
        self._world_size = placement.world_size

    def _attach_trained(self, adapter: str | None, lora: str | None) -> None:
        """The trained adapter (or LoRA) onto the loaded backbone, after checking they fit."""
        from mmr3_adapters.adapter.checkpoint import AdapterCheckpointError, load_adapter
        from mmr3_adapters.adapter.lora import load_lora

        gen = self.generator
        try:
            if lora is not None:
                load_lora(gen, lora)
                return
            trained = load_adapter(
                adapter,
                backbone=gen.backbone,
                hidden_size=gen.hidden_size,
                base_model=self.pretrained,
                device=gen.input_device,
            )
        except AdapterCheckpointError as err:
            raise _setup_error(f"{self.model_id}: {err}") from None
        except (ValueError, TypeError, KeyError, OSError, RuntimeError) as err:  # a folder damaged past our checks
            kind = "lora" if lora is not None else "adapter"
            raise _setup_error(
                f"{self.model_id}: {kind}={lora or adapter} could not be loaded: {type(err).__name__}: {err}"
            ) from None
        trained_with = trained.config.generator_options
        differs = {k: (v, gen.options.get(k)) for k, v in trained_with.items() if gen.options.get(k) != v}
        if differs:
            logger.warning(
                "%s: the adapter was trained with other model options than this run uses (%s); its prefix was "
                "learnt for the training prompts",
                self.model_id,
                "; ".join(f"{k}: trained {a!r}, now {b!r}" for k, (a, b) in differs.items()),
            )
        gen.embedding_transform = trained

    @property
    def device(self):
        return self._device

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        """Answers in batches of `batch_size`; a failure raises with the sample's row id."""
        if self.generator is None:
            raise RuntimeError(f"{self.model_id}: the model was released by clean(); build a new instance")
        from tqdm import tqdm

        queries = [self._query(req) for req in requests]
        with tqdm(total=len(queries), disable=self.rank != 0, desc=f"{self.model_id} responding") as bar:
            answers = self.generator.generate_all(queries, self.batch_size_per_gpu, on_batch=bar.update)
        return [
            GenerationResult(a.text, TokenCounts(input_tokens=a.input_tokens, output_tokens=a.output_tokens))
            for a in answers
        ]

    def _query(self, req: Instance) -> Query:
        context, gen_kwargs, doc_to_visual, doc_id, task, split = req.args
        where = f"{task}/{doc_id}"
        try:
            settings = GenerationSettings.from_gen_kwargs(gen_kwargs)
        except ValueError as err:
            raise ValueError(f"{self.model_id}, task {task}: {err}") from err
        load = functools.partial(self._load, context, doc_to_visual, task, split, doc_id)
        return Query(context=context, settings=settings, load=load, where=where)

    def _load(self, context: str, doc_to_visual: Callable, task: str, split: str, doc_id: int) -> Sample:
        doc = self.task_dict[task][split][doc_id]
        row_id = sample_id(doc, task, doc_id)
        visuals = doc_to_visual(doc) if doc_to_visual is not None else []
        images = _flatten(visuals or [])
        for image in images:
            if not hasattr(image, "convert"):  # PIL images; videos arrive as paths
                raise TypeError(
                    f"sample {row_id}: {self.model_id} takes PIL images from doc_to_visual, got {type(image).__name__}"
                )
        return Sample(sample_id=row_id, context=context, images=tuple(images))

    def loglikelihood(self, requests):
        raise NotImplementedError(f"{self.model_id} answers generate_until tasks only")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError(f"{self.model_id} answers single-round generate_until tasks only")

    def clean(self) -> None:
        """Frees the model after lmms-eval's inference (it calls this once, before scoring)."""
        self.generator = None
        super().clean()


class Blip2(_BatchedVLM):
    """BLIP-2 (OPT or Flan-T5 language model), batched: `--model mmr3_blip2`.

    Prompt: `prompts.BLIP2_PROMPT` ("Question: {question} Answer:"), or `prompt=`. One image per doc.
    Arguments are documented in docs/models.md.
    """

    model_id = "mmr3_blip2"
    generator_class = Blip2Generator
    example = "Salesforce/blip2-opt-2.7b"

    def __init__(
        self,
        pretrained: str | None = None,
        revision: str | None = None,
        device: str | None = None,
        dtype: str | None = "auto",
        device_map: str | None = None,
        attn_implementation: str | None = None,
        batch_size: int | str = 1,
        max_batch_size: int | str | None = None,  # passed by lmms-eval; batch sizes are fixed here
        trust_remote_code: bool = False,
        prompt: str = prompts.BLIP2_PROMPT,
        adapter: str | None = None,
        lora: str | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()
        self._setup(
            pretrained=pretrained,
            revision=revision,
            device=device,
            dtype=dtype,
            device_map=device_map,
            attn_implementation=attn_implementation,
            batch_size=batch_size,
            trust_remote_code=trust_remote_code,
            adapter=adapter,
            lora=lora,
            unknown=unknown,
            family_kwargs={"prompt": prompt},
        )


class Llava(_BatchedVLM):
    """LLaVA-1.5 and other llava-hf `LlavaForConditionalGeneration` checkpoints, batched: `--model mmr3_llava`.

    Prompt: the processor's chat template, or `prompts.LLAVA_FALLBACK_PROMPT` without one (or with
    `use_chat_template=false`). Images are padded to a square first (`image_aspect=pad`, as LLaVA-1.5's
    own evaluation), or left to the processor's centre crop (`image_aspect=crop`). Arguments are
    documented in docs/models.md.
    """

    model_id = "mmr3_llava"
    generator_class = LlavaGenerator
    example = "llava-hf/llava-1.5-7b-hf"

    def __init__(
        self,
        pretrained: str | None = None,
        revision: str | None = None,
        device: str | None = None,
        dtype: str | None = "auto",
        device_map: str | None = None,
        attn_implementation: str | None = None,
        batch_size: int | str = 1,
        max_batch_size: int | str | None = None,  # passed by lmms-eval; batch sizes are fixed here
        trust_remote_code: bool = False,
        use_chat_template: bool = True,
        image_aspect: str = "pad",
        adapter: str | None = None,
        lora: str | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()
        if image_aspect not in IMAGE_ASPECTS:  # before the model is loaded
            raise ValueError(
                f"{self.model_id}: image_aspect must be 'pad' or 'crop', got {image_aspect!r} (docs/models.md)"
            )
        self._setup(
            pretrained=pretrained,
            revision=revision,
            device=device,
            dtype=dtype,
            device_map=device_map,
            attn_implementation=attn_implementation,
            batch_size=batch_size,
            trust_remote_code=trust_remote_code,
            adapter=adapter,
            lora=lora,
            unknown=unknown,
            family_kwargs={"use_chat_template": bool(use_chat_template), "image_aspect": image_aspect},
        )


def _setup_error(message: str) -> SystemExit:
    """Stops lmms-eval with our one-line message and exit code 1 (it would print a traceback for an
    Exception and still exit 0), as missing data does."""
    from mmr3_tasks.hooks import MMR3SetupError

    return MMR3SetupError(message)


def _positive_int(name: str, value: int | str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if isinstance(value, bool) or n < 1 or str(n) != str(value).strip():
        raise ValueError(f"{name} must be a positive integer, got {value!r} (mmr3 models take a fixed batch size)")
    return n


def _flatten(visuals: Any) -> list:
    if not isinstance(visuals, (list, tuple)):
        return [visuals]
    out = []
    for v in visuals:
        out.extend(_flatten(v))
    return out
