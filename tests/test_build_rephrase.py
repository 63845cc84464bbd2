"""Rephrasing: the paper's prompt, reply parsing, the cache, and both generator backends against
a real HTTP server on 127.0.0.1 (429, 500, malformed JSON, slow replies, bad key, unknown model)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_fixtures import VOCABULARY_WORDS, ChatServer, make_tiny_lm, reply_for  # noqa: E402

from mmr3_tasks.builder.render import ImageRef, RephraseItem  # noqa: E402
from mmr3_tasks.builder.rephrase import (  # noqa: E402
    GeneratorConfig,
    GeneratorError,
    LocalHF,
    OpenAIChat,
    RephraseStats,
    ReplyCache,
    parse_rephrasings,
    rephrase_items,
    rephrase_prompt,
)


def test_prompt_is_the_papers_verbatim():
    assert rephrase_prompt("What is the minimum age to vote in Canada?", "18") == (
        "I have a question: What is the minimum age to vote in Canada? Please give me three different types "
        "of rephrased questions to which the answer would be 18."
    )


ORIGINAL = "What is the minimum age requirement to do this in Canada?"


@pytest.mark.parametrize(
    "reply,expected",
    [
        ("1. What is A?\n2. What is B?\n3. What is C?", ["What is A?", "What is B?", "What is C?"]),
        (
            "Sure! Here they are:\n\nR1: What is A?\nR2: What is B?\nR3: What is C?",
            ["What is A?", "What is B?", "What is C?"],
        ),
        (
            'Rephrased question 1: "What is A?"\n**2.** What is B?\n(3) What is C?',
            ["What is A?", "What is B?", "What is C?"],
        ),
        (
            "Type 1 (formal): What is A?\nType 2 (casual): What is B?\n- What is C?\n- What is D?",
            ["What is A?", "What is B?", "What is C?"],
        ),
        # Lines that are not questions (intros, explanations) are not rephrasings.
        (
            "1. What is A?\nThis one is formal.\n2. What is B?\n3. What is C?",
            ["What is A?", "What is B?", "What is C?"],
        ),
    ],
)
def test_usable_replies(reply, expected):
    assert parse_rephrasings(reply, ORIGINAL) == (expected, "")


@pytest.mark.parametrize(
    "reply,reason",
    [
        ("", "empty output"),
        ("   \n ", "empty output"),
        ("1. What is A?\n2. What is B?", "fewer than 3 questions"),
        ("I cannot help with that.", "fewer than 3 questions"),
        ("1. What is A?\n2. what is a\u00a0?\n3. What is C?", "duplicate questions"),  # case/space only
        (f"1. {ORIGINAL}\n2. What is B?\n3. What is C?", "duplicate questions"),  # repeats the source
    ],
)
def test_unusable_replies(reply, reason):
    assert parse_rephrasings(reply, ORIGINAL) == (None, reason)


def test_cache_survives_a_half_written_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    cache = ReplyCache(path)
    cache.put("k1", {"output": "one"})
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"key": "k2", "output": "tw')  # killed mid-write
    again = ReplyCache(path)
    assert again.replies == {"k1": "one"}
    again.put("k3", {"output": "three"})
    assert ReplyCache(path).replies == {"k1": "one", "k3": "three"}
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_cache_key_ignores_endpoint_and_speed():
    a = GeneratorConfig(model="m", base_url="http://a/v1", concurrency=2)
    b = GeneratorConfig(model="m", base_url="http://b/v1", concurrency=32, timeout_s=5)
    assert a.cache_identity() == b.cache_identity()
    assert a.cache_identity() != GeneratorConfig(model="m", temperature=0.0).cache_identity()


# --------------------------------------------------------------------------- OpenAI-compatible endpoint


def _config(server: ChatServer, **kw) -> GeneratorConfig:
    kw.setdefault("backoff_s", 0.01)
    return GeneratorConfig(model="gpt-test", base_url=server.base_url, api_key_env="MMR3_TEST_KEY", **kw)


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("MMR3_TEST_KEY", "sk-test")


def _run(config: GeneratorConfig, prompts: list[str]) -> tuple[dict, OpenAIChat]:
    client = OpenAIChat(config)
    replies: dict[str, str] = {}
    client.generate([(str(i), p) for i, p in enumerate(prompts)], lambda rid, text: replies.__setitem__(rid, text))
    return replies, client


def test_many_requests_in_flight(key):
    prompts = [rephrase_prompt(f"Question number {i} about a fairly long topic here?", "x") for i in range(24)]
    # The server holds its answers until 8 requests are in flight: a client that sent fewer at once
    # would show it in max_in_flight (after a 10 s wait), whatever the machine's load.
    with ChatServer(latency=0.05, gather=8) as server:
        replies, _ = _run(_config(server, concurrency=8), prompts)
    assert [replies[str(i)] for i in range(24)] == [reply_for(p) for p in prompts]
    assert server.max_in_flight == 8


@pytest.mark.parametrize(
    "faults",
    [
        ["429", "429"],
        ["500", "503"],
        ["malformed"],
        ["empty-choices"],
        ["slow"],  # past the client's timeout: retried
        ["429", "500", "malformed"],
    ],
)
def test_transient_failures_are_retried(key, faults):
    prompts = [rephrase_prompt("FLAKY question with enough words to pass the filter?", "x")]
    with ChatServer(slow_s=1.5) as server:
        server.faults = {"FLAKY": faults}
        replies, client = _run(_config(server, timeout_s=0.5, max_retries=4), prompts)
    assert replies == {"0": reply_for(prompts[0])}
    assert client.retries == len(faults)
    assert len(server.log) == len(faults) + 1


@pytest.mark.parametrize(
    "faults,last",
    [
        (["500"] * 10, "HTTP 500"),
        # The openai client's retries and ours (of malformed replies) share one budget per request.
        (["malformed"] + ["500"] * 10, "HTTP 500"),
        (["500"] + ["malformed"] * 10, "malformed reply"),
    ],
)
def test_retries_run_out_with_a_clear_error(key, faults, last):
    with ChatServer() as server:
        server.faults = {"DOWN": faults}
        with pytest.raises(GeneratorError, match=rf"gave up after 3 attempts.*{last}.*run the same command again"):
            _run(_config(server, max_retries=2), ["DOWN forever"])
    assert len(server.log) == 3


def test_a_local_server_needs_no_key(monkeypatch):
    # vLLM and other local servers may run without a key: no Authorization header at all, as before.
    monkeypatch.delenv("MMR3_TEST_KEY", raising=False)
    with ChatServer(api_key=None) as server:
        replies, _ = _run(_config(server), ["a question?"])
    assert replies == {"0": reply_for("a question?")}
    assert server.authorizations == [None]


def test_bad_key_fails_at_once(monkeypatch):
    monkeypatch.setenv("MMR3_TEST_KEY", "sk-wrong")
    with ChatServer() as server:
        with pytest.raises(GeneratorError, match=r"refused \(HTTP 401\): set \$MMR3_TEST_KEY"):
            _run(_config(server, max_retries=5), ["a", "b", "c"])
    assert server.statuses[401] >= 1 and sum(server.statuses.values()) <= 3  # no retries


def test_unknown_model_or_route_fails_at_once(key):
    with ChatServer() as server:
        config = GeneratorConfig(model="no-such-model", base_url=server.base_url, api_key_env="MMR3_TEST_KEY")
        with pytest.raises(GeneratorError, match=r"HTTP 404 .*--rephrase-model 'no-such-model'"):
            _run(config, ["a"])
        wrong_route = GeneratorConfig(
            model="gpt-test", base_url=server.base_url[: -len("/v1")], api_key_env="MMR3_TEST_KEY"
        )
        with pytest.raises(GeneratorError, match="HTTP 404 at http://127.0.0.1:[0-9]+/chat/completions"):
            _run(wrong_route, ["a"])


def test_every_flag_a_rephrasing_message_names_is_a_flag_of_mmr3_build():
    # The 403/404 messages once named `--api-model`, which never existed.
    import argparse
    import re

    import mmr3_tasks.builder.rephrase as rephrase
    from mmr3_tasks.builder import cli as build_cli

    sub = argparse.ArgumentParser().add_subparsers()
    build_cli.register(sub)
    flags = {o for action in sub.choices["build"]._actions for o in action.option_strings}
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", Path(rephrase.__file__).read_text(encoding="utf-8")))
    assert {"--rephrase-model", "--api-base", "--api-key-env"} <= named
    assert named <= flags, sorted(named - flags)


def test_no_key_for_openai_is_an_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(GeneratorError, match=r"\$OPENAI_API_KEY"):
        OpenAIChat(GeneratorConfig())


def _items(texts: list[str]) -> list[RephraseItem]:
    return [
        RephraseItem(f"g{i}", "okvqa", str(i), ImageRef(key=f"img{i}"), t, ["dog"], "lic", "src")
        for i, t in enumerate(texts)
    ]


def test_rephrase_items_rejects_counts_and_never_repeats_a_request(key, tmp_path):
    texts = [
        "What kind of animal is sitting next to the man on the bench?",
        "NOQUESTION what is happening in this particular picture right now?",
        "DUPLICATE which color is the car parked near the tree over there?",
    ]
    with ChatServer() as server:
        config = _config(server)
        cache = ReplyCache(tmp_path / "c.jsonl")
        stats = RephraseStats()
        ok = rephrase_items(_items(texts), lambda: OpenAIChat(config), config, cache, stats)
        assert [i.group_id for i in ok] == ["g0"] and len(ok[0].rephrasings) == 3
        assert stats.rejected == {"fewer than 3 questions": 1, "duplicate questions": 1}
        assert stats.requested == 3 and len(server.log) == 3
        # Again, from a fresh cache object over the same file: nothing is requested.
        stats2 = RephraseStats()
        ok2 = rephrase_items(
            _items(texts), lambda: pytest.fail("no generator needed"), config, ReplyCache(tmp_path / "c.jsonl"), stats2
        )
        assert [i.rephrasings for i in ok2] == [i.rephrasings for i in ok]
        assert stats2.cached == 3 and stats2.requested == 0 and len(server.log) == 3


# --------------------------------------------------------------------------- local transformers model


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return make_tiny_lm(tmp_path_factory.mktemp("tiny_lm"))


def greedy_reply(folder: Path, prompt: str, max_new_tokens: int) -> str:
    """What the model says to one prompt on its own (no batch, no padding), decoded without the prompt."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


