"""MM-R³ for lmms-eval: tasks, metrics, dataset builder, reports and the `mmr3` CLI.

What lives here:

- the tasks: `taskdefs` (every task, and the YAML of `tasks/` generated from it), `hooks` (the
  functions the YAMLs name), `lmms_plugin` (how lmms-eval finds `tasks/` with no flag);
- the data: `schema` (the one row schema), `data` (where a build is, its manifest check, bad rows),
  `imagecheck`, `builder/` (`mmr3 build`), `demo_set/` (the bundled demo set, built by `builder/demo_set.py`);
- the scores: `metrics` (Acc, S_GT, Con, S_C and more; pure, no I/O), `embedding` (the sentence
  encoder), `paper/` (the paper's published numbers), `report/` (`mmr3 report`, `mmr3 score`);
- the command: `cli` (`mmr3`, its subcommands come from entry points), `info_cli` (`mmr3 info`),
  `errors` (MMR3Error, what every expected failure derives from);
- `models/`: an empty model map, only for lmms-eval's legacy `LMMS_EVAL_PLUGINS=mmr3_tasks`.

Imports: mmr3_tasks never imports mmr3_adapters (which builds on it; its `mmr3` subcommands come
through the `mmr3.commands` entry point). Only `lmms_plugin` imports lmms_eval, inside a function,
so metrics, builder and reports import and test without it. tests/test_imports.py checks both.
"""

__version__ = "0.1.0"
