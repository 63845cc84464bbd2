"""Batched generation on tiny random BLIP-2 (OPT, T5) and LLaVA checkpoints, without lmms-eval
(but for one test of the sampling settings that come through its requests)."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from PIL import Image

from mmr3_adapters.models import Blip2Generator, LlavaGenerator, Sample, prompts, tiny
from mmr3_adapters.models.generation import GenerationError, GenerationSettings
from tests.tiny_models import FAMILIES, QUESTIONS, images, load_generators, tiny_checkpoint

GREEDY = GenerationSettings.from_gen_kwargs({"max_new_tokens": 12, "temperature": 0, "do_sample": False})
CLASSES = {"llava": LlavaGenerator, "blip2-opt": Blip2Generator, "blip2-t5": Blip2Generator}


@pytest.fixture(scope="session")
def generators(tmp_path_factory):
    return load_generators(tmp_path_factory)


def samples(n: int = len(QUESTIONS)) -> list[Sample]:
    return [Sample(f"row-{i}", q, (image,)) for i, (q, image) in enumerate(zip(QUESTIONS[:n], images(n), strict=True))]


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_equals_one_by_one_equals_the_models_own_generate(generators, family):
    gen = generators[family]
    batch = samples()
    one_by_one = [gen.generate([s], GREEDY)[0].text for s in batch]
    together = [a.text for a in gen.generate(batch, GREEDY)]
    # The model's own generate(input_ids, pixel_values): our embeddings path must not change a token.
    reference = gen.reference_generate(batch, GREEDY)
    assert together == one_by_one == reference
    assert all(together) and len(set(together)) > 1  # non-empty, and not one answer for all


@pytest.mark.parametrize("family", FAMILIES)
def test_batches_are_left_padded(generators, family):
    gen = generators[family]
    batch = gen.build_batch(samples())
    lengths = batch.attention_mask.sum(dim=1)
    assert len(set(lengths.tolist())) > 1, "the questions should tokenise to different lengths"
    width = batch.input_ids.shape[1]
    for row, mask, n in zip(batch.input_ids, batch.attention_mask, lengths.tolist(), strict=True):
        assert mask[: width - n].eq(0).all() and mask[width - n :].eq(1).all()
        assert row[: width - n].eq(gen.pad_token_id).all()
    # Every prompt keeps all its image placeholders (BLIP-2's processor would put them before padding).
    per_image = (batch.input_ids == gen.image_token_id).sum(dim=1)
    assert per_image.eq(per_image[0]).all() and per_image[0] > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_input_embeddings_carry_the_image_features(generators, family):
    gen = generators[family]
    batch = gen.build_batch(samples(2))
    embeds, mask = gen.input_embeddings(batch)
    assert embeds.shape[:2] == batch.input_ids.shape and mask.shape == batch.input_ids.shape
    text_only = gen.model.get_input_embeddings()(batch.input_ids)
    slots = batch.input_ids == gen.image_token_id
    assert not torch.equal(embeds[slots], text_only[slots])  # image features written into the slots
    assert torch.equal(embeds[~slots], text_only[~slots])  # everything else untouched


def test_until_cuts_the_answer(generators):
    gen = generators["llava"]
    full = gen.generate(samples(1), GREEDY)[0].text
    stop = full[3:5]
    cut = gen.generate(samples(1), GenerationSettings.from_gen_kwargs({"max_new_tokens": 12, "until": [stop]}))[0]
    assert cut.text == full[: full.index(stop)].strip()


def test_sampling_runs_and_counts_tokens(generators):
    gen = generators["blip2-opt"]
    settings = GenerationSettings.from_gen_kwargs({"max_new_tokens": 5, "temperature": 1.0, "top_p": 0.9})
    torch.manual_seed(0)
    answers = gen.generate(samples(3), settings)
    assert all(0 < a.output_tokens <= 5 and a.input_tokens > 0 for a in answers)


def _record_generate(gen, monkeypatch) -> list[dict]:
    """The keywords of every call of the HF `generate` our step 3 decodes with, the real method run."""
    calls: list[dict] = []
    real = gen.language_model.generate

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(gen.language_model, "generate", recording)
    return calls


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "gen_kwargs, expected",
    [
        (
            {"do_sample": True, "temperature": 0.7, "top_p": 0.85, "num_beams": 1, "max_new_tokens": 5},
            {"do_sample": True, "temperature": 0.7, "top_p": 0.85, "num_beams": 1, "max_new_tokens": 5},
        ),
        # lmms-eval's convention: a temperature above 0 samples even without do_sample.
        ({"temperature": 1.3, "max_new_tokens": 4}, {"do_sample": True, "temperature": 1.3, "max_new_tokens": 4}),
        # Greedy stays greedy, and overrides sampling defaults a checkpoint's generation_config may carry.
        (
            {"temperature": 0, "do_sample": False, "top_p": 0.9, "max_new_tokens": 6},
            {
                "do_sample": False,
                "temperature": None,
                "top_p": None,
                "top_k": None,
                "num_beams": 1,
                "max_new_tokens": 6,
            },
        ),
        ({"num_beams": 2, "max_new_tokens": 3}, {"do_sample": False, "num_beams": 2, "max_new_tokens": 3}),
    ],
)
def test_generation_settings_reach_the_models_generate(generators, monkeypatch, family, gen_kwargs, expected):
    gen = generators[family]
    calls = _record_generate(gen, monkeypatch)
    answers = gen.generate(samples(2), GenerationSettings.from_gen_kwargs(gen_kwargs))
    assert len(calls) == 1
    assert {k: calls[0].get(k, "absent") for k in expected} == expected
    assert calls[0]["pad_token_id"] == gen.pad_token_id
    assert all(0 < a.output_tokens <= gen_kwargs["max_new_tokens"] for a in answers)


# Per family, a temperature and top_p that each change the tokens drawn with seed 0 (the test checks
# it): the tiny T5 puts nearly all its mass on one token, so only a high temperature spreads it.
SAMPLING = {"llava": (0.3, 0.5), "blip2-opt": (0.3, 0.5), "blip2-t5": (50.0, 0.9)}


def _models_own_generate(gen, sample: Sample, seed: int, **hf_kwargs) -> str:
    """The checkpoint's own `generate(input_ids, pixel_values)` with explicit HF keywords, decoded."""
    batch = gen.build_batch([sample])
    torch.manual_seed(seed)
    with torch.inference_mode():
        ids = gen.model.generate(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            pixel_values=batch.pixel_values,
            pad_token_id=gen.pad_token_id,
            max_new_tokens=8,
            num_beams=1,
            **hf_kwargs,
        )
    # T5 returns its decoder start token and the answer; the decoder-only models the prompt and the answer.
    new = ids[0, 1:] if gen.backbone == "blip2-t5" else ids[0, batch.input_ids.shape[1] :]
    return gen.tokenizer.decode(new, skip_special_tokens=True).strip()


