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

from mmr3_tasks import embedding, metrics, schema, taskdefs

TASK_SHORT = {"rephrase": "QR", "restyle": "IR", "context": "CR"}
METRIC_LABELS = {"acc": "Acc", "s_gt": "S_GT", "con": "Con", "s_c": "S_C"}
BREAKDOWN_TABLES = (
    ("restyle", "style", "Table 10: style (Image Restyling)"),
    ("context", "mask_color", "Table 11: mask colour (Context Reasoning)"),
    ("context", "mask_lines", "Table 12: number of mask lines (Context Reasoning)"),
    ("context", "mask_shape", "Table 13: mask shape (Context Reasoning)"),
)
RESULTS_SUFFIX = "_results.json"
DEMO_NOTE = "demo set: a smoke test of the pipeline, not comparable to the paper's numbers"


@dataclass
class Run:
    """One model's MM-R³ numbers, gathered from one or more lmms-eval results files."""

    label: str
    # (task, protocol) -> metric key (without ",none") -> value
    scores: dict[tuple[str, str], dict[str, object]] = field(default_factory=dict)
    demo: bool = False
    sources: list[str] = field(default_factory=list)
    model: str = ""
    model_args: str = ""
    gen_kwargs: str = ""
    task_names: dict[tuple[str, str], str] = field(default_factory=dict)  # (task, protocol) -> lmms-eval task
    samples: dict[str, Path] = field(default_factory=dict)  # lmms-eval task -> its --log_samples file

    def get(self, task: str, protocol: str, metric: str):
        return self.scores.get((task, protocol), {}).get(metric)


def task_of(name: str) -> tuple[str, str, bool] | None:
    """`mmr3_context_sampling` -> ("context", "sampling", False); None for tasks not ours."""
    for d in taskdefs.TASK_DEFS:
        if d.name == name:
            return d.task, d.protocol, d.data == "demo"
    return None


ADAPTER_ARGS = ("adapter", "lora")  # model_args that turn a base model into an adapted one


def run_label(results: dict, path: Path) -> str:
    """`mmr3_llava (llava-1.5-7b-hf)`, `mmr3_llava (llava-1.5-7b-hf) + adapter ckpt-3`."""
    config = results.get("config", {})
    args = parse_model_args(str(config.get("model_args") or ""))
    model = config.get("model") or results.get("model_name") or path.stem
    pretrained = args.get("pretrained") or args.get("responses")
    label = f"{model} ({Path(pretrained).name})" if pretrained else str(model)
    for name in ADAPTER_ARGS:
        if args.get(name):
            label += f" + {name} {Path(args[name]).name}"
    return label


def parse_model_args(model_args: str) -> dict[str, str]:
    """lmms-eval's `--model_args` string, `k=v,k=v`, as a dict (a bare `k` maps to "")."""
    out = {}
    for item in model_args.split(","):
        key, _, value = item.partition("=")
        if key.strip():
            out[key.strip()] = value.strip()
    return out


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


def samples_files(results_path: Path) -> dict[str, Path]:
    """lmms-eval task -> the `--log_samples` file written with a results file.

    lmms-eval names both after one stamp: `<stamp>_results.json` and `<stamp>_samples_<task>.jsonl`
    in the same folder.
    """
    if not results_path.name.endswith(RESULTS_SUFFIX):
        return {}
    prefix = results_path.name[: -len(RESULTS_SUFFIX)] + "_samples_"
    return {
        f.name[len(prefix) : -len(".jsonl")]: f
        for f in sorted(results_path.parent.iterdir())
        if f.name.startswith(prefix) and f.name.endswith(".jsonl") and f.is_file()
    }


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
            identity = run_identity(results)
            key = (index, *identity)
            run = runs.setdefault(key, Run(run_label(results, path), model=identity[0], model_args=identity[1]))
            run.gen_kwargs = identity[2]
            run.sources.append(str(path))
            samples = samples_files(path)
            for task_name, values in results.get("results", {}).items():
                parsed = task_of(task_name)
                if parsed is None:
                    continue
                task, protocol, demo = parsed
                run.demo |= demo
                run.scores[(task, protocol)] = {k.split(",")[0]: v for k, v in values.items() if "," in k}
                run.task_names[(task, protocol)] = task_name
                if task_name in samples:
                    run.samples[task_name] = samples[task_name]
                else:  # an earlier file's samples belong to the scores this file replaced
                    run.samples.pop(task_name, None)
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


# --------------------------------------------------------------------------- paired comparison

