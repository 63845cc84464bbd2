"""`mmr3 leaderboard`: real lmms-eval results of our demo tasks and of MME-, POPE- and MMBench-shaped tasks
turned into one row per run, as Markdown, CSV, JSON, figures and an HTML page read in a real browser.

The inputs are the results files of three real `lmms-eval` runs (tests/leaderboard_fixtures.py says
what each ran): tests/leaderboard_results/ holds copies of them, so most tests need no fresh run;
the slow tests run lmms-eval again, check that the copies are still what it writes, and read the
inconsistency browser of the fresh runs, which needs their `--log_samples` files.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path

import pytest

from mmr3_tasks import cli, data, embedding, hooks, metrics, paper, schema
from mmr3_tasks.report import figures, leaderboard
from mmr3_tasks.report.errors import ReportInputError
from mmr3_tasks.report.samples import read_payloads
from tests import leaderboard_fixtures as fixtures
from tests.headless_chromium import CHROMIUM, NO_CHROMIUM, open_page
from tests.report_fixtures import mmr3

A = "mmr3_replay (answers.jsonl) [default generation]"
B = "mmr3_replay (answers.jsonl) [max_new_tokens=32]"
C = "mmr3_replay (answers_c.jsonl)"
RUNS = {"run-a": A, "run-b": B, "run-c": C}
OTHER_COLUMNS = [
    "mmbench_tiny:exact_match",  # a group with its own score: one column, its subtasks folded in
    "mme_tiny:mme_perception_score",  # the first of MME's two metrics
    "pope_tiny_adv:pope_accuracy",  # pope_tiny_full has no score of its own: its subtasks are the columns
    "pope_tiny_random:pope_accuracy",
]
MMR3_KEYS = [f"{t}/{m}" for t in schema.TASKS for m in ("con", "s_c", "acc")]
FIGURES = ["leaderboard_accuracy_vs_consistency.png", "accuracy_vs_consistency.png"]


def recorded_results(run: str) -> dict:
    [path] = (fixtures.RECORDED / run).glob("*_results.json")
    return json.loads(path.read_text())


@pytest.fixture
def inputs(tmp_path) -> list[str]:
    """A copy of the three recorded runs' folders, in the order A, B, C."""
    shutil.copytree(fixtures.RECORDED, tmp_path / "results")
    return [str(tmp_path / "results" / run) for run in RUNS]


def board_of(paths: list[str]) -> leaderboard.Board:
    entries, problems = leaderboard.read_entries(paths)
    assert not problems, problems
    return leaderboard.build_board(entries)


def rows_by_label(board: leaderboard.Board) -> dict[str, dict]:
    return {row.values["run"]: row.values for row in board.rows}


# --------------------------------------------------------------------------- the table


def test_each_row_holds_its_runs_own_numbers_and_empty_cells_where_a_task_is_missing(inputs):
    board = board_of(inputs)
    rows = rows_by_label(board)
    # One model, two settings: two rows, told apart by the setting; a third responses file: its own label.
    assert list(rows) == [A, B, C]
    assert [c.key for c in board.columns if ":" in c.key] == OTHER_COLUMNS
    a, b = recorded_results("run-a")["results"], recorded_results("run-b")["results"]
    for task in schema.TASKS:
        for metric in ("con", "s_c", "acc"):
            assert rows[A][f"{task}/{metric}"] == a[f"mmr3_mini_{task}"][f"{metric},none"]
    # Run A's rephrase: 33 of 36 groups answer alike (fixtures.DISAGREEING holds 3).
    assert rows[A]["rephrase/con"] == pytest.approx(100 * 33 / 36)
    for metric in ("con", "s_c", "acc"):
        parts = [a[f"mmr3_mini_{t}"][f"{metric},none"] for t in schema.TASKS]
        assert rows[A][f"mean/{metric}"] == pytest.approx(sum(parts) / 3)
    # The other tasks' headlines, as lmms-eval scored fixtures.other_answers (right unless row n % 3 == 1):
    assert rows[A]["mmbench_tiny:exact_match"] == a["mmbench_tiny"]["exact_match,none"] == 5 / 8  # 3/5 and 2/3
    assert rows[A]["mme_tiny:mme_perception_score"] == 300.0  # existence 50 + count 200 + color 50
    assert rows[A]["pope_tiny_adv:pope_accuracy"] == a["pope_tiny_adv"]["pope_accuracy,none"] == 4 / 6
    # Run B lacks restyle, context, MME and MMBench: empty, never 0; with one task missing, no mean.
    assert rows[B]["rephrase/con"] == b["mmr3_mini_rephrase"]["con,none"] == pytest.approx(100 / 3)
    for key in ["restyle/con", "context/acc", "mean/con", "mean/s_c", "mmbench_tiny:exact_match", OTHER_COLUMNS[1]]:
        assert rows[B][key] is None, key
    assert rows[B]["pope_tiny_random:pope_accuracy"] == 0.5
    assert rows[B]["settings"] == "max_new_tokens=32" and rows[A]["settings"] == ""
    # Run C has no MM-R³ task: a row all the same, its MM-R³ cells empty; every answer right.
    assert all(rows[C][k] is None for k in MMR3_KEYS + ["mean/con"])
    assert [rows[C][k] for k in OTHER_COLUMNS] == [1.0, 600.0, 1.0, 1.0]
    assert (rows[A]["data"], rows[C]["data"], rows[C]["checkpoint"]) == ("demo set", "", "answers_c.jsonl")


