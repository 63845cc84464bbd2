"""Bad inputs of `mmr3 report` and `mmr3 score`, through the real `mmr3` command, and the readers behind them.

Every bad input is one line, `mmr3 <command>: error: <file>[:<line>]: <what is wrong>; <fix>`, and
exit code 1, never a traceback. `report` names each bad input and still prints the good ones'
tables. Runs that differ in any setting are never merged (`read_inputs`, `_disambiguate`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from mmr3_tasks import cli, embedding, hooks, report
from mmr3_tasks.errors import MMR3Error
from tests.report_fixtures import DEMO_TASK, mmr3, replay_demo_run, write_run


def error_lines(proc, command: str) -> list[str]:
    """The `mmr3 <command>: error:` lines of a finished command, after checking it failed cleanly."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    prefix = f"mmr3 {command}: error: "
    return [line[len(prefix) :] for line in proc.stderr.splitlines() if line.startswith(prefix)]


# --------------------------------------------------------------------------- inputs, written by hand

RESULTS = {"mmr3_rephrase": {"alias": "mmr3_rephrase", "acc,none": 30.0, "con,none": 20.0}}
CONFIG = {"model": "mmr3_llava", "model_args": "pretrained=/ckpt/llava", "gen_kwargs": "", "limit": None}
RESULTS_TEXT = json.dumps({"results": RESULTS, "config": CONFIG, "date": "20250101_000000"}, indent=2)
PAYLOAD = {
    "id": "g1/r1", "group_id": "g1", "task": "rephrase", "variant": "r1", "group_size": 3, "answers": ["cat"],
    "kinds": {}, "data": "build:aaaa", "response": "cat",
}  # fmt: skip


def sample(**changes) -> str:
    """One sample line as lmms-eval writes it; `changes` edit the payload (a value of ... drops the key)."""
    payload = {k: v for k, v in (PAYLOAD | changes).items() if v is not ...}
    return json.dumps({"doc_id": 0, "target": "cat", "acc": payload})


def lines(*texts: str | bytes, end: bytes = b"\n") -> bytes:
    return b"\n".join(t if isinstance(t, bytes) else t.encode() for t in texts) + end


@dataclass
class Case:
    """A bad input: the files to write (relative path -> bytes, None = a folder), the arguments, and
    the error expected: the input it names (`where`, relative; `file:line` where there is a line) and
    a fragment of what it says."""

    files: dict[str, bytes | None]
    args: list[str]
    where: str
    says: str


REPORT_CASES = {
    "missing path": Case({}, ["nope"], "nope", "no such results file or folder"),
    "folder without results": Case({"empty": None}, ["empty"], "empty", "no *_results.json in this folder"),
    "folder with samples only": Case(
        {"partial/x_samples_mmr3_rephrase.jsonl": lines(sample())},
        ["partial"],
        "partial",
        "samples files but no *_results.json: lmms-eval writes the results file last",
    ),
    "empty file": Case({"a_results.json": b""}, ["a_results.json"], "a_results.json", "empty file"),
    "not UTF-8": Case(
        {"a_results.json": b"\xff\xfe{}"},
        ["a_results.json"],
        "a_results.json",
        "not UTF-8 text (byte 0xff at offset 0)",
    ),
    # Cut mid-string: json reports the start of the string, not the end of the file, yet it is a truncation.
    "truncated": Case(
        {"a_results.json": RESULTS_TEXT[:60].encode()},
        ["a_results.json"],
        f"a_results.json:{RESULTS_TEXT[:60].count(chr(10)) + 1}",
        "truncated JSON",
    ),
    "not JSON": Case({"a_results.json": b'{"results": {,}}'}, ["a_results.json"], "a_results.json:1", "not valid JSON"),
    "JSON, not lmms-eval's": Case(
        {"a_results.json": b'{"acc": 30.0}'}, ["a_results.json"], "a_results.json", "no 'results' mapping"
    ),
    "a list": Case({"a_results.json": b"[1, 2]"}, ["a_results.json"], "a_results.json", "no 'results' mapping"),
    "no config": Case(
        {"a_results.json": json.dumps({"results": RESULTS}).encode()},
        ["a_results.json"],
        "a_results.json",
        "no 'config' mapping, so the model and settings behind these numbers are unknown",
    ),
    "task entry not a mapping": Case(
        {"a_results.json": json.dumps({"results": {"mmr3_rephrase": 5}, "config": CONFIG}).encode()},
        ["a_results.json"],
        "a_results.json",
        "results['mmr3_rephrase'] is a number (5), not a mapping",
    ),
    "no mmr3 task": Case(
        {"a_results.json": json.dumps({"results": {"mmstar": {}}, "config": CONFIG}).encode()},
        ["a_results.json"],
        "a_results.json",
        "no MM-R³ task in it (tasks found: mmstar)",
    ),
    "folder without mmr3 tasks": Case(
        {"other/a_results.json": json.dumps({"results": {"mmstar": {}}, "config": CONFIG}).encode()},
        ["other"],
        "other",
        "none of its 1 results files holds an MM-R³ task (tasks found: mmstar)",
    ),
    "a samples file": Case(
        {"x_samples_mmr3_rephrase.jsonl": lines(sample(), sample(id="g1/r2"))},
        ["x_samples_mmr3_rephrase.jsonl"],
        "x_samples_mmr3_rephrase.jsonl",
        "a samples file, not a results file",
    ),
}

