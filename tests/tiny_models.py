"""Tiny random checkpoints for the model tests, built once per test session (mmr3_adapters.models.tiny).

Test modules wrap `tiny_checkpoint` in session-scoped fixtures; the folders live under pytest's
session base temp dir, so every module of the session shares one build per family.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FAMILIES = ("llava", "blip2-opt", "blip2-t5")

_built: dict[tuple[str, str], Path] = {}


def tiny_checkpoint(family: str, tmp_path_factory) -> Path:
    """The folder of a tiny random `family` checkpoint, built on first use in this session."""
    from mmr3_adapters.models import tiny

    base = tmp_path_factory.getbasetemp()
    key = (str(base), family)
    if key not in _built:
        _built[key] = tiny.BUILDERS[family](base / f"tiny-{family}")
    return _built[key]


def load_generators(tmp_path_factory) -> dict:
    """Family -> our generator over its tiny checkpoint, in float32 (exact comparisons on CPU)."""
    from mmr3_adapters.models import Blip2Generator, LlavaGenerator

    classes = {"llava": LlavaGenerator, "blip2-opt": Blip2Generator, "blip2-t5": Blip2Generator}
    return {f: classes[f].from_pretrained(tiny_checkpoint(f, tmp_path_factory), dtype="float32") for f in FAMILIES}


def model_args(path: Path, **extra: object) -> str:
    """`--model_args` for a tiny checkpoint (float32: exact comparisons on CPU)."""
    args = {"pretrained": str(path), "dtype": "float32", **extra}
    return ",".join(f"{k}={v}" for k, v in args.items())


def images(n: int, seed: int = 0) -> list:
    """`n` random RGB PIL images of different sizes (the processors resize them)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, size=(40 + 8 * i, 64 - 4 * i, 3), dtype=np.uint8), "RGB") for i in range(n)
    ]


# Questions of clearly different token lengths, so that a batch needs real left padding.
QUESTIONS = [
    "What?",
    "What is shown in this picture number 3, with many more words than the first question has?",
    "Please describe the place in the image in two sentences.",
    "colour",
    "one two three four five six seven eight nine ten one two three four five",
]
