"""What a build tells as it runs and when it ends: progress bars, the per-split report
(build_report.json) and the end-of-build summary."""

from __future__ import annotations

from dataclasses import dataclass, field

from mmr3_tasks.builder.config import BuildConfig


def progress(config: BuildConfig, **kwargs):
    """A tqdm bar, shown when `config.progress`."""
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
