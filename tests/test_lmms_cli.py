"""The real `lmms-eval` command with our tasks: registration, errors, and hand-computed scores.

lmms-eval exits 0 even when an evaluation fails, so every check reads its results JSON and
samples. The scripted model is `mmr3_replay`, which answers from a file keyed by row id.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from mmr3_tasks import lmms_plugin, taskdefs
from tests import mmr3_rows
from tests.conftest import lmms_eval_bin

pytestmark = pytest.mark.slow

OUR_NAMES = [d.name for d in taskdefs.TASK_DEFS] + list(taskdefs.GROUPS)


def listed_names(output: str) -> set[str]:
    names = set()
    for line in output.splitlines():
        word = line.strip().lstrip("-").strip()
        if word.startswith("mmr3"):
            names.add(word)
    return names


def run_cli(*args, env=None, cwd=None):
    import os

    return subprocess.run(
        [lmms_eval_bin(), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=300,
    )


def test_tasks_are_listed_with_no_flag():
    proc = run_cli("--tasks", "list")
    assert set(OUR_NAMES) <= listed_names(proc.stdout + proc.stderr)


def test_include_path_and_legacy_plugins_variable_still_work():
    proc = run_cli("--tasks", "list", "--include_path", lmms_plugin.tasks_dir())
    assert set(OUR_NAMES) <= listed_names(proc.stdout + proc.stderr)
    proc = run_cli("--tasks", "list", env={"LMMS_EVAL_PLUGINS": "mmr3_tasks"})
    assert set(OUR_NAMES) <= listed_names(proc.stdout + proc.stderr)


def listed_tasks(proc: subprocess.CompletedProcess) -> set[str]:
    """The task names `lmms-eval tasks list` printed; it must have run to the end to print them."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("Available tasks ("))
    return {line.strip() for line in lines[header + 1 :] if line.strip()}


def test_tasks_subcommand_needs_include_path():
    # `lmms-eval tasks` never imports lmms_eval.models, so our entry point does not run (docs say so).
    # The listing itself must work: a crash lists no task of ours either.
    plain = listed_tasks(run_cli("tasks", "list"))
    assert {"ai2d", "mme", "pope"} <= plain  # lmms-eval's own tasks are listed
    assert not {n for n in plain if n.startswith("mmr3")}
    included = listed_tasks(run_cli("tasks", "list", "--include-path", lmms_plugin.tasks_dir()))
    assert set(OUR_NAMES) <= included and plain <= included


def test_missing_data_stops_with_the_build_instructions(tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text("")
    proc = run_cli(
        "--model", "mmr3_replay", "--model_args", f"responses={answers}", "--tasks", "mmr3_rephrase",
        env={"MMR3_DATA": str(tmp_path / "no-build-here")}, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "MM-R³ rephrase data (test split) not found" in proc.stderr
    assert f"mmr3 build --out {tmp_path / 'no-build-here'}" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- hand-computed run

CONTEXT_KINDS = {
    "g5": [("red", 1, "rectangle"), ("blue", 3, "ellipse"), ("red", 1, "ellipse")],
    "g6": [("black", 1, "rectangle"), ("black", 3, "rectangle"), ("white", 5, "ellipse")],
}
# id -> responses; the first answers the All task, all four the Sampling task (variant r1 only).
SCRIPT = {
    "g1/r1": ["cat", "cat", "cat", "cat"], "g1/r2": ["cat"], "g1/r3": ["cat"],
    "g2/r1": ["dog"], "g2/r2": ["  "], "g2/r3": ["dog"],
    "g3/r1": ["", "", "", ""], "g3/r2": [""], "g3/r3": [""],
    "g4/r1": ["TWO", "two", "Two", "two"], "g4/r2": ["two"], "g4/r3": ["Two"],
    "g5/m1": ["The cat."], "g5/m2": ["the cat"], "g5/m3": ["cat"],
    "g6/m1": ["dog"], "g6/m2": [""], "g6/m3": [""],
}  # fmt: skip


@pytest.fixture(scope="module")
def scripted_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("build")
    rephrase = (
        mmr3_rows.group("rephrase", "g1", ["cat"])
        + mmr3_rows.group("rephrase", "g2", ["dog"])
        + mmr3_rows.group("rephrase", "g3", ["red", "crimson"])
        + mmr3_rows.group("rephrase", "g4", ["two"])
    )
    context = []
    for gid, answer in (("g5", "cat"), ("g6", "dog")):
        kinds = [{"mask_color": c, "mask_lines": n, "mask_shape": s} for c, n, s in CONTEXT_KINDS[gid]]
        context += mmr3_rows.group("context", gid, [answer], kinds)
    mmr3_rows.write_build(root, "rephrase", rephrase)
    mmr3_rows.write_build(root, "context", context)
    answers = root / "answers.jsonl"
    lines = [{"id": k, "responses": v} for k, v in SCRIPT.items()]
    # Scoped to the Sampling task, ahead of the line above: separately sampled answers replay too.
    lines.append({"id": "g2/r1", "task": "mmr3_rephrase_sampling", "responses": ["dog", "dog", "", "dog"]})
    answers.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root, answers


def one_fingerprint(res: dict) -> bool:
    fps = {res[t]["data_fingerprint,none"] for t in ("mmr3_rephrase", "mmr3_context", "mmr3_rephrase_sampling")}
    return len(fps) == 1


def test_scripted_answers_give_the_hand_computed_scores(scripted_build, run_lmms_eval):
    root, answers = scripted_build
    run = run_lmms_eval(
        "--model", "mmr3_replay", "--model_args", f"responses={answers}",
        "--tasks", "mmr3_rephrase,mmr3_context,mmr3_rephrase_sampling",
        env={"MMR3_DATA": str(root)},
    )  # fmt: skip
    res = run.results["results"]
    reph, ctx, samp = res["mmr3_rephrase"], res["mmr3_context"], res["mmr3_rephrase_sampling"]
    # rephrase: per-group (acc, con) = g1 (1, 1), g2 (2/3, 1/3), g3 (0, 0), g4 (1, 1)
    assert reph["acc,none"] == pytest.approx(100 * (1 + 2 / 3 + 0 + 1) / 4)
    assert reph["s_gt,none"] == pytest.approx(100 * (1 + 2 / 3 + 0 + 1) / 4, abs=1e-4)
    assert reph["con,none"] == pytest.approx(100 * (1 + 1 / 3 + 0 + 1) / 4)
    assert reph["s_c,none"] == pytest.approx(100 * (1 + 1 / 3 + 0 + 1) / 4, abs=1e-4)
    assert reph["exact_agreement,none"] == pytest.approx(100 * (1 + 1 / 3 + 0 + 1) / 4)
    assert (reph["consistent_correct,none"], reph["consistent_wrong,none"], reph["inconsistent,none"]) == (50, 0, 50)
    assert (reph["groups,none"], reph["groups_complete,none"], reph["empty_responses,none"]) == (4, 4, 4)
    lo, hi = reph["acc_ci95,none"]
    assert lo <= reph["acc,none"] <= hi
    assert reph["embedding_model,none"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert reph["data_fingerprint,none"].startswith("files:") and one_fingerprint(res)
    # context: the cleanup makes "The cat." equal "cat"; g5 (1, 1), g6 (1/3, 0)
    assert ctx["acc,none"] == pytest.approx(100 * (1 + 1 / 3) / 2)
    assert ctx["s_gt,none"] == pytest.approx(100 * (1 + 1 / 3) / 2, abs=1e-4)
    assert ctx["con,none"] == pytest.approx(50.0) and ctx["s_c,none"] == pytest.approx(50.0, abs=1e-4)
    assert ctx["acc_lines_1,none"] == 100 and ctx["acc_lines_3,none"] == 50 and ctx["acc_lines_5,none"] == 0
    assert ctx["con_lines_1,none"] == pytest.approx(60.0) and ctx["con_color_black,none"] == 0
    assert ctx["acc_shape_ellipse,none"] == pytest.approx(200 / 3)
    assert ctx["con_shape_ellipse,none"] == pytest.approx(60.0)
    assert ctx["acc_color_green,none"] is None  # no green mask in this build
    # sampling, 4 repeats of r1: g1 (1, 1), g2 (3/4, 1/2), g3 (0, 0), g4 (1, 1)
    assert samp["acc,none"] == pytest.approx(100 * (1 + 0.75 + 0 + 1) / 4)
    assert samp["con,none"] == pytest.approx(100 * (1 + 0.5 + 0 + 1) / 4)
    assert samp["s_c,none"] == pytest.approx(100 * (1 + 0.5 + 0 + 1) / 4, abs=1e-4)
    assert samp["responses,none"] == 16 and samp["groups,none"] == 4

    # Every sample line carries what is needed to recompute its scores.
    samples = run.samples("mmr3_context")
    assert len(samples) == 6
    first = next(s for s in samples if s["acc"]["id"] == "g5/m2")
    assert first["acc"]["group_id"] == "g5" and first["acc"]["answers"] == ["cat"]
    assert first["acc"]["kinds"] == {"mask_lines": 3, "mask_shape": "ellipse", "mask_color": "blue"}
    assert first["acc"]["response"] == "the cat" and first["target"] == "cat"
    sampled = run.samples("mmr3_rephrase_sampling")
    assert sorted(s["acc"]["id"] for s in sampled) == ["g1/r1", "g2/r1", "g3/r1", "g4/r1"]
    assert next(s for s in sampled if s["acc"]["id"] == "g2/r1")["acc"]["responses"] == ["dog", "dog", "", "dog"]


def test_limit_leaves_an_incomplete_group_that_counts_for_acc_only(scripted_build, run_lmms_eval):
    root, answers = scripted_build
    run = run_lmms_eval(
        "--model", "mmr3_replay", "--model_args", f"responses={answers}",
        "--tasks", "mmr3_rephrase", "--limit", "7", env={"MMR3_DATA": str(root)},
    )  # fmt: skip
    reph = run.results["results"]["mmr3_rephrase"]
    # docs 1-7: g1 (3), g2 (3), g3/r1 only -> acc over 3 groups, con over g1 and g2
    assert (reph["groups,none"], reph["groups_complete,none"], reph["responses,none"]) == (3, 2, 7)
    assert reph["acc,none"] == pytest.approx(100 * (1 + 2 / 3 + 0) / 3)
    assert reph["con,none"] == pytest.approx(100 * (1 + 1 / 3) / 2)


def test_replay_without_an_answer_fails_loudly(scripted_build, run_lmms_eval, tmp_path):
    root, _ = scripted_build
    partial = tmp_path / "partial.jsonl"
    partial.write_text(json.dumps({"id": "g1/r1", "response": "cat"}) + "\n")
    run = run_lmms_eval(
        "--model", "mmr3_replay", "--model_args", f"responses={partial}", "--tasks", "mmr3_rephrase",
        env={"MMR3_DATA": str(root)},
    )  # fmt: skip
    assert "no response for row 'g1/r2'" in run.output
    assert not list(run.out_dir.rglob("*_results.json"))  # no scores from a run with missing answers


def test_python_api_sees_the_tasks_once_lmms_eval_models_is_imported():
    code = (
        "from lmms_eval.tasks import TaskManager\n"
        "assert 'mmr3_rephrase' not in TaskManager('ERROR').all_tasks\n"
        "import lmms_eval.evaluator\n"
        "assert {'mmr3', 'mmr3_rephrase', 'mmr3_mini'} <= set(TaskManager('ERROR').all_tasks)\n"
        "print('ok')\n"
    )
    import sys

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_samples_alone_reproduce_the_results_and_report_reads_them(scripted_build, run_lmms_eval, capsys):
    from mmr3_tasks import cli, report

    root, answers = scripted_build
    run = run_lmms_eval(
        "--model", "mmr3_replay", "--model_args", f"responses={answers}",
        "--tasks", "mmr3_context,mmr3_rephrase_sampling", env={"MMR3_DATA": str(root)},
    )  # fmt: skip
    results_file = next(run.out_dir.rglob("*_results.json"))
    samples = sorted(str(p) for p in run.out_dir.rglob("*_samples_*.jsonl"))
    scored = report.score_samples(samples)
    assert set(scored) == {"mmr3_context", "mmr3_rephrase_sampling"}
    assert report.compare(scored, results_file) == []
    assert cli.main(["score", *samples, "--check", str(results_file)]) == 0

    tables = report.build_tables(report.load_runs([str(run.out_dir)], ["scripted"]))
    context = next(t for t in tables if t.title.startswith("Table 4"))
    assert context.rows[0][0] == "BLIP-2 (paper)" and context.rows[0][5:] == [27.91, 38.97, 82.44, 88.80]
    ours = context.rows[-1]
    assert ours[0] == "scripted" and ours[5] == pytest.approx(200 / 3) and ours[7] == pytest.approx(50.0)
    rephrase = next(t for t in tables if t.title.startswith("Table 2"))
    assert rephrase.rows[-1][1] == pytest.approx(68.75)  # Samp Acc from mmr3_rephrase_sampling
    assert cli.main(["report", str(run.out_dir), "--name", "scripted", "--format", "csv"]) == 0
    assert "scripted," in capsys.readouterr().out


def test_a_builtin_lmms_eval_chat_model_runs_our_tasks(run_lmms_eval, tmp_path):
    # lmms-eval's own llava_hf resolves to its chat class: our tasks reach it as auto-built messages.
    # It imports decord at module level; decord is in the test extra, so a missing one fails here, never skips.
    import decord  # noqa: F401

    from mmr3_adapters.models.tiny import build_tiny_llava

    ckpt = build_tiny_llava(tmp_path / "tiny-llava")
    run = run_lmms_eval(
        "--model", "llava_hf", "--model_args", f"pretrained={ckpt},device_map=cpu", "--device", "cpu",
        "--tasks", "mmr3_mini_context", "--limit", "6",
    )  # fmt: skip
    ctx = run.results["results"]["mmr3_mini_context"]
    assert ctx["responses,none"] == 6 and ctx["groups_complete,none"] == 2
    assert all(isinstance(ctx[f"{m},none"], float) for m in ("acc", "s_gt", "con", "s_c"))
    assert all(s["acc"]["response"] for s in run.samples("mmr3_mini_context"))
