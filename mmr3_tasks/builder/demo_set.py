"""The bundled demo set (`mmr3_mini_*`): mmr3_tasks/builder/demo_set_content.json -> a test and a train split.

A smoke test, not the benchmark: a few dozen groups over freely licensed sample images that ship
in scikit-image, scikit-learn and matplotlib, with rephrasings written by hand. It goes through the
same renderers as the full build (`render.py`): the restyled images come from Johnson's candy /
mosaic / udnie models, the masks from `masks.py`. It is laid out as a build,
`<out>/<task>/<split>-00000-of-00001.parquet`, so `data.load_split(..., location=<out>)` reads it.
The train split (for the consistency adapter) shares no group and no item with the test split.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmr3_tasks import schema
from mmr3_tasks.builder import images as imgs
from mmr3_tasks.builder import masks
from mmr3_tasks.builder.atomic import write_text_atomic
from mmr3_tasks.builder.config import SPLITS
from mmr3_tasks.builder.manifest import DEMO_PACKAGES, software_versions
from mmr3_tasks.builder.render import (
    ContextItem,
    ImagePolicy,
    ImageRef,
    RephraseItem,
    RestyleItem,
    prepare_restyle,
    render_context,
    render_rephrase,
    render_restyle,
)
from mmr3_tasks.builder.rows import group_rows, image_hashes, write_parquet_atomic
from mmr3_tasks.builder.shards import shard_name
from mmr3_tasks.builder.styles import StyleModelSpec, load_style_models
from mmr3_tasks.errors import MMR3Error

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parents[1]
DEMO_CONTENT = Path(__file__).resolve().with_name("demo_set_content.json")
DEMO_OUT = PACKAGE_DIR / "demo_set"
FORMAT_VERSION = 2  # 1: one flat <task>.parquet per task, test split only


class DemoContentError(MMR3Error, ValueError):
    """demo_set_content.json says something the demo set cannot be built from."""


@dataclass
class DemoConfig:
    """Settings of a demo build; round-trips to JSON (the manifest records it)."""

    style_models: StyleModelSpec
    content: str = str(DEMO_CONTENT)
    out: str = str(DEMO_OUT)
    seed: int = 0
    max_side: int = 384
    jpeg_quality: int = 90
    tasks: list[str] = field(default_factory=lambda: list(schema.TASKS))
    splits: list[str] = field(default_factory=lambda: list(SPLITS))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DemoConfig:
        data = dict(data)
        data["style_models"] = StyleModelSpec(**data["style_models"])
        return cls(**data)


def _source_id(image: str, crop: Sequence[int] | None) -> str:
    return image if not crop else f"{image}:{','.join(str(int(v)) for v in crop)}"


class DemoContent:
    """demo_set_content.json, read and checked.

    The top-level `rephrase`, `restyle` and `context` lists are the test split; `train` holds the
    train split's lists under the same keys, in the same entry formats.
    """

    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text(encoding="utf-8"))
        self.images: dict = self.data["images"]

    def entries(self, task: str, split: str = "test") -> list[dict]:
        """The content's entries of one task and split."""
        if task not in schema.TASKS or split not in SPLITS:
            raise DemoContentError(f"no demo content for {task}/{split}; tasks: {schema.TASKS}, splits: {SPLITS}")
        if split == "test":
            return self.data[task]
        entries = self.data.get("train", {}).get(task)
        if not entries:
            raise DemoContentError(
                f"{self.path.name} has no train entries for {task}: add `train.{task}` or build splits=['test']"
            )
        return entries

    def check_splits(self) -> None:
        """Every group id is unique, and train shares no item with test: for restyle and context no
        (image, crop), for rephrase no (image, question) of the same task.

        Raises:
            DemoContentError: naming the train group and the test group it repeats.
        """
        split_of: dict[str, str] = {}
        for split in SPLITS:
            for task in schema.TASKS:
                for e in self.data[task] if split == "test" else self.data.get("train", {}).get(task, []):
                    gid = e["group_id"]
                    if gid in split_of:
                        where = "a test group's" if split_of[gid] != split else f"another {split} group's"
                        raise DemoContentError(f"{split} group {gid!r} has {where} group_id; give it its own id")
                    split_of[gid] = split
        for task in schema.TASKS:
            tested = {self._item_key(task, e): e["group_id"] for e in self.data[task]}
            for e in self.data.get("train", {}).get(task, []):
                other = tested.get(self._item_key(task, e))
                if other is not None:
                    same = "image and question" if task == "rephrase" else "image and crop"
                    raise DemoContentError(
                        f"train group {e['group_id']!r} has the same {same} as test group {other!r}; "
                        "train items must differ from test items: pick another "
                        + ("question" if task == "rephrase" else "image or crop")
                    )

    def _item_key(self, task: str, entry: dict) -> tuple:
        """What makes two entries of a task the same item (a crop of the whole image counts as none)."""
        key = entry["image"]
        if task == "rephrase":
            return key, " ".join(re.sub(r"[\W_]+", " ", entry["question"].casefold()).split())
        crop = [int(v) for v in entry["crop"]] if entry.get("crop") else None
        meta = self.images.get(key, {})
        if crop == [0, 0, meta.get("width"), meta.get("height")]:
            crop = None
        return key, crop and tuple(crop)

    def _meta(self, entry: dict) -> tuple[ImageRef, str, str]:
        key = entry["image"]
        if key not in self.images:
            raise DemoContentError(f"{entry['group_id']}: image {key!r} is not in the content's images")
        meta = self.images[key]
        crop = tuple(int(v) for v in entry["crop"]) if entry.get("crop") else None
        ref = ImageRef(key=_source_id(key, crop), loader=meta["loader"], crop=crop)
        source = f"{meta['package']}: {meta['loader']}; {meta['attribution']}"
        return ref, meta["licence"], source

    def rephrase(self, split: str = "test") -> list[RephraseItem]:
        items = []
        for e in self.entries("rephrase", split):
            ref, licence, source = self._meta(e)
            items.append(
                RephraseItem(
                    group_id=e["group_id"],
                    source="demo",
                    source_id=e["group_id"],
                    image=ref,
                    question=e["question"],
                    answers=list(e["answers"]),
                    image_license=licence,
                    image_source=source,
                    rephrasings=list(e["rephrasings"]),
                )
            )
        return items

    def restyle(self, split: str = "test") -> list[RestyleItem]:
        items = []
        for e in self.entries("restyle", split):
            ref, licence, source = self._meta(e)
            if e["label"].casefold() not in {a.casefold() for a in e["answers"]}:
                raise DemoContentError(f"{e['group_id']}: label {e['label']!r} is not among its answers")
            items.append(RestyleItem(e["group_id"], "demo", ref.key, ref, list(e["answers"]), licence, source))
        return items

    def context(self, split: str = "test") -> list[ContextItem]:
        items = []
        for e in self.entries("context", split):
            ref, licence, source = self._meta(e)
            box = tuple(float(v) for v in e["box"])
            items.append(ContextItem(e["group_id"], "demo", ref.key, ref, box, list(e["answers"]), licence, source))
        return items


