"""The training loop in process, on the tiny LLaVA and the toy colour build: what trains, what is
written, and how it stops. The subprocess cases (kill and resume, two processes, learning through
lmms-eval) are in tests/test_adapter_cli.py."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from mmr3_adapters.adapter import cli
from mmr3_adapters.adapter.data import StepPlan, TrainingData, TrainingDataError, check_split, shares
from mmr3_adapters.adapter.train import TrainConfig, TrainingError, get_lr, train
from tests.adapter_helpers import toy_build
from tests.tiny_models import tiny_checkpoint


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny LSTM is 2-3x slower with OpenMP spinning on a small shared machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return toy_build(tmp_path_factory.mktemp("toy"), train_per_class=4, test_per_class=2)


@pytest.fixture(scope="module")
def llava_path(tmp_path_factory):
    return tiny_checkpoint("llava", tmp_path_factory)


def config(build, llava_path, out, **changes) -> TrainConfig:
    settings = dict(
        pretrained=str(llava_path), out=str(out), tasks=["rephrase"], data=str(build), dtype="float32",
        batch_size=2, max_steps=3, heldout_groups=0, save_every=1000, log_every=1, lr=1e-3, max_answer_tokens=4,
    )  # fmt: skip
    return TrainConfig(**{**settings, **changes})


def backbone_tensors(path) -> dict[str, torch.Tensor]:
    """The checkpoint's weights as a fresh load names them (transformers renames some keys on load)."""
    from mmr3_adapters.models import LlavaGenerator

    return LlavaGenerator.from_pretrained(path, dtype="float32").model.state_dict()


def test_only_the_adapter_trains_and_the_backbone_stays_bit_identical(build, llava_path, tmp_path):
    result = train(config(build, llava_path, tmp_path / "run"))
    adapter = result.trainable
    optimised = [p for group in result.optimizer.param_groups for p in group["params"]]
    assert {id(p) for p in optimised} == {id(p) for p in adapter.parameters()}
    on_disk = backbone_tensors(llava_path)
    state = result.generator.model.state_dict()
    assert set(state) == set(on_disk)  # no adapter tensor inside the backbone
    assert all(torch.equal(state[k], on_disk[k]) for k in on_disk)
    assert not any(p.requires_grad for p in result.generator.model.parameters())
    # ... and the adapter did move: its saved weights are not its initial ones.
    torch.manual_seed(0)
    from mmr3_adapters.adapter import ConsistencyAdapter

    initial = ConsistencyAdapter(adapter.config).state_dict()
    saved = load_file(str(tmp_path / "run" / "adapter_model.safetensors"))
    assert any(not torch.equal(saved[k], initial[k]) for k in initial)


def test_only_lora_weights_train_and_the_base_weights_stay_bit_identical(build, llava_path, tmp_path):
    result = train(config(build, llava_path, tmp_path / "lora", method="lora", lora={"r": 2, "dropout": 0.0}))
    optimised = {id(p) for group in result.optimizer.param_groups for p in group["params"]}
    named = dict(result.trainable.named_parameters())
    assert optimised == {id(p) for n, p in named.items() if "lora_" in n} and optimised
    assert all("language_model" in n for n, p in named.items() if "lora_" in n)  # CLIP has q_proj/v_proj too
    on_disk = backbone_tensors(llava_path)
    base = {
        n.removeprefix("base_model.model.").replace(".base_layer", ""): p for n, p in named.items() if "lora_" not in n
    }
    assert set(base) == set(on_disk) and all(torch.equal(base[k], on_disk[k]) for k in on_disk)
    files = {p.name for p in (tmp_path / "lora").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "mmr3_lora.json"} <= files
    assert json.loads((tmp_path / "lora" / "adapter_config.json").read_text())["peft_type"] == "LORA"


def test_accumulation_and_batch_give_the_same_weights(build, llava_path, tmp_path):
    one = train(config(build, llava_path, tmp_path / "a", grad_accum=1))
    two = train(config(build, llava_path, tmp_path / "b", grad_accum=2))
    a, b = one.trainable.state_dict(), two.trainable.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_a_nan_loss_stops_the_run_naming_the_step(build, llava_path, tmp_path):
    # Adam moves every weight by ~lr at step 1; at 1e30 the prefix overflows and the loss of step 2 is NaN.
    with pytest.raises(TrainingError, match=r"the training loss became nan at step 2 \(epoch 1"):
        train(config(build, llava_path, tmp_path / "nan", lr=1e30, save_every=1))
    assert not (tmp_path / "nan" / "adapter_model.safetensors").exists()
    saved = sorted(p.name for p in (tmp_path / "nan" / "checkpoints").iterdir())
    assert saved == ["step-0000001"]  # the last good step is kept; nothing after it


