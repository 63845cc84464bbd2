"""The task hooks as lmms-eval drives them, pinned to numbers worked out apart from the hooks.

Each test builds the real lmms-eval task from our YAML (lmms-eval's own loader resolves the
`!function` hooks), which loads its docs through `process_docs`. It then does what lmms-eval's
evaluator does in one process, without a model: it builds the requests, answers each from a script
(the Sampling protocol's request `repeats` times, as lmms-eval clones it), applies the task's
filters, calls `process_results` per doc with the filtered responses, and runs each metric's
aggregation in lmms-eval's order (its TaskOutput). The expected numbers come from `metrics.score`
on responses built here from the rows and the script, never from the payloads, or by hand.
Scoring uses the real all-MiniLM-L6-v2, as the aggregation does.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from lmms_eval.api.task import ConfigurableTask
from lmms_eval.evaluator_utils import TaskOutput
from lmms_eval.utils import load_yaml_config

from mmr3_tasks import data, embedding, hooks, metrics, taskdefs
from mmr3_tasks.embedding import get_embedder
from mmr3_tasks.metrics import ScoredResponse
from tests import mmr3_rows

FILTER = "none"  # the filter key of every MM-R³ task (the Sampling tasks' take_first_k ensemble too)
REPEATS = 4  # the Sampling protocol asks each query this many times
# Row column -> the name its breakdown keys use (`acc_lines_3`), and the values those keys cover.
KINDS = {
    "restyle": {"style": ("style", ("candy", "mosaic", "udnie", "grayscale"))},
    "context": {
        "mask_lines": ("lines", ("1", "3", "5", "7")),
        "mask_shape": ("shape", ("rectangle", "ellipse")),
        "mask_color": ("color", ("red", "blue", "green", "yellow", "white", "black")),
    },
}

# --------------------------------------------------------------------------- the rows and the script

CONTEXT_KINDS = [
    {"mask_lines": 1, "mask_shape": "rectangle", "mask_color": "red"},
    {"mask_lines": 3, "mask_shape": "ellipse", "mask_color": "blue"},
    {"mask_lines": 5, "mask_shape": "rectangle", "mask_color": "green"},
]
ROWS = {
    "rephrase": mmr3_rows.group("rephrase", "g1", ["cat"])
    + mmr3_rows.group("rephrase", "g2", ["notre dame", "paris cathedral"])
    + mmr3_rows.group("rephrase", "g3", ["two"]),
    "restyle": mmr3_rows.group("restyle", "g1", ["kitchen"]) + mmr3_rows.group("restyle", "g2", ["temple", "pagoda"]),
    "context": mmr3_rows.group("context", "g1", ["cat"], CONTEXT_KINDS)
    + mmr3_rows.group("context", "g2", ["tennis racket"], CONTEXT_KINDS),
}

# All protocol: one answer per row id.
ANSWERS = {
    "g1/r1": "A cat.", "g1/r2": "a cat", "g1/r3": "It is a dog.",
    "g2/r1": "The Paris cathedral.", "g2/r2": "paris cathedral", "g2/r3": "Notre Dame",  # every one right
    "g3/r1": "two", "g3/r2": "", "g3/r3": "Two",  # an empty answer
    "g1/candy": "A kitchen.", "g1/mosaic": "A kitchen with a stove.", "g1/udnie": "A bedroom.",
    "g1/grayscale": "a kitchen",
    "g2/candy": "A red pagoda.", "g2/mosaic": "A temple on a hill.", "g2/udnie": "A pagoda.",
    "g2/grayscale": "A castle.",
    # Cleaned, g1's three answers are "a cat", "cat", "cat", and g2's "it tennracket", "a dog", "a dog".
    "g1/m1": "There is a cat in the masked region.", "g1/m2": "The cat.", "g1/m3": "Cat",
    "g2/m1": "It is a tennis racket.", "g2/m2": "a dog", "g2/m3": "There is a dog in the masked region.",
}  # fmt: skip

# Sampling protocol: the four answers to each group's first variant, in the order the model gave them.
SAMPLED = {
    "rephrase": {
        "g1": ["A cat.", "a cat", "", "A dog."],
        "g2": ["Notre Dame", "notre dame", "Notre Dame", "Notre Dame"],
        "g3": ["two", "two", "two", "two"],
    },
    "restyle": {
        "g1": ["A kitchen.", "A kitchen.", "A bedroom.", "A kitchen."],
        "g2": ["A pagoda.", "A pagoda.", "A pagoda.", "A pagoda."],
    },
    "context": {
        "g1": ["There is a cat in the masked region.", "The cat.", "Cat", "cat"],
        "g2": ["a dog", "A dog.", "It is a tennis racket.", "a dog"],
    },
}


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    """A build folder holding ROWS, as `mmr3 build` lays it out (without a manifest)."""
    root = tmp_path_factory.mktemp("mmr3_build")
    for task, rows in ROWS.items():
        mmr3_rows.write_build(root, task, rows)
    return root


@pytest.fixture
def benchmark(build, monkeypatch) -> Path:
    monkeypatch.setenv(data.DATA_ENV, str(build))
    monkeypatch.delenv(embedding.EMBEDDING_MODEL_ENV, raising=False)
    return build


# --------------------------------------------------------------------------- lmms-eval's side


@dataclass
class Run:
    task: ConfigurableTask
    docs: list[dict]
    samples: list[dict]  # process_results' output per doc, in doc order
    results: dict[str, object]  # metric -> aggregated value


def run_task(name: str, answer: Callable[[dict, int], str]) -> Run:
    """Evaluates task `name` as lmms-eval's evaluator does in one process; `answer(doc, k)` is the
    model's k-th answer to the doc's request (k > 0 only under `repeats`)."""
    task = ConfigurableTask(config=load_yaml_config(str(taskdefs.TASKS_DIR / f"{name}.yaml")))
    task.build_all_requests(limit=None, rank=0, world_size=1)
    for req in task.instances:
        ctx, _gen_kwargs, doc_to_visual, doc_id, _task, split = req.args
        doc = task.dataset[split][doc_id]  # how lmms-eval models find the doc of a request
        assert ctx == doc["question"]  # doc_to_text with the YAML's empty pre/post prompts
        (image,) = doc_to_visual(doc)
        assert image.mode == "RGB" and image.size == doc["image"].size
        for k in range(req.repeats):  # lmms-eval sends the request `repeats` times, in order
            req.resps.append(answer(doc, k))
    task.apply_filters()

    by_doc = collections.defaultdict(list)
    for inst in task.instances:
        by_doc[inst.doc_id].append(inst)
    output = TaskOutput.from_taskdict(name, task)
    docs, samples = [], []
    for doc_id, doc in task.doc_iterator(rank=0, limit=None, world_size=1):
        metrics_ = task.process_results(doc, [req.filtered_resps[FILTER] for req in by_doc[doc_id]])
        for metric, value in metrics_.items():
            output.sample_metrics[(metric, FILTER)].append(value)
        docs.append(doc)
        samples.append(metrics_)
    output.calculate_aggregate_metric(bootstrap_iters=0)
    results = {key.split(",")[0]: value for key, value in output.agg_metrics.items() if "_stderr," not in key}
    return Run(task=task, docs=docs, samples=samples, results=results)


def answer_all(doc: dict, k: int) -> str:
    assert k == 0, "the All protocol asks each query once"
    return ANSWERS[doc["id"]]


def answer_sampled(task: str) -> Callable[[dict, int], str]:
    return lambda doc, k: SAMPLED[task][doc["group_id"]][k]


# --------------------------------------------------------------------------- the expected numbers


def all_protocol_responses(task: str) -> list[ScoredResponse]:
    return [
        ScoredResponse(
            id=r["id"],
            group_id=r["group_id"],
            variant=r["variant"],
            answers=tuple(r["answers"]),
            response=ANSWERS[r["id"]],
            group_size=r["group_size"],
            kinds=tuple(sorted((column, str(r[column])) for column in KINDS.get(task, {}))),
        )
        for r in ROWS[task]
    ]


def sampling_responses(task: str) -> list[ScoredResponse]:
    first = {r["group_id"]: r for r in ROWS[task] if r["variant_index"] == 0}
    return [
        ScoredResponse(f"{g}#{k}", g, f"repeat{k}", tuple(first[g]["answers"]), text, REPEATS)
        for g, texts in SAMPLED[task].items()
        for k, text in enumerate(texts)
    ]


def expected_results(task: str, responses: list[ScoredResponse], protocol: str, fingerprint: str) -> dict:
    """Every metric key of the task's YAML, read off `metrics.score` by hand."""
    r = metrics.score(responses, get_embedder(), clean_context=task == "context")
    out = {m: getattr(r, m) for m in (*metrics.HEADLINE, *taskdefs.EXTRAS)}
    out |= {f"{m}_ci95": r.ci[m] for m in metrics.HEADLINE}
    out |= {
        c: r.counts[c] for c in ("responses", "groups", "groups_complete", "empty_responses", "duplicate_responses")
    }
    out |= {"embedding_model": embedding.DEFAULT_EMBEDDING_MODEL, "data_fingerprint": fingerprint}
    if protocol == "all":
        for column, (short, values) in KINDS.get(task, {}).items():
            for value in values:
                scores = r.breakdown[column].get(value)
                for m in metrics.HEADLINE:
                    out[f"{m}_{short}_{value}"] = None if scores is None else scores[m]
    return out


