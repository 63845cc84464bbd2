"""Property tests: the scorer on random groups, with the real embedding model.

Random groups mix empty, whitespace-only, huge, non-ASCII, duplicated and missing responses.
Whatever comes in, every rate is in [0, 100] or null (S_GT and S_C, mean cosines, in [-100, 100]),
the numbers do not depend on the order the responses arrive in, and the counts and Acc agree with
what is computed here independently.
"""

from __future__ import annotations

import math
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmr3_tasks import metrics
from mmr3_tasks.embedding import get_embedder
from mmr3_tasks.metrics import ScoredResponse

# Each example embeds a few dozen strings with the real model, so CI draws a modest, fixed set of
# examples (derandomized: the same ones every run). MMR3_HYPOTHESIS=explore draws many fresh ones.
settings.register_profile("ci", max_examples=25, derandomize=True)
settings.register_profile("explore", max_examples=500)
settings.load_profile(os.environ.get("MMR3_HYPOTHESIS", "ci"))
SCORER = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

WORDS = ["cat", "a cat", "dog", "The Dog.", "umbrella", "two", "2", "café", "猫", "🙂 cat", "masked region"]
response_text = st.one_of(
    st.sampled_from(WORDS),
    st.just(""),
    st.sampled_from([" ", "\n\t ", "\u00a0", "\u3000"]),  # whitespace-only, non-ASCII whitespace too
    st.text(max_size=40),  # any unicode
    st.builds(lambda s, n: s * n, st.sampled_from(["cat ", "é", "猫 "]), st.integers(2_000, 6_000)),  # huge
)
answers_list = st.lists(st.one_of(st.sampled_from(WORDS), st.just(""), st.just("  ")), min_size=1, max_size=3)


@st.composite
def task_responses(draw) -> list[ScoredResponse]:
    """Groups of 1-4 variants out of a declared size of 3; some variants missing, some ids repeated."""
    rows = []
    for g in range(draw(st.integers(1, 5))):
        answers = tuple(draw(answers_list))
        kind = draw(st.sampled_from(["candy", "udnie", "mosaic"]))
        variants = draw(st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True))
        for v in variants:
            row = ScoredResponse(
                id=f"g{g}/v{v}",
                group_id=f"g{g}",
                variant=f"v{v}",
                answers=answers,
                response=draw(response_text),
                group_size=3,
                kinds=(("style", kind),),
            )
            rows.append(row)
            for _ in range(draw(st.integers(0, 1))):  # a duplicated id, same or another response
                rows.append(ScoredResponse(**{**row.__dict__, "response": draw(response_text)}))
    return rows


@pytest.fixture(scope="module")
def embedder():
    return get_embedder()


def _in_range(value, low: float = 0.0) -> bool:
    return value is None or (isinstance(value, float) and not math.isnan(value) and low - 1e-9 <= value <= 100 + 1e-9)


# Rates are shares of responses, pairs or groups: [0, 100]. S_GT and S_C are mean cosines x 100, and
# a cosine can be negative (the paper's definition, unclipped, as the authors' code): [-100, 100].
SIMILARITIES = ("s_gt", "s_c")


def _bounded(name: str, value) -> bool:
    return _in_range(value, -100.0 if name in SIMILARITIES else 0.0)


def _expected_acc(rows: list[ScoredResponse], clean_context: bool) -> float:
    """Acc computed here: dedup by id (the first by response), per group the share correct, mean over groups."""
    kept: dict[str, ScoredResponse] = {}
    for r in sorted(rows, key=lambda r: (r.id, r.response)):
        kept.setdefault(r.id, r)
    by_group: dict[str, list[bool]] = {}
    for r in kept.values():
        text = metrics.clean_context_answer(r.response) if clean_context else r.response
        answers = [metrics.clean_context_answer(a) if clean_context else a for a in r.answers]
        hit = bool(text.strip()) and any(a.strip() and a.strip().lower() in text.strip().lower() for a in answers)
        by_group.setdefault(r.group_id, []).append(hit)
    return 100.0 * sum(sum(v) / len(v) for v in by_group.values()) / len(by_group)


