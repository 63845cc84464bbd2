"""Groups -> rows in schema.FEATURES -> parquet: the contract every build keeps."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import datasets
import pytest

from mmr3_tasks import data, schema
from mmr3_tasks.builder.atomic import atomic_target, write_text_atomic
from mmr3_tasks.builder.images import encode_jpeg
from mmr3_tasks.builder.rows import Group, RowError, Variant, clean_answers, group_rows, write_parquet_atomic

JPEG = encode_jpeg(__import__("numpy").zeros((8, 8, 3), dtype="uint8"), 90)


def _group(task="restyle", names=schema.STYLES, answers=("Tabán",)) -> Group:
    variants = [Variant(name=n, question=schema.RESTYLE_PROMPT, image=JPEG, style=n) for n in names]
    return Group("gldv2-abc", task, "gldv2", "abc", list(answers), "CC-BY", "GLDv2 train/a/b/c/abc.jpg", variants)


@pytest.mark.parametrize(
    "answers,expected",
    [
        (["dogs", "dogs", " dog ", "Dog"], ["dogs", "dog"]),  # case-insensitive duplicates: first spelling kept
        (["", "  ", "forty  two"], ["forty two"]),
        (["18", "eighteen", "18 years"], ["18", "eighteen", "18 years"]),
        ([], []),
    ],
)
def test_clean_answers(answers, expected):
    assert clean_answers(answers) == expected


def test_group_rows_fill_every_column():
    rows = group_rows(_group())
    assert [r["id"] for r in rows] == [f"gldv2-abc/{s}" for s in schema.STYLES]
    assert [r["variant_index"] for r in rows] == [0, 1, 2, 3]
    assert all(set(r) == set(schema.COLUMNS) for r in rows)
    assert all(r["group_size"] == 4 and r["mask_lines"] == 0 and r["mask_box"] == [] for r in rows)


@pytest.mark.parametrize(
    "group,message",
    [
        (_group(names=schema.STYLES[::-1]), "needs"),  # wrong order
        (_group(names=schema.STYLES[:3]), "needs"),  # a variant missing
        (_group(task="caption"), "unknown task"),
        (_group(answers=["", " "]), "no non-empty ground-truth"),
    ],
)
def test_group_rows_refuse_broken_groups(group, message):
    with pytest.raises(RowError, match=message):
        group_rows(group)


def test_parquet_is_written_atomically_and_loads_with_the_schema(tmp_path):
    path = tmp_path / "restyle" / "test-00000-of-00001.parquet"
    digest = write_parquet_atomic(group_rows(_group()), path)
    assert len(digest) == 64 and os.listdir(path.parent) == [path.name]  # no temporary file left
    assert stat.S_IMODE(path.stat().st_mode) & 0o044  # readable by others, unlike mkstemp's 0600
    ds = data.load_split("restyle", "test", location=str(tmp_path))
    assert ds.features == schema.FEATURES and len(ds) == 4
    assert data.check_rows(ds, "restyle").kept == [0, 1, 2, 3]
    plain = datasets.load_dataset("parquet", data_files=str(path), split="train")
    assert plain.features == schema.FEATURES  # the schema travels in the file's metadata


def test_a_failed_atomic_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "manifest.json"
    write_text_atomic(path, "old\n")
    with pytest.raises(RuntimeError, match="killed"), atomic_target(path) as tmp:
        Path(tmp).write_text("half of the new")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["manifest.json"]
    write_text_atomic(path, "new\n")
    assert path.read_text() == "new\n" and stat.S_IMODE(path.stat().st_mode) & 0o044
