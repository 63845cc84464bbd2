"""Source items -> groups of variants: the one code path of the demo set and the full build.

A source yields items (`RephraseItem`, `RestyleItem`, `ContextItem`) that point at their image
(`ImageRef`); the functions here load the image, size it (`ImagePolicy`), make every variant and
encode it, and return a `rows.Group`.
"""

from __future__ import annotations

import importlib
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from mmr3_tasks import schema
from mmr3_tasks.builder import images as imgs
from mmr3_tasks.builder import masks
from mmr3_tasks.builder.rows import Group, Variant

_SAFE_ID = re.compile(r"[^A-Za-z0-9._:+=-]+")


def safe_id(*parts: str | int) -> str:
    """A group id from source parts: no '/', which separates group id and variant in row ids."""
    return "-".join(_SAFE_ID.sub("_", str(p)).strip("_") or "_" for p in parts)


@dataclass
class ImageRef:
    """Where one source image is: a file, bytes from a hub row, or a sample-data loader; maybe cropped.

    Attributes:
        key: its stable identity in the source (path relative to the source root, hub id, loader).
        path: a local file.
        fetch: returns the encoded bytes (hub datasets).
        loader: "module.function" or "module.function:argument" returning an array, PIL image,
            path or file object (scikit-image / scikit-learn / matplotlib sample images).
        crop: [x0, y0, x1, y1] in the source image's pixels.
    """

    key: str
    path: str | None = None
    fetch: Callable[[], bytes] | None = None
    loader: str | None = None
    crop: tuple[int, int, int, int] | None = None

    def raw(self) -> bytes | None:
        """The source's encoded bytes, when they are the image as it stands (no crop, no loader)."""
        if self.crop is not None or self.loader:
            return None
        if self.fetch is not None:
            data = self.fetch()
            if not data:
                raise imgs.BadImageError(f"image {self.key}: empty bytes")
            return data
        if self.path is not None:
            with open(self.path, "rb") as f:
                return f.read()
        return None

    def load(self) -> Image.Image:
        """The image as RGB, cropped.

        Raises:
            BadImageError: missing, unreadable, or a crop outside the image.
        """
        if self.loader:
            image = imgs.to_rgb(_call_loader(self.loader))
        elif self.path is not None:
            image = imgs.open_rgb(self.path)
        elif self.fetch is not None:
            image = imgs.open_rgb(self.fetch())
        else:
            raise imgs.BadImageError(f"image {self.key}: no path, bytes or loader")
        if self.crop is not None:
            x0, y0, x1, y1 = self.crop
            if not (0 <= x0 < x1 <= image.width and 0 <= y0 < y1 <= image.height):
                raise imgs.BadImageError(f"image {self.key}: crop {list(self.crop)} outside its {image.size}")
            image = image.crop((x0, y0, x1, y1))
        return image


def _call_loader(spec: str):
    target, _, argument = spec.partition(":")
    module, _, name = target.rpartition(".")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise imgs.BadImageError(f"image loader {spec!r} not found ({err}); is its package installed?") from err
    value = function(argument) if argument else function()
    if hasattr(value, "read"):  # matplotlib's get_sample_data returns an open file
        with value:
            return Image.open(io.BytesIO(value.read())).copy()
    if isinstance(value, str):
        return Image.open(value).copy()
    return value


@dataclass
class ImagePolicy:
    """How a task's images are sized and stored.

    Attributes:
        max_side: longest side cap in pixels (never enlarged); None keeps the size.
        square: resize to square x square (the paper's §4.3.3 resolutions 224 / 640 / 1024); wins
            over max_side.
        multiple: round both sides to a multiple of this (4 for style transfer).
        jpeg_quality: JPEG quality of re-encoded images.
        keep_original: store the source's own bytes when nothing about the image changes.
    """

    max_side: int | None = None
    square: int | None = None
    multiple: int = 1
    jpeg_quality: int = 95
    keep_original: bool = False

    def __post_init__(self) -> None:
        if self.square is not None and self.square % max(1, self.multiple):
            raise ValueError(f"square resolution {self.square} is not a multiple of {self.multiple}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality {self.jpeg_quality} is outside 1-100")

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        if self.square is not None:
            return self.square, self.square
        return imgs.fit_size(width, height, self.max_side, self.multiple)

    def to_dict(self) -> dict:
        return asdict(self)


def sized(image: Image.Image, policy: ImagePolicy) -> Image.Image:
    return imgs.resize(image, policy.target_size(*image.size))


# --------------------------------------------------------------------------- items


@dataclass
class RephraseItem:
    """One source question over one image; `rephrasings` are filled in by the generator."""

    group_id: str
    source: str
    source_id: str
    image: ImageRef
    question: str
    answers: list[str]
    image_license: str
    image_source: str
    rephrasings: list[str] = field(default_factory=list)

    @property
    def prompt_answer(self) -> str:
        """The answer put into the paper's rephrasing prompt: the first (most frequent) one."""
        return self.answers[0]


