"""Mutation testing of the modules that decide numbers: the share of mutants the tests kill, per module.

    pip install -e ".[test,mutation]"
    python tools/mutation/run.py                    # every module in targets.toml
    python tools/mutation/run.py metrics hooks      # some of them
    python tools/mutation/run.py --update-readme    # and write the figures into tools/mutation/README.md

Each module runs `mutmut run` (the version pinned in the `mutation` extra) in a copy of the working
tree under --work, so the checkout is never touched, with only that module's files mutated and only
its test files selected (targets.toml). A surviving mutant either needs a test or, when it cannot
change behaviour, an entry in equivalent.toml with the reason; the script matches entries by the
function and the changed lines, so renumbered mutants keep their entry and stale entries are named.

It prints, per module: mutants, killed, survived, listed as equivalent, other outcomes (no tests,
timeout), and the killed share of the mutants that are not listed as equivalent (of those reached,
for a run stopped part way). It exits 1 when a module is below --target (90%), was not run to the
end, or has a survivor neither killed nor listed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    raise SystemExit("tools/mutation/run.py needs Python 3.11 or later (for tomllib)") from None

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
README = HERE / "README.md"
FIGURES_START, FIGURES_END = "<!-- figures:start -->", "<!-- figures:end -->"
SURVIVORS_START, SURVIVORS_END = "<!-- survivors:start -->", "<!-- survivors:end -->"
EQUIVALENT_START, EQUIVALENT_END = "<!-- equivalent:start -->", "<!-- equivalent:end -->"
SOURCE_PATHS = ("mmr3_tasks", "mmr3_adapters")
MUTANTS_HOLD = (*SOURCE_PATHS, "tests")  # what mutmut copies into mutants/ and runs the tests from


@dataclass
class Target:
    name: str
    files: list[str]
    tests: list[str]


@dataclass
class Outcome:
    target: Target
    counts: dict[str, int] = field(default_factory=dict)
    survivors: list[tuple[str, str]] = field(default_factory=list)  # (mutant, diff) neither killed nor listed
    equivalent: list[tuple[str, str]] = field(default_factory=list)  # (mutant, reason)
    seconds: float = 0.0
    measured: str = ""  # the day mutmut last wrote this module's results

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def killed(self) -> int:
        return self.counts.get("killed", 0)

    @property
    def unchecked(self) -> int:
        """Mutants the run never reached (it was stopped): neither killed nor survived."""
        return self.counts.get("not checked", 0)

    @property
    def share(self) -> float:
        scored = self.total - len(self.equivalent) - self.unchecked
        return 100.0 * self.killed / scored if scored else 100.0

    def verdict(self, target: float) -> str:
        met = "met" if self.share >= target else "not met"
        return f"{met} so far ({self.unchecked} not run yet)" if self.unchecked else met


def load_targets(path: Path = HERE / "targets.toml") -> list[Target]:
    data = tomllib.loads(path.read_text())
    return [Target(name, spec["files"], spec["tests"]) for name, spec in data.items()]


def load_equivalent(path: Path = HERE / "equivalent.toml") -> list[dict]:
    if not path.exists():
        return []
    entries = tomllib.loads(path.read_text()).get("equivalent", [])
    for i, entry in enumerate(entries):
        missing = {"function", "change", "why"} - set(entry)
        if missing:
            raise SystemExit(f"{path}: entry {i + 1} lacks {sorted(missing)}; each names function, change and why")
    return entries


def tree_files() -> list[str]:
    """The working tree as git sees it: tracked and untracked-but-not-ignored files, edits included."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    return [raw.decode() for raw in listed if raw]


