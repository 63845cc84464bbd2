"""Every reference in the docs and the code points to something a user of the repository has.

Checked, over README.md, docs/, benchmarks/, tools/, tests/ and both packages:

- a path-like mention, `docs/…`, `tests/…`, `benchmarks/…`, `tools/…`, `mmr3_tasks/…`, `mmr3_adapters/…`, in
  Markdown (code blocks included: they are commands users run) or in a Python comment or string,
  names a file or folder of the repository (a glob such as `tests/test_build_*.py` must match one);
- a dotted mention, `mmr3_tasks.data.check_rows`, names a module of ours, and the name after the
  module occurs in that module's source;
- a Markdown link `[text](path#anchor)` to a local file names one that exists, and its anchor is a
  heading of that file (GitHub's slug);
- nothing cites the team's internal notes, which users never see.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("README.md", "docs", "benchmarks", "tools", "tests", "mmr3_tasks", "mmr3_adapters")
SKIPPED_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis"}
# The notes kept outside the repository for the people who build it (split so this file is no hit).
INTERNAL = re.compile("|".join(["paper" + "-spec", "DESIGN" + r"\.md", "lmms-eval" + "-notes", "adapter" + "-notes",
                                r"\.\./" + "shared"]))  # fmt: skip
ROOTS = ("docs", "tests", "benchmarks", "tools", "mmr3_tasks", "mmr3_adapters")
# A path-like mention: a repository root, then path characters; `*` globs, `<x>` / `{x}` are placeholders.
PATH = re.compile(r"(?<![\w./~$-])(?:" + "|".join(ROOTS) + r")/[\w./*<>{}-]*")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^ {0,3}(```|~~~)")
DOTTED = re.compile(r"(?<![\w./-])((?:mmr3_tasks|mmr3_adapters)(?:\.\w+)+)")
FILE_SUFFIXES = {"py", "md", "json", "jsonl", "yaml", "txt", "parquet"}  # `mmr3_tasks.data.py` is a path


def scanned_files(suffix: str) -> list[Path]:
    files: list[Path] = []
    for entry in SCANNED:
        path = ROOT / entry
        candidates = [path] if path.is_file() else path.rglob(f"*{suffix}")
        files += [p for p in candidates if p.suffix == suffix and not SKIPPED_DIRS & set(p.parts)]
    return sorted(files)


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of Markdown outside code fences, with inline code kept (paths live there)."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def docstring_lines(text: str) -> set[int]:
    """The first lines of a module's, class's or function's docstring."""
    lines = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                lines.add(first.lineno)
    return lines


def python_texts(text: str, all_strings: bool) -> list[tuple[int, str]]:
    """(line number, text) of a Python file's comments and docstrings, and, with `all_strings`, of
    every string literal (a package's messages cite docs too; a test's strings are its fixtures)."""
    docstrings = set() if all_strings else docstring_lines(text)
    found = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        is_string = token.type == tokenize.STRING or token.type == getattr(tokenize, "FSTRING_MIDDLE", -1)
        if token.type == tokenize.COMMENT or (is_string and (all_strings or token.start[0] in docstrings)):
            for offset, line in enumerate(token.string.splitlines()):
                found.append((token.start[0] + offset, line))
    return found


def path_exists(mention: str) -> bool:
    """Whether a path-like mention names something in the repository."""
    if re.search(r"[<{]", mention):  # `tasks/locators/<task>.jsonl`: check the part before the placeholder
        mention = re.split(r"[<{]", mention, maxsplit=1)[0].rsplit("/", 1)[0]
    if "*" in mention:
        return any(ROOT.glob(mention))
    return (ROOT / mention).exists()


def module_name_exists(dotted: str) -> bool:
    """Whether `pkg.module.name` names a module of ours, and `name` occurs in its source."""
    parts = dotted.split(".")
    here = ROOT / parts[0]
    for i, name in enumerate(parts[1:], 1):
        if (here / name / "__init__.py").is_file():
            here = here / name
        elif (here / f"{name}.py").is_file():
            rest = [part for part in parts[i + 1 : i + 2] if part not in FILE_SUFFIXES]
            return not rest or re.search(rf"\b{re.escape(rest[0])}\b", (here / f"{name}.py").read_text()) is not None
        elif name in FILE_SUFFIXES:
            return True
        else:  # a name the package itself defines or re-exports
            return re.search(rf"\b{re.escape(name)}\b", (here / "__init__.py").read_text()) is not None
    return True


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text, lower-cased, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()  # a link renders as its text
    kept = (c for c in text if c in " -" or unicodedata.category(c)[0] in "LMN" or unicodedata.category(c) == "Pc")
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    slugs: dict[str, int] = {}
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            count = slugs.get(slug, 0)
            slugs[slug] = count + 1
            if count:  # a repeated heading gets -1, -2, ...
                slugs[f"{slug}-{count}"] = 1
    return set(slugs)