@pytest.mark.parametrize("family", FAMILIES)
def test_sampling_draws_what_the_models_generate_draws_with_those_settings(generators, family):
    gen = generators[family]
    sample = samples(2)[1]
    temperature, top_p = SAMPLING[family]
    settings = GenerationSettings.from_gen_kwargs(
        {"do_sample": True, "temperature": temperature, "top_p": top_p, "max_new_tokens": 8}
    )
    torch.manual_seed(0)
    sampled = gen.generate([sample], settings)[0].text
    assert sampled == _models_own_generate(gen, sample, 0, do_sample=True, temperature=temperature, top_p=top_p)
    # Each setting shows: without it, the same seed draws other tokens.
    assert sampled != _models_own_generate(gen, sample, 0, do_sample=True, top_p=top_p)
    assert sampled != _models_own_generate(gen, sample, 0, do_sample=True, temperature=temperature)
    greedy = _models_own_generate(gen, sample, 0, do_sample=False)
    assert sampled != greedy
    # Greedy settings decode greedily, whatever the seed.
    greedy_settings = GenerationSettings.from_gen_kwargs({"do_sample": False, "max_new_tokens": 8})
    for seed in (0, 1):
        torch.manual_seed(seed)
        assert gen.generate([sample], greedy_settings)[0].text == greedy


