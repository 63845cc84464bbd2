"""Atomic file writes: a reader, or a resumed build, sees either no file or the whole file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files 0600; finished files get the permissions a plain open() would give them.
FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_target(path: Path, suffix: str = ".tmp") -> Iterator[str]:
    """Yields a hidden temporary path beside `path`. The caller writes it. On a normal exit it is
    synced, given the usual permissions and renamed onto `path`. On an exception it is removed and
    `path` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_target(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