def test_markdown_csv_and_json_hold_the_same_cells(inputs, tmp_path, capsys):
    for fmt in ("markdown", "csv", "json"):
        assert cli.main(["leaderboard", *inputs, "--format", fmt, "--out", str(tmp_path / fmt)]) == 0
    # Printed, the table is all there is on stdout, even with the page and the figures written too.
    capsys.readouterr()
    page, plots = tmp_path / "site" / "index.html", tmp_path / "plots"
    assert cli.main(["leaderboard", *inputs, "--format", "csv", "--html", str(page), "--plots", str(plots)]) == 0
    out, err = capsys.readouterr()
    assert out == (tmp_path / "csv").read_bytes().decode()  # CSV lines end in \r\n, as the csv module writes
    assert err.splitlines() == [f"wrote {page}"] + [f"wrote {plots / n}" for n in FIGURES]
    assert 'id="mmr3-leaderboard"' in page.read_text()
    for name in FIGURES:
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    board = board_of(inputs)
    headers = [c.header for c in board.columns]
    rows = list(csv.DictReader(io.StringIO((tmp_path / "csv").read_text())))
    assert [r["Run"] for r in rows] == [A, B, C]
    assert float(rows[0]["QR Con"]) == board.rows[0].values["rephrase/con"]
    assert (rows[1]["IR Con"], rows[2]["QR Con"], rows[2]["mme_tiny (mme_perception_score)"]) == ("", "", "600.0")
    lines = [line for line in (tmp_path / "markdown").read_text().splitlines() if line.startswith("| ")]
    table = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]
    assert table[0] == headers
    marked = {row[0]: dict(zip(headers, row, strict=True)) for row in table[1:]}
    assert marked[A]["QR Con"] == "91.67" and marked[A]["mmbench_tiny (exact_match)"] == "0.6250"
    assert marked[B]["IR Con"] == "" and marked[B]["Mean Con"] == "" and marked[C]["QR Acc"] == ""
    assert "Mean: the unweighted mean of the three tasks' All-protocol scores" in (tmp_path / "markdown").read_text()
    data = json.loads((tmp_path / "json").read_text())
    assert [c["header"] for c in data["columns"]] == headers
    a = recorded_results("run-a")["results"]
    assert data["rows"][0]["ci95"]["rephrase/con"] == a["mmr3_mini_rephrase"]["con_ci95,none"]
    assert data["rows"][0]["stderr"]["mmbench_tiny:exact_match"] == a["mmbench_tiny"]["exact_match_stderr,none"]
    assert data["rows"][0]["other"]["mmbench_tiny:exact_match"]["subtasks"] == ["mmbench_tiny_en", "mmbench_tiny_cn"]
    assert data["rows"][0]["other"]["pope_tiny_adv:pope_accuracy"]["group"] == "pope_tiny_full"
    assert data["rows"][1]["restyle/con"] is None and data["rows"][1]["demo"] is True


