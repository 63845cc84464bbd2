"""Image helpers shared by every pipeline: decoding, sizing, deterministic JPEG encoding, hashing."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image

# Sides of every restyled image are multiples of this: Johnson's network downsamples twice by 2.
SIZE_MULTIPLE = 4


class BadImageError(ValueError):
    """A source image that is missing, empty or cannot be decoded; the builder skips and counts it."""

    reason = "image failed to decode"  # the line it is counted under in the build report


class ImageTooSmallError(BadImageError):
    """An image too small for a transform (Johnson's style networks need sides of 44 px or more)."""

    reason = "image too small for style transfer"


def to_rgb(image: Image.Image | np.ndarray) -> Image.Image:
    """Any PIL image or skimage-style array (bool, gray, RGB, RGBA, float in 0-1) as an RGB image."""
    if isinstance(image, Image.Image):
        if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
            # Flatten transparency onto white, the background such sample images are drawn for.
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype.kind == "f":
        array = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise BadImageError(f"unsupported image array dtype {array.dtype}; expected bool, uint8 or float in 0-1")
    if array.ndim == 2:
        return Image.fromarray(array, "L").convert("RGB")
    if array.ndim == 3 and array.shape[2] == 4:
        return to_rgb(Image.fromarray(array, "RGBA"))
    if array.ndim == 3 and array.shape[2] == 3:
        return Image.fromarray(array, "RGB")
    raise BadImageError(f"unsupported image array shape {array.shape}; expected HxW, HxWx3 or HxWx4")


def open_rgb(source: str | Path | bytes) -> Image.Image:
    """Decodes an image file or its bytes fully, as RGB.

    Raises:
        BadImageError: missing, empty, truncated or not an image; the message names the file.
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        if isinstance(source, bytes):
            if not source:
                raise BadImageError("empty image bytes")
            with Image.open(io.BytesIO(source)) as im:
                im.load()
                return to_rgb(im)
        path = Path(source)
        if not path.is_file():
            raise BadImageError(f"missing image file {name}")
        if path.stat().st_size == 0:
            raise BadImageError(f"empty image file {name}")
        with Image.open(path) as im:
            im.load()
            return to_rgb(im)
    except BadImageError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as err:
        # PIL reports truncated and foreign files as OSError / SyntaxError / ValueError.
        raise BadImageError(f"cannot decode image {name}: {err}") from err


def round_to_multiple(value: float, multiple: int = SIZE_MULTIPLE) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def fit_size(width: int, height: int, max_side: int | None, multiple: int = 1) -> tuple[int, int]:
    """The size an image of `width` x `height` is resized to: longest side at most `max_side`
    (never enlarged), aspect ratio kept, both sides rounded to `multiple`."""
    scale = 1.0 if max_side is None else min(1.0, max_side / max(width, height))
    w, h = width * scale, height * scale
    if multiple > 1:
        w, h = round_to_multiple(w, multiple), round_to_multiple(h, multiple)
        if max_side is not None:
            # Rounding up must not push the longest side past the cap.
            while max(w, h) > max(max_side, multiple):
                w, h = (w - multiple, h) if w >= h else (w, h - multiple)
        return int(w), int(h)
    return max(1, int(round(w))), max(1, int(round(h)))


def resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == tuple(size):
        return image
    return image.resize(size, Image.Resampling.LANCZOS)


def encode_jpeg(image: Image.Image | np.ndarray, quality: int) -> bytes:
    """Deterministic baseline JPEG (no metadata, 4:2:0, no optimisation passes) of an RGB image."""
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=int(quality), subsampling="4:2:0", optimize=False)
    return buf.getvalue()


def grayscale(image: Image.Image) -> Image.Image:
    """The paper's fourth style: ITU-R 601-2 luma (PIL's "L"), stored as 3 equal channels."""
    return image.convert("L").convert("RGB")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