PAIRED_PROTOCOL = "all"  # Table 6 compares the All protocol
PAIRED_KEY = "paired"  # where `--format json` puts the comparison, next to the runs' labels
PAIRED_TITLE = "Paired comparison: each run against its base, All protocol (layout of Table 6)"
PAIRED_NOTE = (
    "Δ = run − base over the groups both runs scored; [lo, hi]: its 95% paired group-bootstrap interval "
    f"({metrics.BOOTSTRAP_RESAMPLES} resamples of the shared groups, seed {metrics.BOOTSTRAP_SEED})"
)
PAPER_PAIRED_NOTE = "paper rows: Table 6, Δ (paper) = its adapter row − its original row; the paper gives no intervals"
NO_SAMPLES_NOTE = "Δ without intervals: no samples files for {labels}; run lmms-eval with --log_samples for them"
# Delta cell of a task that has no delta, by the comparison's status; the notes say why.
NO_DELTA_CELLS = {status: status for status in ("different data", "different groups", "no shared groups")}


@dataclass
class Pair:
    """Two runs on the same data: `other` is compared with `base`."""

    base: Run
    other: Run
    how: str  # "adapter" / "lora" when paired automatically, "--paired" when asked for


def find_pairs(runs: list[Run], paired: bool = False) -> list[Pair]:
    """The runs to compare: with `paired` the first run against each other, else adapted runs against their base.

    A run is the adapted version of another when model, gen_kwargs and model_args are equal except
    for an added `adapter=` or `lora=` argument.
    """
    if paired:
        if len(runs) < 2:
            found = "; ".join(r.label for r in runs)
            raise ValueError(f"--paired compares the first run with every other, but found one run ({found}); give two")
        return [Pair(runs[0], other, "--paired") for other in runs[1:]]
    pairs = []
    for other in runs:
        args = parse_model_args(other.model_args)
        added = [name for name in ADAPTER_ARGS if args.get(name)]
        if not added:
            continue
        plain = {k: v for k, v in args.items() if k not in ADAPTER_ARGS}
        for base in runs:
            same_model = (base.model, base.gen_kwargs) == (other.model, other.gen_kwargs)
            if base is not other and same_model and parse_model_args(base.model_args) == plain:
                pairs.append(Pair(base, other, "+".join(added)))
                break
    return pairs


def samples_group_scores(path: Path, embedder: metrics.Embedder) -> dict[str, metrics.GroupScore]:
    """Per-group Acc, S_GT, Con and S_C of one All-protocol samples file, scored as `mmr3 score` does."""
    from mmr3_tasks import hooks

    found = read_payloads([str(path)])
    payloads = [p for items in found.values() for p in items]
    if any("responses" in p for p in payloads):
        raise ValueError(f"{path}: Sampling-protocol samples; the paired comparison reads All-protocol tasks")
    tasks = {p["task"] for p in payloads}
    if len(tasks) > 1:
        raise ValueError(f"{path}: payloads of several tasks mixed in one samples file: {sorted(tasks)}")
    responses = [r for p in payloads for r in hooks.payload_responses(p)]
    return metrics.group_scores(responses, embedder, clean_context=tasks == {"context"})


def compare_pairs(
    pairs: list[Pair],
    *,
    n_resamples: int = metrics.BOOTSTRAP_RESAMPLES,
    seed: int = metrics.BOOTSTRAP_SEED,
    embedder: metrics.Embedder | None = None,
) -> list[dict]:
    """Each pair's deltas per task and headline metric, with paired intervals where samples allow.

    With both runs' samples files, a task's delta is mean(other) − mean(base) over the groups both
    scored, with a paired group-bootstrap interval; groups only one run scored are counted in the
    notes, never used. Without them, the delta is the difference of the results files' numbers,
    without an interval. Runs that scored different data get no delta, and a note.
    """
    cache: dict[Path, dict[str, metrics.GroupScore]] = {}
    scoring_model = getattr(embedder, "name", None) or embedding.requested_embedding_model()

    def groups_of(path: Path) -> dict[str, metrics.GroupScore]:
        nonlocal embedder
        if path not in cache:
            embedder = embedder or embedding.get_embedder(scoring_model)
            cache[path] = samples_group_scores(path, embedder)
        return cache[path]

    out = []
    for pair in pairs:
        tasks, notes, unpaired = {}, [], set()
        for task in schema.TASKS:
            entry = _compare_task(pair, task, groups_of, scoring_model, n_resamples, seed)
            if entry is None:
                continue
            tasks[task] = entry
            notes += entry["notes"]
            if entry["status"] == "unpaired":
                runs = (pair.base, pair.other)
                unpaired |= {r.label for r, path in zip(runs, entry["samples"], strict=True) if path is None}
        if unpaired:
            notes.append(NO_SAMPLES_NOTE.format(labels=", ".join(sorted(unpaired))))
        out.append(
            {"base": pair.base.label, "other": pair.other.label, "how": pair.how, "tasks": tasks, "notes": notes}
        )
    return out