def copy_tree(dest: Path) -> None:
    """A copy of the working tree (`tree_files`) at `dest`, replacing what was there."""
    listed = tree_files()
    if dest.exists():
        shutil.rmtree(dest)
    for rel in listed:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def mutmut_config(target: Target, tests: list[str]) -> str:
    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(json.dumps(i) for i in items) + "]"

    return (
        "\n[tool.mutmut]\n"
        f"source_paths = {toml_list(list(SOURCE_PATHS))}\n"
        f"only_mutate = {toml_list(target.files)}\n"
        'pytest_add_cli_args = ["-m", "not slow", "-p", "no:cacheprovider", "-p", "fork_safe_tqdm", "-q"]\n'
        f"pytest_add_cli_args_test_selection = {toml_list(tests)}\n"
        "use_git_change_detection = false\n"
    )


def function_of(mutant: str) -> str:
    """A mutant name (module, then `x_score__mutmut_12`) -> the function (module, then `score`), or `Class.method`."""
    key = mutant.rsplit("__mutmut_", 1)[0]
    module, _, name = key.rpartition(".")
    if name.startswith("xǁ"):
        cls, _, method = name[2:].partition("ǁ")
        return f"{module}.{cls}.{method}"
    return f"{module}.{name[2:]}"


def changed_lines(diff: str) -> str:
    """The -/+ lines of a unified diff, stripped, one per line: what an equivalent entry matches."""
    lines = []
    for line in diff.splitlines():
        if line.startswith(("---", "+++")) or not line.startswith(("-", "+")):
            continue
        lines.append(line[0] + " " + line[1:].strip())
    return "\n".join(lines)


def normalized(change: str) -> str:
    return "\n".join(line[0] + " " + line[1:].strip() for line in change.strip().splitlines() if line.strip())


def not_killed(copy: Path, target: Target) -> list[str]:
    """The mutants of the last run in `copy` that no test killed (survived, no tests, timed out, ...)."""
    from mutmut.stats import status_by_exit_code

    names = []
    for rel in target.files:
        meta = json.loads((copy / "mutants" / (rel + ".meta")).read_text())
        names += [m for m, code in sorted(meta["exit_code_by_key"].items()) if status_by_exit_code[code] != "killed"]
    return names


def refresh_copy(copy: Path, target: Target, tests: list[str]) -> None:
    """Brings the tests (and every other file but the mutated ones) of an earlier run's copy up to date.

    A mutant killed once stays killed when tests are added, so only the others need running again;
    that holds only while the mutated files and the test selection are what that run had.
    """
    for rel in target.files:
        if (ROOT / rel).read_bytes() != (copy / rel).read_bytes():
            raise SystemExit(
                f"{target.name}: {rel} changed since the last run, so its mutants are not that run's; "
                "run the module without --survivors"
            )
    config = mutmut_config(target, tests)
    if not (copy / "pyproject.toml").read_text().endswith(config):
        raise SystemExit(
            f"{target.name}: its test files in targets.toml changed since the last run (mutmut would reset every "
            "result); run the module without --survivors"
        )
    listed = tree_files()
    mutated = set(target.files) | {"pyproject.toml"}
    for rel in listed:
        src = ROOT / rel
        if rel in mutated or not src.is_file():
            continue
        # mutmut runs the tests from its mutants/ folder, which holds the source packages and tests/
        in_mutants = rel.split("/")[0] in MUTANTS_HOLD
        for dest in (copy / rel, copy / "mutants" / rel) if in_mutants else (copy / rel,):
            if not dest.exists() or dest.read_bytes() != src.read_bytes():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)


