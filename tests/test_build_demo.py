"""The bundled demo set (mmr3_tasks/demo_set): built by `mmr3 build --demo`, same schema and layout
as the benchmark (a test and a train split, disjoint), small, licensed, and reproducible by the builder."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_fixtures import STYLE_MODELS  # noqa: E402

from mmr3_tasks import data, schema  # noqa: E402
from mmr3_tasks.builder import masks  # noqa: E402
from mmr3_tasks.builder.demo_set import (  # noqa: E402
    DEMO_CONTENT,
    DemoConfig,
    DemoContent,
    DemoContentError,
    build_demo,
    demo_readme,
)
from mmr3_tasks.builder.images import sha256_bytes, sha256_file  # noqa: E402
from mmr3_tasks.builder.styles import StyleModelSpec  # noqa: E402

CONTENT = json.loads(DEMO_CONTENT.read_text())
SPLITS = data.DEMO_SPLITS
TASK_SPLITS = [(t, s) for t in schema.TASKS for s in SPLITS]


def _entries(task: str, split: str) -> list[dict]:
    return CONTENT[task] if split == "test" else CONTENT["train"][task]


def _raw(task: str, split: str = "test") -> datasets.Dataset:
    return data.load_demo(task, split).cast_column("image", datasets.Image(decode=False))


def _source_id(entry: dict) -> str:
    return entry["image"] + (":" + ",".join(map(str, entry["crop"])) if entry.get("crop") else "")


def test_demo_files_are_small():
    sizes = {(t, s): data.demo_file(t, s).stat().st_size for t, s in TASK_SPLITS}
    assert all(s < 5_000_000 for s in sizes.values()), sizes
    assert sum(sizes.values()) <= 8_000_000, sizes
    # Only the build's layout is there (no file of the old one-file-per-task layout left behind).
    assert sorted(p.relative_to(data.DEMO_DIR) for p in data.DEMO_DIR.rglob("*.parquet")) == sorted(
        data.demo_file(t, s).relative_to(data.DEMO_DIR) for t, s in TASK_SPLITS
    )


@pytest.mark.parametrize("task, split", TASK_SPLITS)
def test_demo_rows_follow_the_benchmark_schema(task, split):
    ds = data.load_demo(task, split)
    assert ds.features == schema.FEATURES
    check = data.check_rows(ds, task)
    assert len(check.kept) == len(ds) and not check.dropped
    entries = _entries(task, split)
    variants = schema.VARIANTS[task]
    assert len(ds) == len(entries) * len(variants)
    rows = _raw(task, split).to_list()
    for g, entry in enumerate(entries):
        group = rows[g * len(variants) : (g + 1) * len(variants)]
        assert [r["id"] for r in group] == [schema.variant_id(entry["group_id"], v) for v in variants]
        assert [r["variant_index"] for r in group] == list(range(len(variants)))
        meta = CONTENT["images"][entry["image"]]
        for r in group:
            assert r["source"] == "demo" and r["group_size"] == len(variants)
            assert r["image_license"] == meta["licence"] and meta["attribution"] in r["image_source"]
            assert r["answers"] and r["answers"][0] == entry["answers"][0]
            im = Image.open(io.BytesIO(r["image"]["bytes"]))
            assert im.mode == "RGB" and max(im.size) <= 384 and im.format == "JPEG"
        if task == "rephrase":
            assert [r["question"] for r in group] == entry["rephrasings"]
            assert {r["original_question"] for r in group} == {entry["question"]}
            assert {r["image"]["bytes"] for r in group}.__len__() == 1
        elif task == "restyle":
            assert [r["style"] for r in group] == list(schema.STYLES)
            assert {r["question"] for r in group} == {schema.RESTYLE_PROMPT}
            assert all(Image.open(io.BytesIO(r["image"]["bytes"])).size[0] % 4 == 0 for r in group)
        else:
            assert {r["question"] for r in group} == {schema.CONTEXT_PROMPT}
            kinds = [masks.MaskKind(r["mask_shape"], r["mask_lines"], r["mask_color"]) for r in group]
            assert kinds == masks.draw_kinds(0, entry["group_id"])
            w, h = Image.open(io.BytesIO(group[0]["image"]["bytes"])).size
            assert masks.MIN_AREA_RATIO <= masks.area_ratio(group[0]["mask_box"], w, h) <= masks.MAX_AREA_RATIO
            assert group[0]["source_id"] == _source_id(entry)


@pytest.mark.parametrize("task", schema.TASKS)
def test_demo_train_split_is_read_as_a_build_is(task):
    """The trainer reads the demo's train split with `load_split`, exactly as it reads a build."""
    ds = data.load_split(task, "train", location=str(data.DEMO_DIR))
    assert ds.features == schema.FEATURES
    assert ds["id"] == data.load_demo(task, "train")["id"]
    variants = schema.VARIANTS[task]
    assert ds["id"] == [schema.variant_id(e["group_id"], v) for e in _entries(task, "train") for v in variants]
    assert data.load_split(task, "test", location=str(data.DEMO_DIR))["id"] == data.load_demo(task)["id"]