def _compare_task(pair: Pair, task: str, groups_of, scoring_model: str, n_resamples: int, seed: int) -> dict | None:
    """One task of one pair: its status, the runs' numbers, the deltas and the notes that explain them."""
    base, other = pair.base, pair.other
    key, short = (task, PAIRED_PROTOCOL), TASK_SHORT[task]
    sb, so = base.scores.get(key), other.scores.get(key)
    if sb is None and so is None:
        return None
    names = [run.task_names.get(key) for run in (base, other)]
    samples = [run.samples.get(name) for run, name in zip((base, other), names, strict=True)]
    entry = {
        "tasks": names,
        "status": "paired",
        "data": [(sb or {}).get("data_fingerprint"), (so or {}).get("data_fingerprint")],
        "samples": [None if path is None else str(path) for path in samples],
        "groups_shared": None,
        "groups_only_base": None,
        "groups_only_other": None,
        # base / other: the numbers Δ compares; *_reported: the results files' own, over all their groups.
        "metrics": {
            m: {
                "base": (sb or {}).get(m),
                "other": (so or {}).get(m),
                "delta": None,
                "ci95": None,
                "groups": None,
                "base_reported": (sb or {}).get(m),
                "other_reported": (so or {}).get(m),
            }
            for m in metrics.HEADLINE
        },
        "notes": [],
    }
    if sb is None or so is None:
        missing = base if sb is None else other
        entry["status"] = "missing"
        entry["notes"].append(f"{short}: {missing.label} has no {short} results; no Δ")
        return entry
    fb, fo = entry["data"]
    if fb and fo and fb != fo:
        entry["status"] = "different data"
        entry["notes"].append(f"{short}: the runs scored different data ({fb} vs {fo}); no Δ")
        return entry

    if all(samples):
        gb, go = groups_of(samples[0]), groups_of(samples[1])
        deltas = {
            m: metrics.paired_bootstrap(
                {g: getattr(v, m) for g, v in gb.items()},
                {g: getattr(v, m) for g, v in go.items()},
                n_resamples=n_resamples,
                seed=seed,
            )
            for m in metrics.HEADLINE
        }
        acc = deltas["acc"]
        entry.update(groups_shared=acc.shared, groups_only_base=acc.only_a, groups_only_other=acc.only_b)
        if acc.shared == 0:
            entry["status"] = "no shared groups"
            entry["notes"].append(f"{short}: the runs share no group ({len(gb)} and {len(go)} groups); no Δ")
            return entry
        for m, d in deltas.items():
            entry["metrics"][m].update(base=d.mean_a, other=d.mean_b, delta=d.delta, ci95=d.ci, groups=d.shared)
        if acc.only_a or acc.only_b:
            entry["notes"].append(
                f"{short}: rows and Δ over the {acc.shared} groups both runs scored; left out: "
                f"{_groups(acc.only_a)} only {base.label} scored, {_groups(acc.only_b)} only {other.label} scored"
            )
        for run, groups, scores in ((base, gb, sb), (other, go, so)):  # are the samples the results' own?
            recorded = scores.get("embedding_model")
            if recorded and recorded != scoring_model:
                entry["notes"].append(
                    f"{short}: {run.label} was scored with {recorded}; its Δ is recomputed with {scoring_model}"
                )
            reported = scores.get("acc")
            recomputed = sum(g.acc for g in groups.values()) / len(groups) if groups else None
            if isinstance(reported, float | int) and (recomputed is None or abs(recomputed - reported) > 1e-6):
                entry["notes"].append(
                    f"{short}: {run.label}'s samples file does not reproduce its results file "
                    f"(Acc {recomputed} vs {reported}); is it from another run?"
                )
        return entry

    # No samples files: the results' own numbers, unpaired, only when the runs scored as many groups.
    nb, no = sb.get("groups"), so.get("groups")
    if nb != no:
        entry["status"] = "different groups"
        entry["notes"].append(
            f"{short}: the runs scored {nb} and {no} groups, and without samples files the shared ones are "
            "unknown; no Δ (run lmms-eval with --log_samples)"
        )
        return entry
    entry["status"] = "unpaired"
    for cell in entry["metrics"].values():
        if isinstance(cell["base"], float | int) and isinstance(cell["other"], float | int):
            cell["delta"] = float(cell["other"] - cell["base"])
    return entry


def _groups(n: int) -> str:
    return f"{n} group" if n == 1 else f"{n} groups"


def signed(value: float, digits: int) -> str:
    """`+2.50`, `-0.40`; never `-0.00`."""
    return f"{round(value, digits) + 0.0:+.{digits}f}"


