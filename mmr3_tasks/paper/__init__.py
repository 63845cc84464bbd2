"""The MM-R³ paper's published numbers (Tables 2-13), transcribed for comparison with our runs.

The numbers live in one CSV per paper table next to this module (`table2_rephrase.csv` ...
`table13_mask_shape.csv`), laid out to be checked against the paper line by line; each file's `#`
lines say what it holds and where the paper is inconsistent. Every score is a percentage as printed
(×100), with the paper's printed precision: two decimals in Tables 2-4, 7 and 10-13, one decimal in
Tables 5, 6, 8 and 9. Where the paper is inconsistent, the printed number is kept (see also
tests/test_paper_numbers.py). This module reads them into the dicts below, once, at import.
"""

from __future__ import annotations

import csv
import re
from importlib import resources

SOURCE = (
    "MM-R³: On (In-)Consistency of Multi-modal Large Language Models (MLLMs), ICLR 2025 submission "
    "(OpenReview 70YeidEcYR; same text as arXiv 2410.04778v1), Tables 2-13; the ACL 2025 Findings version "
    "(retitled '... Vision-Language Models (VLMs)') may report different numbers."
)

Scores = tuple[float, float, float, float]
"""(acc, s_gt, con, s_c), each ×100 as printed."""

FailureScores = tuple[float, float, float]
"""(s_gt, con, s_c), each ×100 as printed: Table 7 has no accuracy column."""

TASK_LABELS: dict[str, str] = {
    "rephrase": "Question Rephrasing",
    "restyle": "Image Restyling",
    "context": "Context Reasoning",
}
PROTOCOLS: tuple[str, ...] = ("sampling", "all")

# The paper's row order. The paper writes "LLaVa 1.5M" for LLaVA-1.5, "MoE-LLaVa" for MoE-LLaVA and, in
# Table 7 only, "BLIP3" for BLIP-3.
MODELS: tuple[str, ...] = (
    "BLIP-2",
    "mPLUG-Owl2",
    "LLaVA-1.5",
    "MoE-LLaVA",
    "Qwen-VL-Chat",
    "BLIP-3",
    "Gemini",
    "GPT-4V",
    "GPT-4o",
)
# The six open-source models: the only rows of Tables 8 and 9.
OPEN_MODELS: tuple[str, ...] = MODELS[:6]

# Checkpoints named in §4.1 / Appendix A.1. BLIP-2 is only "BLIP-2 FlanT5XXL" there; §5.2 names the
# adapter's base as LAVIS "blip2-t5 pretrain-flant5xxl".
MODEL_VERSIONS: dict[str, str] = {
    "BLIP-2": "FlanT5XXL",
    "mPLUG-Owl2": "mplug-owl2-llama2-7b",
    "LLaVA-1.5": "llava-v1.5-7b",
    "MoE-LLaVA": "MoE-LLaVA-Phi2-2.7B-4e-384",
    "Qwen-VL-Chat": "Qwen-VL-Chat",
    "BLIP-3": "xgen-mm-phi3-mini-instruct-r-v1",
    "Gemini": "gemini-1.5-flash",
    "GPT-4V": "gpt-4-vision-preview",
    "GPT-4o": "gpt-4o",
}

METRICS = ("acc", "s_gt", "con", "s_c")
FAILURE_METRICS = ("s_gt", "con", "s_c")
EMPTY_IGNORED_MARK = "*"  # Table 5's mark on cells where responses with empty output were ignored
MAIN_FILES = {"rephrase": "table2_rephrase.csv", "restyle": "table3_restyle.csv", "context": "table4_context.csv"}
BREAKDOWN_FILES = {
    "style": "table10_style.csv",
    "mask_color": "table11_mask_color.csv",
    "mask_lines": "table12_mask_lines.csv",
    "mask_shape": "table13_mask_shape.csv",
}
TEXT_COLUMNS = {"model", "variant", *BREAKDOWN_FILES}  # every other column holds numbers
NUMBER = re.compile(r"\d+(\.\d+)?")  # as printed: 40.10, 62.8, 224


def read_table(name: str, marked: bool = False) -> list[dict[str, str]]:
    """The rows of one table file, as column -> text; `#` lines are notes, not rows.

    Args:
        name: the file, next to this module.
        marked: whether a score may carry Table 5's `*` mark.

    Raises:
        ValueError: naming `file:line`, for a row with too few or too many cells, or a score that is
            not a number.
    """
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line and not line.startswith("#")]
    header = next(csv.reader([lines[0][1]]))
    rows = []
    for n, line in lines[1:]:
        cells = next(csv.reader([line]))
        if len(cells) != len(header):
            raise ValueError(f"{name}:{n}: {len(cells)} cells for the {len(header)} columns {','.join(header)}")
        row = dict(zip(header, cells, strict=True))
        for column, cell in row.items():
            number = cell.removesuffix(EMPTY_IGNORED_MARK) if marked else cell
            if column not in TEXT_COLUMNS and not NUMBER.fullmatch(number):
                raise ValueError(f"{name}:{n}: {column} is {cell!r}, not a number as printed (e.g. 40.10)")
        rows.append(row)
    return rows


def scores(row: dict[str, str], prefix: str = "", metrics: tuple[str, ...] = METRICS) -> tuple[float, ...]:
    """The `<prefix><metric>` cells of a row as numbers, e.g. prefix "all_" -> (all_acc, ..., all_s_c)."""
    return tuple(float(row[prefix + m].removesuffix(EMPTY_IGNORED_MARK)) for m in metrics)


