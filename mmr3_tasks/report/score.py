"""`mmr3 score`: every MM-R³ number recomputed from lmms-eval `--log_samples` files alone.

With `--check`, the scores are compared with an lmms-eval results file, and every difference is
printed (docs/metrics.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mmr3_tasks import taskdefs
from mmr3_tasks.report.runs import read_results_file, task_of
from mmr3_tasks.report.samples import read_payloads, taskdefs_by_name
from mmr3_tasks.report.tables import Table, render_markdown


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("score", help="recompute every MM-R³ number from lmms-eval --log_samples files alone")
    s.add_argument("samples", nargs="+", help="lmms-eval samples files (any name: each line says its task)")
    s.add_argument("--check", type=Path, metavar="RESULTS_JSON", help="compare with an lmms-eval results file")
    s.add_argument("--json", type=Path, metavar="OUT", help="write the scores as JSON")
    s.add_argument("--embedding-model", help="hub id or folder (default: $MMR3_EMBEDDING_MODEL or all-MiniLM-L6-v2)")
    s.set_defaults(func=run_score)


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
