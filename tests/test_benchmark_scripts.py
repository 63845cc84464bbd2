"""The GPU code path of benchmarks/models_throughput.py, checked on CPU so that it cannot rot
between the rare sessions that have a GPU: the tiny-dims smoke run in a fresh interpreter, and
the full-size architectures' parameter counts (built on the meta device, no memory)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "models_throughput.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("models_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """`python ARGS` in a fresh interpreter, the checkout importable (as gpu_check.sh runs the scripts)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_smoke_run_writes_every_figure(tmp_path):
    out = tmp_path / "figures.json"
    done = run_script(tmp_path, str(SCRIPT), "--smoke", "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(out.read_text())
    seen = {(r["model"], r["how"], r["batch_size"]) for r in rows}
    for model in ("LLaVA-1.5-7B", "BLIP-2 OPT-2.7b"):
        assert (model, "mmr3 batched generator", 1) in seen
        assert (model, "mmr3 batched generator", 2) in seen
        assert (model, "HF generate, one at a time", 1) in seen
    for r in rows:
        assert r["smoke"] is True and r["device"] == "cpu" and r["new_tokens"] == 4
        assert r["samples_per_s"] > 0 and r["new_tokens_per_s"] == pytest.approx(
            r["samples_per_s"] * 4, rel=0.01, abs=0.2
        )
    assert "SMOKE: tiny dims" in done.stdout


def test_gpu_only_without_cuda_says_how_to_smoke_test(tmp_path):
    import torch  # a hard dependency: never skipped for

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: this checks the message shown without one")
    done = run_script(tmp_path, str(SCRIPT), "--gpu-only")
    assert done.returncode == 2
    assert "--gpu-only: torch sees no CUDA device here; add --smoke" in done.stderr


@pytest.mark.parametrize(
    ("family", "billions", "slots", "side"), [("llava", 7.063, 576, 336), ("blip2", 3.745, 32, 224)]
)
def test_full_size_dims_match_the_published_checkpoints(family, billions, slots, side):
    """llava-1.5-7b-hf has 7.06 B parameters and 576 image placeholders at 336 px; blip2-opt-2.7b
    3.74 B and 32 query placeholders at 224 px (model cards, processor configs)."""
    from mmr3_adapters.models import Sample

    script = _load_script()
    _, build = script.FULL_SIZE[family]
    generator = build("meta", "float16")
    n = sum(p.numel() for p in generator.model.parameters()) / 1e9
    assert n == pytest.approx(billions, abs=0.002)
    image = script._sample_image()
    batch = generator.build_batch([Sample(f"s{i}", q, (image,)) for i, q in enumerate(script.QUESTIONS)])
    assert (batch.input_ids == generator.image_token_id).sum(dim=1).tolist() == [slots] * len(script.QUESTIONS)
    assert tuple(batch.pixel_values.shape) == (len(script.QUESTIONS), 3, side, side)


def test_a_generator_that_stops_early_is_caught_not_timed(monkeypatch):
    """The figures count the new-token ids as decoded: an answer shorter than asked stops the run."""
    from mmr3_adapters.models import LlavaGenerator

    script = _load_script()
    inner = LlavaGenerator.generate_from_embeddings
    monkeypatch.setattr(LlavaGenerator, "generate_from_embeddings", lambda self, *args: inner(self, *args)[:, :1])
    with pytest.raises(RuntimeError, match="LLaVA-1.5-7B: generated 1 tokens per answer, not 4"):
        script.full_size("llava", "cpu", "float32", batches=(1,), new_tokens=4, rounds=1, smoke=True)


ADAPTER_SCRIPT = ROOT / "benchmarks" / "adapter_train.py"
# As on the bare GPU machine: torch and transformers, but none of these.
BARE_MACHINE = (
    "import runpy, sys\n"
    "for name in ('datasets', 'lmms_eval', 'peft'):\n"
    "    sys.modules[name] = None\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def test_adapter_smoke_runs_where_only_torch_and_transformers_are_installed(tmp_path):
    out = tmp_path / "adapter.json"
    done = run_script(tmp_path, "-c", BARE_MACHINE, str(ADAPTER_SCRIPT), "--smoke", "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(out.read_text())
    for model in ("LLaVA-1.5-7B", "BLIP-2 Flan-T5-XXL"):
        mine = [r for r in rows if r["model"] == model]
        assert [r["what"] for r in mine] == ["training step, batch 2, bf16 autocast", "latency", "latency"]
        assert mine[0]["samples_per_s"] > 0 and mine[0]["peak_gib"] is None and mine[0]["smoke"] is True
        assert [r["batch_size"] for r in mine[1:]] == [1, 8] and all(r["adapter_s"] > 0 for r in mine[1:])


def test_adapter_full_size_figures_on_the_meta_device():
    """At H = 4096: 2 LSTM layers x 2 directions x 4 gates of 2048 units, and Linear(4096, 4096) ->
    Linear(4096, 3 * 4096): 201.39 M + 67.13 M parameters, 4 GiB in fp32 with gradients and Adam."""
    spec = importlib.util.spec_from_file_location("adapter_train", ADAPTER_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = {r["model"]: r for r in module.meta_figures()}
    for model, billions in (("LLaVA-1.5-7B", 7.063), ("BLIP-2 Flan-T5-XXL", 12.098)):
        assert rows[model]["adapter_params"] == 268_517_376 and rows[model]["hidden_size"] == 4096
        assert rows[model]["backbone_params"] / 1e9 == pytest.approx(billions, abs=0.001)
        assert rows[model]["adapter_train_state_gib"] == 4.0
