"""Groups of variants -> rows in schema.FEATURES -> parquet files, written atomically."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mmr3_tasks import schema
from mmr3_tasks.builder.atomic import atomic_target
from mmr3_tasks.builder.images import sha256_bytes, sha256_file
from mmr3_tasks.errors import MMR3Error

# Rows per parquet row group: images are large, so small groups keep streaming reads cheap.
ROW_GROUP_SIZE = 100


class RowError(MMR3Error, ValueError):
    """A group that would break the schema's contract (variants, ids, answers)."""


@dataclass
class Variant:
    """One variant of a group: its name, prompt, encoded image and its kind columns."""

    name: str
    question: str
    image: bytes
    original_question: str = ""
    style: str = ""
    mask_shape: str = ""
    mask_lines: int = 0
    mask_color: str = ""
    mask_box: list[float] = field(default_factory=list)


@dataclass
class Group:
    """One item of a task with all its variants, in schema.VARIANTS[task] order."""

    group_id: str
    task: str
    source: str
    source_id: str
    answers: list[str]
    image_license: str
    image_source: str
    variants: list[Variant]


def clean_answers(answers: Iterable[str]) -> list[str]:
    """Stripped, whitespace-collapsed, de-duplicated (case-insensitively, first spelling kept),
    empty ones dropped. Order is kept: the first answer is the most representative one."""
    out: list[str] = []
    seen: set[str] = set()
    for answer in answers:
        text = " ".join(str(answer).split())
        if text and text.casefold() not in seen:
            seen.add(text.casefold())
            out.append(text)
    return out


def group_rows(group: Group) -> list[dict]:
    """The rows of one group, adjacent and in variant_index order.

    Raises:
        RowError: wrong variants for the task, no ground truth, or an empty image.
    """
    if group.task not in schema.TASKS:
        raise RowError(f"unknown task {group.task!r}; expected one of {schema.TASKS}")
    expected = schema.VARIANTS[group.task]
    names = tuple(v.name for v in group.variants)
    if names != expected:
        raise RowError(f"group {group.group_id!r} has variants {names}; the {group.task} task needs {expected}")
    answers = clean_answers(group.answers)
    if not answers:
        raise RowError(f"group {group.group_id!r} has no non-empty ground-truth answer")
    rows = []
    for index, v in enumerate(group.variants):
        if not v.image:
            raise RowError(f"variant {v.name!r} of group {group.group_id!r} has no image bytes")
        rows.append(
            {
                "id": schema.variant_id(group.group_id, v.name),
                "group_id": group.group_id,
                "task": group.task,
                "variant": v.name,
                "variant_index": index,
                "group_size": len(expected),
                "question": v.question,
                "image": {"bytes": v.image, "path": None},
                "answers": answers,
                "source": group.source,
                "source_id": group.source_id,
                "original_question": v.original_question,
                "style": v.style,
                "mask_shape": v.mask_shape,
                "mask_lines": int(v.mask_lines),
                "mask_color": v.mask_color,
                "mask_box": [float(x) for x in v.mask_box],
                "image_license": group.image_license,
                "image_source": group.image_source,
            }
        )
    return rows


def image_hashes(rows: Sequence[dict]) -> dict[str, str]:
    """Row id -> sha256 of the row's image bytes, for the manifest."""
    return {r["id"]: sha256_bytes(r["image"]["bytes"]) for r in rows}


def rows_table(rows: Sequence[dict]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=schema.FEATURES.arrow_schema)


def write_parquet_atomic(rows: Sequence[dict], path: Path) -> str:
    """Writes the rows to `path` atomically (builder.atomic): a reader, or a resumed build, sees
    either no file or the whole file. Returns the file's sha256."""
    with atomic_target(path) as tmp:
        pq.write_table(rows_table(rows), tmp, row_group_size=ROW_GROUP_SIZE, compression="snappy")
    return sha256_file(path)
