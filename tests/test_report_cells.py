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

from mmr3_tasks import cli, metrics, report
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


def paper_paired_rows() -> list[list[str]]:
    """Table 6 from its CSV: original, adapter, and adapter − original in tenths, as Table 6 prints it."""
    columns = [f"{t}_{m}" for t in TASKS for m in HEADLINE]
    table = paper_adapter()
    rows = []
    for model in dict.fromkeys(model for model, _ in table):
        original, adapter = table[(model, "original")], table[(model, "adapter")]
        rows.append([f"{model} (paper)"] + [two(float(original[c])) for c in columns])
        rows.append([f"{model} + adapter (paper)"] + [two(float(adapter[c])) for c in columns])
        tenths = [round(float(adapter[c]) * 10) - round(float(original[c]) * 10) for c in columns]
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
