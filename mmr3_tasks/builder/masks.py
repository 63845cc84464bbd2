"""The context task's masks: one object's box hidden under a shape of one colour, in k stripes.

The paper (its §3.1) names the kinds, lines 1/3/5/7, rectangle/ellipse and six colours, but
never shows what a k-line mask looks like. Our rendering, fixed and documented (docs/data.md):

- the *shape* is the object's box itself (rectangle) or the ellipse inscribed in it (ellipse);
- the box's height is cut into 2k-1 equal horizontal bands (band edges rounded to whole pixel rows)
  and the k even-numbered bands, top and bottom included, are painted in the *colour* where they
  fall inside the shape; the k-1 bands between them stay as they were.

So 1 line is a solid shape, and k lines are k stripes of the shape's own outline with k-1 gaps,
covering k/(2k-1) of it (100%, 60%, 56%, 54%). Pixels are set exactly (no anti-aliasing), so the
same image, box and kind always give the same bytes.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from mmr3_tasks import schema

COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "blue": (0, 0, 255),
    "green": (0, 255, 0),
    "yellow": (255, 255, 0),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
assert tuple(COLOR_RGB) == schema.MASK_COLORS  # one list of colours, schema's order

# The paper's object-size filter: object area / image area in [0.10, 0.25].
MIN_AREA_RATIO = 0.10
MAX_AREA_RATIO = 0.25


@dataclass(frozen=True)
class MaskKind:
    """How one variant's mask looks; recorded per row (mask_shape / mask_lines / mask_color)."""

    shape: str
    lines: int
    color: str

    def __post_init__(self) -> None:
        if self.shape not in schema.MASK_SHAPES:
            raise ValueError(f"mask shape {self.shape!r} is not one of {schema.MASK_SHAPES}")
        if self.lines not in schema.MASK_LINES:
            raise ValueError(f"mask lines {self.lines!r} is not one of {schema.MASK_LINES}")
        if self.color not in COLOR_RGB:
            raise ValueError(f"mask colour {self.color!r} is not one of {schema.MASK_COLORS}")

    def to_dict(self) -> dict:
        return asdict(self)


ALL_KINDS = tuple(
    MaskKind(shape, lines, color)
    for lines, shape, color in itertools.product(schema.MASK_LINES, schema.MASK_SHAPES, schema.MASK_COLORS)
)


def draw_kinds(seed: int, group_id: str, n: int = len(schema.CONTEXT_VARIANTS)) -> list[MaskKind]:
    """`n` distinct mask kinds for one group, drawn uniformly from the 48 combinations.

    Seeded by (seed, group_id) alone, so a group's kinds never depend on which other groups were
    built, in which order, or whether the build was resumed. Distinct, because two identical masks
    would make a variant pair trivially consistent.
    """
    rng = random.Random(f"mmr3-mask:{seed}:{group_id}")  # str seeds hash with SHA-512: stable across runs
    return rng.sample(ALL_KINDS, n)


def stripe_rows(height: int, lines: int) -> np.ndarray:
    """Boolean [height]: which rows of a box of `height` rows the k painted bands cover."""
    bands = 2 * lines - 1
    edges = np.rint(np.arange(bands + 1) * (height / bands)).astype(int)
    rows = np.zeros(height, dtype=bool)
    for b in range(0, bands, 2):
        rows[edges[b] : edges[b + 1]] = True
    return rows


def shape_mask(width: int, height: int, shape: str) -> np.ndarray:
    """Boolean [height, width]: the rectangle (all) or the ellipse inscribed in a box of that size."""
    if shape == "rectangle":
        return np.ones((height, width), dtype=bool)
    # Pixel centres inside the ellipse with semi-axes width/2, height/2.
    y = (np.arange(height) + 0.5 - height / 2) / (height / 2)
    x = (np.arange(width) + 0.5 - width / 2) / (width / 2)
    return (y[:, None] ** 2 + x[None, :] ** 2) <= 1.0


def pixel_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """[x0, y0, x1, y1] in pixels (x1, y1 exclusive), rounded and clipped to the image."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, x1 = max(0, min(x0, width)), max(0, min(x1, width))
    y0, y1 = max(0, min(y0, height)), max(0, min(y1, height))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"mask box {list(box)} is empty inside a {width}x{height} image")
    return x0, y0, x1, y1


def render_mask(image: np.ndarray, box: Sequence[float], kind: MaskKind) -> np.ndarray:
    """A copy of `image` ([H, W, 3] uint8) with the box masked as `kind` says."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = pixel_box(box, width, height)
    w, h = x1 - x0, y1 - y0
    painted = shape_mask(w, h, kind.shape) & stripe_rows(h, kind.lines)[:, None]
    out = image.copy()
    region = out[y0:y1, x0:x1]
    region[painted] = COLOR_RGB[kind.color]
    return out


def area_ratio(box: Sequence[float], width: int, height: int) -> float:
    x0, y0, x1, y1 = box
    return max(0.0, x1 - x0) * max(0.0, y1 - y0) / float(width * height)
