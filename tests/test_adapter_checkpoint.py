"""Adapter checkpoints: save -> load gives the same answers, and every bad folder gets its message."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from mmr3_adapters.adapter import AdapterCheckpointError, AdapterConfig, ConsistencyAdapter, load_adapter, save_adapter
from mmr3_adapters.adapter.lora import LoraSettings, apply_lora, load_lora, save_lora
from mmr3_adapters.models import Blip2Generator, LlavaGenerator, Sample
from mmr3_adapters.models.generation import GenerationSettings
from tests.tiny_models import QUESTIONS, images, tiny_checkpoint

GREEDY = GenerationSettings.from_gen_kwargs({"max_new_tokens": 8})


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    return LlavaGenerator.from_pretrained(tiny_checkpoint("llava", tmp_path_factory), dtype="float32")


def samples() -> list[Sample]:
    return [Sample(f"s{i}", q, (im,)) for i, (q, im) in enumerate(zip(QUESTIONS, images(len(QUESTIONS)), strict=True))]


def trained_like(generator, seed: int = 3) -> ConsistencyAdapter:
    torch.manual_seed(seed)
    config = AdapterConfig(
        hidden_size=generator.hidden_size,
        backbone=generator.backbone,
        base_model_name_or_path="tiny/llava",
        generator_options=generator.options,
        training={"lr": 1e-5, "batch_size": 2},
    )
    adapter = ConsistencyAdapter(config)
    with torch.no_grad():
        for p in adapter.mlp.parameters():
            p.mul_(20)
    return adapter.eval()


@pytest.fixture
def saved(llava, tmp_path):
    adapter = trained_like(llava)
    save_adapter(adapter, tmp_path / "adapter")
    return adapter, tmp_path / "adapter"


def answers(generator, transform) -> list[str]:
    generator.embedding_transform = transform
    try:
        return [a.text for a in generator.generate(samples(), GREEDY)]
    finally:
        generator.embedding_transform = None


def test_save_then_load_gives_identical_outputs(llava, saved, tmp_path):
    adapter, folder = saved
    loaded = load_adapter(folder, backbone="llava", hidden_size=llava.hidden_size, base_model="tiny/llava")
    assert answers(llava, loaded) == answers(llava, adapter) != answers(llava, None)
    for name, tensor in adapter.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    # The Hugging Face spelling of the same.
    again = ConsistencyAdapter.from_pretrained(
        adapter.save_pretrained(tmp_path / "hf"), backbone="llava", hidden_size=32
    )
    assert answers(llava, again) == answers(llava, adapter)


def test_the_folder_holds_the_adapter_only_with_its_whole_config(llava, saved):
    adapter, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    assert set(tensors) == set(adapter.state_dict())  # no backbone tensor
    assert sum(t.numel() for t in tensors.values()) == adapter.num_parameters()
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["adapter_type"] == "mmr3-prefix-lstm" and config["backbone"] == "llava"
    assert config["hidden_size"] == llava.hidden_size == 32 and config["base_model_name_or_path"] == "tiny/llava"
    assert config["prefix_length"] == 3 and config["lstm_layers"] == 2 and config["training"]["lr"] == 1e-5
    assert {"torch", "transformers", "lmms-eval-mmr3"} <= set(config["library_versions"])
    assert config["generator_options"] == {"use_chat_template": True, "image_aspect": "pad"}
    assert len(config["weights_sha256"]) == 64


def _edit_config(folder, **changes):
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_another_backbone_kind_or_width_is_refused_naming_both(saved):
    _, folder = saved
    with pytest.raises(AdapterCheckpointError, match="trained on a llava backbone .*but the model is blip2-t5"):
        load_adapter(folder, backbone="blip2-t5", hidden_size=32)
    with pytest.raises(AdapterCheckpointError, match="expects hidden size 32 .*has hidden size 4096"):
        load_adapter(folder, backbone="llava", hidden_size=4096)


def test_a_missing_extra_or_misshapen_tensor_is_refused(saved, tmp_path):
    _, folder = saved
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    cases = {
        "missing": {k: v for k, v in tensors.items() if k != "mlp.2.bias"},
        "extra": {**tensors, "lm_head.weight": torch.zeros(2, 2)},
        "shape": {**tensors, "mlp.2.bias": torch.zeros(5)},
    }
    messages = {
        "missing": r"missing tensors \['mlp.2.bias'\], unexpected tensors \[\]",
        "extra": r"missing tensors \[\], unexpected tensors \['lm_head.weight'\]",
        "shape": r"tensors of the wrong shape for its config \(mlp.2.bias: \(5,\) != \(96,\)\)",
    }
    for case, state in cases.items():
        broken = shutil.copytree(folder, tmp_path / case)
        save_file(state, str(broken / "adapter_model.safetensors"))
        _edit_config(broken, weights_sha256=None)  # the sha check would fire first
        with pytest.raises(AdapterCheckpointError, match=messages[case]):
            load_adapter(broken, backbone="llava", hidden_size=32)


def test_weights_from_another_save_are_told_apart(llava, saved, tmp_path):
    _, folder = saved
    other = save_adapter(trained_like(llava, seed=9), tmp_path / "other")
    shutil.copy(other / "adapter_model.safetensors", folder / "adapter_model.safetensors")
    with pytest.raises(AdapterCheckpointError, match="does not match the sha256 its adapter_config.json names"):
        load_adapter(folder)


def test_a_pickle_is_never_loaded(saved, tmp_path):
    _, folder = saved
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save(load_file(str(folder / "adapter_model.safetensors")), pickled / "adapter_model.bin")
    with pytest.raises(
        AdapterCheckpointError, match=r"\['adapter_model.bin'\], which are pickles and are never loaded"
    ):
        load_adapter(pickled)
    shutil.copy(folder / "adapter_config.json", pickled / "adapter_config.json")
    with pytest.raises(AdapterCheckpointError, match="has adapter_config.json but no adapter_model.safetensors"):
        load_adapter(pickled)


@pytest.mark.parametrize(
    "write, message",
    [
        (None, "does not exist; give the --out folder of mmr3 train-adapter"),
        ("{not json", "is not valid JSON"),
        (
            '{"peft_type": "LORA", "r": 8}',
            "is a PEFT LORA checkpoint, not an MM-R³ consistency adapter: pass it as lora=",
        ),
        ('{"adapter_type": "p-tuning", "hidden_size": 8}', "adapter_type 'p-tuning', expected 'mmr3-prefix-lstm'"),
        ('{"adapter_type": "mmr3-prefix-lstm", "backbone": "llava"}', r"lacks \['hidden_size'\]"),
    ],
)
def test_a_folder_that_is_no_adapter_gets_its_message(tmp_path, write, message):
    folder = tmp_path / "a"
    if write is not None:
        folder.mkdir()
        (folder / "adapter_config.json").write_text(write)
    with pytest.raises(AdapterCheckpointError, match=message):
        load_adapter(folder)


def test_unknown_config_keys_are_warned_about(saved, caplog):
    _, folder = saved
    _edit_config(folder, some_future_field=1)
    load_adapter(folder)
    assert "ignoring unknown keys ['some_future_field']" in caplog.text


def test_lora_saves_peft_files_and_loads_back_onto_a_fresh_model(tmp_path_factory, tmp_path):
    path = tiny_checkpoint("blip2-opt", tmp_path_factory)
    gen = Blip2Generator.from_pretrained(path, dtype="float32")
    plain = answers(gen, None)
    peft_model = apply_lora(gen, LoraSettings(r=4, dropout=0.0))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)  # never the vision tower
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 2.0)  # LoRA starts as the identity; this makes it change the answers
    tuned = answers(gen, None)
    assert tuned != plain
    save_lora(peft_model, tmp_path / "lora", gen, {"method": "lora"})
    files = sorted(p.name for p in (tmp_path / "lora").iterdir())
    assert files == ["README.md", "adapter_config.json", "adapter_model.safetensors", "mmr3_lora.json"]
    fresh = Blip2Generator.from_pretrained(path, dtype="float32")
    load_lora(fresh, tmp_path / "lora")
    assert answers(fresh, None) == tuned
    llava = LlavaGenerator.from_pretrained(tiny_checkpoint("llava", tmp_path_factory), dtype="float32")
    with pytest.raises(AdapterCheckpointError, match="trained on a blip2-opt backbone .*but the model is llava"):
        load_lora(llava, tmp_path / "lora")


def test_lora_folders_and_adapter_folders_are_not_mixed_up(saved, tmp_path_factory, tmp_path):
    _, folder = saved
    gen = LlavaGenerator.from_pretrained(tiny_checkpoint("llava", tmp_path_factory), dtype="float32")
    with pytest.raises(AdapterCheckpointError, match="is not a PEFT LoRA config .*pass it as adapter="):
        load_lora(gen, folder)
    with pytest.raises(AdapterCheckpointError, match="lora=.* does not exist"):
        load_lora(gen, tmp_path / "nothing")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"lstm_dropout": "x"}, r"lstm_dropout must be a number in \[0, 1\), got 'x'"),
        ({"generator_options": ["a"]}, "generator_options must be a JSON object"),
        ({"hidden_size": "32"}, "hidden_size must be a positive integer, got '32'"),
        ({"prefix_length": 5}, r"wrong shape for its config \(mlp.2.weight: \(96, 32\) != \(160, 32\)"),
    ],
)
def test_a_config_with_wrong_values_is_refused_not_loaded(saved, changes, message):
    _, folder = saved
    _edit_config(folder, **changes)
    with pytest.raises(AdapterCheckpointError, match=message):
        load_adapter(folder)


def test_damaged_files_and_wrong_dtypes_get_messages(saved, tmp_path):
    _, folder = saved
    broken = shutil.copytree(folder, tmp_path / "latin1")
    (broken / "adapter_config.json").write_bytes(b'{"backbone": "\xe9"}')
    with pytest.raises(AdapterCheckpointError, match="is not valid JSON"):
        load_adapter(broken)
    ints = shutil.copytree(folder, tmp_path / "ints")
    state = {k: v.to(torch.int64) for k, v in load_file(str(folder / "adapter_model.safetensors")).items()}
    save_file(state, str(ints / "adapter_model.safetensors"))
    _edit_config(ints, weights_sha256=None)
    with pytest.raises(AdapterCheckpointError, match=r"are not floating point; not adapter weights"):
        load_adapter(ints)
    garbage = shutil.copytree(folder, tmp_path / "garbage")
    (garbage / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    _edit_config(garbage, weights_sha256=None)
    with pytest.raises(AdapterCheckpointError, match="is not a readable safetensors file"):
        load_adapter(garbage)


def test_each_check_applies_on_its_own(saved):
    _, folder = saved
    with pytest.raises(AdapterCheckpointError, match="expects hidden size 32"):
        ConsistencyAdapter.from_pretrained(folder, hidden_size=4096)
    with pytest.raises(AdapterCheckpointError, match="but the model is blip2-t5"):
        ConsistencyAdapter.from_pretrained(folder, backbone="blip2-t5")


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory):
    gen = Blip2Generator.from_pretrained(tiny_checkpoint("blip2-opt", tmp_path_factory), dtype="float32")
    out = tmp_path_factory.mktemp("lora") / "lora"
    save_lora(apply_lora(gen, LoraSettings(r=2)), out, gen, {})
    return out


@pytest.mark.parametrize(
    "damage, message",
    [
        (("mmr3_lora.json", '{"backbone": "blip2-opt"'), "mmr3_lora.json is not valid JSON"),
        (("mmr3_lora.json", '{"backbone": "blip2-opt"}'), "does not name the backbone it was trained on"),
        (("adapter_config.json", '["LORA"]'), "is not a PEFT LoRA config"),
        (("adapter_model.safetensors", "garbage"), "does not fit this model: SafetensorError"),
    ],
)
def test_a_damaged_lora_folder_gets_a_message(lora_folder, tmp_path_factory, tmp_path, damage, message):
    folder = shutil.copytree(lora_folder, tmp_path / "lora")
    name, text = damage
    (folder / name).write_text(text)
    gen = Blip2Generator.from_pretrained(tiny_checkpoint("blip2-opt", tmp_path_factory), dtype="float32")
    with pytest.raises(AdapterCheckpointError, match=message):
        load_lora(gen, folder)