def assert_same_results(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        if isinstance(value, float) or isinstance(value, list):
            assert got[key] == pytest.approx(value, abs=1e-6), key
        else:
            assert got[key] == value, key


# --------------------------------------------------------------------------- All protocol


def test_rephrase_all_protocol(benchmark):
    run = run_task("mmr3_rephrase", answer_all)
    assert [d["id"] for d in run.docs] == [r["id"] for r in ROWS["rephrase"]]
    assert set(run.results) == set(run.task.aggregation()) == set(taskdefs.metric_names("rephrase"))
    fingerprint = data.fingerprint("benchmark", str(benchmark))
    assert_same_results(
        run.results, expected_results("rephrase", all_protocol_responses("rephrase"), "all", fingerprint)
    )
    # By hand. Acc: g1 2/3, g2 3/3 (each answer holds one of its two ground truths), g3 2/3.
    assert run.results["acc"] == pytest.approx(100 * 7 / 9)
    # Exact agreement: one agreeing pair per group ("cat"; "paris cathedral"; "two", never the empty one).
    assert run.results["exact_agreement"] == pytest.approx(100 / 3)
    split = tuple(run.results[k] for k in ("consistent_correct", "consistent_wrong", "inconsistent"))
    assert split == pytest.approx((100 / 3, 0.0, 200 / 3))  # only g2 is right throughout
    # Every payload reached the one report that all metrics read.
    assert [run.results[k] for k in ("responses", "groups", "groups_complete", "empty_responses")] == [9, 3, 3, 1]
    # The samples line of each doc: its payload under `acc`, a reference to it under every other key.
    payloads = [s["acc"] for s in run.samples]
    assert [(p["id"], p["response"]) for p in payloads] == [(r["id"], ANSWERS[r["id"]]) for r in ROWS["rephrase"]]
    assert all({v for k, v in s.items() if k != "acc"} == {hooks.payload_ref(s["acc"])} for s in run.samples)
    assert run.task.doc_to_target(run.docs[3]) == "notre dame | paris cathedral"


def test_restyle_all_protocol_and_its_per_style_columns(benchmark):
    run = run_task("mmr3_restyle", answer_all)
    fingerprint = data.fingerprint("benchmark", str(benchmark))
    assert_same_results(run.results, expected_results("restyle", all_protocol_responses("restyle"), "all", fingerprint))
    # By hand: each style's answers in g1 and g2. A response scored under the wrong style moves these.
    styles = {s: run.results[f"acc_style_{s}"] for s in ("candy", "mosaic", "udnie", "grayscale")}
    assert styles == {"candy": 100.0, "mosaic": 100.0, "udnie": 50.0, "grayscale": 50.0}
    assert run.results["acc"] == 75.0
    assert run.results["exact_agreement"] == pytest.approx(100 / 12)  # g1: 1 of 6 pairs ("kitchen"), g2: 0
    assert (run.results["consistent_correct"], run.results["inconsistent"]) == (0.0, 100.0)
    assert [run.results[k] for k in ("responses", "groups", "groups_complete", "empty_responses")] == [8, 2, 2, 0]


def test_context_all_protocol_cleans_answers_first(benchmark):
    run = run_task("mmr3_context", answer_all)
    fingerprint = data.fingerprint("benchmark", str(benchmark))
    responses = all_protocol_responses("context")
    assert_same_results(run.results, expected_results("context", responses, "all", fingerprint))
    # By hand: cleaned, g1's answers all normalise to "cat" (3 of 3 pairs agree) and g2's m2, m3 to
    # "dog" (1 of 3). Uncleaned, "There is a cat in the masked region." agrees with nothing.
    assert run.results["exact_agreement"] == pytest.approx(100 * (1 + 1 / 3) / 2)
    assert metrics.score(responses, get_embedder(), n_resamples=0).exact_agreement == pytest.approx(100 / 6)
    # S_GT: g1's cleaned "cat" answers are the ground truth itself (cosine 1), far above uncleaned.
    g1 = metrics.group_scores([r for r in responses if r.group_id == "g1"], get_embedder(), clean_context=True)
    assert g1["g1"].s_gt > 95 and g1["g1"].con == 100.0
    assert run.results["acc"] == pytest.approx(100 * (1 + 1 / 3) / 2)  # "tennracket" matches, cleaned alike
    assert run.results["consistent_correct"] == 50.0
    # Per mask kind: m1 (1 line, red rectangle) right in both groups, m2 and m3 right in g1 only.
    kinds = {k: run.results[f"acc_{k}"] for k in ("lines_1", "lines_3", "lines_5", "shape_rectangle", "color_blue")}
    assert kinds == {"lines_1": 100.0, "lines_3": 50.0, "lines_5": 50.0, "shape_rectangle": 75.0, "color_blue": 50.0}
    assert run.results["acc_lines_7"] is None and run.results["con_color_black"] is None  # no such mask
    assert run.samples[1]["acc"]["kinds"] == {"mask_lines": 3, "mask_shape": "ellipse", "mask_color": "blue"}


# --------------------------------------------------------------------------- Sampling protocol


@pytest.mark.parametrize("task", ["rephrase", "restyle", "context"])
def test_sampling_protocol(benchmark, task):
    run = run_task(f"mmr3_{task}_sampling", answer_sampled(task))
    assert run.task.config.repeats == REPEATS
    assert [d["id"] for d in run.docs] == [r["id"] for r in ROWS[task] if r["variant_index"] == 0]
    # No per-kind columns, in the results or in the samples lines (lmms-eval would drop them silently).
    assert set(run.results) == set(run.task.aggregation()) == set(taskdefs.metric_names(task, "sampling"))
    assert all(list(s) == list(taskdefs.metric_names(task, "sampling")) for s in run.samples)
    fingerprint = data.fingerprint("benchmark", str(benchmark))
    assert_same_results(run.results, expected_results(task, sampling_responses(task), "sampling", fingerprint))
    groups = len(SAMPLED[task])
    assert [run.results[k] for k in ("responses", "groups", "groups_complete")] == [REPEATS * groups, groups, groups]
    # Each payload keeps the four answers in the order the model gave them, one scored response each.
    for doc, sample in zip(run.docs, run.samples, strict=True):
        payload = sample["acc"]
        assert payload["responses"] == SAMPLED[task][doc["group_id"]]
        scored = hooks.payload_responses(payload)
        assert [(r.variant, r.response) for r in scored] == [
            (f"s{k + 1}", text) for k, text in enumerate(SAMPLED[task][doc["group_id"]])
        ]
        assert {r.group_id for r in scored} == {doc["group_id"]}


def test_sampling_protocol_numbers_by_hand(benchmark):
    run = run_task("mmr3_rephrase_sampling", answer_sampled("rephrase"))
    # g1 "A cat.", "a cat", "", "A dog.": Acc 2/4; 1 of 6 pairs agrees exactly. g2 and g3: the same
    # answer four times (up to case): Acc 1, every pair agrees, every cosine 1.
    assert run.results["acc"] == pytest.approx(100 * (0.5 + 1 + 1) / 3)
    assert run.results["exact_agreement"] == pytest.approx(100 * (1 / 6 + 1 + 1) / 3)
    assert run.results["consistent_correct"] == pytest.approx(200 / 3)
    assert run.results["empty_responses"] == 1
    run = run_task("mmr3_context_sampling", answer_sampled("context"))
    # Cleaned, g1's four answers all normalise to "cat"; g2 gives "dog" three times and one right answer.
    assert run.results["exact_agreement"] == pytest.approx(100 * (1 + 3 / 6) / 2)
    assert run.results["acc"] == pytest.approx(100 * (1 + 1 / 4) / 2)


# --------------------------------------------------------------------------- the demo tasks


def demo_answer(doc: dict, k: int) -> str:
    """Right on a group's first variant, the ground truth in a sentence on the second, wrong after."""
    answer = doc["answers"][0]
    return [answer, f"I think it is {answer}.", "I do not know."][min(doc["variant_index"], 2)]


@pytest.mark.parametrize("task", ["rephrase", "restyle", "context"])
def test_mini_tasks_score_the_bundled_demo_set(task, monkeypatch):
    monkeypatch.delenv(embedding.EMBEDDING_MODEL_ENV, raising=False)
    run = run_task(f"mmr3_mini_{task}", demo_answer)
    rows = data.load_demo(task).remove_columns(["image"])
    assert [d["id"] for d in run.docs] == rows["id"]
    responses = [
        ScoredResponse(
            id=r["id"],
            group_id=r["group_id"],
            variant=r["variant"],
            answers=tuple(r["answers"]),
            response=demo_answer(r, 0),
            group_size=r["group_size"],
            kinds=tuple(sorted((column, str(r[column])) for column in KINDS.get(task, {}))),
        )
        for r in rows
    ]
    assert_same_results(run.results, expected_results(task, responses, "all", data.fingerprint("demo")))
    assert run.results["responses"] == len(rows) and run.results["data_fingerprint"].startswith("demo:")


# --------------------------------------------------------------------------- the report's labels


class OneVector:
    name = "one-vector"

    def encode(self, texts):
        return [[1.0, 0.0] for _ in texts]


def payload(i: int, data_fingerprint: str, task: str = "rephrase") -> dict:
    return {"id": f"g/r{i}", "group_id": "g", "task": task, "variant": f"r{i}", "group_size": 3,
            "answers": ["cat"], "kinds": {}, "data": data_fingerprint, "response": "cat"}  # fmt: skip


def test_the_report_names_every_data_source_and_refuses_mixed_tasks():
    # Payloads of one task from two builds (e.g. two runs' samples together) and one without a name.
    report = hooks.score_payloads([payload(1, "build:b"), payload(2, "build:a"), payload(3, "")], OneVector())
    assert report["data_fingerprint"] == "build:a, build:b, unknown"
    assert report["embedding_model"] == "one-vector" and report["counts"]["responses"] == 3
    with pytest.raises(ValueError, match=r"several tasks mixed in one aggregation: \['context', 'rephrase'\]"):
        hooks.score_payloads([payload(1, "build:a"), payload(2, "build:a", task="context")], OneVector())
