"""Training rows from the train splits `mmr3 build` writes, held-out groups, and the step plan.

Every row is one variant of one item; its target is the item's first ground truth, so the variants
of an item share one target (the paper's recipe). Nothing here depends on how many processes run:
the rows of global step s are a pure function of (seed, s), and each process takes its share, so a
resumed or multi-process run sees exactly the batches a single uninterrupted one sees.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmr3_adapters.models import Sample
from mmr3_tasks.errors import MMR3Error

logger = logging.getLogger("mmr3")

DEMO = "demo"  # --data demo: the bundled demo set's train split
HELDOUT_SHARE = 0.2  # held-out groups are capped at this share of a task's train groups


class TrainingDataError(MMR3Error, ValueError):
    """The train split cannot give what the settings ask for; the message says what to change."""


@dataclass(frozen=True)
class Row:
    """One training row: where it lives and what the model should answer."""

    id: str
    group_id: str
    task: str
    question: str
    answer: str  # the training target: the first ground truth
    index: int  # row index in its task's split
    answers: tuple[str, ...] = ()  # every ground truth, as the benchmark scores them


def data_location(location: str) -> str:
    """`--data`: "demo" (the bundled demo set), a build folder or hub id, or "" for $MMR3_DATA."""
    from mmr3_tasks import data  # imports `datasets`: not at module level (benchmarks run without it)

    if location == DEMO:
        return str(data.DEMO_DIR)
    return location or data.data_location()


class TrainingData:
    """The train rows of some tasks, split into training rows and held-out groups.

    Args:
        tasks: Some of schema.TASKS, trained jointly.
        location: As `data_location`.
        heldout_groups: Groups per task kept out of training for the held-out evaluation (at most
            a fifth of the task's groups; 0 keeps none).
        seed: Chooses the held-out groups.

    Raises:
        data.DataNotFoundError: a train split is missing (the message says how to build it).
        TrainingDataError: a split has no usable rows.
    """

    def __init__(self, tasks: Sequence[str], location: str, heldout_groups: int = 0, seed: int = 0) -> None:
        from mmr3_tasks import data

        # Unset: load_split resolves $MMR3_DATA itself, so its messages say where the location came from.
        given = data_location(location) if location else None
        self.location = given or data.data_location()
        self.splits = {}
        self.rows: list[Row] = []
        self.heldout: list[Row] = []
        for task in tasks:
            ds = data.load_split(task, "train", given)
            check = data.check_rows(ds, task, where=self.location)
            if check.dropped:
                logger.warning("mmr3 train-adapter: %s train split: dropped %s", task, check.summary())
            if not check.kept:
                raise TrainingDataError(f"the {task} train split at {self.location} has no usable rows")
            self.splits[task] = ds
            columns = ds.select_columns(["id", "group_id", "question", "answers"])[check.kept]
            rows = [
                Row(i, g, task, q, _target(a), index, tuple(a))
                for i, g, q, a, index in zip(
                    columns["id"], columns["group_id"], columns["question"], columns["answers"], check.kept, strict=True
                )
            ]
            held = heldout_group_ids(sorted({r.group_id for r in rows}), heldout_groups, seed, task)
            self.rows += [r for r in rows if r.group_id not in held]
            self.heldout += [r for r in rows if r.group_id in held]

    def sample(self, row: Row) -> Sample:
        """The query the model sees for `row` (its image decoded now), as lmms-eval would ask it."""
        image = self.splits[row.task][row.index]["image"].convert("RGB")
        return Sample(sample_id=row.id, context=row.question, images=(image,))

    def units(self, sample_by: str) -> list[list[int]]:
        """What a batch is cut from: one training row each ("variant"), or one group's rows ("group")."""
        if sample_by == "variant":
            return [[i] for i in range(len(self.rows))]
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(self.rows):
            groups.setdefault(r.group_id, []).append(i)
        return list(groups.values())

    def fingerprint(self) -> str:
        """What the run trains and holds out, in order: a checkpoint resumes only on the same rows."""
        import hashlib

        digest = hashlib.sha256()
        for kind, rows in (("train", self.rows), ("heldout", self.heldout)):
            for r in rows:
                digest.update(json.dumps([kind, r.task, r.id, r.question, r.answer]).encode())
        return digest.hexdigest()[:16]

    def describe(self) -> str:
        by_task = {}
        for r in self.rows:
            by_task.setdefault(r.task, [0, set()])
            by_task[r.task][0] += 1
            by_task[r.task][1].add(r.group_id)
        parts = [f"{task} {n} rows / {len(g)} groups" for task, (n, g) in by_task.items()]
        held = len({r.group_id for r in self.heldout})
        return f"{', '.join(parts)}; {held} held-out groups ({len(self.heldout)} rows) from {self.location}"


def _target(answers: Sequence[str]) -> str:
    """The training target: the first non-empty ground truth (the builder puts the best one first)."""
    return next(a.strip() for a in answers if a and a.strip())


def heldout_group_ids(group_ids: Sequence[str], n: int, seed: int, task: str) -> set[str]:
    """`n` groups (at most a fifth of them) chosen with the seed, independent of row order."""
    if n <= 0:
        return set()
    cap = int(len(group_ids) * HELDOUT_SHARE)
    if n > cap:
        logger.info(
            "mmr3 train-adapter: %s: holding out %d groups, not %d (a fifth of %d)", task, cap, n, len(group_ids)
        )
        n = cap
    order = sorted(group_ids)
    random.Random(f"mmr3-heldout:{seed}:{task}").shuffle(order)
    return set(order[:n])


@dataclass(frozen=True)
class StepPlan:
    """Which units each optimizer step trains on: a seeded permutation per epoch, cut into batches of
    `batch_size` units; an incomplete last batch is dropped, so every step sees the same count.

    Attributes:
        n_units: Units available.
        batch_size: Units per optimizer step (over all processes and accumulation steps).
        epochs: Passes over the units.
        max_steps: Stop after this many steps (None: all epochs).
        seed: Seeds the permutations.
    """

    n_units: int
    batch_size: int
    epochs: int
    max_steps: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps_per_epoch == 0:
            raise TrainingDataError(
                f"{self.n_units} training units for a batch of {self.batch_size}: lower --batch-size or train on "
                "more data (fewer --heldout-groups, more --tasks)"
            )

    @property
    def steps_per_epoch(self) -> int:
        return self.n_units // self.batch_size

    @property
    def total_steps(self) -> int:
        total = self.steps_per_epoch * self.epochs
        return total if self.max_steps is None else min(total, self.max_steps)

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def units(self, step: int) -> list[int]:
        """The unit indices of global step `step`."""
        epoch, k = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n_units)
        return order[k * self.batch_size : (k + 1) * self.batch_size].tolist()


def shares(units: Sequence[int], world_size: int, accumulation: int, rank: int) -> list[list[int]]:
    """This process's micro-batches of one step's units: the m-th is the slice
    [(m * world_size + rank) * n, ... + n), n = len(units) / (world_size * accumulation)."""
    per = len(units) // (world_size * accumulation)
    return [list(units[(m * world_size + rank) * per : (m * world_size + rank + 1) * per]) for m in range(accumulation)]


def check_split(batch_size: int, world_size: int, accumulation: int) -> None:
    """Raises TrainingDataError unless the batch divides evenly over processes and accumulation steps."""
    if batch_size % (world_size * accumulation):
        raise TrainingDataError(
            f"--batch-size {batch_size} does not divide over {world_size} process(es) x {accumulation} accumulation "
            f"step(s); pick a batch size that is a multiple of {world_size * accumulation}"
        )