def test_sampling_settings_of_lmms_eval_requests_reach_generate(tmp_path_factory, monkeypatch):
    """`generation_kwargs` (the task YAML's with `--gen_kwargs`) through mmr3_llava / mmr3_blip2."""
    import lmms_eval.models as lmms_eval_models
    from lmms_eval.api.instance import Instance

    gen_kwargs = {"do_sample": True, "temperature": 0.7, "top_p": 0.85, "max_new_tokens": 5, "until": ["\n\n"]}
    extras = {"batch_size": 2, "max_batch_size": None, "device": "cpu"}
    for model_id, family in (("mmr3_llava", "llava"), ("mmr3_blip2", "blip2-opt"), ("mmr3_blip2", "blip2-t5")):
        path = tiny_checkpoint(family, tmp_path_factory)
        lm = lmms_eval_models.get_model(model_id).create_from_arg_string(f"pretrained={path},dtype=float32", extras)
        calls = _record_generate(lm.generator, monkeypatch)
        lm.task_dict = {"t": {"test": [{"id": f"g/v{i}", "image": image} for i, image in enumerate(images(2))]}}
        requests = [
            Instance(
                request_type="generate_until",
                arguments=(QUESTIONS[i], dict(gen_kwargs), lambda doc: [doc["image"]], i, "t", "test"),
                idx=0,
                metadata={"task": "t", "doc_id": i, "repeats": 1},
            )
            for i in range(2)
        ]
        assert all(r.text for r in lm.generate_until(requests))
        assert len(calls) == 1, model_id
        sent = {k: calls[0].get(k) for k in ("do_sample", "temperature", "top_p", "num_beams", "max_new_tokens")}
        assert sent == {"do_sample": True, "temperature": 0.7, "top_p": 0.85, "num_beams": 1, "max_new_tokens": 5}
        lm.clean()


def test_a_generation_failure_names_every_sample_of_the_batch(generators, monkeypatch):
    gen = generators["llava"]

    def boom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(gen, "generate_from_embeddings", boom)
    with pytest.raises(GenerationError) as err:
        gen.generate(samples(2), GREEDY)
    assert "['row-0', 'row-1']" in str(err.value) and "CUDA out of memory (simulated)" in str(err.value)


def test_blip2_refuses_two_images_with_the_sample_id(generators):
    with pytest.raises(GenerationError, match="sample two-images: BLIP-2 answers about exactly one image, got 2"):
        generators["blip2-opt"].generate([Sample("two-images", "Q?", tuple(images(2)))], GREEDY)


def test_llava_uses_the_processors_chat_template_or_the_fallback(generators, tmp_path_factory):
    gen = generators["llava"]
    assert gen.chat_template  # the tiny processor carries llava-1.5-hf's template
    assert gen.prompt("What is shown?", 1) == "USER: <image>\nWhat is shown? ASSISTANT:"
    assert gen.prompt("What is shown?", 1) == prompts.llava_prompt("What is shown?", 1, None)
    plain = LlavaGenerator(gen.model, gen.processor, use_chat_template=False)
    assert plain.chat_template is None and plain.prompt("Q?", 2) == "USER: <image>\n<image>\nQ? ASSISTANT:"


def test_blip2_prompt_override(generators):
    gen = generators["blip2-t5"]
    custom = Blip2Generator(gen.model, gen.processor, prompt="Question: {question} Short answer:")
    assert custom.prompt("What?", 1) == "Question: What? Short answer:"
    with pytest.raises(ValueError, match="prompt must contain {question}"):
        Blip2Generator(gen.model, gen.processor, prompt="Answer:")


def test_wrong_family_is_refused_with_the_right_model_id(tmp_path_factory):
    with pytest.raises(ValueError, match="is a 'llava' checkpoint, not BLIP-2.*use --model mmr3_llava"):
        Blip2Generator.from_pretrained(tiny_checkpoint("llava", tmp_path_factory))


