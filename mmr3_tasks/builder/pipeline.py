"""The full build: sources -> selection -> (rephrasing) -> shards of rows -> manifest, card, report.

This module runs the steps in order (`build`); the steps live beside it: `sources` (the readers),
`selection` (which groups a split gets), `shards` (rendering, writing and resuming shards),
`manifest` (the folder's records), `build_report` (report, progress, summary) and `hub` (upload).

Layout of a build (what `mmr3_tasks.data.load_split` reads):

    <out>/<task>/<split>-0000K-of-0000N.parquet   rows in schema.FEATURES
    <out>/manifest.json       settings, seed, input fingerprints, sha256 of every image; every
                              shard's file, sha256, bytes and rows (what data.verify_split checks)
    <out>/README.md           the dataset card (its YAML names one config per task for the hub)
    <out>/build_report.json   what was written and skipped, and how long it took
    <out>/build_config.json   the settings (BuildConfig), written once the build writes its first shard
    <out>/.mmr3-build/        resume state: shard markers and the rephrasing cache

Resumable: every shard is written to a hidden temporary file and renamed into place, then its
marker (the shard's fingerprint, sha256 and image hashes) is written the same way. A rerun of the
same command skips every shard whose marker, fingerprint and file agree, and re-renders the rest
(a deleted, truncated or changed shard among them); rephrasings come from the cache. A build that
fails before its first shard leaves the folder as it found it, but for rephrasings already received
(kept in the cache, so that a rerun does not pay for them again). Deterministic: every choice is
seeded from (seed, what is chosen), never from order of arrival or wall time.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from mmr3_tasks import schema
from mmr3_tasks.builder import images as imgs
from mmr3_tasks.builder import sources as src
from mmr3_tasks.builder.atomic import write_text_atomic
from mmr3_tasks.builder.build_report import SplitReport, progress, summary
from mmr3_tasks.builder.config import BuildConfig, ConfigError
from mmr3_tasks.builder.hub import push_to_hub
from mmr3_tasks.builder.manifest import (
    CARD,
    CONFIG,
    FORMAT_VERSION,
    MANIFEST,
    REPORT,
    STATE_DIR,
    software_versions,
    split_entry,
    write_manifest,
)
from mmr3_tasks.builder.manifest import load_manifest as _load_manifest
from mmr3_tasks.builder.render import ImagePolicy
from mmr3_tasks.builder.rephrase import ReplyCache
from mmr3_tasks.builder.selection import select
from mmr3_tasks.builder.shards import TaskContext, write_split

# `build` and its steps; the names callers import from here live in the modules imported above.
__all__ = [
    "CARD",
    "CONFIG",
    "FORMAT_VERSION",
    "MANIFEST",
    "REPORT",
    "STATE_DIR",
    "SplitReport",
    "TaskContext",
    "build",
    "push_to_hub",
    "read_pools",
    "select",
    "summary",
    "task_context",
    "write_split",
]

log = logging.getLogger(__name__)

_NEED_STYLE_MODELS = (
    "the restyle task needs the style models: pass --style-models FOLDER|URL|johnson-onnx "
    "(Johnson's candy/mosaic/udnie, docs/data.md)"
)


def _no_source(task: str) -> ConfigError:
    flags = " / ".join(f"--{n.replace('_', '-')}" for n in src.READERS if src.READERS[n][0] == task)
    return ConfigError(f"no source for the {task} task: pass {flags} (a folder, or hub:<dataset id>)")


def _policy(task: str, config: BuildConfig) -> ImagePolicy:
    if task == "rephrase":
        return ImagePolicy(max_side=config.rephrase_max_side, jpeg_quality=config.jpeg_quality, keep_original=True)
    if task == "restyle":
        return ImagePolicy(
            max_side=config.restyle_max_side,
            square=config.restyle_resolution,
            multiple=imgs.SIZE_MULTIPLE,
            jpeg_quality=config.jpeg_quality,
        )
    return ImagePolicy(max_side=config.context_max_side, jpeg_quality=config.jpeg_quality)


def task_context(task: str, config: BuildConfig, pools: dict[str, src.SourcePool]) -> TaskContext:
    policy = _policy(task, config)
    settings: dict = {
        "format_version": FORMAT_VERSION,
        "task": task,
        "seed": config.seed,
        "sizes": {s: config.size(task, s) for s in ("test", "train")},
        "image_policy": policy.to_dict(),
        "sources": {name: pool.fingerprint for name, pool in sorted(pools.items())},
    }
    models = None
    if task == "rephrase":
        settings["generator"] = config.generator.cache_identity()
        settings["prompt"] = "paper (rephrase.REPHRASE_PROMPT)"
    elif task == "restyle":
        if config.style_models is None:
            raise ConfigError(_NEED_STYLE_MODELS)
        from mmr3_tasks.builder.styles import load_style_models

        models = load_style_models(config.style_models, batch_size=config.style_batch_size)
        settings["style_models"] = {n: {"kind": m.kind, "sha256": m.sha256} for n, m in sorted(models.items())}
        settings["style_batch_size"] = config.style_batch_size
    else:
        settings["mask_rendering"] = "k horizontal stripes of the shape; 3 distinct kinds per group (masks.py)"
    return TaskContext(task, policy, settings, models)


def read_pools(task: str, config: BuildConfig, report: dict) -> dict[str, src.SourcePool]:
    locations = config.sources.for_task(task)
    if not locations:
        raise _no_source(task)
    pools = {}
    bar = progress(config, total=len(locations), desc=f"{task}: read sources", unit="source")
    for name, location in sorted(locations.items()):
        bar.set_postfix_str(name)
        started = time.monotonic()
        pool = src.read_source(name, location, config.seed)
        bar.update(1)
        counts = {split: len(items) for split, items in pool.splits.items()}
        log.info("%s: %s eligible in %.1f s", name, counts, time.monotonic() - started)
        report.setdefault("sources", {})[name] = {
            "eligible": counts,
            "filtered": dict(pool.filtered),
            "skipped": dict(pool.skipped),
        }
        pools[pool.name] = pool
    bar.close()
    return pools


def build(config: BuildConfig) -> dict:
    """Runs (or resumes) the build. Returns the report (also written to build_report.json).

    build_config.json is written just before the first shard this run writes, and again at the
    end: a run that fails before writing a shard (a bad source, a missing style model, a refused
    API key) leaves an earlier build's settings, or none, and removes the folders it created
    while they are empty. Rephrasings received before the failure stay in the cache.
    """
    out = Path(config.out).expanduser()
    created = _absent_dirs([out / STATE_DIR])
    write_config = _ConfigWriter(out / CONFIG, config)
    try:
        return _build(config, out, write_config)
    except BaseException:
        if not write_config.written:
            _remove_if_empty(created)
        raise


class _ConfigWriter:
    """Writes build_config.json once, when called before the build's first new shard."""

    def __init__(self, path: Path, config: BuildConfig):
        self.path, self.text, self.written = path, config.to_json(), False

    def __call__(self) -> None:
        if not self.written:
            write_text_atomic(self.path, self.text)
            self.written = True


