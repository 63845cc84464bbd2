"""The one row schema of every MM-R³ split: the bundled demo set and the full benchmark alike.

One row is one query: a variant of one item (the paper's §3.1). The variants of an item share a
`group_id`; the scorer groups by it, never by row position.
"""

from __future__ import annotations

import functools
from typing import Any

TASKS = ("rephrase", "restyle", "context")

# The paper's prompts (its §3.1). Rephrase rows carry their own question.
RESTYLE_PROMPT = "Please describe the place in the image in two sentences."
CONTEXT_PROMPT = "What kind of object is in the masked region?"

# Variant names per task, in the order the builder writes them (variant_index).
REPHRASE_VARIANTS = ("r1", "r2", "r3")
STYLES = ("candy", "mosaic", "udnie", "grayscale")
CONTEXT_VARIANTS = ("m1", "m2", "m3")
VARIANTS = {"rephrase": REPHRASE_VARIANTS, "restyle": STYLES, "context": CONTEXT_VARIANTS}

# Mask kinds (the paper's §3.1).
MASK_LINES = (1, 3, 5, 7)
MASK_SHAPES = ("rectangle", "ellipse")
MASK_COLORS = ("red", "blue", "green", "yellow", "white", "black")

# The Sampling protocol asks this many identical queries of one variant ...
SAMPLING_REPEATS = 4
# ... and that variant is the first one: rephrasing R1, the candy style, mask m1.
SAMPLING_VARIANT_INDEX = 0

# Column name -> type: a `datasets.Value` dtype, "image", or a 1-tuple for a sequence of that dtype.
# Plain data, so that importing this module does not import `datasets` (FEATURES builds it on use).
COLUMN_TYPES: dict[str, str | tuple[str]] = {
    "id": "string",  # unique per row: "<group_id>/<variant>"
    "group_id": "string",
    "task": "string",  # one of TASKS
    "variant": "string",  # one of VARIANTS[task]
    "variant_index": "int32",
    "group_size": "int32",  # variants the group was built with
    "question": "string",  # the exact prompt text the model gets
    "image": "image",
    "answers": ("string",),  # ground truths, any one counts
    "source": "string",  # okvqa | infographicvqa | gldv2 | mit_indoor | coco | demo
    "source_id": "string",  # question / image / annotation id in the source
    "original_question": "string",  # rephrase: the source question; else ""
    "style": "string",  # restyle: one of STYLES; else ""
    "mask_shape": "string",  # context: one of MASK_SHAPES; else ""
    "mask_lines": "int32",  # context: one of MASK_LINES; else 0
    "mask_color": "string",  # context: one of MASK_COLORS; else ""
    "mask_box": ("float32",),  # context: [x0, y0, x1, y1]; else []
    "image_license": "string",
    "image_source": "string",  # URL, dataset name or pip package path
}

COLUMNS = tuple(COLUMN_TYPES)

# Columns that tell one variant kind from another, for the per-kind breakdowns (paper Tables 10-13).
KIND_COLUMNS = {"restyle": ("style",), "context": ("mask_lines", "mask_shape", "mask_color")}


def variant_id(group_id: str, variant: str) -> str:
    """The row id of one variant of one group."""
    return f"{group_id}/{variant}"


@functools.cache
def features() -> Any:
    """The `datasets.Features` of a split, built from COLUMN_TYPES."""
    import datasets

    def feature(kind: str | tuple[str]) -> Any:
        if isinstance(kind, tuple):
            return datasets.Sequence(datasets.Value(kind[0]))
        return datasets.Image() if kind == "image" else datasets.Value(kind)

    return datasets.Features({name: feature(kind) for name, kind in COLUMN_TYPES.items()})


def __getattr__(name: str) -> Any:
    if name == "FEATURES":  # `schema.FEATURES`, built on first use
        return features()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
