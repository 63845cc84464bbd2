"""`mmr3 report` on results files shaped like lmms-eval's (written here, no model run).

Bad inputs, and runs that must not merge: tests/test_report_inputs.py.
"""

from __future__ import annotations

import pytest

from mmr3_tasks import cli, report
from mmr3_tasks.errors import MMR3Error
from tests.report_fixtures import write_run


def acc_scores(acc: float) -> dict:
    return {"acc": acc, "con": acc / 2, "acc_ci95": [acc - 1, acc + 1]}


def write_results(folder, stamp, tasks, model_args="pretrained=/ckpt/llava", **settings):
    """One hand-written lmms-eval results file: task -> Acc."""
    return write_run(folder, model_args, {t: acc_scores(a) for t, a in tasks.items()}, stamp=stamp, **settings)


def test_runs_that_differ_in_settings_stay_apart(tmp_path):
    write_results(tmp_path / "sweep", "a", {"mmr3_rephrase": 31.0}, gen_kwargs="temperature=0.2")
    write_results(tmp_path / "sweep", "b", {"mmr3_rephrase": 27.0}, gen_kwargs={"temperature": 0.7})
    runs = report.load_runs([str(tmp_path / "sweep")])
    assert [r.label for r in runs] == [
        "mmr3_llava (llava) [temperature=0.2]",
        "mmr3_llava (llava) [temperature=0.7]",  # lmms-eval records --gen_kwargs parsed into a dict
    ]
    assert [r.get("rephrase", "all", "acc") for r in runs] == [31.0, 27.0]


def test_only_files_of_one_invocation_merge_and_two_folders_are_two_runs(tmp_path):
    # A results file split by hand: one date, different tasks -> one run, one row.
    write_results(tmp_path / "a", "20250101_000000", {"mmr3_rephrase": 30.0})
    (tmp_path / "a" / "20250101_000000_results.json").rename(tmp_path / "a" / "part1_results.json")
    write_results(tmp_path / "a", "20250101_000000", {"mmr3_rephrase_sampling": 40.0})
    write_results(tmp_path / "b", "20250101_000000", {"mmr3_rephrase": 20.0})
    runs = report.load_runs([str(tmp_path / "a"), str(tmp_path / "b")], ["A", "B"])
    assert [r.label for r in runs] == ["A", "B"]
    assert runs[0].get("rephrase", "all", "acc") == 30.0 and runs[0].get("rephrase", "sampling", "acc") == 40.0
    assert len(runs[0].sources) == 2
    assert runs[1].get("rephrase", "all", "acc") == 20.0 and runs[1].get("rephrase", "sampling", "acc") is None
    with pytest.raises(MMR3Error, match="--name given 1 times for 2 runs"):
        report.load_runs([str(tmp_path / "a"), str(tmp_path / "b")], ["A"])
    with pytest.raises(MMR3Error, match="--name 'A' given twice"):  # one label for two rows would merge them in JSON
        report.load_runs([str(tmp_path / "a"), str(tmp_path / "b")], ["A", "A"])


def test_report_cli_writes_tables_and_figures(tmp_path, capsys):
    write_results(tmp_path / "out", "x", {"mmr3_mini_rephrase": 50.0})
    assert cli.main(["report", str(tmp_path / "out"), "--out", str(tmp_path / "t.md"), "--plots", str(tmp_path)]) == 0
    text = (tmp_path / "t.md").read_text()
    assert "### Table 2: Question Rephrasing" in text and "| GPT-4o (paper) |" in text
    assert "not comparable to the paper" in text  # demo-set runs are labelled as such
    assert "| mmr3_llava (llava) | – | – | – | – | 50.00 | – | 25.00 | – |" in text
    assert (tmp_path / "accuracy_vs_consistency.png").stat().st_size > 10_000
    assert cli.main(["report", str(tmp_path / "missing")]) == 1
    assert "mmr3 report: error: " in capsys.readouterr().err


@pytest.mark.parametrize(
    "model_args, label",
    [
        ("pretrained=/ckpt/llava-1.5-7b-hf,dtype=float16", "mmr3_llava (llava-1.5-7b-hf)"),
        ("pretrained=/ckpt/llava-1.5-7b-hf,adapter=/runs/ckpt-300/", "mmr3_llava (llava-1.5-7b-hf) + adapter ckpt-300"),
        ("lora=/runs/lora-r8,pretrained=llava-hf/llava-1.5-7b-hf", "mmr3_llava (llava-1.5-7b-hf) + lora lora-r8"),
        ("pretrained=/ckpt/llava,adapter=", "mmr3_llava (llava)"),  # an empty adapter= adapts nothing
        ("", "mmr3_llava"),
    ],
)
def test_run_label_tells_an_adapted_run_from_its_base(tmp_path, model_args, label):
    results = {"config": {"model": "mmr3_llava", "model_args": model_args}}
    assert report.run_label(results, tmp_path / "x_results.json") == label
