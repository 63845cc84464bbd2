"""The task YAMLs lmms-eval reads: data here, no code.

`mmr3_*.yaml` are generated from `mmr3_tasks/taskdefs.py` (edit that, never the YAML);
`_mmr3_template_yaml` is their shared template (no `.yaml` suffix, so lmms-eval does not index it
as a task); `locators/` holds each task's one-row locator, which `hooks.load_docs` replaces with
the rows of the data build (docs/tasks.md, "Where the data is read from"). lmms-eval finds this
folder through `mmr3_tasks.lmms_plugin` (docs/registration.md). It is a package only so that
lmms-eval's `LMMS_EVAL_PLUGINS=mmr3_tasks` finds `mmr3_tasks.tasks`; it imports nothing.
"""
