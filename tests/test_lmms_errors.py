"""Bad inputs to our lmms-eval models: each stops the run with our one-line message and exit code 1.

lmms-eval prints a traceback for an Exception raised by a model and still exits 0, so every
setup failure of ours is a `hooks.MMR3SetupError` (a SystemExit). The first part tests the rules of
`mmr3_replay`'s responses file on the reader function, case by case (fast); the last part feeds
one bad input of each kind through the real `lmms-eval` command.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lmms_eval.models as lmms_eval_models  # a hard dependency: a broken import fails here, never skips
import pytest
from lmms_eval.api.instance import Instance

from mmr3_adapters.lmms_models import Replay
from mmr3_adapters.models.pretrained import PretrainedNotFoundError, check_pretrained, looks_local
from mmr3_adapters.replay_file import Recorded, ReplayFileError, preview, read_responses
from tests.conftest import run_lmms_cli
from tests.tiny_models import tiny_checkpoint

GOOD = b'{"id": "g1/r1", "response": "cat"}\n'

# --------------------------------------------------------------------------- the responses file


# case -> (a bad line, the message). Answers of the wrong type used to be scored as str(value): "None",
# "42", "True", "['x', 'y']", or a string given as "responses" letter by letter.
MALFORMED = {
    "response-null": (b'{"id": "a", "response": null}', r'"response" must be a string, got null; write ""'),
    "response-number": (b'{"id": "a", "response": 42}', r'"response" must be a string, got the number 42; write the'),
    "response-bool": (b'{"id": "a", "response": true}', r'"response" must be a string, got a boolean true'),
    "response-object": (b'{"id": "a", "response": {"t": "x"}}', r'"response" must be a string, got an object \{"t"'),
    "response-list": (b'{"id": "a", "response": ["x", "y"]}', r'"response" holds a list; .* go in "responses"'),
    "responses-string": (b'{"id": "a", "responses": "abc"}', r'"responses" must be a list of .*the string "abc"'),
    "responses-number": (b'{"id": "a", "responses": 3}', r'"responses" must be a list of strings, got the number 3'),
    "responses-item": (b'{"id": "a", "responses": ["x", null]}', r'"responses"\[1\] must be a string, got null'),
    "responses-empty": (b'{"id": "a", "responses": []}', r'"responses" is empty; give at least one answer'),
    "both": (b'{"id": "a", "response": "x", "responses": ["x"]}', r'both "response" and "responses"'),
    "no-answer": (b'{"id": "a"}', r'no "response" or "responses"'),
    "no-id": (b'{"response": "x"}', r'no "id"; give the row id'),
    "id-number": (b'{"id": 7, "response": "x"}', r'"id" must be a row id string .*got the number 7'),
    "id-empty": (b'{"id": "", "response": "x"}', r'"id" must be a row id string .*got the string ""'),
    "task-list": (b'{"id": "a", "task": ["t"], "response": "x"}', r'"task" must be an lmms-eval task name, got a list'),
    "unknown-key": (b'{"id": "a", "reponse": "x"}', r"unknown key\(s\) \['reponse'\]"),  # a typo is not ignored
    "key-twice": (b'{"id": "a", "id": "b", "response": "x"}', r"key 'id' given twice"),  # json.loads: last wins
    "not-object": (b'["a", "x"]', r"expected a JSON object, got a list"),
    "not-json": (b'{"id": "a", "response": "x"', r"not JSON \(Expecting ',' delimiter at column 28\)"),  # not last
    "latin-1": (b'{"id": "a", "response": "caf\xe9"}', r"not UTF-8 text \(byte b'\\xe9', the line's byte 29\)"),
}  # fmt: skip


# The bad line comes third, after a good line and a blank one: the message must count both.
@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_line_is_named_with_its_file_and_line(tmp_path, case):
    line, message = MALFORMED[case]
    path = tmp_path / "responses.jsonl"
    path.write_bytes(GOOD + b"\n" + line + b"\n" + GOOD.replace(b"g1", b"g2"))
    with pytest.raises(ReplayFileError, match=rf"^{path}:3: {message}"):
        read_responses(path)


def test_a_truncated_last_line_is_named_as_such(tmp_path):
    path = tmp_path / "responses.jsonl"
    path.write_bytes(GOOD + b'{"id": "g2/r1", "resp')  # a writer killed mid-line
    with pytest.raises(ReplayFileError, match=rf"^{path}:2: the last line is cut off .*complete it or delete it"):
        read_responses(path)


@pytest.mark.parametrize(
    "lines, message",
    [
        ([GOOD, GOOD], r':2: id \'g1/r1\' for every task \(no "task"\) is already answered on line 1'),
        (
            [b'{"id": "a", "task": "t", "response": "x"}\n', b'{"task": "t", "id": "a", "response": "y"}\n'],
            r":2: id 'a' for task t is already answered on line 1",
        ),
    ],
)
def test_a_repeated_id_is_refused_not_last_wins(tmp_path, lines, message):
    path = tmp_path / "responses.jsonl"
    path.write_bytes(b"".join(lines))
    with pytest.raises(ReplayFileError, match=message):
        read_responses(path)


def test_a_missing_responses_file_is_named(tmp_path):
    with pytest.raises(ReplayFileError, match=rf"^responses file {tmp_path / 'none.jsonl'} does not exist"):
        read_responses(tmp_path / "none.jsonl")
    with pytest.raises(ReplayFileError, match="is a folder"):
        read_responses(tmp_path)


@pytest.mark.parametrize(
    "data, expected",
    [
        (GOOD, {(None, "g1/r1"): Recorded(1, ("cat",))}),
        (b"\xef\xbb\xbf" + GOOD, {(None, "g1/r1"): Recorded(1, ("cat",))}),  # a byte-order mark (Windows tools)
        (GOOD.rstrip(b"\n"), {(None, "g1/r1"): Recorded(1, ("cat",))}),  # complete, no final newline
        (GOOD.replace(b"\n", b"\r\n"), {(None, "g1/r1"): Recorded(1, ("cat",))}),
        (b'{"id": "a", "response": ""}\n', {(None, "a"): Recorded(1, ("",))}),  # said nothing: an answer
        ('{"id": "a", "response": "çà 日本"}\n'.encode(), {(None, "a"): Recorded(1, ("çà 日本",))}),
        # The same id for every task and for one task: two answers, the task's taken first.
        (
            GOOD + b'{"id": "g1/r1", "task": "t", "responses": ["a", "b"]}\n',
            {(None, "g1/r1"): Recorded(1, ("cat",)), ("t", "g1/r1"): Recorded(2, ("a", "b"))},
        ),
    ],
)
def test_well_formed_files_are_read_as_written(tmp_path, data, expected):
    path = tmp_path / "responses.jsonl"
    path.write_bytes(data)
    assert read_responses(path) == expected


# A bad line second, between two good ones -> the whole message (P stands for the file). The partial
# patterns above say what each message is about; these pin every word, the cut-off of long values at
# 60 characters, and non-ASCII shown as written.
X51, X52 = "x" * 51, "x" * 52
WHOLE_MESSAGES = {
    b'{"id": "a", "response": "caf\xe9"}': (
        "P:2: not UTF-8 text (byte b'\\xe9', the line's byte 29); save the file as UTF-8"
    ),
    GOOD.strip(): (
        "P:2: id 'g1/r1' for every task (no \"task\") is already answered on line 1; keep one of the two lines"
    ),
    b'{"id": "a", "id": "b", "task": "t", "task": "u", "response": "x"}': "P:2: key 'id', 'task' given twice; keep one",
    b'{"id": "a", "response": 42}': (
        'P:2: "response" must be a string, got the number 42; write the answer as a JSON string'
    ),
    b'{"id": "a", "responses": "abc"}': (
        'P:2: "responses" must be a list of strings, got the string "abc"; a single answer goes in "response": "..."'
    ),
    b'{"id": "a", "responses": ["x", 3]}': 'P:2: "responses"[1] must be a string, got the number 3',
    ('{"id": "a", "response": {"k": "' + X51 + '"}}').encode(): (  # 60 characters: shown whole
        f'P:2: "response" must be a string, got an object {{"k": "{X51}"}}; write the answer as a JSON string'
    ),
    ('{"id": "a", "response": {"k": "' + X52 + '"}}').encode(): (  # 61: cut to 57 and "..."
        f'P:2: "response" must be a string, got an object {{"k": "{X52[:50]}...; write the answer as a JSON string'
    ),
    '{"id": "a", "response": {"k": "日本"}}'.encode(): (
        'P:2: "response" must be a string, got an object {"k": "日本"}; write the answer as a JSON string'
    ),
    # A byte-order mark is allowed at the start of the file only; on line 2 it is a damaged line.
    b'\xef\xbb\xbf{"id": "b", "response": "x"}': (
        "P:2: not JSON (Unexpected UTF-8 BOM (decode using utf-8-sig) at column 1); each line is one object, "
        '{"id": "<row id>", "response": "<answer>"}'
    ),
}  # fmt: skip


@pytest.mark.parametrize("line", list(WHOLE_MESSAGES), ids=range(len(WHOLE_MESSAGES)))
def test_each_message_is_whole(tmp_path, line):
    path = tmp_path / "r.jsonl"
    path.write_bytes(GOOD + line + b'\n{"id": "z", "response": "q"}\n')
    with pytest.raises(ReplayFileError) as err:
        read_responses(path)
    assert str(err.value).replace(str(path), "P") == WHOLE_MESSAGES[line]


def test_file_level_messages_are_whole(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"id": "g1/r1", "resp')
    with pytest.raises(ReplayFileError) as err:
        read_responses(path)
    assert str(err.value) == (
        f"{path}:1: the last line is cut off (Unterminated string starting at at column 17), as a truncated write "
        "leaves it; complete it or delete it"
    )
    line = '{"id": "<row id>", "response": "<answer>"}'
    for target, what in ((tmp_path / "none.jsonl", "does not exist"), (tmp_path, "is a folder")):
        with pytest.raises(ReplayFileError) as err:
            read_responses(target)
        assert (
            str(err.value)
            == f"responses file {target} {what}; give the JSON-lines file of recorded answers, one {line} per line"
        )


def test_preview_shows_five_and_counts_the_rest():
    assert preview(list("abcde")) == "a, b, c, d, e"
    assert preview(list("abcdef")) == "a, b, c, d, e, and 1 more"
    assert preview(list("abcdefgh"), 2) == "a, b, and 6 more"


# --------------------------------------------------------------------------- mmr3_replay in process


def replay(path: Path, ids: list[str]) -> Replay:
    import datasets

    lm = lmms_eval_models.get_model("mmr3_replay").create_from_arg_string(f"responses={path}", {"batch_size": "1"})
    lm.task_dict = {"t": {"test": datasets.Dataset.from_dict({"id": ids})}}
    return lm


def request(doc_id: int, task: str = "t") -> Instance:
    metadata = {"task": task, "doc_id": doc_id, "repeats": 1}
    return Instance("generate_until", (f"q{doc_id}", {}, None, doc_id, task, "test"), idx=0, metadata=metadata)


def write(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_every_missing_id_is_listed_before_any_answer(tmp_path):
    lm = replay(write(tmp_path / "r.jsonl", [{"id": "a", "response": "x"}]), ["a", "b", "c"])
    sampled = request(1)
    with pytest.raises(SystemExit) as err:
        lm.generate_until([request(0), sampled, sampled, request(2)])
    message = str(err.value)
    assert (
        f"mmr3_replay: no response for row 'b' (task t) in {tmp_path / 'r.jsonl'}, nor for 1 more rows ('c')" in message
    )


def test_too_few_responses_for_a_repeated_query_names_the_line(tmp_path):
    lm = replay(
        write(tmp_path / "r.jsonl", [{"id": "a", "response": "x"}, {"id": "b", "responses": ["1", "2"]}]), ["a", "b"]
    )
    sampled = request(1)
    assert lm.generate_until([request(0), sampled, sampled]) == ["x", "1", "2"]
    with pytest.raises(SystemExit, match=rf"row 'b' \(task t\) is asked 3 times, but {tmp_path / 'r.jsonl'}:2 holds 2"):
        lm.generate_until([sampled, sampled, sampled])


def test_responses_no_query_read_are_counted_in_a_warning(tmp_path, caplog):
    """Found in review: an All task reads the first of a "responses" list; the rest went unnoticed."""
    path = write(
        tmp_path / "r.jsonl", [{"id": "a", "responses": ["zzz wrong", "orange", "x"]}, {"id": "b", "response": "y"}]
    )
    lm = replay(path, ["a", "b"])
    assert lm.generate_until([request(0), request(1)]) == ["zzz wrong", "y"]
    assert lm.partly_read() == [(None, "a")]
    with caplog.at_level(logging.WARNING, logger="mmr3"):
        lm.clean()
    assert f"1 lines of {path} hold more responses than any query read, so only the first ones" in caplog.text
    lm = replay(path, ["a", "b"])
    sampled = request(0)
    assert lm.generate_until([sampled, sampled, sampled, request(1)]) == ["zzz wrong", "orange", "x", "y"]
    assert lm.partly_read() == []  # the Sampling task read all three


def test_lines_no_query_asked_for_are_counted_in_a_warning(tmp_path, caplog):
    lines = [{"id": i, "response": i} for i in ("a", "b", "c")] + [{"id": "a", "task": "other", "response": "z"}]
    lm = replay(write(tmp_path / "r.jsonl", lines), ["a", "b", "c"])
    assert lm.generate_until([request(0)]) == ["a"]
    with caplog.at_level(logging.WARNING, logger="mmr3"):
        lm.clean()
    expected = f"mmr3_replay: 3 responses in {tmp_path / 'r.jsonl'} were not asked for (ids b, c, a (task other))"
    assert expected in caplog.text


def test_a_task_without_row_ids_is_refused(tmp_path):
    import datasets

    lm = replay(write(tmp_path / "r.jsonl", [{"id": "a", "response": "x"}]), ["a"])
    lm.task_dict = {"mme": {"test": datasets.Dataset.from_dict({"question_id": ["q1"]})}}
    with pytest.raises(SystemExit, match=r'task mme has no row ids \(no "id" column\); it replays MM-R³ tasks'):
        lm.generate_until([request(0, task="mme")])


@pytest.mark.parametrize(
    "arg_string, message",
    [
        ("", "mmr3_replay needs responses=FILE"),
        ("responses=r.jsonl,batch=4", "mmr3_replay: unknown model_args ['batch']; it takes only responses=FILE"),
    ],
)
def test_replay_model_args_are_checked(arg_string, message):
    with pytest.raises(SystemExit, match=message.replace("[", r"\[").replace("]", r"\]")):
        lmms_eval_models.get_model("mmr3_replay").create_from_arg_string(arg_string)


# --------------------------------------------------------------------------- the shared pretrained check


@pytest.mark.parametrize(
    "value, local",
    [
        ("llava-hf/llava-1.5-7b-hf", False),  # a hub id: org/name
        ("gpt2", False),
        ("/llava", True),  # one slash, as a hub id has: the leading one decides
        ("./llava", True),
        ("../llava", True),
        ("~/llava", True),
        ("models/llava/v1", True),  # two slashes: no hub id has them
        ("here", True),  # a folder of that name exists in the working directory
    ],
)
def test_what_looks_like_a_local_path(tmp_path, monkeypatch, value, local):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path)
    assert looks_local(value) is local


def test_check_pretrained_passes_hub_ids_and_real_folders_and_expands_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    assert check_pretrained("llava-hf/llava-1.5-7b-hf", "pretrained=") == "llava-hf/llava-1.5-7b-hf"
    assert check_pretrained(str(tmp_path / "ckpt"), "pretrained=") == str(tmp_path / "ckpt")
    assert check_pretrained("~/ckpt", "pretrained=") == str(tmp_path / "ckpt")  # transformers would not expand ~
    with pytest.raises(PretrainedNotFoundError, match=r"^--pretrained ~/nothing: no such folder"):
        check_pretrained("~/nothing", "--pretrained ")


# --------------------------------------------------------------------------- the real lmms-eval command


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad_inputs")
    (root / "no-config").mkdir()
    (root / "null.jsonl").write_text('{"id": "rephrase-001/r1", "response": "cat"}\n{"id": "x", "response": null}\n')
    (root / "partial.jsonl").write_text('{"id": "rephrase-001/r1", "response": "cat"}\n')
    return {"root": str(root), "tiny": str(tiny_checkpoint("llava", tmp_path_factory))}


# case -> (model, --model_args, more flags, the message); {root} and {tiny} come from `bad_inputs`.
CLI_CASES = {
    "unknown-model-arg": ("mmr3_llava", "pretrained=x,temprature=0", [], "unknown model_args ['temprature']"),
    "no-pretrained": ("mmr3_blip2", "dtype=float32", [], "mmr3_blip2 needs pretrained=<hub id or local folder>"),
    "batch-size": ("mmr3_llava", "pretrained=x", ["--batch_size", "auto"], "batch_size must be a positive integer"),
    "image-aspect": ("mmr3_llava", "pretrained=x,image_aspect=letterbox", [], "image_aspect must be 'pad' or 'crop'"),
    "pretrained-missing": ("mmr3_llava", "pretrained=/no/such", [], "mmr3_llava: pretrained=/no/such: no such folder"),
    "pretrained-no-config": (
        "mmr3_blip2", "pretrained={root}/no-config", [], "pretrained={root}/no-config: the folder holds no config.json"
    ),
    "wrong-family": (
        "mmr3_blip2", "pretrained={tiny},dtype=float32", [], "is a 'llava' checkpoint, not BLIP-2 (model_type blip-2)"
    ),
    "bad-dtype": ("mmr3_llava", "pretrained={tiny},dtype=float8", [], "dtype='float8' is not supported; use auto"),
    "replay-file-missing": (
        "mmr3_replay", "responses={root}/none.jsonl", [], "mmr3_replay: responses file {root}/none.jsonl does not exist"
    ),
    "replay-malformed": (
        "mmr3_replay", "responses={root}/null.jsonl", [], '{root}/null.jsonl:2: "response" must be a string, got null'
    ),
    "replay-missing-id": (
        "mmr3_replay", "responses={root}/partial.jsonl", [],
        "no response for row 'rephrase-001/r2' (task mmr3_mini_rephrase) in {root}/partial.jsonl",
    ),
    "gen-kwargs": (
        "mmr3_llava", "pretrained={tiny},dtype=float32", ["--gen_kwargs", "image_aspect_ratio=pad"],
        "mmr3_llava, task mmr3_mini_rephrase: unsupported generation_kwargs ['image_aspect_ratio']",
    ),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CLI_CASES))
def test_lmms_eval_stops_with_our_one_line_message_and_exit_1(bad_inputs, tmp_path, case):
    model, model_args, flags, message = (
        [f.format(**bad_inputs) for f in v] if isinstance(v, list) else v.format(**bad_inputs) for v in CLI_CASES[case]
    )
    run = run_lmms_cli(
        tmp_path / "out", "--model", model, "--model_args", model_args, "--tasks", "mmr3_mini_rephrase",
        "--limit", "3", *flags,
    )  # fmt: skip
    assert run.proc.returncode == 1, run.output[-3000:]
    assert any(line.startswith("mmr3: ") and message in line for line in run.output.splitlines()), run.output[-3000:]
    assert "Traceback" not in run.output
    assert not list(run.out_dir.rglob("*_results.json"))


def test_an_embedding_model_that_does_not_load_stops_the_scoring_with_our_message(tmp_path):
    """The run answered every query; scoring then needs the encoder, and a bad one is named, exit 1."""
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"id": f"rephrase-001/r{i}", "response": "cat"}) + "\n" for i in (1, 2, 3)))
    run = run_lmms_cli(
        tmp_path / "out", "--model", "mmr3_replay", "--model_args", f"responses={answers}",
        "--tasks", "mmr3_mini_rephrase", "--limit", "3", env={"MMR3_EMBEDDING_MODEL": str(tmp_path / "no-encoder")},
    )  # fmt: skip
    assert run.proc.returncode == 1, run.output[-3000:]
    lines = [line for line in run.output.splitlines() if line.startswith("mmr3: Could not load the embedding model")]
    assert lines and f"{tmp_path / 'no-encoder'}" in lines[0], run.output[-3000:]
    assert "Traceback" not in run.output
    assert not list(run.out_dir.rglob("*_results.json"))
