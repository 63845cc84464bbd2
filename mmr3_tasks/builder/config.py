"""The settings of a full build, as dataclasses that round-trip to JSON (`build_config.json`)."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from mmr3_tasks import schema
from mmr3_tasks.builder.rephrase import GeneratorConfig
from mmr3_tasks.builder.styles import StyleModelSpec
from mmr3_tasks.errors import MMR3Error

SPLITS = ("test", "train")

# Groups per split at the paper's sizes (its Table 1). Test: 1,172 questions (3,516
# rephrasings), 1,332 images (5,328 styled), 1,500 images (4,500 masked). Train rows 16,894 /
# 27,226 / 30,003 are not all multiples of the group sizes 3 / 4 / 3: the nearest lower whole
# numbers of groups are 5,631 (16,893 rows), 6,806 (27,224 rows) and 10,001 (30,003 rows).
PAPER_SIZES: dict[str, dict[str, int]] = {
    "rephrase": {"test": 1172, "train": 5631},
    "restyle": {"test": 1332, "train": 6806},
    "context": {"test": 1500, "train": 10001},
}

# How a task's groups are shared among its sources. Restyle: the paper's test split has 600
# GLDv2 and 732 MIT Indoor images. Rephrase: the paper gives no split, so its sources share in
# proportion to their eligible questions (no entry here).
SOURCE_SHARES: dict[str, dict[str, float]] = {"restyle": {"gldv2": 600, "mit_indoor": 732}}

# Which sources feed which task.
TASK_SOURCES: dict[str, tuple[str, ...]] = {
    "rephrase": ("okvqa", "infovqa"),
    "restyle": ("gldv2", "mit_indoor"),
    "context": ("coco",),
}

RESOLUTIONS = (224, 640, 1024)


class ConfigError(MMR3Error, ValueError):
    """A build setting that cannot work; the message names it and the fix."""


@dataclass
class SourceLocations:
    """A folder in the source's official format, or `hub:<dataset id>`; empty: not used."""

    okvqa: str = ""
    infovqa: str = ""
    gldv2: str = ""
    mit_indoor: str = ""
    coco: str = ""

    def for_task(self, task: str) -> dict[str, str]:
        return {name: getattr(self, name) for name in TASK_SOURCES[task] if getattr(self, name)}


@dataclass
class BuildConfig:
    """Everything a full build depends on.

    Attributes:
        out: the output folder (what `$MMR3_DATA` points at).
        tasks / splits: what to build.
        sizes: groups per task and split (default: the paper's).
        seed: seeds every choice: split of split-less sources, sampling order, objects, mask kinds.
        sources: where each source is.
        generator: the rephrasing generator.
        style_models: candy / mosaic / udnie models (needed for restyle).
        restyle_resolution: 224 / 640 / 1024: resize to that square before style transfer (paper
            §4.3.3); None keeps the aspect ratio with the longest side at most restyle_max_side.
        restyle_max_side / context_max_side / rephrase_max_side: longest-side caps (None: as is);
            rephrase images are stored as the source's own bytes when they need no resizing.
        jpeg_quality: quality of every re-encoded image.
        shard_rows: about this many rows per parquet shard (whole groups).
        workers: threads for decoding, masking and encoding.
        style_batch_size: images per style-network call (also the GPU batch).
        progress: show progress bars.
    """

    out: str
    tasks: list[str] = field(default_factory=lambda: list(schema.TASKS))
    splits: list[str] = field(default_factory=lambda: list(SPLITS))
    sizes: dict[str, dict[str, int]] = field(default_factory=lambda: copy.deepcopy(PAPER_SIZES))
    seed: int = 0
    sources: SourceLocations = field(default_factory=SourceLocations)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    style_models: StyleModelSpec | None = None
    restyle_resolution: int | None = None
    restyle_max_side: int | None = 640
    context_max_side: int | None = None
    rephrase_max_side: int | None = None
    jpeg_quality: int = 95
    shard_rows: int = 1000
    workers: int = 2
    style_batch_size: int = 8
    progress: bool = True

    def __post_init__(self) -> None:
        bad = [t for t in self.tasks if t not in schema.TASKS]
        if bad:
            raise ConfigError(f"unknown tasks {bad}; choose from {', '.join(schema.TASKS)}")
        bad = [s for s in self.splits if s not in SPLITS]
        if bad:
            raise ConfigError(f"unknown splits {bad}; choose from {', '.join(SPLITS)}")
        for task, per_split in self.sizes.items():
            if task not in schema.TASKS or any(s not in SPLITS or n < 0 for s, n in per_split.items()):
                raise ConfigError(f"bad sizes for {task!r}: {per_split}; expected {{test: N, train: N}}, N >= 0")
        if self.restyle_resolution is not None and self.restyle_resolution not in RESOLUTIONS:
            raise ConfigError(f"restyle resolution {self.restyle_resolution} is not one of the paper's {RESOLUTIONS}")
        if self.shard_rows < 1 or self.workers < 1 or self.style_batch_size < 1:
            raise ConfigError("shard_rows, workers and style_batch_size must be at least 1")

    def size(self, task: str, split: str) -> int:
        return int(self.sizes.get(task, {}).get(split, PAPER_SIZES[task][split]))

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> BuildConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown build settings {unknown}; known: {sorted(known)}")
        data = dict(data)
        data["sources"] = SourceLocations(**data.get("sources", {}))
        data["generator"] = GeneratorConfig(**data.get("generator", {}))
        if data.get("style_models") is not None:
            data["style_models"] = StyleModelSpec(**data["style_models"])
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> BuildConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