def test_tiny_builders_are_deterministic(tmp_path, tmp_path_factory):
    from safetensors.torch import load_file

    again = tiny.build_tiny_blip2(tmp_path / "again", backbone="opt")
    first = tiny_checkpoint("blip2-opt", tmp_path_factory)
    a, b = load_file(first / "model.safetensors"), load_file(again / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (first / "tokenizer.json").read_text() == (again / "tokenizer.json").read_text()


def test_tiny_cli_builds_a_loadable_checkpoint(tmp_path, capsys):
    assert tiny.main(["blip2-t5", str(tmp_path / "t5")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "t5")
    gen = Blip2Generator.from_pretrained(tmp_path / "t5")
    assert gen.encoder_decoder and gen.generate(samples(1), GREEDY)[0].text


@pytest.mark.parametrize("family", FAMILIES)
def test_transform_embeddings_is_what_the_language_model_reads(generators, family):
    """The seam the consistency adapter will use: a prefix prepended to the LLM's input sequence."""
    gen = generators[family]
    plain = [a.text for a in gen.generate(samples(3), GREEDY)]

    def prepend(masked: bool):
        def transform(embeds, mask):
            torch.manual_seed(0)
            prefix = torch.randn(embeds.shape[0], 3, embeds.shape[2], dtype=embeds.dtype)
            prefix_mask = torch.zeros if masked else torch.ones
            return torch.cat([prefix, embeds], 1), torch.cat([prefix_mask(mask.shape[0], 3, dtype=mask.dtype), mask], 1)

        return transform

    gen.transform_embeddings = prepend(masked=True)
    try:
        assert [a.text for a in gen.generate(samples(3), GREEDY)] == plain  # masked out: nothing changes
        gen.transform_embeddings = prepend(masked=False)
        assert [a.text for a in gen.generate(samples(3), GREEDY)] != plain  # attended: the answers move
    finally:
        del gen.transform_embeddings  # back to the class's identity


def test_loading_options_reach_the_model(tmp_path_factory):
    path = tiny_checkpoint("llava", tmp_path_factory)
    gen = LlavaGenerator.from_pretrained(path, dtype="bfloat16", attn_implementation="eager", device_map="cpu")
    assert gen.model.dtype is torch.bfloat16
    assert gen.model.config._attn_implementation == "eager"
    assert {p.device.type for p in gen.model.parameters()} == {"cpu"}
    assert gen.generate(samples(2), GREEDY)[0].text  # bf16 vision features reach a bf16 LLM


def _old_local_copy(src, dst, drop_config_keys=(), keep_processor_keys=None):
    """`src` as a copy saved before the 2024 hub updates: the image processor alone in
    preprocessor_config.json, no processor_config.json (so no patch_size / num_query_tokens), and
    for BLIP-2 no image_token_index in config.json. `keep_processor_keys` keeps a processor_config.json
    with just those keys (a copy saved between LLaVA's two updates)."""
    shutil.copytree(src, dst)
    processor = json.loads((dst / "processor_config.json").read_text())
    image_processor = {**processor["image_processor"], "processor_class": processor["processor_class"]}
    (dst / "preprocessor_config.json").write_text(json.dumps(image_processor))
    (dst / "processor_config.json").unlink()
    if keep_processor_keys is not None:
        kept = {key: processor[key] for key in ("processor_class", *keep_processor_keys)}
        (dst / "processor_config.json").write_text(json.dumps(kept))
    config = json.loads((dst / "config.json").read_text())
    for key in drop_config_keys:
        del config[key]
    (dst / "config.json").write_text(json.dumps(config))
    return dst


@pytest.mark.parametrize(
    ("family", "dropped", "kept", "filled"),
    [
        ("llava", (), None, "patch_size=8, vision_feature_select_strategy='default', num_additional_image_tokens=1"),
        # saved between the two llava-hf updates: 15 placeholders for 16 features without the fill
        ("llava", (), ("patch_size", "vision_feature_select_strategy", "image_token"), "num_additional_image_tokens=1"),
        ("blip2-opt", ("image_token_index",), None, "num_query_tokens=4"),
        ("blip2-t5", ("image_token_index",), None, "num_query_tokens=4"),
    ],
)
def test_old_local_copies_answer_as_current_ones(
    generators, tmp_path_factory, tmp_path, caplog, family, dropped, kept, filled
):
    """Copies saved before processor_config.json was complete: processing would fail (LLaVA:
    patch_size None, or one placeholder short) or the image would be ignored (BLIP-2: no
    placeholders). The model config fills the gap."""
    old_dir = _old_local_copy(tiny_checkpoint(family, tmp_path_factory), tmp_path / "old", dropped, kept)
    with caplog.at_level(logging.WARNING, logger="mmr3"):
        old = CLASSES[family].from_pretrained(old_dir, dtype="float32")
    assert "processor_config.json" in caplog.text and f"using {filled} from its config.json" in caplog.text
    batch = samples()
    assert [a.text for a in old.generate(batch, GREEDY)] == [a.text for a in generators[family].generate(batch, GREEDY)]
    assert old.image_token_id == tiny.IMAGE_TOKEN_ID


def test_the_checkpoints_own_stop_token_ends_the_answer(generators, tmp_path_factory, tmp_path):
    """blip2-opt-* stop at "\\n" (generation_config eos 50118), not at the tokenizer's `</s>`: the
    answer ends before that token, and the token is not part of it."""
    batch = samples(1)
    free = generators["blip2-opt"].generate(batch, GREEDY)[0]
    gen = generators["blip2-opt"]
    first_ids = gen.generate_from_embeddings(*gen.input_embeddings(gen.build_batch(batch)), GREEDY)[0].tolist()
    stop = first_ids[3]
    assert stop not in first_ids[:3]  # the 4th token appears first at position 3
    folder = tmp_path / "stops"
    shutil.copytree(tiny_checkpoint("blip2-opt", tmp_path_factory), folder)
    for name, keys in (("config.json", ("text_config",)), ("generation_config.json", ())):
        data = json.loads((folder / name).read_text())
        target = data[keys[0]] if keys else data
        target["eos_token_id"] = stop
        (folder / name).write_text(json.dumps(data))
    stopped = Blip2Generator.from_pretrained(folder, dtype="float32")
    assert stop in stopped.stop_token_ids and gen.tokenizer.eos_token_id in stopped.stop_token_ids
    answer = stopped.generate(batch, GREEDY)[0]
    assert answer.output_tokens == 3 and free.output_tokens == 12
    assert answer.text == gen.tokenizer.decode(first_ids[:3], skip_special_tokens=True).strip()
    assert free.text.startswith(answer.text) and len(free.text) > len(answer.text)


def _edge_image(width: int = 96, height: int = 48):
    """A wide grey image whose leftmost eighth is pure red: what a centre crop cuts away."""
    image = Image.new("RGB", (width, height), (128, 128, 128))
    image.paste((255, 0, 0), (0, 0, width // 8, height))
    return image


def _red_pixels(pixel_values: torch.Tensor) -> int:
    # Normalised red is far above, green far below, the grey background's values.
    red, green = pixel_values[0, 0], pixel_values[0, 1]
    return int(((red > 1.5) & (green < -1.0)).sum())


def test_llava_pads_images_to_a_square_as_llava_15_did(generators):
    """LLaVA-1.5's own evaluation pads (expand2square, the processor's mean colour); llava-hf's
    processor centre-crops, which cuts off what lies near the long sides (a masked object, say)."""
    gen = generators["llava"]
    assert gen.image_aspect == "pad"
    image = _edge_image()
    padded = gen.build_batch([Sample("wide", "What?", (image,))]).pixel_values
    cropped = LlavaGenerator(gen.model, gen.processor, image_aspect="crop")
    cut = cropped.build_batch([Sample("wide", "What?", (image,))]).pixel_values
    assert _red_pixels(padded) > 0 and _red_pixels(cut) == 0
    fill = tuple(int(255 * m) for m in gen.processor.image_processor.image_mean)
    square = Image.new("RGB", (96, 96), fill)
    square.paste(image, (0, 24))
    assert torch.equal(padded, gen.processor.image_processor(square, return_tensors="pt")["pixel_values"])
    same = Image.new("RGB", (40, 40), (10, 200, 30))  # a square image is left as it is
    assert torch.equal(
        gen.build_batch([Sample("sq", "What?", (same,))]).pixel_values,
        cropped.build_batch([Sample("sq", "What?", (same,))]).pixel_values,
    )
    with pytest.raises(ValueError, match="image_aspect must be 'pad' or 'crop', got 'square'"):
        LlavaGenerator(gen.model, gen.processor, image_aspect="square")
