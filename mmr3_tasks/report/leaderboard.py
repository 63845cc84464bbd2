"""`mmr3 leaderboard`: MM-R³ next to every other lmms-eval task of the same runs, one row per run.

A run is what `mmr3 report` calls a run (`runs.read_inputs`): one lmms-eval invocation, so two
runs of one model with other settings are two rows. Its MM-R³ cells are Con, S_C and Acc of the
All protocol per task, and their unweighted mean over the three tasks. Every other task in the same
results files gets one column, its **headline metric**, read from lmms-eval's own results format
without a list of known tasks (`other_scores` gives the rule). docs/leaderboard.md describes every
column, and what a user sees when an input is bad.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from mmr3_tasks import schema, taskdefs
from mmr3_tasks.errors import MMR3Error
from mmr3_tasks.report.errors import ReportInputError, json_kind
from mmr3_tasks.report.runs import (
    ADAPTER_ARGS,
    Run,
    _disambiguate,
    argument_files,
    date_text,
    file_runs,
    new_run,
    parse_model_args,
    read_results_file,
    task_of,
)
from mmr3_tasks.report.tables import METRIC_LABELS, TASK_SHORT

MMR3_METRICS = ("con", "s_c", "acc")  # consistency first: the leaderboard's point
MEAN = "mean"
MEAN_RULE = (
    "Mean: the unweighted mean of the three tasks' All-protocol scores (QR, IR, CR); "
    "empty unless the run has all three; its 95% interval combines the tasks' intervals as independent"
)
HEADLINE_RULE = (
    "Other tasks: each task's first metric in its higher_is_better order that has a number; a group with "
    "a score of its own is one column (its subtasks folded in), a group without one shows its subtasks"
)
CHECKPOINT_ARGS = ("pretrained", "responses")  # the model_args that name what was evaluated
DEMO_DATA = "demo set"


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------- other tasks


@dataclass(frozen=True)
class TaskScore:
    """The headline score of one lmms-eval task or group that is not ours, as a results file gives it."""

    task: str
    metric: str
    filter: str
    value: float
    stderr: float | None = None
    higher_is_better: bool | None = None
    subtasks: tuple[str, ...] = ()  # a group's subtasks, folded into its score
    group: str = ""  # the group whose subtask this column is (a group without a score of its own)
    n_samples: int | None = None

    @property
    def key(self) -> str:
        """The column: `mme:mme_perception_score`, `gsm8k:exact_match,flexible-extract`."""
        return f"{self.task}:{self.metric}" + ("" if self.filter in ("none", "") else f",{self.filter}")

    @property
    def header(self) -> str:
        where = f" [{self.filter}]" if self.filter not in ("none", "") else ""
        return f"{self.task} ({self.metric}{where})"


def ours(name: str) -> bool:
    """An MM-R³ task or group: `mmr3 report`'s, not a column of its own here."""
    return task_of(name) is not None or name in taskdefs.GROUPS


def metric_keys(entry: dict) -> list[tuple[str, str]]:
    """(metric, filter) of a results entry's scores with a number, in the entry's order.

    lmms-eval writes `metric,filter` for each score, `metric_stderr,filter` (and `_stderr_clt`,
    `_stderr_clustered`) for its standard errors, and `alias` / `samples` / `" "` beside them.
    """
    keys = []
    for key, value in entry.items():
        metric, sep, filter_ = key.partition(",")
        if sep and "_stderr" not in metric and is_number(value):
            keys.append((metric, filter_))
    return keys


def headline(entry: dict, higher_is_better: dict) -> tuple[str, str] | None:
    """The headline (metric, filter) of one results entry: the first of its metrics, in its
    `higher_is_better` order (the task's `metric_list` order), that has a number; without one, its
    first metric with a number in the entry's own order. For several filters, the first one written."""
    keys = metric_keys(entry)
    for metric in higher_is_better:
        for key in keys:
            if key[0] == metric:
                return key
    return keys[0] if keys else None


