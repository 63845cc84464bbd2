"""`mmr3 report`: lmms-eval results -> the paper's tables and figures, next to the paper's numbers.

Each bad input is named on stderr and the good ones are still reported; a paired comparison
(docs/compare.md) comes first when a run has its base among the inputs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mmr3_tasks.errors import MMR3Error
from mmr3_tasks.report.errors import ReportInputError
from mmr3_tasks.report.figures import plot_figures
from mmr3_tasks.report.paired import PAIRED_KEY, compare_pairs, find_pairs, paired_json, paired_table
from mmr3_tasks.report.runs import Run, name_runs, read_inputs
from mmr3_tasks.report.tables import (
    Table,
    beyond_table,
    breakdown_tables,
    main_tables,
    render_csv,
    render_markdown,
    summary_table,
)

DEMO_NOTE = "demo set: a smoke test of the pipeline, not comparable to the paper's numbers"


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
