"""The README's main job, `mmr3 demo`, as a newcomer runs it here: no hub, so the tiny fallback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_falls_back_to_a_tiny_model_and_prints_the_tables(tmp_path):
    mmr3 = Path(sys.executable).with_name("mmr3")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = tmp_path / "demo"
    proc = subprocess.run(
        [str(mmr3), "demo", "--out", str(out), "--limit", "8", "--batch-size", "4"],
        capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path,
    )  # fmt: skip
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    assert "the model hub is not reachable for llava-hf/llava-interleave-qwen-0.5b-hf" in text
    assert "numbers are MEANINGLESS" in text
    assert "### Table 2: Question Rephrasing" in proc.stdout and "| BLIP-2 (paper) |" in proc.stdout
    assert "| tiny untrained LLaVA (meaningless) |" in proc.stdout
    results = json.loads(next(out.rglob("*_results.json")).read_text())
    for task in ("mmr3_mini_rephrase", "mmr3_mini_restyle", "mmr3_mini_context"):
        scores = results["results"][task]
        assert scores["responses,none"] == 8
        assert all(isinstance(scores[f"{m},none"], float) for m in ("acc", "s_gt", "con", "s_c"))
        samples = [json.loads(line) for line in next(out.rglob(f"*_samples_{task}.jsonl")).read_text().splitlines()]
        assert len(samples) == 8 and all(s["acc"]["response"] for s in samples)
    assert (tmp_path / "cache" / "mmr3" / "tiny-llava" / "config.json").is_file()
