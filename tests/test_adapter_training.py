"""The training loop in process, on the tiny LLaVA and the toy colour build: what trains, what is
written, and how it stops. The subprocess cases (kill and resume, two processes, learning through
lmms-eval) are in tests/test_adapter_cli.py."""

from __future__ import annotations

import json
import shutil

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
    assert code == 1 and err.startswith("mmr3 train-adapter: error: MM-R³ rephrase data (train split) not found.")
    assert f"{toy}/rephrase/train-*.parquet  [from the location given]" in err and "mmr3 build" in err
    assert "use the bundled demo set's train split: mmr3 train-adapter --data demo" in err
    assert len(err.splitlines()) <= 8  # a message, not a traceback


def test_without_data_the_message_says_where_the_default_location_came_from(llava_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MMR3_DATA", str(tmp_path / "nowhere"))
    assert cli.main(["--pretrained", str(llava_path), "--out", str(tmp_path / "o")]) == 1
    assert f"Looked in: {tmp_path / 'nowhere'}/rephrase/train-*.parquet  [from $MMR3_DATA]" in capsys.readouterr().err


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
        ({"lr": float("nan")}, "lr must be a number, got nan"),
        ({"lr": "1e-3"}, "lr must be a number, got '1e-3'"),  # a --config file with a quoted number
        ({"lr": 0}, "lr must be a positive number"),
        ({"log_every": 0}, "log_every must be a positive integer, got 0"),
        ({"keep_checkpoints": 0}, "keep_checkpoints must be a positive integer"),
        ({"warmup_steps": -1}, "warmup_steps must be an integer >= 0"),
        ({"max_steps": 2.5}, "max_steps must be a positive integer"),
        ({"adapter": {"prefix_len": 5}}, r"adapter settings: .*prefix_len.*; known: \['lstm_dropout'"),
        ({"adapter": {"lstm_dropout": "0.5"}}, r"lstm_dropout must be a number in \[0, 1\)"),
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


def _logged_losses(out) -> list[float]:
    lines = (out / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if json.loads(line)["event"] == "step"]


def _logged_steps(out) -> list[int]:
    lines = (out / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if json.loads(line)["event"] == "step"]


def _kill_before_the_end(out, keep_checkpoints: bool) -> None:
    """Leaves `out` as a run killed after its last step was logged but before it finished: the
    final files and the last checkpoint gone (all checkpoints, with keep_checkpoints False)."""
    for name in ("training_summary.json", "adapter_model.safetensors", "adapter_config.json", "heldout_eval.json"):
        (out / name).unlink(missing_ok=True)
    checkpoints = sorted((out / "checkpoints").iterdir())
    for path in checkpoints[-1:] if keep_checkpoints else checkpoints:
        shutil.rmtree(path)
    with (out / "train_log.jsonl").open("a") as f:
        f.write('{"event": "step", "st')  # the line a kill tore in half


@pytest.mark.parametrize(
    "changes",
    [
        {"adapter": {"lstm_dropout": 0.3}},  # dropout draws must continue where they stopped
        {"method": "lora", "lora": {"r": 2, "dropout": 0.2}},
    ],
    ids=["adapter-dropout", "lora-dropout"],
)
@pytest.mark.parametrize("keep_checkpoints", [True, False], ids=["resumed", "started-over"])
def test_a_rerun_after_a_kill_ends_with_the_uninterrupted_weights(
    build, llava_path, tmp_path, changes, keep_checkpoints
):
    """Killed after step 4 of 6 was logged: with the checkpoint of step 2 the rerun resumes there,
    without any it starts over; either way it ends with the weights of an uninterrupted run (RNG
    included) and logs each step once."""
    # A constant schedule: the first 4 steps of a 4-step run are then those of the 6-step run.
    settings = {"max_steps": 6, "save_every": 2, "schedule": "constant", **changes}
    whole = train(config(build, llava_path, tmp_path / "whole", **settings))
    out = tmp_path / "run"
    train(config(build, llava_path, out, **{**settings, "max_steps": 4}))  # the same first 4 steps ...
    recorded = json.loads((out / "train_config.json").read_text())
    (out / "train_config.json").write_text(json.dumps({**recorded, "max_steps": 6}))  # ... of the 6-step run
    for path in (out / "checkpoints").iterdir():  # step 2 written by a 6-step run: only max_steps differs
        state = json.loads((path / "trainer_state.json").read_text())
        state["config"]["max_steps"] = 6
        (path / "trainer_state.json").write_text(json.dumps(state))
    _kill_before_the_end(out, keep_checkpoints)
    again = train(config(build, llava_path, out, **settings))
    assert _logged_steps(out) == [1, 2, 3, 4, 5, 6]
    a, b = whole.trainable.state_dict(), again.trainable.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_on_other_train_rows_is_refused(llava_path, tmp_path):
    toy = toy_build(tmp_path / "toy", 4, 1)
    out = tmp_path / "run"
    train(config(toy, llava_path, out, max_steps=4, save_every=2))
    _kill_before_the_end(out, keep_checkpoints=True)
    toy_build(toy, 5, 1)  # rebuilt in place with more groups
    with pytest.raises(ValueError, match="the train rows differ from those checkpoint .*step-0000002 was trained on"):
        train(config(toy, llava_path, out, max_steps=4, save_every=2))


def _watch(monkeypatch):
    """Wraps train.load_generator to record, per forward of the first LLM layer, whether the
    vision tower was in train mode (dropout on in the frozen backbone) at that moment."""
    from mmr3_adapters.adapter import train as train_module

    calls = []
    load = train_module.load_generator

    def watched(config, device):
        generator = load(config, device)
        layer = generator.model.model.language_model.layers[0]
        tower = generator.model.model.vision_tower
        layer.register_forward_hook(lambda *args: calls.append(tower.training))
        return generator

    monkeypatch.setattr(train_module, "load_generator", watched)
    return calls


def test_gradient_checkpointing_recomputes_the_llm_for_the_adapter_and_changes_nothing(
    build, llava_path, tmp_path, monkeypatch
):
    from mmr3_adapters.adapter import AdapterConfig, ConsistencyAdapter
    from mmr3_adapters.adapter.train import set_training_mode
    from mmr3_adapters.models import LlavaGenerator, Sample
    from tests.tiny_models import QUESTIONS, images

    gen = LlavaGenerator.from_pretrained(llava_path, dtype="float32")
    for p in gen.model.parameters():
        p.requires_grad_(False)
    adapter = ConsistencyAdapter(AdapterConfig(hidden_size=32, backbone="llava"))
    batch = gen.build_training_batch([Sample("s", QUESTIONS[1], (images(1)[0],))], ["two"])
    with torch.no_grad():
        embeds, mask = gen.input_embeddings(batch.prompt)
    embeds, mask = adapter(embeds, mask)

    def kept_for_backward(checkpointing: bool) -> tuple[int, torch.Tensor]:
        if checkpointing:
            gen.language_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        set_training_mode(gen, adapter, config(build, llava_path, tmp_path / "x", gradient_checkpointing=checkpointing))
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(1) or t, lambda t: t):
            logits = gen.answer_logits(embeds, mask, batch.labels)
        return len(saved), logits

    kept, logits = kept_for_backward(False)
    kept_checkpointed, logits_checkpointed = kept_for_backward(True)
    # The LLM layers' activations are recomputed in the backward pass instead of kept.
    assert kept_checkpointed < kept / 2, (kept_checkpointed, kept)
    assert torch.allclose(logits, logits_checkpointed, atol=1e-6)
    assert not gen.model.model.vision_tower.training  # the frozen rest of the backbone stays in eval mode

    plain = train(config(build, llava_path, tmp_path / "a", max_steps=2))
    calls = _watch(monkeypatch)
    checkpointed = train(config(build, llava_path, tmp_path / "b", max_steps=2, gradient_checkpointing=True))
    assert calls and not any(calls)
    a, b = plain.trainable.state_dict(), checkpointed.trainable.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_lora_training_keeps_the_frozen_backbone_in_eval_mode(build, llava_path, tmp_path, monkeypatch):
    calls = _watch(monkeypatch)
    train(config(build, llava_path, tmp_path / "lora", method="lora", max_steps=2, heldout_eval=False))
    assert len(calls) == 2 and not any(calls)


