"""One strict test of whether an image decodes, shared by the builder and the tasks' row checks."""

from __future__ import annotations

import contextlib
import io
import threading

from PIL import Image, ImageFile, UnidentifiedImageError

_STRICT_LOCK = threading.Lock()


@contextlib.contextmanager
def strict_decoding():
    """Makes PIL refuse a truncated file here, whatever the process-wide setting.

    lmms-eval sets `ImageFile.LOAD_TRUNCATED_IMAGES = True` when it is imported; a cut JPEG then
    decodes grey-filled instead of failing, and a model would be asked about half an image.
    """
    with _STRICT_LOCK:
        old = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = old


def decodes(source: str | bytes) -> bool:
    """True when the image (a file path or encoded bytes) opens and decodes in full.

    Cheap but complete: a JPEG is decoded at 1/8 scale, which still reads every byte, so a
    truncated file fails; other formats get PIL's structural verify (PNG checks every chunk's CRC).
    """
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            if im.format == "JPEG":
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
                with strict_decoding():
                    im.load()
            else:
                im.verify()
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):  # what PIL raises for a bad file
        return False
