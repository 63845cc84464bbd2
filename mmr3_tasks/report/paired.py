"""The paired comparison: each run against its base (Table 6's layout), with paired 95% intervals.

`find_pairs` picks the pairs (adapted runs and their base, or `--paired`), `compare_pairs` scores
both runs' samples files group by group, and `paired_table` / `paired_json` lay the deltas out
next to the paper's Table 6 (docs/compare.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmr3_tasks import embedding, metrics, schema
from mmr3_tasks.errors import MMR3Error
from mmr3_tasks.report.errors import ReportInputError
from mmr3_tasks.report.runs import ADAPTER_ARGS, Run, parse_model_args
from mmr3_tasks.report.samples import read_payloads, taskdefs_by_name
from mmr3_tasks.report.tables import METRIC_LABELS, TASK_SHORT, Table

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
