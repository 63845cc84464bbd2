"""Where the MM-R³ rows live, how they are loaded, and what happens to bad rows.

The full benchmark was never published (docs/data.md): users build it with `mmr3 build` into one
folder, `$MMR3_DATA` or `~/.cache/mmr3/data`, or point `MMR3_DATA` at a hub dataset id holding such
a build. The demo set ships inside this package, in the same layout. Layout of a build (docs/data.md):

    <root>/<task>/<split>-00000-of-0000N.parquet   rows in schema.FEATURES
    <root>/manifest.json, <root>/README.md          build settings, sha256 of every image, card
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from mmr3_tasks import imagecheck, schema
from mmr3_tasks.errors import MMR3Error

DATA_ENV = "MMR3_DATA"
PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_DIR = PACKAGE_DIR / "data" / "mini"
DEMO_SPLITS = ("test", "train")  # train: for the consistency adapter; disjoint from test by group
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class DataNotFoundError(MMR3Error, FileNotFoundError):
    """The benchmark's rows are not where the tasks look for them."""


class DataSchemaError(MMR3Error, ValueError):
    """The rows found do not follow schema.FEATURES or belong to another task."""


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/mmr3`, else `~/.cache/mmr3`: where mmr3 keeps what it builds."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "mmr3"


def default_data_dir() -> Path:
    return cache_root() / "data"


def data_origin() -> str:
    """Where `data_location()` came from, in words."""
    return f"${DATA_ENV}" if os.environ.get(DATA_ENV, "").strip() else f"the default (${DATA_ENV} is unset)"


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
    origin = data_origin() if location is None else "the location given"
    location = location or data_location()
    root = Path(os.path.expanduser(location))
    if root.is_dir():
        files = split_files(root, task, split)
        if not files:
            looked = f"{root / task}/{split}-*.parquet"
            raise DataNotFoundError(_missing_message(task, split, location, looked, origin))
        # No `features=` here: it would fill a missing column with nulls instead of failing.
        return as_schema(datasets.load_dataset("parquet", data_files={split: [str(f) for f in files]}, split=split))
    if _HUB_ID.match(location) and not location.startswith((".", "/", "~")):
        try:
            ds = datasets.load_dataset(location, name=task, split=split)
        except Exception as err:  # the hub's errors vary by version; keep the cause, add the fix
            looked = f"a local folder {str(root.resolve())!r} (none), then hub dataset {location!r} config {task!r}"
            message = _missing_message(task, split, location, looked, origin)
            raise DataNotFoundError(f"{message}\nCause: {err}") from err
        return as_schema(ds)
    raise DataNotFoundError(_missing_message(task, split, location, f"{root}/{task}/{split}-*.parquet", origin))


def as_schema(ds: datasets.Dataset) -> datasets.Dataset:
    """The rows in exactly schema.FEATURES, or DataSchemaError naming what differs."""
    missing = [c for c in schema.COLUMNS if c not in ds.column_names]
    if missing:
        raise DataSchemaError(
            f"dataset lacks the MM-R³ columns {missing}; rebuild it with `mmr3 build` (schema: mmr3_tasks.schema)"
        )
    ds = ds.select_columns(list(schema.COLUMNS))
    if ds.features == schema.FEATURES:
        return ds
    try:
        return ds.cast(schema.FEATURES)
    except (ValueError, TypeError) as err:  # pyarrow / datasets cast errors
        theirs = {c: str(ds.features[c]) for c in schema.COLUMNS if ds.features[c] != schema.FEATURES[c]}
        raise DataSchemaError(f"columns of the wrong type {theirs}: {err}; rebuild with `mmr3 build`") from err


def _missing_message(task: str, split: str, location: str, looked: str, origin: str) -> str:
    if split == "train":
        demo = "To try training without it, use the bundled demo set's train split: mmr3 train-adapter --data demo"
    else:
        demo = "To try the pipeline without it, run the bundled demo tasks: --tasks mmr3_mini"
    return (
        f"MM-R³ {task} data ({split} split) not found.\n"
        f"  Looked in: {looked}  [from {origin}]\n"
        f"  The paper's data was never published, so build it once from the public sources:\n"
        f"      mmr3 build --out {location}    (see docs/data.md; it writes the test and train splits)\n"
        f"  or set {DATA_ENV} to a folder (or hub dataset id) holding such a build.\n"
        f"  {demo}"
    )


def fingerprint(source: str = "benchmark", location: str | None = None) -> str:
    """Which data a run scored, for its results: the build manifest's sha256, or the hub id.

    `demo:<sha>` for the bundled set; `build:<sha>` for a folder with `mmr3 build`'s manifest.json;
    `files:<sha>` (names and sizes of the shards) for a folder without one; `hub:<id>` otherwise.
    """
    if source == "demo":
        return f"demo:{_sha256_16((DEMO_DIR / 'manifest.json').read_bytes())}"
    location = location or data_location()
    root = Path(os.path.expanduser(location))
    if not root.is_dir():
        return f"hub:{location}"
    manifest = root / "manifest.json"
    if manifest.is_file():
        return f"build:{_sha256_16(manifest.read_bytes())}"
    shards = sorted(p for p in root.glob("*/*.parquet"))
    listing = "\n".join(f"{p.relative_to(root)} {p.stat().st_size}" for p in shards)
    return f"files:{_sha256_16(listing.encode())}"


def _sha256_16(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def demo_file(task: str, split: str = "test") -> Path:
    """The demo set's one shard of a task's split, laid out as a build: `<task>/<split>-00000-of-00001.parquet`."""
    if task not in schema.TASKS:
        raise ValueError(f"unknown MM-R³ task {task!r}; expected one of {', '.join(schema.TASKS)}")
    if split not in DEMO_SPLITS:
        raise ValueError(f"the demo set has no {split!r} split; expected one of {', '.join(DEMO_SPLITS)}")
    return DEMO_DIR / task / f"{split}-00000-of-00001.parquet"


def load_demo(task: str, split: str = "test") -> datasets.Dataset:
    """One task's split of the bundled demo set, read as `load_split` reads a build."""
    demo_file(task, split)  # a bad task or split fails here, with the demo's own message
    return load_split(task, split, location=str(DEMO_DIR))


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

    Dropped, each with its reason: no id, group or variant; an id seen before (the first row
    wins); no non-empty ground truth; a missing image or one that does not decode in full. A
    missing column or a row of another task is not a bad row but a wrong dataset: DataSchemaError.
    """
    missing = [c for c in schema.COLUMNS if c not in ds.column_names]
    if missing:
        raise DataSchemaError(
            f"dataset lacks the MM-R³ columns {missing}; rebuild it with `mmr3 build` (schema: mmr3_tasks.schema)"
        )
    keys = ["id", "group_id", "variant", "variant_index"]
    raw = ds.select_columns([*keys, "task", "image", "answers"]).cast_column("image", datasets.Image(decode=False))
    check = RowCheck()
    seen: set[str] = set()
    for i, row in enumerate(raw):
        row_id = row["id"]
        if any(row[k] is None or row[k] == "" for k in keys):
            check.drop("without an id, group or variant", str(row_id))
            continue
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
    if image.get("bytes"):
        return imagecheck.decodes(image["bytes"])
    path = image.get("path")
    return bool(path) and os.path.isfile(path) and imagecheck.decodes(path)


def sampling_rows(ds: datasets.Dataset) -> datasets.Dataset:
    """The one variant per group that the Sampling protocol asks repeatedly."""
    idx = [i for i, v in enumerate(ds["variant_index"]) if v == schema.SAMPLING_VARIANT_INDEX]
    return ds.select(idx)
