"""Runs -> the figures of `mmr3 report --plots` and `mmr3 leaderboard`, with the runs' 95% intervals.

Every MM-R³ point of a run carries the 95% group-bootstrap interval the run's results hold
(`acc_ci95`, `con_ci95`, ...) as error bars; a run without one is drawn without a bar. The
per-variant-kind scores have no interval in the results, so that figure says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mmr3_tasks import schema, taskdefs
from mmr3_tasks.report.leaderboard import MEAN, Board
from mmr3_tasks.report.runs import Run
from mmr3_tasks.report.tables import BREAKDOWN_TABLES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INTERVAL_NOTE = "bars: 95% intervals"


def interval_error(value: float, interval: object) -> list[list[float]] | None:
    """matplotlib's asymmetric error bar, [[below], [above]], for `value` and its interval [low, high].

    None when there is no interval. A bound on the wrong side of the value (a percentile interval
    can miss its point estimate by rounding) is drawn as no bar on that side, not a negative one.
    """
    if not (isinstance(interval, list | tuple) and len(interval) == 2):
        return None
    low, high = interval
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in (low, high)):
        return None
    return [[max(value - low, 0.0)], [max(high - value, 0.0)]]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def accuracy_consistency_figure(runs: list[Run], with_paper: bool = True) -> Figure:
    """Acc against Con per task (All protocol): the paper's models in grey, each run with its 95% intervals."""
    from mmr3_tasks import paper

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
    for ax, task in zip(axes, schema.TASKS, strict=True):
        if with_paper:
            for model in paper.MODELS:
                acc, _, con, _ = paper.MAIN[task]["all"][model]
                ax.scatter(acc, con, color="0.6", marker="o")
                ax.annotate(model, (acc, con), fontsize=7, color="0.4", xytext=(3, 3), textcoords="offset points")
        for n, run in enumerate(runs):
            acc, con = run.get(task, "all", "acc"), run.get(task, "all", "con")
            if acc is None or con is None:
                continue
            ax.errorbar(
                acc, con,
                xerr=interval_error(acc, run.get(task, "all", "acc_ci95")),
                yerr=interval_error(con, run.get(task, "all", "con_ci95")),
                fmt="*", markersize=12, capsize=3, color=f"C{n % 10}", label=run.label,
            )  # fmt: skip
            label = ax.annotate(run.label, (acc, con), fontsize=8, xytext=(4, -10), textcoords="offset points")
            label.set_in_layout(False)  # a long label must not squeeze the axes
        ax.set(title=paper.TASK_LABELS[task], xlabel="Acc (All)", ylabel="Con (All)", xlim=(0, 105), ylim=(0, 105))
        ax.grid(alpha=0.3)
    fig.suptitle(f"MM-R³: accuracy and consistency diverge (grey: the paper's models; {INTERVAL_NOTE})")
    return fig


