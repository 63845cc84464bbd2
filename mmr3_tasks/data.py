"""Where the MM-R³ rows live, how they are loaded, and what happens to bad rows.

The full benchmark was never published (docs/data.md): users build it with `mmr3 build` into one
folder, `$MMR3_DATA` or `~/.cache/mmr3/data`, or point `MMR3_DATA` at a hub dataset id holding such
a build. The demo set ships inside this package, in the same layout. Layout of a build (docs/data.md):

    <root>/<task>/<split>-00000-of-0000N.parquet   rows in schema.FEATURES
    <root>/manifest.json, <root>/README.md          build settings, every shard's sha256, bytes and rows; card

A folder is checked against its manifest.json whenever a split is loaded (`verify_split`): the
scored rows are the rows that were built, or the load stops with a message naming the bad shard.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from mmr3_tasks import imagecheck, schema
from mmr3_tasks.errors import MMR3Error

DATA_ENV = "MMR3_DATA"
PACKAGE_DIR = Path(__file__).resolve().parent
DEMO_DIR = PACKAGE_DIR / "demo_set"
DEMO_SPLITS = ("test", "train")  # train: for the consistency adapter; disjoint from test by group
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

MANIFEST = "manifest.json"
BUILD_KIND = "mmr3-benchmark"  # builder.pipeline's manifest
DEMO_KIND = "mmr3-demo"  # builder.demo_set's manifest
# What `mmr3 build` leaves beside the shards (builder.pipeline.CONFIG, .STATE_DIR), named here so
# that reading a build never imports the builder.
BUILD_CONFIG = "build_config.json"
BUILD_STATE_DIR = ".mmr3-build"


class DataNotFoundError(MMR3Error, FileNotFoundError):
    """The benchmark's rows are not where the tasks look for them."""


class DataSchemaError(MMR3Error, ValueError):
    """The rows found do not follow schema.FEATURES or belong to another task."""


