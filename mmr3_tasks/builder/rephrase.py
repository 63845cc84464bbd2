"""Rephrasings: the paper's prompt, two generator backends, output checks, and the JSONL cache.

The paper asked GPT-3.5 (its §3.1), with the ground-truth answer in the prompt:

    I have a question: <Question> Please give me three different types of rephrased questions to
    which the answer would be <Answer>.

Backends: any OpenAI-compatible chat endpoint through the `openai` client (`OpenAIChat`: several
requests in flight, retries with backoff on 429, 5xx, timeouts and malformed replies, an immediate
clear error on 401/403/404), and a local `transformers` causal LM (`LocalHF`). Every reply is
appended to the cache the moment it arrives, so a killed build never pays for the same request
twice. Unusable replies (fewer than 3 questions, duplicates, empty) are rejected and counted, never
written.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mmr3_tasks.errors import MMR3Error

log = logging.getLogger(__name__)

REPHRASE_PROMPT = (
    "I have a question: {question} Please give me three different types of rephrased questions "
    "to which the answer would be {answer}."
)
N_REPHRASINGS = 3
BACKENDS = ("openai", "transformers")
API_KEY_ENV = "OPENAI_API_KEY"
API_BASE_ENV = "OPENAI_BASE_URL"
DEFAULT_API_BASE = "https://api.openai.com/v1"
DEFAULT_API_MODEL = "gpt-3.5-turbo"


def rephrase_prompt(question: str, answer: str) -> str:
    """The paper's prompt, verbatim, for one question and its (most frequent) answer."""
    return REPHRASE_PROMPT.format(question=question, answer=answer)


class GeneratorError(MMR3Error, RuntimeError):
    """The generator cannot go on (bad key, unknown model or endpoint, retries exhausted)."""


@dataclass
class GeneratorConfig:
    """How rephrasings are generated; round-trips to JSON. The API key is never stored: only the
    name of the environment variable that holds it.

    Attributes:
        backend: "openai" (any OpenAI-compatible chat endpoint) or "transformers" (a local model).
        model: the chat model name (openai) or a model folder / hub id (transformers).
        base_url: the endpoint's base URL, ending in /v1; empty: $OPENAI_BASE_URL or OpenAI's.
        api_key_env: the environment variable holding the key.
        concurrency: requests in flight (openai).
        temperature: sampling temperature; the paper does not give GPT-3.5's, 1.0 is the API default.
        max_tokens: reply length cap.
        timeout_s: per-request timeout (openai).
        max_retries: retries of one request on 429 / 5xx / timeouts / malformed replies, all told.
        backoff_s: wait before retrying a malformed reply; it doubles per retry (capped at 30 s).
            HTTP errors and timeouts wait as the openai client decides (0.5 s doubling to 8 s, or
            the server's Retry-After).
        batch_size: prompts per generate() call (transformers).
        device: "auto", "cpu" or "cuda" (transformers).
    """

    backend: str = "openai"
    model: str = DEFAULT_API_MODEL
    base_url: str = ""
    api_key_env: str = API_KEY_ENV
    concurrency: int = 16
    temperature: float = 1.0
    max_tokens: int = 256
    timeout_s: float = 60.0
    max_retries: int = 6
    backoff_s: float = 0.5
    batch_size: int = 8
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown rephrasing backend {self.backend!r}; expected one of {BACKENDS}")
        if self.concurrency < 1 or self.batch_size < 1:
            raise ValueError("concurrency and batch_size must be at least 1")

    def to_dict(self) -> dict:
        return asdict(self)

    def cache_identity(self) -> dict:
        """What makes two replies to one prompt interchangeable (not the endpoint, key or speed)."""
        return {
            "backend": self.backend,
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }


# --------------------------------------------------------------------------- output checks

