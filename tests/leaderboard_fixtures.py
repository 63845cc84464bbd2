"""Real lmms-eval runs for the leaderboard tests: our demo tasks next to MME-, POPE- and MMBench-shaped tasks.

`tests/leaderboard_tasks/` holds the other tasks (its README says what each is shaped like). Both runs
are the real `lmms-eval` command with `mmr3_replay` answering from a file written here, so every
number in them is lmms-eval's own:

- run A: `--tasks mmr3_mini,mme_tiny,pope_tiny_full,mmbench_tiny`. Most groups of each MM-R³ task
  answer the same text for every variant; the groups in `DISAGREEING` answer each variant
  differently, so they are the ones the model disagreed with itself on most.
- run B: the same model (`mmr3_replay`, a responses file of the same name) with another setting
  (`--gen_kwargs max_new_tokens=32`), other answers and fewer tasks:
  `--tasks mmr3_mini_rephrase,pope_tiny_full`, so its restyle, context, MME and MMBench cells
  are empty.
- run C: no MM-R³ task, `--tasks mme_tiny,pope_tiny_full,mmbench_tiny`, every answer right, from
  `responses=answers_c.jsonl` (so a label of its own).
"""

from __future__ import annotations

import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mmr3_tasks import data
from tests.conftest import LmmsRun, run_lmms_cli

TASKS_DIR = Path(__file__).resolve().parent / "leaderboard_tasks"
OTHER_FILES = ("mme_tiny", "pope_tiny_adv", "pope_tiny_random", "mmbench_tiny_en", "mmbench_tiny_cn")
RUN_A_TASKS = "mmr3_mini,mme_tiny,pope_tiny_full,mmbench_tiny"
RUN_B_TASKS = "mmr3_mini_rephrase,pope_tiny_full"
RUN_B_GEN_KWARGS = "max_new_tokens=32"  # a setting of its own: the same model, so the same label, and two rows
RUN_C_TASKS = "mme_tiny,pope_tiny_full,mmbench_tiny"

# Groups (by their index in the demo task) whose variants get different answers in run A.
DISAGREEING = {"rephrase": (1, 4, 7), "restyle": (0, 3), "context": (2, 5)}
# What a disagreeing group answers for its variants after the first (the first answers the truth).
OFF_ANSWERS = {
    "rephrase": ("I cannot tell from this picture.", "seventeen bicycles parked by a river"),
    "restyle": (
        "A crowded subway station at night. Trains wait at the platform.",
        "An empty beach with white sand. The sea is calm.",
        "A snowy mountain peak above the clouds. Nobody is there.",
    ),
    "context": ("a giraffe", "an umbrella"),
}


def consistent_answer(task: str, truth: str) -> str:
    if task == "restyle":
        return f"This is a {truth}. It looks old and quiet."
    return truth


def answers_a() -> list[dict]:
    """Run A's responses: the truth for every variant, except in the DISAGREEING groups."""
    lines = []
    for task in ("rephrase", "restyle", "context"):
        ds = data.load_demo(task)
        groups = list(dict.fromkeys(ds["group_id"]))
        off = {groups[i] for i in DISAGREEING[task]}
        for row_id, group, index, answers in zip(
            ds["id"], ds["group_id"], ds["variant_index"], ds["answers"], strict=True
        ):
            truth = consistent_answer(task, answers[0])
            response = OFF_ANSWERS[task][(index - 1) % len(OFF_ANSWERS[task])] if group in off and index else truth
            lines.append({"id": row_id, "task": f"mmr3_mini_{task}", "response": response})
    return lines + other_answers(right=lambda n: n % 3 != 1)


def answers_b() -> list[dict]:
    """Run B's responses: the rephrase truth for two variants in three, nothing for the third."""
    ds = data.load_demo("rephrase")
    lines = [
        {"id": i, "task": "mmr3_mini_rephrase", "response": "" if index == 2 else a[0]}
        for i, index, a in zip(ds["id"], ds["variant_index"], ds["answers"], strict=True)
    ]
    return lines + other_answers(right=lambda n: n % 2 == 0)


def other_answers(right) -> list[dict]:
    """Answers to the other tasks' rows: the truth where `right(row number)`, else the other answer."""
    flip = {"yes": "no", "no": "yes", "Yes": "No", "No": "Yes"}
    lines = []
    for name in OTHER_FILES:
        for n, text in enumerate((TASKS_DIR / f"{name}.jsonl").read_text().splitlines()):
            row = json.loads(text)
            truth = row["answer"]
            lines.append({"id": row["id"], "response": truth if right(n) else flip.get(truth, "E")})
    return lines


def replay_run(folder: Path, tasks: str, answers: list[dict], *extra: str, responses: str = "answers.jsonl") -> LmmsRun:
    """The real `lmms-eval --model mmr3_replay` on `tasks` (ours and tests/leaderboard_tasks), in `folder`.

    The responses file is named relative to `folder` (lmms-eval's working directory), so the
    results record `responses=answers.jsonl` wherever the run happens.
    """
    folder.mkdir(parents=True)
    (folder / responses).write_text("".join(json.dumps(line) + "\n" for line in answers))
    args = ["--model", "mmr3_replay", "--model_args", f"responses={responses}", "--tasks", tasks, *extra]
    run = run_lmms_cli(folder / "out", *args, "--include_path", str(TASKS_DIR))
    assert run.results["results"], run.output[-3000:]
    return run


def run_all(root: Path) -> dict[str, LmmsRun]:
    """Runs A, B and C side by side (three lmms-eval processes), in root/run-a, root/run-b, root/run-c."""
    with ThreadPoolExecutor(3) as pool:
        futures = {
            "run-a": pool.submit(replay_run, root / "run-a", RUN_A_TASKS, answers_a()),
            "run-b": pool.submit(
                replay_run, root / "run-b", RUN_B_TASKS, answers_b(), "--gen_kwargs", RUN_B_GEN_KWARGS
            ),
            "run-c": pool.submit(
                replay_run,
                root / "run-c",
                RUN_C_TASKS,
                other_answers(right=lambda n: True),
                responses="answers_c.jsonl",
            ),
        }
        return {name: future.result() for name, future in futures.items()}


# Copies of the three runs' results files, for the tests that need no fresh lmms-eval run.
# `python -m tests.leaderboard_fixtures` writes them again; a slow test checks they still match a fresh run.
RECORDED = Path(__file__).resolve().parent / "leaderboard_results"


REPO = Path(__file__).resolve().parent.parent


def scrubbed(text: str, root: Path) -> str:
    """The results text without this machine's paths: the repository and the scratch folder as placeholders."""
    return text.replace(str(REPO), "<repo>").replace(str(root), "<tmp>")


def record(root: Path) -> list[Path]:
    written = []
    for run in run_all(root).values():
        [results] = run.out_dir.glob("*_results.json")
        target = RECORDED / run.out_dir.parent.name / results.name
        target.parent.mkdir(parents=True, exist_ok=True)
        for old in target.parent.glob("*_results.json"):
            old.unlink()
        target.write_text(scrubbed(results.read_text(), root))
        written.append(target)
    return written


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        for path in record(Path(tmp)):
            print(f"wrote {path}")
