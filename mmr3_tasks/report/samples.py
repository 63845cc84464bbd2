"""lmms-eval `--log_samples` files -> the checked payloads our tasks log under `acc`.

Read by `mmr3 score` (every number from the samples alone) and by the paired comparison (per-group
scores of two runs). Every line is checked; each way one can be unusable is a `ReportInputError`
naming `file:line` and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmr3_tasks import schema, taskdefs
from mmr3_tasks.report.errors import ReportInputError, json_kind

SAMPLES_HINT = "rerun lmms-eval with --log_samples (only our process_results writes this payload)"


def taskdefs_by_name(name: str) -> taskdefs.TaskDef:
    return next(d for d in taskdefs.TASK_DEFS if d.name == name)


def payload_task(payload: dict) -> str:
    """The lmms-eval task that wrote a (checked) payload: its `task`, its protocol and its data.

    lmms-eval's sample lines do not name their task, and file names can change, so the payload
    says: `responses` (a list) is the Sampling protocol, `response` the All protocol, and a
    `demo:` data fingerprint the demo set's `mmr3_mini_*` tasks.
    """
    protocol = "sampling" if "responses" in payload else "all"
    source = "demo" if str(payload.get("data") or "").startswith("demo:") else "benchmark"
    for d in taskdefs.TASK_DEFS:
        if (d.task, d.protocol, d.data) == (payload["task"], protocol, source):
            return d.name
    raise KeyError((payload["task"], protocol, source))


def check_payload(payload: object, where: str) -> str:
    """Checks one sample line's payload (what `hooks.process_results` writes); returns its task name."""
    if not isinstance(payload, dict):
        found = "nothing" if payload is None else json_kind(payload)
        raise ReportInputError(
            f"{where}: no MM-R³ payload under 'acc' (found {found}); not a samples file of an mmr3 task: {SAMPLES_HINT}"
        )
    missing = [k for k in ("id", "group_id", "task", "answers") if k not in payload]
    if "response" not in payload and "responses" not in payload:
        missing.append("response (or responses)")
    if missing:
        raise ReportInputError(f"{where}: the payload under 'acc' lacks {', '.join(missing)}; {SAMPLES_HINT}")

    def bad(key: str, expected: str) -> ReportInputError:
        return ReportInputError(f"{where}: '{key}' is {json_kind(payload[key])}, not {expected}; {SAMPLES_HINT}")

    for key in ("id", "group_id"):
        if not isinstance(payload[key], str) or not payload[key]:
            raise bad(key, "a non-empty string")
    if payload["task"] not in schema.TASKS:
        raise bad("task", f"one of {', '.join(schema.TASKS)}")
    answers = payload["answers"]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise bad("answers", "a non-empty list of strings")
    if "response" in payload and "responses" in payload:
        raise ReportInputError(f"{where}: the payload has both 'response' and 'responses'; {SAMPLES_HINT}")
    if "responses" in payload:
        texts = payload["responses"]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise bad("responses", "the Sampling protocol's list of response strings")
    else:
        if not isinstance(payload["response"], str):
            raise ReportInputError(
                f"{where}: 'response' is {json_kind(payload['response'])}, not a string: the model gave no text for "
                f'this row (an empty answer is ""); fix the model wrapper and rerun lmms-eval'
            )
        for key, kind in (("variant", str), ("group_size", int)):
            if key not in payload:
                raise ReportInputError(f"{where}: the payload under 'acc' lacks {key}; {SAMPLES_HINT}")
            if not isinstance(payload[key], kind) or isinstance(payload[key], bool):
                raise bad(key, "a string" if kind is str else "an integer")
    if not isinstance(payload.get("kinds", {}), dict):
        raise bad("kinds", "a mapping")
    if not isinstance(payload.get("data", ""), str):
        raise bad("data", "a data fingerprint string")
    try:
        return payload_task(payload)
    except KeyError:
        raise ReportInputError(
            f"{where}: a Sampling-protocol payload ('responses') on the demo set ({payload['data']}); no MM-R³ "
            f"task scores that: {SAMPLES_HINT}"
        ) from None


def sample_lines(path: Path):
    """(line number, sample) for each non-blank line of an lmms-eval samples file."""
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ReportInputError(f"{path}: a folder; give the *_samples_mmr3_*.jsonl files in it") from None
    except OSError as err:
        raise ReportInputError(f"{path}: cannot be read ({err.strerror}); give a *_samples_mmr3_*.jsonl") from None
    lines = raw.split(b"\n")
    if not raw.strip():
        raise ReportInputError(f"{path}: empty, no sample lines; lmms-eval writes one per query: rerun it")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ReportInputError(
                f"{path}:{n}: not UTF-8 text (byte {line[err.start]:#04x} at column {err.start + 1}); "
                "is it an lmms-eval samples file?"
            ) from None
        try:
            sample = json.loads(text)
        except json.JSONDecodeError as err:
            if n == len(lines):  # lmms-eval ends every line with a newline: this one was cut short
                raise ReportInputError(
                    f"{path}:{n}: the last line is cut short (truncated file): lmms-eval was interrupted while "
                    "writing it, or the copy is incomplete; rerun the evaluation or copy the file again"
                ) from None
            raise ReportInputError(
                f"{path}:{n}: not JSON ({err.msg}, column {err.colno}); is it an lmms-eval samples file?"
            ) from None
        if not isinstance(sample, dict):
            raise ReportInputError(f"{path}:{n}: {json_kind(sample)} where lmms-eval writes one sample object per line")
        yield n, sample


def read_payloads(paths: list[str]) -> dict[str, list[dict]]:
    """lmms-eval task name -> the payloads our tasks log under `acc` in lmms-eval's samples files.

    The task comes from each payload (`payload_task`), never from the file name, so a renamed file
    still scores as what it is, and one file may hold several tasks. Every line is checked
    (`check_payload`); a row id seen twice for one task, or two data sets in one task, is an
    error naming both lines: lmms-eval writes each row once, so they are two runs' files given
    together.
    """
    out: dict[str, list[dict]] = {}
    first: dict[tuple[str, str], str] = {}  # (task, id) -> where it was first seen
    data: dict[str, tuple[str, str]] = {}  # task -> (data fingerprint, where first seen)
    for path in map(Path, paths):
        for n, sample in sample_lines(path):
            where = f"{path}:{n}"
            payload = sample.get("acc")
            task_name = check_payload(payload, where)
            seen = first.setdefault((task_name, payload["id"]), where)
            if seen != where:
                raise ReportInputError(
                    f"{where}: row {payload['id']!r} of {task_name} again (first at {seen}); lmms-eval writes each "
                    "row once: are two runs' samples files given together?"
                )
            fingerprint = payload.get("data", "")
            known, at = data.setdefault(task_name, (fingerprint, where))
            if fingerprint != known:
                raise ReportInputError(
                    f"{where}: {task_name} on data {fingerprint or 'unknown'}, but {at} on {known or 'unknown'}; "
                    "give the samples of one run"
                )
            out.setdefault(task_name, []).append(payload)
    return out
