"""Which groups a split gets: sources share its target, candidates come in a seeded order by image,
bad images are skipped, and a source that runs dry hands its shortfall to the others."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence

from mmr3_tasks.builder import sources as src
from mmr3_tasks.builder.build_report import SplitReport, progress
from mmr3_tasks.builder.config import SOURCE_SHARES, BuildConfig
from mmr3_tasks.builder.rephrase import RephraseStats, ReplyCache, make_generator, rephrase_items

log = logging.getLogger(__name__)


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

    with progress(config, total=target, desc=f"{task} {split}: select", unit="group") as bar:
        while True:
            wave = {n: cursors[n].take(need[n] - len(accepted[n])) for n in cursors}
            batch = [item for n in cursors for item in wave[n]]
            if task == "rephrase" and batch:
                assert cache is not None
                with progress(
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
    if target > 0 and not chosen:  # a build of the other tasks is still worth keeping; this one is not
        reasons = sorted(((n, f"{s}: {r}") for s, rs in report.skipped.items() for r, n in rs.items()), reverse=True)
        why = "; ".join(f"{n} {what}" for n, what in reasons[:4]) or "the sources hold no candidate"
        raise src.SourceError(
            f"{task} {split}: none of the {target} groups asked for could be made from the sources ({why}); "
            "check the source folders against docs/data.md#bad-sources"
        )
    if len(chosen) < target:
        log.warning("%s %s: only %d of %d groups available", task, split, len(chosen), target)
    return chosen
