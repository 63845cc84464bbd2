"""`mmr3 report` (results JSON -> the paper's tables and figures) and `mmr3 score` (samples -> scores).

`report` reads lmms-eval results files, lays them out as the paper's Tables 2-4 (Sampling and
All), the three-task summary of Table 6, the per-kind Tables 10-13 and what we add beyond the
paper, next to the paper's own numbers. `score` recomputes every number from `--log_samples`
files alone, without lmms-eval.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mmr3_tasks import schema, taskdefs

TASK_SHORT = {"rephrase": "QR", "restyle": "IR", "context": "CR"}
METRIC_LABELS = {"acc": "Acc", "s_gt": "S_GT", "con": "Con", "s_c": "S_C"}
BREAKDOWN_TABLES = (
    ("restyle", "style", "Table 10: style (Image Restyling)"),
    ("context", "mask_color", "Table 11: mask colour (Context Reasoning)"),
    ("context", "mask_lines", "Table 12: number of mask lines (Context Reasoning)"),
    ("context", "mask_shape", "Table 13: mask shape (Context Reasoning)"),
)
DEMO_NOTE = "demo set: a smoke test of the pipeline, not comparable to the paper's numbers"


@dataclass
class Run:
    """One model's MM-R³ numbers, gathered from one or more lmms-eval results files."""

    label: str
    # (task, protocol) -> metric key (without ",none") -> value
    scores: dict[tuple[str, str], dict[str, object]] = field(default_factory=dict)
    demo: bool = False
    sources: list[str] = field(default_factory=list)

    def get(self, task: str, protocol: str, metric: str):
        return self.scores.get((task, protocol), {}).get(metric)


def task_of(name: str) -> tuple[str, str, bool] | None:
    """`mmr3_context_sampling` -> ("context", "sampling", False); None for tasks not ours."""
    for d in taskdefs.TASK_DEFS:
        if d.name == name:
            return d.task, d.protocol, d.data == "demo"
    return None


def run_label(results: dict, path: Path) -> str:
    config = results.get("config", {})
    args = str(config.get("model_args") or "")
    pretrained = re.search(r"(?:^|,)(?:pretrained|responses)=([^,]+)", args)
    model = config.get("model") or results.get("model_name") or path.stem
    return f"{model} ({Path(pretrained.group(1)).name})" if pretrained else str(model)


def results_files(path: str) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(p.rglob("*_results.json"))
        if not files:
            raise FileNotFoundError(f"no *_results.json under {p} (give lmms-eval's --output_path)")
        return files
    if p.is_file():
        return [p]
    raise FileNotFoundError(f"{p}: no such results file or folder (give lmms-eval's --output_path)")


def run_identity(results: dict) -> tuple[str, str, str]:
    """What makes two results files the same run: model, its arguments, generation overrides."""
    config = results.get("config", {})
    return (str(config.get("model")), str(config.get("model_args") or ""), str(config.get("gen_kwargs") or ""))


def load_runs(paths: list[str], names: list[str] | None = None) -> list[Run]:
    """One run per distinct (path argument, model, model_args, gen_kwargs), in the order given.

    Results files of one run (say, mmr3 and mmr3_sampling evaluated separately) are merged, the
    later file winning for a task both hold. Runs that differ in any setting stay apart, and
    their labels say how they differ.
    """
    runs: dict[tuple, Run] = {}
    for index, path_arg in enumerate(paths):
        for path in results_files(path_arg):
            results = json.loads(path.read_text())
            key = (index, *run_identity(results))
            run = runs.setdefault(key, Run(run_label(results, path)))
            run.sources.append(str(path))
            for task_name, values in results.get("results", {}).items():
                parsed = task_of(task_name)
                if parsed is None:
                    continue
                task, protocol, demo = parsed
                run.demo |= demo
                run.scores[(task, protocol)] = {k.split(",")[0]: v for k, v in values.items() if "," in k}
    found = {k: r for k, r in runs.items() if r.scores}
    if not found:
        raise ValueError(f"no MM-R³ task results in {', '.join(paths)}")
    _disambiguate(found)
    out = list(found.values())
    if names:
        if len(names) != len(out):
            raise ValueError(f"--name given {len(names)} times for {len(out)} runs ({'; '.join(r.label for r in out)})")
        for run, name in zip(out, names, strict=True):
            run.label = name
    return out


def _disambiguate(runs: dict[tuple, Run]) -> None:
    """Appends what differs (gen_kwargs, else model_args, else the path argument) to clashing labels."""
    by_label: dict[str, list[tuple]] = {}
    for key, run in runs.items():
        by_label.setdefault(run.label, []).append(key)
    for label, keys in by_label.items():
        if len(keys) < 2:
            continue
        for key in keys:
            index, _, model_args, gen_kwargs = key
            if len({k[3] for k in keys}) > 1:
                extra = gen_kwargs or "default generation"
            elif len({k[2] for k in keys}) > 1:
                extra = model_args
            else:
                extra = f"#{index + 1}"
            runs[key].label = f"{label} [{extra}]"


# --------------------------------------------------------------------------- tables


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
    if table.note:
        out.write(f"_{table.note}_\n\n")
    out.write("| " + " | ".join(table.header) + " |\n")
    out.write("|" + "|".join("---" if i == 0 else "---:" for i in range(len(table.header))) + "|\n")
    for row in table.rows:
        out.write("| " + " | ".join(fmt(v) for v in row) + " |\n")
    return out.getvalue()


def render_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([f"# {table.title}"])
    writer.writerow(table.header)
    for row in table.rows:
        writer.writerow(["" if v is None else (json.dumps(v) if isinstance(v, list) else v) for v in row])
    return out.getvalue()


