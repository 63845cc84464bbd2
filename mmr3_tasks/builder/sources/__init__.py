"""The public sources, read from local copies in their official formats or from hub datasets.

One module per source (`okvqa`, `infovqa`, `gldv2`, `mit_indoor`, `coco`), each with a reader for
its local folder and, where the hub has it in a known layout, for `hub:<dataset id or local
folder>`; `common` holds what they share (SourcePool, SourceError, checked JSON records, hub
loading, the question rules, `validate_image`, `stable_fraction`). This package may import the
builder's item and image modules and mmr3_tasks' core (errors, imagecheck), never mmr3_adapters.

Each reader returns a `SourcePool`: the eligible items per split ("test", "train", or "any" for a
source without an official split), the counts of what was filtered out by the paper's rules, the
counts of bad annotations skipped, and a fingerprint of the inputs (sha256 of the annotation files,
or the hub dataset's id and fingerprint) for the manifest. Image files are not opened here: the
pipeline validates them lazily, only as many as it needs.

Official formats (docs/data.md gives the download pages):

- OK-VQA: `OpenEnded_mscoco_{train,val}2014_questions.json`, `mscoco_{train,val}2014_annotations.json`,
  COCO 2014 images `{train,val}2014/COCO_{train,val}2014_<12-digit id>.jpg`.
- InfographicsVQA: `infographicsVQA_{train,val}_v1.0.json` ({"data": [{questionId, question,
  image_local_name, answers, ...}]}) and the images folder.
- GLDv2: `train.csv` (id,url,landmark_id), `train_label_to_category.csv` (landmark_id,category),
  images `train/<a>/<b>/<c>/<id>.jpg`.
- MIT Indoor 67: `Images/<class>/<file>.jpg`, `TrainImages.txt`, `TestImages.txt`.
- COCO: `annotations/instances_{train,val}{2017,2014}.json` and `{train,val}{year}/<file_name>`.

Hub datasets: OK-VQA and InfographicsVQA as lmms-eval's own tasks load them (`OKVQA_HUB`,
`INFOVQA_HUB`), COCO with boxes as `detection-datasets/coco` lays it out (lmms-eval's COCO tasks
are captions, without boxes). Pass `hub:<dataset id or local folder>`.
"""

from __future__ import annotations

from collections.abc import Callable

from mmr3_tasks.builder.sources.coco import COCO_HUB, coco
from mmr3_tasks.builder.sources.common import (
    HUB_PREFIX,
    LICENSES,
    MIN_QUESTION_WORDS,
    SourceError,
    SourcePool,
    is_hub,
    load_hub,
    stable_fraction,
    validate_image,
    word_count,
)
from mmr3_tasks.builder.sources.gldv2 import gldv2
from mmr3_tasks.builder.sources.infovqa import INFOVQA_HUB, INFOVQA_HUB_CONFIG, infovqa
from mmr3_tasks.builder.sources.mit_indoor import mit_indoor
from mmr3_tasks.builder.sources.okvqa import OKVQA_HUB, okvqa

__all__ = [
    "COCO_HUB",
    "HUB_PREFIX",
    "INFOVQA_HUB",
    "INFOVQA_HUB_CONFIG",
    "LICENSES",
    "MIN_QUESTION_WORDS",
    "OKVQA_HUB",
    "READERS",
    "SourceError",
    "SourcePool",
    "coco",
    "gldv2",
    "infovqa",
    "is_hub",
    "load_hub",
    "mit_indoor",
    "okvqa",
    "read_source",
    "stable_fraction",
    "validate_image",
    "word_count",
]

READERS: dict[str, tuple[str, Callable[..., SourcePool], bool]] = {
    # name: (task, reader, takes a seed)
    "okvqa": ("rephrase", okvqa, False),
    "infovqa": ("rephrase", infovqa, False),
    "gldv2": ("restyle", gldv2, True),
    "mit_indoor": ("restyle", mit_indoor, False),
    "coco": ("context", coco, True),
}


def read_source(name: str, location: str, seed: int) -> SourcePool:
    task, reader, seeded = READERS[name]
    return reader(location, seed) if seeded else reader(location)
