"""The full build: sources -> selection -> (rephrasing) -> shards of rows -> manifest, card, report.

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

import hashlib
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mmr3_tasks import schema
from mmr3_tasks.builder import images as imgs
from mmr3_tasks.builder import sources as src
from mmr3_tasks.builder.atomic import write_text_atomic
from mmr3_tasks.builder.config import SOURCE_SHARES, BuildConfig, ConfigError
from mmr3_tasks.builder.render import (
    ContextItem,
    ImagePolicy,
    RephraseItem,
    prepare_restyle,
    render_context,
    render_rephrase,
    render_restyle,
)
from mmr3_tasks.builder.rephrase import RephraseStats, ReplyCache, make_generator, rephrase_items
from mmr3_tasks.builder.rows import group_rows, image_hashes, write_parquet_atomic

log = logging.getLogger(__name__)

STATE_DIR = ".mmr3-build"
MANIFEST = "manifest.json"
REPORT = "build_report.json"
CONFIG = "build_config.json"
CARD = "README.md"
FORMAT_VERSION = 1
_SHARD_NAME = re.compile(r"^(?P<split>[a-z]+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.parquet$")


def _progress(config: BuildConfig, **kwargs):
    from tqdm.auto import tqdm

    return tqdm(disable=not config.progress, dynamic_ncols=True, **kwargs)


@dataclass
class SplitReport:
    """What one (task, split) build did."""

    target: int = 0
    groups: int = 0
    rows: int = 0
    shards: int = 0
    shards_reused: int = 0
    skipped: dict = field(default_factory=dict)  # bad images / rejected rephrasings, per source and reason
    rephrase: dict = field(default_factory=dict)
    seconds: float = 0.0

    def skip(self, source: str, reason: str, n: int = 1) -> None:
        per = self.skipped.setdefault(source, {})
        per[reason] = per.get(reason, 0) + n


# --------------------------------------------------------------------------- selection


def allocate(target: int, available: dict[str, int], shares: dict[str, float] | None = None) -> dict[str, int]:
    """Splits `target` groups among sources: by `shares` when every source has one, else in
    proportion to what each has; largest remainders round; nobody gets more than it has."""
    names = sorted(n for n in available if available[n] > 0)
    out = {n: 0 for n in available}
    if not names or target <= 0:
        return out
    weights = (
        {n: float(shares[n]) for n in names}
        if shares and all(n in shares for n in names)
        else {n: float(available[n]) for n in names}
    )
    left = target
    active = list(names)
    while left > 0 and active:
        total = sum(weights[n] for n in active)
        raw = {n: left * weights[n] / total for n in active}
        give = {n: math.floor(raw[n]) for n in active}
        rest = left - sum(give.values())
        for n in sorted(active, key=lambda n: (-(raw[n] - give[n]), n))[:rest]:
            give[n] += 1
        for n in active:
            take = min(give[n], available[n] - out[n])
            out[n] += take
            left -= take
        active = [n for n in active if out[n] < available[n]]
    return out


def order_by_image(items: Sequence, seed: int, tag: str) -> list:
    """Items in a seeded random order of their images; one image's items stay together, in order."""
    by_image: dict[str, list] = {}
    for item in items:
        by_image.setdefault(item.image.key, []).append(item)
    keys = sorted(by_image)
    random.Random(f"mmr3-order:{seed}:{tag}").shuffle(keys)
    return [item for key in keys for item in by_image[key]]


def split_candidates(pool: src.SourcePool, split: str, seed: int, test_fraction: float) -> list:
    """The pool's items for `split`: its official split, or for a split-less source ("any") the
    images whose stable_fraction(seed, image) falls on that side of `test_fraction`."""
    if split in pool.splits:
        return pool.splits[split]
    if "any" in pool.splits:
        want_test = split == "test"
        return [
            item
            for item in pool.splits["any"]
            if (src.stable_fraction(seed, item.image.key) < test_fraction) == want_test
        ]
    return []


