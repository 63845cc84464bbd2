"""Makes `lmms-eval --tasks mmr3_*` work right after `pip install`, with no flag.

lmms-eval 0.7.3 has no task entry point, and its LMMS_EVAL_PLUGINS adds plugin task folders only
after the task index is built (docs/registration.md). What it does have is the `lmms_eval.models`
entry-point group, loaded when `lmms_eval.models` is imported: `lmms-eval` / `lmms-eval eval` do
that before they build their TaskManager. Our entry point uses that moment for one small side
effect: every TaskManager that indexes lmms-eval's own tasks also indexes ours. It registers no
model (mmr3_adapters does). `lmms-eval tasks` never imports `lmms_eval.models`, so it needs
`--include-path` (docs/registration.md). This is the only module of mmr3_tasks that imports lmms_eval.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
_PATCHED = "_mmr3_tasks_registered"


def tasks_dir() -> str:
    """The folder of our task YAMLs, as `--include_path` takes it."""
    return str(TASKS_DIR)


def register_tasks() -> bool:
    """Adds our task folder to every default-indexing lmms-eval TaskManager. Idempotent.

    Returns False when this lmms-eval has no TaskManager.initialize_tasks to extend; `--include_path`
    still works there.
    """
    try:
        from lmms_eval.tasks import TaskManager
    except ImportError:
        return False
    original = getattr(TaskManager, "initialize_tasks", None)
    if original is None:
        return False
    if getattr(original, _PATCHED, False):
        return True

    @functools.wraps(original)
    def initialize_tasks(self, include_path=None, include_defaults=True):
        if include_defaults:
            include_path = _with_our_tasks(include_path)
        return original(self, include_path=include_path, include_defaults=include_defaults)

    setattr(initialize_tasks, _PATCHED, True)
    TaskManager.initialize_tasks = initialize_tasks
    return True


def _with_our_tasks(include_path):
    paths = [] if include_path is None else [include_path] if isinstance(include_path, str) else list(include_path)
    ours = os.path.realpath(TASKS_DIR)
    for p in paths:
        given = os.path.realpath(p)
        if ours == given or ours.startswith(given.rstrip(os.sep) + os.sep):
            return include_path  # the user passed our folder (or a parent of it): index it once
    return [*paths, str(TASKS_DIR)]


def entry_point() -> list:
    """The `lmms_eval.models` entry point: registers our tasks, contributes no model manifest.

    Never raises: lmms-eval stops loading every later plugin when one entry point fails.
    """
    try:
        register_tasks()
    except Exception as err:  # a plugin must not take lmms-eval down with it; --include_path still works
        import warnings

        warnings.warn(f"mmr3_tasks could not register its tasks ({err}); pass --include_path {TASKS_DIR}", stacklevel=1)
    return []
