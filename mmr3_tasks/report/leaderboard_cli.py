"""`mmr3 leaderboard`: lmms-eval results -> one row per run, MM-R³ next to every other task (docs/leaderboard.md).

Each bad input is named on stderr in one line and the good ones are still shown; the exit code is
then 1, as for `mmr3 report`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmr3_tasks.errors import MMR3Error

FORMATS = ("markdown", "csv", "json", "html")
FIGURE_NAME = "leaderboard_accuracy_vs_consistency.png"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="lmms-eval results -> one row per run: MM-R³ Con / S_C / Acc next to every other task's headline",
    )
    p.add_argument("results", nargs="+", help="lmms-eval *_results.json files or --output_path folders")
    p.add_argument("--name", action="append", help="label for each run, in order (default: model and checkpoint)")
    p.add_argument("--format", choices=FORMATS, default="markdown", help="what to print or write to --out")
    p.add_argument("--out", type=Path, help="write it here instead of printing it")
    p.add_argument("--html", type=Path, metavar="FILE", help="also write the HTML page here")
    p.add_argument("--sort", metavar="COLUMN", help="sort the rows by this column (header or key, e.g. 'Mean Con')")
    order = p.add_mutually_exclusive_group()
    order.add_argument("--ascending", action="store_true", help="sort ascending (default: best first)")
    order.add_argument("--descending", action="store_true", help="sort descending (default: best first)")
    p.add_argument("--plots", type=Path, metavar="DIR", help="also write the figures (PNG) into DIR")
    p.add_argument("--no-paper", action="store_true", help="leave the paper's models out of the figures")
    p.add_argument("--top", type=int, default=5, metavar="N", help="inconsistency browser: groups per task (5)")
    p.add_argument(
        "--data", metavar="DIR", help="inconsistency browser: the build the runs scored (default: $MMR3_DATA)"
    )
    p.add_argument("--no-browser", action="store_true", help="leave the inconsistency browser out of the page")
    p.set_defaults(func=run_leaderboard)


def run_leaderboard(args: argparse.Namespace) -> int:
    from mmr3_tasks.report import leaderboard
    from mmr3_tasks.report.cli import print_problems
    from mmr3_tasks.report.runs import name_runs

    if args.top < 0:
        raise MMR3Error(f"--top {args.top}: give a number of groups, 0 or more")
    entries, problems = leaderboard.read_entries(args.results)
    if not entries and len(problems) == 1:
        raise MMR3Error(str(problems[0])) from problems[0]
    print_problems("leaderboard", problems)
    if not entries:
        raise MMR3Error(f"nothing to show: none of the {len(args.results)} inputs holds usable lmms-eval results")
    name_runs([e.run for e in entries], args.name)
    board = leaderboard.build_board(entries)
    if args.sort:
        descending = True if args.descending else False if args.ascending else None
        board = leaderboard.sort_board(board, args.sort, descending)
    elif args.ascending or args.descending:
        raise MMR3Error("--ascending / --descending need --sort COLUMN")
    with_paper = not args.no_paper
    figures = None
    if args.format == "html" or args.html or args.plots:
        figures = page_figures(board, entries, with_paper)
    if args.format == "html" or args.html:
        page = html_page(board, entries, figures, args)
    if args.format == "html":
        text = page
    else:
        render = {"markdown": leaderboard.render_markdown, "csv": leaderboard.render_csv}
        text = render.get(args.format, leaderboard.render_json)(board)
    if args.out:
        write(args.out, text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if args.html:
        write(args.html, page)
    if args.plots:
        args.plots.mkdir(parents=True, exist_ok=True)
        for fig in figures:
            path = args.plots / fig.name
            path.write_bytes(fig.png)
            print(f"wrote {path}", file=sys.stderr)
    return 1 if problems else 0


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)  # stdout may be the table itself


def page_figures(board, entries, with_paper: bool) -> list:
    from mmr3_tasks.report import figures
    from mmr3_tasks.report.leaderboard_html import PageFigure, figure_png

    out = [
        PageFigure(
            FIGURE_NAME,
            "Accuracy elsewhere against MM-R³ consistency, one point per run (x: Mean Con of the three tasks with "
            "its 95% interval; y: the task's headline, ±1.96 lmms-eval stderr where given). First panel: MM-R³'s "
            "own Mean Acc, with the paper's models, which the paper scores on no other task.",
            figure_png(figures.leaderboard_figure(board, with_paper)),
        )
    ]
    runs = [e.run for e in entries if e.run.scores]
    if runs:
        out.append(
            PageFigure(
                "accuracy_vs_consistency.png",
                "MM-R³ Acc against Con per task (All protocol), each run with its 95% intervals; grey: the "
                "paper's models.",
                figure_png(figures.accuracy_consistency_figure(runs, with_paper)),
            )
        )
    return out


def html_page(board, entries, page_figures: list, args: argparse.Namespace) -> str:
    from mmr3_tasks.report.leaderboard_html import render_html

    browsers = []
    if not args.no_browser:
        from mmr3_tasks.report.inconsistency import browser_section

        for entry in entries:
            if entry.run.scores:
                browsers.append((entry.run.label, browser_section(entry.run, args.top, args.data)))
    return render_html(board, page_figures, browsers)