@SCORER
@given(rows=task_responses(), clean_context=st.booleans(), seed=st.integers(0, 2**16))
def test_scores_are_bounded_order_free_and_counted(embedder, rows, clean_context, seed):
    report = metrics.score(rows, embedder, clean_context=clean_context, n_resamples=50).as_dict()
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    again = metrics.score(shuffled, embedder, clean_context=clean_context, n_resamples=50).as_dict()
    assert again == report  # not approximately: arrival order must not reach the arithmetic

    for name in (*metrics.HEADLINE, "exact_agreement", "consistent_correct", "consistent_wrong", "inconsistent"):
        assert _bounded(name, report[name]), (name, report[name])
    for name, interval in report["ci95"].items():
        if interval is not None:
            assert all(_bounded(name, float(x)) for x in interval) and interval[0] <= interval[1], (name, interval)
    for kinds in report["breakdown"].values():
        for scores in kinds.values():
            assert all(_bounded(m, scores[m]) for m in metrics.HEADLINE), scores

    ids = {r.id for r in rows}
    groups = {r.group_id for r in rows}
    counts = report["counts"]
    assert counts["responses"] == len(ids)
    assert counts["duplicate_responses"] == len(rows) - len(ids)
    assert counts["groups"] == len(groups)
    assert counts["groups_complete"] + counts["groups_incomplete"] == len(groups)
    per_group = {g: sum(1 for i in ids if i.startswith(f"{g}/")) for g in groups}
    assert counts["groups_with_pairs"] == sum(n >= 2 for n in per_group.values())
    assert counts["pairs"] == sum(n * (n - 1) // 2 for n in per_group.values())
    if counts["groups_with_pairs"] == 0:  # nothing to average is null, never 0
        assert report["con"] is None and report["s_c"] is None
    assert report["acc"] == pytest.approx(_expected_acc(rows, clean_context), abs=1e-9)
    if report["con"] is not None:
        assert report["consistent_correct"] + report["consistent_wrong"] + report["inconsistent"] == pytest.approx(100)


def test_a_negative_cosine_is_kept_not_clipped(embedder):
    """Found by the property test: two answers far apart in meaning have a cosine below 0. S_C is
    the mean cosine x 100 as the paper defines it, so it is negative here, not clipped to 0."""
    rows = [
        ScoredResponse(id="g/a", group_id="g", variant="a", answers=("cat",), response="a cat"),
        ScoredResponse(id="g/b", group_id="g", variant="b", answers=("cat",), response="猫 " * 2000),
    ]
    a, b = embedder.encode(["a cat", ("猫 " * 2000).strip().lower()])
    cos = float(a @ b)
    assert cos < 0
    report = metrics.score(rows, embedder, n_resamples=0)
    assert report.s_c == pytest.approx(100 * cos, abs=1e-4) and report.con == 0.0


@SCORER
@given(rows=task_responses())
def test_group_scores_average_to_the_report(embedder, rows):
    """The per-group values (the paired comparison's input) are the ones `score` averages."""
    report = metrics.score(rows, embedder, n_resamples=0)
    groups = metrics.group_scores(rows, embedder)
    assert set(groups) == {r.group_id for r in rows}
    assert report.acc == pytest.approx(sum(g.acc for g in groups.values()) / len(groups), abs=1e-9)
    assert report.s_gt == pytest.approx(sum(g.s_gt for g in groups.values()) / len(groups), abs=1e-9)
    with_pairs = [g for g in groups.values() if g.con is not None]
    if with_pairs:
        assert report.con == pytest.approx(sum(g.con for g in with_pairs) / len(with_pairs), abs=1e-9)
        assert report.s_c == pytest.approx(sum(g.s_c for g in with_pairs) / len(with_pairs), abs=1e-9)
    else:
        assert report.con is None and report.s_c is None


@SCORER
@given(text=response_text.filter(lambda t: t.strip()), n=st.integers(2, 4))
def test_a_group_that_repeats_one_answer_is_consistent(embedder, text, n):
    """n equal non-empty answers: every pair has cosine 1, above the threshold; Con and S_C are 100."""
    rows = [ScoredResponse(id=f"g/{v}", group_id="g", variant=str(v), answers=("x",), response=text) for v in range(n)]
    report = metrics.score(rows, embedder, n_resamples=0)
    assert report.con == 100.0
    assert report.s_c == pytest.approx(100.0, abs=1e-3)


# --------------------------------------------------------------------------- the readers

# Whatever a damaged or mixed-up input holds, a reader either returns what the file says or raises
# our own error type (which the commands print as one line naming the input): never a KeyError,
# TypeError, JSONDecodeError or pyarrow error from deep inside.
READERS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 10**6), st.floats(allow_nan=True), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


def _paths(value, prefix=()):
    """Every key path into a parsed JSON value."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


def _replace(value, path, new, delete: bool):
    if not path:
        return new
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return value


@st.composite
def damaged_json_lines(draw, lines: list[dict]) -> bytes:
    """JSON lines with one value swapped for any JSON value or deleted, or bytes cut, flipped or repeated."""
    import copy
    import json

    lines = copy.deepcopy(lines)
    how = draw(st.sampled_from(["value", "delete", "truncate", "flip", "repeat", "junk"]))
    if how in ("value", "delete"):
        n = draw(st.integers(0, len(lines) - 1))
        path = draw(st.sampled_from(list(_paths(lines[n]))))
        lines[n] = _replace(lines[n], path, draw(json_value), delete=how == "delete" and bool(path))
    raw = b"".join(json.dumps(line, ensure_ascii=draw(st.booleans())).encode() + b"\n" for line in lines)
    if how == "truncate":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif how == "flip":
        k = draw(st.integers(0, len(raw) - 1))
        raw = raw[:k] + bytes([draw(st.integers(0, 255))]) + raw[k + 1 :]
    elif how == "repeat":
        split = raw.split(b"\n")
        k = draw(st.integers(0, len(split) - 2))
        raw = b"\n".join([*split[: k + 1], split[k], *split[k + 1 :]])
    elif how == "junk":
        raw += draw(st.binary(min_size=1, max_size=20))
    return raw


def _samples_lines() -> list[dict]:
    """Sample lines as lmms-eval writes them for two groups of the demo's rephrase task."""
    from mmr3_tasks import data, hooks

    docs = data.load_demo("rephrase").select(range(6))
    out = []
    for i, doc in enumerate(docs):
        scored = hooks.process_results({**doc, hooks.DATA_COLUMN: "demo:0123"}, [f"answer {i}"])
        out.append({"doc_id": i, "target": " | ".join(doc["answers"]), **scored})
    return out


