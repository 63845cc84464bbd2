"""lmms-eval results files -> runs: one model's MM-R³ numbers from one lmms-eval invocation.

`read_inputs` reads the path arguments of `mmr3 report` (results files or `--output_path`
folders), merges the files of one invocation into one `Run` and gives same-label runs what
differs (`_disambiguate`); `samples_files` finds the `--log_samples` files written with a
results file.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mmr3_tasks import taskdefs
from mmr3_tasks.errors import MMR3Error
from mmr3_tasks.report.errors import ReportInputError, json_kind

logger = logging.getLogger("mmr3")

RESULTS_SUFFIX = "_results.json"


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
                f"{path}: results[{name!r}] is {json_kind(values)}, not a mapping of metrics; the file was "
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


COUNT_METRICS = frozenset(
    {"responses", "groups", "groups_complete", "groups_incomplete", "groups_with_pairs", "pairs"}
    | {"empty_responses", "duplicate_responses"}
)
TEXT_METRICS = frozenset({"embedding_model", "data_fingerprint"})


def checked_scores(values: dict, task: str, protocol: str, where: str) -> dict[str, object]:
    """A task's metrics (`name,filter` -> value) as name -> value, each of our metrics checked.

    A results file edited by hand or damaged in transit can hold any JSON: a rate of 250, NaN, a
    string. Printed as they are, they would look like results. Rates must lie in [0, 100], S_GT
    and S_C (mean cosines x 100) in [-100, 100], counts be whole numbers, intervals two numbers;
    a null is a metric with nothing to average and stays empty. lmms-eval's own keys
    (`*_stderr`, "N/A") are not ours and pass through.
    """
    ours = set(taskdefs.metric_names(task, protocol))
    scores = {}
    for key, value in values.items():
        if "," not in key:
            continue
        name = key.split(",")[0]
        scores[name] = value
        problem = _metric_problem(name, value) if name in ours else None
        if problem:
            raise ReportInputError(
                f"{where}[{key!r}] is {value!r:.60}: {problem}; this is not what an mmr3 task writes, so the file was "
                "edited or damaged: rerun the evaluation, or recompute it from its samples (mmr3 score)"
            )
    return scores


def _metric_problem(name: str, value) -> str | None:
    def number(x) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)

    if name in TEXT_METRICS:
        return None if isinstance(value, str) else "not a string"
    if name in COUNT_METRICS:
        return None if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else "not a count"
    if value is None:
        return None
    if name.endswith("_ci95"):
        ok = isinstance(value, list) and len(value) == 2 and all(number(x) for x in value) and value[0] <= value[1]
        return None if ok else "not an interval [low, high]"
    low = -100.0 if name.split("_")[0] == "s" else 0.0  # s_gt, s_c and their per-kind keys: mean cosines
    # The cosine of a text with itself is 1 only up to float32 rounding: S_GT / S_C may read 100.00001.
    slack = 1e-3 if low < 0 else 1e-9
    if not number(value) or not low - slack <= value <= 100 + slack:
        return f"not a number in [{low:g}, 100]"
    return None


def new_run(results: dict, path: Path, path_index: int, demo: bool = False) -> Run:
    """An empty run with the model and settings one results file records (see `file_runs`)."""
    config = results["config"]
    return Run(
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


def file_runs(results: dict, path: Path, path_index: int) -> list[Run]:
    """The runs one results file holds: one, or two for `--tasks mmr3,mmr3_mini` (the demo set apart).

    Where lmms-eval records each setting: `config.model`, `config.model_args` (as given),
    `config.gen_kwargs` (parsed into a dict; "" when unset), `config.limit` (a float; null when
    unset), `date` (the invocation's start; its results and samples files are named after it) and,
    per task, our `data_fingerprint` metric.
    """
    samples = samples_files(path)
    runs: dict[bool, Run] = {}  # demo set or not: mmr3_mini_rephrase and mmr3_rephrase fill the same cells
    for task_name, values in results["results"].items():
        parsed = task_of(task_name)
        if parsed is None:
            continue
        task, protocol, demo = parsed
        run = runs.get(demo)
        if run is None:
            run = runs[demo] = new_run(results, path, path_index, demo)
        run.scores[(task, protocol)] = checked_scores(values, task, protocol, f"{path}: results[{task_name!r}]")
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
    for index, files, repeated in argument_files(paths, problems, "mmr3 report"):
        found, bad, other_tasks = repeated, 0, set()
        for path in files:
            try:
                results = read_results_file(path)
                new = file_runs(results, path, index)
            except ReportInputError as err:
                problems.append(err)
                bad += 1
                continue
            found += bool(new)
            if not new:
                other_tasks |= set(results["results"])
            for run in new:
                _merge_or_add(runs, run)
        if not found and not bad:  # every file read, none with an MM-R³ task
            if Path(paths[index]).is_file():
                what = f"{paths[index]}: no MM-R³ task in it"
            else:
                what = f"{paths[index]}: none of its {len(files) + repeated} results files holds an MM-R³ task"
            problems.append(ReportInputError(f"{what} ({_holds(other_tasks)}); {MMR3_RUN_HINT}"))
    _disambiguate(runs)
    return runs, problems


def argument_files(
    paths: list[str], problems: list[ReportInputError], command: str
) -> Iterator[tuple[int, list[Path], int]]:
    """For each path argument that names results files: (its index, those not named by an earlier
    argument, how many it names again).

    A file and its folder, or one file twice, is read once: the repeat is logged, not read. An
    argument that names no results file goes to `problems`.
    """
    seen: dict[Path, int] = {}  # resolved file -> the argument it was first read from
    for index, path_arg in enumerate(paths):
        try:
            files = results_files(path_arg)
        except ReportInputError as err:
            problems.append(err)
            continue
        new = []
        for path in files:
            first = seen.setdefault(path.resolve(), index)
            if first == index:
                new.append(path)
            else:
                logger.warning("%s: %s is given again (first under %s): read once", command, path, paths[first])
        yield index, new, len(files) - len(new)


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