S = "s.jsonl"  # the samples file of every score case
SCORE_CASES = {
    "missing file": Case({}, [S], S, "cannot be read (No such file or directory)"),
    "a folder": Case({"d": None}, ["d"], "d", "a folder; give the *_samples_mmr3_*.jsonl files in it"),
    "empty file": Case({S: b""}, [S], S, "empty, no sample lines"),
    # The real line number, not json's "line 1" of the one line it was given.
    "truncated last line": Case(
        {S: lines(sample(), sample(id="g1/r2"), sample(id="g1/r3")[:50], end=b"")},
        [S],
        f"{S}:3",
        "the last line is cut short (truncated file)",
    ),
    "not JSON": Case({S: lines(sample(), "{oops", sample(id="g1/r3"))}, [S], f"{S}:2", "not JSON"),
    "not UTF-8": Case({S: lines(sample(), b"\xff\xfe")}, [S], f"{S}:2", "not UTF-8 text"),
    "not an object": Case({S: lines(sample(), "[1, 2]")}, [S], f"{S}:2", "a list ([1, 2]) where lmms-eval writes"),
    "no payload": Case({S: lines('{"doc_id": 0}')}, [S], f"{S}:1", "no MM-R³ payload under 'acc' (found nothing)"),
    "another task's sample": Case(
        {S: lines('{"doc_id": 0, "acc": 0.5}')}, [S], f"{S}:1", "no MM-R³ payload under 'acc' (found a number (0.5))"
    ),
    **{
        f"no {key}": Case({S: lines(sample(**{key: ...}))}, [S], f"{S}:1", f"the payload under 'acc' lacks {key}")
        for key in ("id", "group_id", "task", "answers", "response", "variant", "group_size")
    },
    "null response": Case({S: lines(sample(response=None))}, [S], f"{S}:1", "'response' is null, not a string"),
    "number response": Case({S: lines(sample(response=3))}, [S], f"{S}:1", "'response' is a number (3), not a string"),
    "list response": Case({S: lines(sample(response=["cat"]))}, [S], f"{S}:1", "'response' is a list"),
    "string responses": Case(
        {S: lines(sample(response=..., responses="cat"))},
        [S],
        f"{S}:1",
        "'responses' is a string (\"cat\"), not the Sampling protocol's list",
    ),
    "both response and responses": Case(
        {S: lines(sample(responses=["cat"]))}, [S], f"{S}:1", "has both 'response' and 'responses'"
    ),
    "answers a string": Case({S: lines(sample(answers="cat"))}, [S], f"{S}:1", "'answers' is a string (\"cat\")"),
    "answers not strings": Case({S: lines(sample(answers=[1]))}, [S], f"{S}:1", "not a non-empty list of strings"),
    "answers empty": Case({S: lines(sample(answers=[]))}, [S], f"{S}:1", "'answers' is a list ([])"),
    "id a number": Case({S: lines(sample(id=5))}, [S], f"{S}:1", "'id' is a number (5), not a non-empty string"),
    "group_id empty": Case({S: lines(sample(group_id=""))}, [S], f"{S}:1", "'group_id' is a string (\"\")"),
    "group_size a string": Case({S: lines(sample(group_size="3"))}, [S], f"{S}:1", "not an integer"),
    "group_size a bool": Case({S: lines(sample(group_size=True))}, [S], f"{S}:1", "'group_size' is true"),
    "kinds not a mapping": Case({S: lines(sample(kinds=[1]))}, [S], f"{S}:1", "'kinds' is a list ([1])"),
    "data not a string": Case({S: lines(sample(data=5))}, [S], f"{S}:1", "'data' is a number (5)"),
    "unknown task": Case({S: lines(sample(task="vqa"))}, [S], f"{S}:1", "one of rephrase, restyle, context"),
    "Sampling on the demo set": Case(
        {S: lines(sample(response=..., responses=["a"], data="demo:1234"))},
        [S],
        f"{S}:1",
        "a Sampling-protocol payload ('responses') on the demo set",
    ),
    # lmms-eval writes each row once: a repeat means two runs' files were given together.
    "repeated id": Case(
        {S: lines(sample(), sample(id="g1/r2"), sample())},
        [S],
        f"{S}:3",
        f"row 'g1/r1' of mmr3_rephrase again (first at {{dir}}/{S}:1)",
    ),
    "repeated id across files": Case(
        {S: lines(sample()), "t.jsonl": lines(sample())}, [S, "t.jsonl"], "t.jsonl:1", "again (first at"
    ),
    "two data sets in one task": Case(
        {S: lines(sample(), sample(id="g1/r2", data="build:bbbb"))},
        [S],
        f"{S}:2",
        f"mmr3_rephrase on data build:bbbb, but {{dir}}/{S}:1 on build:aaaa",
    ),
    "results file for --check unreadable": Case(
        {S: lines(sample()), "r.json": b'{"results": '}, [S, "--check", "r.json"], "r.json:1", "truncated JSON"
    ),
}


