"""Google Landmarks v2 (restyle): its labelled `train.csv`, the landmark names and the train images."""

from __future__ import annotations

import csv
import random
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from mmr3_tasks.builder import labels
from mmr3_tasks.builder.render import ImageRef, RestyleItem, safe_id
from mmr3_tasks.builder.sources.common import LICENSES, SourceError, SourcePool, file_fingerprint, first_dir, is_hub

_FIX = "re-download it (https://github.com/cvdfoundation/google-landmark)"


def gldv2(location: str, seed: int = 0) -> SourcePool:
    """GLDv2's labelled `train.csv` (id,url,landmark_id), `train_label_to_category.csv`
    (landmark_id,category) and images `train/<a>/<b>/<c>/<id>.jpg`, at most one image per landmark
    (chosen with the seed): the paper's test set has about one image per name (612 labels, 604
    names). No official test split carries names, so the pool is split by the pipeline ("any")."""
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
    image_dir = first_dir([root / "train", root / "images" / "train", root / "images"], "GLDv2 train image")
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
    pool.fingerprint = file_fingerprint([train_csv, labels_csv], root)
    return pool


def _csv_rows(path: Path, wanted: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """The rows of a GLDv2 CSV (streamed: train.csv has millions), which must have the `wanted`
    columns; the missing cells of a short line read as ""."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, restval="")
            if not reader.fieldnames or not set(wanted) <= set(reader.fieldnames):
                raise SourceError(f"{path} lacks the columns {','.join(wanted)} (has {reader.fieldnames}): {_FIX}")
            yield from reader
    except UnicodeDecodeError as err:
        raise SourceError(f"{path} is not UTF-8 text ({err}): {_FIX}") from err