_LEAD = re.compile(
    r"""^\s*(?:
        [-*\u2022]+\s*                                   # bullets
      | \**\(?\d+[.):]\)?\**\s*                         # 1.  1)  (1)  **1.**
      | \**(?:R|Q|rephrased(?:\s+question)?|question|rephrasing|version|type|option)\s*\d*\s*
        (?:\([^)]*\))?\s*[:.)-]\**\s*                    # R1:  Rephrased question 2:  Type 3 (formal):
    )+""",
    re.IGNORECASE | re.VERBOSE,
)
_QUOTES = "\"'`\u201c\u201d\u2018\u2019*"


def _norm(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.casefold()).strip()


def parse_rephrasings(output: str, original: str) -> tuple[list[str] | None, str]:
    """The first three questions of a reply, or None and why it is unusable.

    A question is a line that ends with "?" once list markers ("1.", "R2:", "- ") and quotes are
    stripped. Rejected: empty replies, fewer than 3 questions, and any of the three repeating
    another or the original question (compared without case and punctuation).
    """
    if not output or not output.strip():
        return None, "empty output"
    questions = []
    for line in output.splitlines():
        text = _LEAD.sub("", line.strip()).strip().strip(_QUOTES).strip()
        if text.endswith("?") and len(text) > 1:
            questions.append(" ".join(text.split()))
    if len(questions) < N_REPHRASINGS:
        return None, "fewer than 3 questions"
    chosen = questions[:N_REPHRASINGS]
    normed = [_norm(q) for q in chosen]
    if len(set(normed)) < N_REPHRASINGS or _norm(original) in normed or "" in normed:
        return None, "duplicate questions"
    return chosen, ""


# --------------------------------------------------------------------------- cache