def build_tables(runs: list[Run], with_paper: bool = True) -> list[Table]:
    tables = [*main_tables(runs, with_paper), summary_table(runs, with_paper), beyond_table(runs)]
    tables += breakdown_tables(runs, with_paper)
    demo = [r.label for r in runs if r.demo]
    if demo:
        for t in tables:
            t.note = f"{', '.join(demo)}: {DEMO_NOTE}"
    return tables


# --------------------------------------------------------------------------- figures


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


# --------------------------------------------------------------------------- mmr3 score

_SAMPLES_NAME = re.compile(r"_samples_(?P<task>.+)\.jsonl$")


def read_payloads(paths: list[str]) -> dict[str, list[dict]]:
    """Task name -> the payloads our tasks log under `acc` in lmms-eval's samples files."""
    out: dict[str, list[dict]] = {}
    for path in map(Path, paths):
        match = _SAMPLES_NAME.search(path.name)
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                sample = json.loads(line)
                payload = sample.get("acc")
                if not isinstance(payload, dict) or "group_id" not in payload:
                    raise ValueError(f"{path}:{n}: not an MM-R³ sample (no payload under 'acc'); was it --log_samples?")
                default = f"mmr3_{payload['task']}" + ("_sampling" if "responses" in payload else "")
                out.setdefault(match.group("task") if match else default, []).append(payload)
    return out


def score_samples(paths: list[str], n_resamples: int | None = None) -> dict[str, dict]:
    """Every metric of every task in the samples files, flat keys as in the results JSON."""
    from mmr3_tasks import hooks

    kwargs = {} if n_resamples is None else {"n_resamples": n_resamples}
    scored = {}
    for task_name, payloads in sorted(read_payloads(paths).items()):
        report = hooks.score_payloads(payloads, **kwargs)
        protocol = "sampling" if "responses" in payloads[0] else "all"
        names = taskdefs.metric_names(payloads[0]["task"], protocol)
        scored[task_name] = {name: hooks.metric_value(report, name) for name in names}
    return scored


def compare(scored: dict[str, dict], results_path: Path, tol: float = 1e-6) -> list[str]:
    """Differences between recomputed scores and an lmms-eval results file (empty = identical)."""
    results = json.loads(results_path.read_text())["results"]
    diffs = []
    for task, values in scored.items():
        theirs = results.get(task)
        if theirs is None:
            diffs.append(f"{task}: not in {results_path}")
            continue
        for name, ours in values.items():
            other = theirs.get(f"{name},none")
            same = ours == other
            if isinstance(ours, float) and isinstance(other, float):
                same = abs(ours - other) <= tol
            if isinstance(ours, list) and isinstance(other, list):
                same = all(abs(a - b) <= tol for a, b in zip(ours, other, strict=True))
            if not same:
                diffs.append(f"{task} {name}: samples give {ours!r}, results file has {other!r}")
    return diffs


# --------------------------------------------------------------------------- CLI


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="lmms-eval results -> the paper's tables and figures, next to its numbers")
    p.add_argument("results", nargs="+", help="lmms-eval *_results.json files or --output_path folders")
    p.add_argument("--name", action="append", help="label for each run, in order (default: model and checkpoint)")
    p.add_argument("--format", choices=("markdown", "csv", "json"), default="markdown")
    p.add_argument("--out", type=Path, help="write the tables here instead of printing them")
    p.add_argument("--plots", type=Path, metavar="DIR", help="also write the figures (PNG) into DIR")
    p.add_argument("--no-paper", action="store_true", help="leave out the paper's rows")
    p.set_defaults(func=run_report)

    s = sub.add_parser("score", help="recompute every MM-R³ number from lmms-eval --log_samples files alone")
    s.add_argument("samples", nargs="+", help="*_samples_mmr3_*.jsonl files")
    s.add_argument("--check", type=Path, metavar="RESULTS_JSON", help="compare with an lmms-eval results file")
    s.add_argument("--json", type=Path, metavar="OUT", help="write the scores as JSON")
    s.add_argument("--embedding-model", help="hub id or folder (default: $MMR3_EMBEDDING_MODEL or all-MiniLM-L6-v2)")
    s.set_defaults(func=run_score)


def run_report(args: argparse.Namespace) -> int:
    runs = load_runs(args.results, args.name)
    with_paper = not args.no_paper
    if args.format == "json":
        text = json.dumps(
            {r.label: {f"{t}/{p}": v for (t, p), v in r.scores.items()} | {"demo": r.demo} for r in runs}, indent=2
        )
    else:
        tables = build_tables(runs, with_paper)
        render = render_markdown if args.format == "markdown" else render_csv
        text = "\n".join(render(t) for t in tables)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(text)
    if args.plots:
        for path in plot_figures(runs, args.plots, with_paper):
            print(f"wrote {path}")
    return 0


def run_score(args: argparse.Namespace) -> int:
    import os

    if args.embedding_model:
        os.environ["MMR3_EMBEDDING_MODEL"] = args.embedding_model
    scored = score_samples(args.samples)
    for task, values in scored.items():
        table = Table(task, ["Metric", "Value"], [[k, v] for k, v in values.items()])
        print(render_markdown(table))
    if args.json:
        args.json.write_text(json.dumps(scored, indent=2), encoding="utf-8")
        print(f"wrote {args.json}")
    if args.check:
        diffs = compare(scored, args.check)
        if diffs:
            print("\n".join(["MISMATCH:", *diffs]), file=sys.stderr)
            return 1
        print(f"identical to {args.check}")
    return 0
