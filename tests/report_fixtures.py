"""Inputs for `mmr3 report` and `mmr3 score`: hand-written lmms-eval results, real lmms-eval runs, the CLI.

`write_run` writes files shaped like lmms-eval 0.7's (`evaluator.py` and
`loggers/evaluation_tracker.py`): `<date>_results.json` with `results`, `config` (`model`,
`model_args`, `gen_kwargs`, `limit`) and `date`, and `<date>_samples_<task>.jsonl` with one sample
per line, our payload under `acc`. `replay_demo_run` runs the real `lmms-eval` command instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from mmr3_tasks import data
from tests.conftest import LmmsRun, run_lmms_cli


def write_run(
    folder: Path,
    model_args: str,
    scores: dict[str, dict],
    gen_kwargs: str | dict = "",
    samples: dict[str, list[dict]] | None = None,
    stamp: str = "20250101_000000",
    limit: float | None = None,
) -> Path:
    """A results file (task -> metric -> value) and, for `samples` (task -> payloads), samples files."""
    folder.mkdir(parents=True, exist_ok=True)
    results = {task: {"alias": task, **{f"{k},none": v for k, v in s.items()}} for task, s in scores.items()}
    config = {"model": "mmr3_llava", "model_args": model_args, "gen_kwargs": gen_kwargs, "limit": limit}
    (folder / f"{stamp}_results.json").write_text(json.dumps({"results": results, "config": config, "date": stamp}))
    for task, payloads in (samples or {}).items():
        lines = [json.dumps({"doc_id": i, "acc": p}) for i, p in enumerate(payloads)]
        (folder / f"{stamp}_samples_{task}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def reference_interval(diffs: list[float], n_resamples: int = 1000, seed: int = 0) -> list[float]:
    """docs/compare.md's paired interval, by its own words: each of `n_resamples` resamples draws the
    n shared groups with replacement (multinomial counts, numpy's generator seeded with `seed`), its
    mean difference is taken, and the interval is the 2.5th to 97.5th percentile of those means.
    `diffs` are run − base per shared group, in sorted group-id order."""
    n = len(diffs)
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_resamples)
    means = counts @ np.asarray(diffs, dtype=np.float64) / n
    return [float(x) for x in np.quantile(means, [0.025, 0.975])]


DEMO_TASK = "mmr3_mini_rephrase"


def replay_demo_run(out_dir: Path, limit: int | None = None) -> LmmsRun:
    """The real `lmms-eval` on the demo set's rephrase task: the ground truth for two variants in three."""
    ds = data.load_demo("rephrase")
    answers = out_dir.parent / "replay_answers.jsonl"
    rows = enumerate(zip(ds["id"], ds["answers"], strict=True))
    answers.write_text(
        "".join(json.dumps({"id": i, "response": "" if n % 3 == 2 else a[0]}) + "\n" for n, (i, a) in rows)
    )
    args = ["--model", "mmr3_replay", "--model_args", f"responses={answers}", "--tasks", DEMO_TASK]
    run = run_lmms_cli(out_dir, *args, *(["--limit", str(limit)] if limit else []))
    assert run.results["results"][DEMO_TASK]["responses,none"] == (limit or len(ds)), run.output[-3000:]
    return run


def mmr3(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real `mmr3` command, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "mmr3_tasks.cli", *map(str, args)],
        capture_output=True, text=True, timeout=600, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
