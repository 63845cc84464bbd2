"""`mmr3 report` (results JSON -> the paper's tables and figures) and `mmr3 score` (samples -> scores).

`report` reads lmms-eval results files, lays them out as the paper's Tables 2-4 (Sampling and
All), the three-task summary of Table 6, the per-kind Tables 10-13 and what we add beyond the
paper, next to the paper's own numbers. `score` recomputes every number from `--log_samples`
files alone, without lmms-eval. Every unusable input of either is a `ReportInputError` whose
message names the file (and line) and the fix (docs/compare.md, docs/metrics.md).
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
from mmr3_tasks.errors import MMR3Error

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


class ReportInputError(MMR3Error):
    """One unusable input of `mmr3 report` or `mmr3 score`: a results file, a folder, a samples line.

    The message starts with the input (`path` or `path:line`), says what is wrong and how to fix
    it. `mmr3 report` names each bad input and reports the good ones; `mmr3 score` stops at the
    first.
    """


@dataclass
class Run:
    """One model's MM-R³ numbers from one lmms-eval invocation (one or, rarely, several results files).

    What makes a run is its identity (`identity()`): model, model_args, gen_kwargs, `--limit`, the
    data scored and the invocation's date, plus which path argument it came from. Files merge
    only when all of that is equal and they hold different tasks.
    """

    label: str
    # (task, protocol) -> metric key (without ",none") -> value
    scores: dict[tuple[str, str], dict[str, object]] = field(default_factory=dict)
    demo: bool = False
    sources: list[str] = field(default_factory=list)
    model: str = ""
    model_args: str = ""
    gen_kwargs: str = ""
    limit: str = ""  # lmms-eval's --limit as given ("5", "0.1"); "" = every row
    data: str = ""  # the data_fingerprint(s) of its tasks
    date: str = ""  # lmms-eval's `date`: the invocation's start, "20261201_100203"
    path_index: int = 0  # which path argument it came from
    task_names: dict[tuple[str, str], str] = field(default_factory=dict)  # (task, protocol) -> lmms-eval task
    samples: dict[str, Path] = field(default_factory=dict)  # lmms-eval task -> its --log_samples file

    def get(self, task: str, protocol: str, metric: str):
        return self.scores.get((task, protocol), {}).get(metric)

    def identity(self) -> tuple:
        return (self.path_index, self.model, self.model_args, self.gen_kwargs, self.limit, self.data, self.date)


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
    args = parse_model_args(settings_text(config.get("model_args")))
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


def settings_text(value: object) -> str:
    """`k=v,k=v`: lmms-eval records `model_args` as given and `gen_kwargs` parsed into a dict ("" if unset)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value).strip()


def limit_text(value: object) -> str:
    """lmms-eval records `--limit 5` as 5.0 and no limit as null: "5", ""."""
    if value is None or value == "":
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def date_text(date: str) -> str:
    """lmms-eval's `20261201_100203` as `2026-12-01 10:02:03`; any other form as it is."""
    m = re.fullmatch(r"(\d{4})(\d\d)(\d\d)_(\d\d)(\d\d)(\d\d)", date)
    return f"{m[1]}-{m[2]}-{m[3]} {m[4]}:{m[5]}:{m[6]}" if m else date


OUTPUT_PATH_HINT = "give a *_results.json that lmms-eval wrote, or the folder given to it as --output_path"


def results_files(path: str) -> list[Path]:
    """The results files a path argument names: itself, or every *_results.json under a folder."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob(f"*{RESULTS_SUFFIX}") if f.is_file())
        if files:
            return files
        if any(p.rglob("*_samples_*.jsonl")):
            raise ReportInputError(
                f"{p}: samples files but no *_results.json: lmms-eval writes the results file last, so the run "
                "was interrupted or is still running; rerun it (or score the samples with `mmr3 score`)"
            )
        raise ReportInputError(f"{p}: no *_results.json in this folder or below it; {OUTPUT_PATH_HINT}")
    if p.is_file():
        return [p]
    raise ReportInputError(f"{p}: no such results file or folder; {OUTPUT_PATH_HINT}")


def _kind(value: object) -> str:
    """How a bad JSON value reads in a message: `null`, `a number (3)`, `a string ("cat")`."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    kind = {int: "number", float: "number", str: "string", list: "list", dict: "mapping"}.get(type(value), "value")
    text = json.dumps(value)
    return f"a {kind} ({text if len(text) <= 40 else text[:37] + '...'})"


