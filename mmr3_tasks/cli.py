"""The `mmr3` command. Each subcommand lives in its own module and registers itself here.

Subcommands come from the `mmr3.commands` entry-point group, so `mmr3_adapters` can add its own
(`demo`, `train`) without `mmr3_tasks` importing it. A subcommand module defines
`register(subparsers)`, which adds its parser and sets `func`; it keeps heavy imports inside
`func` so that `mmr3 --help` stays instant.
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
