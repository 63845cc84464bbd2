"""What a build leaves beside its shards: the folder's file names, `manifest.json` (loaded to be
updated, one entry per split, written atomically) and the versions of the software that shaped
the bytes (also recorded by the demo set's manifest)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mmr3_tasks.builder.atomic import write_text_atomic

STATE_DIR = ".mmr3-build"
MANIFEST = "manifest.json"
REPORT = "build_report.json"
CONFIG = "build_config.json"
CARD = "README.md"
FORMAT_VERSION = 1
KIND = "mmr3-benchmark"

# The packages whose versions a manifest records: those that shape a build's bytes, and the demo's.
BUILD_PACKAGES = ("lmms-eval-mmr3", "pillow", "numpy", "onnxruntime", "torch", "pyarrow", "datasets")
DEMO_PACKAGES = ("pillow", "numpy", "onnxruntime", "pyarrow", "scikit-image", "scikit-learn", "matplotlib")


def load_manifest(out: Path) -> dict:
    """The folder's manifest, to update: tasks and splits not built this time keep their entries."""
    fresh = {"kind": KIND, "format_version": FORMAT_VERSION, "tasks": {}}
    path = out / MANIFEST
    if not path.is_file():
        return fresh
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return fresh
    if old.get("kind") != fresh["kind"] or old.get("format_version") != FORMAT_VERSION:
        return fresh
    for splits in old.get("tasks", {}).values():
        for split, entry in list(splits.items()):
            if not all((out / s["file"]).is_file() for s in entry.get("shards", [])):
                del splits[split]
    return {**fresh, "tasks": {t: s for t, s in old.get("tasks", {}).items() if s}}


def split_entry(out: Path, settings: dict, groups: int, rows: int, markers: list[dict]) -> dict:
    """The manifest's entry for one (task, split): its settings, counts, shards and image hashes."""
    return {
        "settings": settings,
        "groups": groups,
        "rows": rows,
        # bytes: read off the file, as a marker written before `bytes` existed lacks it.
        "shards": [
            {
                "file": m["file"],
                "sha256": m["sha256"],
                "bytes": (out / m["file"]).stat().st_size,
                "rows": m["rows"],
            }
            for m in markers
        ],
        "images": {k: v for m in markers for k, v in m["images"].items()},
    }


def write_manifest(out: Path, manifest: dict) -> None:
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def software_versions(packages: Sequence[str] = BUILD_PACKAGES) -> dict[str, str]:
    """Each package's installed version, or "absent"."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in packages:
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "absent"
    return out