def test_a_missing_train_split_says_where_it_looked_and_how_to_build_it(llava_path, tmp_path, capsys):
    toy = toy_build(tmp_path / "toy", 1, 1)
    (toy / "rephrase" / "train-00000-of-00001.parquet").unlink()
    capsys.readouterr()
    code = cli.main(["--pretrained", str(llava_path), "--out", str(tmp_path / "o"), "--data", str(toy)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("mmr3 train-adapter: MM-R³ rephrase data (train split) not found.")
    assert f"{toy}/rephrase/train-*.parquet  [from the location given]" in err and "mmr3 build" in err
    assert "use the bundled demo set's train split: mmr3 train-adapter --data demo" in err
    assert len(err.splitlines()) <= 8  # a message, not a traceback


def test_a_local_pretrained_folder_that_does_not_exist_is_named(tmp_path, capsys):
    assert cli.main(["--pretrained", str(tmp_path / "no-model"), "--out", str(tmp_path / "o")]) == 1
    assert f"--pretrained {tmp_path / 'no-model'}: no such folder" in capsys.readouterr().err


def test_a_run_with_other_settings_is_never_mixed_in_and_a_finished_one_not_redone(build, llava_path, tmp_path, capsys):
    out = tmp_path / "run"
    first = train(config(build, llava_path, out, max_steps=2, save_every=1))
    with pytest.raises(ValueError, match=r"holds a run with other settings \(lr: 0.001 -> 0.002\); give a new --out"):
        train(config(build, llava_path, out, max_steps=2, save_every=1, lr=2e-3))
    again = train(config(build, llava_path, out, max_steps=2, save_every=1, log_every=5))  # log_every may change
    assert again.generator is None and again.summary == first.summary
    assert "already holds this run, trained" in capsys.readouterr().out
    redone = train(config(build, llava_path, out, max_steps=2, save_every=1, lr=2e-3), overwrite=True)
    assert redone.generator is not None
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not empty and holds no mmr3 training run"):
        train(config(build, llava_path, tmp_path / "other"))
    with pytest.raises(ValueError, match="holds no mmr3 training run .*not deleting it"):
        train(config(build, llava_path, tmp_path / "other"), overwrite=True)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_the_consistency_term_is_logged_and_needs_whole_groups(build, llava_path, tmp_path):
    with pytest.raises(ValueError, match="add --sample-by group"):
        config(build, llava_path, tmp_path / "x", consistency_weight=0.5)
    train(config(build, llava_path, tmp_path / "js", consistency_weight=0.5, sample_by="group", batch_size=1))
    steps = [json.loads(line) for line in (tmp_path / "js" / "train_log.jsonl").read_text().splitlines()]
    steps = [s for s in steps if s["event"] == "step"]
    assert len(steps) == 3 and all(s["consistency"] > 0 for s in steps)
    # loss = CE + 0.5 * divergence, both as means over the step's rows and groups
    assert all(abs(s["loss"] - (s["ce"] + 0.5 * s["consistency"])) < 1e-5 for s in steps)
    plain = train(config(build, llava_path, tmp_path / "ce", sample_by="group", batch_size=1))
    lines = (tmp_path / "ce" / "train_log.jsonl").read_text().splitlines()
    assert all(json.loads(line).get("consistency") is None for line in lines) and plain.summary["steps"] == 3


def test_held_out_groups_are_never_trained_on_and_are_evaluated(build, llava_path, tmp_path):
    data = TrainingData(["rephrase"], str(build), heldout_groups=2, seed=0)
    held = {r.group_id for r in data.heldout}
    assert len(held) == 2 and not held & {r.group_id for r in data.rows}
    assert TrainingData(["rephrase"], str(build), heldout_groups=50).describe().count("held-out") == 1  # capped
    result = train(config(build, llava_path, tmp_path / "h", heldout_groups=2))
    report = json.loads((tmp_path / "h" / "heldout_eval.json").read_text())
    assert set(report) == {"base", "adapter"}
    for scores in report.values():
        assert set(scores["rephrase"]) >= {"acc", "s_gt", "con", "s_c", "exact_agreement"}
        assert scores["rephrase"]["groups"] == 2
    assert result.summary["heldout"] == report


def test_bf16_autocast_trains_and_keeps_the_adapter_in_float32(build, llava_path, tmp_path):
    result = train(config(build, llava_path, tmp_path / "bf16", precision="bf16"))
    assert all(p.dtype == torch.float32 for p in result.trainable.parameters())
    losses = [json.loads(line)["loss"] for line in (tmp_path / "bf16" / "train_log.jsonl").read_text().splitlines()[:3]]
    assert all(0 < loss < 20 for loss in losses)


def test_the_step_plan_is_a_pure_function_of_the_seed():
    plan = StepPlan(n_units=7, batch_size=2, epochs=2, seed=5)
    assert (plan.steps_per_epoch, plan.total_steps) == (3, 6)
    first_epoch = [u for s in range(3) for u in plan.units(s)]
    assert len(set(first_epoch)) == 6  # one unit left out: the incomplete last batch
    assert [plan.units(s) for s in range(6)] == [StepPlan(7, 2, 2, seed=5).units(s) for s in range(6)]
    assert plan.units(0) != StepPlan(7, 2, 2, seed=6).units(0) or plan.units(1) != StepPlan(7, 2, 2, seed=6).units(1)
    units = list(range(8))
    parts = [shares(units, 2, 2, rank) for rank in (0, 1)]
    assert sorted(u for rank in parts for micro in rank for u in micro) == units
    with pytest.raises(TrainingDataError, match="does not divide over 2 process"):
        check_split(3, 2, 1)
    with pytest.raises(TrainingDataError, match="lower --batch-size"):
        StepPlan(n_units=1, batch_size=2, epochs=1)


def test_the_learning_rate_decays_linearly_to_zero():
    c = TrainConfig(pretrained="x", out="y", lr=1e-5)
    assert [get_lr(s, c, 4) for s in range(4)] == pytest.approx([1e-5, 7.5e-6, 5e-6, 2.5e-6])
    warm = TrainConfig(pretrained="x", out="y", lr=1e-5, warmup_steps=2)
    assert [get_lr(s, warm, 4) for s in range(4)] == pytest.approx([5e-6, 1e-5, 1e-5, 5e-6])


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"method": "prompt"}, "method must be one of adapter, lora"),
        ({"tasks": ["vqa"]}, "tasks must be some of rephrase, restyle, context"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"lr": float("nan")}, "lr must be a positive number"),
        ({"precision": "fp16"}, "precision must be one of fp32, bf16"),
        ({"consistency_loss": "kl"}, "consistency_loss must be one of js, skl"),
    ],
)
def test_bad_settings_are_refused_naming_the_value(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(pretrained="x", out="y", **changes)


def test_train_config_round_trips_through_json():
    c = TrainConfig(pretrained="x", out="y", adapter={"lstm_hidden_size": 64}, lora={"r": 4})
    again = TrainConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again == c and again.adapter.lstm_hidden_size == 64 and again.lora.r == 4
    with pytest.raises(ValueError, match=r"unknown training settings \['learning_rate'\]"):
        TrainConfig.from_dict({"pretrained": "x", "out": "y", "learning_rate": 1})


def _logged_steps(out) -> list[int]:
    lines = (out / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if json.loads(line)["event"] == "step"]


@pytest.mark.parametrize("save_every", [2, 1000])
def test_a_rerun_after_a_kill_logs_every_step_once(build, llava_path, tmp_path, save_every):
    """A run killed after step 4 was logged but before it finished: with a checkpoint at step 2 it
    resumes there, without one it starts over; either way each step is in the log once."""
    out = tmp_path / "run"
    first = train(config(build, llava_path, out, max_steps=4, save_every=save_every))
    assert _logged_steps(out) == [1, 2, 3, 4]
    for name in ("training_summary.json", "adapter_model.safetensors", "adapter_config.json"):
        (out / name).unlink()
    with (out / "train_log.jsonl").open("a") as f:
        f.write('{"event": "step", "st')  # the line a kill tore in half
    again = train(config(build, llava_path, out, max_steps=4, save_every=save_every))
    assert _logged_steps(out) == [1, 2, 3, 4]
    a, b = first.trainable.state_dict(), again.trainable.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the redone steps give the same weights