def test_demo_manifest_matches_the_files():
    manifest = json.loads((data.DEMO_DIR / "manifest.json").read_text())
    assert manifest["kind"] == "mmr3-demo" and manifest["format_version"] == 2
    assert set(manifest["tasks"]) == set(schema.TASKS)
    for task, split in TASK_SPLITS:
        entry = manifest["tasks"][task][split]
        assert data.DEMO_DIR / entry["file"] == data.demo_file(task, split)
        assert sha256_file(data.demo_file(task, split)) == entry["sha256"]
        assert entry["images"] == {r["id"]: sha256_bytes(r["image"]["bytes"]) for r in _raw(task, split)}
        assert (entry["groups"], entry["rows"]) == (len(_entries(task, split)), len(entry["images"]))
    assert set(manifest["style_models"]) == {"candy", "mosaic", "udnie"}
    assert all(m["kind"] == "onnx" for m in manifest["style_models"].values())


def test_demo_readme_lists_every_task_and_split():
    manifest = json.loads((data.DEMO_DIR / "manifest.json").read_text())
    readme = demo_readme(DemoContent(DEMO_CONTENT), manifest, DemoConfig(style_models=StyleModelSpec("unused")))
    assert readme == (data.DEMO_DIR / "README.md").read_text()  # the bundled one is current
    for task, split in TASK_SPLITS:
        entry = manifest["tasks"][task][split]
        assert f"| {entry['file']} | {split} | {entry['groups']} | {entry['rows']} |" in readme
    assert "mmr3 train-adapter --data demo" in readme and "share source images" in readme


def test_demo_content_is_consistent():
    content = DemoContent(DEMO_CONTENT)
    content.check_splits()
    for split in SPLITS:
        assert len(content.rephrase(split)) == len(_entries("rephrase", split))
        assert all(len(e["question"].split()) > 10 for e in _entries("rephrase", split))  # the paper's filter
        for e in _entries("rephrase", split):
            assert len(e["rephrasings"]) == 3 and e["question"] not in e["rephrasings"], e["group_id"]
        for item in content.restyle(split) + content.context(split):
            assert item.answers
    ids = [e["group_id"] for s in SPLITS for t in schema.TASKS for e in _entries(t, s)]
    assert len(set(ids)) == len(ids)


def test_demo_train_and_test_splits_are_disjoint():
    """By group id (any task), and by item within a task: (image, crop), or (image, question)."""
    test_ids = {e["group_id"] for t in schema.TASKS for e in _entries(t, "test")}
    assert not test_ids & {e["group_id"] for t in schema.TASKS for e in _entries(t, "train")}
    for task in schema.TASKS:

        def key(e, task=task):
            return (e["image"], e["question"].casefold()) if task == "rephrase" else _source_id(e)

        assert not {key(e) for e in _entries(task, "test")} & {key(e) for e in _entries(task, "train")}, task
        built = {split: set(_raw(task, split)["group_id"]) for split in SPLITS}
        assert built["test"] and built["train"] and not built["test"] & built["train"]


def _content_with(tmp_path, task: str, **changes) -> str:
    """A copy of the demo content whose first train entry of `task` is changed."""
    content = json.loads(DEMO_CONTENT.read_text())
    content["train"][task][0].update(changes)
    path = tmp_path / "demo_content.json"
    path.write_text(json.dumps(content))
    return str(path)