def split_results(run: str, folder: Path, keep) -> Path:
    """The part of a recorded results file whose task names pass `keep`, under its own name in `folder`."""
    data = recorded_results(run)
    data["results"] = {k: v for k, v in data["results"].items() if keep(k)}
    data["group_subtasks"] = {k: v for k, v in data["group_subtasks"].items() if keep(k)}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{data['date']}_{len(list(folder.iterdir()))}_results.json"
    path.write_text(json.dumps(data))
    return path


def test_files_of_one_invocation_merge_into_one_row_and_other_runs_never_do(inputs, tmp_path):
    ours = leaderboard.ours
    # Run A's results file split by hand into its MM-R³ part and the rest: one invocation, one row.
    split_results("run-a", tmp_path / "a", ours)
    split_results("run-a", tmp_path / "a", lambda name: not ours(name))
    merged = board_of([str(tmp_path / "a")])
    whole = board_of([inputs[0]])
    assert len(merged.rows) == 1 and len(merged.rows[0].entry.run.sources) == 2
    assert merged.rows[0].values | {"run": A} == whole.rows[0].values | {"run": A}
    # Run B's MM-R³ part beside run C: disjoint tasks, but two invocations with other settings: two rows.
    split_results("run-b", tmp_path / "b", ours)
    board = board_of([str(tmp_path / "b"), inputs[2]])
    assert [row.values["run"] for row in board.rows] == ["mmr3_replay (answers.jsonl)", C]
    assert board.rows[0].values["mme_tiny:mme_perception_score"] is None
    assert board.rows[1].values["rephrase/con"] is None


@pytest.mark.parametrize(
    "column, order, labels",
    [
        ("QR Con", None, [A, B, C]),  # best first; C has no QR: last
        ("qr con", "--ascending", [B, A, C]),  # empty cells stay last either way
        ("rephrase/con", "--descending", [A, B, C]),  # a column's JSON key works too
        ("mme_tiny (mme_perception_score)", None, [C, A, B]),
        ("Settings", None, [B, A, C]),  # text: A-Z, and A's and C's empty settings last
        ("Mean S_C", "--ascending", [A, B, C]),  # only A has all three tasks
    ],
)
def test_rows_sort_by_any_column(inputs, tmp_path, column, order, labels):
    args = ["leaderboard", *inputs, "--format", "json", "--out", str(tmp_path / "t.json"), "--sort", column]
    assert cli.main(args + ([order] if order else [])) == 0
    data = json.loads((tmp_path / "t.json").read_text())
    assert [r["run"] for r in data["rows"]] == labels
    key = next(c["key"] for c in data["columns"] if column.casefold() in (c["key"].casefold(), c["header"].casefold()))
    assert data["sorted_by"]["column"] == key


def test_a_lower_is_better_column_sorts_ascending_first(tmp_path):
    for n, wer in enumerate((0.3, 0.1, None)):  # the third run has another task only
        results = {"asr_tiny": {"alias": "asr_tiny", "wer,none": wer}} if wer else {"mme": {"score,none": 1.0}}
        write_lmms_results(tmp_path / f"r{n}", results, {"asr_tiny": {"wer": False}}, f"pretrained=/m/{n}")
    board = board_of([str(tmp_path / f"r{n}") for n in range(3)])
    column = board.column("asr_tiny:wer")
    assert column.higher_is_better is False and column.header == "asr_tiny (wer)"
    assert [r.values["checkpoint"] for r in leaderboard.sort_board(board, "asr_tiny:wer").rows] == ["1", "0", "2"]
    assert [r.values["checkpoint"] for r in leaderboard.sort_board(board, "asr_tiny:wer", True).rows] == ["0", "1", "2"]