def read_main() -> dict[str, dict[str, dict[str, Scores]]]:
    """Tables 2-4: task -> protocol -> model -> scores."""
    out: dict[str, dict[str, dict[str, Scores]]] = {}
    for task, name in MAIN_FILES.items():
        rows = read_table(name)
        out[task] = {p: {row["model"]: scores(row, f"{p}_") for row in rows} for p in PROTOCOLS}
    return out


def read_size() -> tuple[dict[str, dict[str, Scores]], set[tuple[str, str]]]:
    """Table 5: label -> task -> scores, and the (label, task) cells the paper marks *."""
    size: dict[str, dict[str, Scores]] = {}
    marked: set[tuple[str, str]] = set()
    for row in read_table("table5_size.csv", marked=True):
        label = row["model"]
        size[label] = {task: scores(row, f"{task}_") for task in TASK_LABELS}
        for task in TASK_LABELS:
            marks = {row[f"{task}_{m}"].endswith(EMPTY_IGNORED_MARK) for m in METRICS}
            if marks == {True, False}:
                raise ValueError(f"table5_size.csv: {label} {task}: the paper marks all four metrics or none")
            if marks == {True}:
                marked.add((label, task))
    return size, marked


def read_adapter() -> dict[str, dict[str, dict[str, Scores]]]:
    """Table 6: model -> "original" | "adapter" -> task -> scores."""
    out: dict[str, dict[str, dict[str, Scores]]] = {}
    for row in read_table("table6_adapter.csv"):
        out.setdefault(row["model"], {})[row["variant"]] = {task: scores(row, f"{task}_") for task in TASK_LABELS}
    return out


def read_failure_cases() -> dict[str, dict[str, FailureScores]]:
    """Table 7: model -> task -> (s_gt, con, s_c)."""
    return {
        row["model"]: {task: scores(row, f"{task}_", FAILURE_METRICS) for task in TASK_LABELS}
        for row in read_table("table7_failure_cases.csv")
    }


def read_resolution() -> dict[str, dict[int, Scores]]:
    """Table 8: model -> resolution (px) -> scores."""
    out: dict[str, dict[int, Scores]] = {}
    for row in read_table("table8_resolution.csv"):
        out.setdefault(row["model"], {})[int(row["resolution"])] = scores(row)
    return out


def read_temperature() -> dict[str, dict[str, dict[float, Scores]]]:
    """Table 9: model -> task -> temperature -> scores."""
    out: dict[str, dict[str, dict[float, Scores]]] = {}
    for row in read_table("table9_temperature.csv"):
        by_task = out.setdefault(row["model"], {})
        for task in TASK_LABELS:
            by_task.setdefault(task, {})[float(row["temperature"])] = scores(row, f"{task}_")
    return out


def read_breakdown() -> dict[str, dict[str, dict[str, Scores]]]:
    """Tables 10-13: kind -> model -> value of the kind -> scores."""
    out: dict[str, dict[str, dict[str, Scores]]] = {}
    for kind, name in BREAKDOWN_FILES.items():
        by_model = out[kind] = {}
        for row in read_table(name):
            by_model.setdefault(row["model"], {})[row[kind]] = scores(row)
    return out


# Tables 2-4: task -> protocol -> model. "sampling" queries the same input 4 times; "all" scores the
# variants (rephrasings, styles, masks).
MAIN: dict[str, dict[str, dict[str, Scores]]] = read_main()
# Table 5 (model size): label -> task; SIZE_EMPTY_IGNORED: the (label, task) cells the paper marks *
# (responses with empty output were ignored).
SIZE, SIZE_EMPTY_IGNORED = read_size()
# Table 6 (§5.2): model -> "original" | "adapter" -> task.
ADAPTER: dict[str, dict[str, dict[str, Scores]]] = read_adapter()
# Table 7 (Appendix A.5, "failure cases": only answers not fully correct under the changes): model -> task.
FAILURE_CASES: dict[str, dict[str, FailureScores]] = read_failure_cases()
# Table 8 (Appendix A.6): Image Restyling at 224, 640 or 1024 px: model -> resolution.
RESOLUTION: dict[str, dict[int, Scores]] = read_resolution()
# Table 9 (Appendix A.7): model -> task -> temperature.
TEMPERATURE: dict[str, dict[str, dict[float, Scores]]] = read_temperature()
# Tables 10-13 (Appendix A.8): kind -> model -> value. "style" is Image Restyling; the three "mask_*"
# kinds are Context Reasoning.
BREAKDOWN: dict[str, dict[str, dict[str, Scores]]] = read_breakdown()
# Each kind's values, in the paper's column order.
BREAKDOWN_VALUES: dict[str, tuple[str, ...]] = {
    kind: tuple(dict.fromkeys(v for values in by_model.values() for v in values))
    for kind, by_model in BREAKDOWN.items()
}


def paper_scores(task: str, protocol: str = "all") -> dict[str, Scores]:
    """The paper's per-model scores for one task (Tables 2-4).

    Args:
        task: "rephrase", "restyle" or "context".
        protocol: "all" (scores over the variants) or "sampling" (4 identical queries).

    Returns:
        Model display name -> (acc, s_gt, con, s_c), in the paper's row order.

    Raises:
        KeyError: the task or protocol is not one of the above.
    """
    if task not in MAIN:
        raise KeyError(f"unknown MM-R³ task {task!r}; expected one of {', '.join(MAIN)}")
    if protocol not in PROTOCOLS:
        raise KeyError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    return MAIN[task][protocol]
