"""Pure parts of the model layer: generation settings, batch plans, stop strings, ids, placement, prompts."""

from __future__ import annotations

import pytest

from mmr3_adapters.models import Placement, prompts, resolve_dtype, resolve_placement
from mmr3_adapters.models.generation import (
    DEFAULT_MAX_NEW_TOKENS,
    GenerationSettings,
    plan_batches,
    sample_id,
    truncate_at_stop,
)

# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "gen_kwargs, expected",
    [
        (None, GenerationSettings()),
        # The demo tasks' YAML, plus lmms-eval's default until.
        (
            {"max_new_tokens": 64, "temperature": 0.0, "do_sample": False, "num_beams": 1, "until": ["\n\n"]},
            GenerationSettings(max_new_tokens=64, until=("\n\n",)),
        ),
        # lmms-eval convention: temperature > 0 samples even with do_sample false.
        ({"temperature": 0.7, "do_sample": False}, GenerationSettings(do_sample=True, temperature=0.7)),
        ({"do_sample": True, "top_p": 0.9}, GenerationSettings(do_sample=True, top_p=0.9)),
        # top_p / temperature mean nothing without sampling: dropped, so batches group by what matters.
        ({"temperature": 0, "top_p": 0.9}, GenerationSettings()),
        ({"until": "###"}, GenerationSettings(until=("###",))),
        ({"until": ["", "\n"]}, GenerationSettings(until=("\n",))),  # "" would cut every answer
        ({"until": None}, GenerationSettings()),
        (
            {"num_beams": 3, "repetition_penalty": 1.2},
            GenerationSettings(num_beams=3, extra=(("repetition_penalty", 1.2),)),
        ),
        ({"do_sample": "false"}, GenerationSettings()),  # --gen_kwargs strings
    ],
)
def test_settings_from_gen_kwargs(gen_kwargs, expected):
    assert GenerationSettings.from_gen_kwargs(gen_kwargs) == expected


@pytest.mark.parametrize(
    "gen_kwargs, message",
    [
        ({"image_aspect_ratio": "pad"}, "unsupported generation_kwargs ['image_aspect_ratio']"),
        ({"max_new_tokens": 0}, "max_new_tokens must be a positive integer, got 0"),
        ({"max_new_tokens": "64"}, "max_new_tokens must be a positive integer"),
        ({"temperature": -1}, "temperature must be >= 0"),
        ({"temperature": "abc"}, "temperature must be a number, got 'abc' (e.g. --gen_kwargs temperature=0.7)"),
        ({"temperature": float("nan")}, "temperature must be a number, got nan"),
        ({"top_p": "x", "do_sample": True}, "top_p must be a number, got 'x'"),
        ({"do_sample": True, "temperature": 0}, "pass temperature>0 to sample"),
        ({"num_beams": 0}, "num_beams must be a positive integer"),
        ({"top_p": 1.5, "do_sample": True}, "top_p must be in (0, 1]"),
        ({"until": [1]}, "until must be a string or a list of strings"),
        ({"do_sample": "maybe"}, "do_sample must be true or false"),
    ],
)
def test_bad_gen_kwargs_name_the_value(gen_kwargs, message):
    with pytest.raises(ValueError) as err:
        GenerationSettings.from_gen_kwargs(gen_kwargs)
    assert message in str(err.value)


def test_generate_kwargs_greedy_and_sampling():
    greedy = GenerationSettings.from_gen_kwargs({"max_new_tokens": 8}).generate_kwargs()
    # A checkpoint's generation_config may carry sampling defaults; greedy must neutralise them.
    assert greedy == {
        "max_new_tokens": 8,
        "do_sample": False,
        "num_beams": 1,
        "temperature": None,
        "top_p": None,
        "top_k": None,
    }
    sampled = GenerationSettings.from_gen_kwargs({"temperature": 0.5, "top_p": 0.8, "top_k": 5}).generate_kwargs()
    assert sampled == {
        "max_new_tokens": DEFAULT_MAX_NEW_TOKENS,
        "do_sample": True,
        "num_beams": 1,
        "temperature": 0.5,
        "top_p": 0.8,
        "top_k": 5,
    }


def test_settings_are_hashable_batch_keys():
    a = GenerationSettings.from_gen_kwargs({"max_new_tokens": 8, "until": ["\n\n"]})
    b = GenerationSettings.from_gen_kwargs({"max_new_tokens": 8, "until": ["\n\n"], "temperature": 0})
    assert a == b and hash(a) == hash(b)


# ----------------------------------------------------------------------------- stops, plans, ids


