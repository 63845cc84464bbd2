"""tools/mutation/run.py: how it names mutants, matches equivalent entries and counts the killed share.

The figures in tools/mutation/README.md come from these pieces; mutmut itself is not needed here
(the script imports it only to read a run's results).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

RUN_PY = Path(__file__).resolve().parent.parent / "tools" / "mutation" / "run.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("mutation_run", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_a_mutant_name_gives_its_function_or_method(tool):
    assert tool.function_of("mmr3_tasks.metrics.x__breakdown__mutmut_17") == "mmr3_tasks.metrics._breakdown"
    assert tool.function_of("mmr3_tasks.hooks.x___getattr____mutmut_3") == "mmr3_tasks.hooks.__getattr__"
    assert (
        tool.function_of("mmr3_tasks.builder.selection.xǁ_Cursorǁtake__mutmut_4")
        == "mmr3_tasks.builder.selection._Cursor.take"
    )


def test_an_equivalent_entry_matches_on_the_changed_lines_whatever_their_spacing(tool):
    diff = (
        "--- mmr3_tasks/hooks.py\n+++ mmr3_tasks/hooks.py\n@@ -1,3 +1,3 @@\n def f():\n"
        "-        return a > b\n+        return a >= b\n     pass\n"
    )
    assert tool.changed_lines(diff) == "- return a > b\n+ return a >= b"
    entry = "\n-   return a > b\n+return a >= b  \n"
    assert tool.normalized(entry) == tool.changed_lines(diff)


def test_the_killed_share_leaves_out_listed_equivalents_and_mutants_not_run(tool):
    target = tool.Target("m", ["m.py"], ["tests/test_m.py"])
    done = tool.Outcome(target, counts={"killed": 90, "survived": 10})
    done.equivalent = [("m: x_f__mutmut_1", "why")] * 4
    assert done.share == pytest.approx(100 * 90 / 96)
    assert done.verdict(90.0) == "met"
    partial = tool.Outcome(target, counts={"killed": 45, "survived": 5, "not checked": 50})
    assert partial.unchecked == 50
    assert partial.share == pytest.approx(90.0)
    assert partial.verdict(90.0) == "met so far (50 not run yet)"
    assert partial.verdict(95.0) == "not met so far (50 not run yet)"


def test_the_figures_table_has_a_row_per_module_with_its_counts(tool):
    target = tool.Target("hooks", ["mmr3_tasks/hooks.py"], [])
    outcome = tool.Outcome(target, counts={"killed": 363, "survived": 3}, measured="2026-12-02")
    outcome.equivalent = [("x", "why")] * 3
    row = tool.figures_table([outcome], 90.0).splitlines()[2]
    assert row == "| hooks | `mmr3_tasks/hooks.py` | 366 | 363 | 3 | 0 | 100.0% | met | 2026-12-02 |"


def test_the_equivalents_file_holds_function_change_and_reason_for_each_entry(tool):
    entries = tool.load_equivalent()
    assert entries, "tools/mutation/equivalent.toml is empty"
    for entry in entries:
        assert entry["function"].startswith(("mmr3_tasks.", "mmr3_adapters.")), entry
        lines = tool.normalized(entry["change"]).splitlines()
        assert lines and all(line[0] in "-+" for line in lines), entry
        assert entry["why"].strip(), entry


def test_every_module_names_source_and_test_files_that_exist(tool):
    root = RUN_PY.parents[2]
    for target in tool.load_targets():
        for rel in [*target.files, *target.tests]:
            assert (root / rel).is_file(), f"targets.toml [{target.name}]: {rel} does not exist"


def test_the_copy_holds_the_files_git_lists_and_nothing_it_ignores(tool):
    files = tool.tree_files()
    assert "tools/mutation/run.py" in files and "mmr3_tasks/metrics.py" in files
    assert not [f for f in files if f.startswith((".venv/", ".mutation/"))]


# A process that draws a tqdm bar, then forks one child that dies (SIGKILL, as at a mutant's
# timeout) while holding tqdm's lock, then a second child that draws a bar: "done" or "hung".
_FORKED_BARS = """
import os, signal, sys, time
sys.path.insert(0, sys.argv[1])
from tqdm.auto import tqdm
tqdm(range(1), disable=True).close()
if sys.argv[2] == "plugin":
    import fork_safe_tqdm
    fork_safe_tqdm.pytest_configure(None)
pid = os.fork()
if pid == 0:
    tqdm.get_lock().acquire()
    os.kill(os.getpid(), signal.SIGKILL)
os.waitpid(pid, 0)
pid = os.fork()
if pid == 0:
    if sys.argv[2] == "plugin":
        fork_safe_tqdm.pytest_configure(None)  # each mutant's test session configures it again
    tqdm(range(3), disable=True).close()
    os._exit(0)
for _ in range(100):
    if os.waitpid(pid, os.WNOHANG)[0]:
        print("done")
        break
    time.sleep(0.05)
else:
    os.kill(pid, signal.SIGKILL)
    print("hung")
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the mutation runs fork, as mutmut does on Linux only")
@pytest.mark.parametrize("plugin, outcome", [("none", "hung"), ("plugin", "done")])
def test_a_mutant_killed_while_drawing_a_bar_does_not_hang_the_next_one(plugin, outcome):
    import subprocess

    args = [sys.executable, "-c", _FORKED_BARS, str(RUN_PY.parent), plugin]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == outcome, proc.stderr
