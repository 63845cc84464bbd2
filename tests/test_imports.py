"""The import direction between our packages, read from the source with `ast` (nothing is imported).

- mmr3_tasks never imports mmr3_adapters: tasks, metrics, builder and reports work without the
  models (mmr3_adapters adds its `mmr3` subcommands through an entry point instead).
- Only two modules import lmms_eval, so everything else is importable and testable without it:
  mmr3_tasks/lmms_plugin.py (the task registration) and mmr3_adapters/lmms_models.py (the models).

Every import counts: at the top, inside a function, relative, or `importlib.import_module("…")` /
`__import__("…")` with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LMMS_EVAL_IMPORTERS = {"mmr3_tasks/lmms_plugin.py", "mmr3_adapters/lmms_models.py"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in one file."""
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # `from ..x import y`: relative to this file's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.append((node.lineno, ".".join([*base, *([node.module] if node.module else [])])))
            else:
                found.append((node.lineno, node.module or ""))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def violations(root: Path) -> list[str]:
    bad = []
    for package in ("mmr3_tasks", "mmr3_adapters"):
        for path in sorted((root / package).rglob("*.py")):
            where = path.relative_to(root).as_posix()
            for line, name in imported_names(path, root):
                top = name.split(".")[0]
                if package == "mmr3_tasks" and top == "mmr3_adapters":
                    bad.append(f"{where}:{line}: imports {name} (mmr3_tasks never imports mmr3_adapters)")
                if top == "lmms_eval" and where not in LMMS_EVAL_IMPORTERS:
                    allowed = ", ".join(sorted(LMMS_EVAL_IMPORTERS))
                    bad.append(f"{where}:{line}: imports {name} (only {allowed} import lmms_eval)")
    return bad


def test_import_directions_hold():
    bad = violations(ROOT)
    assert not bad, "\n".join(bad)


def test_the_allowed_lmms_eval_importers_still_import_it():
    """If one stops importing lmms_eval, the allow-list (and the package docstrings) must shrink."""
    for where in sorted(LMMS_EVAL_IMPORTERS):
        names = [name for _, name in imported_names(ROOT / where, ROOT)]
        assert any(name.split(".")[0] == "lmms_eval" for name in names), where


def test_the_check_finds_each_kind_of_forbidden_import(tmp_path):
    files = {
        "mmr3_tasks/__init__.py": "",
        "mmr3_tasks/a.py": "import mmr3_adapters.models\n",
        "mmr3_tasks/b.py": "def f():\n    from mmr3_adapters import demo_command\n",
        "mmr3_tasks/c.py": "import importlib\nimportlib.import_module('mmr3_adapters.lmms_models')\n",
        "mmr3_tasks/hooks.py": "import lmms_eval.api\n",
        "mmr3_tasks/lmms_plugin.py": "def f():\n    from lmms_eval.tasks import TaskManager\n",  # allowed
        "mmr3_tasks/sub/__init__.py": "from .. import a\n",  # relative, within mmr3_tasks: fine
        "mmr3_adapters/__init__.py": "from mmr3_tasks import data\n",  # the allowed direction
        "mmr3_adapters/models/x.py": "__import__('lmms_eval')\n",
        "mmr3_adapters/lmms_models.py": "from lmms_eval.api.model import lmms\n",  # allowed
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert [line.split(" (")[0] for line in violations(tmp_path)] == [
        "mmr3_tasks/a.py:1: imports mmr3_adapters.models",
        "mmr3_tasks/b.py:2: imports mmr3_adapters",
        "mmr3_tasks/c.py:2: imports mmr3_adapters.lmms_models",
        "mmr3_tasks/hooks.py:1: imports lmms_eval.api",
        "mmr3_adapters/models/x.py:1: imports lmms_eval",
    ]
    assert imported_names(tmp_path / "mmr3_tasks/sub/__init__.py", tmp_path) == [(1, "mmr3_tasks")]


def test_the_mmr3_command_starts_without_torch():
    """`mmr3 --help` and every subcommand's parser load without torch (2 s of every command's start)."""
    import subprocess
    import sys

    code = "import sys; from mmr3_tasks.cli import build_parser; build_parser(); print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'lmms_eval')))"  # noqa: E501
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