class _Cursor:
    """Walks one source's ordered candidates, handing out those whose image validates."""

    def __init__(self, name: str, items: list, report: SplitReport):
        self.name, self.items, self.report, self.pos = name, items, report, 0
        self._checked: dict[str, str | None] = {}  # image key -> reason; an image's questions share it

    @property
    def exhausted(self) -> bool:
        return self.pos >= len(self.items)

    def take(self, n: int) -> list:
        out = []
        while len(out) < n and self.pos < len(self.items):
            item = self.items[self.pos]
            self.pos += 1
            key = item.image.key
            if key not in self._checked:
                self._checked[key] = src.validate_image(item.image)
            reason = self._checked[key]
            if reason:
                self.report.skip(self.name, reason)
            else:
                out.append(item)
        return out


def select(
    task: str,
    split: str,
    pools: dict[str, src.SourcePool],
    config: BuildConfig,
    report: SplitReport,
    cache: ReplyCache | None = None,
) -> list:
    """The split's groups: sources share the target (`allocate`), candidates are taken in seeded
    order, bad images are skipped and counted, and for rephrase only questions whose rephrasings
    are usable count; a source that runs dry hands its shortfall to the others."""
    target = config.size(task, split)
    report.target = target
    test_size, train_size = config.size(task, "test"), config.size(task, "train")
    test_fraction = test_size / (test_size + train_size) if test_size + train_size else 0.5
    cursors = {}
    for name, pool in sorted(pools.items()):
        ordered = order_by_image(
            split_candidates(pool, split, config.seed, test_fraction), config.seed, f"{task}:{split}:{name}"
        )
        cursors[name] = _Cursor(name, ordered, report)
    need = allocate(target, {n: len(c.items) for n, c in cursors.items()}, SOURCE_SHARES.get(task))
    accepted: dict[str, list] = {n: [] for n in cursors}
    stats = RephraseStats()
    generator = None

    def generator_factory():
        nonlocal generator
        if generator is None:
            generator = make_generator(config.generator, config.seed)
        return generator

    with _progress(config, total=target, desc=f"{task} {split}: select", unit="group") as bar:
        while True:
            wave = {n: cursors[n].take(need[n] - len(accepted[n])) for n in cursors}
            batch = [item for n in cursors for item in wave[n]]
            if task == "rephrase" and batch:
                assert cache is not None
                with _progress(
                    config, total=len(batch), desc=f"rephrase {split}: generate", unit="q", leave=False
                ) as gbar:
                    ok = {
                        item.group_id
                        for item in rephrase_items(batch, generator_factory, config.generator, cache, stats, gbar)
                    }
                for n in cursors:
                    wave[n] = [item for item in wave[n] if item.group_id in ok]
            for n in cursors:
                accepted[n] += wave[n]
                bar.update(len(wave[n]))
            short = {n: need[n] - len(accepted[n]) for n in cursors if len(accepted[n]) < need[n]}
            if not short:
                break
            dry = [n for n in short if cursors[n].exhausted]
            live = [n for n in sorted(cursors) if not cursors[n].exhausted]
            if not live:
                break
            # Shortfalls of exhausted sources move to the others, in proportion to what they have left.
            moved = sum(short[n] for n in dry)
            for n in dry:
                need[n] = len(accepted[n])
            if moved:
                extra = allocate(moved, {n: len(cursors[n].items) - cursors[n].pos for n in live})
                for n in live:
                    need[n] += extra[n]
    if task == "rephrase":
        report.rephrase = {
            "requested": stats.requested,
            "cached": stats.cached,
            "accepted": stats.accepted,
            "rejected": stats.rejected or {},
            "retries": getattr(generator, "retries", 0),
        }
        for reason, n in (stats.rejected or {}).items():
            report.skip("generator", f"rephrasing rejected: {reason}", n)
    chosen = [item for n in sorted(cursors) for item in accepted[n]]
    if len(chosen) < target:
        log.warning("%s %s: only %d of %d groups available", task, split, len(chosen), target)
    return chosen


# --------------------------------------------------------------------------- shards


def describe(item) -> dict:
    """Everything about an item that shapes its rows (for the shard fingerprint)."""
    out = {"group_id": item.group_id, "image": item.image.key, "answers": list(item.answers)}
    if isinstance(item, RephraseItem):
        out.update(question=item.question, rephrasings=list(item.rephrasings))
    elif isinstance(item, ContextItem):
        out.update(box=[float(v) for v in item.box])
    return out