@pytest.mark.parametrize(
    "task, changes, message",
    [
        # A train group_id equal to a test one, even of another task: row ids must not collide.
        ("context", {"group_id": "rephrase-001"}, "train group 'rephrase-001' has a test group's group_id"),
        ("restyle", {"group_id": "train-restyle-002"}, "train group 'train-restyle-002' has another train group's"),
        # The same image and crop as a test item: restyle-002 is china cropped to [40, 20, 370, 427].
        (
            "restyle",
            {"image": "china", "crop": [40, 20, 370, 427]},
            "train group 'train-restyle-001' has the same image and crop as test group 'restyle-002'",
        ),
        # context-024 is the whole clock image: a crop covering all of it is the same item.
        (
            "context",
            {"image": "clock", "crop": [0, 0, 400, 300]},
            "train group 'train-context-001' has the same image and crop as test group 'context-024'",
        ),
        # Rephrase: the same question over the same image, even with other case and punctuation.
        (
            "rephrase",
            {"image": "astronaut", "question": CONTENT["rephrase"][0]["question"].upper().rstrip("?")},
            "train group 'train-rephrase-001' has the same image and question as test group 'rephrase-001'",
        ),
    ],
    ids=[
        "test-group-id",
        "duplicate-train-group-id",
        "restyle-same-crop",
        "context-whole-image",
        "rephrase-same-question",
    ],
)
def test_demo_build_refuses_train_items_that_repeat_test_ones(tmp_path, task, changes, message):
    config = DemoConfig(
        style_models=StyleModelSpec(str(tmp_path / "unused")),
        content=_content_with(tmp_path, task, **changes),
        out=str(tmp_path / "out"),
        tasks=["rephrase"],
    )
    with pytest.raises(DemoContentError, match=re.escape(message)):
        build_demo(config)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_demo_build_is_deterministic_and_matches_the_bundled_files(tmp_path):
    """Rebuilds the two tasks that need no style model twice, both splits: byte-identical files, and
    the same rows as the bundled ones (pixels compared loosely: another JPEG library may round
    differently)."""
    spec = StyleModelSpec(str(tmp_path / "unused"))
    for name in ("a", "b"):
        build_demo(DemoConfig(style_models=spec, out=str(tmp_path / name), tasks=["rephrase", "context"]))
    for task, split in [(t, s) for t in ("rephrase", "context") for s in SPLITS]:
        shard = data.demo_file(task, split).relative_to(data.DEMO_DIR)
        assert (tmp_path / "a" / shard).read_bytes() == (tmp_path / "b" / shard).read_bytes(), shard
        _assert_same_rows(pq.read_table(tmp_path / "a" / shard), pq.read_table(data.demo_file(task, split)))
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert sorted(manifest["tasks"]) == ["context", "rephrase"]
    assert all(sorted(manifest["tasks"][t]) == sorted(SPLITS) for t in manifest["tasks"])


def test_demo_build_of_one_split_and_the_old_layout(tmp_path):
    """`splits` limits what is built; a file of the old one-file layout is removed, not left to ship."""
    (tmp_path / "rephrase.parquet").write_bytes(b"PAR1 old layout")
    spec = StyleModelSpec(str(tmp_path / "unused"))
    manifest = build_demo(DemoConfig(style_models=spec, out=str(tmp_path), tasks=["rephrase"], splits=["train"]))
    assert list(manifest["tasks"]["rephrase"]) == ["train"]
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet")] == [
        "rephrase/train-00000-of-00001.parquet"
    ]
    with pytest.raises(DemoContentError, match=re.escape("unknown splits ['dev']")):
        build_demo(DemoConfig(style_models=spec, out=str(tmp_path), tasks=["rephrase"], splits=["dev"]))


def _assert_same_rows(built, bundled) -> None:
    a, b = built.to_pylist(), bundled.to_pylist()
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        xi, yi = x.pop("image"), y.pop("image")
        assert x == y
        px = np.asarray(Image.open(io.BytesIO(xi["bytes"])), dtype=float)
        py = np.asarray(Image.open(io.BytesIO(yi["bytes"])), dtype=float)
        assert px.shape == py.shape and np.abs(px - py).mean() < 1.0


@pytest.mark.slow
@pytest.mark.skipif(not STYLE_MODELS.is_dir(), reason=f"{STYLE_MODELS} absent (research-use models)")
def test_demo_restyle_rebuild_matches_the_bundled_file(tmp_path):
    spec = StyleModelSpec(str(STYLE_MODELS), device="cpu")
    for name in ("a", "b"):
        build_demo(DemoConfig(style_models=spec, out=str(tmp_path / name), tasks=["restyle"]))
    for split in SPLITS:
        shard = data.demo_file("restyle", split).relative_to(data.DEMO_DIR)
        assert (tmp_path / "a" / shard).read_bytes() == (tmp_path / "b" / shard).read_bytes(), shard
        _assert_same_rows(pq.read_table(tmp_path / "a" / shard), pq.read_table(data.demo_file("restyle", split)))
