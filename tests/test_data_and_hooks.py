"""Loading, bad rows, and the lmms-eval hooks, without running lmms-eval."""

from __future__ import annotations

import datasets
import pytest

from mmr3_tasks import data, hooks, schema, taskdefs
from tests import mmr3_rows


def locator(task, source="benchmark", protocol="all"):
    return datasets.Dataset.from_list([{"mmr3_task": task, "data": source, "protocol": protocol}])


def test_load_split_reads_a_build_folder(tmp_path):
    rows = mmr3_rows.group("rephrase", "g1", ["cat"]) + mmr3_rows.group("rephrase", "g2", ["dog"])
    mmr3_rows.write_build(tmp_path, "rephrase", rows)
    ds = data.load_split("rephrase", location=str(tmp_path))
    assert ds.features == schema.FEATURES
    assert ds["id"] == [r["id"] for r in rows]


def test_missing_data_message_says_where_it_looked_and_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(data.DataNotFoundError) as err:
        data.load_split("context")
    text = str(err.value)
    assert str(tmp_path / "nowhere") in text and "context/test-*.parquet" in text
    assert "mmr3 build" in text and "$MMR3_DATA" in text and "mmr3_mini" in text


def test_default_location_follows_xdg_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data.data_location() == str(tmp_path / "mmr3" / "data")


def test_check_rows_drops_bad_rows_with_reasons():
    good = mmr3_rows.group("rephrase", "g1", ["cat"])
    rows = [
        *good,
        {**good[0]},  # duplicate id: the first row wins
        mmr3_rows.row("rephrase", "g2", 0, ["dog"], image=None),  # missing image
        mmr3_rows.row("rephrase", "g2", 1, ["dog"], image={"bytes": b"not an image", "path": None}),
        mmr3_rows.row("rephrase", "g2", 2, ["", "  "]),  # no usable ground truth
    ]
    check = data.check_rows(mmr3_rows.dataset(rows), "rephrase")
    assert check.kept == [0, 1, 2]
    assert check.dropped == {
        "duplicate id": ["g1/r1"],
        "with a missing or unreadable image": ["g2/r1", "g2/r2"],
        "without a ground truth": ["g2/r3"],
    }
    assert "2 with a missing or unreadable image (g2/r1, g2/r2)" in check.summary()


def test_check_rows_refuses_a_wrong_dataset():
    rows = mmr3_rows.group("restyle", "g1", ["kitchen"])
    with pytest.raises(data.DataSchemaError, match="belongs to task 'restyle', not 'context'"):
        data.check_rows(mmr3_rows.dataset(rows), "context")
    with pytest.raises(data.DataSchemaError, match="'g1/candy' in the context split at /data belongs to task"):
        data.check_rows(mmr3_rows.dataset(rows), "context", where="/data")
    with pytest.raises(data.DataSchemaError, match="lacks the MM-R³ columns"):
        data.check_rows(mmr3_rows.dataset(rows).remove_columns(["group_id"]), "restyle")


def test_load_docs_swaps_the_locator_for_the_rows(tmp_path, monkeypatch, caplog):
    rows = mmr3_rows.group("context", "g1", ["cat"]) + [mmr3_rows.row("context", "g2", 0, ["dog"], image=None)]
    mmr3_rows.write_build(tmp_path, "context", rows)
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    ds = hooks.load_docs(locator("context"))
    assert ds["id"] == ["g1/m1", "g1/m2", "g1/m3"]
    base = data.fingerprint("benchmark", str(tmp_path))
    assert set(ds[hooks.DATA_COLUMN]) == {data.with_kept_rows(base, ["g1/m1", "g1/m2", "g1/m3"])}  # g2/m1 dropped
    assert base != data.with_kept_rows(base, ["g1/m1", "g1/m2", "g1/m3"])
    assert ds[0][hooks.DATA_COLUMN].startswith("files:")  # no manifest.json in this hand-made build
    (tmp_path / "manifest.json").write_text("{}")
    assert data.fingerprint("benchmark", str(tmp_path)) == "build:44136fa355b3678a"  # sha256 of "{}"
    (tmp_path / "manifest.json").unlink()  # "{}" is no mmr3 manifest: a load would refuse the folder
    assert data.fingerprint("demo").startswith("demo:")
    assert "dropped 1 with a missing or unreadable image (g2/m1)" in caplog.text
    sampled = hooks.load_docs(locator("context", protocol="sampling"))
    assert sampled["id"] == ["g1/m1"]  # variant 0 only


def test_load_docs_stops_with_a_message_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    with pytest.raises(SystemExit) as err:
        hooks.load_docs(locator("restyle"))
    assert not isinstance(err.value, Exception)  # lmms-eval's `except Exception` must not catch it
    assert "MM-R³ restyle data (test split) not found" in str(err.value.code)


def test_doc_to_text_and_visual():
    doc = mmr3_rows.dataset(mmr3_rows.group("restyle", "g1", ["kitchen"]))[0]
    assert hooks.doc_to_text(doc) == schema.RESTYLE_PROMPT
    assert hooks.doc_to_text(doc, {"pre_prompt": "<", "post_prompt": ">"}) == f"<{schema.RESTYLE_PROMPT}>"
    (img,) = hooks.doc_to_visual(doc)
    assert img.mode == "RGB" and img.size == (48, 48)