def fingerprint(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def shard_name(split: str, index: int, total: int) -> str:
    return f"{split}-{index:05d}-of-{total:05d}.parquet"


def plan_shards(items: list, task: str, shard_rows: int) -> list[list]:
    per = max(1, shard_rows // len(schema.VARIANTS[task]))
    return [items[i : i + per] for i in range(0, len(items), per)]


@dataclass
class TaskContext:
    """What rendering one task needs: its image policy, settings fingerprint and style models."""

    task: str
    policy: ImagePolicy
    settings: dict
    models: dict | None = None


def render_shard(items: list, ctx: TaskContext, config: BuildConfig, report: SplitReport, bar) -> list[dict]:
    """The rows of one shard's items; an image that fails to decode skips its group (counted)."""
    rows: list[dict] = []

    def guarded(fn, item):
        try:
            return fn(item)
        except imgs.BadImageError as err:
            log.info("skipping %s: %s", item.group_id, err)
            return err

    def record(item, result) -> bool:
        if isinstance(result, imgs.BadImageError):
            report.skip(item.source, result.reason)
            bar.update(1)
            return False
        return True

    with ThreadPoolExecutor(max_workers=config.workers) as pool:
        if ctx.task == "restyle":
            for start in range(0, len(items), config.style_batch_size):
                chunk = items[start : start + config.style_batch_size]
                arrays = list(pool.map(lambda it: guarded(lambda x: prepare_restyle(x, ctx.policy), it), chunk))
                keep = [(it, a) for it, a in zip(chunk, arrays, strict=True) if record(it, a)]
                if keep:
                    groups = render_restyle([k[0] for k in keep], [k[1] for k in keep], ctx.models, ctx.policy)
                    for group in groups:
                        rows += group_rows(group)
                        bar.update(1)
        else:
            if ctx.task == "rephrase":
                fn = lambda it: render_rephrase(it, ctx.policy)  # noqa: E731
            else:
                fn = lambda it: render_context(it, ctx.policy, config.seed)  # noqa: E731
            for item, result in zip(items, pool.map(lambda it: guarded(fn, it), items), strict=True):
                if record(item, result):
                    rows += group_rows(result)
                    bar.update(1)
    return rows


def _read_marker(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None  # a marker is written atomically; an unreadable one is simply redone


def write_split(
    items: list,
    split: str,
    ctx: TaskContext,
    config: BuildConfig,
    report: SplitReport,
    before_write: Callable[[], None] | None = None,
) -> list[dict]:
    """Writes (or reuses) every shard of one split; returns the shards' markers, in order.

    `before_write` is called before each shard is written (not before one that is reused).
    """
    out = Path(config.out)
    task_dir, state_dir = out / ctx.task, out / STATE_DIR / ctx.task
    shards = plan_shards(items, ctx.task, config.shard_rows)
    names = [shard_name(split, i, len(shards)) for i in range(len(shards))]
    markers = []
    with _progress(config, total=len(items), desc=f"{ctx.task} {split}: render", unit="group") as bar:
        for name, shard in zip(names, shards, strict=True):
            fp = fingerprint({"settings": ctx.settings, "split": split, "items": [describe(i) for i in shard]})
            marker_path = state_dir / f"{name}.json"
            marker = _read_marker(marker_path)
            path = task_dir / name
            if (
                marker
                and marker.get("fingerprint") == fp
                and path.is_file()
                and imgs.sha256_file(path) == marker["sha256"]
            ):
                report.shards_reused += 1
                for source, reasons in marker.get("skipped", {}).items():
                    for reason, n in reasons.items():
                        report.skip(source, reason, n)
                bar.update(len(shard))
                markers.append(marker)
                continue
            before = {s: dict(r) for s, r in report.skipped.items()}
            rows = render_shard(shard, ctx, config, report, bar)
            skipped = {
                s: {k: v - before.get(s, {}).get(k, 0) for k, v in r.items() if v - before.get(s, {}).get(k, 0)}
                for s, r in report.skipped.items()
            }
            if before_write is not None:
                before_write()
            digest = write_parquet_atomic(rows, path)
            marker = {
                "fingerprint": fp,
                "file": f"{ctx.task}/{name}",
                "sha256": digest,
                "bytes": path.stat().st_size,
                "rows": len(rows),
                "groups": len(rows) // len(schema.VARIANTS[ctx.task]),
                "images": image_hashes(rows),
                "skipped": {s: r for s, r in skipped.items() if r},
            }
            write_text_atomic(marker_path, json.dumps(marker, sort_keys=True) + "\n")
            markers.append(marker)
    _remove_stale(task_dir, state_dir, split, set(names))
    report.shards = len(shards)
    report.groups = sum(m["groups"] for m in markers)
    report.rows = sum(m["rows"] for m in markers)
    return markers


def _remove_stale(task_dir: Path, state_dir: Path, split: str, keep: set[str]) -> None:
    """Shards of this split from an earlier build with another plan (another count or size)."""
    for path in list(task_dir.glob(f"{split}-*.parquet")):
        m = _SHARD_NAME.match(path.name)
        if m and m.group("split") == split and path.name not in keep:
            path.unlink()
            marker = state_dir / f"{path.name}.json"
            if marker.exists():
                marker.unlink()


# --------------------------------------------------------------------------- tasks


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
            raise ConfigError(
                "the restyle task needs the style models: pass --style-models FOLDER|URL|johnson-onnx "
                "(Johnson's candy/mosaic/udnie, docs/data.md)"
            )
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
        flags = " / ".join(f"--{n.replace('_', '-')}" for n in src.READERS if src.READERS[n][0] == task)
        raise ConfigError(f"no source for the {task} task: pass {flags} (a folder, or hub:<dataset id>)")
    pools = {}
    bar = _progress(config, total=len(locations), desc=f"{task}: read sources", unit="source")
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
            manifest["tasks"].setdefault(task, {})[split] = {
                "settings": ctx.settings,
                "groups": split_report.groups,
                "rows": split_report.rows,
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
            write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    manifest["software"] = _software_versions()
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
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
            flags = " / ".join(f"--{n.replace('_', '-')}" for n in src.READERS if src.READERS[n][0] == task)
            raise ConfigError(f"no source for the {task} task: pass {flags} (a folder, or hub:<dataset id>)")
    if "restyle" in config.tasks and any(config.size("restyle", s) > 0 for s in config.splits):
        if config.style_models is None:
            raise ConfigError(
                "the restyle task needs the style models: pass --style-models FOLDER|URL|johnson-onnx "
                "(Johnson's candy/mosaic/udnie, docs/data.md)"
            )
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


def _load_manifest(out: Path) -> dict:
    """The folder's manifest, to update: tasks and splits not built this time keep their entries."""
    fresh = {"kind": "mmr3-benchmark", "format_version": FORMAT_VERSION, "tasks": {}}
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


def _software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("lmms-eval-mmr3", "pillow", "numpy", "onnxruntime", "torch", "pyarrow", "datasets"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "absent"
    return out


def summary(report: dict) -> str:
    """The end-of-build summary: rows written, skipped and why, time."""
    lines = []
    for task, splits in report["tasks"].items():
        for split, r in splits.items():
            reused = f", {r['shards_reused']} reused" if r["shards_reused"] else ""
            lines.append(
                f"{task:9s} {split:5s} {r['groups']:6d}/{r['target']:<6d} groups {r['rows']:7d} rows "
                f"{r['shards']:3d} shards{reused}  {r['seconds']:.1f} s"
            )
            for source, reasons in sorted(r["skipped"].items()):
                for reason, n in sorted(reasons.items()):
                    lines.append(f"    skipped {n:6d}  {source}: {reason}")
            if r.get("rephrase"):
                q = r["rephrase"]
                lines.append(
                    f"    rephrasing: {q['requested']} requested, {q['cached']} from cache, "
                    f"{q['accepted']} accepted, {q['retries']} retries"
                )
    lines.append(f"total {report['seconds']:.1f} s")
    return "\n".join(lines)


def push_to_hub(out: str | Path, repo_id: str, private: bool = False) -> str:
    """Uploads the build (shards, manifest, card; not the resume state) to a hub dataset repo."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    info = api.upload_folder(
        folder_path=str(out),
        repo_id=repo_id,
        repo_type="dataset",
        ignore_patterns=[f"{STATE_DIR}/**", "**/.*.tmp", ".*"],
        commit_message="mmr3 build",
    )
    return str(getattr(info, "commit_url", info))
