"""Context masking throughput: COCO-sized JPEGs -> 3 masked variants each -> parquet shard.

    python benchmarks/build_masks.py [--images 300] [--workers 2]

Target (issue 3): at least 50 images/s on 2 cores, end to end (decode, 3 masks, 3 JPEG encodes,
parquet write). Also prints the masks alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mmr3_tasks.builder import masks
from mmr3_tasks.builder.config import BuildConfig
from mmr3_tasks.builder.pipeline import SplitReport, TaskContext, write_split
from mmr3_tasks.builder.render import ContextItem, ImagePolicy, ImageRef


def photo_like(seed: int, width: int = 640, height: int = 480) -> Image.Image:
    """Smooth colour fields plus noise: JPEG sizes close to real photos (~60-100 KB at q95)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 32, width // 32, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        items = []
        for i in range(args.images):
            path = root / "val2017" / f"{i:012d}.jpg"
            path.parent.mkdir(exist_ok=True)
            photo_like(i).save(path, quality=90)
            items.append(
                ContextItem(
                    f"coco-{i}",
                    "coco",
                    str(i),
                    ImageRef(f"coco:{i}", path=str(path)),
                    (100, 80, 340, 300),
                    ["dog"],
                    "",
                    "",
                )
            )
        arrays = [np.asarray(Image.open(items[i].image.path).convert("RGB")) for i in range(min(50, len(items)))]
        started = time.perf_counter()
        for i, a in enumerate(arrays):
            for kind in masks.draw_kinds(0, f"g{i}"):
                masks.render_mask(a, (100, 80, 340, 300), kind)
        masks_only = len(arrays) / (time.perf_counter() - started)

        config = BuildConfig(out=str(root / "out"), workers=args.workers, shard_rows=3000, progress=False)
        ctx = TaskContext("context", ImagePolicy(jpeg_quality=95), {"benchmark": True})
        report = SplitReport()
        started = time.perf_counter()
        write_split(items, "test", ctx, config, report)
        elapsed = time.perf_counter() - started
    rate = args.images / elapsed
    print(f"cpu cores: {os.cpu_count()}  workers: {args.workers}  images: {args.images} (640x480)")
    print(f"masks alone (3 per image, numpy): {masks_only:7.1f} images/s")
    print(f"end to end (decode, 3 masks, 3 JPEG q95, parquet): {rate:7.1f} images/s  ({elapsed:.2f} s)")
    print("target: >= 50 images/s end to end -> " + ("PASS" if rate >= 50 else "FAIL"))
    return 0 if rate >= 50 else 1


if __name__ == "__main__":
    sys.exit(main())