def test_the_held_out_evaluation_scores_every_ground_truth(build, llava_path, tmp_path, monkeypatch):
    from mmr3_tasks import metrics

    seen = []
    score = metrics.score
    monkeypatch.setattr(
        metrics, "score", lambda responses, *a, **k: score(seen.extend(responses) or responses, *a, **k)
    )
    data = TrainingData(["restyle"], "demo", heldout_groups=1)  # the demo's labels have synonyms
    assert all(r.answers and r.answers[0] == r.answer for r in data.rows + data.heldout)
    assert any(len(r.answers) > 1 for r in data.heldout)
    from mmr3_adapters.adapter.train import evaluate_heldout
    from mmr3_adapters.models import LlavaGenerator

    evaluate_heldout(LlavaGenerator.from_pretrained(llava_path, dtype="float32"), data, batch_size=4)
    assert [r.answers for r in seen] == [r.answers for r in data.heldout]


@pytest.mark.parametrize("family", ["blip2-opt", "blip2-t5"])
def test_the_loop_trains_an_adapter_on_blip2_too(build, tmp_path_factory, tmp_path, family):
    path = tiny_checkpoint(family, tmp_path_factory)
    result = train(config(build, path, tmp_path / family, max_steps=2, heldout_groups=2))
    assert result.trainable.config.backbone == family and result.summary["steps"] == 2
    # Finite and positive (the tiny random T5's lm_head, initialised with std 1, makes sharp, wrong logits: ~20).
    assert all(0 < loss < 100 for loss in _logged_losses(tmp_path / family))
    assert _logged_steps(tmp_path / family) == [1, 2]
    report = json.loads((tmp_path / family / "heldout_eval.json").read_text())
    assert report["adapter"]["rephrase"]["groups"] == 2