def delta_cell(cell: dict, status: str) -> str:
    """`+2.50 [-0.4, +5.1]`: the delta and its 95% interval."""
    if cell["delta"] is None:
        return NO_DELTA_CELLS.get(status, "–")
    text = signed(cell["delta"], 2)
    if cell["ci95"] is not None:
        lo, hi = cell["ci95"]
        text += f" [{signed(lo, 1)}, {signed(hi, 1)}]"
    return text


def paired_table(comparisons: list[dict], with_paper: bool) -> Table:
    """Per pair: base, run and delta rows, QR/IR/CR × Acc/S_GT/Con/S_C; then the paper's Table 6."""
    header = ["Run"] + [f"{TASK_SHORT[t]} {METRIC_LABELS[m]}" for t in schema.TASKS for m in metrics.HEADLINE]
    rows, notes = [], [PAIRED_NOTE]
    for c in comparisons:
        cells = [(c["tasks"].get(t), m) for t in schema.TASKS for m in metrics.HEADLINE]
        rows.append([c["base"]] + [e["metrics"][m]["base"] if e else None for e, m in cells])
        rows.append([c["other"]] + [e["metrics"][m]["other"] if e else None for e, m in cells])
        rows.append(["Δ [95% CI]"] + [delta_cell(e["metrics"][m], e["status"]) if e else "–" for e, m in cells])
        notes += [f"{c['other']} vs {c['base']}: {n}" for n in c["notes"]]
    if with_paper:
        for model, table in paper_adapter_rows().items():
            rows.append([f"{model} (paper)", *table["original"]])
            rows.append([f"{model} + adapter (paper)", *table["adapter"]])
            rows.append(["Δ (paper)", *(signed(d, 1) for d in table["delta"])])
        notes.append(PAPER_PAIRED_NOTE)
    return Table(PAIRED_TITLE, header, rows, note="\n".join(notes))


def paper_adapter_rows() -> dict[str, dict[str, list[float]]]:
    """The paper's Table 6, flattened to QR/IR/CR × Acc/S_GT/Con/S_C, with adapter − original."""
    from mmr3_tasks import paper

    out = {}
    for model, variants in paper.ADAPTER.items():
        original = [v for t in schema.TASKS for v in variants["original"][t]]
        adapter = [v for t in schema.TASKS for v in variants["adapter"][t]]
        delta = [round(a - o, 1) for a, o in zip(adapter, original, strict=True)]
        out[model] = {"original": original, "adapter": adapter, "delta": delta}
    return out


def paired_json(comparisons: list[dict], with_paper: bool) -> dict:
    out = {
        "resamples": metrics.BOOTSTRAP_RESAMPLES,
        "seed": metrics.BOOTSTRAP_SEED,
        "level": metrics.CI_LEVEL,
        "protocol": PAIRED_PROTOCOL,
        "pairs": comparisons,
    }
    if with_paper:
        out["paper"] = {
            "columns": [f"{TASK_SHORT[t]} {METRIC_LABELS[m]}" for t in schema.TASKS for m in metrics.HEADLINE],
            "models": paper_adapter_rows(),
        }
    return out


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


def build_tables(runs: list[Run], with_paper: bool = True, comparisons: list[dict] | None = None) -> list[Table]:
    """Every table; the paired comparison (see `compare_pairs`) first when there is one."""
    tables = [paired_table(comparisons, with_paper)] if comparisons else []
    tables += [*main_tables(runs, with_paper), summary_table(runs, with_paper), beyond_table(runs)]
    tables += breakdown_tables(runs, with_paper)
    demo = [r.label for r in runs if r.demo]
    if demo:
        for t in tables:
            t.note = "\n".join(filter(None, [t.note, f"{', '.join(demo)}: {DEMO_NOTE}"]))
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
    p.add_argument(
        "--paired",
        action="store_true",
        help="compare the first run (the base) with every other one, with paired 95%% intervals from the samples "
        "files (default: pair each adapter=/lora= run with its base automatically)",
    )
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
    comparisons = compare_pairs(find_pairs(runs, args.paired))
    if args.format == "json":
        data = {r.label: {f"{t}/{p}": v for (t, p), v in r.scores.items()} | {"demo": r.demo} for r in runs}
        if comparisons:
            if PAIRED_KEY in data:
                raise ValueError(f"a run is labelled {PAIRED_KEY!r}, the comparison's JSON key; rename it with --name")
            data[PAIRED_KEY] = paired_json(comparisons, with_paper)
        text = json.dumps(data, indent=2)
    else:
        tables = build_tables(runs, with_paper, comparisons)
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
