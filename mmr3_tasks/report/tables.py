"""Runs -> the paper's tables (and what we add beyond them), rendered as Markdown or CSV."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from mmr3_tasks import schema, taskdefs
from mmr3_tasks.report.runs import Run

TASK_SHORT = {"rephrase": "QR", "restyle": "IR", "context": "CR"}
METRIC_LABELS = {"acc": "Acc", "s_gt": "S_GT", "con": "Con", "s_c": "S_C"}
BREAKDOWN_TABLES = (
    ("restyle", "style", "Table 10: style (Image Restyling)"),
    ("context", "mask_color", "Table 11: mask colour (Context Reasoning)"),
    ("context", "mask_lines", "Table 12: number of mask lines (Context Reasoning)"),
    ("context", "mask_shape", "Table 13: mask shape (Context Reasoning)"),
)


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[object]]
    note: str = ""


def fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
        return f"[{value[0]:.1f}, {value[1]:.1f}]"
    return str(value)


def main_tables(runs: list[Run], with_paper: bool) -> list[Table]:
    """Tables 2-4: Sampling and All, Acc / S_GT / Con / S_C, one table per task."""
    from mmr3_tasks import paper

    tables = []
    for n, task in enumerate(schema.TASKS, start=2):
        header = ["Model"] + [f"{p} {METRIC_LABELS[m]}" for p in ("Samp", "All") for m in taskdefs.HEADLINE]
        rows = []
        if with_paper:
            for model in paper.MODELS:
                samp = paper.MAIN[task]["sampling"][model]
                all_ = paper.MAIN[task]["all"][model]
                rows.append([f"{model} (paper)", *samp, *all_])
        for run in runs:
            rows.append([run.label] + [run.get(task, p, m) for p in ("sampling", "all") for m in taskdefs.HEADLINE])
        tables.append(Table(f"Table {n}: {paper.TASK_LABELS[task]}", header, rows))
    return tables


def summary_table(runs: list[Run], with_paper: bool) -> Table:
    """All protocol, three tasks side by side (the layout of the paper's Tables 5 and 6)."""
    from mmr3_tasks import paper

    header = ["Model"] + [f"{TASK_SHORT[t]} {METRIC_LABELS[m]}" for t in schema.TASKS for m in taskdefs.HEADLINE]
    rows = []
    if with_paper:
        for model in paper.MODELS:
            rows.append([f"{model} (paper)"] + [v for t in schema.TASKS for v in paper.MAIN[t]["all"][model]])
        for model, variants in paper.ADAPTER.items():
            rows.append([f"{model} + adapter (paper)"] + [v for t in schema.TASKS for v in variants["adapter"][t]])
    for run in runs:
        rows.append([run.label] + [run.get(t, "all", m) for t in schema.TASKS for m in taskdefs.HEADLINE])
    return Table("Summary: All protocol, three tasks (layout of Tables 5-6)", header, rows)


def beyond_table(runs: list[Run]) -> Table:
    header = [
        "Model", "Task", "Exact agr.", "Cons.-correct", "Cons.-wrong", "Inconsistent",
        "Acc 95% CI", "Con 95% CI", "Groups", "Complete", "Empty",
    ]  # fmt: skip
    rows = []
    for run in runs:
        order = {t: i for i, t in enumerate(schema.TASKS)}
        for (task, protocol), s in sorted(run.scores.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
            name = f"{TASK_SHORT[task]}" + (" (sampling)" if protocol == "sampling" else "")
            rows.append(
                [run.label, name]
                + [s.get(k) for k in ("exact_agreement", "consistent_correct", "consistent_wrong", "inconsistent")]
                + [s.get("acc_ci95"), s.get("con_ci95"), s.get("groups"), s.get("groups_complete")]
                + [s.get("empty_responses")]
            )
    return Table("Beyond the paper: agreement, outcome split, 95% group-bootstrap intervals, counts", header, rows)


def breakdown_tables(runs: list[Run], with_paper: bool) -> list[Table]:
    """Tables 10-13: cells are Acc / S_GT / Con / S_C of one variant kind."""
    from mmr3_tasks import paper

    tables = []
    for task, column, title in BREAKDOWN_TABLES:
        kinds = [str(v) for v in taskdefs.BREAKDOWN_DIMENSIONS[task][column][1]]
        header = ["Model"] + kinds
        rows = []
        if with_paper:
            for model in paper.MODELS:
                cells = paper.BREAKDOWN[column][model]
                rows.append([f"{model} (paper)"] + ["/".join(f"{x:.2f}" for x in cells[k]) for k in kinds])
        for run in runs:
            scores = run.scores.get((task, "all"))
            if scores is None:
                continue
            cells = []
            for k in kinds:
                vals = [scores.get(taskdefs.breakdown_key(m, column, k)) for m in taskdefs.HEADLINE]
                cells.append("/".join(fmt(v) for v in vals))
            rows.append([run.label, *cells])
        tables.append(Table(title + " — Acc/S_GT/Con/S_C", header, rows))
    return tables


def render_markdown(table: Table) -> str:
    out = io.StringIO()
    out.write(f"### {table.title}\n\n")
    for note in filter(None, table.note.split("\n")):
        out.write(f"_{note}_\n\n")
    out.write("| " + " | ".join(table.header) + " |\n")
    out.write("|" + "|".join("---" if i == 0 else "---:" for i in range(len(table.header))) + "|\n")
    for row in table.rows:
        out.write("| " + " | ".join(fmt(v) for v in row) + " |\n")
    return out.getvalue()


def render_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([f"# {table.title}"])
    for note in filter(None, table.note.split("\n")):
        writer.writerow([f"# {note}"])
    writer.writerow(table.header)
    for row in table.rows:
        writer.writerow(["" if v is None else (json.dumps(v) if isinstance(v, list) else v) for v in row])
    return out.getvalue()
