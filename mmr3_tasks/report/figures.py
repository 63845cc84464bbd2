"""Runs -> the figures of `mmr3 report --plots`: accuracy against consistency, consistency per variant kind."""

from __future__ import annotations

from pathlib import Path

from mmr3_tasks import schema, taskdefs
from mmr3_tasks.report.runs import Run
from mmr3_tasks.report.tables import BREAKDOWN_TABLES


def plot_figures(runs: list[Run], out_dir: Path, with_paper: bool = True) -> list[Path]:
    """Accuracy against consistency (the paper's central point) and per-kind scores, as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmr3_tasks import paper

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
    for ax, task in zip(axes, schema.TASKS, strict=True):
        if with_paper:
            for model in paper.MODELS:
                acc, _, con, _ = paper.MAIN[task]["all"][model]
                ax.scatter(acc, con, color="0.6", marker="o")
                ax.annotate(model, (acc, con), fontsize=7, color="0.4", xytext=(3, 3), textcoords="offset points")
        for run in runs:
            acc, con = run.get(task, "all", "acc"), run.get(task, "all", "con")
            if acc is None or con is None:
                continue
            ax.scatter(acc, con, marker="*", s=140)
            ax.annotate(run.label, (acc, con), fontsize=8, xytext=(4, -10), textcoords="offset points")
        ax.set(title=paper.TASK_LABELS[task], xlabel="Acc (All)", ylabel="Con (All)", xlim=(0, 105), ylim=(0, 105))
        ax.grid(alpha=0.3)
    path = out_dir / "accuracy_vs_consistency.png"
    fig.suptitle("MM-R³: accuracy and consistency diverge (grey: the paper's models)")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)

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
    path = out_dir / "consistency_by_variant_kind.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
    return written
