"""A split's shards: planned from its items, rendered to rows, written atomically with a marker
each, and reused on a rerun when marker, fingerprint and file agree (the resume)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mmr3_tasks import schema
from mmr3_tasks.builder import images as imgs
from mmr3_tasks.builder.atomic import write_text_atomic
from mmr3_tasks.builder.build_report import SplitReport, progress
from mmr3_tasks.builder.config import BuildConfig
from mmr3_tasks.builder.manifest import STATE_DIR
from mmr3_tasks.builder.render import (
    ContextItem,
    ImagePolicy,
    RephraseItem,
    prepare_restyle,
    render_context,
    render_rephrase,
    render_restyle,
)
from mmr3_tasks.builder.rows import group_rows, image_hashes, write_parquet_atomic

log = logging.getLogger(__name__)

_SHARD_NAME = re.compile(r"^(?P<split>[a-z]+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.parquet$")


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
        marker = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:  # not JSON, or not UTF-8 text (UnicodeDecodeError is a ValueError)
        return None  # a marker is written atomically; an unreadable one is simply redone
    return marker if isinstance(marker, dict) else None  # JSON, but not a marker: redone too


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
    with progress(config, total=len(items), desc=f"{ctx.task} {split}: render", unit="group") as bar:
        for name, shard in zip(names, shards, strict=True):
            fp = fingerprint({"settings": ctx.settings, "split": split, "items": [describe(i) for i in shard]})
            marker_path = state_dir / f"{name}.json"
            marker = _read_marker(marker_path)
            path = task_dir / name
            if (
                marker
                and marker.get("fingerprint") == fp
                and path.is_file()
                and imgs.sha256_file(path) == marker.get("sha256")
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