class ReplyCache:
    """Append-only JSONL of generator replies, keyed by (generator identity, prompt).

    One line per reply, flushed and fsynced as it arrives. A build killed mid-line leaves a partial
    last line; it is cut off when the cache is opened again, and that one request is made again.
    """

    def __init__(self, path: Path):
        self.path = path
        self.replies: dict[str, str] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            self._load()

    @staticmethod
    def key(identity: dict, prompt: str) -> str:
        return hashlib.sha256(json.dumps([identity, prompt], sort_keys=True).encode()).hexdigest()

    def _load(self) -> None:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            log.warning("rephrasing cache %s: dropping a half-written last line", self.path)
            with open(self.path, "r+b") as f:
                f.truncate(end)
        for number, line in enumerate(data[:end].splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise GeneratorError(
                    f"rephrasing cache {self.path} line {number} is corrupt ({err}); delete that line"
                ) from err
            self.replies[record["key"]] = record["output"]

    def get(self, key: str) -> str | None:
        return self.replies.get(key)

    def put(self, key: str, record: dict) -> None:
        line = json.dumps({"key": key, **record}, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.replies[key] = record["output"]


# --------------------------------------------------------------------------- backends

OnReply = Callable[[str, str], None]  # (request id, reply text)


class OpenAIChat:
    """An OpenAI-compatible `/chat/completions` endpoint through the `openai` client, `concurrency`
    requests in flight.

    The client retries 429, 408, 409, 5xx, timeouts and dropped connections with its own backoff
    (0.5 s doubling to 8 s, jittered, or the server's Retry-After up to 2 min). A 200 whose body is
    not a chat completion with a text message is retried here, `backoff_s` doubling: the client
    does not check replies. Both kinds share one budget, `max_retries` per request. `retries`
    counts every retried HTTP request of the replies received (the client's `retries_taken` plus
    ours), for the build summary.
    """

    FATAL_STATUS = {
        401: "the API key was refused (HTTP 401): set ${env} to a valid key",
        403: "the API key may not use this model or endpoint (HTTP 403): check ${env} and --rephrase-model",
        404: "HTTP 404 at {url}: check --api-base (it should end in /v1) and --rephrase-model {model!r}",
    }

    def __init__(self, config: GeneratorConfig, api_key: str | None = None, base_url: str | None = None):
        self.config = config
        self.base_url = (base_url or config.base_url or os.environ.get(API_BASE_ENV) or DEFAULT_API_BASE).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get(config.api_key_env, "")
        if not self.api_key and self.base_url == DEFAULT_API_BASE:
            raise GeneratorError(
                f"no API key: set ${config.api_key_env} (or pass --api-key-env NAME) to call {self.base_url}"
            )
        self.retries = 0  # retried HTTP requests, for the report

    def generate(self, requests: Sequence[tuple[str, str]], on_reply: OnReply, progress=None) -> None:
        """Sends every (id, prompt); calls on_reply(id, text) as each reply arrives."""
        if requests:
            asyncio.run(self._run(requests, on_reply, progress))

    async def _run(self, requests, on_reply: OnReply, progress) -> None:
        import openai

        semaphore = asyncio.Semaphore(self.config.concurrency)
        # A local server may need no key: the client insists on one, so it gets a placeholder and
        # each request drops the Authorization header (see _complete).
        async with openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self.api_key or "no-key",
            timeout=self.config.timeout_s,
            max_retries=self.config.max_retries,
        ) as client:

            async def one(request_id: str, prompt: str) -> None:
                async with semaphore:
                    text = await self._complete(client, prompt)
                on_reply(request_id, text)
                if progress is not None:
                    progress.update(1)

            tasks = [asyncio.ensure_future(one(rid, prompt)) for rid, prompt in requests]
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _complete(self, client, prompt: str) -> str:
        import openai

        headers = {} if self.api_key else {"Authorization": openai.Omit()}
        used = 0  # retries spent on this prompt, the client's and ours
        while True:
            chat = client.with_options(max_retries=self.config.max_retries - used).chat.completions
            try:
                raw = await chat.with_raw_response.create(
                    model=self.config.model,
                    messages=[{"role": "user", "content": prompt}],
                    temperature=self.config.temperature,
                    max_tokens=self.config.max_tokens,
                    extra_headers=headers,
                )
            except openai.APIStatusError as err:
                raise self._status_error(err, used) from err
            except openai.APIConnectionError as err:  # timeouts too, once the client's retries ran out
                raise self._gave_up(f"{type(err).__name__}: {err}", used, err) from err
            used += raw.retries_taken
            self.retries += raw.retries_taken
            try:
                content = raw.parse().choices[0].message.content
                if not isinstance(content, str):
                    raise TypeError(f"content is {type(content).__name__}")
                return content
            except (ValueError, IndexError, TypeError, AttributeError) as err:
                last = f"malformed reply ({type(err).__name__}: {err}): {raw.text[:200]!r}"
            if used >= self.config.max_retries:
                raise self._gave_up(last, used)
            await asyncio.sleep(min(30.0, self.config.backoff_s * 2**used))
            used += 1
            self.retries += 1

    def _status_error(self, err, used: int) -> GeneratorError:
        status = err.status_code
        if status in self.FATAL_STATUS:
            message = self.FATAL_STATUS[status].replace("${env}", "$" + self.config.api_key_env)
            message = message.format(url=str(err.request.url), model=self.config.model)
            return GeneratorError(f"{message}; server said: {err.response.text[:300]}")
        # The statuses the client retries (as openai's _should_retry): the budget ran out.
        if status in (408, 409, 429) or status >= 500:
            return self._gave_up(f"HTTP {status}: {err.response.text[:200]}", used, err)
        return GeneratorError(
            f"the endpoint answered HTTP {status} to a chat request: {err.response.text[:300]} "
            f"(model {self.config.model!r} at {self.base_url})"
        )

    def _gave_up(self, last: str, used: int, err=None) -> GeneratorError:
        # The client numbers each try of a request in this header (openai >= 1.50); without it,
        # the whole budget is assumed spent. It may stop early, e.g. on a Retry-After over 2 min.
        tries = err.request.headers.get("x-stainless-retry-count") if err is not None else "0"
        attempts = used + int(tries) + 1 if tries is not None else self.config.max_retries + 1
        return GeneratorError(
            f"gave up after {attempts} attempts at {self.base_url}: {last}. "
            "Replies received so far are cached; run the same command again to go on."
        )


class LocalHF:
    """A local `transformers` causal LM, batched; chat template when the tokenizer has one."""

    def __init__(self, config: GeneratorConfig, seed: int = 0):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.seed = seed
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(config.model)
            self.model = AutoModelForCausalLM.from_pretrained(config.model).to(self.device).eval()
        except OSError as err:
            raise GeneratorError(
                f"cannot load the rephrasing model {config.model!r} ({err}); pass --rephrase-model with a "
                "local folder or a hub id this machine can reach"
            ) from err
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.retries = 0

    def _text(self, prompt: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return prompt

    def generate(self, requests: Sequence[tuple[str, str]], on_reply: OnReply, progress=None) -> None:
        import torch

        sample = self.config.temperature > 0
        for start in range(0, len(requests), self.config.batch_size):
            chunk = requests[start : start + self.config.batch_size]
            batch = self.tokenizer([self._text(p) for _, p in chunk], return_tensors="pt", padding=True)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            # One seed per batch position keeps sampled replies reproducible run to run.
            torch.manual_seed(self.seed + start)
            with torch.inference_mode():
                out = self.model.generate(
                    **batch,
                    max_new_tokens=self.config.max_tokens,
                    do_sample=sample,
                    temperature=self.config.temperature if sample else None,
                    top_p=None,
                    top_k=None,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new = out[:, batch["input_ids"].shape[1] :]
            for (request_id, _), tokens in zip(chunk, new, strict=True):
                on_reply(request_id, self.tokenizer.decode(tokens, skip_special_tokens=True))
                if progress is not None:
                    progress.update(1)


def make_generator(config: GeneratorConfig, seed: int = 0):
    return OpenAIChat(config) if config.backend == "openai" else LocalHF(config, seed)


# --------------------------------------------------------------------------- driver


@dataclass
class RephraseStats:
    requested: int = 0  # new requests sent
    cached: int = 0  # replies found in the cache
    accepted: int = 0
    rejected: dict | None = None

    def reject(self, reason: str) -> None:
        self.rejected = self.rejected or {}
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


def rephrase_items(
    items: Sequence, generator_factory, config: GeneratorConfig, cache: ReplyCache, stats, progress=None
):
    """Fills `rephrasings` of the items whose reply is usable; returns those items, in input order.

    Cached replies are reused; only the missing ones are requested (the generator is created only
    then, so a fully cached build needs no key and no model).
    """
    identity = config.cache_identity()
    keys = {}
    missing = []
    for item in items:
        prompt = rephrase_prompt(item.question, item.prompt_answer)
        key = ReplyCache.key(identity, prompt)
        keys[item.group_id] = key
        if cache.get(key) is None:
            missing.append((item.group_id, prompt))
        else:
            stats.cached += 1
            if progress is not None:
                progress.update(1)
    if missing:
        started = time.monotonic()
        prompts = dict(missing)

        def on_reply(group_id: str, text: str) -> None:
            cache.put(keys[group_id], {"group_id": group_id, **identity, "prompt": prompts[group_id], "output": text})

        generator_factory().generate(missing, on_reply, progress)
        stats.requested += len(missing)
        log.info("rephrasing: %d requests in %.1f s", len(missing), time.monotonic() - started)
    accepted = []
    for item in items:
        questions, reason = parse_rephrasings(cache.get(keys[item.group_id]) or "", item.question)
        if questions is None:
            stats.reject(reason)
            continue
        item.rephrasings = questions
        stats.accepted += 1
        accepted.append(item)
    return accepted
