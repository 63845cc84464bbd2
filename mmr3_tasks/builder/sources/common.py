"""What every source reader shares: the pool it returns, its errors, checked reading of the official
files, hub loading, the rephrase-question rules, and the image check the pipeline runs lazily."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mmr3_tasks import imagecheck
from mmr3_tasks.builder import images as imgs
from mmr3_tasks.builder.render import ImageRef, RephraseItem, safe_id
from mmr3_tasks.builder.rows import clean_answers
from mmr3_tasks.errors import MMR3Error

HUB_PREFIX = "hub:"

# The paper rephrases only questions of more than 10 words (its §3.1).
MIN_QUESTION_WORDS = 11

# Official split names -> ours (OK-VQA, InfographicsVQA and COCO have train and val; val is our test).
OFFICIAL_SPLITS = {"val": "test", "train": "train"}

LICENSES = {
    "okvqa": "OK-VQA annotations; image: COCO (Flickr, per-image Creative Commons licence; see COCO terms of use)",
    "infographicvqa": "InfographicsVQA (DocVQA challenge; research use, see rrc.cvc.uab.es terms)",
    "gldv2": "Google Landmarks v2 (per-image licence from Wikimedia Commons: CC-BY / CC-BY-SA / public domain)",
    "mit_indoor": "MIT Indoor Scenes (Quattoni & Torralba 2009; images collected from the web, research use)",
    "coco": "COCO annotations CC BY 4.0; image: Flickr, per-image Creative Commons licence (see COCO terms of use)",
}


class SourceError(MMR3Error, ValueError):
    """A source folder or hub dataset that is not in the expected format; names what is missing."""


@dataclass
class SourcePool:
    name: str
    task: str
    splits: dict[str, list] = field(default_factory=dict)  # "test" / "train" / "any" -> items
    filtered: Counter = field(default_factory=Counter)  # not eligible by the paper's rules
    skipped: Counter = field(default_factory=Counter)  # bad annotations
    fingerprint: dict = field(default_factory=dict)


def is_hub(location: str) -> bool:
    return location.startswith(HUB_PREFIX)


def hub_id(location: str, default: str) -> str:
    """The dataset id of a `hub:<id>` location; `hub:` alone means the source's usual dataset."""
    return location[len(HUB_PREFIX) :] or default


def word_count(question: str) -> int:
    return len(question.split())


# --------------------------------------------------------------------------- local files


def file_fingerprint(paths: list[Path], root: Path, none_found: str = "") -> dict:
    """The sha256 of each annotation file read, by its path under `root`.

    Raises:
        SourceError: `none_found` (what was expected, and where to get it) when `paths` is empty.
    """
    if not paths and none_found:
        raise SourceError(none_found)
    return {"files": {str(p.relative_to(root)): imgs.sha256_file(p) for p in sorted(paths)}}


def load_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SourceError(f"{path} is not valid JSON ({err}); re-download it") from err


# A field's expected type: ids and sizes are numbers, texts are strings (bool is no number here).
NUMBER = (int, float)


def records(data, key: str, path: Path, fields: dict, optional: dict | None = None, fix: str = "") -> list[dict]:
    """`data[key]`: a list of objects, each with `fields` (name -> type or tuple of types) and, when
    present and not null, `optional` ones of those types.

    Raises:
        SourceError: naming the file, the key or the entry and field that is missing or mistyped,
            and the fix (re-download the official file).
    """
    fix = fix or "re-download the official file"
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        if isinstance(data, dict) and key in data:  # there, but not a list
            raise SourceError(f"{path}: {key!r} is {data[key]!r:.40} ({type(data[key]).__name__}), not a list: {fix}")
        has = f"its keys are {sorted(data)[:12]}" if isinstance(data, dict) else f"it is a JSON {type(data).__name__}"
        raise SourceError(f"{path}: no {key!r} list ({has}); not the official format: {fix}")
    found = data[key]
    for i, record in enumerate(found):
        if not isinstance(record, dict):
            raise SourceError(f"{path}: {key}[{i}] is a {type(record).__name__}, not an object: {fix}")
        missing = [name for name in fields if name not in record]
        if missing:
            raise SourceError(f"{path}: {key}[{i}] lacks the key(s) {missing} (has {sorted(record)}): {fix}")
        for name, kind in [*fields.items(), *(optional or {}).items()]:
            value = record.get(name)
            if value is None and name not in fields:
                continue
            kinds = kind if isinstance(kind, tuple) else (kind,)
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise SourceError(
                    f"{path}: {key}[{i}].{name} is {value!r:.60} ({type(value).__name__}), "
                    f"expected {_type_names(kind)}: {fix}"
                )
    return found


def _type_names(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "a number", float: "a number", bool: "a boolean", str: "a string", list: "a list"}
    return " or ".join(dict.fromkeys(names[k] for k in kinds))


def first_dir(candidates: list[Path], what: str) -> Path:
    for c in candidates:
        if c.is_dir():
            return c
    raise SourceError(f"no {what} folder; looked for {', '.join(str(c) for c in candidates)}")


# --------------------------------------------------------------------------- hub datasets


def load_hub(dataset_id: str, config: str | None = None):
    """A hub dataset (or a local folder in hub layout) with images left encoded."""
    import datasets

    try:
        dsd = datasets.load_dataset(dataset_id, config) if config else datasets.load_dataset(dataset_id)
    except Exception as err:  # the hub's errors vary by version; keep the cause, add the fix
        raise SourceError(
            f"cannot load hub dataset {dataset_id!r}{f' (config {config!r})' if config else ''}: {err}. "
            "Check the id, log in (`hf auth login`) if it is gated, or pass a local folder instead."
        ) from err
    out = {}
    for split, ds in dsd.items():
        if "image" in ds.column_names and isinstance(ds.features["image"], datasets.Image):
            ds = ds.cast_column("image", datasets.Image(decode=False))
        out[split] = ds
    return out


