"""`mmr3 train-adapter` and adapted models as a user runs them: real subprocesses, the real
`lmms-eval` command, `accelerate launch`, SIGKILL. lmms-eval exits 0 even when a run fails, so
every evaluation is checked through its results JSON."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import torch

from tests.adapter_helpers import learnable_llava, mmr3_bin, quiet_env, toy_build, train_cli, trained_tensors
from tests.conftest import accelerate_launcher, run_lmms_cli
from tests.tiny_models import tiny_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return toy_build(tmp_path_factory.mktemp("toy"), train_per_class=8, test_per_class=4)


def base_args(path, toy, out, *extra: str) -> list[str]:
    return [
        "--pretrained", str(path), "--out", str(out), "--tasks", "rephrase", "--data", str(toy),
        "--dtype", "float32", "--max-answer-tokens", "4", "--heldout-groups", "0", *extra,
    ]  # fmt: skip


def run_lmms(out_dir, *args: str, env: dict | None = None):
    return run_lmms_cli(out_dir, *args, env=env or quiet_env())


def test_a_killed_training_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path_factory, toy, tmp_path):
    path = tiny_checkpoint("llava", tmp_path_factory)
    args = ["--max-steps", "40", "--save-every", "5", "--batch-size", "2", "--lr", "1e-3", "--log-every", "1"]
    whole = train_cli(*base_args(path, toy, tmp_path / "whole", *args))
    assert whole.returncode == 0, whole.stderr[-3000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [mmr3_bin(), "train-adapter", *base_args(path, toy, out, *args)],
        env=quiet_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not (out / "checkpoints" / "step-0000010").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "adapter_model.safetensors").exists()

    resumed = train_cli(*base_args(path, toy, out, *args))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = trained_tensors(tmp_path / "whole"), trained_tensors(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    events = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    # Every step once, although some ran twice.
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(1, 41))
    assert not list((out / "checkpoints").glob(".step-*"))  # no half-written checkpoint left


def test_two_processes_train_the_weights_of_one_with_the_same_global_batch(tmp_path_factory, toy, tmp_path):
    path = tiny_checkpoint("llava", tmp_path_factory)
    args = ["--max-steps", "6", "--save-every", "3", "--batch-size", "2", "--lr", "1e-3", "--log-every", "1"]
    single = train_cli(*base_args(path, toy, tmp_path / "one", *args))
    assert single.returncode == 0, single.stderr[-3000:]
    proc = subprocess.run(  # no GPU here: ACCELERATE_USE_CPU makes the two ranks CPU processes on gloo
        [*accelerate_launcher(2), "-m", "mmr3_adapters.adapter.cli", *base_args(path, toy, tmp_path / "two", *args)],
        capture_output=True, text=True, env=quiet_env(ACCELERATE_USE_CPU="true"), timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "over 2 process(es)" in proc.stdout
    a, b = trained_tensors(tmp_path / "one"), trained_tensors(tmp_path / "two")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-5) for k in a)
    events = [json.loads(line) for line in (tmp_path / "two" / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [3, 6]  # each written once, by rank 0
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(1, 7))
    single_log = (tmp_path / "one" / "train_log.jsonl").read_text().splitlines()
    one_loss = [json.loads(line)["loss"] for line in single_log if '"step"' in line and "loss" in line]
    two_loss = [e["loss"] for e in events if e["event"] == "step"]
    assert two_loss == pytest.approx(one_loss, rel=1e-5)


def test_training_raises_consistency_on_held_out_groups_through_lmms_eval(toy, tmp_path):
    """The learning test. The frozen tiny LLaVA answers the three phrasings of one colour image
    differently; the adapter learns one answer per colour from 24 train groups. On the 12 test
    groups (new images), scored by the real lmms-eval command with one-token answers:

        before: acc 0.0, con 38.9, s_c 56.1;   after: acc 100.0, con 100.0, s_c 100.0 (measured)
    """
    path = learnable_llava(tmp_path / "llava")
    trained = train_cli(*base_args(path, toy, tmp_path / "adapter", "--lr", "1e-2", "--batch-size", "4"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "90 steps of 4 rows" in trained.stdout  # the default 5 epochs over the 72 train rows

    env = quiet_env(MMR3_DATA=str(toy))
    common = ["--tasks", "mmr3_rephrase", "--batch_size", "6", "--gen_kwargs", "max_new_tokens=1"]
    common += ["--use_cache", str(tmp_path / "cache")]  # shared: the cache must tell the two runs apart
    runs = {}
    for label, extra in (("base", ""), ("adapter", f",adapter={tmp_path / 'adapter'}")):
        model_args = f"pretrained={path},dtype=float32{extra}"
        runs[label] = run_lmms(tmp_path / label, "--model", "mmr3_llava", "--model_args", model_args, *common, env=env)
    scores = {label: run.results["results"]["mmr3_rephrase"] for label, run in runs.items()}
    before = {m: scores["base"][f"{m},none"] for m in ("acc", "con", "s_c")}
    after = {m: scores["adapter"][f"{m},none"] for m in ("acc", "con", "s_c")}
    assert before == pytest.approx({"acc": 0.0, "con": 38.89, "s_c": 56.10}, abs=0.05), before
    assert after["con"] >= 90 and after["s_c"] >= 90 and after["acc"] >= 90, after
    assert scores["adapter"]["groups,none"] == scores["base"]["groups,none"] == 12
    assert f"adapter={tmp_path / 'adapter'}" in runs["adapter"].results["config"]["model_args"]
    answers = {label: [s["filtered_resps"] for s in run.samples("mmr3_rephrase")] for label, run in runs.items()}
    assert answers["adapter"] != answers["base"]  # not served from the base run's cache
    assert set(answers["adapter"]) <= {"two", "photo", "show"}


def test_lora_is_evaluated_with_lora_equals(toy, tmp_path):
    path = learnable_llava(tmp_path / "llava")
    args = ["--method", "lora", "--lr", "1e-2", "--batch-size", "4", "--max-steps", "30", "--lora-dropout", "0"]
    trained = train_cli(*base_args(path, toy, tmp_path / "lora", *args))
    assert trained.returncode == 0, trained.stderr[-3000:]
    env = quiet_env(MMR3_DATA=str(toy))
    common = ["--tasks", "mmr3_rephrase", "--batch_size", "6", "--gen_kwargs", "max_new_tokens=1", "--limit", "12"]
    answers = {}
    for label, extra in (("base", ""), ("lora", f",lora={tmp_path / 'lora'}")):
        run = run_lmms(
            tmp_path / label, "--model", "mmr3_llava", "--model_args", f"pretrained={path}{extra}", *common, env=env
        )
        assert "mmr3_rephrase" in run.results["results"], run.output[-3000:]
        answers[label] = [s["filtered_resps"] for s in run.samples("mmr3_rephrase")]
    assert answers["lora"] != answers["base"]


@pytest.mark.parametrize(
    "model, family, arg, message",
    [
        ("mmr3_llava", "llava", "adapter=/no/such/adapter", "mmr3_llava: adapter='/no/such/adapter' does not exist"),
        (
            "mmr3_blip2",
            "blip2-opt",
            "adapter={llava_adapter}",
            "mmr3_blip2: adapter=.* was trained on a llava backbone",
        ),
        ("mmr3_llava", "llava", "adapter={llava_adapter},lora=/x", "mmr3_llava: adapter= and lora= together"),
    ],
)
def test_lmms_eval_stops_on_a_bad_adapter_with_our_message_and_exit_1(
    tmp_path_factory, toy, tmp_path, model, family, arg, message
):
    import re

    llava_adapter = tmp_path_factory.getbasetemp() / "llava-adapter-for-errors"
    if not llava_adapter.exists():
        from mmr3_adapters.adapter import AdapterConfig, ConsistencyAdapter, save_adapter

        save_adapter(ConsistencyAdapter(AdapterConfig(hidden_size=32, backbone="llava")), llava_adapter)
    path = tiny_checkpoint(family, tmp_path_factory)
    model_args = f"pretrained={path}," + arg.format(llava_adapter=llava_adapter)
    run = run_lmms(tmp_path / "out", "--model", model, "--model_args", model_args, "--tasks", "mmr3_mini_context",
                   "--limit", "2")  # fmt: skip
    assert run.proc.returncode == 1, run.output[-3000:]
    assert re.search("mmr3: " + message, run.output), run.output[-3000:]
    assert "Traceback" not in run.output


def readme_walkthrough() -> list[str]:
    """The commands of README.md's offline adapter walkthrough, as a newcomer copies them."""
    from tests.conftest import ROOT

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("The whole loop runs offline on CPU")
    block = text[
        text.index("```bash\n", start) + len("```bash\n") : text.index("```", text.index("```bash\n", start) + 7)
    ]
    return [line for line in block.splitlines() if line.strip()]