def materialise(folder: Path, case: Case) -> list[str]:
    """Writes a case's files under `folder`; returns its arguments, paths made absolute."""
    folder.mkdir(parents=True)
    for rel, content in case.files.items():
        path = folder / rel
        if content is None:
            path.mkdir(parents=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    return [a if a.startswith("--") else str(folder / a) for a in case.args]


def assert_names(line: str, folder: Path, case: Case) -> None:
    assert line.startswith(f"{folder / case.where}: "), line  # the input first, with its line number
    assert case.says.format(dir=folder) in line, line


@pytest.fixture(scope="module")
def every_bad_report_input(tmp_path_factory):
    """One real `mmr3 report` given every bad input of REPORT_CASES at once: it names each on its own line."""
    root = tmp_path_factory.mktemp("report_cases")
    args = [a for n, case in enumerate(REPORT_CASES.values()) for a in materialise(root / str(n), case)]
    return root, mmr3("report", *args)


@pytest.mark.parametrize("case", REPORT_CASES)
def test_report_names_each_bad_input_in_one_line(every_bad_report_input, tmp_path, capsys, case):
    root, proc = every_bad_report_input
    folder = root / str(list(REPORT_CASES).index(case))
    errors = error_lines(proc, "report")
    assert errors[-1] == f"nothing to report: none of the {len(REPORT_CASES)} inputs holds usable MM-R³ results"
    [line] = [e for e in errors if e.startswith(f"{folder}/")]
    assert_names(line, folder, REPORT_CASES[case])
    assert proc.stdout == ""  # nothing good, nothing printed
    # Alone, the same message is the command's one error line.
    args = materialise(tmp_path / "alone", REPORT_CASES[case])
    assert cli.main(["report", *args]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert_names(line.removeprefix("mmr3 report: error: "), tmp_path / "alone", REPORT_CASES[case])


# Through the real command too (the others run in this process, through `cli.main`, to save ~2 s each).
SCORE_VIA_COMMAND = ("truncated last line", "null response", "no answers", "repeated id", "two data sets in one task")


@pytest.mark.parametrize("case", SCORE_CASES)
def test_score_names_a_bad_input_in_one_line(tmp_path, capsys, monkeypatch, case):
    args = materialise(tmp_path / "case", SCORE_CASES[case])
    with monkeypatch.context() as m:  # every bad input is found before anything is scored
        m.setattr(hooks, "score_payloads", lambda *a, **k: pytest.fail("scored before checking every input"))
        if case.startswith("results file"):  # and the --check file before the samples are read
            m.setattr(report, "read_payloads", lambda *a, **k: pytest.fail("read the samples first"))
        assert cli.main(["score", *args]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert_names(line.removeprefix("mmr3 score: error: "), tmp_path / "case", SCORE_CASES[case])
    if case in SCORE_VIA_COMMAND or case.startswith("results file"):
        [line] = error_lines(mmr3("score", *args), "score")
        assert_names(line, tmp_path / "case", SCORE_CASES[case])


def test_report_prints_the_good_inputs_and_names_every_bad_one(tmp_path):
    good = write_run(tmp_path / "good", "pretrained=/ckpt/llava", {"mmr3_rephrase": {"acc": 30.0}})
    cut = good / "20250102_000000_results.json"
    cut.write_text(RESULTS_TEXT[:100])  # one bad file in a good folder
    (tmp_path / "other_results.json").write_text("[1]")
    proc = mmr3("report", good, tmp_path / "nope", tmp_path / "other_results.json", "--no-paper")
    assert sorted(error_lines(proc, "report")) == sorted([
        f"{cut}:{RESULTS_TEXT[:100].count(chr(10)) + 1}: truncated JSON (it stops mid-value): lmms-eval was "
        "interrupted while writing it, or the copy is incomplete; rerun the evaluation or copy the file again",
        f"{tmp_path / 'nope'}: no such results file or folder; {report.OUTPUT_PATH_HINT}",
        f"{tmp_path / 'other_results.json'}: not lmms-eval output (no 'results' mapping at the top); "
        f"{report.OUTPUT_PATH_HINT}",
    ])  # fmt: skip
    assert "| mmr3_llava (llava) | – | – | – | – | 30.00 |" in proc.stdout  # the good run's tables, still


def test_report_with_nothing_good_says_so_after_naming_each_input(tmp_path):
    (tmp_path / "a_results.json").write_text("")
    proc = mmr3("report", tmp_path / "a_results.json", tmp_path / "nope")
    errors = error_lines(proc, "report")
    assert len(errors) == 3 and errors[-1] == "nothing to report: none of the 2 inputs holds usable MM-R³ results"


def write_paired(folder: Path, other_task: str = "rephrase") -> Path:
    """A base and an adapted run with samples; returns the adapted run's samples file."""
    payloads = [PAYLOAD | {"id": f"g1/r{k}", "variant": f"r{k}"} for k in (1, 2, 3)]
    scores = {"mmr3_rephrase": {"acc": 30.0, "con": 20.0, "groups": 1, "data_fingerprint": "build:aaaa"}}
    write_run(folder, "pretrained=/m", scores, samples={"mmr3_rephrase": payloads}, stamp="s0")
    other = [p | {"task": other_task} for p in payloads]
    write_run(folder, "pretrained=/m,adapter=/a", scores, samples={"mmr3_rephrase": other}, stamp="s1")
    return folder / "s1_samples_mmr3_rephrase.jsonl"


def test_report_flags_an_unusable_samples_file_and_still_compares(tmp_path):
    bad = write_paired(tmp_path)
    bad.write_text(bad.read_text()[:-20])
    proc = mmr3("report", tmp_path, "--no-paper", "--format", "csv")
    [line] = error_lines(proc, "report")
    assert line.startswith(f"{bad}:3: the last line is cut short")
    assert "mmr3_llava (m) + adapter a's samples file is unusable (named on stderr)" in proc.stdout
    assert "no samples files for" not in proc.stdout  # it has one, just not a usable one
    assert "Δ [95% CI],+0.00,–,+0.00," in proc.stdout  # compared from the results files, without an interval


def test_a_samples_file_of_another_task_is_not_paired(tmp_path, capsys, monkeypatch):
    bad = write_paired(tmp_path, other_task="restyle")  # named for mmr3_rephrase, holding mmr3_restyle's samples
    monkeypatch.setattr(embedding, "get_embedder", lambda *a: pytest.fail("embedded before checking"))
    assert cli.main(["report", str(tmp_path), "--no-paper"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"mmr3 report: error: {bad}: holds samples of mmr3_restyle, but sits next to its results file as the samples "
        "of mmr3_rephrase; was it renamed or copied from another run? Put the run's own samples file back"
    ]


def test_name_count_must_match_the_runs(tmp_path):
    write_run(tmp_path, "pretrained=/m", {"mmr3_rephrase": {"acc": 1.0}})
    [line] = error_lines(mmr3("report", tmp_path, "--name", "A", "--name", "B"), "report")
    assert line.startswith("--name given 2 times for 1 runs (mmr3_llava (m))")


# --------------------------------------------------------------------------- which files make one run


def results_file(folder: Path, stamp: str, tasks=("mmr3_rephrase",), fingerprint="build:aaaa", **config) -> None:
    """A results file of `tasks` dated 2025-01-01 00:00:00; `config` overrides config entries, `date` the date."""
    scores = {t: {"acc": 10.0, "data_fingerprint": "demo:1" if "mini" in t else fingerprint} for t in tasks}
    write_run(folder, "pretrained=/ckpt/llava", scores, stamp=stamp)
    path = folder / f"{stamp}_results.json"
    results = json.loads(path.read_text()) | {"date": "20250101_000000"}
    results["date"] = config.pop("date", results["date"])
    results["config"] |= config
    path.write_text(json.dumps(results))


L = "mmr3_llava (llava)"


@pytest.mark.parametrize(
    "second, labels",
    [
        # A results file split by hand: same invocation (date) and settings, other tasks -> one run.
        ({}, [L]),
        # Same invocation, same task twice: two runs, told apart by their files.
        ({"tasks": ("mmr3_rephrase",)}, [f"{L} [a_results.json]", f"{L} [b_results.json]"]),
        # Separate invocations (`--tasks mmr3`, then `--tasks mmr3_sampling`) stay apart, by date.
        ({"date": "20250101_093000"}, [f"{L} [2025-01-01 00:00:00]", f"{L} [2025-01-01 09:30:00]"]),
        # Any setting apart, even with one date and other tasks: never merged.
        ({"limit": 5.0}, [f"{L} [no limit]", f"{L} [limit 5]"]),  # lmms-eval records --limit 5 as 5.0
        ({"limit": 0.5}, [f"{L} [no limit]", f"{L} [limit 0.5]"]),
        ({"gen_kwargs": {"temperature": 0.7}}, [f"{L} [default generation]", f"{L} [temperature=0.7]"]),
        (
            {"model_args": "pretrained=/ckpt/llava,dtype=float16"},
            [f"{L} [pretrained=/ckpt/llava]", f"{L} [pretrained=/ckpt/llava,dtype=float16]"],
        ),
        ({"fingerprint": "build:bbbb"}, [f"{L} [data build:aaaa]", f"{L} [data build:bbbb]"]),
        # Setting and date both differ: the setting tells them apart, the date is left out.
        ({"limit": 5, "date": "20250101_093000"}, [f"{L} [no limit]", f"{L} [limit 5]"]),
    ],
)
def test_runs_merge_only_when_one_invocation_wrote_different_tasks(tmp_path, second, labels):
    results_file(tmp_path, "a")
    results_file(tmp_path, "b", **({"tasks": ("mmr3_rephrase_sampling",)} | second))
    runs = report.load_runs([str(tmp_path)])
    assert [r.label for r in runs] == labels
    if len(runs) == 1:
        assert set(runs[0].scores) == {("rephrase", "all"), ("rephrase", "sampling")}
        assert len(runs[0].sources) == 2


def test_demo_and_benchmark_tasks_of_one_invocation_are_two_rows(tmp_path):
    # mmr3_mini_rephrase and mmr3_rephrase fill the same cells: one row would let one hide the other.
    results_file(tmp_path, "a", tasks=("mmr3_rephrase", "mmr3_mini_rephrase"))
    runs = report.load_runs([str(tmp_path)])
    assert [(r.label, r.demo) for r in runs] == [(f"{L} [data build:aaaa]", False), (f"{L} [data demo:1]", True)]


def test_three_runs_get_as_much_as_tells_them_apart(tmp_path):
    results_file(tmp_path, "a", date="20250101_000000")
    results_file(tmp_path, "b", date="20250102_000000")
    results_file(tmp_path, "c", date="20250103_000000", limit=5)
    assert [r.label for r in report.load_runs([str(tmp_path)])] == [
        f"{L} [no limit, 2025-01-01 00:00:00]",
        f"{L} [no limit, 2025-01-02 00:00:00]",
        f"{L} [limit 5, 2025-01-03 00:00:00]",
    ]


def test_one_file_given_twice_is_one_run(tmp_path, caplog):
    """Found in review: a folder twice, or a file and its folder, showed one run as two rows [#1], [#2]."""
    results_file(tmp_path, "a")
    path = tmp_path / "a_results.json"
    assert [r.label for r in report.load_runs([str(tmp_path), str(tmp_path)])] == [L]
    assert [r.label for r in report.load_runs([str(path), str(tmp_path)])] == [L]
    assert f"{path} is given again (first under {path})" in caplog.text


def test_auto_pairing_prefers_the_base_with_the_same_limit(tmp_path):
    for stamp, args, limit in (("a", "", None), ("b", "", 5.0), ("c", ",adapter=/ad", 5.0)):
        results_file(tmp_path, stamp, date=f"2025010{len(stamp)}_00000{ord(stamp) - 97}", limit=limit)
        path = tmp_path / f"{stamp}_results.json"
        path.write_text(path.read_text().replace('"pretrained=/ckpt/llava"', f'"pretrained=/ckpt/llava{args}"'))
    [pair] = report.find_pairs(report.load_runs([str(tmp_path)]))
    assert (pair.base.limit, pair.other.limit) == ("5", "5")


def test_load_runs_raises_the_first_bad_input(tmp_path):
    (tmp_path / "a_results.json").write_text("{")
    with pytest.raises(report.ReportInputError, match="a_results.json:1: truncated JSON"):
        report.load_runs([str(tmp_path)])
    assert issubclass(report.ReportInputError, MMR3Error)


# --------------------------------------------------------------------------- score --check, by value


@pytest.mark.parametrize(
    "ours, theirs, same",
    [
        (30.0, 30.0 + 1e-9, True),
        (30.0, 30.1, False),
        (3, 3.0, True),  # a count may come back as a float
        ([1.0, 2.0], [1.0, 2.0 + 1e-9], True),
        ([1.0, 2.0], [1.0], False),  # an interval of another length is a difference, not a crash
        ([1.0, 2.0], None, False),
        (None, None, True),  # a breakdown kind no response had, in both
        (True, 1, False),  # a bool is not a number
        ("build:aaaa", "build:bbbb", False),
        (30.0, None, False),  # a metric the results file has as null: a difference, not a crash
        (None, 30.0, False),
        (30.0, "30.0", False),  # a number is not its text
    ],
)
def test_same_value(ours, theirs, same):
    assert report.same_value(ours, theirs, 1e-6) is same


def test_compare_lists_every_difference(tmp_path):
    results = {
        "mmr3_rephrase": {"acc,none": 30.5, "acc_ci95,none": [1.0], "groups,none": 3, "embedding_model,none": "e5"}
    }
    (tmp_path / "r.json").write_text(json.dumps({"results": results, "config": CONFIG}))
    scored = {
        "mmr3_rephrase": {"acc": 30.0, "acc_ci95": [1.0, 2.0], "groups": 3, "embedding_model": "mini", "con": 5.0},
        "mmr3_restyle": {"acc": 1.0},
    }
    assert report.compare(scored, tmp_path / "r.json") == [
        "mmr3_rephrase acc: samples give 30.0, results file has 30.5",
        "mmr3_rephrase acc_ci95: samples give [1.0, 2.0], results file has [1.0]",
        "mmr3_rephrase embedding_model: samples give 'mini', results file has 'e5' (score with --embedding-model e5)",
        "mmr3_rephrase con: samples give 5.0, the results file has no 'con,none'",
        "mmr3_restyle: in the samples but not in the results file; is it the results file of this run?",
    ]


def test_compare_goes_on_after_a_task_or_a_metric_the_results_file_lacks(tmp_path):
    results = {"mmr3_restyle": {"con,none": 5.0, "acc,none": 1.0}}
    (tmp_path / "r.json").write_text(json.dumps({"results": results, "config": CONFIG}))
    scored = {"mmr3_rephrase": {"acc": 30.0}, "mmr3_restyle": {"groups": 3, "acc": 2.0, "con": 5.0}}
    assert report.compare(scored, tmp_path / "r.json") == [
        "mmr3_rephrase: in the samples but not in the results file; is it the results file of this run?",
        "mmr3_restyle groups: samples give 3, the results file has no 'groups,none'",
        "mmr3_restyle acc: samples give 2.0, results file has 1.0",
    ]


def test_the_task_comes_from_the_payload_not_the_file_name(tmp_path):
    path = tmp_path / "20250101_000000_samples_mmr3_context.jsonl"  # a misleading name
    sampled = {
        "id": "g2/r1",
        "group_id": "g2",
        "response": ...,
        "responses": ["a", "b"],
        "variant": ...,
        "group_size": ...,
    }
    path.write_text(lines(sample(), sample(id="g1/r1", data="demo:1"), sample(**sampled)).decode())
    found = report.read_payloads([str(path)])
    assert {k: [p["id"] for p in v] for k, v in found.items()} == {
        "mmr3_rephrase": ["g1/r1"], "mmr3_mini_rephrase": ["g1/r1"], "mmr3_rephrase_sampling": ["g2/r1"],
    }  # fmt: skip


# --------------------------------------------------------------------------- real lmms-eval output


@pytest.fixture(scope="module")
def real_out(tmp_path_factory) -> Path:
    """One --output_path holding two real lmms-eval runs of one model: every row, then --limit 5."""
    out = tmp_path_factory.mktemp("real") / "out"
    replay_demo_run(out)
    replay_demo_run(out, limit=5)
    return out


@pytest.fixture
def real_run(real_out, tmp_path) -> tuple[Path, Path]:
    """A copy of the full run's results and samples files, to damage."""
    [results] = [p for p in real_out.glob("*_results.json") if json.loads(p.read_text())["config"]["limit"] is None]
    [samples] = report.samples_files(results).values()
    for path in (results, samples):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / results.name, tmp_path / samples.name


@pytest.mark.slow
def test_two_runs_of_one_model_in_one_folder_are_two_rows(real_out):
    proc = mmr3("report", real_out, "--format", "json", "--no-paper")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)
    label = "mmr3_replay (replay_answers.jsonl)"
    assert sorted(rows) == [f"{label} [limit 5]", f"{label} [no limit]"]
    for path in real_out.glob("*_results.json"):
        results = json.loads(path.read_text())
        row = rows[f"{label} [limit 5]" if results["config"]["limit"] else f"{label} [no limit]"]
        assert row["rephrase/all"]["acc"] == results["results"][DEMO_TASK]["acc,none"]
        assert row["rephrase/all"]["responses"] == (5 if results["config"]["limit"] else 108)


@pytest.mark.slow
def test_a_truncated_real_results_file_is_named_with_its_line(real_run):
    results, _ = real_run
    text = results.read_text()
    cut = text[: len(text) // 2]
    results.write_text(cut)
    [line] = error_lines(mmr3("report", results), "report")
    assert line.startswith(f"{results}:{cut.count(chr(10)) + 1}: truncated JSON")


@pytest.mark.slow
def test_a_truncated_real_samples_file_is_named_with_its_real_line(real_run):
    _, samples = real_run
    raw = samples.read_bytes()
    cut = raw[: len(raw) * 2 // 5]
    samples.write_bytes(cut)
    [line] = error_lines(mmr3("score", samples), "score")
    number = cut.count(b"\n") + 1  # the line it stops in
    assert line.startswith(f"{samples}:{number}: the last line is cut short")


@pytest.mark.slow
def test_score_checks_a_renamed_samples_file_and_every_mismatch_exits_1(real_run):
    results, samples = real_run
    renamed = samples.rename(samples.with_name("my_samples.jsonl"))
    proc = mmr3("score", renamed, "--check", results)
    assert proc.returncode == 0 and f"identical to {results}" in proc.stdout, proc.stderr[-3000:]
    assert f"### {DEMO_TASK}" in proc.stdout  # the task name from the payloads, not from the file name

    data = json.loads(results.read_text())
    entry = data["results"][DEMO_TASK]
    acc, groups = entry["acc,none"], entry["groups,none"]
    entry["acc,none"], entry["groups,none"] = acc + 1.0, groups + 1  # two values edited
    results.write_text(json.dumps(data))
    proc = mmr3("score", renamed, "--check", results)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-3:] == [
        f"mmr3 score: mismatch: the samples do not reproduce {results} (2 differences):",
        f"  {DEMO_TASK} acc: samples give {acc!r}, results file has {acc + 1.0!r}",
        f"  {DEMO_TASK} groups: samples give {groups!r}, results file has {groups + 1!r}",
    ]

    data["results"] = {"mmr3_rephrase": data["results"][DEMO_TASK]}  # the results of another task
    results.write_text(json.dumps(data))
    proc = mmr3("score", renamed, "--check", results)
    assert proc.returncode == 1
    assert f"  {DEMO_TASK}: in the samples but not in the results file" in proc.stderr
    assert "not checked (no samples given for them): mmr3_rephrase" in proc.stdout


def test_cli_main_in_process_gives_the_same_one_line_error(tmp_path, capsys):
    # In-process, as `mmr3_adapters.demo_command` and notebooks call it: the same one-line errors.
    (tmp_path / "a_results.json").write_text("{")
    assert cli.main(["report", str(tmp_path / "a_results.json")]) == 1
    assert capsys.readouterr().err.startswith(f"mmr3 report: error: {tmp_path / 'a_results.json'}:1: truncated JSON")


@pytest.mark.parametrize(
    "key, value, problem",
    [
        # Found in review: each was printed as a number (250.00, nan, inf, -5) with exit 0.
        ("acc,none", 250.0, "not a number in [0, 100]"),
        ("acc,none", "100", "not a number in [0, 100]"),
        ("con,none", -5, "not a number in [0, 100]"),
        ("s_c,none", float("inf"), "not a number in [-100, 100]"),
        ("s_gt,none", float("nan"), "not a number in [-100, 100]"),
        ("acc_ci95,none", [60.0], "not an interval [low, high]"),
        ("responses,none", 2.5, "not a count"),
        ("data_fingerprint,none", 5, "not a string"),
    ],
)
def test_a_metric_value_an_mmr3_task_never_writes_is_a_bad_input(tmp_path, capsys, key, value, problem):
    write_run(tmp_path / "bad", "pretrained=/ckpt/llava", {"mmr3_rephrase": {"acc": 50.0}})
    path = tmp_path / "bad" / "20250101_000000_results.json"
    results = json.loads(path.read_text())
    results["results"]["mmr3_rephrase"][key] = value
    path.write_text(json.dumps(results))
    write_run(tmp_path / "good", "pretrained=/ckpt/other", {"mmr3_rephrase": {"acc": 50.0, "s_gt": -3.0}})
    code = cli.main(["report", str(tmp_path / "bad"), str(tmp_path / "good")])
    out, err = capsys.readouterr()
    assert code == 1 and "50.00" in out, out  # the good run is still reported
    [line] = [e for e in err.splitlines() if e.strip()]
    assert line.startswith(f"mmr3 report: error: {path}: results['mmr3_rephrase'][{key!r}]") and problem in line, err
