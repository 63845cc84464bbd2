"""The consistency adapter's module and the training forward, on tiny random checkpoints, in process."""

from __future__ import annotations

import math

import pytest
import torch

from mmr3_adapters.adapter import AdapterConfig, ConsistencyAdapter, insert_prefix
from mmr3_adapters.adapter.config import AdapterConfigError
from mmr3_adapters.adapter.losses import answer_loss, consistency_divergence
from mmr3_adapters.adapter.module import left_align
from mmr3_adapters.models import IGNORE_INDEX, Sample
from mmr3_adapters.models.generation import GenerationSettings
from tests.tiny_models import FAMILIES, QUESTIONS, images, load_generators

GREEDY = GenerationSettings.from_gen_kwargs({"max_new_tokens": 8, "temperature": 0, "do_sample": False})


@pytest.fixture(scope="module")
def generators(tmp_path_factory):
    return load_generators(tmp_path_factory)


def strong_adapter(generator, seed: int = 1) -> ConsistencyAdapter:
    """A random adapter whose prefix is large enough to move the tiny models' answers."""
    torch.manual_seed(seed)
    adapter = ConsistencyAdapter(AdapterConfig(hidden_size=generator.hidden_size, backbone=generator.backbone))
    with torch.no_grad():
        for p in adapter.mlp.parameters():
            p.mul_(20)
    return adapter.eval()


def samples(n: int = len(QUESTIONS)) -> list[Sample]:
    return [Sample(f"row-{i}", q, (im,)) for i, (q, im) in enumerate(zip(QUESTIONS[:n], images(n), strict=True))]


def test_the_prefix_sits_between_the_pads_and_the_first_real_token():
    embeds = torch.arange(2 * 4, dtype=torch.float32).view(2, 4, 1)  # row 0: 2 pads; row 1: none
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    prefix = torch.tensor([[[-1.0], [-2.0]], [[-3.0], [-4.0]]])
    out, out_mask = insert_prefix(embeds, mask, prefix)
    assert out[..., 0].tolist() == [[0.0, 1.0, -1.0, -2.0, 2.0, 3.0], [-3.0, -4.0, 4.0, 5.0, 6.0, 7.0]]
    assert out_mask.tolist() == [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
    with pytest.raises(ValueError, match="left-padded rows"):
        insert_prefix(embeds, torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]), prefix)


def test_pads_never_reach_the_lstm_or_the_max_pool():
    torch.manual_seed(0)
    adapter = ConsistencyAdapter(AdapterConfig(hidden_size=8, backbone="llava")).eval()
    real = torch.randn(1, 3, 8)
    alone = adapter.prefix(real, torch.ones(1, 3, dtype=torch.long))
    # The same row left-padded by 4 positions of huge values, next to a longer row.
    padded = torch.cat([torch.full((1, 4, 8), 1e6), real], dim=1)
    batch = torch.cat([padded, torch.randn(1, 7, 8)])
    mask = torch.tensor([[0, 0, 0, 0, 1, 1, 1], [1] * 7])
    together = adapter.prefix(batch, mask)
    assert torch.allclose(together[0], alone[0], atol=1e-6)
    assert left_align(batch, mask)[0, :3].equal(real[0])


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_n_gives_the_answers_of_batch_1_with_the_adapter(generators, family):
    gen = generators[family]
    plain = [a.text for a in gen.generate(samples(), GREEDY)]
    gen.embedding_transform = strong_adapter(gen)
    try:
        one_by_one = [gen.generate([s], GREEDY)[0].text for s in samples()]
        together = [a.text for a in gen.generate(samples(), GREEDY)]
    finally:
        gen.embedding_transform = None
    assert together == one_by_one
    assert sum(a != b for a, b in zip(together, plain, strict=True)) >= 2  # the prefix is read


def test_a_prefix_in_front_of_the_pads_breaks_t5_batching(generators):
    """Why the prefix goes after the pads: T5's relative positions see the padding in between."""
    gen = generators["blip2-t5"]
    adapter = strong_adapter(gen)

    def in_front(embeds, mask):
        prefix = adapter.prefix(embeds, mask).to(embeds.dtype)
        ones = torch.ones(mask.shape[0], prefix.shape[1], dtype=mask.dtype)
        return torch.cat([prefix, embeds], 1), torch.cat([ones, mask], 1)

    gen.embedding_transform = in_front
    try:
        one_by_one = [gen.generate([s], GREEDY)[0].text for s in samples()]
        together = [a.text for a in gen.generate(samples(), GREEDY)]
    finally:
        gen.embedding_transform = None
    assert together != one_by_one


@pytest.mark.parametrize("family", FAMILIES)
def test_teacher_forced_logits_reproduce_the_greedy_answer(generators, family):
    """The training forward sees the positions generate sees: its argmax is the greedy answer."""
    gen = generators[family]
    adapter = strong_adapter(gen)
    batch = gen.build_batch(samples())
    with torch.no_grad():
        embeds, mask = adapter(*gen.input_embeddings(batch))
        greedy = gen.generate_from_embeddings(embeds, mask, GREEDY)
        logits = gen.answer_logits(embeds, mask, greedy)
    assert logits.shape[:2] == greedy.shape
    assert torch.equal(logits.argmax(-1), greedy)