def _mapping(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise ReportInputError(
            f"{where} is {json_kind(value)}, not a mapping; the file was edited or damaged: rerun the evaluation"
        )
    return value


def other_scores(results: dict, path: Path) -> dict[str, TaskScore]:
    """The headline of every task and group in a results file that is not ours, by column key.

    The rule, with no list of known tasks: each name in `results` that is no other entry's subtask
    (`group_subtasks`) is one column, its `headline`; a group that has no score of its own (no
    `aggregate_metric_list`, e.g. lmms-eval's `pope_full`) gives way to its subtasks, each a column.
    A group with a score keeps its subtasks folded in (listed in `TaskScore.subtasks`). A task with
    no number at all (a split scored by submission only) has no column.
    """
    entries = results["results"]
    groups = _mapping(results.get("group_subtasks", {}), f"{path}: group_subtasks")
    for group, subtasks in groups.items():
        if not isinstance(subtasks, list) or not all(isinstance(s, str) for s in subtasks):
            raise ReportInputError(
                f"{path}: group_subtasks[{group!r}] is {json_kind(subtasks)}, not a list of task names; the file "
                "was edited or damaged: rerun the evaluation"
            )
    better = _mapping(results.get("higher_is_better", {}), f"{path}: higher_is_better")
    counts = results.get("n-samples") if isinstance(results.get("n-samples"), dict) else {}
    nested = {s for subtasks in groups.values() for s in subtasks if s != ""}
    found: dict[str, TaskScore] = {}

    def samples(name: str) -> int | None:
        own = counts.get(name)
        if isinstance(own, dict) and isinstance(own.get("effective"), int):
            return own["effective"]
        parts = [samples(s) for s in groups.get(name, []) if s != name]
        return sum(parts) if parts and None not in parts else None

    def visit(name: str, group: str) -> None:
        if name not in entries or ours(name):
            return
        entry = _mapping(entries[name], f"{path}: results[{name!r}]")
        subtasks = tuple(s for s in groups.get(name, []) if s != name)
        if any(ours(s) for s in subtasks):
            return  # a group of our tasks, e.g. mmr3_mini: its tasks are the MM-R³ columns
        better_here = _mapping(better.get(name, {}), f"{path}: higher_is_better[{name!r}]")
        key = headline(entry, better_here)
        if key is None:  # a group without a score of its own, or a task with no number (submission only)
            for sub in subtasks:
                visit(sub, name)
            return
        metric, filter_ = key
        stderr = entry.get(f"{metric}_stderr,{filter_}")
        flag = better_here.get(metric)
        score = TaskScore(
            task=name,
            metric=metric,
            filter=filter_,
            value=entry[f"{metric},{filter_}"],
            stderr=stderr if is_number(stderr) else None,
            higher_is_better=flag if isinstance(flag, bool) else None,
            subtasks=subtasks,
            group=group,
            n_samples=samples(name),
        )
        found[score.key] = score

    for name in entries:
        if name not in nested:
            visit(name, "")
    return found


# --------------------------------------------------------------------------- runs -> rows


@dataclass
class Entry:
    """One leaderboard row: a run's MM-R³ scores (`run`) and its other tasks' headlines."""

    run: Run
    other: dict[str, TaskScore] = field(default_factory=dict)

    def holds(self) -> set:
        return set(self.run.scores) | set(self.other)


def read_entries(paths: list[str]) -> tuple[list[Entry], list[ReportInputError]]:
    """Every run in the path arguments (results files or `--output_path` folders), in the order given,
    and every input that could not be read, each a `ReportInputError` naming it.

    As `runs.read_inputs`, but a results file without an MM-R³ task is a row too (its MM-R³ cells
    empty). Files merge into one row only when one invocation wrote them with different tasks.
    """
    entries: list[Entry] = []
    problems: list[ReportInputError] = []
    for index, files, _ in argument_files(paths, problems, "mmr3 leaderboard"):
        for path in files:
            try:
                results = read_results_file(path)
                runs = file_runs(results, path, index)
                other = other_scores(results, path)
            except ReportInputError as err:
                problems.append(err)
                continue
            if not runs and not other:
                problems.append(
                    ReportInputError(f"{path}: no task with a score in it ('results' holds none); rerun the evaluation")
                )
                continue
            for run in runs or [new_run(results, path, index)]:
                _merge_or_add(entries, Entry(run, dict(other)))
    _disambiguate([e.run for e in entries])
    return entries, problems


def same_invocation(a: Run, b: Run) -> bool:
    """Whether two runs come from one lmms-eval invocation (`Run.identity`, and the same data set).

    The MM-R³ data scored is known only from our tasks, so a part holding none of them (the other
    tasks of a results file split by hand) matches on everything else.
    """
    if a.scores and b.scores:
        return a.identity() == b.identity() and a.demo == b.demo
    rest = (a.path_index, a.model, a.model_args, a.gen_kwargs, a.limit, a.date)
    return rest == (b.path_index, b.model, b.model_args, b.gen_kwargs, b.limit, b.date)


def _merge_or_add(entries: list[Entry], entry: Entry) -> None:
    """Adds `entry`, or merges it into the row of the same invocation that holds none of its tasks."""
    for into in entries:
        if same_invocation(into.run, entry.run) and not into.holds() & entry.holds():
            into.run.scores |= entry.run.scores
            into.run.task_names |= entry.run.task_names
            into.run.samples |= entry.run.samples
            into.run.sources += entry.run.sources
            into.run.data = ", ".join(sorted({d for d in (into.run.data, entry.run.data) if d}))
            into.run.demo |= entry.run.demo
            into.other |= entry.other
            return
    entries.append(entry)


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    numeric: bool
    higher_is_better: bool | None = None
    about: str = ""
    decimals: int = 2  # as shown in Markdown and HTML; 4 for a column of fractions (0.6250)


@dataclass
class Row:
    entry: Entry
    values: dict[str, object]
    ci95: dict[str, list[float]] = field(default_factory=dict)  # MM-R³ cells: the run's 95% interval
    stderr: dict[str, float] = field(default_factory=dict)  # other tasks' cells: lmms-eval's stderr


@dataclass
class Board:
    columns: list[Column]
    rows: list[Row]
    notes: list[str]
    sorted_by: tuple[str, bool] | None = None  # (column key, descending)

    def column(self, name: str) -> Column:
        """A column by its key or its header, case-insensitive (`mean/con`, `Mean Con`, `QR S_C`)."""
        wanted = name.strip().casefold()
        for column in self.columns:
            if wanted in (column.key.casefold(), column.header.casefold()):
                return column
        raise MMR3Error(
            f"--sort {name!r}: no such column; the columns are: " + ", ".join(c.header for c in self.columns)
        )


IDENTITY = (
    Column("run", "Run", False, about="the run's label: model and checkpoint, and what tells same-label runs apart"),
    Column("model", "Model", False, about="lmms-eval's --model"),
    Column("checkpoint", "Checkpoint", False, about="pretrained= (or responses=) of --model_args"),
    Column("adapter", "Adapter", False, about="adapter= or lora= of --model_args"),
    Column("settings", "Settings", False, about="the rest of --model_args, --gen_kwargs and --limit"),
    Column("data", "Data", False, about="the MM-R³ data scored: the demo set, or the build's fingerprint"),
)


def mmr3_columns() -> list[Column]:
    columns = [
        Column(f"{MEAN}/{m}", f"Mean {METRIC_LABELS[m]}", True, True, f"{METRIC_LABELS[m]}: {MEAN_RULE}")
        for m in MMR3_METRICS
    ]
    for task in schema.TASKS:
        columns += [
            Column(f"{task}/{m}", f"{TASK_SHORT[task]} {METRIC_LABELS[m]}", True, True, f"mmr3 {task}, All protocol")
            for m in MMR3_METRICS
        ]
    return columns


def identity_values(run: Run) -> dict[str, object]:
    args = parse_model_args(run.model_args)
    checkpoint = next((args.pop(a) for a in CHECKPOINT_ARGS if a in args), "")
    adapter = [f"{a} {Path(args.pop(a)).name}" for a in ADAPTER_ARGS if args.get(a)]
    for a in ADAPTER_ARGS:
        args.pop(a, None)
    settings = [f"{k}={v}" if v else k for k, v in args.items()]
    settings += [run.gen_kwargs] if run.gen_kwargs else []
    settings += [f"limit {run.limit}"] if run.limit else []
    data = DEMO_DATA if run.demo else run.data
    return {
        "run": run.label,
        "model": run.model,
        "checkpoint": Path(checkpoint).name if checkpoint else "",
        "adapter": ", ".join(adapter),
        "settings": ", ".join(settings),
        "data": data if run.scores else "",
    }


def mean_interval(mean: float, values: list[float], intervals: list[list[float]]) -> list[float]:
    """The 95% interval of the three tasks' mean, from each task's own interval.

    The tasks score different data, so their errors are independent: the mean's distance to each
    bound is the root of the summed squares of the tasks' distances, over 3 (a normal
    approximation of the bootstrap intervals; each side on its own, as they need not be symmetric).
    """
    below = math.sqrt(sum(max(v - lo, 0.0) ** 2 for v, (lo, _) in zip(values, intervals, strict=True))) / len(values)
    above = math.sqrt(sum(max(hi - v, 0.0) ** 2 for v, (_, hi) in zip(values, intervals, strict=True))) / len(values)
    return [mean - below, mean + above]


def build_board(entries: list[Entry]) -> Board:
    """The leaderboard of `entries`, one row each, in the order given."""
    others: dict[str, Column] = {}
    for entry in entries:
        for key, score in entry.other.items():
            if key not in others:
                about = f"lmms-eval task {score.task}, metric {score.metric} (filter {score.filter})"
                if score.subtasks:
                    about += f"; the group's own score over {', '.join(score.subtasks)}"
                if score.group:
                    about += f"; a subtask of {score.group}, which has no score of its own"
                others[key] = Column(key, score.header, True, score.higher_is_better, about)
    rows = []
    for entry in entries:
        run = entry.run
        values = identity_values(run)
        ci95: dict[str, list[float]] = {}
        for task in schema.TASKS:
            for metric in MMR3_METRICS:
                value = run.get(task, "all", metric)
                values[f"{task}/{metric}"] = value if is_number(value) else None
                interval = run.get(task, "all", f"{metric}_ci95")
                if isinstance(interval, list) and len(interval) == 2 and all(map(is_number, interval)):
                    ci95[f"{task}/{metric}"] = list(interval)
        for metric in MMR3_METRICS:
            parts = [values[f"{task}/{metric}"] for task in schema.TASKS]
            values[f"{MEAN}/{metric}"] = mean = sum(parts) / len(parts) if None not in parts else None
            intervals = [ci95.get(f"{task}/{metric}") for task in schema.TASKS]
            if mean is not None and None not in intervals:
                ci95[f"{MEAN}/{metric}"] = mean_interval(mean, parts, intervals)
        stderr = {}
        for key in others:
            score = entry.other.get(key)
            values[key] = score.value if score else None
            if score and score.stderr is not None:
                stderr[key] = score.stderr
        rows.append(Row(entry, values, ci95, stderr))
    for key, column in others.items():
        fractions = all(abs(r.values[key]) <= 1 for r in rows if r.values[key] is not None)
        others[key] = replace(column, decimals=4 if fractions else 2)
    notes = [MEAN_RULE, HEADLINE_RULE, "An empty cell: the run has no score for that column (never a 0)"]
    demo = [r.values["run"] for r in rows if r.entry.run.demo]
    if demo:
        notes.append(f"{', '.join(map(str, demo))}: {DEMO_DATA}, a smoke test, not comparable to the paper's numbers")
    return Board([*IDENTITY, *mmr3_columns(), *others.values()], rows, notes)


def sort_board(board: Board, column: str, descending: bool | None = None) -> Board:
    """The rows sorted by one column; empty cells last whatever the order.

    By default the best comes first: numbers descending, or ascending where lower is better; text
    ascending.
    """
    col = board.column(column)
    if descending is None:
        descending = col.numeric and col.higher_is_better is not False
    present = [r for r in board.rows if r.values.get(col.key) not in (None, "")]
    empty = [r for r in board.rows if r.values.get(col.key) in (None, "")]

    def key(row: Row):
        value = row.values[col.key]
        return value if col.numeric else str(value).casefold()

    present.sort(key=key, reverse=descending)
    return Board(board.columns, present + empty, board.notes, (col.key, descending))


# --------------------------------------------------------------------------- rendering


def cell_text(column: Column, value: object) -> str:
    if value is None or value == "":
        return ""
    if column.numeric and is_number(value):
        return f"{value:.{column.decimals}f}"
    return str(value)


def render_markdown(board: Board) -> str:
    out = io.StringIO()
    out.write("### MM-R³ leaderboard\n\n")
    for note in board.notes + sort_note(board):
        out.write(f"_{note}_\n\n")
    out.write("| " + " | ".join(c.header for c in board.columns) + " |\n")
    out.write("|" + "|".join("---:" if c.numeric else "---" for c in board.columns) + "|\n")
    for row in board.rows:
        cells = [cell_text(c, row.values.get(c.key)).replace("|", "\\|") for c in board.columns]
        out.write("| " + " | ".join(cells) + " |\n")
    return out.getvalue()


def sort_note(board: Board) -> list[str]:
    if not board.sorted_by:
        return []
    key, descending = board.sorted_by
    header = next(c.header for c in board.columns if c.key == key)
    return [f"Sorted by {header}, {'descending' if descending else 'ascending'}; empty cells last"]


def render_csv(board: Board) -> str:
    """One header line of column headers, one line per run; an empty field for an empty cell."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([c.header for c in board.columns])
    for row in board.rows:
        writer.writerow(["" if row.values.get(c.key) is None else row.values[c.key] for c in board.columns])
    return out.getvalue()


def board_json(board: Board) -> dict:
    """The leaderboard as JSON: the columns (key, header, direction, meaning) and one object per row."""
    rows = []
    for row in board.rows:
        run = row.entry.run
        rows.append(
            {
                **{c.key: row.values.get(c.key) for c in board.columns},
                "ci95": row.ci95,
                "stderr": row.stderr,
                "other": {
                    key: {
                        "task": s.task,
                        "metric": s.metric,
                        "filter": s.filter,
                        "subtasks": list(s.subtasks),
                        "group": s.group or None,
                        "n_samples": s.n_samples,
                    }
                    for key, s in row.entry.other.items()
                },  # fmt: skip
                "demo": run.demo,
                "date": date_text(run.date) if run.date else None,
                "sources": run.sources,
            }
        )
    columns = [
        {"key": c.key, "header": c.header, "numeric": c.numeric, "higher_is_better": c.higher_is_better,
         "about": c.about}
        for c in board.columns
    ]  # fmt: skip
    sorted_by = {"column": board.sorted_by[0], "descending": board.sorted_by[1]} if board.sorted_by else None
    return {"columns": columns, "rows": rows, "notes": board.notes, "sorted_by": sorted_by}


def render_json(board: Board) -> str:
    return json.dumps(board_json(board), indent=2, ensure_ascii=False)
