"""Where the MM-R³ rows live, how they are loaded, and what happens to bad rows.

The full benchmark was never published (paper-spec §5): users build it with `mmr3 build` into one
folder, `$MMR3_DATA` or `~/.cache/mmr3/data`, or point `MMR3_DATA` at a hub dataset id holding such
a build. The demo set ships inside this package. Layout of a build (docs/data.md):

    <root>/<task>/<split>-00000-of-0000N.parquet   rows in schema.FEATURES
    <root>/manifest.json, <root>/README.md          build settings, sha256 of every image, card
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from PIL import Image

from mmr3_tasks import schema

DATA_ENV = "MMR3_DATA"
PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_DIR = PACKAGE_DIR / "data" / "mini"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class DataNotFoundError(FileNotFoundError):
    """The benchmark's rows are not where the tasks look for them."""


class DataSchemaError(ValueError):
    """The rows found do not follow schema.FEATURES or belong to another task."""


def default_data_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "mmr3" / "data"


def data_location() -> str:
    """`$MMR3_DATA` when set (a folder or a hub dataset id), else the default folder."""
    return os.environ.get(DATA_ENV, "").strip() or str(default_data_dir())


def split_files(root: Path, task: str, split: str) -> list[Path]:
    return sorted((root / task).glob(f"{split}-*.parquet"))


def load_split(task: str, split: str = "test", location: str | None = None) -> datasets.Dataset:
    """Loads one task's split of a built benchmark.

    Raises:
        DataNotFoundError: nothing at the location; the message says where it looked and how to build.
    """
    if task not in schema.TASKS:
        raise ValueError(f"unknown MM-R³ task {task!r}; expected one of {', '.join(schema.TASKS)}")
    location = location or data_location()
    root = Path(os.path.expanduser(location))
    if root.is_dir():
        files = split_files(root, task, split)
        if not files:
            raise DataNotFoundError(_missing_message(task, split, location, f"{root / task}/{split}-*.parquet"))
        return datasets.load_dataset(
            "parquet", data_files={split: [str(f) for f in files]}, split=split, features=schema.FEATURES
        )
    if _HUB_ID.match(location) and not location.startswith((".", "/", "~")):
        try:
            return datasets.load_dataset(location, name=task, split=split)
        except Exception as err:  # the hub's errors vary by version; keep the cause, add the fix
            raise DataNotFoundError(
                _missing_message(task, split, location, f"hub dataset {location!r}, config {task!r}")
                + f"\nCause: {err}"
            ) from err
    raise DataNotFoundError(_missing_message(task, split, location, f"{root}/{task}/{split}-*.parquet"))


def _missing_message(task: str, split: str, location: str, looked: str) -> str:
    origin = f"${DATA_ENV}" if os.environ.get(DATA_ENV, "").strip() else f"the default (${DATA_ENV} is unset)"
    return (
        f"MM-R³ {task} data ({split} split) not found.\n"
        f"  Looked in: {looked}  [from {origin}]\n"
        f"  The paper's data was never published, so build it once from the public sources:\n"
        f"      mmr3 build --out {location}    (see docs/data.md)\n"
        f"  or set {DATA_ENV} to a folder (or hub dataset id) holding such a build.\n"
        f"  To try the pipeline without it, run the bundled demo tasks: --tasks mmr3_mini"
    )


def demo_file(task: str) -> Path:
    return DEMO_DIR / f"{task}.parquet"


def load_demo(task: str) -> datasets.Dataset:
    return datasets.load_dataset("parquet", data_files={"test": str(demo_file(task))}, split="test")


# --------------------------------------------------------------------------- row checks


@dataclass
class RowCheck:
    """What `check_rows` dropped, by reason, with the ids (first few kept for messages)."""

    kept: list[int] = field(default_factory=list)
    dropped: dict[str, list[str]] = field(default_factory=dict)

    def drop(self, reason: str, row_id: str) -> None:
        self.dropped.setdefault(reason, []).append(row_id)

    def summary(self) -> str:
        parts = []
        for reason, ids in sorted(self.dropped.items()):
            shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
            parts.append(f"{len(ids)} {reason} ({shown})")
        return "; ".join(parts)


def check_rows(ds: datasets.Dataset, task: str | None = None) -> RowCheck:
    """Finds the rows a task cannot score faithfully.

    Dropped, each with its reason: a missing or unreadable image, an id seen before (the first
    row wins), no non-empty ground truth. A missing column or a row of another task is not a bad
    row but a wrong dataset: DataSchemaError.
    """
    missing = [c for c in schema.COLUMNS if c not in ds.column_names]
    if missing:
        raise DataSchemaError(
            f"dataset lacks the MM-R³ columns {missing}; rebuild it with `mmr3 build` (schema: mmr3_tasks.schema)"
        )
    raw = ds.select_columns(["id", "task", "image", "answers"]).cast_column("image", datasets.Image(decode=False))
    check = RowCheck()
    seen: set[str] = set()
    for i, row in enumerate(raw):
        row_id = row["id"]
        if task is not None and row["task"] != task:
            raise DataSchemaError(f"row {row_id!r} belongs to task {row['task']!r}, not {task!r}: wrong data folder?")
        if row_id in seen:
            check.drop("duplicate id", row_id)
            continue
        seen.add(row_id)
        if not any(a and a.strip() for a in (row["answers"] or [])):
            check.drop("without a ground truth", row_id)
            continue
        if not _image_readable(row["image"]):
            check.drop("with a missing or unreadable image", row_id)
            continue
        check.kept.append(i)
    return check


def _image_readable(image: dict | None) -> bool:
    if not image:
        return False
    data = image.get("bytes")
    try:
        if data:
            with Image.open(io.BytesIO(data)) as im:
                im.verify()
            return True
        path = image.get("path")
        if path and os.path.isfile(path):
            with Image.open(path) as im:
                im.verify()
            return True
    except Exception:  # PIL raises many types for bad files; all mean "unreadable"
        return False
    return False


def sampling_rows(ds: datasets.Dataset) -> datasets.Dataset:
    """The one variant per group that the Sampling protocol asks repeatedly."""
    idx = [i for i, v in enumerate(ds["variant_index"]) if v == schema.SAMPLING_VARIANT_INDEX]
    return ds.select(idx)