def test_local_transformers_backend_generates_and_is_reproducible(tiny_lm):
    config = GeneratorConfig(
        backend="transformers", model=str(tiny_lm), max_tokens=12, batch_size=2, temperature=0.0, device="cpu"
    )
    # Questions of different lengths: the first batch of two is left-padded.
    questions = ["what is the dog?", "please give me the answer to what is the dog?", "what would be the dog?"]
    prompts = [(f"q{i}", rephrase_prompt(q, "dog")) for i, q in enumerate(questions)]
    first: dict[str, str] = {}
    LocalHF(config).generate(prompts, lambda rid, text: first.__setitem__(rid, text))
    second: dict[str, str] = {}
    LocalHF(config).generate(prompts, lambda rid, text: second.__setitem__(rid, text))
    assert first == second
    # Each reply is what the model says to that prompt alone, the new tokens only: words, not "".
    expected = {rid: greedy_reply(tiny_lm, prompt, 12) for rid, prompt in prompts}
    assert first == expected
    for rid, reply in first.items():
        assert reply.split() and set(reply.split()) <= VOCABULARY_WORDS, (rid, reply)
    assert len(set(first.values())) == 3  # each prompt reached the model: three different replies


def test_local_backend_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(GeneratorError, match="--rephrase-model"):
        LocalHF(GeneratorConfig(backend="transformers", model=str(tmp_path / "absent"), device="cpu"))
