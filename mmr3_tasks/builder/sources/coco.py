"""COCO (context): per image, one object of the right size, from the official instances files or
the `detection-datasets/coco` hub layout (lmms-eval's COCO tasks are captions, without boxes)."""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from mmr3_tasks.builder.masks import MAX_AREA_RATIO, MIN_AREA_RATIO
from mmr3_tasks.builder.render import ContextItem, ImageRef, safe_id
from mmr3_tasks.builder.sources.common import (
    LICENSES,
    NUMBER,
    OFFICIAL_SPLITS,
    SourceError,
    SourcePool,
    file_fingerprint,
    first_dir,
    hub_id,
    hub_image,
    hub_splits,
    is_hub,
    load_json,
    records,
    require_columns,
)

COCO_HUB = "detection-datasets/coco"
_FIX = "re-download it (https://cocodataset.org/#download)"
_NO_OBJECT = "image without an object of area ratio 0.10-0.25"
_NONE_FOUND = (
    "no COCO instances in {root}: expected annotations/instances_{{train,val}}{{2017,2014}}.json and "
    "the image folders (https://cocodataset.org/#download)"
)


def coco(location: str, seed: int = 0) -> SourcePool:
    """COCO instances (`annotations/instances_{train,val}{2017,2014}.json` and
    `{train,val}{year}/<file_name>`): per image, one non-crowd object whose area is 10-25% of the
    image (COCO's `area`, the segment's), chosen with the seed among the image's eligible objects."""
    if is_hub(location):
        return _coco_hub(hub_id(location, COCO_HUB), seed)
    root = Path(location).expanduser()
    pool = SourcePool("coco", "context")
    used = []
    for official, split in OFFICIAL_SPLITS.items():
        for year in ("2017", "2014"):
            path = root / "annotations" / f"instances_{official}{year}.json"
            if path.is_file():
                break
        else:
            continue
        used.append(path)
        image_dir = first_dir(
            [root / f"{official}{year}", root / "images" / f"{official}{year}"], f"COCO {official}{year} image"
        )
        data = load_json(path)
        categories = {c["id"]: c["name"] for c in records(data, "categories", path, {"id": int, "name": str}, fix=_FIX)}
        by_image: dict[int, list[dict]] = defaultdict(list)
        annotations = records(
            data,
            "annotations",
            path,
            {"id": int, "image_id": int},
            optional={"bbox": list, "area": NUMBER, "category_id": int, "iscrowd": (int, bool)},
            fix=_FIX,
        )
        for ann in annotations:
            by_image[ann["image_id"]].append(ann)
        images = records(
            data, "images", path, {"id": int, "width": NUMBER, "height": NUMBER, "file_name": str}, fix=_FIX
        )
        items = []
        for image in sorted(images, key=lambda im: im["id"]):
            width, height = image["width"], image["height"]
            if width <= 0 or height <= 0:
                raise SourceError(f"{path}: image {image['id']} has size {width}x{height}: {_FIX}")
            eligible = []
            for ann in by_image.get(image["id"], []):
                if ann.get("iscrowd") or not _right_size(ann.get("area", 0.0), width, height):
                    continue
                box = _box_inside(pool, ann.get("bbox"), width, height)
                if box is None:
                    continue
                if ann.get("category_id") not in categories:
                    pool.skipped["annotation of an unknown category"] += 1
                    continue
                eligible.append((ann["id"], box, categories[ann["category_id"]]))
            ref = ImageRef(key=f"coco:{image['id']}", path=str(image_dir / image["file_name"]))
            where = image.get("coco_url") or f"COCO {official}{year}/{image['file_name']}"
            _add_context_item(items, pool, image["id"], eligible, seed, ref, where)
        pool.splits[split] = items
    pool.fingerprint = file_fingerprint(used, root, none_found=_NONE_FOUND.format(root=root))
    return pool


def _right_size(area, width, height) -> bool:
    """Whether an object's area is 10-25% of its image's (masks.MIN_AREA_RATIO..MAX_AREA_RATIO)."""
    return MIN_AREA_RATIO <= float(area) / float(width * height) <= MAX_AREA_RATIO