def variant_kind_figure(runs: list[Run], with_paper: bool = True) -> Figure:
    """Con per variant kind (the paper's Tables 10-13); the results hold no interval per kind."""
    from mmr3_tasks import paper

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(BREAKDOWN_TABLES), figsize=(18, 4.2), constrained_layout=True)
    for ax, (task, column, title) in zip(axes, BREAKDOWN_TABLES, strict=True):
        kinds = [str(v) for v in taskdefs.BREAKDOWN_DIMENSIONS[task][column][1]]
        x = range(len(kinds))
        if with_paper:
            for model in paper.MODELS:
                ax.plot(x, [paper.BREAKDOWN[column][model][k][2] for k in kinds], color="0.8", lw=1)
        for run in runs:
            scores = run.scores.get((task, "all"), {})
            ys = [scores.get(taskdefs.breakdown_key("con", column, k)) for k in kinds]
            ax.plot(x, [float("nan") if y is None else y for y in ys], marker="o", label=run.label)
        ax.set_xticks(list(x), kinds, rotation=30)
        ax.set(title=title.split(": ", 1)[1], ylabel="Con", ylim=(0, 100))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Con per variant kind (grey: the paper's models; the results hold no interval per kind)")
    return fig


def plot_figures(runs: list[Run], out_dir: Path, with_paper: bool = True) -> list[Path]:
    """Accuracy against consistency (the paper's central point) and per-kind scores, as PNGs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in (
        ("accuracy_vs_consistency.png", accuracy_consistency_figure),
        ("consistency_by_variant_kind.png", variant_kind_figure),
    ):
        written.append(save(make(runs, with_paper), out_dir / name))
    return written


def save(fig: Figure, path: Path, dpi: int = 120) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def leaderboard_figure(board: Board, with_paper: bool = True) -> Figure:
    """Accuracy elsewhere against MM-R³ consistency: one panel per other task, one point per run.

    x is the run's Mean Con (the three tasks, All protocol) with its 95% interval, y the task's
    headline with ±1.96 lmms-eval stderr where the results give one. The first panel is MM-R³'s own
    Mean Acc against Mean Con, with the paper's models: the paper gives no score on other benchmarks,
    so they appear there only. Runs without all three MM-R³ tasks have no Mean Con and are left out.
    """
    from matplotlib.lines import Line2D

    from mmr3_tasks import paper

    plt = _pyplot()

    drawn: dict[int, str] = {}  # row number -> label, of the runs in some panel
    x_key, acc_key = f"{MEAN}/con", f"{MEAN}/acc"
    panels = [(acc_key, "MM-R³ Mean Acc (All)", True)]
    panels += [
        (c.key, c.header, False)
        for c in board.columns
        if ":" in c.key and any(r.values.get(c.key) is not None for r in board.rows)
    ]  # every other task with a number
    ncols = min(len(panels), 3)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.4 * nrows), squeeze=False, constrained_layout=True)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (key, title, mmr3_panel) in zip(flat, panels, strict=False):
        if mmr3_panel and with_paper:
            for model in paper.MODELS:
                scores = [paper.MAIN[t]["all"][model] for t in schema.TASKS]
                acc, con = (sum(s[i] for s in scores) / len(scores) for i in (0, 2))
                ax.scatter(con, acc, color="0.6", marker="o")
                ax.annotate(model, (con, acc), fontsize=7, color="0.4", xytext=(3, 3), textcoords="offset points")
        shown = 0
        for n, row in enumerate(board.rows):
            x, y = row.values.get(x_key), row.values.get(key)
            if x is None or y is None:
                continue
            shown += 1
            if mmr3_panel:
                yerr = interval_error(y, row.ci95.get(key))
            else:
                yerr = [[1.96 * row.stderr[key]], [1.96 * row.stderr[key]]] if key in row.stderr else None
            ax.errorbar(
                x, y, xerr=interval_error(x, row.ci95.get(x_key)), yerr=yerr,
                fmt="*", markersize=12, capsize=3, color=f"C{n % 10}", label=str(row.values["run"]),
            )  # fmt: skip
            drawn[n] = str(row.values["run"])
            ax.annotate(str(n + 1), (x, y), fontsize=9, xytext=(5, 3), textcoords="offset points")
        left_out = len(board.rows) - shown
        missing = f"\n({left_out} of {len(board.rows)} runs lack one of the two)" if left_out else ""
        ax.set(title=title, xlabel=f"MM-R³ Mean Con (All){missing}")
        ax.set_xlim(0, 105)
        if mmr3_panel:
            ax.set_ylim(0, 105)
        ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], marker="*", linestyle="", markersize=10, color=f"C{n % 10}", label=f"{n + 1}: {label}")
        for n, label in sorted(drawn.items())
    ]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", fontsize=8, ncols=min(len(handles), 2))
    fig.suptitle(
        f"Accuracy elsewhere against MM-R³ consistency ({INTERVAL_NOTE}; other tasks: ±1.96 stderr; "
        "grey: the paper's models)"
    )
    return fig