def run_target(
    target: Target, work: Path, jobs: int, equivalent: list[dict], reuse: bool = False, survivors: bool = False
) -> Outcome:
    copy = work / target.name
    if (reuse or survivors) and not (copy / "mutants").is_dir():
        flag = "--reuse" if reuse else "--survivors"
        raise SystemExit(f"{target.name}: {flag}, but {copy / 'mutants'} does not exist; run without it first")
    if reuse:  # the results of an earlier run, classified again (after equivalent.toml changed)
        outcome = Outcome(target)
        classify(outcome, copy, equivalent)
        return outcome
    tests = [t for t in target.tests if (ROOT / t).exists()]
    absent = sorted(set(target.tests) - set(tests))
    if absent:
        print(f"  {target.name}: test files not in the tree, left out: {', '.join(absent)}")
    if not tests:
        raise SystemExit(f"{target.name}: none of its test files exist ({', '.join(target.tests)}); fix targets.toml")
    rerun: list[str] = []
    if survivors:
        refresh_copy(copy, target, tests)
        rerun = not_killed(copy, target)
        if not rerun:
            outcome = Outcome(target)
            classify(outcome, copy, equivalent)
            return outcome
        print(f"  {target.name}: {len(rerun)} mutants not killed last time, run again", flush=True)
    else:
        copy_tree(copy)
        with (copy / "pyproject.toml").open("a") as f:
            f.write(mutmut_config(target, tests))
    # fork_safe_tqdm (a pytest plugin, loaded with -p) is imported from this folder
    path = os.pathsep.join(p for p in (str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=path)
    log = work / f"{target.name}.log"
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *rerun],
            cwd=copy,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    outcome = Outcome(target, seconds=time.monotonic() - started)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{target.name}: mutmut exited {proc.returncode}; its log is {log}:\n{tail}")
    classify(outcome, copy, equivalent)
    return outcome


def classify(outcome: Outcome, copy: Path, equivalent: list[dict]) -> None:
    """Read mutmut's per-file results in `copy` and sort survivors into listed and unlisted."""
    old_cwd = Path.cwd()
    os.chdir(copy)  # mutmut reads its config and mutants/ from the working directory
    try:
        from mutmut.configuration import reset_config
        from mutmut.mutation.diff_apply import get_diff_for_mutant
        from mutmut.stats import status_by_exit_code

        reset_config()  # one config per copy

        metas = [copy / "mutants" / (rel + ".meta") for rel in outcome.target.files]
        outcome.measured = time.strftime("%Y-%m-%d", time.localtime(max(m.stat().st_mtime for m in metas)))
        for rel in outcome.target.files:
            meta = json.loads((copy / "mutants" / (rel + ".meta")).read_text())
            for mutant, code in sorted(meta["exit_code_by_key"].items()):
                status = status_by_exit_code[code]
                outcome.counts[status] = outcome.counts.get(status, 0) + 1
                if status in ("killed", "not checked"):
                    continue
                diff = get_diff_for_mutant(mutant, path=rel)
                change = changed_lines(diff)
                entry = next(
                    (
                        e
                        for e in equivalent
                        if e["function"] == function_of(mutant) and normalized(e["change"]) == change
                    ),
                    None,
                )
                if entry is not None and status == "survived":
                    outcome.equivalent.append((mutant, entry["why"]))
                    entry["_used"] = True
                else:
                    # `file: x_name__mutmut_N`: the mutant as mutmut names it, less its module path
                    short = mutant.rpartition(".")[2] if "ǁ" not in mutant else mutant[mutant.index("xǁ") :]
                    outcome.survivors.append((f"{rel}: {short} ({status})", change))
    finally:
        os.chdir(old_cwd)


