"""What the adapter tests share: a toy build whose answers a tiny model can learn, and runners.

The toy task is `rephrase`: each group is one noisy colour field asked about in three phrasings,
and its answer names the colour's class. The answers are words the tiny tokenizer holds as one
token (" two", " photo", " show"), so that a one-token answer can be right or wrong, and the
frozen tiny model answers the three phrasings of one image differently.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests import mmr3_rows

# class -> (RGB of its colour field, the answer): the answers tokenise to one token each.
CLASSES = {"red": ((220, 30, 30), "two"), "green": ((30, 200, 40), "photo"), "blue": ((30, 40, 220), "show")}
PHRASINGS = (
    "What colour is this picture?",
    "Which colour fills the image?",
    "Tell me the main colour you can see here.",
)
# A tiny LLaVA whose random layers are wide enough (std 0.2) for a prefix to change its answer.
LEARNABLE_INIT = 0.2


def colour_png(rgb: tuple[int, int, int], seed: int, size: int = 40) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(rgb)[None, None] + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def colour_groups(per_class: int, first_seed: int) -> list[dict]:
    """`per_class` groups per colour class, three rephrasings each; images seeded from `first_seed`."""
    rows = []
    for name, (rgb, answer) in CLASSES.items():
        for k in range(per_class):
            seed = first_seed + k
            group_id = f"{name}-{seed}"
            image = {"bytes": colour_png(rgb, seed), "path": None}
            for v, question in enumerate(PHRASINGS):
                rows.append(mmr3_rows.row("rephrase", group_id, v, [answer], question=question, image=image))
    return rows


def toy_build(root: Path, train_per_class: int = 8, test_per_class: int = 4) -> Path:
    """A build folder with rephrase train and test splits whose images never overlap."""
    mmr3_rows.write_build(root, "rephrase", colour_groups(train_per_class, 0), "train")
    mmr3_rows.write_build(root, "rephrase", colour_groups(test_per_class, 1000), "test")
    return root


def learnable_llava(path: Path) -> Path:
    from mmr3_adapters.models import tiny

    return tiny.build_tiny_llava(path, size=tiny.TinyLlavaSize(initializer_range=LEARNABLE_INIT))


def quiet_env(**extra: str) -> dict[str, str]:
    """The environment for a training or lmms-eval subprocess: offline, one CPU thread.

    One thread: on a small shared machine, OpenMP spin-waiting made the tiny LSTM 2-3x slower.
    """
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **extra}


def mmr3_bin() -> str:
    exe = Path(sys.executable).with_name("mmr3")
    return str(exe) if exe.exists() else "mmr3"


def train_cli(*args: str, env: dict | None = None, timeout: int = 600, cwd: Path | None = None):
    """Runs the real `mmr3 train-adapter ARGS`; returns the CompletedProcess."""
    return subprocess.run(
        [mmr3_bin(), "train-adapter", *args],
        capture_output=True,
        text=True,
        env=env or quiet_env(),
        timeout=timeout,
        cwd=cwd,
    )


def trained_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))