SAMPLES_LINES = _samples_lines()


@READERS
@given(raw=damaged_json_lines(SAMPLES_LINES))
def test_the_samples_reader_returns_payloads_or_names_the_line(tmp_path_factory, raw):
    from mmr3_tasks import report
    from mmr3_tasks.errors import MMR3Error

    path = tmp_path_factory.mktemp("samples") / "s_samples_mmr3_mini_rephrase.jsonl"
    path.write_bytes(raw)
    try:
        payloads = report.read_payloads([str(path)])
    except MMR3Error as err:
        assert str(err).startswith(str(path)), err
        return
    for task, items in payloads.items():  # what is accepted is well-formed enough to score
        assert task.startswith("mmr3_") and items
        for p in items:
            assert isinstance(p["id"], str) and isinstance(p["group_id"], str)
            assert all(isinstance(a, str) for a in p["answers"])
            assert (
                isinstance(p["response"], str) if "response" in p else all(isinstance(r, str) for r in p["responses"])
            )


REPLAY_LINES = [{"id": f"g{g}/r{v}", "response": f"answer {g}{v}"} for g in range(2) for v in range(3)] + [
    {"id": "g0/r1", "task": "mmr3_rephrase_sampling", "responses": ["a", "b"]}
]


@READERS
@given(raw=damaged_json_lines(REPLAY_LINES))
def test_the_replay_reader_returns_strings_or_names_the_line(tmp_path_factory, raw):
    from mmr3_adapters.replay_file import read_responses
    from mmr3_tasks.errors import MMR3Error

    path = tmp_path_factory.mktemp("replay") / "responses.jsonl"
    path.write_bytes(raw)
    try:
        recorded = read_responses(path)
    except MMR3Error as err:
        assert str(err).startswith(f"mmr3_replay: {path}") or str(err).startswith(str(path)), err
        return
    for (task, row_id), entry in recorded.items():
        assert task is None or isinstance(task, str)
        assert isinstance(row_id, str) and entry.texts and all(isinstance(t, str) for t in entry.texts)


RESULTS = {
    "results": {"mmr3_mini_rephrase": {"alias": "mmr3_mini_rephrase", "acc,none": 50.0, "con,none": 25.0}},
    "config": {"model": "mmr3_replay", "model_args": "responses=x.jsonl", "gen_kwargs": "", "limit": None},
    "date": "20261201_000000",
}


@READERS
@given(raw=damaged_json_lines([RESULTS]))
def test_the_results_reader_returns_runs_or_names_the_file(tmp_path_factory, raw):
    from mmr3_tasks import report
    from mmr3_tasks.errors import MMR3Error

    path = tmp_path_factory.mktemp("results") / "20261201_000000_results.json"
    path.write_bytes(raw)
    try:
        runs = report.load_runs([str(path)])
    except MMR3Error as err:
        assert str(path) in str(err), err
        return
    assert len(runs) == 1 and runs[0].scores


@READERS
@given(data=st.data())
def test_the_data_loader_returns_rows_or_names_the_shard(tmp_path_factory, data):
    """A copy of the demo set with one shard cut short or one byte changed: loaded and checked, or refused."""
    import shutil

    from mmr3_tasks import data as mmr3_data
    from mmr3_tasks.errors import MMR3Error

    root = tmp_path_factory.mktemp("build")
    shutil.copytree(mmr3_data.DEMO_DIR, root, dirs_exist_ok=True)
    shard = root / "context" / "test-00000-of-00001.parquet"
    raw = shard.read_bytes()
    k = data.draw(st.integers(0, len(raw) - 1))
    if data.draw(st.booleans()):
        raw = raw[:k]
    else:
        raw = raw[:k] + bytes([data.draw(st.integers(0, 255))]) + raw[k + 1 :]
    shard.write_bytes(raw)
    try:
        ds = mmr3_data.load_split("context", "test", location=str(root))
        check = mmr3_data.check_rows(ds, "context")
    except MMR3Error as err:
        assert "context/test-00000-of-00001.parquet" in str(err), err
        return
    assert len(check.kept) <= 90