def test_training_targets_end_with_the_checkpoints_stop_id(generators):
    llava, opt, t5 = generators["llava"], generators["blip2-opt"], generators["blip2-t5"]
    prompt = llava.prompt("What colour is it?", 1)
    ids = llava.answer_token_ids(prompt, "two")
    # The answer as the model would write it after the prompt: the tokens past the prompt's own.
    full = llava.tokenizer(prompt + " two")["input_ids"]
    assert ids == full[len(llava.tokenizer(prompt)["input_ids"]) :] + [llava.answer_stop_id]
    assert llava.tokenizer.decode(ids[:-1]).strip() == "two"
    assert t5.answer_token_ids("ignored", "two")[-1] == t5.tokenizer.eos_token_id
    assert t5.tokenizer.decode(t5.answer_token_ids("x", "two")[:-1]) == "two"  # the decoder starts afresh
    batch = opt.build_training_batch(samples(3), ["two", "a much longer answer", "photo"], max_answer_tokens=64)
    labels = batch.labels
    lengths = (labels != IGNORE_INDEX).sum(1).tolist()
    assert lengths[1] > lengths[0] and labels.shape[1] == max(lengths)
    for row, n in zip(labels.tolist(), lengths, strict=True):
        assert row[n - 1] == opt.answer_stop_id and all(t == IGNORE_INDEX for t in row[n:])  # pads only at the end
    with pytest.raises(ValueError, match="empty training answer"):
        opt.answer_token_ids("Question: x Answer:", "  ")


def test_answer_loss_weighs_every_row_alike():
    logits = torch.zeros(2, 3, 5)
    labels = torch.tensor([[1, IGNORE_INDEX, IGNORE_INDEX], [1, 2, 3]])
    per_row = answer_loss(logits, labels)
    assert torch.allclose(per_row, torch.full((2,), math.log(5)))  # uniform logits: ln V per token, per row


def test_consistency_divergence_is_zero_for_agreeing_variants_and_symmetric():
    torch.manual_seed(0)
    logits = torch.randn(4, 2, 6)
    labels = torch.zeros(4, 2, dtype=torch.long)
    same = logits.clone()
    same[1] = same[0]
    for kind in ("js", "skl"):
        div = consistency_divergence(same, labels, ["g", "g", "h", "h"], kind)
        assert div.shape == (2,) and div[0].abs() < 1e-6 and div[1] > 0
        swapped = consistency_divergence(logits[[1, 0, 3, 2]], labels, ["g", "g", "h", "h"], kind)
        assert torch.allclose(consistency_divergence(logits, labels, ["g", "g", "h", "h"], kind), swapped)
    # Jensen-Shannon of two one-hot distributions on different tokens is ln 2.
    hot = torch.full((2, 1, 3), -1e4)
    hot[0, 0, 0] = hot[1, 0, 1] = 0.0
    js = consistency_divergence(hot, torch.zeros(2, 1, dtype=torch.long), ["g", "g"], "js")
    assert torch.allclose(js, torch.tensor([math.log(2)]), atol=1e-5)
    assert consistency_divergence(logits, labels, ["a", "b", "c", "d"]).numel() == 0  # no group has a pair


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"backbone": "qwen"}, "backbone must be one of"),
        ({"hidden_size": 0}, "hidden_size must be a positive integer"),
        ({"prefix_length": True}, "prefix_length must be a positive integer"),
        ({"mlp_activation": "swish"}, "mlp_activation must be one of"),
        ({"lstm_dropout": 1.0}, r"lstm_dropout must be a number in \[0, 1\)"),
        ({"lstm_dropout": "0.5"}, r"lstm_dropout must be a number in \[0, 1\), got '0.5'"),
        ({"generator_options": ["a"]}, "generator_options must be a JSON object"),
        ({"revision": 3}, "base_model_name_or_path and revision must be strings"),
        ({"format_version": 99}, "newer than this lmms-eval-mmr3 reads"),
    ],
)
def test_adapter_config_refuses_bad_values(changes, message):
    with pytest.raises(AdapterConfigError, match=message):
        AdapterConfig(**{"hidden_size": 32, "backbone": "llava", **changes})


def test_adapter_config_defaults_are_p_adapters_and_round_trip():
    config = AdapterConfig(hidden_size=4096, backbone="blip2-t5")
    assert (config.prefix_length, config.lstm_layers, config.lstm_dropout) == (3, 2, 0.0)  # the paper's
    assert (config.lstm_width, config.mlp_width, config.mlp_activation) == (2048, 4096, "relu")  # P-Adapter's
    assert AdapterConfig.from_dict(config.to_dict()) == config
    with torch.device("meta"):
        adapter = ConsistencyAdapter(config)
    # 2 x 2-layer BiLSTM directions at 2048 units over 4096 inputs, and Linear(4096, 4096) -> Linear(4096, 3 * 4096).
    lstm = 2 * (4 * 2048 * (4096 + 2048 + 2)) + 2 * (4 * 2048 * (4096 + 2048 + 2))
    mlp = (4096 * 4096 + 4096) + (4096 * 3 * 4096 + 3 * 4096)
    assert adapter.num_parameters() == lstm + mlp == 268_517_376