@dataclass
class RestyleItem:
    group_id: str
    source: str
    source_id: str
    image: ImageRef
    answers: list[str]
    image_license: str
    image_source: str


@dataclass
class ContextItem:
    """One image with the one object to mask; `box` is [x0, y0, x1, y1] in the (cropped) source
    image's pixels."""

    group_id: str
    source: str
    source_id: str
    image: ImageRef
    box: tuple[float, float, float, float]
    answers: list[str]
    image_license: str
    image_source: str


# --------------------------------------------------------------------------- rendering

_KEEPABLE = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


def render_rephrase(item: RephraseItem, policy: ImagePolicy) -> Group:
    """The group of one question: the same image under each of its 3 rephrasings."""
    if len(item.rephrasings) != len(schema.REPHRASE_VARIANTS):
        raise ValueError(f"{item.group_id}: {len(item.rephrasings)} rephrasings, need {len(schema.REPHRASE_VARIANTS)}")
    data = None
    if policy.keep_original and policy.square is None:
        raw = item.image.raw()
        if raw is not None and raw.startswith(_KEEPABLE):
            with Image.open(io.BytesIO(raw)) as probe:
                size = probe.size
            if policy.target_size(*size) == size:
                imgs.open_rgb(raw)  # a corrupt file must fail here, not in the model
                data = raw
    if data is None:
        data = imgs.encode_jpeg(sized(item.image.load(), policy), policy.jpeg_quality)
    variants = [
        Variant(name=name, question=text, image=data, original_question=item.question)
        for name, text in zip(schema.REPHRASE_VARIANTS, item.rephrasings, strict=True)
    ]
    return Group(
        item.group_id,
        "rephrase",
        item.source,
        item.source_id,
        item.answers,
        item.image_license,
        item.image_source,
        variants,
    )


def prepare_restyle(item: RestyleItem, policy: ImagePolicy) -> np.ndarray:
    """The [H, W, 3] uint8 image the style networks get (sides multiples of 4)."""
    from mmr3_tasks.builder.styles import MIN_SIDE

    if policy.multiple % imgs.SIZE_MULTIPLE:
        raise ValueError(f"restyle images need sides that are multiples of {imgs.SIZE_MULTIPLE}")
    image = sized(item.image.load(), policy)
    if min(image.size) < MIN_SIDE:
        raise imgs.ImageTooSmallError(f"image {item.image.key} is {image.size}, under {MIN_SIDE} px a side")
    return np.asarray(image)


def render_restyle(
    items: Sequence[RestyleItem], arrays: Sequence[np.ndarray], models: dict, policy: ImagePolicy
) -> list[Group]:
    """The groups of several images: each in the 4 styles. Equal-sized images share one batch."""
    from mmr3_tasks.builder.styles import restyle_batch

    styled: list[dict[str, np.ndarray] | None] = [None] * len(items)
    by_size: dict[tuple[int, ...], list[int]] = {}
    for i, array in enumerate(arrays):
        by_size.setdefault(array.shape, []).append(i)
    for indices in by_size.values():
        out = restyle_batch(np.stack([arrays[i] for i in indices]), models)
        for j, i in enumerate(indices):
            styled[i] = {style: out[style][j] for style in schema.STYLES}
    groups = []
    for item, styles in zip(items, styled, strict=True):
        assert styles is not None
        variants = [
            Variant(
                name=style,
                question=schema.RESTYLE_PROMPT,
                image=imgs.encode_jpeg(styles[style], policy.jpeg_quality),
                style=style,
            )
            for style in schema.STYLES
        ]
        groups.append(
            Group(
                item.group_id,
                "restyle",
                item.source,
                item.source_id,
                item.answers,
                item.image_license,
                item.image_source,
                variants,
            )
        )
    return groups


def render_context(item: ContextItem, policy: ImagePolicy, seed: int) -> Group:
    """The group of one image: 3 masks of its object, of seeded distinct kinds."""
    image = item.image.load()
    target = policy.target_size(*image.size)
    sx, sy = target[0] / image.width, target[1] / image.height
    array = np.asarray(imgs.resize(image, target))
    x0, y0, x1, y1 = item.box
    box = masks.pixel_box((x0 * sx, y0 * sy, x1 * sx, y1 * sy), target[0], target[1])
    variants = []
    for name, kind in zip(schema.CONTEXT_VARIANTS, masks.draw_kinds(seed, item.group_id), strict=True):
        variants.append(
            Variant(
                name=name,
                question=schema.CONTEXT_PROMPT,
                image=imgs.encode_jpeg(masks.render_mask(array, box, kind), policy.jpeg_quality),
                mask_shape=kind.shape,
                mask_lines=kind.lines,
                mask_color=kind.color,
                mask_box=[float(v) for v in box],
            )
        )
    return Group(
        item.group_id,
        "context",
        item.source,
        item.source_id,
        item.answers,
        item.image_license,
        item.image_source,
        variants,
    )
