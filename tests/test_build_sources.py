"""Source readers over synthetic copies in each official format, and over local hub-layout folders."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_fixtures as fx  # noqa: E402

from mmr3_tasks.builder import labels, sources  # noqa: E402
from mmr3_tasks.builder.selection import allocate, order_by_image, split_candidates  # noqa: E402


def test_okvqa_official_format(tmp_path):
    counts = fx.make_okvqa(tmp_path)
    pool = sources.okvqa(str(tmp_path))
    assert {s: len(v) for s, v in pool.splits.items()} == counts
    assert pool.filtered["question of 10 words or fewer"] == 8
    item = pool.splits["test"][0]
    assert sources.word_count(item.question) > 10
    # Raw answers first, most frequent first, then the processed spellings; no duplicates.
    assert item.answers == ["dogs", "cat", "dog"]
    assert item.prompt_answer == "dogs"
    assert item.image.path.endswith("val2014/COCO_val2014_000000000010.jpg")
    assert set(pool.fingerprint["files"]) == {
        "OpenEnded_mscoco_val2014_questions.json",
        "mscoco_val2014_annotations.json",
        "OpenEnded_mscoco_train2014_questions.json",
        "mscoco_train2014_annotations.json",
    }


def test_infovqa_official_format(tmp_path):
    counts = fx.make_infovqa(tmp_path)
    pool = sources.infovqa(str(tmp_path))
    assert {s: len(v) for s, v in pool.splits.items()} == counts
    assert pool.splits["test"][0].answers == ["42", "forty-two"]  # "42 " de-duplicated
    assert pool.splits["test"][0].source == "infographicvqa"


def test_gldv2_names_are_decoded_and_one_image_per_landmark(tmp_path):
    fx.make_gldv2(tmp_path, n_landmarks=6)
    pool = sources.gldv2(str(tmp_path), seed=0)
    items = pool.splits["any"]
    assert len(items) == 6 and len({i.answers[0] for i in items}) == 6
    names = {i.answers[0] for i in items}
    assert {"Tabán", "Tsim Sha Tsui", "Hammershus", "St. Mary's Church (Gdańsk)"} <= names
    assert pool.skipped["landmark without a category name"] == 1
    church = next(i for i in items if i.answers[0].startswith("St. Mary"))
    assert church.answers == ["St. Mary's Church (Gdańsk)", "St. Mary's Church"]
    assert Path(church.image.path).is_file()
    # The chosen image of a landmark is seeded.
    assert [i.source_id for i in items] == [i.source_id for i in sources.gldv2(str(tmp_path), seed=0).splits["any"]]


@pytest.mark.parametrize(
    "category,expected",
    [
        ("http://commons.wikimedia.org/wiki/Category:Tab%C3%A1n", ["Tabán"]),
        ("https://commons.wikimedia.org/wiki/Category:Tsim_Sha_Tsui", ["Tsim Sha Tsui"]),
        ("Category:Caf%25C3%25A9_de_Flore", ["Café de Flore"]),  # double-encoded
        ("http://commons.wikimedia.org/wiki/Category:Ponte_(Lisboa)", ["Ponte (Lisboa)", "Ponte"]),
        ("http://commons.wikimedia.org/wiki/Category:", []),
    ],
)
def test_landmark_answers(category, expected):
    assert labels.landmark_answers(category) == expected


@pytest.mark.parametrize(
    "label,first",
    [
        ("fastfood_restaurant", "fastfood restaurant"),
        ("kindergarden", "kindergarten"),
        ("stairscase", "staircase"),
        ("some_new_class", "some new class"),
    ],
)
def test_scene_labels_are_readable(label, first):
    answers = labels.scene_answers(label)
    assert answers[0] == first and all(a and "_" not in a for a in answers)


def test_mit_indoor_official_format(tmp_path):
    counts = fx.make_mit_indoor(tmp_path)
    pool = sources.mit_indoor(str(tmp_path))
    assert {s: len(v) for s, v in pool.splits.items()} == counts
    item = pool.splits["test"][0]
    assert item.answers[:2] == ["fastfood restaurant", "fast food restaurant"]
    assert "/" not in item.group_id


def test_coco_one_object_per_image_in_area_range(tmp_path):
    fx.make_coco(tmp_path, n_val=3, n_train=2)
    pool = sources.coco(str(tmp_path), seed=0)
    # good + missing + corrupt images have an eligible object; the image files are checked later.
    assert {s: len(v) for s, v in pool.splits.items()} == {"test": 5, "train": 4}
    assert pool.skipped["annotation without a box inside its image"] == 2
    assert pool.filtered["image without an object of area ratio 0.10-0.25"] == 6  # small, crowd, outside x 2
    item = pool.splits["test"][0]
    assert item.box == (10.0, 8.0, 50.0, 38.0) and item.answers == ["person"]


def test_missing_source_files_are_named(tmp_path):
    with pytest.raises(sources.SourceError, match="OpenEnded_mscoco"):
        sources.okvqa(str(tmp_path))
    with pytest.raises(sources.SourceError, match="train_label_to_category.csv|train.csv"):
        sources.gldv2(str(tmp_path))
    with pytest.raises(sources.SourceError, match="Images"):
        sources.mit_indoor(str(tmp_path))
    with pytest.raises(sources.SourceError, match="instances_"):
        sources.coco(str(tmp_path))


@pytest.mark.parametrize("lenient_pil", [False, True])
def test_validate_image_reasons(tmp_path, monkeypatch, lenient_pil):
    from PIL import ImageFile

    from mmr3_tasks.builder.render import ImageRef

    # lmms-eval turns LOAD_TRUNCATED_IMAGES on process-wide when imported; a cut file must still fail.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", lenient_pil)

    fx.save_jpeg(tmp_path / "ok.jpg", fx.synthetic_image(0))
    fx.write_corrupt(tmp_path / "bad.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    whole = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) // 2])  # passes PIL's verify(), not a decode
    assert sources.validate_image(ImageRef("a", path=str(tmp_path / "ok.jpg"))) is None
    assert sources.validate_image(ImageRef("b", path=str(tmp_path / "bad.jpg"))) == "corrupt image file"
    assert sources.validate_image(ImageRef("t", path=str(tmp_path / "cut.jpg"))) == "corrupt image file"
    assert sources.validate_image(ImageRef("c", path=str(tmp_path / "empty.jpg"))) == "empty image file"
    assert sources.validate_image(ImageRef("d", path=str(tmp_path / "none.jpg"))) == "missing image file"


# --------------------------------------------------------------------------- hub datasets (local folders)


def test_okvqa_hub_layout(tmp_path):
    fx.make_okvqa_hub(tmp_path)
    pool = sources.okvqa(f"hub:{tmp_path}")
    items = pool.splits["test"]
    assert len(items) == 3 and pool.filtered["question of 10 words or fewer"] == 1
    assert items[0].answers == ["tree", "trees"] and items[0].image.key == "coco2014:7"
    assert sources.validate_image(items[0].image) is None and items[0].image.raw()[:3] == b"\xff\xd8\xff"
    assert pool.fingerprint["hub"] == str(tmp_path)


def test_infovqa_hub_layout_ignores_the_unanswered_test_split(tmp_path):
    fx.make_infovqa_hub(tmp_path)
    pool = sources.infovqa(f"hub:{tmp_path}")
    assert list(pool.splits) == ["test"] and len(pool.splits["test"]) == 3
    assert pool.filtered["hub split 'test' (neither train nor validation)"] == 3
    assert pool.splits["test"][0].image.load().size == (64, 128)


def test_coco_hub_layout(tmp_path):
    fx.make_coco_hub(tmp_path)
    pool = sources.coco(f"hub:{tmp_path}", seed=0)
    assert {s: len(v) for s, v in pool.splits.items()} == {"train": 3, "test": 3}
    item = pool.splits["test"][1]
    assert item.answers == ["bicycle"] and item.box == (8.0, 6.0, 60.0, 50.0)


def test_hub_defaults_are_lmms_evals_own_datasets():
    import yaml  # noqa: F401  (lmms-eval's task files are YAML)

    tasks = Path(__import__("lmms_eval").__file__).parent / "tasks"
    okvqa_yaml = (tasks / "ok_vqa" / "_default_template_vqa_yaml").read_text()
    infovqa_yaml = (tasks / "infovqa" / "_default_template_infovqa_yaml").read_text()
    assert f"dataset_path: {sources.OKVQA_HUB}" in okvqa_yaml
    assert f"dataset_path: {sources.INFOVQA_HUB}" in infovqa_yaml
    assert f"dataset_name: {sources.INFOVQA_HUB_CONFIG}" in infovqa_yaml


# --------------------------------------------------------------------------- splitting and sharing


@pytest.mark.parametrize(
    "target,available,shares,expected",
    [
        (
            1332,
            {"gldv2": 10_000, "mit_indoor": 5_000},
            {"gldv2": 600, "mit_indoor": 732},
            {"gldv2": 600, "mit_indoor": 732},
        ),
        (10, {"a": 30, "b": 10}, None, {"a": 8, "b": 2}),  # by pool size
        (10, {"a": 3, "b": 100}, {"a": 1, "b": 1}, {"a": 3, "b": 7}),  # a runs short: b takes the rest
        (10, {"a": 3, "b": 4}, None, {"a": 3, "b": 4}),  # not enough at all
        (5, {"a": 0, "b": 9}, None, {"a": 0, "b": 5}),
        (3, {"a": 5, "b": 5, "c": 5}, None, {"a": 1, "b": 1, "c": 1}),
    ],
)
def test_allocate(target, available, shares, expected):
    assert allocate(target, available, shares) == expected


def test_split_less_sources_split_by_image_and_disjointly(tmp_path):
    fx.make_gldv2(tmp_path, n_landmarks=60)
    pool = sources.gldv2(str(tmp_path))
    test = split_candidates(pool, "test", 0, 0.25)
    train = split_candidates(pool, "train", 0, 0.25)
    assert len(test) + len(train) == 60 and 5 < len(test) < 30
    assert not {i.image.key for i in test} & {i.image.key for i in train}
    assert split_candidates(pool, "test", 0, 0.25) == test  # stable


def test_order_by_image_keeps_an_images_questions_together(tmp_path):
    fx.make_okvqa(tmp_path, n_val_images=5, per_image=3)
    items = sources.okvqa(str(tmp_path)).splits["test"]
    ordered = order_by_image(items, 0, "t")
    keys = [i.image.key for i in ordered]
    assert sorted(keys) == sorted(i.image.key for i in items)
    assert all(len({*keys[j : j + 3]}) == 1 for j in range(0, len(keys), 3))
    assert ordered == order_by_image(items, 0, "t") and ordered != order_by_image(items, 1, "t")


def test_mit_indoor_answers_are_unambiguous_substrings():
    from collections import Counter

    from mmr3_tasks.builder.labels import MIT_INDOOR_ANSWERS

    assert len(MIT_INDOOR_ANSWERS) == 67
    counts = Counter(a for answers in MIT_INDOOR_ANSWERS.values() for a in set(answers))
    assert [a for a, n in counts.items() if n > 1] == []  # no answer counts for two classes
    for answers in MIT_INDOOR_ANSWERS.values():
        # Acc is a substring test: a short synonym would match inside other words ("lab" in "label").
        assert all(len(a) >= 5 for a in answers[1:]), answers


# --------------------------------------------------------------------------- malformed source files


def _edit_json(path: Path, edit) -> None:
    import json

    content = json.loads(path.read_text())
    path.write_text(json.dumps(edit(content)))


def _drop(key):
    def edit(content):
        del content[key]
        return content

    return edit


def _in_first(key, field, value=None, delete=False):
    def edit(content):
        if delete:
            del content[key][0][field]
        else:
            content[key][0][field] = value
        return content

    return edit


COCO_VAL = "annotations/instances_val2017.json"
OKVQA_Q = "OpenEnded_mscoco_val2014_questions.json"
OKVQA_A = "mscoco_val2014_annotations.json"
INFOVQA = "infographicsVQA_val_v1.0.json"


@pytest.mark.parametrize(
    "make, reader, file, edit, message",
    [
        # Each was a KeyError or TypeError traceback before: the message now names file, key and entry.
        (fx.make_coco, sources.coco, COCO_VAL, _drop("categories"), "instances_val2017.json: no 'categories' list"),
        (fx.make_coco, sources.coco, COCO_VAL, lambda c: {**c, "categories": 5}, "'categories' is 5 (int), not a list"),
        (fx.make_coco, sources.coco, COCO_VAL, _drop("images"), "no 'images' list (its keys are ['annotations', "),
        (fx.make_coco, sources.coco, COCO_VAL, _in_first("images", "width", delete=True), "images[0] lacks the key"),
        (fx.make_coco, sources.coco, COCO_VAL, _in_first("images", "width", 0), "image 1000 has size 0x72"),
        (
            fx.make_coco,
            sources.coco,
            COCO_VAL,
            _in_first("annotations", "image_id", "x"),
            "annotations[0].image_id is 'x' (str), expected a number",
        ),
        (fx.make_coco, sources.coco, COCO_VAL, _in_first("categories", "name", None), "categories[0].name is None"),
        (fx.make_okvqa, sources.okvqa, OKVQA_A, lambda c: c["annotations"], "it is a JSON list"),
        (fx.make_okvqa, sources.okvqa, OKVQA_Q, _in_first("questions", "question", delete=True), "questions[0] lacks"),
        (
            fx.make_okvqa,
            sources.okvqa,
            OKVQA_A,
            _in_first("annotations", "answers", ["dog"]),
            "annotations[0].answers holds a non-object",
        ),
        (fx.make_infovqa, sources.infovqa, INFOVQA, _drop("data"), "infographicsVQA_val_v1.0.json: no 'data' list"),
        (
            fx.make_infovqa,
            sources.infovqa,
            INFOVQA,
            _in_first("data", "image_local_name", delete=True),
            "data[0] lacks the key(s) ['image_local_name']",
        ),
        (fx.make_infovqa, sources.infovqa, INFOVQA, _in_first("data", "answers", "42"), "answers is '42' (str)"),
    ],
    ids=[
        "coco-no-categories",
        "coco-categories-a-number",
        "coco-no-images",
        "coco-image-without-width",
        "coco-image-of-width-0",
        "coco-image-id-a-string",
        "coco-category-without-name",
        "okvqa-annotations-a-list",
        "okvqa-question-without-text",
        "okvqa-answers-not-objects",
        "infovqa-no-data",
        "infovqa-no-image-name",
        "infovqa-answers-a-string",
    ],
)
def test_a_malformed_json_source_names_the_file_and_the_key(tmp_path, make, reader, file, edit, message):
    make(tmp_path)
    _edit_json(tmp_path / file, edit)
    with pytest.raises(sources.SourceError, match=re.escape(message)) as err:
        reader(str(tmp_path))
    assert str(tmp_path / file) in str(err.value) and "re-download it" in str(err.value)


def test_malformed_gldv2_and_mit_indoor_lists_are_named(tmp_path):
    fx.make_gldv2(tmp_path, n_landmarks=3)
    labels_csv = tmp_path / "train_label_to_category.csv"
    labels_csv.write_text("landmark_id,name\n1,Category:Taban\n")
    with pytest.raises(sources.SourceError, match=re.escape(f"{labels_csv} lacks the columns landmark_id,category")):
        sources.gldv2(str(tmp_path))
    labels_csv.write_text("landmark_id,category\n1\n")  # a short line: no category, not a crash
    assert sources.gldv2(str(tmp_path)).skipped["landmark without a category name"] == 7  # all 3x2 + 9999
    (tmp_path / "train.csv").write_bytes(b"id,url,landmark_id\n\xff\xfe,x,1\n")
    with pytest.raises(sources.SourceError, match="train.csv is not UTF-8 text"):
        sources.gldv2(str(tmp_path))
    mit = tmp_path / "mit"
    fx.make_mit_indoor(mit)
    (mit / "TestImages.txt").write_bytes(b"kitchen/\xff.jpg\n")
    with pytest.raises(sources.SourceError, match="TestImages.txt is not UTF-8 text"):
        sources.mit_indoor(str(mit))


def test_a_hub_dataset_without_the_needed_columns_is_named(tmp_path):
    import datasets

    fx.make_okvqa_hub(tmp_path)
    shard = next((tmp_path / "data").glob("*.parquet"))
    datasets.Dataset.from_parquet(str(shard)).remove_columns(["answers"]).to_parquet(str(shard))
    with pytest.raises(sources.SourceError, match=r"split 'val2014' lacks the columns \['answers'\]"):
        sources.okvqa(f"hub:{tmp_path}")


def test_a_coco_box_with_a_non_number_is_a_skipped_annotation(tmp_path):
    fx.make_coco(tmp_path, n_val=3, n_train=2)
    _edit_json(tmp_path / COCO_VAL, _in_first("annotations", "bbox", [None, 8.0, 40.0, 30.0]))
    pool = sources.coco(str(tmp_path), seed=0)
    assert pool.skipped["annotation without a box inside its image"] == 3  # the fixture's 2, and this one


def test_mmr3_build_names_annotations_without_categories_in_one_line(tmp_path, capsys):
    """Through the command: one line naming the file, exit 1, and no build_config.json left behind."""
    from mmr3_tasks.cli import main

    fx.make_coco(tmp_path / "coco")
    _edit_json(tmp_path / "coco" / COCO_VAL, _drop("categories"))
    out = tmp_path / "out"
    code = main(["build", "--out", str(out), "--tasks", "context", "--coco", str(tmp_path / "coco"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert (
        err[0].startswith("mmr3 build: error: ") and f"{tmp_path / 'coco' / COCO_VAL}: no 'categories' list" in err[0]
    )
    assert not (out / "build_config.json").exists()


def test_mmr3_build_with_no_usable_group_fails_naming_why(tmp_path, capsys):
    """Every COCO object of an unknown category: 0 groups is an error (exit 1), not an empty build."""
    from mmr3_tasks.cli import main

    fx.make_coco(tmp_path / "coco")
    for split in ("val", "train"):
        path = tmp_path / "coco" / f"annotations/instances_{split}2017.json"
        _edit_json(path, lambda c: {**c, "annotations": [{**a, "category_id": 999} for a in c["annotations"]]})
    out = tmp_path / "out"
    code = main(["build", "--out", str(out), "--tasks", "context", "--coco", str(tmp_path / "coco"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("mmr3 build: error: context test: none of the"), err
    assert "groups asked for could be made from the sources" in err[-1] and "docs/data.md#bad-sources" in err[-1]
