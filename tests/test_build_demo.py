"""The bundled demo set (mmr3_tasks/data/mini): built by `mmr3 build --demo`, same schema as the
benchmark, small, licensed, and reproducible by the builder."""

from __future__ import annotations

import io
import json
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
from mmr3_tasks.builder.demo import DEMO_CONTENT, DemoConfig, DemoContent, build_demo  # noqa: E402
from mmr3_tasks.builder.images import sha256_bytes, sha256_file  # noqa: E402
from mmr3_tasks.builder.styles import StyleModelSpec  # noqa: E402

CONTENT = json.loads(DEMO_CONTENT.read_text())


def _raw(task: str) -> datasets.Dataset:
    return data.load_demo(task).cast_column("image", datasets.Image(decode=False))


def test_demo_files_are_small():
    sizes = {t: data.demo_file(t).stat().st_size for t in schema.TASKS}
    assert all(s < 5_000_000 for s in sizes.values()), sizes
    assert sum(sizes.values()) <= 8_000_000, sizes


@pytest.mark.parametrize("task", schema.TASKS)
def test_demo_rows_follow_the_benchmark_schema(task):
    ds = data.load_demo(task)
    assert ds.features == schema.FEATURES
    check = data.check_rows(ds, task)
    assert len(check.kept) == len(ds) and not check.dropped
    entries = CONTENT[task]
    variants = schema.VARIANTS[task]
    assert len(ds) == len(entries) * len(variants)
    rows = _raw(task).to_list()
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
            src = entry["image"] + (":" + ",".join(map(str, entry["crop"])) if entry.get("crop") else "")
            assert group[0]["source_id"] == src


def test_demo_manifest_matches_the_files():
    manifest = json.loads((data.DEMO_DIR / "manifest.json").read_text())
    for task in schema.TASKS:
        entry = manifest["tasks"][task]
        assert sha256_file(data.demo_file(task)) == entry["sha256"]
        assert entry["images"] == {r["id"]: sha256_bytes(r["image"]["bytes"]) for r in _raw(task)}
    assert set(manifest["style_models"]) == {"candy", "mosaic", "udnie"}
    assert all(m["kind"] == "onnx" for m in manifest["style_models"].values())


def test_demo_content_is_consistent():
    content = DemoContent(DEMO_CONTENT)
    assert len(content.rephrase()) == len(CONTENT["rephrase"])
    assert all(len(e["question"].split()) > 10 for e in CONTENT["rephrase"])  # the paper's filter
    for item in content.restyle() + content.context():
        assert item.answers
    assert len({e["group_id"] for t in schema.TASKS for e in CONTENT[t]}) == sum(len(CONTENT[t]) for t in schema.TASKS)


def test_demo_build_is_deterministic_and_matches_the_bundled_files(tmp_path):
    """Rebuilds the two tasks that need no style model twice: byte-identical files, and the same
    rows as the bundled ones (pixels compared loosely: another JPEG library may round differently)."""
    spec = StyleModelSpec(str(tmp_path / "unused"))
    for name in ("a", "b"):
        build_demo(DemoConfig(style_models=spec, out=str(tmp_path / name), tasks=["rephrase", "context"]))
    for task in ("rephrase", "context"):
        assert (tmp_path / "a" / f"{task}.parquet").read_bytes() == (tmp_path / "b" / f"{task}.parquet").read_bytes()
        _assert_same_rows(pq.read_table(tmp_path / "a" / f"{task}.parquet"), pq.read_table(data.demo_file(task)))


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
    build_demo(
        DemoConfig(style_models=StyleModelSpec(str(STYLE_MODELS), device="cpu"), out=str(tmp_path), tasks=["restyle"])
    )
    _assert_same_rows(pq.read_table(tmp_path / "restyle.parquet"), pq.read_table(data.demo_file("restyle")))
