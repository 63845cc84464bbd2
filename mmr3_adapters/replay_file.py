"""The responses file of `mmr3_replay`: a strict JSON-lines reader (`read_responses`).

Free of lmms-eval, so that the rules a recorded answer must follow live in one small module that
the tests, the mutation run (tools/mutation/) and other harnesses can load on their own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmr3_tasks.errors import MMR3Error


class ReplayFileError(MMR3Error, ValueError):
    """A responses file of `mmr3_replay` that is missing or malformed; the message names FILE:LINE."""


ReplayKey = tuple[str | None, str]  # (the lmms-eval task a line is scoped to, or None for every task; row id)
LINE_FORMAT = '{"id": "<row id>", "response": "<answer>"}'
LINE_KEYS = ("id", "task", "response", "responses")


@dataclass(frozen=True)
class Recorded:
    """One line of a responses file: its line number (for messages) and the answers it gives."""

    line: int
    texts: tuple[str, ...]


def read_responses(path: str | Path) -> dict[ReplayKey, Recorded]:
    """The answers of an `mmr3_replay` responses file, keyed by (task or None, row id).

    Strict, so that nothing is scored other than as written: every line is one JSON object with a
    string "id", an optional string "task", and either "response" (a string) or "responses" (a
    non-empty list of strings). Blank lines are skipped; a UTF-8 byte-order mark is allowed.

    Raises:
        ReplayFileError: naming FILE:LINE, what is wrong and the fix, for a missing file, bytes that
            are not UTF-8, a line that is not a JSON object (or was cut off by a truncated write),
            an unknown or repeated key, a missing id, an answer of the wrong type, or an id that
            an earlier line already answers for the same task.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ReplayFileError(
            f"responses file {path} {what}; give the JSON-lines file of recorded answers, one {LINE_FORMAT} per line"
        )
    lines = path.read_bytes().split(b"\n")
    answers: dict[ReplayKey, Recorded] = {}
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        where = f"{path}:{n}"
        try:
            text = raw.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError as err:
            raise ReplayFileError(
                f"{where}: not UTF-8 text (byte {raw[err.start : err.start + 1]!r}, the line's byte {err.start + 1}); "
                "save the file as UTF-8"
            ) from None
        row = _json_line(text, where, last=n == len(lines))  # the last piece: no newline after it
        key, texts = _replay_line(row, where)
        if key in answers:
            scope = f"task {key[0]}" if key[0] is not None else 'every task (no "task")'
            raise ReplayFileError(
                f"{where}: id {key[1]!r} for {scope} is already answered on line {answers[key].line}; "
                "keep one of the two lines"
            )
        answers[key] = Recorded(n, texts)
    return answers


class _RepeatedKeys(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise _RepeatedKeys(repeated)
    return dict(pairs)


def _json_line(text: str, where: str, last: bool) -> dict[str, Any]:
    try:
        row = json.loads(text, object_pairs_hook=_unique_keys)  # plain json.loads keeps the last of two "id"s
    except _RepeatedKeys as err:
        raise ReplayFileError(f"{where}: key {', '.join(map(repr, err.args[0]))} given twice; keep one") from None
    except json.JSONDecodeError as err:
        if last:
            raise ReplayFileError(
                f"{where}: the last line is cut off ({err.msg} at column {err.colno}), as a truncated write "
                "leaves it; complete it or delete it"
            ) from None
        raise ReplayFileError(
            f"{where}: not JSON ({err.msg} at column {err.colno}); each line is one object, {LINE_FORMAT}"
        ) from None
    if not isinstance(row, dict):
        raise ReplayFileError(f"{where}: expected a JSON object, got {_describe(row)}; each line is {LINE_FORMAT}")
    return row


def _replay_line(row: dict[str, Any], where: str) -> tuple[ReplayKey, tuple[str, ...]]:
    """One parsed line -> its key and answers, or ReplayFileError."""
    unknown = sorted(set(row) - set(LINE_KEYS))
    if unknown:
        raise ReplayFileError(
            f'{where}: unknown key(s) {unknown}; a line holds "id", "response" or "responses", and optionally "task"'
        )
    if "id" not in row:
        raise ReplayFileError(f'{where}: no "id"; give the row id the answer is for: {LINE_FORMAT}')
    row_id, task = row["id"], row.get("task")
    if not isinstance(row_id, str) or not row_id:
        raise ReplayFileError(f'{where}: "id" must be a row id string ("rephrase-001/r1"), got {_describe(row_id)}')
    if task is not None and (not isinstance(task, str) or not task):
        raise ReplayFileError(f'{where}: "task" must be an lmms-eval task name, got {_describe(task)}')
    if "response" in row and "responses" in row:
        raise ReplayFileError(f'{where}: both "response" and "responses"; give one of them')
    if "response" in row:
        text = row["response"]
        if isinstance(text, list):
            raise ReplayFileError(
                f'{where}: "response" holds a list; repeated answers (the Sampling protocol) go in "responses": [...]'
            )
        if not isinstance(text, str):
            fix = 'write "" for an empty answer' if text is None else "write the answer as a JSON string"
            raise ReplayFileError(f'{where}: "response" must be a string, got {_describe(text)}; {fix}')
        return (task, row_id), (text,)
    if "responses" not in row:
        raise ReplayFileError(f'{where}: no "response" or "responses"; each line is {LINE_FORMAT}')
    texts = row["responses"]
    if not isinstance(texts, list):
        raise ReplayFileError(
            f'{where}: "responses" must be a list of strings, got {_describe(texts)}; '
            'a single answer goes in "response": "..."'
        )
    if not texts:
        raise ReplayFileError(f'{where}: "responses" is empty; give at least one answer ("" for an empty one)')
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ReplayFileError(f'{where}: "responses"[{i}] must be a string, got {_describe(text)}')
    return (task, row_id), tuple(texts)


def _describe(value: Any) -> str:
    """A JSON value as a message names it: `null`, `the number 42`, `the string "abc"`."""
    shown = json.dumps(value, ensure_ascii=False)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    if value is None:
        return "null"
    kind = (
        "a boolean" if isinstance(value, bool)
        else "the number" if isinstance(value, (int, float))
        else "the string" if isinstance(value, str)
        else "a list" if isinstance(value, list)
        else "an object"
    )  # fmt: skip
    return f"{kind} {shown}"


def preview(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown if len(items) <= n else f"{shown}, and {len(items) - n} more"
