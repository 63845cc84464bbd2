"""Our lmms-eval models, registered through the `lmms_eval.models` entry point (`manifests`).

The only module of mmr3_adapters that imports lmms_eval: wrappers here are thin, the work
(prompts, batching, generation) lives in lmms-eval-free modules.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms
from lmms_eval.models.registry_v2 import ModelManifest

from mmr3_adapters.models import (
    Blip2Generator,
    LlavaGenerator,
    Query,
    Sample,
    VisionLanguageGenerator,
    check_image_aspect,
    prompts,
    resolve_placement,
)
from mmr3_adapters.models.generation import GenerationSettings, sample_id
from mmr3_adapters.models.pretrained import PretrainedNotFoundError, check_pretrained
from mmr3_adapters.replay_file import LINE_FORMAT, ReplayFileError, ReplayKey, preview, read_responses
from mmr3_tasks.errors import MMR3Error

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
    Sampling protocol's repeated queries (`read_responses` gives the rules; a line that breaks one
    stops the run naming FILE:LINE). A line with `"task": "<lmms-eval task>"` answers only that
    task, ahead of lines without one: the All and Sampling tasks ask the same first variant of each
    group, and separately sampled answers can then be replayed for both. A query whose id the file
    lacks stops the run with that id: a missing answer is never scored as an empty one. Lines no
    query asked for are counted in a warning after generation.
    """

    def __init__(
        self,
        responses: str | None = None,
        batch_size: int | str = 1,  # passed by lmms-eval; unused
        device: str | None = None,
        max_batch_size: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if kwargs:
            raise _setup_error(f"mmr3_replay: unknown model_args {sorted(kwargs)}; it takes only responses=FILE")
        if responses in (None, ""):
            raise _setup_error(
                "mmr3_replay needs responses=FILE, a JSON-lines file of recorded answers (docs/models.md)"
            )
        self.path = Path(str(responses))
        try:
            self.answers = read_responses(self.path)
        except ReplayFileError as err:
            raise _setup_error(f"mmr3_replay: {err}") from None
        self._ids: dict[tuple[str, str], list[str]] = {}
        self._asked: set[ReplayKey] = set()
        self._most_read: dict[ReplayKey, int] = {}  # line -> most answers one query read from it

    def _row_id(self, task: str, split: str, doc_id: int) -> str:
        key = (task, split)
        if key not in self._ids:
            docs = self.task_dict[task][split]
            if "id" not in getattr(docs, "column_names", ()):
                raise _setup_error(
                    f'mmr3_replay: task {task} has no row ids (no "id" column); it replays MM-R³ tasks only'
                )
            self._ids[key] = docs["id"]  # a column read: no image decoding
        return self._ids[key][doc_id]

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """The recorded answers; every query's id is looked up before any answer is given."""
        found: list[tuple[ReplayKey, str, str]] = []
        missing: dict[tuple[str, str], None] = {}  # (row id, task), in request order, once each
        for req in requests:
            _, _, _, doc_id, task, split = req.args
            row_id = self._row_id(task, split, doc_id)
            key = next((k for k in ((task, row_id), (None, row_id)) if k in self.answers), None)
            if key is None:
                missing[(row_id, task)] = None
            found.append((key, row_id, task))
        if missing:
            (row_id, task), *rest = missing
            more = f", nor for {len(rest)} more rows ({preview([repr(r) for r, _ in rest])})" if rest else ""
            raise _setup_error(
                f"mmr3_replay: no response for row {row_id!r} (task {task}) in {self.path}{more}; add one line "
                f"per row, {LINE_FORMAT} (a missing answer is never scored as an empty one)"
            )
        served: dict[int, int] = defaultdict(int)  # repeated Instance -> how many answers given
        out = []
        for req, (key, row_id, task) in zip(requests, found, strict=True):
            recorded = self.answers[key]
            k = served[id(req)]
            served[id(req)] += 1
            if k >= len(recorded.texts):
                asked = sum(r is req for r in requests)
                raise _setup_error(
                    f"mmr3_replay: row {row_id!r} (task {task}) is asked {asked} times, but "
                    f"{self.path}:{recorded.line} holds {len(recorded.texts)} response(s); give "
                    f'"responses": [...] with {asked} answers'
                )
            self._asked.add(key)
            self._most_read[key] = max(self._most_read.get(key, 0), k + 1)
            out.append(recorded.texts[k])
        return out

    def unasked(self) -> list[ReplayKey]:
        """The file's lines that no query has asked for so far, in file order."""
        return [key for key in self.answers if key not in self._asked]

    def partly_read(self) -> list[ReplayKey]:
        """Lines holding more responses than any query read: an All task takes the first of a list."""
        return [key for key, n in self._most_read.items() if n < len(self.answers[key].texts)]

    def clean(self) -> None:
        """After lmms-eval's inference: warns about lines no query asked for (`--limit`, another task)."""
        unasked = self.unasked()
        if unasked:
            ids = [row_id if task is None else f"{row_id} (task {task})" for task, row_id in unasked]
            logger.warning(
                "mmr3_replay: %d responses in %s were not asked for (ids %s)", len(ids), self.path, preview(ids)
            )
        partly = self.partly_read()
        if partly:  # e.g. a Sampling line read by the All task alone: only its first answer was scored
            ids = [row_id if task is None else f"{row_id} (task {task})" for task, row_id in partly]
            logger.warning(
                "mmr3_replay: %d lines of %s hold more responses than any query read, so only the first ones were "
                "scored (ids %s); an All task reads one answer per row",
                len(ids),
                self.path,
                preview(ids),
            )
        super().clean()

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
            raise _setup_error(
                f"{self.model_id}: unknown model_args {sorted(unknown)}; see docs/models.md for the accepted ones"
            )
        if not pretrained:
            raise _setup_error(
                f"{self.model_id} needs pretrained=<hub id or local folder>, "
                f"e.g. --model_args pretrained={self.example}"
            )
        try:  # a mistyped local path would otherwise fail as a malformed hub id
            pretrained = check_pretrained(str(pretrained), "pretrained=")
        except PretrainedNotFoundError as err:
            raise _setup_error(f"{self.model_id}: {err}") from None
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
        try:
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
        except MMR3Error as err:  # another model family's checkpoint, an unreachable config, a bad dtype
            raise _setup_error(f"{self.model_id}: {err}") from None
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
        except ValueError as err:  # the task YAML's generation_kwargs with --gen_kwargs: a setting
            raise _setup_error(f"{self.model_id}, task {task}: {err}") from None
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
        try:
            check_image_aspect(image_aspect)  # before the model is loaded, not after minutes of it
        except ValueError as err:
            raise _setup_error(f"{self.model_id}: {err}") from None
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
    Exception and still exit 0), as missing data does. Every bad model_args value, responses file
    and generation setting goes this way; an Exception from here on is a bug and keeps its traceback."""
    from mmr3_tasks.hooks import MMR3SetupError

    return MMR3SetupError(message)


def _positive_int(name: str, value: int | str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if isinstance(value, bool) or n < 1 or str(n) != str(value).strip():
        raise _setup_error(f"{name} must be a positive integer, got {value!r} (mmr3 models take a fixed batch size)")
    return n


def _flatten(visuals: Any) -> list:
    if not isinstance(visuals, (list, tuple)):
        return [visuals]
    out = []
    for v in visuals:
        out.extend(_flatten(v))
    return out