def _hub_split_role(name: str) -> str | None:
    """Hub split names -> our splits: train* -> train, val*/validation -> test, others unused."""
    lowered = name.lower()
    if lowered.startswith("train"):
        return "train"
    if lowered.startswith("val"):
        return "test"
    return None


def hub_splits(pool: SourcePool, dataset_id: str, config: str | None = None) -> Iterator[tuple[str, str, object]]:
    """(hub split name, our split, dataset) for each train / validation split, in name order; sets
    the pool's fingerprint and counts the rows of the other splits as filtered."""
    splits = load_hub(dataset_id, config)
    pool.fingerprint = {
        "hub": dataset_id,
        "splits": {k: getattr(v, "_fingerprint", "") for k, v in sorted(splits.items())},
    }
    for name, ds in sorted(splits.items()):
        role = _hub_split_role(name)
        if role is None:
            pool.filtered[f"hub split {name!r} (neither train nor validation)"] += len(ds)
            continue
        yield name, role, ds


def require_columns(ds, wanted: tuple[str, ...], dataset_id: str, split: str, layout: str) -> None:
    """A hub split has the columns a reader needs, or SourceError naming the dataset, split and columns."""
    missing = [c for c in wanted if c not in ds.column_names]
    if missing:
        raise SourceError(
            f"hub dataset {dataset_id} split {split!r} lacks the columns {missing} (has {ds.column_names}): "
            f"not the {layout} layout; pass a dataset in that layout, or a local folder in the official format"
        )


def hub_image(ds, index: int, key: str) -> ImageRef:
    """The image of hub row `index`, read only when fetched."""

    def fetch() -> bytes:
        image = ds[index]["image"]
        if not image:
            raise imgs.BadImageError(f"hub row {index}: no image")
        if image.get("bytes"):
            return image["bytes"]
        if image.get("path") and os.path.isfile(image["path"]):
            return Path(image["path"]).read_bytes()
        raise imgs.BadImageError(f"hub row {index}: image has neither bytes nor a readable path")

    return ImageRef(key=key, fetch=fetch)


# --------------------------------------------------------------------------- rephrase questions


def long_enough(pool: SourcePool, question: str) -> bool:
    """Whether the paper would rephrase `question` (more than 10 words); counts it when not."""
    if word_count(question) < MIN_QUESTION_WORDS:
        pool.filtered["question of 10 words or fewer"] += 1
        return False
    return True


def ranked_answers(answers: list[str]) -> list[str]:
    """Most frequent first, ties in first-seen order, de-duplicated."""
    counts = Counter(" ".join(a.split()).casefold() for a in answers if a and a.strip())
    first: dict[str, str] = {}
    for a in answers:
        if a and a.strip():
            first.setdefault(" ".join(a.split()).casefold(), " ".join(a.split()))
    order = sorted(first, key=lambda k: (-counts[k], list(first).index(k)))
    return [first[k] for k in order]


def add_question(
    items: list, pool: SourcePool, source_id, question: str, answers: list[str], image: ImageRef, image_source: str
) -> None:
    """Appends the pool's item for one long-enough question, or counts it when no answer is left."""
    answers = clean_answers(answers)
    if not answers:
        pool.skipped["question without a non-empty answer"] += 1
        return
    items.append(
        RephraseItem(
            group_id=safe_id(pool.name, source_id),
            source=pool.name,
            source_id=str(source_id),
            image=image,
            question=" ".join(question.split()),
            answers=answers,
            image_license=LICENSES[pool.name],
            image_source=image_source,
        )
    )


def hub_questions(
    pool: SourcePool,
    dataset_id: str,
    layout: str,
    columns: tuple[str, ...],
    parse: Callable[[int, dict], tuple[object, str, list[str]]],
    config: str | None = None,
) -> SourcePool:
    """A rephrase pool from a hub dataset of questions (columns `question`, `answers` and those of
    `columns` it has): `parse(row index, row)` gives a long-enough question's (id, image key, answers)."""
    for name, role, ds in hub_splits(pool, dataset_id, config):
        require_columns(ds, ("question", "answers"), dataset_id, name, layout)
        items = pool.splits.setdefault(role, [])
        meta = ds.select_columns([c for c in columns if c in ds.column_names])
        for i, row in enumerate(meta):
            if not long_enough(pool, row["question"] or ""):
                continue
            qid, image_key, answers = parse(i, row)
            image = hub_image(ds, i, image_key)
            add_question(items, pool, qid, row["question"], answers, image, f"hub {dataset_id} [{name}] row {i}")
    return pool


# --------------------------------------------------------------------------- used by the pipeline


def validate_image(ref: ImageRef) -> str | None:
    """Why the image cannot be used (a short reason for the report), or None when it decodes in full.

    Anything that still fails later, when rendered, is counted there.
    """
    if ref.path is not None and ref.fetch is None:
        if not os.path.isfile(ref.path):
            return "missing image file"
        if os.path.getsize(ref.path) == 0:
            return "empty image file"
        return None if imagecheck.decodes(ref.path) else "corrupt image file"
    if ref.fetch is not None:
        try:
            data = ref.fetch()
        except imgs.BadImageError:
            return "missing or empty image in the dataset"
        except OSError:
            return "unreadable image file"
        return None if imagecheck.decodes(data) else "corrupt image file"
    return None


def stable_fraction(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by (seed, key): assigns images of a split-less source to test/train."""
    digest = hashlib.sha256(f"mmr3-split:{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
