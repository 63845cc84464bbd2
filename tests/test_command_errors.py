"""`mmr3 demo` and `mmr3 train-adapter`: an expected failure is one line, `mmr3 <command>: error: ...`,
and exit code 1; `--debug` raises it instead. train-adapter also runs as `python -m
mmr3_adapters.adapter.cli` (for `accelerate launch -m`), with the same message."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmr3_adapters import demo_command
from mmr3_adapters.adapter import cli as train_cli
from mmr3_tasks import cli
from mmr3_tasks.errors import MMR3Error


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith(f"mmr3 {command}: error: ") and err.count("\n") == 1, err
    return err.strip()


# --------------------------------------------------------------------------- train-adapter


def test_a_missing_local_pretrained_is_named_by_both_entry_points(tmp_path, capsys):
    args = ["--pretrained", str(tmp_path / "no-model"), "--out", str(tmp_path / "o")]
    expected = f"mmr3 train-adapter: error: --pretrained {tmp_path / 'no-model'}: no such folder"
    assert cli.main(["train-adapter", *args]) == 1
    assert one_line_error(capsys, "train-adapter").startswith(expected)
    assert train_cli.main(args) == 1  # python -m mmr3_adapters.adapter.cli
    assert one_line_error(capsys, "train-adapter").startswith(expected)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: ["--lr", "-1"], "lr must be a positive number, got -1.0"),  # train's own ValueError
        (lambda d: ["--config", str(d / "none.json")], "none.json: cannot be read (No such file or directory)"),
        (lambda d: ["--config", str(d / "list.json")], "list.json: expected a JSON object of settings, got list"),
        (lambda d: ["--model-option", "prompt"], "--model-option expects KEY=VALUE, got 'prompt'"),
        # The folder exists but is no run of ours: train refuses it before loading anything.
        (lambda d: ["--overwrite", "--out", str(d / "busy")], "holds no mmr3 training run (no train_config.json)"),
    ],
)
def test_bad_settings_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys, make, message):
    (tmp_path / "list.json").write_text(json.dumps([1, 2]))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    args = ["train-adapter", "--pretrained", "org/name", "--out", str(tmp_path / "o"), *make(tmp_path)]
    assert cli.main(args) == 1
    assert message in one_line_error(capsys, "train-adapter")
    with pytest.raises(MMR3Error, match=message.replace("(", r"\(").replace(")", r"\)")):
        cli.main([*args, "--debug"])
    assert (tmp_path / "busy" / "notes.txt").is_file()


def test_python_dash_m_prints_the_same_line_and_exits_1(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mmr3_adapters.adapter.cli", "--pretrained", "/no/such/model", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.startswith("mmr3 train-adapter: error: --pretrained /no/such/model: no such folder")
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- demo


@pytest.mark.parametrize("code", [1, 0])  # lmms-eval can exit 0 after a failure: no results file is the test
def test_demo_without_results_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch, code):
    monkeypatch.setattr(demo_command, "tiny_checkpoint", lambda: tmp_path / "tiny")
    monkeypatch.setattr(demo_command.subprocess, "run", lambda cmd: subprocess.CompletedProcess(cmd, code))
    args = ["demo", "--offline", "--out", str(tmp_path / "out")]
    assert cli.main(args) == 1
    expected = f"mmr3 demo: error: lmms-eval wrote no results (exit code {code}); see its output above"
    assert one_line_error(capsys, "demo") == expected
    with pytest.raises(demo_command.DemoError):
        cli.main([*args, "--debug"])
