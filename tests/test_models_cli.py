"""The real `lmms-eval` command with mmr3_blip2 / mmr3_llava on the demo tasks (tiny random checkpoints).

lmms-eval exits 0 even when a run fails, so every check reads the results JSON and the samples.
"""

from __future__ import annotations

import math

import pytest

from tests.conftest import LmmsRun, accelerate_launcher, run_lmms_cli
from tests.tiny_models import model_args, tiny_checkpoint

pytestmark = pytest.mark.slow

PAPER_METRICS = ("acc", "s_gt", "con", "s_c")
LIMIT = "8"  # per task; the demo set's size may change, the test's cost should not


def assert_scored(run: LmmsRun, tasks: list[str], max_new_tokens: int) -> dict[str, list[dict]]:
    """Every task has the paper's metrics as numbers and a non-empty answer per sample."""
    results = run.results["results"]
    by_task = {}
    for task in tasks:
        assert task in results, f"{task} missing from the results:\n{run.output[-3000:]}"
        for metric in PAPER_METRICS:
            value = results[task][f"{metric},none"]
            assert isinstance(value, (int, float)) and math.isfinite(value), (task, metric, value)
        samples = run.samples(task)
        assert len(samples) == int(LIMIT)
        for s in samples:
            assert isinstance(s["filtered_resps"], str) and s["filtered_resps"].strip(), s
            # The tiny models never emit EOS, so every answer is exactly max_new_tokens long.
            assert s["token_counts"][0]["output_tokens"] == max_new_tokens
        by_task[task] = samples
    return by_task


def llava_args(path) -> list[str]:
    return [
        "--model", "mmr3_llava", "--model_args", model_args(path),
        "--tasks", "mmr3_mini", "--batch_size", "4", "--limit", LIMIT, "--gen_kwargs", "max_new_tokens=16",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def llava_run(tmp_path_factory) -> LmmsRun:
    """The demo group answered by the tiny LLaVA in one process (shared by two tests)."""
    path = tiny_checkpoint("llava", tmp_path_factory)
    return run_lmms_cli(tmp_path_factory.mktemp("llava_run") / "out", *llava_args(path))


def test_llava_answers_the_demo_group(llava_run, tmp_path_factory):
    # --gen_kwargs overrides the YAML's max_new_tokens for every task of the group.
    assert_scored(llava_run, ["mmr3_mini_rephrase", "mmr3_mini_restyle", "mmr3_mini_context"], 16)
    config = llava_run.results["config"]
    assert config["model"] == "mmr3_llava" and config["batch_size"] == "4"
    assert f"pretrained={tiny_checkpoint('llava', tmp_path_factory)}" in config["model_args"]  # on record


@pytest.mark.parametrize(
    "family, task, extra, max_new_tokens",
    [
        # No override: the task's own max_new_tokens (64) must be honoured.
        ("blip2-opt", "mmr3_mini_rephrase", [], 64),
        ("blip2-t5", "mmr3_mini_context", ["--gen_kwargs", "max_new_tokens=16"], 16),
    ],
)
def test_blip2_answers_a_demo_task(family, task, extra, max_new_tokens, run_lmms_eval, tmp_path_factory):
    path = tiny_checkpoint(family, tmp_path_factory)
    run = run_lmms_eval(
        "--model", "mmr3_blip2", "--model_args", model_args(path),
        "--tasks", task, "--batch_size", "4", "--limit", LIMIT, *extra,
    )  # fmt: skip
    assert_scored(run, [task], max_new_tokens)
    assert f"pretrained={path}" in run.results["config"]["model_args"]


def test_data_parallel_over_two_processes_gives_the_single_process_answers(llava_run, tmp_path_factory, tmp_path):
    """`accelerate launch` as on a multi-GPU node, here with two CPU processes (gloo)."""
    path = tiny_checkpoint("llava", tmp_path_factory)
    launcher = accelerate_launcher(2)  # no GPU here: ACCELERATE_USE_CPU makes the ranks CPU processes
    args = llava_args(path)
    args[args.index("mmr3_mini")] = "mmr3_mini_context"
    run = run_lmms_cli(tmp_path / "dp", *args, launcher=launcher, env={"ACCELERATE_USE_CPU": "true"})
    assert "Running on rank 1" in run.output, run.output[-3000:]
    parallel = assert_scored(run, ["mmr3_mini_context"], 16)["mmr3_mini_context"]
    single = llava_run.samples("mmr3_mini_context")
    # Each rank answered its own shard, in its own batches; greedy answers must not change.
    assert {s["doc_id"]: s["filtered_resps"] for s in parallel} == {s["doc_id"]: s["filtered_resps"] for s in single}