def figures_table(outcomes: list[Outcome], target: float) -> str:
    rows = [
        "| module | files | mutants | killed | equivalent (listed) | not killed | killed share | target | measured |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for o in outcomes:
        files = ", ".join(f"`{f}`" for f in o.target.files)
        rows.append(
            f"| {o.target.name} | {files} | {o.total} | {o.killed} | {len(o.equivalent)} | {len(o.survivors)} "
            f"| {o.share:.1f}% | {o.verdict(target)} | {o.measured} |"
        )
    return "\n".join(rows)


def survivors_text(outcomes: list[Outcome]) -> str:
    parts = []
    for o in outcomes:
        if not o.survivors:
            continue
        parts.append(f"**{o.target.name}** ({len(o.survivors)}):\n")
        for mutant, change in o.survivors:
            body = "\n".join("  " + line for line in change.splitlines())
            parts.append(f"- `{mutant}`\n\n  ```diff\n{body}\n  ```")
    return "\n".join(parts) if parts else "None: every mutant is killed or listed as equivalent."


def equivalent_text(equivalent: list[dict]) -> str:
    rows = ["| function | change | why it cannot change behaviour |", "|---|---|---|"]
    for e in equivalent:
        change = "<br>".join(f"`{line}`" for line in normalized(e["change"]).splitlines())
        cells = (f"`{e['function']}`", change, e["why"])
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")  # a | ends a cell
    return "\n".join(rows)


def replace_between(text: str, start: str, end: str, body: str) -> str:
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    if not rest:
        raise SystemExit(f"{README} has no {start} ... {end} markers")
    return f"{head}{start}\n{body}\n{end}{tail}"


def update_readme(outcomes: list[Outcome], target: float, stamp: str) -> None:
    text = README.read_text()
    table = f"{stamp}\n\n{figures_table(outcomes, target)}"
    text = replace_between(text, FIGURES_START, FIGURES_END, table)
    text = replace_between(text, SURVIVORS_START, SURVIVORS_END, survivors_text(outcomes))
    text = replace_between(text, EQUIVALENT_START, EQUIVALENT_END, equivalent_text(load_equivalent()))
    tmp = README.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(README)


def main(argv: list[str] | None = None) -> int:
    targets = load_targets()
    names = [t.name for t in targets]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"modules to run (default: all of {', '.join(names)})")
    parser.add_argument("--work", type=Path, default=ROOT / ".mutation", help="scratch folder for the copies")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="mutants tested at once")
    parser.add_argument("--target", type=float, default=90.0, help="killed share each module must reach, in %%")
    parser.add_argument("--reuse", action="store_true", help="classify the last run's results again, run nothing")
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="after adding tests: run again only the mutants the last run did not kill (the mutated files and "
        "the test list of targets.toml unchanged)",
    )
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="write the figures into the README (the modules not run this time: their last run's figures)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(names))
    if unknown:
        parser.error(f"unknown module(s) {unknown}; targets.toml has {names}")
    if args.reuse and args.survivors:
        parser.error("--reuse runs nothing and --survivors runs the survivors again: give one of them")
    chosen = [t for t in targets if not args.modules or t.name in args.modules]
    equivalent = load_equivalent()
    args.work.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for target in chosen:
        doing = "classifying the last run of" if args.reuse else "mutating"
        print(f"{target.name}: {doing} {', '.join(target.files)}", flush=True)
        outcome = run_target(target, args.work, args.jobs, equivalent, reuse=args.reuse, survivors=args.survivors)
        took = "" if args.reuse else f" in {outcome.seconds:.0f} s"
        print(f"  {outcome.killed}/{outcome.total} killed, {outcome.share:.1f}%{took}", flush=True)
        outcomes.append(outcome)
    print()
    print(figures_table(outcomes, args.target))
    print()
    print(survivors_text(outcomes))
    mutated = {f for t in chosen for f in t.files}
    stale = [e for e in equivalent if not e.get("_used") and e["function"].startswith(_modules_of(mutated))]
    for e in stale:
        print(f"equivalent.toml: no surviving mutant matches {e['function']}: {e['change']!r}; remove or update it")
    if args.update_readme:
        version = importlib.metadata.version("mutmut")
        stamp = f"With mutmut {version}, `python tools/mutation/run.py`; each module on the day it was last run."
        earlier = [t for t in targets if t not in chosen and (args.work / t.name / "mutants").is_dir()]
        for target in earlier:  # keep every module's figures on the page, not only this run's
            outcome = Outcome(target)
            classify(outcome, args.work / target.name, equivalent)
            outcomes.append(outcome)
        outcomes.sort(key=lambda o: names.index(o.target.name))
        update_readme(outcomes, args.target, stamp)
    below = [o.target.name for o in outcomes if o.share < args.target or o.unchecked]
    return 1 if below or any(o.survivors for o in outcomes) else 0


def _modules_of(files: set[str]) -> tuple[str, ...]:
    return tuple(f.removesuffix(".py").replace("/", ".") + "." for f in files) or ("\0",)


if __name__ == "__main__":
    sys.exit(main())
