"""The `mmr3` command. Each subcommand lives in its own module and registers itself here.

Subcommands come from the `mmr3.commands` entry-point group, so `mmr3_adapters` can add its own
(`demo`, `train-adapter`) without `mmr3_tasks` importing it. A subcommand module defines
`register(subparsers)`, which adds its parser and sets `func`; it keeps heavy imports inside
`func` so that `mmr3 --help` stays instant.

One error path for every subcommand: an `errors.MMR3Error` (a bad input the user can fix) is
printed as `mmr3 <command>: error: <message>` and exits 1; `--debug` (on every subcommand) shows
its traceback instead. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

COMMAND_GROUP = "mmr3.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmr3",
        description="MM-R³ for lmms-eval: build the benchmark, run the demo, read results as the paper's tables.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda ep: ep.name):
        ep.load()(sub)
    for command in sub.choices.values():
        if not any("--debug" in action.option_strings for action in command._actions):
            command.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args.command, args.func, args)


def run_command(command: str, func, args: argparse.Namespace) -> int:
    """`func(args)`, with an MMR3Error printed as `mmr3 <command>: error: ...` and exit code 1
    (the traceback with `--debug`). Also the entry of commands run as `python -m` under accelerate."""
    from mmr3_tasks.errors import MMR3Error

    try:
        return int(func(args) or 0)
    except MMR3Error as err:
        if args.debug:
            raise
        print(f"mmr3 {command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