def test_process_results_one_payload_and_references():
    doc = mmr3_rows.dataset(mmr3_rows.group("restyle", "g1", ["kitchen"]))[1]
    out = hooks.process_results(doc, ["A kitchen."])
    assert list(out) == list(taskdefs.metric_names("restyle"))
    assert out["acc"] == {
        "id": "g1/mosaic",
        "group_id": "g1",
        "task": "restyle",
        "variant": "mosaic",
        "group_size": 4,
        "answers": ["kitchen"],
        "kinds": {"style": "mosaic"},
        "data": "",  # load_docs adds the data fingerprint; this doc did not come through it
        "response": "A kitchen.",
    }
    refs = {v for k, v in out.items() if k != "acc"}
    assert refs == {hooks.payload_ref(out["acc"])}


def test_aggregations_share_one_report_and_refuse_to_guess():
    emb_calls = []

    class Recorder:
        name = "table"

        def encode(self, texts):
            import numpy as np

            emb_calls.append(list(texts))
            return np.eye(len(texts))

    docs = mmr3_rows.dataset(mmr3_rows.group("rephrase", "g1", ["cat"]))
    outs = [hooks.process_results(d, [t]) for d, t in zip(docs, ["cat", "cat", "a dog"], strict=True)]
    report = hooks.score_payloads([o["acc"] for o in outs], embedder=Recorder(), n_resamples=0)
    assert report["acc"] == pytest.approx(200 / 3) and report["embedding_model"] == "table"
    with pytest.raises(RuntimeError, match="aggregated before 'acc'"):
        hooks.aggregate("con", ["never-scored-ref"])


def test_sampling_payload_is_one_group_of_repeats():
    doc = mmr3_rows.dataset(mmr3_rows.group("rephrase", "g1", ["cat"]))[0]
    payload = hooks.process_results(doc, ["cat", "cat", "", "dog"])["acc"]
    rs = hooks.payload_responses(payload)
    assert [r.variant for r in rs] == ["s1", "s2", "s3", "s4"]
    assert {r.group_id for r in rs} == {"g1"} and all(r.group_size == 4 for r in rs)
    assert "acc_style_candy" not in hooks.process_results(doc, ["a", "b", "c", "d"])


def test_every_yaml_metric_resolves_to_an_aggregation():
    for name in taskdefs.all_metric_names():
        assert callable(getattr(hooks, name)), name
    with pytest.raises(AttributeError):
        hooks.not_a_metric  # noqa: B018


def test_task_yamls_are_generated_from_taskdefs():
    for rel, text in taskdefs.task_files().items():
        path = taskdefs.TASKS_DIR / rel
        assert path.read_text() == text, f"{rel} is stale: run `python -m mmr3_tasks.taskdefs`"


def test_a_truncated_jpeg_is_dropped_even_after_lmms_eval_relaxed_pil(monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # what importing lmms-eval does
    whole = mmr3_rows.jpeg_bytes(7)
    rows = mmr3_rows.group("context", "g1", ["cat"])
    rows[1]["image"] = {"bytes": whole[: len(whole) // 2], "path": None}
    check = data.check_rows(mmr3_rows.dataset(rows), "context")
    assert check.kept == [0, 2] and check.dropped == {"with a missing or unreadable image": ["g1/m2"]}


def test_rows_without_a_group_are_dropped_not_merged():
    rows = mmr3_rows.group("rephrase", "g1", ["cat"])
    rows[2]["group_id"] = None
    check = data.check_rows(mmr3_rows.dataset(rows), "rephrase")
    assert check.kept == [0, 1] and check.dropped == {"without an id, group or variant": ["g1/r3"]}


def test_a_build_with_a_missing_or_mistyped_column_is_refused(tmp_path):
    rows = mmr3_rows.group("rephrase", "g1", ["cat"])
    path = tmp_path / "rephrase" / "test-00000-of-00001.parquet"
    path.parent.mkdir(parents=True)
    mmr3_rows.dataset(rows).remove_columns(["group_id"]).to_parquet(str(path))
    with pytest.raises(data.DataSchemaError, match=r"lacks the MM-R³ columns \['group_id'\]"):
        data.load_split("rephrase", location=str(tmp_path))  # not loaded with nulls in place of the column
    features = schema.FEATURES.copy()
    features["mask_lines"] = datasets.Value("string")
    datasets.Dataset.from_list([{**r, "mask_lines": "many"} for r in rows], features=features).to_parquet(str(path))
    with pytest.raises(data.DataSchemaError, match="columns of the wrong type .*mask_lines"):
        data.load_split("rephrase", location=str(tmp_path))


def test_acc_is_aggregated_first_in_every_order_lmms_eval_uses():
    # One process: the order of process_results' keys. Several ranks: lmms-eval sorts str((metric, filter)).
    for task in schema.TASKS:
        for protocol in ("all", "sampling"):
            names = taskdefs.metric_names(task, protocol)
            assert names[0] == hooks.FULL_PAYLOAD_METRIC == "acc"
            assert min(names, key=lambda n: str((n, "none"))) == "acc"
