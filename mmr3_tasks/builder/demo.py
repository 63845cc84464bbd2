"""The bundled demo set (`mmr3_mini_*`): mmr3_tasks/demo/demo_content.json -> three parquet files.

A smoke test, not the benchmark: a few dozen groups over freely licensed sample images that ship
in scikit-image, scikit-learn and matplotlib, with rephrasings written by hand. It goes through the
same renderers as the full build (`render.py`): the restyled images come from Johnson's candy /
mosaic / udnie models, the masks from `masks.py`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmr3_tasks import schema
from mmr3_tasks.builder import images as imgs
from mmr3_tasks.builder import masks
from mmr3_tasks.builder.atomic import write_text_atomic
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
from mmr3_tasks.builder.styles import StyleModelSpec, load_style_models

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parents[1]
DEMO_CONTENT = PACKAGE_DIR / "demo" / "demo_content.json"
DEMO_OUT = PACKAGE_DIR / "data" / "mini"


class DemoContentError(ValueError):
    """demo_content.json says something the demo set cannot be built from."""


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
    """demo_content.json, read and checked."""

    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text(encoding="utf-8"))
        self.images: dict = self.data["images"]

    def _meta(self, entry: dict) -> tuple[ImageRef, str, str]:
        key = entry["image"]
        if key not in self.images:
            raise DemoContentError(f"{entry['group_id']}: image {key!r} is not in the content's images")
        meta = self.images[key]
        crop = tuple(int(v) for v in entry["crop"]) if entry.get("crop") else None
        ref = ImageRef(key=_source_id(key, crop), loader=meta["loader"], crop=crop)
        source = f"{meta['package']}: {meta['loader']}; {meta['attribution']}"
        return ref, meta["licence"], source

    def rephrase(self) -> list[RephraseItem]:
        items = []
        for e in self.data["rephrase"]:
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

    def restyle(self) -> list[RestyleItem]:
        items = []
        for e in self.data["restyle"]:
            ref, licence, source = self._meta(e)
            if e["label"].casefold() not in {a.casefold() for a in e["answers"]}:
                raise DemoContentError(f"{e['group_id']}: label {e['label']!r} is not among its answers")
            items.append(RestyleItem(e["group_id"], "demo", ref.key, ref, list(e["answers"]), licence, source))
        return items

    def context(self) -> list[ContextItem]:
        items = []
        for e in self.data["context"]:
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
            f"[{masks.MIN_AREA_RATIO}, {masks.MAX_AREA_RATIO}]; fix its box or crop in demo_content.json"
        )
    return ratio


def build_demo(config: DemoConfig) -> dict:
    """Builds the demo parquet files and their manifest. Returns the manifest."""
    from PIL import Image

    start = time.monotonic()
    content = DemoContent(Path(config.content))
    out = Path(config.out)
    bad = [t for t in config.tasks if t not in schema.TASKS]
    if bad:
        raise DemoContentError(f"unknown tasks {bad}; expected some of {schema.TASKS}")
    manifest: dict = {
        "kind": "mmr3-demo",
        "format_version": 1,
        "seed": config.seed,
        "settings": {"max_side": config.max_side, "jpeg_quality": config.jpeg_quality},
        "content_sha256": imgs.sha256_file(content.path),
        "mask_rendering": "k horizontal stripes of the shape (masks.py)",
        "software": _software_versions(),
        "tasks": {},
    }
    plain = ImagePolicy(max_side=config.max_side, jpeg_quality=config.jpeg_quality)
    for task in config.tasks:
        rows: list[dict] = []
        if task == "rephrase":
            for item in content.rephrase():
                rows += group_rows(render_rephrase(item, plain))
        elif task == "restyle":
            models = load_style_models(config.style_models)
            manifest["style_models"] = {n: {"kind": m.kind, "sha256": m.sha256} for n, m in models.items()}
            policy = ImagePolicy(
                max_side=config.max_side, multiple=imgs.SIZE_MULTIPLE, jpeg_quality=config.jpeg_quality
            )
            items = content.restyle()
            arrays = [prepare_restyle(item, policy) for item in items]
            for group in render_restyle(items, arrays, models, policy):
                rows += group_rows(group)
        else:
            for item in content.context():
                group_rows_ = group_rows(render_context(item, plain, config.seed))
                with Image.open(__import__("io").BytesIO(group_rows_[0]["image"]["bytes"])) as im:
                    check_context_group(item.group_id, group_rows_, *im.size)
                rows += group_rows_
        path = out / f"{task}.parquet"
        digest = write_parquet_atomic(rows, path)
        manifest["tasks"][task] = {
            "file": path.name,
            "sha256": digest,
            "rows": len(rows),
            "groups": len({r["group_id"] for r in rows}),
            "images": image_hashes(rows),
        }
        log.info("demo %s: %d rows, %.1f MB", task, len(rows), path.stat().st_size / 1e6)
    write_text_atomic(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    if set(config.tasks) == set(schema.TASKS):
        write_text_atomic(out / "README.md", demo_readme(content, manifest, config))
    manifest["elapsed_s"] = round(time.monotonic() - start, 1)
    return manifest


def _software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("pillow", "numpy", "onnxruntime", "pyarrow", "scikit-image", "scikit-learn", "matplotlib"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "absent"
    return out


def demo_readme(content: DemoContent, manifest: dict, config: DemoConfig) -> str:
    """The demo set's README: what it is, how it was built, and every image's source and licence."""
    tasks = manifest["tasks"]
    used: dict[str, set[str]] = {}
    for task in schema.TASKS:
        for entry in content.data[task]:
            used.setdefault(entry["image"], set()).add(task)
    lines = [
        "# The bundled MM-R³ demo set (`mmr3_mini_*`)",
        "",
        "**A smoke test, not the benchmark.** It lets the whole pipeline (tasks, models, metrics, report) run "
        "offline in minutes. Its numbers say nothing about a model's consistency: the items are few, hand-written "
        "and drawn from sample images, not from the paper's sources. Build the benchmark with `mmr3 build` "
        "(docs/data.md).",
        "",
        "| file | groups | rows | what a group is |",
        "|---|---|---|---|",
        f"| rephrase.parquet | {tasks['rephrase']['groups']} | {tasks['rephrase']['rows']} | "
        "a question over an image and 3 rephrasings of it, all written by hand |",
        f"| restyle.parquet | {tasks['restyle']['groups']} | {tasks['restyle']['rows']} | "
        "an image (or crop) in candy, mosaic, udnie and grayscale |",
        f"| context.parquet | {tasks['context']['groups']} | {tasks['context']['rows']} | "
        "an image (or crop) with one object's box masked 3 ways |",
        "",
        "Same schema as the benchmark (`mmr3_tasks.schema.FEATURES`), `source` = `demo`, `source_id` = the sample "
        "image's key (with `:x0,y0,x1,y1` for a crop; rephrase: the group id). `manifest.json` gives the sha256 "
        "of every file and image.",
        "",
        "## How it was built",
        "",
        "    mmr3 build --demo --style-models ../shared/style-models",
        "",
        "from `mmr3_tasks/demo/demo_content.json` (questions, rephrasings, labels, boxes: hand-written; see "
        "`mmr3_tasks/demo/README.md`), through the same renderers as the full build (`mmr3_tasks/builder/render.py`). "
        "Building twice gives byte-identical files.",
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
        lines.append(
            f"| {key} | `{meta['loader']}` ({meta['package']}) | {meta['licence']} | {attribution} | "
            f"{', '.join(t for t in schema.TASKS if t in used[key])} |"
        )
    lines += [
        "",
        "The two CC BY 2.0 images (scikit-learn's `china.jpg` and `flower.jpg`) are credited above and in every "
        "row's `image_source`. Images whose package states no image-specific licence are marked so; they ship "
        "under their package's licence.",
        "",
    ]
    return "\n".join(lines)
