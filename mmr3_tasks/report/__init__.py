"""`mmr3 report` (results JSON -> the paper's tables and figures) and `mmr3 score` (samples -> scores).

`report` reads lmms-eval results files, lays them out as the paper's Tables 2-4 (Sampling and
All), the three-task summary of Table 6, the per-kind Tables 10-13 and what we add beyond the
paper, next to the paper's own numbers. `score` recomputes every number from `--log_samples`
files alone, without lmms-eval. Every unusable input of either is a `ReportInputError` whose
message names the file (and line) and the fix (docs/compare.md, docs/metrics.md).

What lives where, each module importing only those above it in this list:

- `errors`: `ReportInputError`, and how a bad JSON value reads in its messages.
- `runs`: results files -> `Run`s (`read_inputs`, `load_runs`, labels, `samples_files`).
- `samples`: samples files -> checked payloads (`read_payloads`), for `score` and `paired`.
- `tables`: runs -> the paper's tables, rendered as Markdown or CSV.
- `leaderboard`: results files -> one row per run, MM-R³ next to every other lmms-eval task
  (`read_entries`, `build_board`, `sort_board`), rendered as Markdown, CSV or JSON.
- `figures`: runs -> the PNG figures of `--plots`, and the leaderboard's figure.
- `paired`: a run against its base, with paired intervals (`find_pairs`, `compare_pairs`).
- `cli`: the `mmr3 report` command (`build_tables`: everything it prints).
- `score`: the `mmr3 score` command (`score_samples`, `compare`).
- `leaderboard_html`, `leaderboard_cli`: the leaderboard's HTML page, and the `mmr3 leaderboard` command.

Each command registers itself through its own `mmr3.commands` entry point (`cli:register`,
`score:register`, `leaderboard_cli:register`). This module only re-exports the names callers use.
"""

from __future__ import annotations

from mmr3_tasks.report.cli import build_tables, run_report
from mmr3_tasks.report.errors import ReportInputError
from mmr3_tasks.report.figures import plot_figures
from mmr3_tasks.report.paired import (
    PAIRED_TITLE,
    Pair,
    compare_pairs,
    find_pairs,
    paired_json,
    paired_table,
    signed,
)
from mmr3_tasks.report.runs import (
    OUTPUT_PATH_HINT,
    Run,
    load_runs,
    read_inputs,
    read_results_file,
    results_files,
    run_label,
    samples_files,
)
from mmr3_tasks.report.samples import check_payload, read_payloads, sample_lines
from mmr3_tasks.report.score import compare, run_score, same_value, score_samples
from mmr3_tasks.report.tables import (
    TASK_SHORT,
    Table,
    beyond_table,
    breakdown_tables,
    main_tables,
    render_csv,
    render_markdown,
    summary_table,
)

__all__ = [
    "OUTPUT_PATH_HINT",
    "PAIRED_TITLE",
    "TASK_SHORT",
    "Pair",
    "ReportInputError",
    "Run",
    "Table",
    "beyond_table",
    "breakdown_tables",
    "build_tables",
    "check_payload",
    "compare",
    "compare_pairs",
    "find_pairs",
    "load_runs",
    "main_tables",
    "paired_json",
    "paired_table",
    "plot_figures",
    "read_inputs",
    "read_payloads",
    "read_results_file",
    "render_csv",
    "render_markdown",
    "results_files",
    "run_label",
    "run_report",
    "run_score",
    "same_value",
    "sample_lines",
    "samples_files",
    "score_samples",
    "signed",
    "summary_table",
]
