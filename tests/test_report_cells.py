"""Every cell of every table `mmr3 report` prints, against values worked out in this file.

The results files give each metric of each task, protocol and run its own recognisable number
(`coded`): QR All Con of the first run is 15.30, IR Sampling S_GT of the second 20.21. A swap of
two columns, protocols, tasks or runs therefore changes a cell. The expected tables are laid out
here from the documented layout (README.md, docs/compare.md), and the paper's rows are read from
the CSVs in mmr3_tasks/paper/ by this file's own reader, not by `mmr3_tasks.paper`.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import random
import re
from decimal import Decimal

import pytest

from mmr3_tasks import cli, embedding, metrics, report
from mmr3_tasks.embedding import get_embedder, requested_embedding_model
from tests.conftest import ROOT
from tests.report_fixtures import reference_interval, write_run

HEADLINE = ("acc", "s_gt", "con", "s_c")
EXTRAS = ("exact_agreement", "consistent_correct", "consistent_wrong", "inconsistent")
TASKS = {"rephrase": "QR", "restyle": "IR", "context": "CR"}
PAPER = ROOT / "mmr3_tasks" / "paper"

# --------------------------------------------------------------------------- the coded values

TASK_CODE = {"rephrase": 10, "restyle": 20, "context": 30}
PROTOCOL_CODE = {"sampling": 0, "all": 5}
METRIC_CODE = dict(zip(HEADLINE + EXTRAS, (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8), strict=True))
# Tables 10-13: the build's column -> (its infix in the metric keys, its kinds); each kind has its own base.
KINDS = {
    "style": ("style", ["candy", "mosaic", "udnie", "grayscale"]),
    "mask_lines": ("lines", ["1", "3", "5", "7"]),
    "mask_shape": ("shape", ["rectangle", "ellipse"]),
    "mask_color": ("color", ["red", "blue", "green", "yellow", "white", "black"]),
}
KIND_CODE = {
    (column, kind): 40 + 2 * i
    for i, (column, kind) in enumerate((c, k) for c, (_, kinds) in KINDS.items() for k in kinds)
}  # candy 40 ... grayscale 46, lines 1 at 48 ... black at 70
TASK_KINDS = {"restyle": ["style"], "context": ["mask_lines", "mask_shape", "mask_color"]}


def coded(run: int, task: str, protocol: str, metric: str) -> float:
    """Tens: the task; 5: All (0: Sampling); first decimal: the metric; second: the run."""
    return round(TASK_CODE[task] + PROTOCOL_CODE[protocol] + METRIC_CODE[metric] + run / 100, 2)


def coded_kind(run: int, column: str, kind: str, metric: str) -> float:
    return round(KIND_CODE[(column, kind)] + METRIC_CODE[metric] + run / 100, 2)


def coded_interval(run: int, task: str, protocol: str, metric: str) -> list[float]:
    v = coded(run, task, protocol, metric)
    return [round(v - 1.5 - run, 2), round(v + 2.5 + run, 2)]


def groups(task: str, protocol: str) -> int:
    return 200 + TASK_CODE[task] + PROTOCOL_CODE[protocol]  # the same in every run: QR All 215


def complete(run: int, task: str, protocol: str) -> int:
    return groups(task, protocol) - 9 - run


def empty(run: int, task: str, protocol: str) -> int:
    return TASK_CODE[task] // 10 + PROTOCOL_CODE[protocol] + 10 * run


def coded_scores(run: int, task: str, protocol: str) -> dict:
    """Every metric an mmr3 task writes, each with its own value."""
    out: dict[str, object] = {m: coded(run, task, protocol, m) for m in HEADLINE + EXTRAS}
    out |= {f"{m}_ci95": coded_interval(run, task, protocol, m) for m in HEADLINE}
    out |= {
        "responses": 3 * groups(task, protocol),
        "groups": groups(task, protocol),
        "groups_complete": complete(run, task, protocol),
        "empty_responses": empty(run, task, protocol),
        "duplicate_responses": 0,
        "embedding_model": "sentence-transformers/all-MiniLM-L6-v2",
        "data_fingerprint": f"build:{task}",
    }
    if protocol == "all":
        for column in TASK_KINDS.get(task, []):
            infix, kinds = KINDS[column]
            out |= {f"{m}_{infix}_{k}": coded_kind(run, column, k, m) for k in kinds for m in HEADLINE}
    return out


FULL = [(t, p) for t in TASKS for p in ("all", "sampling")]
LABELS = ["mmr3_llava (model-a)", "mmr3_llava (model-b)", "mmr3_llava (model-c)"]
PARTIAL_RUN = 2  # model-c: only QR All Acc and Con, as an older results file might hold


def partial_value(metric: str) -> float:
    """model-c's numbers carry two more digits: Markdown rounds them to the code, CSV keeps them."""
    return round(coded(PARTIAL_RUN, "rephrase", "all", metric) + 0.0034, 4)


PARTIAL = {m: partial_value(m) for m in ("acc", "con")}  # QR All Acc 15.1234, Con 15.3234


def write_coded_runs(tmp_path) -> list[str]:
    """Two runs with every task of both protocols in one results file each, and a partial third."""
    folders = []
    for run, name in enumerate(("model-a", "model-b")):
        tasks = {f"mmr3_{t}" + ("_sampling" if p == "sampling" else ""): coded_scores(run, t, p) for t, p in FULL}
        folders.append(write_run(tmp_path / name, f"pretrained=/ckpt/{name},dtype=float16", tasks))
    folders.append(write_run(tmp_path / "model-c", "pretrained=/ckpt/model-c", {"mmr3_rephrase": PARTIAL}))
    return [str(f) for f in folders]


