"""The public sources, read from local copies in their official formats or from hub datasets.

Each reader returns a `SourcePool`: the eligible items per split ("test", "train", or "any" for a
source without an official split), the counts of what was filtered out by the paper's rules, the
counts of bad annotations skipped, and a fingerprint of the inputs (sha256 of the annotation files,
or the hub dataset's id and fingerprint) for the manifest. Image files are not opened here: the
pipeline validates them lazily, only as many as it needs.

Official formats (docs/data.md gives the download pages):

- OK-VQA: `OpenEnded_mscoco_{train,val}2014_questions.json`, `mscoco_{train,val}2014_annotations.json`,
  COCO 2014 images `{train,val}2014/COCO_{train,val}2014_<12-digit id>.jpg`.
- InfographicsVQA: `infographicsVQA_{train,val}_v1.0.json` ({"data": [{questionId, question,
  image_local_name, answers, ...}]}) and the images folder.
- GLDv2: `train.csv` (id,url,landmark_id), `train_label_to_category.csv` (landmark_id,category),
  images `train/<a>/<b>/<c>/<id>.jpg`.
- MIT Indoor 67: `Images/<class>/<file>.jpg`, `TrainImages.txt`, `TestImages.txt`.
- COCO: `annotations/instances_{train,val}{2017,2014}.json` and `{train,val}{year}/<file_name>`.

Hub datasets: OK-VQA and InfographicsVQA as lmms-eval's own tasks load them (`OKVQA_HUB`,
`INFOVQA_HUB`), COCO with boxes as `detection-datasets/coco` lays it out (lmms-eval's COCO tasks
are captions, without boxes). Pass `hub:<dataset id or local folder>`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mmr3_tasks import imagecheck
from mmr3_tasks.builder import images as imgs
from mmr3_tasks.builder import labels
from mmr3_tasks.builder.masks import MAX_AREA_RATIO, MIN_AREA_RATIO
from mmr3_tasks.builder.render import ContextItem, ImageRef, RephraseItem, RestyleItem, safe_id
from mmr3_tasks.builder.rows import clean_answers
from mmr3_tasks.errors import MMR3Error

log = logging.getLogger(__name__)

HUB_PREFIX = "hub:"
# The hub datasets lmms-eval 0.7.3's own ok_vqa / infovqa tasks load (their `dataset_path`).
OKVQA_HUB = "lmms-lab-encoder/OK-VQA"
INFOVQA_HUB = "lmms-lab-encoder/DocVQA"
INFOVQA_HUB_CONFIG = "InfographicVQA"
COCO_HUB = "detection-datasets/coco"

# The paper rephrases only questions of more than 10 words (its §3.1).
MIN_QUESTION_WORDS = 11

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


def word_count(question: str) -> int:
    return len(question.split())


def _file_fingerprint(paths: list[Path], root: Path) -> dict:
    return {"files": {str(p.relative_to(root)): imgs.sha256_file(p) for p in sorted(paths)}}


def _load_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SourceError(f"{path} is not valid JSON ({err}); re-download it") from err


# A field's expected type: ids and sizes are numbers, texts are strings (bool is no number here).
_NUMBER = (int, float)


def _records(data, key: str, path: Path, fields: dict, optional: dict | None = None, fix: str = "") -> list[dict]:
    """`data[key]`: a list of objects, each with `fields` (name -> type or tuple of types) and, when
    present and not null, `optional` ones of those types.

    Raises:
        SourceError: naming the file, the key or the entry and field that is missing or mistyped,
            and the fix (re-download the official file).
    """
    fix = fix or "re-download the official file"
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        has = f"its keys are {sorted(data)[:12]}" if isinstance(data, dict) else f"it is a JSON {type(data).__name__}"
        raise SourceError(f"{path}: no {key!r} list ({has}); not the official format: {fix}")
    records = data[key]
    for i, record in enumerate(records):
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
    return records


def _type_names(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "a number", float: "a number", bool: "a boolean", str: "a string", list: "a list"}
    return " or ".join(dict.fromkeys(names[k] for k in kinds))


def _require_columns(ds, wanted: tuple[str, ...], dataset_id: str, split: str, layout: str) -> None:
    """A hub split has the columns a reader needs, or SourceError naming the dataset, split and columns."""
    missing = [c for c in wanted if c not in ds.column_names]
    if missing:
        raise SourceError(
            f"hub dataset {dataset_id} split {split!r} lacks the columns {missing} (has {ds.column_names}): "
            f"not the {layout} layout; pass a dataset in that layout, or a local folder in the official format"
        )


def _first_dir(candidates: list[Path], what: str) -> Path:
    for c in candidates:
        if c.is_dir():
            return c
    raise SourceError(f"no {what} folder; looked for {', '.join(str(c) for c in candidates)}")


def _ranked_answers(answers: list[str]) -> list[str]:
    """Most frequent first, ties in first-seen order, de-duplicated."""
    counts = Counter(" ".join(a.split()).casefold() for a in answers if a and a.strip())
    first: dict[str, str] = {}
    for a in answers:
        if a and a.strip():
            first.setdefault(" ".join(a.split()).casefold(), " ".join(a.split()))
    order = sorted(first, key=lambda k: (-counts[k], list(first).index(k)))
    return [first[k] for k in order]


# --------------------------------------------------------------------------- OK-VQA

_OKVQA_SPLITS = {"val": "test", "train": "train"}


def okvqa(location: str) -> SourcePool:
    if is_hub(location):
        return _okvqa_hub(location[len(HUB_PREFIX) :] or OKVQA_HUB)
    root = Path(location).expanduser()
    pool = SourcePool("okvqa", "rephrase")
    used = []
    for official, split in _OKVQA_SPLITS.items():
        qpath = root / f"OpenEnded_mscoco_{official}2014_questions.json"
        apath = root / f"mscoco_{official}2014_annotations.json"
        if not qpath.is_file() and not apath.is_file():
            continue
        if not (qpath.is_file() and apath.is_file()):
            raise SourceError(f"OK-VQA {official}2014: need both {qpath.name} and {apath.name} in {root}")
        used += [qpath, apath]
        image_dir = _first_dir(
            [root / f"{official}2014", root / "images" / f"{official}2014", root / "coco" / f"{official}2014"],
            f"COCO {official}2014 image",
        )
        fix = "re-download it (https://okvqa.allenai.org/download.html)"
        ann_records = _records(_load_json(apath), "annotations", apath, {"question_id": int, "answers": list}, fix=fix)
        for i, ann in enumerate(ann_records):
            if not all(isinstance(a, dict) for a in ann["answers"]):
                raise SourceError(f"{apath}: annotations[{i}].answers holds a non-object: {fix}")
        annotations = {a["question_id"]: a for a in ann_records}
        questions = _records(
            _load_json(qpath), "questions", qpath, {"question_id": int, "question": str, "image_id": int}, fix=fix
        )
        items = []
        for q in sorted(questions, key=lambda q: q["question_id"]):
            if word_count(q["question"]) < MIN_QUESTION_WORDS:
                pool.filtered["question of 10 words or fewer"] += 1
                continue
            ann = annotations.get(q["question_id"])
            if ann is None:
                pool.skipped["question without annotation"] += 1
                continue
            raw = [a.get("raw_answer", "") for a in ann["answers"]]
            processed = [a.get("answer", "") for a in ann["answers"]]
            answers = clean_answers(_ranked_answers(raw) + _ranked_answers(processed))
            if not answers:
                pool.skipped["question without a non-empty answer"] += 1
                continue
            image_id = int(q["image_id"])
            name = f"COCO_{official}2014_{image_id:012d}.jpg"
            items.append(
                RephraseItem(
                    group_id=safe_id("okvqa", q["question_id"]),
                    source="okvqa",
                    source_id=str(q["question_id"]),
                    image=ImageRef(key=f"coco2014:{image_id}", path=str(image_dir / name)),
                    question=" ".join(q["question"].split()),
                    answers=answers,
                    image_license=LICENSES["okvqa"],
                    image_source=f"OK-VQA {official}2014; COCO image {name}",
                )
            )
        pool.splits[split] = items
    if not used:
        raise SourceError(
            f"no OK-VQA files in {root}: expected OpenEnded_mscoco_{{train,val}}2014_questions.json and "
            "mscoco_{train,val}2014_annotations.json (https://okvqa.allenai.org/download.html)"
        )
    pool.fingerprint = _file_fingerprint(used, root)
    return pool


def _hub_split_role(name: str) -> str | None:
    """Hub split names -> our splits: train* -> train, val*/validation -> test, others unused."""
    lowered = name.lower()
    if lowered.startswith("train"):
        return "train"
    if lowered.startswith("val"):
        return "test"
    return None


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


def _hub_fetch(ds, index: int) -> Callable[[], bytes]:
    def fetch() -> bytes:
        image = ds[index]["image"]
        if not image:
            raise imgs.BadImageError(f"hub row {index}: no image")
        if image.get("bytes"):
            return image["bytes"]
        if image.get("path") and os.path.isfile(image["path"]):
            return Path(image["path"]).read_bytes()
        raise imgs.BadImageError(f"hub row {index}: image has neither bytes nor a readable path")

    return fetch


def _hub_fingerprint(dataset_id: str, splits: dict) -> dict:
    return {"hub": dataset_id, "splits": {k: getattr(v, "_fingerprint", "") for k, v in sorted(splits.items())}}


def _okvqa_hub(dataset_id: str) -> SourcePool:
    pool = SourcePool("okvqa", "rephrase")
    splits = load_hub(dataset_id)
    for name, ds in sorted(splits.items()):
        role = _hub_split_role(name)
        if role is None:
            pool.filtered[f"hub split {name!r} (neither train nor validation)"] += len(ds)
            continue
        _require_columns(ds, ("question", "answers"), dataset_id, name, f"OK-VQA ({OKVQA_HUB})")
        items = pool.splits.setdefault(role, [])
        columns = ds.column_names
        meta = ds.select_columns([c for c in ("question", "question_id", "image_id", "answers") if c in columns])
        for i, row in enumerate(meta):
            if word_count(row["question"] or "") < MIN_QUESTION_WORDS:
                pool.filtered["question of 10 words or fewer"] += 1
                continue
            answers = clean_answers(_ranked_answers(list(row.get("answers") or [])))
            if not answers:
                pool.skipped["question without a non-empty answer"] += 1
                continue
            qid = row.get("question_id", i)
            image_id = row.get("image_id") if row.get("image_id") is not None else f"q{qid}"
            items.append(
                RephraseItem(
                    group_id=safe_id("okvqa", qid),
                    source="okvqa",
                    source_id=str(qid),
                    image=ImageRef(key=f"coco2014:{image_id}", fetch=_hub_fetch(ds, i)),
                    question=" ".join(row["question"].split()),
                    answers=answers,
                    image_license=LICENSES["okvqa"],
                    image_source=f"hub {dataset_id} [{name}] row {i}",
                )
            )
    pool.fingerprint = _hub_fingerprint(dataset_id, splits)
    return pool


# --------------------------------------------------------------------------- InfographicsVQA

_INFOVQA_SPLITS = {"val": "test", "train": "train"}


def infovqa(location: str) -> SourcePool:
    if is_hub(location):
        return _infovqa_hub(location[len(HUB_PREFIX) :] or INFOVQA_HUB)
    root = Path(location).expanduser()
    pool = SourcePool("infographicvqa", "rephrase")
    used = []
    for official, split in _INFOVQA_SPLITS.items():
        path = root / f"infographicsVQA_{official}_v1.0.json"
        if not path.is_file():
            continue
        used.append(path)
        image_dir = _first_dir(
            [root / "infographicsvqa_images", root / "images", root / f"{official}_images", root],
            "InfographicsVQA image",
        )
        records = _records(
            _load_json(path),
            "data",
            path,
            {"questionId": int, "question": str, "image_local_name": str},
            optional={"answers": list},
            fix="re-download it (https://rrc.cvc.uab.es/?ch=17)",
        )
        items = []
        for q in sorted(records, key=lambda q: q["questionId"]):
            if word_count(q["question"]) < MIN_QUESTION_WORDS:
                pool.filtered["question of 10 words or fewer"] += 1
                continue
            answers = clean_answers(q.get("answers") or [])
            if not answers:
                pool.skipped["question without a non-empty answer"] += 1
                continue
            name = q["image_local_name"]
            items.append(
                RephraseItem(
                    group_id=safe_id("infographicvqa", q["questionId"]),
                    source="infographicvqa",
                    source_id=str(q["questionId"]),
                    image=ImageRef(key=f"infographicvqa:{name}", path=str(image_dir / name)),
                    question=" ".join(q["question"].split()),
                    answers=answers,
                    image_license=LICENSES["infographicvqa"],
                    image_source=f"InfographicsVQA {official}; {q.get('image_url') or name}",
                )
            )
        pool.splits[split] = items
    if not used:
        raise SourceError(
            f"no InfographicsVQA files in {root}: expected infographicsVQA_{{train,val}}_v1.0.json and the "
            "images folder (https://rrc.cvc.uab.es/?ch=17, task 3)"
        )
    pool.fingerprint = _file_fingerprint(used, root)
    return pool


def _infovqa_hub(dataset_id: str) -> SourcePool:
    pool = SourcePool("infographicvqa", "rephrase")
    config = INFOVQA_HUB_CONFIG if dataset_id == INFOVQA_HUB else None
    splits = load_hub(dataset_id, config)
    for name, ds in sorted(splits.items()):
        role = _hub_split_role(name)
        if role is None:
            pool.filtered[f"hub split {name!r} (neither train nor validation)"] += len(ds)
            continue
        _require_columns(ds, ("question", "answers"), dataset_id, name, f"InfographicsVQA ({INFOVQA_HUB})")
        items = pool.splits.setdefault(role, [])
        wanted = ("question", "questionId", "answers", "image_url", "image_local_name")
        meta = ds.select_columns([c for c in wanted if c in ds.column_names])
        for i, row in enumerate(meta):
            if word_count(row["question"] or "") < MIN_QUESTION_WORDS:
                pool.filtered["question of 10 words or fewer"] += 1
                continue
            answers = clean_answers(row.get("answers") or [])
            if not answers:
                pool.skipped["question without a non-empty answer"] += 1
                continue
            qid = row.get("questionId", i)
            image_key = row.get("image_local_name") or row.get("image_url") or f"q{qid}"
            items.append(
                RephraseItem(
                    group_id=safe_id("infographicvqa", qid),
                    source="infographicvqa",
                    source_id=str(qid),
                    image=ImageRef(key=f"infographicvqa:{image_key}", fetch=_hub_fetch(ds, i)),
                    question=" ".join(row["question"].split()),
                    answers=answers,
                    image_license=LICENSES["infographicvqa"],
                    image_source=f"hub {dataset_id} [{name}] row {i}",
                )
            )
    pool.fingerprint = _hub_fingerprint(dataset_id, splits)
    return pool


# --------------------------------------------------------------------------- GLDv2


def gldv2(location: str, seed: int = 0) -> SourcePool:
    """GLDv2's labelled `train.csv`, at most one image per landmark (chosen with the seed): the
    paper's test set has about one image per name (612 labels, 604 names). No official test split
    carries names, so the pool is split by the pipeline ("any")."""
    if is_hub(location):
        raise SourceError("GLDv2 is read from a local copy only (train.csv, train_label_to_category.csv, train/)")
    root = Path(location).expanduser()
    train_csv, labels_csv = root / "train.csv", root / "train_label_to_category.csv"
    for p in (train_csv, labels_csv):
        if not p.is_file():
            raise SourceError(
                f"GLDv2: {p} missing; download train.csv, train_label_to_category.csv and the train/ images "
                "(https://github.com/cvdfoundation/google-landmark)"
            )
    image_dir = _first_dir([root / "train", root / "images" / "train", root / "images"], "GLDv2 train image")
    pool = SourcePool("gldv2", "restyle")
    names: dict[str, list[str]] = {}
    for row in _csv_rows(labels_csv, ("landmark_id", "category")):
        answers = labels.landmark_answers(row["category"])
        if answers and row["landmark_id"].strip():
            names[row["landmark_id"].strip()] = answers
    by_landmark: dict[str, list[str]] = defaultdict(list)
    for row in _csv_rows(train_csv, ("id", "landmark_id")):
        image_id, landmark = row["id"].strip(), row["landmark_id"].strip()
        if not re.fullmatch(r"[0-9a-f]{3,}", image_id):
            pool.skipped["row with a malformed image id"] += 1
            continue
        by_landmark[landmark].append(image_id)
    items = []
    for landmark in sorted(by_landmark, key=lambda x: (len(x), x)):
        ids = sorted(by_landmark[landmark])
        if landmark not in names:
            pool.skipped["landmark without a category name"] += len(ids)
            continue
        chosen = random.Random(f"mmr3-gldv2:{seed}:{landmark}").choice(ids)
        pool.filtered["other images of an already chosen landmark"] += len(ids) - 1
        path = image_dir / chosen[0] / chosen[1] / chosen[2] / f"{chosen}.jpg"
        items.append(
            RestyleItem(
                group_id=safe_id("gldv2", chosen),
                source="gldv2",
                source_id=chosen,
                image=ImageRef(key=f"gldv2:{chosen}", path=str(path)),
                answers=names[landmark],
                image_license=LICENSES["gldv2"],
                image_source=f"GLDv2 train/{chosen[0]}/{chosen[1]}/{chosen[2]}/{chosen}.jpg (landmark {landmark})",
            )
        )
    pool.splits["any"] = items
    pool.fingerprint = _file_fingerprint([train_csv, labels_csv], root)
    return pool


def _csv_rows(path: Path, wanted: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """The rows of a GLDv2 CSV (streamed: train.csv has millions), which must have the `wanted`
    columns; the missing cells of a short line read as ""."""
    fix = "re-download it (https://github.com/cvdfoundation/google-landmark)"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, restval="")
            if not reader.fieldnames or not set(wanted) <= set(reader.fieldnames):
                raise SourceError(f"{path} lacks the columns {','.join(wanted)} (has {reader.fieldnames}): {fix}")
            yield from reader
    except UnicodeDecodeError as err:
        raise SourceError(f"{path} is not UTF-8 text ({err}): {fix}") from err


# --------------------------------------------------------------------------- MIT Indoor 67


def mit_indoor(location: str) -> SourcePool:
    if is_hub(location):
        raise SourceError("MIT Indoor is read from a local copy only (Images/, TrainImages.txt, TestImages.txt)")
    root = Path(location).expanduser()
    image_dir = _first_dir([root / "Images", root / "indoorCVPR_09" / "Images"], "MIT Indoor Images")
    pool = SourcePool("mit_indoor", "restyle")
    used = []
    for list_name, split in (("TestImages.txt", "test"), ("TrainImages.txt", "train")):
        path = root / list_name
        if not path.is_file():
            continue
        used.append(path)
        items = []
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise SourceError(f"MIT Indoor: {path} is not UTF-8 text ({err}); re-download it") from err
        for line in sorted({ln.strip() for ln in text.splitlines() if ln.strip()}):
            rel = line.replace("\\", "/")
            if "/" not in rel:
                pool.skipped["list line without a class folder"] += 1
                continue
            label = rel.split("/", 1)[0]
            answers = labels.scene_answers(label)
            items.append(
                RestyleItem(
                    group_id=safe_id("mit_indoor", rel.rsplit(".", 1)[0].replace("/", "-")),
                    source="mit_indoor",
                    source_id=rel,
                    image=ImageRef(key=f"mit_indoor:{rel}", path=str(image_dir / rel)),
                    answers=answers,
                    image_license=LICENSES["mit_indoor"],
                    image_source=f"MIT Indoor 67 Images/{rel}",
                )
            )
        pool.splits[split] = items
    if not used:
        raise SourceError(
            f"MIT Indoor: no TrainImages.txt / TestImages.txt in {root} (https://web.mit.edu/torralba/www/indoor.html)"
        )
    pool.fingerprint = _file_fingerprint(used, root)
    return pool


# --------------------------------------------------------------------------- COCO

_COCO_SPLITS = {"val": "test", "train": "train"}


def _pick_object(candidates: list[tuple], seed: int, image_id) -> tuple:
    return random.Random(f"mmr3-coco:{seed}:{image_id}").choice(sorted(candidates, key=lambda c: c[0]))


def coco(location: str, seed: int = 0) -> SourcePool:
    """COCO instances: per image, one non-crowd object whose area is 10-25% of the image (COCO's
    `area`, the segment's), chosen with the seed among the image's eligible objects."""
    if is_hub(location):
        return _coco_hub(location[len(HUB_PREFIX) :] or COCO_HUB, seed)
    root = Path(location).expanduser()
    pool = SourcePool("coco", "context")
    used = []
    for official, split in _COCO_SPLITS.items():
        for year in ("2017", "2014"):
            path = root / "annotations" / f"instances_{official}{year}.json"
            if path.is_file():
                break
        else:
            continue
        used.append(path)
        image_dir = _first_dir(
            [root / f"{official}{year}", root / "images" / f"{official}{year}"], f"COCO {official}{year} image"
        )
        data = _load_json(path)
        fix = "re-download it (https://cocodataset.org/#download)"
        categories = {c["id"]: c["name"] for c in _records(data, "categories", path, {"id": int, "name": str}, fix=fix)}
        by_image: dict[int, list[dict]] = defaultdict(list)
        annotations = _records(
            data,
            "annotations",
            path,
            {"id": int, "image_id": int},
            optional={"bbox": list, "area": _NUMBER, "category_id": int, "iscrowd": (int, bool)},
            fix=fix,
        )
        for ann in annotations:
            by_image[ann["image_id"]].append(ann)
        images = _records(
            data, "images", path, {"id": int, "width": _NUMBER, "height": _NUMBER, "file_name": str}, fix=fix
        )
        items = []
        for image in sorted(images, key=lambda im: im["id"]):
            width, height = image["width"], image["height"]
            if width <= 0 or height <= 0:
                raise SourceError(f"{path}: image {image['id']} has size {width}x{height}: {fix}")
            eligible = []
            for ann in by_image.get(image["id"], []):
                if ann.get("iscrowd"):
                    continue
                ratio = float(ann.get("area", 0.0)) / float(width * height)
                if not MIN_AREA_RATIO <= ratio <= MAX_AREA_RATIO:
                    continue
                box = _coco_box(ann.get("bbox"), width, height)
                if box is None:
                    pool.skipped["annotation without a box inside its image"] += 1
                    continue
                if ann.get("category_id") not in categories:
                    pool.skipped["annotation of an unknown category"] += 1
                    continue
                eligible.append((ann["id"], box, categories[ann["category_id"]]))
            if not eligible:
                pool.filtered["image without an object of area ratio 0.10-0.25"] += 1
                continue
            ann_id, box, name = _pick_object(eligible, seed, image["id"])
            items.append(
                ContextItem(
                    group_id=safe_id("coco", image["id"]),
                    source="coco",
                    source_id=f"{image['id']}:{ann_id}",
                    image=ImageRef(key=f"coco:{image['id']}", path=str(image_dir / image["file_name"])),
                    box=box,
                    answers=[name],
                    image_license=LICENSES["coco"],
                    image_source=image.get("coco_url") or f"COCO {official}{year}/{image['file_name']}",
                )
            )
        pool.splits[split] = items
    if not used:
        raise SourceError(
            f"no COCO instances in {root}: expected annotations/instances_{{train,val}}{{2017,2014}}.json and "
            "the image folders (https://cocodataset.org/#download)"
        )
    pool.fingerprint = _file_fingerprint(used, root)
    return pool


def _coco_box(bbox, width: int, height: int) -> tuple[float, float, float, float] | None:
    """COCO [x, y, w, h] -> [x0, y0, x1, y1] when it is a real box inside the image (1 px slack)."""
    if not bbox or len(bbox) != 4 or not all(isinstance(v, _NUMBER) for v in bbox):
        return None
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0 or x < -1 or y < -1 or x + w > width + 1 or y + h > height + 1:
        return None
    return max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)


def _coco_hub(dataset_id: str, seed: int) -> SourcePool:
    """`detection-datasets/coco` layout: image_id, image, width, height, objects{bbox (x0,y0,x1,y1),
    category (ClassLabel), area}. It has no crowd flag; its objects are COCO's non-crowd ones."""
    import datasets

    pool = SourcePool("coco", "context")
    splits = load_hub(dataset_id)
    for name, ds in sorted(splits.items()):
        role = _hub_split_role(name)
        if role is None:
            pool.filtered[f"hub split {name!r} (neither train nor validation)"] += len(ds)
            continue
        objects = ds.features.get("objects")
        if objects is None:
            raise SourceError(f"hub dataset {dataset_id} has no `objects` column: not a COCO detection layout")
        _require_columns(ds, ("width", "height", "objects"), dataset_id, name, f"COCO detection ({COCO_HUB})")
        inner = objects if isinstance(objects, dict) else getattr(objects, "feature", {})
        lacking = [k for k in ("bbox", "area", "category") if not isinstance(inner, dict) or k not in inner]
        if lacking:
            raise SourceError(
                f"hub dataset {dataset_id} split {name!r}: its `objects` lack {lacking}: not the COCO detection "
                f"layout ({COCO_HUB})"
            )
        category_feature = inner.get("category") if isinstance(inner, dict) else None
        while category_feature is not None and not isinstance(category_feature, datasets.ClassLabel):
            category_feature = getattr(category_feature, "feature", None)  # List(ClassLabel) -> ClassLabel
        names = category_feature.names if category_feature is not None else None
        items = pool.splits.setdefault(role, [])
        meta = ds.select_columns([c for c in ("image_id", "width", "height", "objects") if c in ds.column_names])
        for i, row in enumerate(meta):
            width, height = row["width"], row["height"]
            objs = row["objects"]
            if isinstance(objs, list):  # a list of per-object dicts -> columns
                objs = {k: [o[k] for o in objs] for k in (objs[0] if objs else {})}
            if not objs or not objs.get("bbox"):
                pool.filtered["image without an object of area ratio 0.10-0.25"] += 1
                continue
            eligible = []
            for j in range(len(objs["bbox"])):
                ratio = float(objs["area"][j]) / float(width * height)
                if not MIN_AREA_RATIO <= ratio <= MAX_AREA_RATIO:
                    continue
                x0, y0, x1, y1 = (float(v) for v in objs["bbox"][j])
                box = _coco_box([x0, y0, x1 - x0, y1 - y0], width, height)
                if box is None:
                    pool.skipped["annotation without a box inside its image"] += 1
                    continue
                category = objs["category"][j]
                label = names[category] if names is not None and isinstance(category, int) else str(category)
                eligible.append((objs.get("bbox_id", list(range(len(objs["bbox"]))))[j], box, label))
            image_id = row.get("image_id", i)
            if not eligible:
                pool.filtered["image without an object of area ratio 0.10-0.25"] += 1
                continue
            ann_id, box, label = _pick_object(eligible, seed, image_id)
            items.append(
                ContextItem(
                    group_id=safe_id("coco", image_id),
                    source="coco",
                    source_id=f"{image_id}:{ann_id}",
                    image=ImageRef(key=f"coco:{image_id}", fetch=_hub_fetch(ds, i)),
                    box=box,
                    answers=[label],
                    image_license=LICENSES["coco"],
                    image_source=f"hub {dataset_id} [{name}] row {i}",
                )
            )
    pool.fingerprint = _hub_fingerprint(dataset_id, splits)
    return pool


# --------------------------------------------------------------------------- registry

READERS: dict[str, tuple[str, Callable[..., SourcePool], bool]] = {
    # name: (task, reader, takes a seed)
    "okvqa": ("rephrase", okvqa, False),
    "infovqa": ("rephrase", infovqa, False),
    "gldv2": ("restyle", gldv2, True),
    "mit_indoor": ("restyle", mit_indoor, False),
    "coco": ("context", coco, True),
}


def read_source(name: str, location: str, seed: int) -> SourcePool:
    task, reader, seeded = READERS[name]
    return reader(location, seed) if seeded else reader(location)


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
