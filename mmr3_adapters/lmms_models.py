"""Our lmms-eval models, registered through the `lmms_eval.models` entry point (`manifests`).

The only module of mmr3_adapters that imports lmms_eval: wrappers here are thin, the work
(prompts, batching, generation) lives in lmms-eval-free modules.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from lmms_eval.models.registry_v2 import ModelManifest

MODEL_IDS = {
    "mmr3_replay": "mmr3_adapters.lmms_models.Replay",
}


def manifests() -> list[ModelManifest]:
    """The `lmms_eval.models` entry point."""
    return [ModelManifest(model_id=model_id, simple_class_path=path) for model_id, path in MODEL_IDS.items()]


class Replay(lmms):
    """Answers every query from a file of responses recorded elsewhere, keyed by row id.

    For scoring responses that some other system produced (an API batch job, another harness)
    with exactly the same tasks and metrics: `--model mmr3_replay --model_args responses=FILE`.
    FILE is JSON lines, `{"id": "<row id>", "response": "..."}`, or `"responses": [...]` for the
    Sampling protocol's repeated queries. A query whose id the file lacks stops the run with that
    id: a missing answer is never scored as an empty one.
    """

    def __init__(
        self, responses: str, batch_size: int | str = 1, device: str | None = None, **kwargs
    ) -> None:
        super().__init__()
        if kwargs:
            raise TypeError(
                f"mmr3_replay got unknown model_args {sorted(kwargs)}; it takes only responses=FILE"
            )
        self.path = Path(responses)
        if not self.path.is_file():
            raise FileNotFoundError(f"mmr3_replay: responses file {str(self.path)!r} does not exist")
        self.answers: dict[str, list[str]] = {}
        with self.path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    texts = row["responses"] if "responses" in row else [row["response"]]
                    self.answers[str(row["id"])] = [str(t) for t in texts]
                except (json.JSONDecodeError, KeyError, TypeError) as err:
                    raise ValueError(
                        f"{self.path}:{n}: expected {{'id': ..., 'response': ...}} or 'responses': [...], "
                        f"got {line.strip()[:200]!r} ({err})"
                    ) from err
        self._ids: dict[tuple[str, str], list[str]] = {}

    def _row_id(self, task: str, split: str, doc_id: int) -> str:
        key = (task, split)
        if key not in self._ids:
            self._ids[key] = self.task_dict[task][split]["id"]  # a column read: no image decoding
        return self._ids[key][doc_id]

    def generate_until(self, requests: list[Instance]) -> list[str]:
        served: dict[int, int] = defaultdict(int)  # repeated Instance -> how many answers given
        out = []
        for req in requests:
            _, _, _, doc_id, task, split = req.args
            row_id = self._row_id(task, split, doc_id)
            if row_id not in self.answers:
                raise KeyError(f"mmr3_replay: no response for row {row_id!r} (task {task}) in {self.path}")
            texts = self.answers[row_id]
            k = served[id(req)]
            served[id(req)] += 1
            if k >= len(texts):
                raise ValueError(
                    f"mmr3_replay: row {row_id!r} asked {k + 1} times but {self.path} holds {len(texts)} responses"
                )
            out.append(texts[k])
        return out

    def loglikelihood(self, requests):
        raise NotImplementedError("mmr3_replay only answers generation tasks")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("mmr3_replay only answers single-round generation tasks")