def run_cells(run: int, cells: list[tuple[str, str, str]]) -> list[object]:
    """The run's value for each (task, protocol, metric); None where its results file has none."""
    if run == PARTIAL_RUN:
        return [PARTIAL.get(c[2]) if c[:2] == ("rephrase", "all") else None for c in cells]
    return [coded(run, *c) for c in cells]


# --------------------------------------------------------------------------- the paper's CSVs, read here


def paper_csv(name: str) -> list[dict[str, str]]:
    lines = [line for line in (PAPER / name).read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    return list(csv.DictReader([line for line in lines if line.strip()]))


MAIN_CSV = {"rephrase": "table2_rephrase.csv", "restyle": "table3_restyle.csv", "context": "table4_context.csv"}
BREAKDOWN_CSV = {
    "style": "table10_style.csv",
    "mask_color": "table11_mask_color.csv",
    "mask_lines": "table12_mask_lines.csv",
    "mask_shape": "table13_mask_shape.csv",
}


def paper_models() -> list[str]:
    return [row["model"] for row in paper_csv(MAIN_CSV["rephrase"])]


def paper_main(task: str) -> dict[str, dict[str, float]]:
    return {row["model"]: {k: float(v) for k, v in row.items() if k != "model"} for row in paper_csv(MAIN_CSV[task])}


def paper_adapter() -> dict[tuple[str, str], dict[str, str]]:
    return {(row["model"], row["variant"]): row for row in paper_csv("table6_adapter.csv")}


# --------------------------------------------------------------------------- the expected tables

MAIN_HEADER = ["Model", "Samp Acc", "Samp S_GT", "Samp Con", "Samp S_C", "All Acc", "All S_GT", "All Con", "All S_C"]
SUMMARY_HEADER = ["Model"] + [f"{s} {m}" for s in ("QR", "IR", "CR") for m in ("Acc", "S_GT", "Con", "S_C")]
BEYOND_HEADER = [
    "Model", "Task", "Exact agr.", "Cons.-correct", "Cons.-wrong", "Inconsistent",
    "Acc 95% CI", "Con 95% CI", "Groups", "Complete", "Empty",
]  # fmt: skip
MAIN_TITLES = {
    "rephrase": "Table 2: Question Rephrasing",
    "restyle": "Table 3: Image Restyling",
    "context": "Table 4: Context Reasoning",
}
SUMMARY_TITLE = "Summary: All protocol, three tasks (layout of Tables 5-6)"
BEYOND_TITLE = "Beyond the paper: agreement, outcome split, 95% group-bootstrap intervals, counts"
BREAKDOWN_TITLES = {
    "style": "Table 10: style (Image Restyling) — Acc/S_GT/Con/S_C",
    "mask_color": "Table 11: mask colour (Context Reasoning) — Acc/S_GT/Con/S_C",
    "mask_lines": "Table 12: number of mask lines (Context Reasoning) — Acc/S_GT/Con/S_C",
    "mask_shape": "Table 13: mask shape (Context Reasoning) — Acc/S_GT/Con/S_C",
}
BREAKDOWN_TASK = {"style": "restyle", "mask_color": "context", "mask_lines": "context", "mask_shape": "context"}


def two(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def expected_tables(with_paper: bool) -> dict[str, tuple[list[str], list[list[object]]]]:
    """Title -> (header, rows of Python values), in the order `mmr3 report` prints them."""
    out = {}
    models = paper_models() if with_paper else []
    for task, title in MAIN_TITLES.items():
        cells = [(task, p, m) for p in ("sampling", "all") for m in HEADLINE]
        paper = paper_main(task)
        rows = [[f"{model} (paper)"] + [paper[model][f"{p}_{m}"] for _, p, m in cells] for model in models]
        rows += [[label, *run_cells(run, cells)] for run, label in enumerate(LABELS)]
        out[title] = (MAIN_HEADER, rows)

    cells = [(t, "all", m) for t in TASKS for m in HEADLINE]
    mains = {t: paper_main(t) for t in TASKS}
    rows = [[f"{model} (paper)"] + [mains[t][model][f"all_{m}"] for t, _, m in cells] for model in models]
    if with_paper:
        adapter = paper_adapter()
        rows += [
            [f"{model} + adapter (paper)"] + [float(row[f"{t}_{m}"]) for t, _, m in cells]
            for (model, variant), row in adapter.items()
            if variant == "adapter"
        ]
    rows += [[label, *run_cells(run, cells)] for run, label in enumerate(LABELS)]
    out[SUMMARY_TITLE] = (SUMMARY_HEADER, rows)

    rows = []
    for run, label in enumerate(LABELS):
        for task, protocol in FULL:  # QR, QR (sampling), IR, IR (sampling), CR, CR (sampling)
            name = TASKS[task] + (" (sampling)" if protocol == "sampling" else "")
            if run == PARTIAL_RUN:
                if (task, protocol) == ("rephrase", "all"):
                    rows.append([label, name] + [None] * 9)
                continue
            rows.append(
                [label, name]
                + [coded(run, task, protocol, m) for m in EXTRAS]
                + [coded_interval(run, task, protocol, "acc"), coded_interval(run, task, protocol, "con")]
                + [groups(task, protocol), complete(run, task, protocol), empty(run, task, protocol)]
            )
    out[BEYOND_TITLE] = (BEYOND_HEADER, rows)

    for column in ("style", "mask_color", "mask_lines", "mask_shape"):
        kinds = KINDS[column][1]
        rows = []
        if with_paper:
            by_model: dict[str, dict[str, str]] = {}
            for row in paper_csv(BREAKDOWN_CSV[column]):
                by_model.setdefault(row["model"], {})[row[column]] = "/".join(f"{float(row[m]):.2f}" for m in HEADLINE)
            rows += [[f"{model} (paper)"] + [cells[k] for k in kinds] for model, cells in by_model.items()]
        for run, label in enumerate(LABELS[:PARTIAL_RUN]):  # model-c has no restyle or context: no row
            rows.append([label] + ["/".join(two(coded_kind(run, column, k, m)) for m in HEADLINE) for k in kinds])
        out[BREAKDOWN_TITLES[column]] = (["Model", *kinds], rows)
    return out


# --------------------------------------------------------------------------- reading what was printed


def parse_markdown(text: str) -> dict[str, dict]:
    """`### title`, `_note_` lines, a header, the `|---|` line, rows: title -> header, rows, notes."""
    tables: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("### "):
            current = tables.setdefault(line[4:], {"header": None, "rows": [], "notes": []})
        elif current is None or not line.strip():
            continue
        elif line.startswith("_") and line.endswith("_"):
            current["notes"].append(line[1:-1])
        elif line.startswith("|---"):
            continue
        elif line.startswith("| "):
            cells = line[2:-2].split(" | ")
            if current["header"] is None:
                current["header"] = cells
            else:
                current["rows"].append(cells)
        else:
            raise AssertionError(f"unexpected line in the Markdown output: {line!r}")
    return tables


def parse_csv(text: str) -> dict[str, dict]:
    """`# title`, `# note` rows, a header row, rows; a `#` row after data rows starts the next table."""
    tables: dict[str, dict] = {}
    current = None
    for row in csv.reader(io.StringIO(text)):
        if not row:
            continue
        if len(row) == 1 and row[0].startswith("# "):
            if current is None or current["header"] is not None:
                current = tables.setdefault(row[0][2:], {"header": None, "rows": [], "notes": []})
            else:
                current["notes"].append(row[0][2:])
        elif current["header"] is None:
            current["header"] = row
        else:
            current["rows"].append(row)
    return tables


def markdown_cell(value: object) -> str:
    """The documented Markdown cells: two decimals, intervals `[lo, hi]` with one, `–` for no value."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list):
        return f"[{value[0]:.1f}, {value[1]:.1f}]"
    return str(value)


def assert_csv_cell(cell: str, value: object, where: str) -> None:
    """CSV keeps the full value: numbers as written, intervals as JSON, nothing for no value."""
    if value is None:
        assert cell == "", where
    elif isinstance(value, float):
        assert float(cell) == value, where
    elif isinstance(value, list):
        assert json.loads(cell) == value, where
    else:
        assert cell == str(value), where


def report_text(paths: list[str], capsys, *options: str) -> str:
    assert cli.main(["report", *paths, *options]) == 0
    out, err = capsys.readouterr()
    assert "error" not in err, err  # (the embedding model's loading bar may be there)
    return out


# --------------------------------------------------------------------------- the tables, cell by cell


@pytest.mark.parametrize("with_paper", [True, False])
def test_every_markdown_cell_of_every_table(tmp_path, capsys, with_paper):
    paths = write_coded_runs(tmp_path)
    text = report_text(paths, capsys, *([] if with_paper else ["--no-paper"]))
    printed = parse_markdown(text)
    expected = expected_tables(with_paper)
    assert list(printed) == list(expected)  # every table, in this order, and no other
    for title, (header, rows) in expected.items():
        table = printed[title]
        assert table["header"] == header, title
        assert table["notes"] == [], title  # no demo run, no pair: nothing to note
        assert [r[0] for r in table["rows"]] == [r[0] for r in rows], title
        for got, want in zip(table["rows"], rows, strict=True):
            assert got == [markdown_cell(v) for v in want], f"{title}: {want[0]}"
    # The same, spelled out for one row of each kind of table: read them against the codes above.
    a, c = LABELS[0], LABELS[PARTIAL_RUN]
    assert f"| {a} | 10.10 | 10.20 | 10.30 | 10.40 | 15.10 | 15.20 | 15.30 | 15.40 |" in text  # Table 2
    assert f"| {c} | – | – | – | – | 15.12 | – | 15.32 | – |" in text
    summary = "15.10 | 15.20 | 15.30 | 15.40 | 25.10 | 25.20 | 25.30 | 25.40 | 35.10 | 35.20 | 35.30 | 35.40"
    assert f"| {a} | {summary} |" in text  # All, never Sampling (10.x, 20.x, 30.x)
    assert (
        f"| {a} | IR (sampling) | 20.50 | 20.60 | 20.70 | 20.80 | [18.6, 22.6] | [18.8, 22.8] | 220 | 211 | 2 |" in text
    )
    assert f"| {a} | 40.10/40.20/40.30/40.40 | 42.10/42.20/42.30/42.40 | 44.10/44.20/44.30/44.40 |" in text


def test_every_csv_cell_of_every_table(tmp_path, capsys):
    paths = write_coded_runs(tmp_path)
    printed = parse_csv(report_text(paths, capsys, "--format", "csv"))
    expected = expected_tables(with_paper=True)
    assert list(printed) == list(expected)
    for title, (header, rows) in expected.items():
        table = printed[title]
        assert table["header"] == header and table["notes"] == [], title
        assert len(table["rows"]) == len(rows), title
        for got, want in zip(table["rows"], rows, strict=True):
            assert len(got) == len(want), f"{title}: {want[0]}"
            for column, cell, value in zip(header, got, want, strict=True):
                assert_csv_cell(cell, value, f"{title}: {want[0]}: {column}")


SMALL = report.Table(
    "T", ["Model", "Acc", "Acc 95% CI", "Task"], [["x", 1.5, [1.0, 2.5], None], ["y", None, None, "QR"]], note="n1\nn2"
)


def test_markdown_of_a_small_table_byte_for_byte():
    # Left-aligned first column, right-aligned numbers; two decimals, intervals with one, "–" for none.
    assert report.render_markdown(SMALL) == (
        "### T\n\n_n1_\n\n_n2_\n\n| Model | Acc | Acc 95% CI | Task |\n|---|---:|---:|---:|\n"
        "| x | 1.50 | [1.0, 2.5] | – |\n| y | – | – | QR |\n"
    )


def test_csv_of_a_small_table_byte_for_byte():
    # The full values: intervals as JSON, nothing for none; the notes as "# " rows.
    assert report.render_csv(SMALL) == (
        '# T\r\n# n1\r\n# n2\r\nModel,Acc,Acc 95% CI,Task\r\nx,1.5,"[1.0, 2.5]",\r\ny,,,QR\r\n'
    )


def test_breakdown_tables_skip_a_run_without_the_task_wherever_it_comes(tmp_path):
    paths = write_coded_runs(tmp_path)
    runs = report.load_runs([paths[PARTIAL_RUN], paths[0]])  # model-c, with no restyle or context, first
    tables = report.breakdown_tables(runs, with_paper=False)
    assert [t.title for t in tables] == list(BREAKDOWN_TITLES.values())
    for table, column in zip(tables, BREAKDOWN_TITLES, strict=True):
        kinds = KINDS[column][1]
        assert table.header == ["Model", *kinds]
        cells = ["/".join(two(coded_kind(0, column, k, m)) for m in HEADLINE) for k in kinds]
        assert table.rows == [[LABELS[0], *cells]]


def test_json_holds_every_value_of_every_run(tmp_path, capsys):
    paths = write_coded_runs(tmp_path)
    printed = json.loads(report_text(paths, capsys, "--format", "json"))
    assert sorted(printed) == sorted(LABELS)
    for run, label in enumerate(LABELS[:PARTIAL_RUN]):
        assert printed[label] == {f"{t}/{p}": coded_scores(run, t, p) for t, p in FULL} | {"demo": False}
    assert printed[LABELS[PARTIAL_RUN]] == {"rephrase/all": PARTIAL, "demo": False}


# --------------------------------------------------------------------------- the paired table

PAIRED_TITLE = "Paired comparison: each run against its base, All protocol (layout of Table 6)"
PAIRED_NOTE = (
    "Δ = run − base over the groups both runs scored; [lo, hi]: its 95% paired group-bootstrap interval "
    "(1000 resamples of the shared groups, seed 0)"
)
PAPER_NOTE = "paper rows: Table 6, Δ (paper) = its adapter row − its original row; the paper gives no intervals"
# Other − base per task and metric, chosen by hand: all different, of both signs.
DELTAS = {
    "rephrase": (2.5, -1.25, 10.75, 0.5),
    "restyle": (-4.0, 3.25, -0.75, 6.5),
    "context": (12.0, -7.5, 1.75, -2.25),
}


def signed_text(value: Decimal, digits: int) -> str:
    text = f"{abs(value):.{digits}f}"
    return ("-" if value < 0 and float(text) != 0 else "+") + text


PAPER_COLUMNS = [f"{t}_{m}" for t in TASKS for m in HEADLINE]  # table6_adapter.csv's, in Table 6's order


def paper_paired_rows() -> list[list[str]]:
    """Table 6 from its CSV: original, adapter, and adapter − original in tenths, as Table 6 prints it."""
    table = paper_adapter()
    rows = []
    for model in dict.fromkeys(model for model, _ in table):
        original, adapter = table[(model, "original")], table[(model, "adapter")]
        rows.append([f"{model} (paper)"] + [two(float(original[c])) for c in PAPER_COLUMNS])
        rows.append([f"{model} + adapter (paper)"] + [two(float(adapter[c])) for c in PAPER_COLUMNS])
        tenths = [round(float(adapter[c]) * 10) - round(float(original[c]) * 10) for c in PAPER_COLUMNS]
        rows.append(["Δ (paper)"] + [signed_text(Decimal(t) / 10, 1) for t in tenths])
    return rows


def test_paired_table_without_samples_gives_the_results_files_deltas(tmp_path, capsys):
    base = {f"mmr3_{t}": {m: coded(0, t, "all", m) for m in HEADLINE} | {"groups": 40} for t in TASKS}
    other = {
        f"mmr3_{t}": {
            m: float(Decimal(str(coded(0, t, "all", m))) + Decimal(str(d)))
            for m, d in zip(HEADLINE, DELTAS[t], strict=True)
        }
        | {"groups": 40}
        for t in TASKS
    }
    write_run(tmp_path / "base", "pretrained=/m", base)
    write_run(tmp_path / "other", "pretrained=/m,adapter=/ad/ckpt-9", other)
    printed = parse_markdown(report_text([str(tmp_path / "base"), str(tmp_path / "other")], capsys))
    table = printed[PAIRED_TITLE]
    assert list(printed)[0] == PAIRED_TITLE  # the comparison comes first
    assert table["header"] == ["Run", *SUMMARY_HEADER[1:]]
    cells = [(t, m) for t in TASKS for m in HEADLINE]
    assert table["rows"][0] == ["mmr3_llava (m)"] + [two(base[f"mmr3_{t}"][m]) for t, m in cells]
    assert table["rows"][1] == ["mmr3_llava (m) + adapter ckpt-9"] + [two(other[f"mmr3_{t}"][m]) for t, m in cells]
    deltas = [signed_text(Decimal(str(DELTAS[t][HEADLINE.index(m)])), 2) for t, m in cells]
    assert table["rows"][2] == ["Δ [95% CI]", *deltas]  # no samples files: no interval
    assert deltas[:4] == ["+2.50", "-1.25", "+10.75", "+0.50"]
    assert table["rows"][3:] == paper_paired_rows()
    assert table["notes"] == [
        PAIRED_NOTE,
        "mmr3_llava (m) + adapter ckpt-9 vs mmr3_llava (m): Δ without intervals: no samples files for mmr3_llava (m), "
        "mmr3_llava (m) + adapter ckpt-9; run lmms-eval with --log_samples for them",
        PAPER_NOTE,
    ]


def test_paired_json_without_shared_samples_key_by_key(tmp_path):
    # --paired, two unrelated models: no QR in either run; IR with the base's samples only, CR with the
    # other's only (so both runs are named for lacking them); the other run's IR has no S_C.
    base = {
        "mmr3_restyle": {"acc": 30.0, "s_gt": 29.0, "con": 40.0, "s_c": 39.0, "groups": 6},
        "mmr3_context": {"acc": 5.0, "s_gt": 4.5, "con": 6.0, "s_c": 5.5, "groups": 9},
    }
    other = {
        "mmr3_restyle": {"acc": 33.0, "s_gt": 29.5, "con": 45.0, "groups": 6},
        "mmr3_context": {"acc": 7.5, "s_gt": 7.0, "con": 6.0, "s_c": 5.5, "groups": 9},
    }
    sample = {"id": "g1/v1", "group_id": "g1", "variant": "v1", "group_size": 1, "answers": ["cat"], "response": "cat"}
    write_run(tmp_path / "a", "pretrained=/m", base, samples={"mmr3_restyle": [sample | {"task": "restyle"}]})
    write_run(tmp_path / "b", "pretrained=/o", other, samples={"mmr3_context": [sample | {"task": "context"}]})
    runs = report.load_runs([str(tmp_path / "a"), str(tmp_path / "b")])
    comparisons = report.compare_pairs(report.find_pairs(runs, paired=True))
    a, b = "mmr3_llava (m)", "mmr3_llava (o)"

    def entry(task: str, samples: list, deltas: list) -> dict:
        values = [(base[f"mmr3_{task}"].get(m), other[f"mmr3_{task}"].get(m)) for m in HEADLINE]
        return {
            "tasks": [f"mmr3_{task}"] * 2, "status": "unpaired", "data": [None, None], "samples": samples,
            "groups_shared": None, "groups_only_base": None, "groups_only_other": None,
            "metrics": {
                m: {"base": vb, "other": vo, "delta": d, "ci95": None, "groups": None, "base_reported": vb,
                    "other_reported": vo}
                for m, (vb, vo), d in zip(HEADLINE, values, deltas, strict=True)
            },
            "notes": [],
        }  # fmt: skip

    pair = {
        "base": a, "other": b, "how": "--paired",
        "tasks": {
            "restyle": entry("restyle", [str(tmp_path / "a" / "20250101_000000_samples_mmr3_restyle.jsonl"), None],
                             [3.0, 0.5, 5.0, None]),
            "context": entry("context", [None, str(tmp_path / "b" / "20250101_000000_samples_mmr3_context.jsonl")],
                             [2.5, 2.5, 0.0, 0.0]),
        },
        "notes": [f"Δ without intervals: no samples files for {a}, {b}; run lmms-eval with --log_samples for them"],
    }  # fmt: skip
    paper = {
        model: {
            "original": [float(table[(model, "original")][c]) for c in PAPER_COLUMNS],
            "adapter": [float(table[(model, "adapter")][c]) for c in PAPER_COLUMNS],
            "delta": [  # in tenths, as Table 6 prints it
                (round(float(table[(model, "adapter")][c]) * 10) - round(float(table[(model, "original")][c]) * 10))
                / 10
                for c in PAPER_COLUMNS
            ],
        }
        for table in [paper_adapter()]
        for model in ("BLIP-2", "LLaVA-1.5")
    }
    head = {"resamples": 1000, "seed": 0, "level": 0.95, "protocol": "all", "pairs": [pair]}
    assert report.paired_json(comparisons, with_paper=True) == head | {
        "paper": {"columns": SUMMARY_HEADER[1:], "models": paper}
    }
    assert report.paired_json(comparisons, with_paper=False) == head
    table = report.paired_table(comparisons, with_paper=False)
    assert table.rows == [
        [a, *[None] * 4, 30.0, 29.0, 40.0, 39.0, 5.0, 4.5, 6.0, 5.5],
        [b, *[None] * 4, 33.0, 29.5, 45.0, None, 7.5, 7.0, 6.0, 5.5],
        ["Δ [95% CI]", *["–"] * 4, "+3.00", "+0.50", "+5.00", "–", "+2.50", "+2.50", "+0.00", "+0.00"],
    ]


# Responses the paired test draws from, each unchanged by the context cleanup; "" is no answer.
VOCABULARY = ("cat", "a black cat", "dog", "")
GROUP_SIZE = {"rephrase": 3, "restyle": 4, "context": 3}
BASE_GROUPS, OTHER_GROUPS = [f"g{i}" for i in range(1, 9)], [f"g{i}" for i in range(2, 10)]  # g2-g8 shared


def drawn_responses(task: str, side: str) -> dict[str, list[str]]:
    rng = random.Random(f"delta:{task}/{side}")
    weights = (5, 2, 2, 1) if side == "other" else (2, 2, 3, 3)  # the other run answers "cat" more often
    ids = OTHER_GROUPS if side == "other" else BASE_GROUPS
    return {g: rng.choices(VOCABULARY, weights, k=GROUP_SIZE[task]) for g in ids}


def by_hand(responses: dict[str, list[str]], cosine) -> dict[str, dict[str, float]]:
    """docs/metrics.md per group, ground truth "cat": Acc = share of answers containing it, S_GT = mean
    cosine with it, Con = share of answer pairs with cosine > 0.7, S_C = mean pair cosine; an empty
    answer is wrong and has cosine 0 with everything."""
    out = {}
    for g, texts in responses.items():
        pairs = list(itertools.combinations(texts, 2))
        out[g] = {
            "acc": 100 * sum("cat" in t for t in texts) / len(texts),
            "s_gt": 100 * sum(cosine(t, "cat") for t in texts) / len(texts),
            "con": 100 * sum(cosine(a, b) > 0.7 for a, b in pairs) / len(pairs),
            "s_c": 100 * sum(cosine(a, b) for a, b in pairs) / len(pairs),
        }
    return out


@pytest.fixture(scope="module")
def cosine():
    texts = [t for t in VOCABULARY if t]
    vectors = dict(zip(texts, get_embedder(requested_embedding_model()).encode(texts).astype(float), strict=True))

    def cos(a: str, b: str) -> float:
        if not a or not b:
            return 0.0
        va, vb = vectors[a], vectors[b]
        return float(va @ vb / math.sqrt((va @ va) * (vb @ vb)))

    for a, b in itertools.combinations(texts, 2):
        assert abs(cos(a, b) - 0.7) > 1e-3, (a, b)  # no pair at the threshold: Con is not a matter of rounding
    return cos


def numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?\d+\.\d+", cell)]


def test_paired_table_with_samples_gives_hand_computed_deltas_and_intervals(tmp_path, capsys, cosine):
    out = tmp_path / "out"
    expected = {}
    for n, side in enumerate(("base", "other")):
        results, samples = {}, {}
        for task in TASKS:
            responses = drawn_responses(task, side)
            expected.setdefault(task, {})[side] = by_hand(responses, cosine)
            acc = sum(v["acc"] for v in expected[task][side].values()) / len(responses)
            results[f"mmr3_{task}"] = {"acc": acc, "groups": len(responses), "data_fingerprint": "build:cafe"} | {
                "embedding_model": "sentence-transformers/all-MiniLM-L6-v2"
            }
            samples[f"mmr3_{task}"] = [
                {"id": f"{g}/v{k}", "group_id": g, "task": task, "variant": f"v{k}", "group_size": len(texts),
                 "answers": ["cat"], "kinds": {}, "data": "build:cafe", "response": text}
                for g, texts in responses.items() for k, text in enumerate(texts, 1)
            ]  # fmt: skip
        args = "pretrained=/m" + (",lora=/runs/lora-r8" if side == "other" else "")
        write_run(out, args, results, samples=samples, stamp=f"20250101_00000{n}")

    want = {}  # (task, metric) -> base, other, delta, interval over the shared groups
    for task in TASKS:
        b, o = expected[task]["base"], expected[task]["other"]
        shared = sorted(b.keys() & o.keys())
        assert shared == OTHER_GROUPS[:-1]
        for m in HEADLINE:
            mean_b, mean_o = (sum(side[g][m] for g in shared) / len(shared) for side in (b, o))
            want[(task, m)] = (mean_b, mean_o, mean_o - mean_b, reference_interval([o[g][m] - b[g][m] for g in shared]))
    assert len({round(w[2], 2) for w in want.values()}) == 12  # twelve different deltas: a swap is visible

    printed = json.loads(report_text([str(out)], capsys, "--format", "json"))["paired"]
    [pair] = printed["pairs"]
    assert (pair["base"], pair["other"], pair["how"]) == ("mmr3_llava (m)", "mmr3_llava (m) + lora lora-r8", "lora")
    for (task, m), (mean_b, mean_o, delta, ci) in want.items():
        entry = pair["tasks"][task]
        assert (entry["status"], entry["groups_shared"], entry["groups_only_base"], entry["groups_only_other"]) == (
            "paired", 7, 1, 1,
        ), task  # fmt: skip
        cell = entry["metrics"][m]
        tol = 1e-4  # float32 cosines in the scorer, float64 here
        assert cell["base"] == pytest.approx(mean_b, abs=tol) and cell["other"] == pytest.approx(mean_o, abs=tol)
        assert cell["delta"] == pytest.approx(delta, abs=tol), (task, m)
        assert cell["ci95"] == pytest.approx(ci, abs=tol), (task, m)
        assert cell["groups"] == 7

    table = parse_markdown(report_text([str(out)], capsys))[PAIRED_TITLE]
    assert table["header"] == ["Run", *SUMMARY_HEADER[1:]]
    assert [r[0] for r in table["rows"][:3]] == ["mmr3_llava (m)", "mmr3_llava (m) + lora lora-r8", "Δ [95% CI]"]
    for column, (key, (mean_b, mean_o, delta, ci)) in enumerate(want.items(), start=1):
        where = f"{TASKS[key[0]]} {key[1]}"
        base_cell, other_cell, delta_cell = (table["rows"][i][column] for i in range(3))
        assert re.fullmatch(r"\d+\.\d\d", base_cell) and re.fullmatch(r"\d+\.\d\d", other_cell), where
        assert re.fullmatch(r"[-+]\d+\.\d\d \[[-+]\d+\.\d, [-+]\d+\.\d\]", delta_cell), where
        # Rounded to the printed digits; a half unit of slack for a float32 cosine that lands on a boundary.
        for got, value, half in zip(
            numbers(base_cell) + numbers(other_cell) + numbers(delta_cell),
            (mean_b, mean_o, delta, *ci),
            (0.005, 0.005, 0.005, 0.05, 0.05),
            strict=True,
        ):
            assert abs(got - value) <= half + 1e-4, (where, got, value)
    assert table["rows"][3:] == paper_paired_rows()
    left_out = (
        "rows and Δ over the 7 groups both runs scored; left out: 1 group only mmr3_llava (m) scored, 1 group only "
        "mmr3_llava (m) + lora lora-r8 scored"
    )
    assert table["notes"] == [
        PAIRED_NOTE,
        *(f"mmr3_llava (m) + lora lora-r8 vs mmr3_llava (m): {short}: {left_out}" for short in ("QR", "IR", "CR")),
        PAPER_NOTE,
    ]


# --------------------------------------------------------------------------- mmr3 score, every value

STYLES = KINDS["style"][1]  # candy, mosaic, udnie, grayscale: the variants of a restyle group, in order
# Restyle, All protocol: g1 answers "cat" (the truth) 4 times, g2 twice, g3 never; Sampling: s1 4 times,
# s2 once. Every answer is the truth or empty, so each cosine is 1 or 0 and S_GT = Acc, S_C = Con.
ALL_ANSWERS = {"g1": ["cat"] * 4, "g2": ["cat", "cat", "", ""], "g3": [""] * 4}
SAMPLED_ANSWERS = {"s1": ["cat"] * 4, "s2": ["cat", "", "", ""]}


def write_restyle_samples(path) -> None:
    payload = {"task": "restyle", "answers": ["cat"], "data": "build:aaaa"}
    rows = [
        payload | {"id": f"{g}/{style}", "group_id": g, "variant": style, "group_size": 4, "kinds": {"style": style},
                   "response": text}
        for g, texts in ALL_ANSWERS.items() for style, text in zip(STYLES, texts, strict=True)
    ] + [payload | {"id": g, "group_id": g, "responses": texts} for g, texts in SAMPLED_ANSWERS.items()]  # fmt: skip
    path.write_text("".join(json.dumps({"doc_id": i, "acc": p}) + "\n" for i, p in enumerate(rows)))


def restyle_scores(model: str, intervals: bool) -> dict[str, dict]:
    """What `mmr3 score` gives for write_restyle_samples, by hand (docs/metrics.md)."""

    def cosine(x: float):  # a mean of float32 cosines of 1
        return pytest.approx(x, abs=1e-4)

    # Per group, All: Acc 100, 50, 0; Con 100 (6 pairs agree), 100 / 6 (only the two "cat"s), 0 (an
    # empty answer agrees with nothing). Only g1 is consistently correct; g3 is all wrong but not
    # consistent. Sampling: Acc 100, 25; Con 100, 0. Intervals: of 1000 resamples of 3 (2) groups,
    # about 1 in 27 (1 in 4) draw g1 (s1) alone and as many g3 (s2) alone, well over 2.5% each, so
    # the interval runs from the lowest group's value to the highest's.
    con = (100 + 100 / 6) / 3
    all_ = {
        "acc": 50.0, "s_gt": cosine(50.0), "con": con, "s_c": cosine(con), "exact_agreement": con,
        "consistent_correct": 100 / 3, "consistent_wrong": 0.0, "inconsistent": 200 / 3,
        "acc_ci95": [0.0, 100.0], "s_gt_ci95": [0.0, cosine(100.0)], "con_ci95": [0.0, 100.0],
        "s_c_ci95": [0.0, cosine(100.0)],
        "responses": 12, "groups": 3, "groups_complete": 3, "empty_responses": 6, "duplicate_responses": 0,
        "embedding_model": model, "data_fingerprint": "build:aaaa",
    }  # fmt: skip
    # Per style: Acc over its 3 answers; Con over the 9 pairs that include it. candy and mosaic answer
    # in g1 and g2 (4 of their pairs agree: g1's 3 and g2's cat-cat), udnie and grayscale in g1 only (3).
    for style, answered, agreeing in zip(STYLES, (2, 2, 1, 1), (4, 4, 3, 3), strict=True):
        acc, con = 100 * answered / 3, 100 * agreeing / 9
        all_ |= {f"acc_style_{style}": acc, f"s_gt_style_{style}": cosine(acc)}
        all_ |= {f"con_style_{style}": con, f"s_c_style_{style}": cosine(con)}
    sampled = {
        "acc": 62.5, "s_gt": cosine(62.5), "con": 50.0, "s_c": cosine(50.0), "exact_agreement": 50.0,
        "consistent_correct": 50.0, "consistent_wrong": 0.0, "inconsistent": 50.0,
        "acc_ci95": [25.0, 100.0], "s_gt_ci95": [cosine(25.0), cosine(100.0)], "con_ci95": [0.0, 100.0],
        "s_c_ci95": [0.0, cosine(100.0)],
        "responses": 8, "groups": 2, "groups_complete": 2, "empty_responses": 3, "duplicate_responses": 0,
        "embedding_model": model, "data_fingerprint": "build:aaaa",
    }  # fmt: skip
    if not intervals:
        for values in (all_, sampled):
            values |= {f"{m}_ci95": None for m in HEADLINE}

    def near(v):  # means of rates: exact up to float rounding (100 / 3 is 33.333333333333336, 100 * 1/3 not)
        if isinstance(v, list):
            return [near(x) for x in v]
        return pytest.approx(v, abs=1e-9) if isinstance(v, float) else v

    return {
        "mmr3_restyle": {k: near(v) for k, v in all_.items()},
        "mmr3_restyle_sampling": {k: near(v) for k, v in sampled.items()},
    }


def test_score_samples_gives_every_metric_of_every_task_in_the_files(tmp_path):
    path = tmp_path / "samples.jsonl"
    write_restyle_samples(path)
    model = requested_embedding_model()
    for n_resamples, intervals in ((None, True), (0, False)):
        scored = report.score_samples([str(path)], n_resamples=n_resamples)
        want = restyle_scores(model, intervals)
        assert list(scored) == list(want)
        for task, values in scored.items():
            assert list(values) == list(want[task]), task  # every key, in the order of the results table
            assert values == want[task], task
    assert scored["mmr3_restyle"]["acc_ci95"] is None
    assert report.score_samples([str(path)])["mmr3_restyle"]["acc_ci95"] == reference_interval([100.0, 50.0, 0.0])


def test_score_command_prints_each_task_as_a_table_and_writes_json(tmp_path, capsys, monkeypatch):
    samples, out = tmp_path / "samples.jsonl", tmp_path / "scores.json"
    write_restyle_samples(samples)
    model = embedding.resolve_embedding_model()  # the packaged MiniLM's folder: a name other than the default
    assert model != embedding.DEFAULT_EMBEDDING_MODEL
    # --embedding-model sets the variable for the process; monkeypatch restores it after the test.
    monkeypatch.setenv(embedding.EMBEDDING_MODEL_ENV, embedding.DEFAULT_EMBEDDING_MODEL)
    assert cli.main(["score", str(samples), "--json", str(out), "--embedding-model", model]) == 0
    stdout = capsys.readouterr().out
    scored = json.loads(out.read_text())
    assert scored == restyle_scores(model, intervals=True)
    tables = "".join(
        f"### {task}\n\n| Metric | Value |\n|---|---:|\n"
        + "".join(f"| {name} | {markdown_cell(value)} |\n" for name, value in values.items())
        + "\n"
        for task, values in scored.items()
    )
    assert stdout == tables + f"wrote {out}\n"
    assert "| acc | 50.00 |\n" in stdout and "| con_ci95 | [0.0, 100.0] |\n" in stdout
    assert out.read_text(encoding="utf-8") == json.dumps(scored, indent=2)  # the file as documented: indented


def test_score_check_names_every_difference_and_the_tasks_it_did_not_check(tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    write_restyle_samples(samples)
    scored = report.score_samples([str(samples)])
    capsys.readouterr()  # the embedding model's loading bar, if it loaded here
    # A results file of the same run: our two tasks as scored, two more MM-R³ tasks no samples were
    # given for, and another harness task, which is not ours to check.
    others = {"mmr3_rephrase": {"acc": 1.0}, "mmr3_context": {"acc": 2.0}, "mmstar": {"average": 0.5}}
    folder = write_run(tmp_path / "run", "pretrained=/m", scored | others)
    results = folder / "20250101_000000_results.json"
    tables = "".join(
        f"### {task}\n\n| Metric | Value |\n|---|---:|\n"
        + "".join(f"| {name} | {markdown_cell(value)} |\n" for name, value in values.items())
        + "\n"
        for task, values in scored.items()
    )
    unchecked = "not checked (no samples given for them): mmr3_context, mmr3_rephrase\n"

    assert cli.main(["score", str(samples), "--check", str(results)]) == 0
    assert capsys.readouterr() == (tables + unchecked + f"identical to {results}\n", "")

    edited = json.loads(results.read_text())
    edited["results"]["mmr3_restyle"]["acc,none"] = 51.0
    results.write_text(json.dumps(edited))
    assert cli.main(["score", str(samples), "--check", str(results)]) == 1
    assert capsys.readouterr() == (
        tables + unchecked,
        f"mmr3 score: mismatch: the samples do not reproduce {results} (1 difference):\n"
        "  mmr3_restyle acc: samples give 50.0, results file has 51.0\n",
    )

    edited["results"]["mmr3_restyle_sampling"]["groups,none"] = 3
    results.write_text(json.dumps(edited))
    assert cli.main(["score", str(samples), "--check", str(results)]) == 1
    assert capsys.readouterr().err == (
        f"mmr3 score: mismatch: the samples do not reproduce {results} (2 differences):\n"
        "  mmr3_restyle acc: samples give 50.0, results file has 51.0\n"
        "  mmr3_restyle_sampling groups: samples give 2, results file has 3\n"
    )


def test_score_help_names_every_argument(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps at the terminal width: one line per argument
    for argv in (["--help"], ["score", "--help"]):
        with pytest.raises(SystemExit) as done:
            cli.main(argv)
        assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "score recompute every MM-R³ number from lmms-eval --log_samples files alone" in text  # in `mmr3 --help`
    assert "usage: mmr3 score [-h] [--check RESULTS_JSON] [--json OUT] [--embedding-model EMBEDDING_MODEL]" in text
    for line in (
        "samples lmms-eval samples files (any name: each line says its task)",
        "--check RESULTS_JSON compare with an lmms-eval results file",
        "--json OUT write the scores as JSON",
        "--embedding-model EMBEDDING_MODEL hub id or folder (default: $MMR3_EMBEDDING_MODEL or all-MiniLM-L6-v2)",
    ):
        assert line in text, line


# --------------------------------------------------------------------------- mmr3 score --check's tolerance


@pytest.mark.parametrize(
    "ours, theirs, same",
    [
        (0.0, 1e-6, True),  # exactly the tolerance: still the same value
        (0.0, 1.5e-6, False),
        (30.0, 30.0 + 0.9e-6, True),
        (30.0, 30.0 - 1.1e-6, False),
        ([10.0, 20.0], [10.0 + 0.9e-6, 20.0 - 0.9e-6], True),
        ([10.0, 20.0], [10.0, 20.0 + 1.1e-6], False),  # one interval end past it
    ],
)
def test_same_value_tolerance_is_inclusive_at_tol(ours, theirs, same):
    assert report.same_value(ours, theirs, 1e-6) is same


@pytest.mark.parametrize("offset, differs", [(5e-7, False), (2e-6, True)])
def test_score_check_tolerates_1e_6_by_default(tmp_path, offset, differs):
    write_run(tmp_path, "pretrained=/m", {"mmr3_rephrase": {"acc": 30.0 + offset, "con": 12.5}})
    diffs = report.compare({"mmr3_rephrase": {"acc": 30.0, "con": 12.5}}, tmp_path / "20250101_000000_results.json")
    assert diffs == ([f"mmr3_rephrase acc: samples give 30.0, results file has {30.0 + offset!r}"] if differs else [])


def test_context_vocabulary_is_left_alone_by_the_cleanup():
    # The paired test scores context answers by hand without the cleanup: it must not change them.
    assert all(metrics.clean_context_answer(t) == t for t in VOCABULARY)