def test_the_readme_walkthrough_trains_evaluates_and_reports(tmp_path):
    commands = readme_walkthrough()
    assert [c.split()[0] for c in commands] == ["python", "mmr3", "lmms-eval", "lmms-eval", "mmr3"]
    env = quiet_env()
    env["PATH"] = f"{os.path.dirname(mmr3_bin())}:{env['PATH']}"
    for command in commands:
        if command.startswith("lmms-eval"):
            command += " --limit 6"  # the README runs the whole demo set; six docs per task keep the test short
        if command.startswith("mmr3 report"):
            command += " --format json --out report.json"
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    assert (tmp_path / "adapters" / "demo" / "adapter_model.safetensors").is_file()
    report = json.loads((tmp_path / "report.json").read_text())
    (pair,) = report["paired"]["pairs"]  # found automatically: the same model_args but for adapter=
    assert pair["base"] == "mmr3_llava (tiny-llava)" and pair["other"] == "mmr3_llava (tiny-llava) + adapter demo"
    for task in ("rephrase", "restyle", "context"):
        assert pair["tasks"][task]["status"] == "paired" and pair["tasks"][task]["groups_shared"] >= 2
        cell = pair["tasks"][task]["metrics"]["s_c"]
        assert cell["delta"] == pytest.approx(cell["other"] - cell["base"])
        assert cell["ci95"][0] <= cell["delta"] <= cell["ci95"][1]


@pytest.mark.parametrize("theirs, code", [("bf16", 0), ("fp16", 1)])
def test_accelerates_mixed_precision_becomes_ours_or_is_refused(tmp_path_factory, toy, tmp_path, theirs, code):
    """`accelerate launch --mixed_precision bf16` sets ACCELERATE_MIXED_PRECISION for the processes."""
    path = tiny_checkpoint("llava", tmp_path_factory)
    run = train_cli(
        *base_args(path, toy, tmp_path / "o", "--max-steps", "1"), env=quiet_env(ACCELERATE_MIXED_PRECISION=theirs)
    )
    assert run.returncode == code, run.stderr[-3000:]
    if code == 0:
        assert json.loads((tmp_path / "o" / "train_config.json").read_text())["precision"] == "bf16"
    else:
        assert "fp16 mixed precision is not supported (it needs loss scaling); use --precision bf16" in run.stderr