def _box_inside(pool: SourcePool, bbox, width: int, height: int) -> tuple[float, float, float, float] | None:
    """COCO [x, y, w, h] -> [x0, y0, x1, y1] when it is a real box inside the image (1 px slack);
    None, counted as skipped, when not."""
    if bbox and len(bbox) == 4 and all(isinstance(v, NUMBER) for v in bbox):
        x, y, w, h = (float(v) for v in bbox)
        if not (w <= 0 or h <= 0 or x < -1 or y < -1 or x + w > width + 1 or y + h > height + 1):
            return max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)
    pool.skipped["annotation without a box inside its image"] += 1
    return None


def _add_context_item(
    items: list, pool: SourcePool, image_id, eligible: list[tuple], seed: int, image: ImageRef, where: str
) -> None:
    """Appends the pool's item for one image: among its `eligible` (object id, box, name), the one
    the seed chooses; counts the image as filtered when it has none."""
    if not eligible:
        pool.filtered[_NO_OBJECT] += 1
        return
    ordered = sorted(eligible, key=lambda c: c[0])
    ann_id, box, name = random.Random(f"mmr3-coco:{seed}:{image_id}").choice(ordered)
    items.append(
        ContextItem(
            group_id=safe_id("coco", image_id),
            source="coco",
            source_id=f"{image_id}:{ann_id}",
            image=image,
            box=box,
            answers=[name],
            image_license=LICENSES["coco"],
            image_source=where,
        )
    )


def _coco_hub(dataset_id: str, seed: int) -> SourcePool:
    """`detection-datasets/coco` layout: image_id, image, width, height, objects{bbox (x0,y0,x1,y1),
    category (ClassLabel), area}. It has no crowd flag; its objects are COCO's non-crowd ones."""
    pool = SourcePool("coco", "context")
    for name, role, ds in hub_splits(pool, dataset_id):
        names = _category_names(ds, dataset_id, name)
        items = pool.splits.setdefault(role, [])
        meta = ds.select_columns([c for c in ("image_id", "width", "height", "objects") if c in ds.column_names])
        for i, row in enumerate(meta):
            width, height = row["width"], row["height"]
            objs = row["objects"]
            if isinstance(objs, list):  # a list of per-object dicts -> columns
                objs = {k: [o[k] for o in objs] for k in (objs[0] if objs else {})}
            if not objs or not objs.get("bbox"):
                pool.filtered[_NO_OBJECT] += 1
                continue
            eligible = []
            for j in range(len(objs["bbox"])):
                if not _right_size(objs["area"][j], width, height):
                    continue
                x0, y0, x1, y1 = (float(v) for v in objs["bbox"][j])
                box = _box_inside(pool, [x0, y0, x1 - x0, y1 - y0], width, height)
                if box is None:
                    continue
                category = objs["category"][j]
                label = names[category] if names is not None and isinstance(category, int) else str(category)
                eligible.append((objs.get("bbox_id", list(range(len(objs["bbox"]))))[j], box, label))
            image_id = row.get("image_id", i)
            ref = hub_image(ds, i, f"coco:{image_id}")
            _add_context_item(items, pool, image_id, eligible, seed, ref, f"hub {dataset_id} [{name}] row {i}")
    return pool


def _category_names(ds, dataset_id: str, split: str) -> list[str] | None:
    """The names of the split's ClassLabel categories (None when they are stored as text).

    Raises:
        SourceError: when the split is not in the COCO detection layout.
    """
    import datasets

    objects = ds.features.get("objects")
    if objects is None:
        raise SourceError(f"hub dataset {dataset_id} has no `objects` column: not a COCO detection layout")
    require_columns(ds, ("width", "height", "objects"), dataset_id, split, f"COCO detection ({COCO_HUB})")
    inner = objects if isinstance(objects, dict) else getattr(objects, "feature", {})
    lacking = [k for k in ("bbox", "area", "category") if not isinstance(inner, dict) or k not in inner]
    if lacking:
        raise SourceError(
            f"hub dataset {dataset_id} split {split!r}: its `objects` lack {lacking}: not the COCO detection "
            f"layout ({COCO_HUB})"
        )
    category_feature = inner.get("category") if isinstance(inner, dict) else None
    while category_feature is not None and not isinstance(category_feature, datasets.ClassLabel):
        category_feature = getattr(category_feature, "feature", None)  # List(ClassLabel) -> ClassLabel
    return category_feature.names if category_feature is not None else None