def _build(config: BuildConfig, out: Path, write_config: _ConfigWriter) -> dict:
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    _preflight(config)
    _remove_partial_files(out)
    report: dict = {"tasks": {}, "sources": {}}
    manifest = _load_manifest(out)
    cache = ReplyCache(out / STATE_DIR / "rephrase-cache.jsonl") if "rephrase" in config.tasks else None
    todo = {task: [s for s in config.splits if config.size(task, s) > 0] for task in config.tasks}
    todo = {task: splits for task, splits in todo.items() if splits}
    # Every source is read before any row is made: a malformed source file fails the build at once.
    pools_of = {task: read_pools(task, config, report) for task in todo}
    for task, splits in todo.items():
        pools = pools_of.pop(task)
        ctx = task_context(task, config, pools)
        seen_images: dict[str, str] = {}
        for split in splits:
            t0 = time.monotonic()
            split_report = SplitReport()
            items = select(task, split, pools, config, split_report, cache)
            for item in items:
                other = seen_images.get(item.image.key)
                if other is not None and other != split:
                    raise RuntimeError(
                        f"image {item.image.key} would be in both {other} and {split}; the sources' train and "
                        "validation files overlap: pass each split's files once"
                    )
                seen_images[item.image.key] = split
            markers = write_split(items, split, ctx, config, split_report, before_write=write_config)
            split_report.seconds = round(time.monotonic() - t0, 1)
            report["tasks"].setdefault(task, {})[split] = split_report.__dict__
            entry = split_entry(out, ctx.settings, split_report.groups, split_report.rows, markers)
            manifest["tasks"].setdefault(task, {})[split] = entry
            write_manifest(out, manifest)
    manifest["software"] = software_versions()
    write_manifest(out, manifest)
    write_text_atomic(out / CONFIG, config.to_json())
    from mmr3_tasks.builder.card import dataset_card

    write_text_atomic(out / CARD, dataset_card(manifest))
    report["seconds"] = round(time.monotonic() - started, 1)
    write_text_atomic(out / REPORT, json.dumps(report, indent=1, sort_keys=True) + "\n")
    return report


def _preflight(config: BuildConfig) -> None:
    """Fails before any long step on what can be checked up front: sources named, style models there."""
    for task in config.tasks:
        if any(config.size(task, s) > 0 for s in config.splits) and not config.sources.for_task(task):
            raise _no_source(task)
    if "restyle" in config.tasks and any(config.size("restyle", s) > 0 for s in config.splits):
        if config.style_models is None:
            raise ConfigError(_NEED_STYLE_MODELS)
        from mmr3_tasks.builder.styles import resolve_style_files

        resolve_style_files(config.style_models)


def _absent_dirs(paths: list[Path]) -> list[Path]:
    """The folders among `paths` and their parents that do not exist yet, deepest first."""
    absent: list[Path] = []
    for path in paths:
        while not path.exists() and path not in absent and path != path.parent:
            absent.append(path)
            path = path.parent
    return sorted(absent, key=lambda p: len(p.parts), reverse=True)


def _remove_if_empty(folders: list[Path]) -> None:
    """Removes each of `folders` (given deepest first) that is there and empty; one with content stays."""
    for folder in folders:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _remove_partial_files(out: Path) -> None:
    """Hidden temporary files a killed build left behind (`.<name>.<random>.tmp`, never read)."""
    folders = [out, out / STATE_DIR] + [out / t for t in schema.TASKS] + [out / STATE_DIR / t for t in schema.TASKS]
    for folder in folders:
        for path in folder.glob(".*.tmp"):
            path.unlink()