def read_results_file(path: Path) -> dict:
    """An lmms-eval results JSON; each way it can be unusable is a `ReportInputError` naming it."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ReportInputError(f"{path}: cannot be read ({err.strerror}); {OUTPUT_PATH_HINT}") from None
    if not raw.strip():
        raise ReportInputError(
            f"{path}: empty file: lmms-eval was interrupted while writing it (or the copy failed); "
            "rerun the evaluation, or remove the file"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ReportInputError(
            f"{path}: not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start}), so not an lmms-eval "
            f"results JSON; {OUTPUT_PATH_HINT}"
        ) from None
    try:
        results = json.loads(text)
    except json.JSONDecodeError as err:
        if "_samples_" in path.name:
            raise ReportInputError(
                f"{path}: a samples file, not a results file; `mmr3 report` reads *_results.json, "
                "`mmr3 score` reads samples files"
            ) from None
        if err.pos >= len(text.rstrip()) or err.msg.startswith("Unterminated string"):
            raise ReportInputError(
                f"{path}:{err.lineno}: truncated JSON (it stops mid-value): lmms-eval was interrupted while writing "
                "it, or the copy is incomplete; rerun the evaluation or copy the file again"
            ) from None
        raise ReportInputError(
            f"{path}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno}); {OUTPUT_PATH_HINT}"
        ) from None
    if not isinstance(results, dict) or not isinstance(results.get("results"), dict):
        raise ReportInputError(f"{path}: not lmms-eval output (no 'results' mapping at the top); {OUTPUT_PATH_HINT}")
    if not isinstance(results.get("config"), dict):
        raise ReportInputError(
            f"{path}: no 'config' mapping, so the model and settings behind these numbers are unknown; "
            f"{OUTPUT_PATH_HINT}"
        )
    for name, values in results["results"].items():
        if task_of(name) and not isinstance(values, dict):
            raise ReportInputError(
                f"{path}: results[{name!r}] is {_kind(values)}, not a mapping of metrics; the file was "
                "edited or damaged: rerun the evaluation"
            )
    return results


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


def file_runs(results: dict, path: Path, path_index: int) -> list[Run]:
    """The runs one results file holds: one, or two for `--tasks mmr3,mmr3_mini` (the demo set apart).

    Where lmms-eval records each setting: `config.model`, `config.model_args` (as given),
    `config.gen_kwargs` (parsed into a dict; "" when unset), `config.limit` (a float; null when
    unset), `date` (the invocation's start; its results and samples files are named after it) and,
    per task, our `data_fingerprint` metric.
    """
    config = results["config"]
    samples = samples_files(path)
    runs: dict[bool, Run] = {}  # demo set or not: mmr3_mini_rephrase and mmr3_rephrase fill the same cells
    for task_name, values in results["results"].items():
        parsed = task_of(task_name)
        if parsed is None:
            continue
        task, protocol, demo = parsed
        run = runs.get(demo)
        if run is None:
            run = runs[demo] = Run(
                run_label(results, path),
                demo=demo,
                sources=[str(path)],
                model=str(config.get("model")),
                model_args=settings_text(config.get("model_args")),
                gen_kwargs=settings_text(config.get("gen_kwargs")),
                limit=limit_text(config.get("limit")),
                date=str(results.get("date") or ""),
                path_index=path_index,
            )
        run.scores[(task, protocol)] = {k.split(",")[0]: v for k, v in values.items() if "," in k}
        run.task_names[(task, protocol)] = task_name
        if task_name in samples:
            run.samples[task_name] = samples[task_name]
    for run in runs.values():
        prints = {str(s.get("data_fingerprint")) for s in run.scores.values() if s.get("data_fingerprint")}
        run.data = ", ".join(sorted(prints))
    return list(runs.values())


def read_inputs(paths: list[str]) -> tuple[list[Run], list[ReportInputError]]:
    """Every run in the path arguments, in the order given, and every input that could not be read.

    A run is one lmms-eval invocation: its results file(s) share model, model_args, gen_kwargs,
    `--limit`, data and `date`. Files merge into one run only when all of that is equal and they
    hold different tasks (a results file split by hand); two files with the same task are two
    runs. Same-label runs get what differs appended (`_disambiguate`).
    """
    runs: list[Run] = []
    problems: list[ReportInputError] = []
    for index, path_arg in enumerate(paths):
        try:
            files = results_files(path_arg)
        except ReportInputError as err:
            problems.append(err)
            continue
        found, bad, other_tasks = 0, 0, set()
        for path in files:
            try:
                results = read_results_file(path)
            except ReportInputError as err:
                problems.append(err)
                bad += 1
                continue
            new = file_runs(results, path, index)
            found += bool(new)
            if not new:
                other_tasks |= set(results["results"])
            for run in new:
                _merge_or_add(runs, run)
        if not found and not bad:  # every file read, none with an MM-R³ task
            if Path(path_arg).is_file():
                what = f"{path_arg}: no MM-R³ task in it"
            else:
                what = f"{path_arg}: none of its {len(files)} results files holds an MM-R³ task"
            problems.append(ReportInputError(f"{what} ({_holds(other_tasks)}); {MMR3_RUN_HINT}"))
    _disambiguate(runs)
    return runs, problems


MMR3_RUN_HINT = "give the results of an lmms-eval run of an mmr3 task (--tasks mmr3, mmr3_sampling, mmr3_mini)"


def _merge_or_add(runs: list[Run], run: Run) -> None:
    """Adds `run`, or merges it into the run of the same identity that holds none of its tasks."""
    same = [r for r in runs if r.identity() == run.identity() and not r.scores.keys() & run.scores.keys()]
    if not same:
        runs.append(run)
        return
    into = same[0]
    into.scores |= run.scores
    into.task_names |= run.task_names
    into.samples |= run.samples
    into.demo |= run.demo
    into.sources += run.sources


def _holds(tasks: set[str]) -> str:
    shown = sorted(tasks)[:5]
    return "tasks found: " + ", ".join(shown) + (" …" if len(tasks) > 5 else "") if tasks else "'results' is empty"


def name_runs(runs: list[Run], names: list[str] | None) -> list[Run]:
    """Gives the runs the `--name` labels, in order; one label per run, each its own."""
    if not names:
        return runs
    if len(names) != len(runs):
        raise MMR3Error(
            f"--name given {len(names)} times for {len(runs)} runs ({'; '.join(r.label for r in runs)}); "
            "give one --name per run, in this order"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise MMR3Error(f"--name {repeated[0]!r} given twice; each run needs its own label")
    for run, name in zip(runs, names, strict=True):
        run.label = name
    return runs


def load_runs(paths: list[str], names: list[str] | None = None) -> list[Run]:
    """Every run in `paths` (see `read_inputs`), labelled by `names` if given; the first bad input raises."""
    runs, problems = read_inputs(paths)
    if problems:
        raise problems[0]
    if not runs:
        raise MMR3Error("no results files given")
    return name_runs(runs, names)


# What tells same-label runs apart, most telling first: each run's text for it.
RUN_DIFFERENCES = (
    lambda r: r.gen_kwargs or "default generation",
    lambda r: r.model_args or "no model_args",
    lambda r: f"limit {r.limit}" if r.limit else "no limit",
    lambda r: f"data {r.data}" if r.data else "data unknown",
    lambda r: date_text(r.date) if r.date else "no date",
    lambda r: f"#{r.path_index + 1}",
    lambda r: ", ".join(Path(s).name for s in r.sources),
)


def _disambiguate(runs: list[Run]) -> None:
    """Appends what differs to clashing labels, `[limit 5]`, `[2026-12-01 10:02:03]`, until each is unique."""
    by_label: dict[str, list[Run]] = {}
    for run in runs:
        by_label.setdefault(run.label, []).append(run)
    for label, group in by_label.items():
        if len(group) < 2:
            continue
        extras: list[list[str]] = [[] for _ in group]
        for describe in RUN_DIFFERENCES:
            texts = [describe(r) for r in group]
            if len(set(texts)) < 2:
                continue
            for extra, text in zip(extras, texts, strict=True):
                extra.append(text)
            if len({tuple(e) for e in extras}) == len(group):
                break
        for run, extra in zip(group, extras, strict=True):
            run.label = f"{label} [{', '.join(extra)}]"


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
    for an added `adapter=` or `lora=` argument. Of several such bases (say a full run and a
    `--limit` run), the first with the same `--limit` and data is taken, else the first.
    """
    if paired:
        if len(runs) < 2:
            found = "; ".join(r.label for r in runs)
            raise MMR3Error(f"--paired compares the first run with every other, but found one run ({found}); give two")
        return [Pair(runs[0], other, "--paired") for other in runs[1:]]
    pairs = []
    for other in runs:
        args = parse_model_args(other.model_args)
        added = [name for name in ADAPTER_ARGS if args.get(name)]
        if not added:
            continue
        plain = {k: v for k, v in args.items() if k not in ADAPTER_ARGS}
        bases = [
            base
            for base in runs
            if base is not other
            and (base.model, base.gen_kwargs) == (other.model, other.gen_kwargs)
            and parse_model_args(base.model_args) == plain
        ]
        if bases:
            base = next((b for b in bases if (b.limit, b.data) == (other.limit, other.data)), bases[0])
            pairs.append(Pair(base, other, "+".join(added)))
    return pairs


def samples_payloads(path: Path, task_name: str | None = None) -> list[dict]:
    """The checked payloads of one All-protocol samples file; `task_name`: the task it must hold."""
    found = read_payloads([str(path)])
    if task_name is not None and set(found) != {task_name}:
        raise ReportInputError(
            f"{path}: holds samples of {', '.join(sorted(found))}, but sits next to its results file as the samples "
            f"of {task_name}; was it renamed or copied from another run? Put the run's own samples file back"
        )
    if len(found) > 1:
        raise ReportInputError(f"{path}: samples of several tasks ({', '.join(sorted(found))}); give one task's file")
    [(name, payloads)] = found.items()
    if taskdefs_by_name(name).protocol != PAIRED_PROTOCOL:
        raise ReportInputError(f"{path}: samples of {name}; the paired comparison reads All-protocol tasks")
    return payloads


def samples_group_scores(
    path: Path, embedder: metrics.Embedder, task_name: str | None = None
) -> dict[str, metrics.GroupScore]:
    """Per-group Acc, S_GT, Con and S_C of one All-protocol samples file, scored as `mmr3 score` does."""
    return payload_group_scores(samples_payloads(path, task_name), embedder)


def payload_group_scores(payloads: list[dict], embedder: metrics.Embedder) -> dict[str, metrics.GroupScore]:
    from mmr3_tasks import hooks

    responses = [r for p in payloads for r in hooks.payload_responses(p)]
    return metrics.group_scores(responses, embedder, clean_context=payloads[0]["task"] == "context")


def compare_pairs(
    pairs: list[Pair],
    *,
    n_resamples: int = metrics.BOOTSTRAP_RESAMPLES,
    seed: int = metrics.BOOTSTRAP_SEED,
    embedder: metrics.Embedder | None = None,
    problems: list[ReportInputError] | None = None,
) -> list[dict]:
    """Each pair's deltas per task and headline metric, with paired intervals where samples allow.

    With both runs' samples files, a task's delta is mean(other) − mean(base) over the groups both
    scored, with a paired group-bootstrap interval; groups only one run scored are counted in the
    notes, never used. Without them, the delta is the difference of the results files' numbers,
    without an interval. Runs that scored different data get no delta, and a note. An unusable
    samples file raises, or, given `problems`, is added to it and the task is compared as if it
    had none.
    """
    read: dict[Path, list[dict] | None] = {}
    scored: dict[Path, dict[str, metrics.GroupScore]] = {}
    scoring_model = getattr(embedder, "name", None) or embedding.requested_embedding_model()

    def groups_of(path: Path, task_name: str, embed: bool = True) -> dict[str, metrics.GroupScore] | None:
        """The file's group scores (with `embed`; else {}), or None when it is unusable."""
        nonlocal embedder
        if path not in read:
            try:
                read[path] = samples_payloads(path, task_name)
            except ReportInputError as err:
                if problems is None:
                    raise
                problems.append(err)
                read[path] = None
        if read[path] is None:
            return None
        if not embed:
            return {}
        if path not in scored:
            embedder = embedder or embedding.get_embedder(scoring_model)
            scored[path] = payload_group_scores(read[path], embedder)
        return scored[path]

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

    if all(samples):  # both files are read and checked before either is embedded
        usable = [groups_of(path, name, embed=False) is not None for path, name in zip(samples, names, strict=True)]
        for i, run in enumerate((base, other)):
            if not usable[i]:  # compared as without samples; entry["samples"] still names the file
                samples[i] = None
                entry["notes"].append(f"{short}: {run.label}'s samples file is unusable (named on stderr)")
    if all(samples):
        gb, go = (groups_of(path, name) for path, name in zip(samples, names, strict=True))
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

SAMPLES_HINT = "rerun lmms-eval with --log_samples (only our process_results writes this payload)"


def taskdefs_by_name(name: str) -> taskdefs.TaskDef:
    return next(d for d in taskdefs.TASK_DEFS if d.name == name)


def payload_task(payload: dict) -> str:
    """The lmms-eval task that wrote a (checked) payload: its `task`, its protocol and its data.

    lmms-eval's sample lines do not name their task, and file names can change, so the payload
    says: `responses` (a list) is the Sampling protocol, `response` the All protocol, and a
    `demo:` data fingerprint the demo set's `mmr3_mini_*` tasks.
    """
    protocol = "sampling" if "responses" in payload else "all"
    source = "demo" if str(payload.get("data") or "").startswith("demo:") else "benchmark"
    for d in taskdefs.TASK_DEFS:
        if (d.task, d.protocol, d.data) == (payload["task"], protocol, source):
            return d.name
    raise KeyError((payload["task"], protocol, source))


def check_payload(payload: object, where: str) -> str:
    """Checks one sample line's payload (what `hooks.process_results` writes); returns its task name."""
    if not isinstance(payload, dict):
        found = "nothing" if payload is None else _kind(payload)
        raise ReportInputError(
            f"{where}: no MM-R³ payload under 'acc' (found {found}); not a samples file of an mmr3 task: {SAMPLES_HINT}"
        )
    missing = [k for k in ("id", "group_id", "task", "answers") if k not in payload]
    if "response" not in payload and "responses" not in payload:
        missing.append("response (or responses)")
    if missing:
        raise ReportInputError(f"{where}: the payload under 'acc' lacks {', '.join(missing)}; {SAMPLES_HINT}")

    def bad(key: str, expected: str) -> ReportInputError:
        return ReportInputError(f"{where}: '{key}' is {_kind(payload[key])}, not {expected}; {SAMPLES_HINT}")

    for key in ("id", "group_id"):
        if not isinstance(payload[key], str) or not payload[key]:
            raise bad(key, "a non-empty string")
    if payload["task"] not in schema.TASKS:
        raise bad("task", f"one of {', '.join(schema.TASKS)}")
    answers = payload["answers"]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise bad("answers", "a non-empty list of strings")
    if "response" in payload and "responses" in payload:
        raise ReportInputError(f"{where}: the payload has both 'response' and 'responses'; {SAMPLES_HINT}")
    if "responses" in payload:
        texts = payload["responses"]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise bad("responses", "the Sampling protocol's list of response strings")
    else:
        if not isinstance(payload["response"], str):
            raise ReportInputError(
                f"{where}: 'response' is {_kind(payload['response'])}, not a string: the model gave no text for "
                f'this row (an empty answer is ""); fix the model wrapper and rerun lmms-eval'
            )
        for key, kind in (("variant", str), ("group_size", int)):
            if key not in payload:
                raise ReportInputError(f"{where}: the payload under 'acc' lacks {key}; {SAMPLES_HINT}")
            if not isinstance(payload[key], kind) or isinstance(payload[key], bool):
                raise bad(key, "a string" if kind is str else "an integer")
    if not isinstance(payload.get("kinds", {}), dict):
        raise bad("kinds", "a mapping")
    if not isinstance(payload.get("data", ""), str):
        raise bad("data", "a data fingerprint string")
    try:
        return payload_task(payload)
    except KeyError:
        raise ReportInputError(
            f"{where}: a Sampling-protocol payload ('responses') on the demo set ({payload['data']}); no MM-R³ "
            f"task scores that: {SAMPLES_HINT}"
        ) from None


def sample_lines(path: Path):
    """(line number, sample) for each non-blank line of an lmms-eval samples file."""
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ReportInputError(f"{path}: a folder; give the *_samples_mmr3_*.jsonl files in it") from None
    except OSError as err:
        raise ReportInputError(f"{path}: cannot be read ({err.strerror}); give a *_samples_mmr3_*.jsonl") from None
    lines = raw.split(b"\n")
    if not raw.strip():
        raise ReportInputError(f"{path}: empty, no sample lines; lmms-eval writes one per query: rerun it")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ReportInputError(
                f"{path}:{n}: not UTF-8 text (byte {line[err.start]:#04x} at column {err.start + 1}); "
                "is it an lmms-eval samples file?"
            ) from None
        try:
            sample = json.loads(text)
        except json.JSONDecodeError as err:
            if n == len(lines):  # lmms-eval ends every line with a newline: this one was cut short
                raise ReportInputError(
                    f"{path}:{n}: the last line is cut short (truncated file): lmms-eval was interrupted while "
                    "writing it, or the copy is incomplete; rerun the evaluation or copy the file again"
                ) from None
            raise ReportInputError(
                f"{path}:{n}: not JSON ({err.msg}, column {err.colno}); is it an lmms-eval samples file?"
            ) from None
        if not isinstance(sample, dict):
            raise ReportInputError(f"{path}:{n}: {_kind(sample)} where lmms-eval writes one sample object per line")
        yield n, sample


def read_payloads(paths: list[str]) -> dict[str, list[dict]]:
    """lmms-eval task name -> the payloads our tasks log under `acc` in lmms-eval's samples files.

    The task comes from each payload (`payload_task`), never from the file name, so a renamed file
    still scores as what it is, and one file may hold several tasks. Every line is checked
    (`check_payload`); a row id seen twice for one task, or two data sets in one task, is an
    error naming both lines: lmms-eval writes each row once, so they are two runs' files given
    together.
    """
    out: dict[str, list[dict]] = {}
    first: dict[tuple[str, str], str] = {}  # (task, id) -> where it was first seen
    data: dict[str, tuple[str, str]] = {}  # task -> (data fingerprint, where first seen)
    for path in map(Path, paths):
        for n, sample in sample_lines(path):
            where = f"{path}:{n}"
            payload = sample.get("acc")
            task_name = check_payload(payload, where)
            seen = first.setdefault((task_name, payload["id"]), where)
            if seen != where:
                raise ReportInputError(
                    f"{where}: row {payload['id']!r} of {task_name} again (first at {seen}); lmms-eval writes each "
                    "row once: are two runs' samples files given together?"
                )
            fingerprint = payload.get("data", "")
            known, at = data.setdefault(task_name, (fingerprint, where))
            if fingerprint != known:
                raise ReportInputError(
                    f"{where}: {task_name} on data {fingerprint or 'unknown'}, but {at} on {known or 'unknown'}; "
                    "give the samples of one run"
                )
            out.setdefault(task_name, []).append(payload)
    return out


def score_samples(paths: list[str], n_resamples: int | None = None) -> dict[str, dict]:
    """Every metric of every task in the samples files, flat keys as in the results JSON."""
    from mmr3_tasks import hooks

    kwargs = {} if n_resamples is None else {"n_resamples": n_resamples}
    scored = {}
    for task_name, payloads in sorted(read_payloads(paths).items()):
        report = hooks.score_payloads(payloads, **kwargs)
        d = taskdefs_by_name(task_name)
        scored[task_name] = {
            name: hooks.metric_value(report, name) for name in taskdefs.metric_names(d.task, d.protocol)
        }
    return scored


def same_value(ours: object, theirs: object, tol: float) -> bool:
    """Equal, numbers within `tol` (lists element by element); a bool is not a number here."""

    def number(v: object) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    if isinstance(ours, bool) or isinstance(theirs, bool):
        return ours is theirs
    if number(ours) and number(theirs):
        return abs(ours - theirs) <= tol
    if isinstance(ours, list) and isinstance(theirs, list):
        return len(ours) == len(theirs) and all(same_value(a, b, tol) for a, b in zip(ours, theirs, strict=True))
    return ours == theirs


def compare(scored: dict[str, dict], results_path: Path, tol: float = 1e-6) -> list[str]:
    """Every difference between recomputed scores and an lmms-eval results file (empty = identical).

    A task the samples hold but the results file lacks, and a metric it lacks, are differences too.
    An unreadable results file raises `ReportInputError`.
    """
    results = read_results_file(results_path)["results"]
    diffs = []
    for task, values in scored.items():
        theirs = results.get(task)
        if theirs is None:
            diffs.append(f"{task}: in the samples but not in the results file; is it the results file of this run?")
            continue
        for name, ours in values.items():
            key = f"{name},none"
            if key not in theirs:
                diffs.append(f"{task} {name}: samples give {ours!r}, the results file has no {key!r}")
                continue
            if not same_value(ours, theirs[key], tol):
                hint = f" (score with --embedding-model {theirs[key]})" if name == "embedding_model" else ""
                diffs.append(f"{task} {name}: samples give {ours!r}, results file has {theirs[key]!r}{hint}")
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
    s.add_argument("samples", nargs="+", help="lmms-eval samples files (any name: each line says its task)")
    s.add_argument("--check", type=Path, metavar="RESULTS_JSON", help="compare with an lmms-eval results file")
    s.add_argument("--json", type=Path, metavar="OUT", help="write the scores as JSON")
    s.add_argument("--embedding-model", help="hub id or folder (default: $MMR3_EMBEDDING_MODEL or all-MiniLM-L6-v2)")
    s.set_defaults(func=run_score)


def print_problems(command: str, problems: list[ReportInputError]) -> None:
    for err in problems:
        print(f"mmr3 {command}: error: {err}", file=sys.stderr)


def run_report(args: argparse.Namespace) -> int:
    """The tables of every good input; each bad one is named on stderr, and then the exit code is 1."""
    runs, problems = read_inputs(args.results)
    if not runs and len(problems) == 1:
        raise MMR3Error(str(problems[0])) from problems[0]
    print_problems("report", problems)
    if not runs:
        raise MMR3Error(f"nothing to report: none of the {len(args.results)} inputs holds usable MM-R³ results")
    runs = name_runs(runs, args.name)
    with_paper = not args.no_paper
    pair_problems: list[ReportInputError] = []
    comparisons = compare_pairs(find_pairs(runs, args.paired), problems=pair_problems)
    if args.format == "json":
        data = {r.label: {f"{t}/{p}": v for (t, p), v in r.scores.items()} | {"demo": r.demo} for r in runs}
        if comparisons:
            if PAIRED_KEY in data:
                raise MMR3Error(f"a run is labelled {PAIRED_KEY!r}, the comparison's JSON key; rename it with --name")
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
    print_problems("report", pair_problems)
    return 1 if problems or pair_problems else 0


def run_score(args: argparse.Namespace) -> int:
    """Scores the samples; with --check, every difference from the results file is printed and exits 1."""
    import os

    if args.check:
        read_results_file(args.check)  # an unusable results file fails before the scoring, not after
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
        ours = {name for name in read_results_file(args.check)["results"] if task_of(name)}
        unchecked = sorted(ours - set(scored))
        if unchecked:
            print(f"not checked (no samples given for them): {', '.join(unchecked)}")
        if diffs:
            n = len(diffs)
            head = f"mmr3 score: mismatch: the samples do not reproduce {args.check} ({n} difference{'s' * (n > 1)}):"
            print("\n".join([head, *(f"  {d}" for d in diffs)]), file=sys.stderr)
            return 1
        print(f"identical to {args.check}")
    return 0