def check_context_group(group_id: str, rows: list[dict], width: int, height: int) -> float:
    """The masked box's area ratio in the final image, which must stay in the paper's range."""
    box = rows[0]["mask_box"]
    ratio = masks.area_ratio(box, width, height)
    if not masks.MIN_AREA_RATIO <= ratio <= masks.MAX_AREA_RATIO:
        raise DemoContentError(
            f"{group_id}: masked box {box} covers {ratio:.3f} of the {width}x{height} image, outside "
            f"[{masks.MIN_AREA_RATIO}, {masks.MAX_AREA_RATIO}]; fix its box or crop in demo_set_content.json"
        )
    return ratio


def build_demo(config: DemoConfig) -> dict:
    """Builds the demo parquet files (every task in every split) and their manifest. Returns the manifest."""
    start = time.monotonic()
    content = DemoContent(Path(config.content))
    out = Path(config.out)
    bad = [t for t in config.tasks if t not in schema.TASKS]
    if bad:
        raise DemoContentError(f"unknown tasks {bad}; expected some of {schema.TASKS}")
    bad = [s for s in config.splits if s not in SPLITS]
    if bad:
        raise DemoContentError(f"unknown splits {bad}; expected some of {SPLITS}")
    content.check_splits()
    manifest: dict = {
        "kind": "mmr3-demo",
        "format_version": FORMAT_VERSION,
        "seed": config.seed,
        "settings": {"max_side": config.max_side, "jpeg_quality": config.jpeg_quality},
        "content_sha256": imgs.sha256_file(content.path),
        "mask_rendering": "k horizontal stripes of the shape (masks.py)",
        "software": software_versions(DEMO_PACKAGES),
        "tasks": {},
    }
    models: dict | None = None
    for task in config.tasks:
        if task == "restyle":
            models = load_style_models(config.style_models)
            manifest["style_models"] = {n: {"kind": m.kind, "sha256": m.sha256} for n, m in models.items()}
        for split in config.splits:
            rows = _render_split(content, task, split, config, models)
            path = out / task / shard_name(split, 0, 1)
            digest = write_parquet_atomic(rows, path)
            manifest["tasks"].setdefault(task, {})[split] = {
                "file": path.relative_to(out).as_posix(),
                "sha256": digest,
                "bytes": path.stat().st_size,  # checked by every load (data.verify_split)
                "rows": len(rows),
                "groups": len({r["group_id"] for r in rows}),
                "images": image_hashes(rows),
            }
            log.info("demo %s/%s: %d rows, %.1f MB", task, split, len(rows), path.stat().st_size / 1e6)
        legacy = out / f"{task}.parquet"  # format_version 1's file, which the tasks no longer read
        if legacy.is_file():
            legacy.unlink()
            log.info("demo: removed %s (the old one-file layout)", legacy)
    write_text_atomic(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    if set(config.tasks) == set(schema.TASKS) and set(config.splits) == set(SPLITS):
        write_text_atomic(out / "README.md", demo_readme(content, manifest, config))
    manifest["elapsed_s"] = round(time.monotonic() - start, 1)
    return manifest


def _render_split(content: DemoContent, task: str, split: str, config: DemoConfig, models: dict | None) -> list[dict]:
    """The rows of one task's split, through the full build's renderers. Each split is rendered on
    its own, so adding train items never changes a test row (style batches group equal sizes)."""
    from PIL import Image

    plain = ImagePolicy(max_side=config.max_side, jpeg_quality=config.jpeg_quality)
    rows: list[dict] = []
    if task == "rephrase":
        for item in content.rephrase(split):
            rows += group_rows(render_rephrase(item, plain))
    elif task == "restyle":
        policy = ImagePolicy(max_side=config.max_side, multiple=imgs.SIZE_MULTIPLE, jpeg_quality=config.jpeg_quality)
        items = content.restyle(split)
        arrays = [prepare_restyle(item, policy) for item in items]
        for group in render_restyle(items, arrays, models, policy):
            rows += group_rows(group)
    else:
        for item in content.context(split):
            group = group_rows(render_context(item, plain, config.seed))
            with Image.open(io.BytesIO(group[0]["image"]["bytes"])) as im:
                check_context_group(item.group_id, group, *im.size)
            rows += group
    return rows


def demo_readme(content: DemoContent, manifest: dict, config: DemoConfig) -> str:
    """The demo set's README: what it is, how it was built, and every image's source and licence."""
    tasks = manifest["tasks"]
    used: dict[str, dict[str, set[str]]] = {}  # image -> task -> splits
    for task in schema.TASKS:
        for split in SPLITS:
            for entry in content.entries(task, split):
                used.setdefault(entry["image"], {}).setdefault(task, set()).add(split)
    what = {
        "rephrase": "a question over an image and 3 rephrasings of it, all written by hand",
        "restyle": "an image (or crop) in candy, mosaic, udnie and grayscale",
        "context": "an image (or crop) with one object's box masked 3 ways",
    }
    shared = []
    for task in schema.TASKS:
        test_images = {e["image"] for e in content.entries(task, "test")}
        train = content.entries(task, "train")
        n = sum(e["image"] in test_images for e in train)
        shared.append(f"{task} {n} of {len(train)}")
    lines = [
        "# The bundled MM-R³ demo set (`mmr3_mini_*`)",
        "",
        "**A smoke test, not the benchmark.** It lets the whole pipeline (tasks, models, metrics, report) run "
        "offline in minutes. Its numbers say nothing about a model's consistency: the items are few, hand-written "
        "and drawn from sample images, not from the paper's sources. Build the benchmark with `mmr3 build` "
        "(docs/data.md).",
        "",
        "| file | split | groups | rows | what a group is |",
        "|---|---|---|---|---|",
    ]
    for task in schema.TASKS:
        for split in SPLITS:
            entry = tasks[task][split]
            lines.append(f"| {entry['file']} | {split} | {entry['groups']} | {entry['rows']} | {what[task]} |")
    lines += [
        "",
        "Laid out as a build (`<task>/<split>-00000-of-00001.parquet`, docs/data.md), so "
        "`mmr3_tasks.data.load_split(task, split, location=str(mmr3_tasks.data.DEMO_DIR))` reads either split; "
        "`mmr3_tasks.data.load_demo(task, split)` is the same. Same schema as the benchmark "
        "(`mmr3_tasks.schema.FEATURES`), `source` = `demo`, `source_id` = the sample image's key (with "
        "`:x0,y0,x1,y1` for a crop; rephrase: the group id). `manifest.json` gives the sha256 of every file and "
        "image, per task and split.",
        "",
        "## The two splits",
        "",
        "- **test**: what the `mmr3_mini_*` tasks score.",
        "- **train**: for training the consistency adapter on the demo set (`mmr3 train-adapter --data demo`), "
        "which is then scored on the test split. Train group ids start with `train-`.",
        "",
        "The splits share no group and no item: no group id is in both, no restyle or context item has the same "
        "image and crop as a test item, and no rephrase question is asked of the same image in both (the build "
        "refuses content that breaks this). **They do share source images**: the sample images are few, so most "
        "train items are other questions, other crops or other objects of images the test split also uses (train "
        "groups whose image is also used by the same task's test split: " + ", ".join(shared) + "). A model "
        "trained on the train split has seen the test split's scenes, so its demo scores say nothing about unseen "
        "images; the demo only shows that training and scoring run.",
        "",
        "## How it was built",
        "",
        "    mmr3 build --demo --style-models johnson-onnx    # or a folder holding candy/mosaic/udnie.onnx",
        "",
        "from `mmr3_tasks/builder/demo_set_content.json` (questions, rephrasings, labels, boxes: hand-written; see "
        "`mmr3_tasks/builder/demo_set_content.md`), through the same renderers as the full build "
        "(`mmr3_tasks/builder/render.py`), for both splits alike. Building twice gives byte-identical files.",
        "",
        f"- Images: loaded from the pip packages below, cropped where the content says, downscaled to at most "
        f"{config.max_side} px a side (restyled images: both sides rounded to a multiple of 4), stored as JPEG "
        f"quality {config.jpeg_quality}. Context boxes are scaled with their image; every masked box covers "
        "10-25% of its final image, as the paper requires of its objects.",
        "- Restyle: candy, mosaic and udnie are Justin Johnson's own published instance-norm fast style-transfer "
        "models (github.com/jcjohnson/fast-neural-style), as ONNX files from microsoft/Windows-Machine-Learning "
        "(`Samples/StyleTransfer/Assets/`, commit 155b5eeb), run with onnxruntime at the image's own size "
        "(graph made size-free, `builder/onnx_patch.py`). The models' licence: \"Free for personal or research "
        "use\"; they are not part of this package. Grayscale is PIL's ITU-R 601-2 luma.",
    ]
    if "style_models" in manifest:
        lines.append(
            "- Style model sha256: "
            + ", ".join(f"{n} `{m['sha256'][:16]}...`" for n, m in sorted(manifest["style_models"].items()))
            + "."
        )
    lines += [
        f"- Context: 3 distinct mask kinds per group, drawn with seed {config.seed} from lines 1/3/5/7 x "
        "rectangle/ellipse x red/blue/green/yellow/white/black; a k-line mask is the shape painted as k "
        "horizontal stripes with k-1 gaps (1 line: solid). Kinds are in each row's `mask_*` columns.",
        "",
        "## Images: sources and licences",
        "",
        "| key | loader (package) | licence | source / author | used in |",
        "|---|---|---|---|---|",
    ]
    for key in sorted(used):
        meta = content.images[key]
        attribution = meta["attribution"].replace("|", "/")
        where = ", ".join(
            f"{t} ({', '.join(s for s in SPLITS if s in used[key][t])})" for t in schema.TASKS if t in used[key]
        )
        lines.append(
            f"| {key} | `{meta['loader']}` ({meta['package']}) | {meta['licence']} | {attribution} | {where} |"
        )
    lines += [
        "",
        "The two CC BY 2.0 images (scikit-learn's `china.jpg` and `flower.jpg`) are credited above and in every "
        "row's `image_source`. Images whose package states no image-specific licence are marked so; they ship "
        "under their package's licence.",
        "",
    ]
    return "\n".join(lines)
