"""Shared test setup: offline, isolated caches, and a runner for the real `lmms-eval` command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
STYLE_MODELS = SHARED / "style-models"

# Nothing in the suite may reach a hub; every cache lives under the session's tmp dir.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _isolated_hf_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("hf_home")
    old = os.environ.get("HF_HOME")
    os.environ["HF_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("HF_HOME", None)
    else:
        os.environ["HF_HOME"] = old


def lmms_eval_bin() -> str:
    exe = Path(sys.executable).with_name("lmms-eval")
    return str(exe) if exe.exists() else (shutil.which("lmms-eval") or "lmms-eval")


class LmmsRun:
    """One finished `lmms-eval` subprocess and what it wrote."""

    def __init__(self, proc: subprocess.CompletedProcess, out_dir: Path):
        self.proc = proc
        self.out_dir = out_dir
        self.output = proc.stdout + proc.stderr

    @property
    def results(self) -> dict:
        files = sorted(self.out_dir.rglob("*_results.json"))
        assert files, f"lmms-eval wrote no results JSON (rc {self.proc.returncode}):\n{self.output[-6000:]}"
        return json.loads(files[-1].read_text())

    def samples(self, task: str) -> list[dict]:
        files = sorted(self.out_dir.rglob(f"*_samples_{task}.jsonl"))
        assert files, f"no samples file for {task}:\n{self.output[-3000:]}"
        return [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]


@pytest.fixture
def run_lmms_eval(tmp_path):
    """Runs the real `lmms-eval` CLI; lmms-eval exits 0 on failure, so callers assert on `.results`."""

    def run(*args: str, env: dict | None = None, timeout: int = 600) -> LmmsRun:
        out = tmp_path / f"lmms_out_{len(list(tmp_path.glob('lmms_out_*')))}"
        cmd = [lmms_eval_bin(), *args, "--output_path", str(out), "--log_samples"]
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout, cwd=tmp_path)
        return LmmsRun(proc, out)

    return run
