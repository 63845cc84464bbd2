"""Shared test setup: offline, isolated caches, and a runner for the real `lmms-eval` command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from mmr3_adapters.demo_command import lmms_eval_executable as lmms_eval_bin

ROOT = Path(__file__).resolve().parents[1]
# Johnson's candy / mosaic / udnie ONNX style models, which the style-transfer tests need. Their
# licence is research use only, so the repository never holds them. MMR3_TEST_STYLE_MODELS names
# a folder of them; by default the tests look where the team's CI keeps a copy, beside the checkout.
# Without them those tests skip, and STYLE_MODELS_ABSENT says how to get them.
STYLE_MODELS = Path(os.environ.get("MMR3_TEST_STYLE_MODELS") or ROOT.parent / "shared" / "style-models")
STYLE_MODELS_ABSENT = (
    f"no style models at {STYLE_MODELS} (research-use, never in the repository): set MMR3_TEST_STYLE_MODELS to a "
    "folder of candy.onnx, mosaic.onnx and udnie.onnx, e.g. the folder under ~/.cache/mmr3/style-models that "
    "`mmr3 build --style-models johnson-onnx` downloads them into (docs/data.md)"
)
needs_style_models = pytest.mark.skipif(not STYLE_MODELS.is_dir(), reason=STYLE_MODELS_ABSENT)

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


def run_lmms_cli(out_dir: Path, *args: str, launcher: list[str] | None = None, env: dict | None = None) -> LmmsRun:
    """`lmms-eval ARGS` (or `LAUNCHER -m lmms_eval ARGS`) writing into out_dir; `env` overrides os.environ."""
    cmd = [*launcher, "-m", "lmms_eval"] if launcher else [lmms_eval_bin()]
    proc = subprocess.run(
        [*cmd, *args, "--output_path", str(out_dir), "--log_samples"],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600, cwd=out_dir.parent,
    )  # fmt: skip
    return LmmsRun(proc, out_dir)


def accelerate_launcher(processes: int = 2) -> list[str]:
    """`accelerate launch` for `processes` local processes on a free port. Without a GPU, pass
    ACCELERATE_USE_CPU=true in the environment: the ranks are then CPU processes on gloo."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    accelerate = lmms_eval_bin().replace("lmms-eval", "accelerate")
    return [
        accelerate, "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
    ]  # fmt: skip


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