def test_an_unknown_sort_column_names_the_columns(inputs, capsys):
    assert cli.main(["leaderboard", *inputs, "--sort", "Con"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("mmr3 leaderboard: error: --sort 'Con': no such column; the columns are: Run, Model,")
    assert "QR Con" in line and "pope_tiny_random (pope_accuracy)" in line


def write_lmms_results(folder: Path, results: dict, higher_is_better: dict, model_args: str, **extra) -> Path:
    """A results file with the top-level keys lmms-eval 0.7 writes (evaluator.py's results_dict + config)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "results": results,
        "group_subtasks": extra.pop("group_subtasks", {name: [] for name in results}),
        "configs": {},
        "versions": {},
        "n-shot": {},
        "higher_is_better": higher_is_better,
        "n-samples": {},
        "config": {"model": "llava_hf", "model_args": model_args, "gen_kwargs": "", "limit": None},
        "date": "20250101_000000",
        **extra,
    }
    path = folder / "20250101_000000_results.json"
    path.write_text(json.dumps(data))
    return path


# --------------------------------------------------------------------------- the headline rule

NAN = float("nan")
HEADLINE_CASES = {
    # higher_is_better's order is the task's metric_list order; the entry's own order is alphabetical here.
    "first in higher_is_better order": (
        {"t": {"alias": "t", "b,none": 2.0, "b_stderr,none": 0.1, "a,none": 1.0}},
        {"t": {"a": True, "b": True}}, {}, {"t:a": 1.0},
    ),
    "stderr keys are never the headline": (
        {"t": {"x_stderr,none": 0.5, "x_stderr_clt,none": 0.4, "x,none": 3.0}}, {}, {}, {"t:x": 3.0},
    ),
    "a metric without a number is passed over": (
        {"t": {"submission,none": None, "score,none": "N/A", "acc,none": 7.0}},
        {"t": {"submission": True, "score": True, "acc": True}}, {}, {"t:acc": 7.0},
    ),
    "NaN is no number": ({"t": {"a,none": NAN, "b,none": 1.0}}, {"t": {"a": True, "b": True}}, {}, {"t:b": 1.0}),
    "several filters: the first written": (
        {"gsm": {"exact_match,strict-match": 0.4, "exact_match,flexible-extract": 0.5}},
        {"gsm": {"exact_match": True}}, {}, {"gsm:exact_match,strict-match": 0.4},
    ),
    "a group with its own score hides its subtasks": (
        {"g": {"acc,none": 0.5}, "g_a": {"acc,none": 0.4}, "g_b": {"acc,none": 0.6}},
        {}, {"g": ["g_a", "g_b"]}, {"g:acc": 0.5},
    ),
    "a group without a score shows its subtasks": (
        {"g": {" ": " ", "alias": "g"}, "g_a": {"acc,none": 0.4}, "g_b": {"acc,none": 0.6}},
        {}, {"g": ["g_a", "g_b"]}, {"g_a:acc": 0.4, "g_b:acc": 0.6},
    ),
    "nested: an outer group without a score, an inner one with": (
        {"o": {" ": " "}, "i": {"f1,none": 0.7}, "i_1": {"f1,none": 0.6}, "solo": {"f1,none": 0.2}},
        {}, {"o": ["i", "solo"], "i": ["i_1"]}, {"i:f1": 0.7, "solo:f1": 0.2},
    ),
    "our tasks and groups are not other columns": (
        {"mmr3_mini": {" ": " "}, "mmr3_mini_rephrase": {"con,none": 50.0}, "mme": {"mme_perception_score,none": 1.0}},
        {}, {"mmr3_mini": ["mmr3_mini_rephrase"]}, {"mme:mme_perception_score": 1.0},
    ),
    "an MM-R³ task run without its group": ({"mmr3_rephrase": {"con,none": 50.0}}, {}, {"mmr3_rephrase": []}, {}),
    "a task with no number has no column": ({"t": {"alias": "t", "submission,none": None}}, {}, {}, {}),
}  # fmt: skip


@pytest.mark.parametrize("case", HEADLINE_CASES)
def test_the_headline_rule_needs_no_list_of_tasks(case):
    results, better, groups, expected = HEADLINE_CASES[case]
    data = {"results": results, "higher_is_better": better, "group_subtasks": groups}
    found = leaderboard.other_scores(data, Path("x_results.json"))
    assert {key: score.value for key, score in found.items()} == expected


@pytest.mark.parametrize(
    "change, says",
    [
        ({"results": {"mme": 5}}, "results['mme'] is a number (5), not a mapping"),
        ({"group_subtasks": ["mme"]}, 'group_subtasks is a list (["mme"]), not a mapping'),
        ({"group_subtasks": {"g": "mme"}}, "group_subtasks['g'] is a string (\"mme\"), not a list of task names"),
        ({"higher_is_better": {"mme": [True]}}, "higher_is_better['mme'] is a list ([true]), not a mapping"),
    ],
)
def test_a_damaged_entry_names_the_file_and_the_key(change, says):
    data = {"results": {"mme": {"mme_perception_score,none": 1.0}}, "higher_is_better": {}} | change
    with pytest.raises(ReportInputError, match="^x_results.json: ") as err:
        leaderboard.other_scores(data, Path("x_results.json"))
    assert says in str(err.value)


def test_bad_inputs_are_named_in_one_line_each_and_the_good_runs_are_still_shown(inputs, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes_results.json").write_text('{"acc": 30.0}')  # JSON, not lmms-eval's
    (bad / "binary_results.json").write_bytes(b"\xff\xfe{}")
    write_lmms_results(bad / "damaged", {"mme": 5}, {}, "pretrained=/m")
    write_lmms_results(bad / "empty", {}, {}, "pretrained=/m")
    proc = mmr3("leaderboard", inputs[0], bad, tmp_path / "missing", inputs[2], "--format", "csv")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = sorted(proc.stderr.splitlines())
    prefix = "mmr3 leaderboard: error: "
    assert all(line.startswith(prefix) for line in errors), errors
    assert [line[len(prefix) :].split(": ", 1)[0] for line in errors] == [
        f"{bad}/binary_results.json",
        f"{bad}/damaged/20250101_000000_results.json",
        f"{bad}/empty/20250101_000000_results.json",
        f"{bad}/notes_results.json",
        f"{tmp_path}/missing",
    ]
    assert "not lmms-eval output (no 'results' mapping at the top)" in errors[3]
    assert "no task with a score in it" in errors[2]
    # The good ones, in order; without B, A's label needs no setting to tell it apart.
    assert [row["Run"] for row in csv.DictReader(io.StringIO(proc.stdout))] == ["mmr3_replay (answers.jsonl)", C]
    # Nothing good at all: each bad input named, then one line saying so.
    proc = mmr3("leaderboard", bad / "notes_results.json", tmp_path / "missing")
    assert proc.returncode == 1 and proc.stdout == ""
    assert (
        proc.stderr.splitlines()[-1] == f"{prefix}nothing to show: none of the 2 inputs holds usable lmms-eval results"
    )


def test_the_mean_interval_combines_the_tasks_intervals_as_independent():
    low, high = leaderboard.mean_interval(60.0, [50.0, 60.0, 70.0], [[40.0, 55.0], [50.0, 70.0], [70.0, 70.0]])
    assert low == pytest.approx(60 - math.sqrt(10**2 + 10**2 + 0) / 3)
    assert high == pytest.approx(60 + math.sqrt(5**2 + 10**2 + 0) / 3)
    # A bound on the wrong side of its value (percentile rounding) counts as no width, not a negative one.
    assert leaderboard.mean_interval(50.0, [50.0] * 3, [[51.0, 52.0]] * 3) == pytest.approx(
        [50.0, 50 + 2 / math.sqrt(3)]
    )


# --------------------------------------------------------------------------- figures


def error_bars(ax, label: str) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """(x extent, y extent) of the error bars of the point labelled `label` on `ax`."""
    [container] = [c for c in ax.containers if c.get_label() == label]
    x_bar = y_bar = None
    for bars in container.lines[2]:
        [(x0, y0), (x1, y1)] = bars.get_segments()[0]
        if y0 == y1:
            x_bar = (x0, x1)
        else:
            y_bar = (y0, y1)
    return x_bar, y_bar


def test_every_mmr3_point_carries_the_runs_95_intervals(inputs):
    entries, _ = leaderboard.read_entries(inputs)
    runs = [e.run for e in entries if e.run.scores]
    fig = figures.accuracy_consistency_figure(runs)
    a = recorded_results("run-a")["results"]
    for ax, task in zip(fig.axes, schema.TASKS, strict=True):
        x_bar, y_bar = error_bars(ax, A)
        assert x_bar == pytest.approx(a[f"mmr3_mini_{task}"]["acc_ci95,none"])
        assert y_bar == pytest.approx(a[f"mmr3_mini_{task}"]["con_ci95,none"])
    assert [c.get_label() for c in fig.axes[0].containers] == [A, B]  # B ran rephrase only
    assert [c.get_label() for c in fig.axes[1].containers] == [A]

    board = leaderboard.build_board(entries)
    row = board.rows[0].values
    fig = figures.leaderboard_figure(board)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["MM-R³ Mean Acc (All)"] + [board.column(k).header for k in OTHER_COLUMNS]
    mean_con = board.rows[0].ci95["mean/con"]
    for ax in fig.axes[1:5]:
        assert [c.get_label() for c in ax.containers] == [A]  # B and C have no Mean Con
        x_bar, _ = error_bars(ax, A)
        assert x_bar == pytest.approx(mean_con)
    _, y_bar = error_bars(fig.axes[1], A)  # mmbench_tiny: ±1.96 lmms-eval stderr
    stderr = a["mmbench_tiny"]["exact_match_stderr,none"]
    assert y_bar == pytest.approx((row["mmbench_tiny:exact_match"] - 1.96 * stderr, 0.625 + 1.96 * stderr))
    assert error_bars(fig.axes[2], A)[1] is None  # MME's stderr is "N/A": no bar
    _, y_bar = error_bars(fig.axes[0], A)
    assert y_bar == pytest.approx(board.rows[0].ci95["mean/acc"])
    # The paper's models, in the MM-R³ panel only: the mean over the three tasks of its Tables 2-4.
    gpt4o = [paper.MAIN[t]["all"]["GPT-4o"] for t in schema.TASKS]
    offsets = [tuple(p) for c in fig.axes[0].collections for p in c.get_offsets()]
    assert pytest.approx((sum(s[2] for s in gpt4o) / 3, sum(s[0] for s in gpt4o) / 3)) in offsets
    assert len(fig.axes[1].collections) == 2  # the run's bars only, no paper point


# --------------------------------------------------------------------------- the page, in a browser

TABLE_JS = """(() => {
  const t = document.getElementById("mmr3-leaderboard");
  const text = c => (c.childNodes.length && c.childNodes[0].nodeType === 3) ? c.childNodes[0].textContent : "";
  return {
    headers: Array.from(t.tHead.rows[0].cells).map(c => [c.dataset.key, c.textContent]),
    rows: Array.from(t.tBodies[0].rows).map(r => Object.fromEntries(Array.from(r.cells).map(
      c => [c.dataset.key, [text(c), c.querySelector(".mmr3-ci") ? c.querySelector(".mmr3-ci").textContent : null]]))),
  };
})()"""
ORDER_JS = 'Array.from(document.querySelectorAll("#mmr3-leaderboard tbody tr")).map(r => r.dataset.run)'
LINKS_JS = (
    'Array.from(document.querySelectorAll("[src], [href]")).map(e => e.getAttribute("src") || e.getAttribute("href"))'
)
BROWSER_JS = """Array.from(document.querySelectorAll("details.mmr3-run-browser")).map(d => [
  d.dataset.run,
  Array.from(d.querySelectorAll(".mmr3-task")).map(t => [
    t.dataset.task,
    Array.from(t.querySelectorAll(".mmr3-note")).map(n => n.textContent),
    Array.from(t.querySelectorAll(".mmr3-group")).map(g => [
      g.dataset.group,
      Array.from(g.querySelectorAll(".mmr3-row-answer td")).map(c => [c.dataset.variant, c.textContent]),
      Array.from(g.querySelectorAll(".mmr3-row-correct td")).map(c => c.dataset.correct === "true"),
      Array.from(g.querySelectorAll(".mmr3-gt-answer")).map(s => s.textContent),
    ]),
  ]),
])"""

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)


@needs_chromium
def test_the_page_renders_the_table_sorts_on_click_and_loads_nothing(inputs, tmp_path):
    # A fourth run, D, whose MME score has more digits: sorted as text, 1200 would come before 300.
    results = {"mme_tiny": {"alias": "mme_tiny", "mme_perception_score,none": 1200.0}}
    write_lmms_results(tmp_path / "d", results, {"mme_tiny": {"mme_perception_score": True}}, "pretrained=/m/big")
    inputs = [*inputs, str(tmp_path / "d")]
    page = tmp_path / "board.html"
    assert cli.main(["leaderboard", *inputs, "--format", "html", "--out", str(page)]) == 0
    board = board_of(inputs)
    D = "llava_hf (big)"
    with open_page(page, tmp_path / "profile") as browser:
        table = browser.evaluate(TABLE_JS)
        assert [key for key, _ in table["headers"]] == [c.key for c in board.columns]
        assert (
            table["headers"][6][1] == "Mean Con ↑" and table["headers"][-1][1] == "pope_tiny_random (pope_accuracy) ↑"
        )
        a, b, c, d = table["rows"]
        ci = recorded_results("run-a")["results"]["mmr3_mini_rephrase"]["con_ci95,none"]
        assert a["run"][0] == A and a["rephrase/con"] == ["91.67", f"[{ci[0]:.1f}, {ci[1]:.1f}]"]
        assert a["mme_tiny:mme_perception_score"] == ["300.00", None]  # MME's stderr is "N/A": none shown
        assert b["restyle/con"] == ["", None] and b["mean/con"] == ["", None]
        assert b["settings"][0] == "max_new_tokens=32"
        assert c["rephrase/con"] == ["", None] and c["mmbench_tiny:exact_match"][0] == "1.0000"
        assert d["run"][0] == D and d["mme_tiny:mme_perception_score"][0] == "1200.00"
        assert browser.evaluate(ORDER_JS) == [A, B, C, D]
        # A click on a header sorts by it, best first, empty cells last; a second click reverses.
        browser.click('th[data-key="rephrase/con"]')
        assert browser.evaluate(ORDER_JS) == [A, B, C, D]
        browser.click('th[data-key="rephrase/con"]')
        assert browser.evaluate(ORDER_JS) == [B, A, C, D]
        browser.click('th[data-key="mme_tiny:mme_perception_score"]')
        assert browser.evaluate(ORDER_JS) == [D, C, A, B]  # as numbers
        browser.click('th[data-key="settings"]')
        assert browser.evaluate(ORDER_JS) == [B, D, C, A]  # text A-Z; the empty cells last, in the order they were
        assert browser.evaluate('document.querySelector("th[data-key=settings]").getAttribute("aria-sort")') == (
            "ascending"
        )
        browser.click('th[data-key="run"]')
        assert browser.evaluate(ORDER_JS) == sorted([A, B, C, D])
        # Self-contained: every source inline, nothing requested but the file itself.
        links = browser.evaluate(LINKS_JS)
        assert links and all(link.startswith("data:") for link in links), [x[:40] for x in links]
        assert {url.split(":")[0] for url in browser.requests()} == {"file", "data"}
        assert browser.requests()[0] == page.resolve().as_uri()
        sizes = browser.evaluate(
            'Array.from(document.images).filter(i => i.closest("figure")).map(i => i.naturalWidth)'
        )
        assert len(sizes) == 2 and min(sizes) > 500  # both figures decoded
        # The copies hold no --log_samples files: each MM-R³ task's browser says so.
        runs = browser.evaluate(BROWSER_JS)
        assert [label for label, _ in runs] == [A, B]  # C and D have no MM-R³ task
        tasks = {label: {task: notes for task, notes, _ in views} for label, views in runs}
        assert list(tasks[A]) == ["mmr3_mini_rephrase", "mmr3_mini_restyle", "mmr3_mini_context"]
        assert list(tasks[B]) == ["mmr3_mini_rephrase"]
        [note] = tasks[B]["mmr3_mini_rephrase"]
        [results] = (fixtures.RECORDED / "run-b").glob("*_results.json")
        assert note.startswith(f"mmr3_mini_rephrase: no --log_samples file beside {results.name}; rerun lmms-eval")


# --------------------------------------------------------------------------- fresh lmms-eval runs


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """Runs A, B and C again with the real lmms-eval, with their samples files."""
    root = tmp_path_factory.mktemp("leaderboard")
    fixtures.run_all(root)
    return root


def same(recorded, fresh_value, where: str) -> None:
    if isinstance(recorded, dict):
        assert list(recorded) == list(fresh_value), where
        for key in recorded:
            same(recorded[key], fresh_value[key], f"{where}[{key!r}]")
    elif isinstance(recorded, list):
        assert len(recorded) == len(fresh_value), where
        for n, (x, y) in enumerate(zip(recorded, fresh_value, strict=True)):
            same(x, y, f"{where}[{n}]")
    elif isinstance(recorded, float):
        assert fresh_value == pytest.approx(recorded, rel=1e-6, abs=1e-9), where
    else:
        assert recorded == fresh_value, where


@pytest.mark.slow
def test_the_recorded_results_are_what_lmms_eval_writes(fresh):
    """tests/leaderboard_results must not drift from lmms-eval: rerun `python -m tests.leaderboard_fixtures`."""
    for run in RUNS:
        [path] = (fresh / run / "out").glob("*_results.json")
        now, then = json.loads(path.read_text()), recorded_results(run)
        for key in ("results", "groups", "group_subtasks", "higher_is_better", "n-samples", "n-shot", "versions"):
            same(then.get(key), now.get(key), f"{run}: {key}")
        for key in ("model", "model_args", "gen_kwargs", "limit"):
            assert then["config"][key] == now["config"][key], (run, key)


def group_order(samples: Path, clean: bool) -> list[tuple[str, float, float]]:
    """The inconsistent groups of a samples file, most inconsistent first: (id, Con, S_C), from the metric."""
    [payloads] = read_payloads([str(samples)]).values()
    responses = [r for p in payloads for r in hooks.payload_responses(p)]
    details = metrics.group_details(responses, embedding.get_embedder(), clean_context=clean)
    ranked = [(g, d.scores.con, d.scores.s_c) for g, d in details.items() if d.scores.con < 100]
    return sorted(ranked, key=lambda x: (x[1], x[2], x[0]))


@pytest.mark.slow
@needs_chromium
def test_the_page_of_real_runs_shows_where_each_model_disagreed_with_itself(fresh, tmp_path):
    page = tmp_path / "board.html"
    outs = [fresh / run / "out" for run in RUNS]
    proc = mmr3("leaderboard", *outs, "--format", "html", "--out", page, "--top", "3", "--sort", "Mean Con")
    assert proc.returncode == 0, proc.stderr[-3000:]
    answers = {}
    for run in ("run-a", "run-b"):
        for line in (fresh / run / "answers.jsonl").read_text().splitlines():
            row = json.loads(line)
            answers[(run, row["id"])] = row["response"]
    with open_page(page, tmp_path / "profile") as browser:
        assert browser.evaluate(ORDER_JS) == [A, B, C]  # --sort: best Mean Con first, the rest empty
        runs = dict(browser.evaluate(BROWSER_JS))
    assert list(runs) == [A, B]
    for label, run in ((A, "run-a"), (B, "run-b")):
        for task_name, notes, groups in runs[label]:
            task = task_name.removeprefix("mmr3_mini_")
            assert notes == [], notes  # samples and data at hand: nothing missing
            [samples] = (fresh / run / "out").glob(f"*_samples_{task_name}.jsonl")
            expected = group_order(samples, clean=task == "context")[:3]
            assert [g for g, *_ in groups] == [g for g, *_ in expected], task_name
            for group_id, shown, correct, truths in groups:
                rows = {r["id"]: r for r in data.load_demo(task) if r["group_id"] == group_id}
                order = sorted(rows.values(), key=lambda r: r["variant_index"])  # the builder's variant order
                assert [v for v, _ in shown] == [r["variant"] for r in order]
                for (variant, text), ok in zip(shown, correct, strict=True):
                    [row_id] = [i for i, r in rows.items() if r["variant"] == variant]
                    answer = answers[(run, row_id)]
                    assert text == (answer if answer else "(no answer)")
                    truth = rows[row_id]["answers"]
                    assert ok == any(t.lower() in answer.lower() for t in truth)
                assert truths == list(rows[next(iter(rows))]["answers"])
    # Run A's inconsistent groups are exactly those its answers made disagree.
    for task_name, _, groups in runs[A]:
        task = task_name.removeprefix("mmr3_mini_")
        group_ids = list(dict.fromkeys(data.load_demo(task)["group_id"]))
        assert {g for g, *_ in groups} == {group_ids[i] for i in fixtures.DISAGREEING[task]}