def mentions() -> list[tuple[str, int, str]]:
    """(file, line number, text) of every Markdown line and every Python comment or string."""
    found = []
    for path in scanned_files(".md") + scanned_files(".py"):
        text = path.read_text(encoding="utf-8")
        in_package = path.relative_to(ROOT).parts[0] in ("mmr3_tasks", "mmr3_adapters")
        lines = enumerate(text.splitlines(), 1) if path.suffix == ".md" else python_texts(text, in_package)
        found += [(str(path.relative_to(ROOT)), number, line) for number, line in lines]
    return found


def dangling_paths() -> list[str]:
    bad = []
    for where, number, line in mentions():
        for mention in PATH.findall(line):
            mention = mention.rstrip(".-/")  # the end of a sentence, or a folder's slash
            if not path_exists(mention):
                bad.append(f"{where}:{number}: {mention}")
        bad += [f"{where}:{number}: {name}" for name in DOTTED.findall(line) if not module_name_exists(name)]
    return bad


def dangling_links() -> list[str]:
    bad = []
    for path in scanned_files(".md"):
        for number, line in prose_lines(path.read_text(encoding="utf-8")):
            line = re.sub(r"`[^`]*`", "", line)  # `[x](y)` in inline code is an example, not a link
            for target in LINK.findall(line):
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                    continue
                file_part, _, anchor = target.partition("#")
                linked = (path.parent / file_part).resolve() if file_part else path
                where = f"{path.relative_to(ROOT)}:{number}: ({target})"
                if not linked.exists():
                    bad.append(f"{where} no such file")
                elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                    bad.append(f"{where} no heading with the anchor #{anchor} in {linked.name}")
    return bad


def internal_references() -> list[str]:
    bad = []
    for path in scanned_files(".md") + scanned_files(".py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if INTERNAL.search(line):
                bad.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    return bad


def test_path_mentions_name_files_of_the_repository():
    bad = dangling_paths()
    assert not bad, "\n".join(bad)


def test_markdown_links_name_files_and_headings_that_exist():
    bad = dangling_links()
    assert not bad, "\n".join(bad)


def test_nothing_cites_the_internal_notes():
    bad = internal_references()
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Edge cases (each one has a test)", "edge-cases-each-one-has-a-test"),
        ("`mmr3_replay`", "mmr3_replay"),  # backticks go, the underscore stays
        ("Verification: the rows scored are the rows built", "verification-the-rows-scored-are-the-rows-built"),
        ("MM-R³ data: building the benchmark", "mm-r³-data-building-the-benchmark"),  # ³ is a number: kept
        ("Comparing two runs: `mmr3 report --paired`", "comparing-two-runs-mmr3-report---paired"),
        ("See [the data](data.md) here", "see-the-data-here"),
    ],
)
def test_github_slug(heading, slug):
    assert github_slug(heading) == slug


def test_the_checks_find_what_they_guard(tmp_path, monkeypatch):
    """A dangling path or module, a link to a missing file or heading, a cited note: each is reported."""
    docs, tests, package = tmp_path / "docs", tmp_path / "tests", tmp_path / "mmr3_tasks"
    for folder in (docs, tests, package):
        folder.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "data.py").write_text(
        'def check_rows():\n    raise ValueError("see docs/gone-too.md")\n', encoding="utf-8"
    )
    (docs / "a.md").write_text("# Title\n\n## A part\n", encoding="utf-8")
    (docs / "b.md").write_text(
        "see docs/gone.md and [a](a.md#a-part), [x](a.md#no-part), [y](missing.md)\n"
        "```\npython docs/in-a-fence.md  # [z](not-a-link.md)\n```\n"
        "docs/a.md exists, and so do `docs/*.md`, mmr3_tasks.data.check_rows and mmr3_tasks.data.py\n"
        "but not mmr3_tasks.data.drop_rows nor mmr3_tasks.gone\n" + "../" + "shared/notes\n",
        encoding="utf-8",
    )
    (tests / "t.py").write_text(
        '"""See tests/test_gone.py."""\nX = "docs/a-fixture.md"  # docs/a.md\n', encoding="utf-8"
    )
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert dangling_paths() == [
        "docs/b.md:1: docs/gone.md",
        "docs/b.md:3: docs/in-a-fence.md",
        "docs/b.md:6: mmr3_tasks.data.drop_rows",
        "docs/b.md:6: mmr3_tasks.gone",
        "mmr3_tasks/data.py:2: docs/gone-too.md",  # a package's message is checked, a test's string is not
        "tests/t.py:1: tests/test_gone.py",
    ]
    assert dangling_links() == [
        "docs/b.md:1: (a.md#no-part) no heading with the anchor #no-part in a.md",
        "docs/b.md:1: (missing.md) no such file",
    ]
    assert [line.split(": ")[0] for line in internal_references()] == ["docs/b.md:7"]
