"""Generation settings, batch planning and answer post-processing. Pure Python: no torch, no lmms-eval.

A task's `generation_kwargs` become one frozen `GenerationSettings`; requests are grouped by
settings, sorted by prompt length (longest first, as lmms-eval does) and cut into batches, and the
answers go back in request order. `until` stop strings cut the decoded text.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_NEW_TOKENS = 128
# Passed to `generate` unchanged when a task sets them.
PASSTHROUGH_KWARGS = (
    "top_k",
    "repetition_penalty",
    "length_penalty",
    "no_repeat_ngram_size",
    "min_new_tokens",
    "early_stopping",
)
KNOWN_KWARGS = ("until", "max_new_tokens", "temperature", "do_sample", "top_p", "num_beams", *PASSTHROUGH_KWARGS)


class GenerationError(RuntimeError):
    """Generation failed for a batch; the message names every sample in it."""


@dataclass(frozen=True)
class GenerationSettings:
    """How to decode, from a task's `generation_kwargs`. Hashable: requests are batched by it.

    Attributes:
        max_new_tokens: Tokens to generate at most.
        do_sample: Sample instead of greedy / beam search; implied by `temperature > 0`.
        temperature: Sampling temperature; only used when sampling.
        top_p: Nucleus sampling mass; only used when sampling.
        num_beams: Beam count (1 = greedy or plain sampling).
        until: Stop strings; the answer is cut before the first one found.
        extra: Other `generate` keywords from PASSTHROUGH_KWARGS, as sorted (key, value) pairs.
    """

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    num_beams: int = 1
    until: tuple[str, ...] = ()
    extra: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_gen_kwargs(cls, gen_kwargs: Mapping[str, Any] | None) -> GenerationSettings:
        """Validates lmms-eval's `generation_kwargs` (the task YAML's, merged with `--gen_kwargs`).

        lmms-eval's convention holds: `temperature > 0` turns sampling on even when `do_sample`
        is false. `do_sample=true` with `temperature=0` is a contradiction and raises.

        Raises:
            ValueError: naming the bad key or value and what to pass instead.
        """
        kw = dict(gen_kwargs or {})
        unknown = sorted(set(kw) - set(KNOWN_KWARGS))
        if unknown:
            raise ValueError(
                f"unsupported generation_kwargs {unknown}; mmr3 models accept {list(KNOWN_KWARGS)}. "
                "Remove them from the task's generation_kwargs or --gen_kwargs."
            )
        max_new_tokens = kw.get("max_new_tokens")
        max_new_tokens = DEFAULT_MAX_NEW_TOKENS if max_new_tokens is None else max_new_tokens
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        temperature = kw.get("temperature")
        if temperature is not None:
            temperature = _as_float("temperature", temperature)
            if temperature < 0:
                raise ValueError(f"temperature must be >= 0, got {temperature}")
        do_sample = _as_bool("do_sample", kw.get("do_sample", False))
        if do_sample and temperature == 0:
            raise ValueError(
                "generation_kwargs set do_sample=true with temperature=0; pass temperature>0 to sample "
                "(e.g. --gen_kwargs do_sample=true,temperature=1.0) or do_sample=false for greedy decoding"
            )
        do_sample = do_sample or (temperature is not None and temperature > 0)
        top_p = kw.get("top_p")
        if top_p is not None:
            top_p = _as_float("top_p", top_p)
            if not 0 < top_p <= 1:
                raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        num_beams = kw.get("num_beams")
        num_beams = 1 if num_beams is None else num_beams
        if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
            raise ValueError(f"num_beams must be a positive integer, got {num_beams!r}")
        extra = tuple(sorted((k, kw[k]) for k in PASSTHROUGH_KWARGS if kw.get(k) is not None))
        return cls(
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature if do_sample else None,
            top_p=top_p if do_sample else None,
            num_beams=num_beams,
            until=_stop_strings(kw.get("until")),
            extra=extra,
        )

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for Hugging Face `generate` (stop strings are applied afterwards)."""
        out: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "num_beams": self.num_beams,
        }
        if self.do_sample:
            if self.temperature is not None:
                out["temperature"] = self.temperature
            if self.top_p is not None:
                out["top_p"] = self.top_p
        else:
            # Greedy / beam search: neutralise sampling defaults a checkpoint's generation_config may carry.
            out.update(temperature=None, top_p=None, top_k=None)
        out.update(dict(self.extra))
        return out


def _as_float(name: str, value: Any) -> float:
    """A number setting from the YAML or `--gen_kwargs` (lmms-eval passes strings it could not parse)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(f"{name} must be a number, got {value!r} (e.g. --gen_kwargs {name}=0.7)")
    return number


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{name} must be true or false, got {value!r}")


def _stop_strings(until: Any) -> tuple[str, ...]:
    if until is None:
        return ()
    if isinstance(until, str):
        until = [until]
    if not isinstance(until, (list, tuple)) or not all(isinstance(s, str) for s in until):
        raise ValueError(f"until must be a string or a list of strings, got {until!r}")
    return tuple(s for s in until if s)  # an empty stop string would cut every answer to ""


def truncate_at_stop(text: str, until: Sequence[str]) -> str:
    """`text` up to (not including) the earliest occurrence of any stop string."""
    cut = len(text)
    for stop in until:
        at = text.find(stop)
        if at != -1:
            cut = min(cut, at)
    return text[:cut]


def plan_batches(lengths: Sequence[int], groups: Sequence[Hashable], batch_size: int) -> list[list[int]]:
    """Request indices cut into batches: same group per batch, longest prompts first.

    Args:
        lengths: Prompt length per request (tokens).
        groups: Per request, what must be equal within a batch (its GenerationSettings).
        batch_size: Most requests per batch.

    Returns:
        Batches of indices into the requests; every index appears once. Groups keep the order
        of their first request; within a group, longer prompts come first and ties keep request
        order, so the first batch shows the worst-case memory at once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(lengths) != len(groups):
        raise ValueError(f"{len(lengths)} lengths for {len(groups)} groups")
    by_group: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    batches = []
    for members in by_group.values():
        members = sorted(members, key=lambda i: (-lengths[i], i))
        batches.extend(members[k : k + batch_size] for k in range(0, len(members), batch_size))
    return batches


def sample_id(doc: Mapping[str, Any] | None, task: str, doc_id: int) -> str:
    """How errors name a sample: the row's own `id` when the doc has one, else `task/doc_id`."""
    if doc is not None:
        try:
            row_id = doc["id"]
        except (KeyError, TypeError, IndexError):
            row_id = None
        if row_id is not None and str(row_id) != "":
            return str(row_id)
    return f"{task}/{doc_id}"