class DataIntegrityError(DataSchemaError):
    """A split's shards are not the ones that were built: missing, extra, truncated or changed."""


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/mmr3`, else `~/.cache/mmr3`: where mmr3 keeps what it builds."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "mmr3"


def default_data_dir() -> Path:
    return cache_root() / "data"


def data_origin() -> str:
    """Where `data_location()` came from, in words."""
    value = os.environ.get(DATA_ENV)
    if value is None:
        return f"the default (${DATA_ENV} is unset)"
    return f"${DATA_ENV}" if value.strip() else f"the default (${DATA_ENV} is set but blank)"


def data_location() -> str:
    """`$MMR3_DATA` when set (a folder or a hub dataset id), else the default folder."""
    return os.environ.get(DATA_ENV, "").strip() or str(default_data_dir())


def split_files(root: Path, task: str, split: str) -> list[Path]:
    return sorted((root / task).glob(f"{split}-*.parquet"))


def load_split(task: str, split: str = "test", location: str | None = None) -> datasets.Dataset:
    """Loads one task's split of a built benchmark, after `verify_split`'s cheap check of a folder.

    Raises:
        DataNotFoundError: nothing at the location; the message says where it looked and how to build.
        DataIntegrityError: a shard is missing, extra, truncated or not the size or row count its
            manifest lists; the message names the shard and the fix.
    """
    if task not in schema.TASKS:
        raise ValueError(f"unknown MM-R³ task {task!r}; expected one of {', '.join(schema.TASKS)}")
    origin = data_origin() if location is None else "the location given"
    location = location or data_location()
    root = Path(os.path.expanduser(location))
    if root.is_dir():
        check = verify_split(root, task, split)
        if check.problems:
            raise DataIntegrityError(check.message())
        if not check.files:
            looked = f"{root / task}/{split}-*.parquet"
            raise DataNotFoundError(_missing_message(task, split, location, looked, origin))
        return as_schema(_read_shards(check))
    if root.exists():  # a file, not a build folder: say so rather than "not found" under it
        raise DataNotFoundError(
            f"MM-R³ {task} data: {root} [from {origin}] is a file, not a build folder; point {DATA_ENV} at the "
            f"folder `mmr3 build --out` wrote (it holds manifest.json and one folder per task)"
        )
    if _HUB_ID.match(location) and not location.startswith((".", "/", "~")):
        try:
            ds = datasets.load_dataset(location, name=task, split=split)
        except Exception as err:  # the hub's errors vary by version; keep the cause, add the fix
            looked = f"a local folder {str(root.resolve())!r} (none), then hub dataset {location!r} config {task!r}"
            message = _missing_message(task, split, location, looked, origin)
            raise DataNotFoundError(f"{message}\nCause: {err}") from err
        return as_schema(ds)
    raise DataNotFoundError(_missing_message(task, split, location, f"{root}/{task}/{split}-*.parquet", origin))


def _read_shards(check: SplitCheck) -> datasets.Dataset:
    """The split's shards as one dataset; a shard whose footer parsed but whose pages do not read
    is named (DataIntegrityError), not left to a pyarrow traceback."""
    files = [str(f) for f in check.files]
    try:
        # No `features=` here: it would fill a missing column with nulls instead of failing.
        ds = datasets.load_dataset("parquet", data_files={check.split: files}, split=check.split)
        # Pages that decode into invalid values (text that is not UTF-8, offsets out of range) would
        # otherwise fail only when a row is read, deep inside lmms-eval. Cheap: no image is decoded.
        ds.data.table.validate(full=True)
        return ds
    except (pa.ArrowException, OSError, datasets.exceptions.DatasetGenerationError) as err:
        for path in check.files:
            reason = _unreadable(path)
            if reason:
                check.problems.append(f"UNREADABLE shard {_rel(check.root, path)}: {reason}")
                raise DataIntegrityError(check.message()) from err
        raise  # every shard reads on its own: not a problem of the data


def _unreadable(path: Path) -> str | None:
    """Why a shard's row groups do not read (streamed, one batch at a time), or None."""
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
            batch.validate(full=True)
    except (pa.ArrowException, OSError) as err:
        return " ".join(str(err).split())[:200]
    return None


def require_columns(ds: datasets.Dataset) -> None:
    """DataSchemaError naming the MM-R³ columns (schema.COLUMNS) that `ds` lacks, if any."""
    missing = [c for c in schema.COLUMNS if c not in ds.column_names]
    if missing:
        raise DataSchemaError(
            f"dataset lacks the MM-R³ columns {missing}; rebuild it with `mmr3 build` (schema: mmr3_tasks.schema)"
        )


def as_schema(ds: datasets.Dataset) -> datasets.Dataset:
    """The rows in exactly schema.FEATURES, or DataSchemaError naming what differs."""
    require_columns(ds)
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


# --------------------------------------------------------------------------- verification


@dataclass
class SplitCheck:
    """What `verify_split` found for one task's split of a folder.

    Attributes:
        files: the split's shards on disk (`<task>/<split>-*.parquet`).
        rows: the rows their parquet footers count.
        against: "manifest.json" when an mmr3 manifest lists the split, else "footers" (only each
            shard's footer is checked).
        compared: what was compared with the manifest, e.g. "bytes, rows".
        kind: the manifest's kind (BUILD_KIND, DEMO_KIND), "" without one.
        problems: one line per problem, starting MISSING / EXTRA / TRUNCATED / CHANGED / UNREADABLE /
            UNLISTED and naming the file.
    """

    root: Path
    task: str
    split: str
    files: list[Path] = field(default_factory=list)
    rows: int = 0
    against: str = "footers"
    compared: str = ""
    kind: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def status(self) -> str:
        """One line for `mmr3 info`: what is there and how it was checked, or what is wrong."""
        if self.problems:
            return "; ".join(self.problems)
        if not self.files:
            return "missing"
        shards = f"{len(self.files)} shard{'s' if len(self.files) != 1 else ''}, {self.rows:,} rows"
        if self.against == MANIFEST:
            return f"{shards}, verified against {MANIFEST} ({self.compared})"
        return f"{shards}, parquet footers read (no {MANIFEST} to verify against)"

    def message(self) -> str:
        """The one-line error of a load that this check stops: where, what is wrong, the fix."""
        where = f"MM-R³ {self.task} data ({self.split} split) at {self.root}"
        what = f"does not match its {MANIFEST}" if self.against == MANIFEST else "has a damaged shard"
        return f"{where} {what}: {'; '.join(self.problems)}. Fix: {self.fix()}"

    def fix(self) -> str:
        """How to repair what `problems` lists, for the kind of folder this is."""
        kinds = {p.split(" ", 1)[0] for p in self.problems}
        fixes = []
        if "UNKNOWN" in kinds:
            return (
                f"this {MANIFEST} is not one `mmr3 build` wrote: move it out of {self.root} (the shards are then "
                f"checked on their parquet footers only), or point {DATA_ENV} at the build's own folder"
            )
        if kinds - {"EXTRA"}:
            if self.kind == DEMO_KIND and self.root.resolve() == DEMO_DIR.resolve():
                fixes.append(
                    "the bundled demo set is damaged: reinstall lmms-eval-mmr3 "
                    "(in a source checkout: `git checkout -- mmr3_tasks/demo_set`)"
                )
            elif self.kind == DEMO_KIND:
                fixes.append(f"copy the demo set again from {DEMO_DIR}")
            else:
                fixes.append(f"{rebuild_advice(self.root)}, or put back a good copy of the file")
        if "EXTRA" in kinds:
            fixes.append(f"delete or move the shards {MANIFEST} does not list (the loader reads every shard there)")
        return "; ".join(fixes)


def rebuild_advice(root: Path) -> str:
    """The rerun of `mmr3 build` that repairs a build in `root`, and what it will redo.

    A rerun with the build's settings reuses every shard whose resume marker (.mmr3-build/) and
    sha256 agree, renders the missing and changed ones again and deletes shards of an older plan.
    """
    config = root / BUILD_CONFIG
    if config.is_file():
        command = f"`mmr3 build --config {config} --out {root}`"
    else:
        command = f"the `mmr3 build --out {root} ...` command that made it"
    if (root / BUILD_STATE_DIR).is_dir():
        redo = "it renders only the missing or changed shards again"
    else:
        redo = f"without its resume state {BUILD_STATE_DIR}/ it renders every shard again"
    return f"rerun {command} ({redo})"


def read_manifest(root: Path) -> tuple[dict | None, str | None]:
    """The folder's mmr3 manifest and None, or (None, the problem with it).

    (None, None): no manifest.json. A manifest.json that is not an mmr3 one (another `kind`) or
    whose entries have the wrong shape is a problem, not a reason to skip the check: the folder's
    fingerprint is the manifest's hash, so an unchecked manifest would vouch for any shards.
    """
    path = root / MANIFEST
    if not path.is_file():
        return None, None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return None, f"UNREADABLE {MANIFEST}: not valid JSON ({err})"
    kind = manifest.get("kind") if isinstance(manifest, dict) else None
    if kind not in (BUILD_KIND, DEMO_KIND):
        found = f"kind {kind!r}" if isinstance(manifest, dict) else f"a JSON {type(manifest).__name__}"
        return None, (
            f"UNKNOWN {MANIFEST}: not an mmr3 build manifest ({found}; `mmr3 build` writes kind {BUILD_KIND!r})"
        )
    shape = _manifest_shape_problem(manifest)
    if shape:
        return None, f"MALFORMED {MANIFEST}: {shape}"
    return manifest, None


_SHARD_FIELDS = {"file": str, "sha256": str, "rows": int}  # and "bytes": int, in manifests since format 2


def _manifest_shape_problem(manifest: dict) -> str | None:
    """What in an mmr3 manifest's `tasks` is not of the type `mmr3 build` writes, or None."""

    def kind_of(value) -> str:
        return "null" if value is None else type(value).__name__

    tasks = manifest.get("tasks")
    if not isinstance(tasks, dict):
        return f"'tasks' is {kind_of(tasks)}, not a mapping of task -> split -> entry"
    for task, splits in tasks.items():
        if not isinstance(splits, dict):
            return f"tasks.{task} is {kind_of(splits)}, not a mapping of split -> entry"
        for split, entry in splits.items():
            where = f"tasks.{task}.{split}"
            if not isinstance(entry, dict):
                return f"{where} is {kind_of(entry)}, not a mapping"
            if manifest["kind"] == DEMO_KIND:
                shards = [(where, entry)]
            elif not isinstance(entry.get("shards"), list):
                return f"{where}.shards is {kind_of(entry.get('shards'))}, not a list"
            else:
                shards = [(f"{where}.shards[{i}]", s) for i, s in enumerate(entry["shards"])]
            for at, shard in shards:
                if not isinstance(shard, dict):
                    return f"{at} is {kind_of(shard)}, not a mapping"
                wanted = {**_SHARD_FIELDS, **({"bytes": int} if "bytes" in shard else {})}
                for name, typ in wanted.items():
                    value = shard.get(name)
                    if not isinstance(value, typ) or isinstance(value, bool):
                        return f"{at}.{name} is {value!r} ({kind_of(value)}), not {typ.__name__}"
    return None


def _listed_shards(manifest: dict, task: str, split: str) -> list[dict] | None:
    """The shards the manifest lists for a split: a build's `shards`, the demo's one `file`."""
    splits = (manifest.get("tasks") or {}).get(task)
    entry = splits.get(split) if isinstance(splits, dict) else None
    if not isinstance(entry, dict):
        return None
    if manifest["kind"] == DEMO_KIND:
        return [{k: entry.get(k) for k in ("file", "sha256", "rows", "bytes")}]
    return [s for s in entry.get("shards") or [] if isinstance(s, dict)]


def verify_split(root: Path, task: str, split: str, full: bool = False) -> SplitCheck:
    """Checks one split's shards against the folder's manifest.json; cheap unless `full`.

    Cheap, what every load does: every shard the manifest lists is there, no unlisted
    `<split>-*.parquet` is, each one's parquet footer parses and counts the listed rows, and its
    size is the listed `bytes` (a manifest older than `bytes`: presence and rows only). `full` also
    compares every shard's sha256 (`mmr3 info --verify`). Without an mmr3 manifest only the
    footers are read, so a truncated shard is still named.
    """
    check = SplitCheck(root, task, split, files=split_files(root, task, split))
    manifest, problem = read_manifest(root)
    if problem:
        check.against, check.problems = MANIFEST, [problem]
        return check
    on_disk = {_rel(root, f): f for f in check.files}
    listed = _listed_shards(manifest, task, split) if manifest else None
    if manifest is None or (listed is None and not on_disk):
        for rel, path in on_disk.items():
            rows, problem = _footer_rows(path)
            check.rows += rows or 0
            if problem:
                check.problems.append(f"TRUNCATED shard {rel}: {problem}")
        return check
    check.against, check.kind = MANIFEST, manifest["kind"]
    if listed is None:
        check.problems.append(
            f"UNLISTED split: {len(on_disk)} shard(s) in {task}/ but {MANIFEST} has no {task}/{split} entry "
            "(a build that stopped before finishing this split?)"
        )
        return check
    has_bytes = all(isinstance(s.get("bytes"), int) for s in listed)
    compared = (["bytes"] if has_bytes else []) + ["rows"] + (["sha256"] if full else [])
    check.compared = ", ".join(compared) + ("" if has_bytes else f"; this {MANIFEST} predates shard sizes")
    for shard in listed:
        rel = str(shard.get("file"))
        path = root / rel
        if not path.is_file():
            check.problems.append(f"MISSING shard {rel} ({MANIFEST} lists it with {shard.get('rows')} rows)")
            continue
        size = path.stat().st_size
        rows, problem = _footer_rows(path)
        check.rows += rows or 0
        if problem:
            check.problems.append(f"TRUNCATED shard {rel}: {problem}, {size:,} bytes{_listed_bytes(shard)}")
        elif has_bytes and size != shard["bytes"]:
            check.problems.append(f"CHANGED shard {rel}: {size:,} bytes{_listed_bytes(shard)}")
        elif rows != shard.get("rows"):
            check.problems.append(f"CHANGED shard {rel}: {rows:,} rows, {MANIFEST} lists {shard.get('rows')}")
        elif full and _sha256_file(path) != shard.get("sha256"):
            check.problems.append(f"CHANGED shard {rel}: its sha256 is not the one {MANIFEST} lists")
    for rel in sorted(set(on_disk) - {str(s.get("file")) for s in listed}):
        check.problems.append(f"EXTRA shard {rel}: not in {MANIFEST}")
    return check


def _listed_bytes(shard: dict) -> str:
    return f", {MANIFEST} lists {shard['bytes']:,}" if isinstance(shard.get("bytes"), int) else ""


def _footer_rows(path: Path) -> tuple[int | None, str | None]:
    """The row count in a parquet file's footer (read without the data), or why it does not parse."""
    try:
        return pq.read_metadata(path).num_rows, None
    except (pa.ArrowException, OSError) as err:
        first = " ".join(str(err).split()).split(". ")[0].rstrip(".")[:100]
        return None, f"its parquet footer does not read, cut short? ({first})"


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- fingerprints


def fingerprint(source: str = "benchmark", location: str | None = None) -> str:
    """Which data a run scored, for its results: the build manifest's sha256, or the hub id.

    `demo:<sha>` for the bundled set; `build:<sha>` for a folder with `mmr3 build`'s manifest.json;
    `files:<sha>` (names and sizes of the shards) for a folder without one; `hub:<id>` otherwise.
    `with_kept_rows` adds the rows scored when bad rows were dropped.
    """
    if source == "demo":
        return f"demo:{_sha256_16((DEMO_DIR / MANIFEST).read_bytes())}"
    location = location or data_location()
    root = Path(os.path.expanduser(location))
    if not root.is_dir():
        return f"hub:{location}"
    manifest = root / MANIFEST
    if manifest.is_file():
        return f"build:{_sha256_16(manifest.read_bytes())}"
    shards = sorted(p for p in root.glob("*/*.parquet"))
    listing = "\n".join(f"{p.relative_to(root)} {p.stat().st_size}" for p in shards)
    return f"files:{_sha256_16(listing.encode())}"


def with_kept_rows(data_fingerprint: str, kept_ids: Iterable[str]) -> str:
    """`<fingerprint>+rows:<sha>`: the data, and which of its rows were scored after `check_rows`
    dropped some (the sha256 of the kept ids, in order). Two runs that dropped different rows of
    the same build differ here, not only in their counts."""
    return f"{data_fingerprint}+rows:{_sha256_16(chr(10).join(kept_ids).encode())}"


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


def check_rows(ds: datasets.Dataset, task: str | None = None, where: str = "") -> RowCheck:
    """Finds the rows a task cannot score faithfully.

    Dropped, each with its reason: no id, group or variant; an id seen before (the first row
    wins); no non-empty ground truth; a missing image or one that does not decode in full. A
    missing column or a row of another task is not a bad row but a wrong dataset: DataSchemaError.
    """
    require_columns(ds)
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
            at = f" in the {task} split at {where}" if where else ""
            raise DataSchemaError(
                f"row {row_id!r}{at} belongs to task {row['task']!r}, not {task!r}: a shard of another task in "
                f"the {task}/ folder? Rebuild it with `mmr3 build`, or move that shard back"
            )
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