@pytest.mark.parametrize(
    "text, until, expected",
    [
        ("a cat.\n\nQuestion: next", ["\n\n"], "a cat."),
        ("a cat. ### b", ["\n\n", "###"], "a cat. "),
        ("x ### y \n\n z", ["\n\n", "###"], "x "),  # the earliest stop wins, not the first listed
        ("no stop here", ["\n\n"], "no stop here"),
        ("\n\nstarts with it", ["\n\n"], ""),
        ("anything", [], "anything"),
    ],
)
def test_truncate_at_stop(text, until, expected):
    assert truncate_at_stop(text, until) == expected


def test_plan_batches_sorts_longest_first_within_groups_and_covers_every_request():
    lengths = [3, 9, 5, 9, 1, 7, 2]
    groups = ["g", "g", "h", "g", "h", "g", "g"]
    plan = plan_batches(lengths, groups, batch_size=2)
    assert plan == [[1, 3], [5, 0], [6], [2, 4]]
    assert sorted(i for batch in plan for i in batch) == list(range(7))


@pytest.mark.parametrize("batch_size", [1, 3, 8, 100])
def test_plan_batches_respects_batch_size(batch_size):
    plan = plan_batches(list(range(20)), ["g"] * 20, batch_size)
    assert all(1 <= len(b) <= batch_size for b in plan)
    assert sorted(i for b in plan for i in b) == list(range(20))


def test_plan_batches_rejects_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        plan_batches([1], ["g"], 0)


@pytest.mark.parametrize(
    "doc, expected",
    [
        ({"id": "rephrase-cat/r2", "question": "q"}, "rephrase-cat/r2"),
        ({"id": 17}, "17"),
        ({"question": "no id column"}, "mmr3_mini_context/4"),
        ({"id": ""}, "mmr3_mini_context/4"),
        (None, "mmr3_mini_context/4"),
    ],
)
def test_sample_id_prefers_the_row_id(doc, expected):
    assert sample_id(doc, "mmr3_mini_context", 4) == expected


# ----------------------------------------------------------------------------- placement, dtype


@pytest.mark.parametrize(
    "args, kwargs, expected",
    [
        ((None, None), {}, Placement("cpu", None)),
        ((None, None), {"cuda_available": True}, Placement("cuda", None)),
        (("cuda:1", ""), {}, Placement("cuda:1", None)),  # llava_hf's default device_map="" means none
        (("cuda", "auto"), {}, Placement("cuda", "auto")),
        # accelerate launch, 4 processes: each rank owns its device; --device cuda is overridden.
        (
            ("cuda", None),
            {"num_processes": 4, "process_index": 2, "process_device": "cuda:2"},
            Placement("cuda:2", None, 2, 4),
        ),
        ((None, ""), {"num_processes": 2, "process_index": 1, "process_device": "cpu"}, Placement("cpu", None, 1, 2)),
    ],
)
def test_resolve_placement(args, kwargs, expected):
    assert resolve_placement(*args, **kwargs) == expected


def test_device_map_with_data_parallel_is_refused():
    with pytest.raises(ValueError, match="cannot be combined with data parallelism over 2 processes"):
        resolve_placement("cuda", "auto", num_processes=2, process_index=0, process_device="cuda:0")


def test_resolve_dtype():
    import torch

    assert resolve_dtype("auto") == "auto" and resolve_dtype(None) == "auto"
    assert resolve_dtype("bfloat16") is torch.bfloat16 and resolve_dtype("torch.float16") is torch.float16
    with pytest.raises(ValueError, match="dtype='float8' is not supported"):
        resolve_dtype("float8")


# ----------------------------------------------------------------------------- prompt formats


@pytest.mark.parametrize(
    "context, expected",
    [
        ("What is shown?", "Question: What is shown? Answer:"),
        ("<image>\nWhat is shown?", "Question: What is shown? Answer:"),  # tasks that embed the marker
        ("  What is shown?  ", "Question: What is shown? Answer:"),
    ],
)
def test_blip2_prompt(context, expected):
    assert prompts.blip2_prompt(context) == expected


def test_llava_fallback_prompt_matches_llava_1_5():
    assert prompts.llava_prompt("What is shown?", 1, None) == "USER: <image>\nWhat is shown? ASSISTANT:"
    assert prompts.llava_prompt("Compare.", 2, None) == "USER: <image>\n<image>\nCompare. ASSISTANT:"
    assert prompts.llava_prompt("Text only?", 0, None) == "USER: Text only? ASSISTANT:"


def test_llava_messages_put_one_image_item_per_image():
    assert prompts.llava_messages("<image> Q?", 2) == [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Q?"}]}
    ]
